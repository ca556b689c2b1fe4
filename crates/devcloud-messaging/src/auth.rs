//! Request authentication for the local services: a pluggable bearer-token verifier, so the servers
//! can use `devcloud_core`'s identity (or a test double) without depending on how tokens are made.

use std::sync::Arc;

/// Audience of Service Bus data-plane tokens.
pub const SERVICEBUS_AUDIENCE: &str = "https://servicebus.azure.net";
/// Audience of Event Grid data-plane tokens.
pub const EVENTGRID_AUDIENCE: &str = "https://eventgrid.azure.net";
/// Audience of Azure Storage tokens (used when the blob watcher reads Azurite).
pub const STORAGE_AUDIENCE: &str = "https://storage.azure.com";

/// Verifies a bearer token (the text after `Bearer `) for an audience.
///
/// Implementations answer the caller's object id (`oid`, what role assignments name; `None` when the
/// token names none) or `Err(reason)` for a missing, malformed, expired or wrong-audience token; the
/// reason ends up in the service's error body (never the token itself).
pub trait TokenVerifier: Send + Sync + 'static {
    fn verify(&self, token: &str, audience: &str) -> Result<Option<String>, String>;
}

/// Shared handle to a verifier.
pub type Verifier = Arc<dyn TokenVerifier>;

impl<F> TokenVerifier for F
where
    F: Fn(&str, &str) -> Result<Option<String>, String> + Send + Sync + 'static,
{
    fn verify(&self, token: &str, audience: &str) -> Result<Option<String>, String> {
        self(token, audience)
    }
}

/// Accepts exactly one fixed token for any audience, naming no principal; for tests and for wiring
/// before an identity exists.
pub struct StaticToken(pub String);

impl TokenVerifier for StaticToken {
    fn verify(&self, token: &str, _audience: &str) -> Result<Option<String>, String> {
        if !self.0.is_empty() && token == self.0 {
            Ok(None)
        } else {
            Err("the token is not valid".to_string())
        }
    }
}

/// Extracts the token from an `Authorization: Bearer <token>` header value.
pub fn bearer_token(header: Option<&str>) -> Option<&str> {
    let value = header?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        let token = rest.trim();
        (!token.is_empty()).then_some(token)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer_token(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer_token(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer_token(Some("Basic abc")), None);
        assert_eq!(bearer_token(Some("Bearer ")), None);
        assert_eq!(bearer_token(None), None);
    }

    #[test]
    fn static_token() {
        let v = StaticToken("t1".into());
        assert!(v.verify("t1", SERVICEBUS_AUDIENCE).is_ok());
        assert!(v.verify("t2", SERVICEBUS_AUDIENCE).is_err());
        assert!(StaticToken(String::new()).verify("", "x").is_err());
    }
}

/// A verifier backed by the devcloud identity (HS256 tokens from the local managed-identity endpoint).
pub fn identity_verifier(identity: devcloud_core::Identity) -> Verifier {
    Arc::new(move |token: &str, audience: &str| {
        identity
            .verify(Some(&format!("Bearer {token}")), audience)
            .map(|claims| Some(claims.oid))
            .map_err(|e| e.to_string())
    })
}

#[cfg(test)]
mod identity_tests {
    use super::*;

    #[test]
    fn identity_tokens() {
        let id = devcloud_core::Identity::from_key([9u8; 32]);
        let v = identity_verifier(id.clone());
        let token = id.issue(SERVICEBUS_AUDIENCE);
        assert_eq!(
            v.verify(&token, SERVICEBUS_AUDIENCE),
            Ok(Some(devcloud_core::identity::DEFAULT_OBJECT_ID.to_owned()))
        );
        assert!(v.verify(&token, EVENTGRID_AUDIENCE).is_err());
        let other = devcloud_core::Identity::from_key([1u8; 32]).issue(SERVICEBUS_AUDIENCE);
        assert!(v.verify(&other, SERVICEBUS_AUDIENCE).is_err());
    }
}
