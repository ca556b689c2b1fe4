//! A stand-in for the Microsoft Entra ID v2.0 token endpoint (`POST /{tenant}/oauth2/v2.0/token`,
//! client credentials with a secret or a federated managed-identity assertion) for app registrations
//! that live in several tenants, plus the OpenID metadata MSAL reads first.
//!
//! Error codes and texts are Entra's as remembered from its answers (`[mem]`): the AADSTS numbers are
//! the ones Entra's error-code reference lists for these failures. Tokens are signed by the devcloud
//! [`Identity`] key, with the `tid`/`iss` of the tenant asked for.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use warp::Filter;
use warp::http::StatusCode;

use crate::identity::{Identity, Principal, TOKEN_LIFETIME_SECS, now_secs, resource_from_scope};

/// The audience of a managed-identity token used as a federated credential.
pub const TOKEN_EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";
/// `client_assertion_type` of a JWT client assertion (RFC 7523 §2.2; the `grant-type:jwt-bearer` URN is
/// a grant type, not an assertion type).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The app registrations the token endpoint knows.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EntraConfig {
    pub apps: Vec<EntraApp>,
    /// Tenants that exist besides the identity's and the apps' (those of other subscriptions): a token
    /// request there finds the tenant, and then no app consented in it.
    pub tenants: Vec<String>,
}

/// A (multi-tenant) app registration: the tenants it has a service principal in, and its credentials.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EntraApp {
    /// Application (client) id.
    pub client_id: String,
    /// Tenants where the app has a service principal (its home tenant and those that consented).
    pub tenants: Vec<String>,
    /// A client secret, if the app has one.
    pub secret: Option<String>,
    /// Federated identity credentials: tokens for `api://AzureADTokenExchange` from `issuer` with
    /// subject `subject` (a managed identity's object id) stand for the app.
    pub federated: Vec<FederatedCredential>,
}

/// One federated identity credential of an app.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FederatedCredential {
    /// `https://login.microsoftonline.com/{tenant}/v2.0` (or the v1 `https://sts.windows.net/{tenant}/`:
    /// both name the same tenant, as the managed identity's token may carry either).
    pub issuer: String,
    /// The managed identity's object (principal) id.
    pub subject: String,
}

impl EntraApp {
    /// The object id of the app's service principal in `tenant` (stable, derived from both ids).
    pub fn object_id(&self, tenant: &str) -> String {
        let h = Sha256::digest(format!(
            "{}|{}",
            tenant.to_lowercase(),
            self.client_id.to_lowercase()
        ));
        let mut b = [0u8; 16];
        b.copy_from_slice(&h[..16]);
        uuid::Builder::from_random_bytes(b).into_uuid().to_string()
    }
}

/// An Entra error answer: `{error, error_description, error_codes, timestamp, trace_id, correlation_id, error_uri}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntraError {
    pub status: u16,
    pub error: &'static str,
    pub aadsts: u32,
    pub message: String,
}

impl EntraError {
    fn new(status: u16, error: &'static str, aadsts: u32, message: impl Into<String>) -> Self {
        Self {
            status,
            error,
            aadsts,
            message: message.into(),
        }
    }

    /// The JSON body Entra answers with.
    pub fn body(&self) -> serde_json::Value {
        let trace = uuid::Uuid::new_v4().to_string();
        let correlation = uuid::Uuid::new_v4().to_string();
        let ts = chrono_like_now();
        json!({
            "error": self.error,
            "error_description": format!("AADSTS{}: {} Trace ID: {trace} Correlation ID: {correlation} Timestamp: {ts}", self.aadsts, self.message),
            "error_codes": [self.aadsts],
            "timestamp": ts,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": format!("https://login.microsoftonline.com/error?code={}", self.aadsts),
        })
    }
}

