//! The local identity provider: HS256 JWTs shaped like Entra ID access tokens (so Azurite `--oauth basic`
//! accepts them), their verification by the local services, and the App Service managed-identity endpoint
//! (`IDENTITY_ENDPOINT` / `IDENTITY_HEADER`, api-version 2019-08-01) that hands them out.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use warp::Filter;
use warp::http::StatusCode;

type HmacSha256 = Hmac<Sha256>;

/// The tenant every devcloud token belongs to.
pub const DEFAULT_TENANT_ID: &str = "5f1c3e2a-7b4d-4c8e-9a61-0d2b9e4f7a10";
/// Object id of the devcloud managed identity (the principal galleon runs as).
pub const DEFAULT_OBJECT_ID: &str = "0b6f2d8e-3c1a-4e57-8f90-a4d2c6b8e1f3";
/// Client (application) id of the devcloud managed identity.
pub const DEFAULT_CLIENT_ID: &str = "9d4e7a1c-2b6f-4d83-a5e0-c7f19b3d2e64";
/// Token lifetime.
pub const TOKEN_LIFETIME_SECS: u64 = 3600;
/// Name of the key file under the state directory.
pub const KEY_FILE: &str = "identity.key";

/// Why the identity could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot access identity key {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("identity key {path} is malformed (expected 64 hex characters)")]
    Malformed { path: PathBuf },
}

/// Why a presented token was refused. `code()` gives the ARM error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("The request did not have a subscription or a valid tenant level resource provider.")]
    Missing,
    #[error("The authentication scheme of '{0}' is not supported.")]
    Scheme(String),
    #[error("The access token is malformed.")]
    Malformed,
    #[error("The access token has an invalid signature.")]
    BadSignature,
    #[error("The access token expiry UTC time '{0}' is earlier than current UTC time.")]
    Expired(u64),
    #[error("The access token is not yet valid.")]
    NotYetValid,
    #[error(
        "The access token has been obtained for wrong audience or resource '{found}'. It should exactly match with one of the allowed audiences '{expected}'."
    )]
    Audience { found: String, expected: String },
}

impl AuthError {
    /// The ARM error code Azure answers with (401) for this failure.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "AuthenticationFailed",
            AuthError::Scheme(_) => "InvalidAuthenticationToken",
            AuthError::Malformed => "InvalidAuthenticationToken",
            AuthError::BadSignature => "InvalidAuthenticationToken",
            AuthError::Expired(_) => "ExpiredAuthenticationToken",
            AuthError::NotYetValid => "InvalidAuthenticationToken",
            AuthError::Audience { .. } => "InvalidAuthenticationTokenAudience",
        }
    }
}

/// The claims of a devcloud access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub aud: String,
    pub iss: String,
    pub tid: String,
    pub oid: String,
    pub appid: String,
    pub sub: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
}

/// Who a token is issued to: a service principal (or managed identity) in a tenant.
#[derive(Debug, Clone, Copy)]
pub struct Principal<'a> {
    pub tenant_id: &'a str,
    pub object_id: &'a str,
    pub client_id: &'a str,
}

/// The devcloud identity provider: a signing key plus the principal it issues tokens for.
#[derive(Clone)]
pub struct Identity {
    key: Arc<[u8; 32]>,
    pub tenant_id: String,
    pub object_id: String,
    pub client_id: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("tenant_id", &self.tenant_id)
            .field("object_id", &self.object_id)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `https://management.azure.com/.default` → `https://management.azure.com`.
pub fn resource_from_scope(scope: &str) -> &str {
    scope.strip_suffix("/.default").unwrap_or(scope)
}

fn normalize_audience(aud: &str) -> &str {
    resource_from_scope(aud).trim_end_matches('/')
}

impl Identity {
    /// Loads `<state>/identity.key` (hex, 32 bytes) or creates it with a random key, mode 0600.
    pub fn load_or_create(state_dir: &Path) -> Result<Self, IdentityError> {
        let path = state_dir.join(KEY_FILE);
        let io = |source| IdentityError::Io {
            path: path.clone(),
            source,
        };
        let key = match fs::read_to_string(&path) {
            Ok(text) => parse_hex_key(text.trim())
                .ok_or_else(|| IdentityError::Malformed { path: path.clone() })?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(state_dir).map_err(io)?;
                let mut key = [0u8; 32];
                key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
                key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
                let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
                crate::tls::write_private(&path, hex.as_bytes()).map_err(|e| match e {
                    crate::tls::TlsError::Io { source, .. } => io(source),
                    _ => IdentityError::Malformed { path: path.clone() },
                })?;
                key
            }
            Err(err) => return Err(io(err)),
        };
        Ok(Self::from_key(key))
    }

    /// An identity with a given key (tests; processes sharing a state dir should use `load_or_create`).
    pub fn from_key(key: [u8; 32]) -> Self {
        Self {
            key: Arc::new(key),
            tenant_id: DEFAULT_TENANT_ID.to_string(),
            object_id: DEFAULT_OBJECT_ID.to_string(),
            client_id: DEFAULT_CLIENT_ID.to_string(),
        }
    }