fn chrono_like_now() -> String {
    // Seconds since the epoch as an RFC 3339 UTC time, without a date crate.
    let s = now_secs();
    let (days, rem) = (s / 86_400, s % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The token endpoint: the identity that signs, the tenants it knows and the app registrations.
#[derive(Clone)]
pub struct Entra {
    identity: Identity,
    config: Arc<EntraConfig>,
}

impl Entra {
    pub fn new(identity: Identity, config: EntraConfig) -> Self {
        Self {
            identity,
            config: Arc::new(config),
        }
    }

    /// Every tenant that exists here: the identity's, the configured ones and those of the apps.
    pub fn knows_tenant(&self, tenant: &str) -> bool {
        tenant.eq_ignore_ascii_case(&self.identity.tenant_id)
            || self
                .config
                .tenants
                .iter()
                .any(|t| t.eq_ignore_ascii_case(tenant))
            || self
                .config
                .apps
                .iter()
                .any(|a| a.tenants.iter().any(|t| t.eq_ignore_ascii_case(tenant)))
    }

    /// Answers a client-credentials token request for `tenant` with the form fields `form`:
    /// `Ok((access_token, expires_in))` or Entra's error.
    pub fn token(
        &self,
        tenant: &str,
        form: &HashMap<String, String>,
    ) -> Result<(String, u64), EntraError> {
        let field = |k: &str| form.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let missing = |k: &str| {
            // [mem] AADSTS900144.
            EntraError::new(
                400,
                "invalid_request",
                900144,
                format!("The request body must contain the following parameter: '{k}'."),
            )
        };
        let grant = field("grant_type").ok_or_else(|| missing("grant_type"))?;
        if grant != "client_credentials" {
            // [mem] AADSTS70003.
            return Err(EntraError::new(
                400,
                "unsupported_grant_type",
                70003,
                format!("The app requested an unsupported grant type '{grant}'."),
            ));
        }
        let client_id = field("client_id").ok_or_else(|| missing("client_id"))?;
        let scope = field("scope").ok_or_else(|| missing("scope"))?;
        if !scope.ends_with("/.default") || scope.contains(' ') {
            // [mem] AADSTS1002012.
            return Err(EntraError::new(
                400,
                "invalid_scope",
                1002012,
                format!(
                    "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
                ),
            ));
        }
        let tenant_ok = uuid::Uuid::parse_str(tenant).is_ok() && self.knows_tenant(tenant);
        if !tenant_ok {
            // [mem] AADSTS90002.
            return Err(EntraError::new(
                400,
                "invalid_request",
                90002,
                format!(
                    "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
                ),
            ));
        }
        let app = self.config.apps.iter().find(|a| {
            a.client_id.eq_ignore_ascii_case(client_id)
                && a.tenants.iter().any(|t| t.eq_ignore_ascii_case(tenant))
        });
        let Some(app) = app else {
            // [mem] AADSTS700016.
            return Err(EntraError::new(
                400,
                "unauthorized_client",
                700016,
                format!(
                    "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
                ),
            ));
        };
        match (field("client_secret"), field("client_assertion")) {
            (Some(secret), None) => {
                if app.secret.as_deref() != Some(secret) {
                    // [mem] AADSTS7000215.
                    return Err(EntraError::new(
                        401,
                        "invalid_client",
                        7000215,
                        format!(
                            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.",
                            app.client_id
                        ),
                    ));
                }
            }
            (None, Some(assertion)) => {
                self.check_assertion(app, field("client_assertion_type"), assertion)?
            }
            (Some(_), Some(_)) => {
                // INVENTED: Entra's answer to a secret and an assertion at once is unverified.
                return Err(EntraError::new(
                    401,
                    "invalid_client",
                    7000216,
                    "Only one of 'client_secret' and 'client_assertion' may be sent.",
                ));
            }
            (None, None) => {
                // [mem] AADSTS7000218.
                return Err(EntraError::new(
                    401,
                    "invalid_client",
                    7000218,
                    "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
                ));
            }
        }
        let object_id = app.object_id(tenant);
        let principal = Principal {
            tenant_id: tenant,
            object_id: &object_id,
            client_id: &app.client_id,
        };
        let resource = resource_from_scope(scope);
        let token = self
            .identity
            .issue_for(&principal, resource, TOKEN_LIFETIME_SECS as i64);
        Ok((token, TOKEN_LIFETIME_SECS - 1))
    }

    /// A federated credential: a devcloud managed-identity token for `api://AzureADTokenExchange`
    /// whose issuer and subject one of the app's federated credentials names.
    fn check_assertion(
        &self,
        app: &EntraApp,
        assertion_type: Option<&str>,
        assertion: &str,
    ) -> Result<(), EntraError> {
        if assertion_type != Some(JWT_BEARER) {
            // INVENTED: Entra's exact answer to another client_assertion_type is unverified.
            return Err(EntraError::new(
                400,
                "invalid_request",
                70002,
                format!("The client_assertion_type must be '{JWT_BEARER}'."),
            ));
        }
        let claims = match self
            .identity
            .verify_bare(assertion, TOKEN_EXCHANGE_AUDIENCE)
        {
            Ok(c) => c,
            Err(crate::AuthError::Expired(_)) => {
                // [mem] AADSTS700024.
                return Err(EntraError::new(
                    400,
                    "invalid_client",
                    700024,
                    "Client assertion is not within its valid time range.",
                ));
            }
            Err(crate::AuthError::Audience { found, .. }) => {
                // [mem] AADSTS700212.
                return Err(EntraError::new(
                    400,
                    "invalid_client",
                    700212,
                    format!(
                        "No matching federated identity record found for presented assertion audience '{found}'."
                    ),
                ));
            }
            Err(_) => {
                // [mem] AADSTS50027.
                return Err(EntraError::new(
                    400,
                    "invalid_request",
                    50027,
                    "JWT token is invalid or malformed.",
                ));
            }
        };
        let issuers = [
            format!("https://login.microsoftonline.com/{}/v2.0", claims.tid),
            format!("https://sts.windows.net/{}/", claims.tid),
        ];
        let issuer_known = app.federated.iter().any(|f| {
            issuers
                .iter()
                .any(|i| i.eq_ignore_ascii_case(f.issuer.trim()))
        });
        if !issuer_known {
            // [mem] AADSTS700211.
            return Err(EntraError::new(
                400,
                "invalid_client",
                700211,
                format!(
                    "No matching federated identity record found for presented assertion issuer '{}'.",
                    claims.iss
                ),
            ));
        }
        let matched = app.federated.iter().any(|f| {
            issuers
                .iter()
                .any(|i| i.eq_ignore_ascii_case(f.issuer.trim()))
                && f.subject.eq_ignore_ascii_case(&claims.sub)
        });
        if !matched {
            // [mem] AADSTS700213.
            return Err(EntraError::new(
                400,
                "invalid_client",
                700213,
                format!(
                    "No matching federated identity record found for presented assertion subject '{}'.",
                    claims.sub
                ),
            ));
        }
        Ok(())
    }

    /// The token endpoint and OpenID metadata as a warp filter:
    /// `POST /{tenant}/oauth2/v2.0/token` and `GET /{tenant}/v2.0/.well-known/openid-configuration`.
    pub fn filter(
        &self,
    ) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection>
    + Clone
    + Send
    + Sync
    + 'static {
        use warp::Reply;
        let me = self.clone();
        let token = warp::path!(String / "oauth2" / "v2.0" / "token")
            .and(warp::post())
            .and(warp::body::form::<HashMap<String, String>>())
            .map(move |tenant: String, form: HashMap<String, String>| {
                match me.token(&tenant, &form) {
                    Ok((access_token, expires_in)) => warp::reply::json(&json!({
                        "token_type": "Bearer",
                        "expires_in": expires_in,
                        "ext_expires_in": expires_in,
                        "access_token": access_token,
                    }))
                    .into_response(),
                    Err(e) => warp::reply::with_status(
                        warp::reply::json(&e.body()),
                        StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
                    )
                    .into_response(),
                }
            });
        let me = self.clone();
        let metadata = warp::path!(String / "v2.0" / ".well-known" / "openid-configuration")
            .and(warp::get())
            .and(warp::host::optional())
            .map(move |tenant: String, host: Option<warp::host::Authority>| {
                if !me.knows_tenant(&tenant) {
                    let e = EntraError::new(
                        400,
                        "invalid_tenant",
                        90002,
                        format!("Tenant '{tenant}' not found."),
                    );
                    return warp::reply::with_status(
                        warp::reply::json(&e.body()),
                        StatusCode::BAD_REQUEST,
                    )
                    .into_response();
                }
                let base = format!(
                    "https://{}",
                    host.map(|h| h.to_string())
                        .unwrap_or_else(|| "127.0.0.1".into())
                );
                warp::reply::json(&json!({
                    "token_endpoint": format!("{base}/{tenant}/oauth2/v2.0/token"),
                    "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
                    "jwks_uri": format!("{base}/{tenant}/discovery/v2.0/keys"),
                    "response_modes_supported": ["query", "fragment", "form_post"],
                    "subject_types_supported": ["pairwise"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                    "scopes_supported": ["openid", "profile", "email", "offline_access"],
                    "issuer": format!("https://login.microsoftonline.com/{tenant}/v2.0"),
                    "request_uri_parameter_supported": false,
                    "authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/authorize"),
                    "device_authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/devicecode"),
                    "end_session_endpoint": format!("{base}/{tenant}/oauth2/v2.0/logout"),
                    "tenant_region_scope": "EU",
                    "cloud_instance_name": "microsoftonline.com",
                }))
                .into_response()
            });
        token.or(metadata).unify()
    }
}