    /// The issuer claim: `https://sts.windows.net/<tenant>/`.
    pub fn issuer(&self) -> String {
        format!("https://sts.windows.net/{}/", self.tenant_id)
    }

    /// Issues a 1-hour token for `resource` (a resource URI or a `/.default` scope).
    pub fn issue(&self, resource: &str) -> String {
        self.issue_with_lifetime(resource, TOKEN_LIFETIME_SECS as i64)
    }

    /// Issues a token with a given lifetime in seconds (negative for an already expired token, in tests).
    pub fn issue_with_lifetime(&self, resource: &str, lifetime_secs: i64) -> String {
        let principal = Principal {
            tenant_id: &self.tenant_id,
            object_id: &self.object_id,
            client_id: &self.client_id,
        };
        self.issue_for(&principal, resource, lifetime_secs)
    }

    /// Issues a token for another principal, possibly of another tenant (the local Entra token
    /// endpoint's tokens): same key, the issuer and `tid` of `principal.tenant_id`.
    pub fn issue_for(&self, principal: &Principal, resource: &str, lifetime_secs: i64) -> String {
        let now = now_secs();
        let exp = (now as i64 + lifetime_secs).max(0) as u64;
        let claims = Claims {
            aud: resource_from_scope(resource).to_string(),
            iss: format!("https://sts.windows.net/{}/", principal.tenant_id),
            tid: principal.tenant_id.to_string(),
            oid: principal.object_id.to_string(),
            appid: principal.client_id.to_string(),
            sub: principal.object_id.to_string(),
            iat: now.saturating_sub(5),
            nbf: now.saturating_sub(5),
            exp,
        };
        self.sign(&claims)
    }

    fn sign(&self, claims: &Claims) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
        let signing_input = format!("{header}.{payload}");
        let sig = URL_SAFE_NO_PAD.encode(self.mac(signing_input.as_bytes()));
        format!("{signing_input}.{sig}")
    }

    fn mac(&self, data: &[u8]) -> Vec<u8> {
        // HMAC accepts keys of any length; this cannot fail for a 32-byte key.
        match HmacSha256::new_from_slice(&self.key[..]) {
            Ok(mut m) => {
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Err(_) => Vec::new(),
        }
    }

    /// Verifies an `Authorization` header value against the expected audience (resource URI; a trailing
    /// slash or `/.default` on either side is ignored).
    pub fn verify(&self, authorization: Option<&str>, audience: &str) -> Result<Claims, AuthError> {
        let value = authorization.map(str::trim).filter(|v| !v.is_empty());
        let value = value.ok_or(AuthError::Missing)?;
        let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Scheme(scheme.to_string()));
        }
        let claims = self.verify_token(token.trim())?;
        let now = now_secs();
        if claims.exp <= now {
            return Err(AuthError::Expired(claims.exp));
        }
        if claims.nbf > now + 300 {
            return Err(AuthError::NotYetValid);
        }
        if normalize_audience(&claims.aud) != normalize_audience(audience) {
            return Err(AuthError::Audience {
                found: claims.aud,
                expected: normalize_audience(audience).to_string(),
            });
        }
        Ok(claims)
    }

    /// Verifies a bare token (no scheme) against the expected audience: signature, lifetime, audience.
    pub fn verify_bare(&self, token: &str, audience: &str) -> Result<Claims, AuthError> {
        self.verify(Some(&format!("Bearer {token}")), audience)
    }

    fn verify_token(&self, token: &str) -> Result<Claims, AuthError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed);
        };
        let header: serde_json::Value = URL_SAFE_NO_PAD
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(AuthError::Malformed)?;
        if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
            return Err(AuthError::BadSignature);
        }
        let sig = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| AuthError::Malformed)?;
        let mut mac =
            HmacSha256::new_from_slice(&self.key[..]).map_err(|_| AuthError::BadSignature)?;
        mac.update(h.as_bytes());
        mac.update(b".");
        mac.update(p.as_bytes());
        mac.verify_slice(&sig)
            .map_err(|_| AuthError::BadSignature)?;
        URL_SAFE_NO_PAD
            .decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(AuthError::Malformed)
    }

    /// The App Service managed-identity endpoint as a warp filter, at `GET /msi/token`.
    ///
    /// Requires `api-version=2019-08-01`, a `resource` parameter and the `X-IDENTITY-HEADER` secret;
    /// answers `{access_token, expires_on, resource, token_type, client_id}` like App Service does.
    pub fn msi_filter(
        &self,
        secret: String,
    ) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection>
    + Clone
    + Send
    + Sync
    + 'static {
        let identity = self.clone();
        let secret = Arc::new(secret);
        warp::path!("msi" / "token")
            .and(warp::get())
            .and(warp::query::<std::collections::HashMap<String, String>>())
            .and(warp::header::optional::<String>("x-identity-header"))
            .map(
                move |q: std::collections::HashMap<String, String>, header: Option<String>| {
                    identity.msi_response(&secret, &q, header.as_deref())
                },
            )
    }

    fn msi_response(
        &self,
        secret: &str,
        q: &std::collections::HashMap<String, String>,
        header: Option<&str>,
    ) -> warp::reply::Response {
        use warp::Reply;
        let err = |status: StatusCode, code: &str, msg: &str| {
            warp::reply::with_status(
                warp::reply::json(&serde_json::json!({"statusCode": status.as_u16(), "message": msg, "correlationId": uuid::Uuid::new_v4().to_string(), "error": code})),
                status,
            )
            .into_response()
        };
        if header != Some(secret) {
            return err(
                StatusCode::UNAUTHORIZED,
                "invalid_request",
                "The X-IDENTITY-HEADER header is missing or does not match IDENTITY_HEADER.",
            );
        }
        match q.get("api-version").map(String::as_str) {
            Some("2019-08-01") => {}
            _ => {
                return err(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "api-version must be 2019-08-01.",
                );
            }
        }
        let Some(resource) = q.get("resource").filter(|r| !r.is_empty()) else {
            return err(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "The resource parameter is required.",
            );
        };
        for key in [
            "client_id",
            "object_id",
            "mi_res_id",
            "msi_res_id",
            "principal_id",
        ] {
            if let Some(v) = q.get(key) {
                let known = v.eq_ignore_ascii_case(&self.client_id)
                    || v.eq_ignore_ascii_case(&self.object_id);
                if !known {
                    // App Service answers 400 for an identity not assigned to the app.
                    return err(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        "The requested identity has not been assigned to this resource.",
                    );
                }
            }
        }
        let token = self.issue(resource);
        let expires_on = now_secs() + TOKEN_LIFETIME_SECS;
        warp::reply::json(&serde_json::json!({
            "access_token": token,
            "expires_on": expires_on.to_string(),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": self.client_id,
        }))
        .into_response()
    }
}

/// The claims of a token without checking its signature (to name its tenant and client in an error).
pub fn peek_claims(token: &str) -> Option<Claims> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn parse_hex_key(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, chunk) in text.as_bytes().chunks(2).enumerate() {
        let s = std::str::from_utf8(chunk).ok()?;
        key[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> Identity {
        Identity::from_key([7u8; 32])
    }

    #[test]
    fn issued_token_verifies_with_and_without_slash_and_default() {
        let i = id();
        let t = i.issue("https://management.azure.com/.default");
        let h = format!("Bearer {t}");
        let c = i.verify(Some(&h), "https://management.azure.com/").unwrap();
        assert_eq!(c.aud, "https://management.azure.com");
        assert_eq!(
            c.iss,
            format!("https://sts.windows.net/{DEFAULT_TENANT_ID}/")
        );
        assert_eq!(c.exp - c.iat, TOKEN_LIFETIME_SECS + 5);
        assert!(i.verify(Some(&h), "https://management.azure.com").is_ok());
        let t2 = i.issue("https://management.azure.com/");
        assert!(
            i.verify(
                Some(&format!("bearer {t2}")),
                "https://management.azure.com"
            )
            .is_ok()
        );
    }

    #[test]
    fn refuses_wrong_audience_expired_bad_signature_and_scheme() {
        let i = id();
        let t = i.issue("https://storage.azure.com");
        assert!(matches!(
            i.verify(Some(&format!("Bearer {t}")), "https://management.azure.com"),
            Err(AuthError::Audience { .. })
        ));
        let e = i.issue_with_lifetime("https://management.azure.com", -10);
        assert!(matches!(
            i.verify(Some(&format!("Bearer {e}")), "https://management.azure.com"),
            Err(AuthError::Expired(_))
        ));
        let other = Identity::from_key([8u8; 32]).issue("https://management.azure.com");
        assert_eq!(
            i.verify(
                Some(&format!("Bearer {other}")),
                "https://management.azure.com"
            ),
            Err(AuthError::BadSignature)
        );
        assert!(matches!(
            i.verify(Some("Basic abc"), "x"),
            Err(AuthError::Scheme(_))
        ));
        assert_eq!(i.verify(None, "x"), Err(AuthError::Missing));
        assert_eq!(i.verify(Some("Bearer a.b"), "x"), Err(AuthError::Malformed));
    }

    #[test]
    fn key_is_created_once_with_0600_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::load_or_create(dir.path()).unwrap();
        let meta = fs::metadata(dir.path().join(KEY_FILE)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let b = Identity::load_or_create(dir.path()).unwrap();
        let t = a.issue("https://storage.azure.com");
        assert!(
            b.verify(Some(&format!("Bearer {t}")), "https://storage.azure.com")
                .is_ok()
        );
        fs::write(dir.path().join(KEY_FILE), "zz").unwrap();
        assert!(matches!(
            Identity::load_or_create(dir.path()),
            Err(IdentityError::Malformed { .. })
        ));
    }
}
