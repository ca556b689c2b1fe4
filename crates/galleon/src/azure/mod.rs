//! Thin clients for the Azure services galleon touches: Resource Manager, Blob Storage and Service Bus,
//! over reqwest with bearer tokens from the managed identity. Errors are sorted once, here, into transient
//! (retry later, at `Retry-After`) and permanent (report, with Azure's code and message verbatim).

pub mod arm;
pub mod blob;
pub mod bus;

use std::{sync::Arc, time::Duration};

use azure_core::credentials::TokenCredential;
use reqwest::{StatusCode, header::HeaderMap};
use serde_json::Value;

/// Resources tokens are requested for.
pub const ARM_RESOURCE: &str = "https://management.azure.com";
pub const SERVICE_BUS_RESOURCE: &str = "https://servicebus.azure.net";

/// An Azure call that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AzureError {
    /// Worth retrying: throttling (429), server errors, timeouts, connection failures.
    #[error("{service} answered {status}: {code}: {message}")]
    Transient {
        service: &'static str,
        status: u16,
        code: String,
        message: String,
        retry_after: Option<Duration>,
    },
    /// Will fail the same way again: the request or the resource is wrong.
    #[error("{service} refused the request ({status}): {code}: {message}")]
    Permanent {
        service: &'static str,
        status: u16,
        code: String,
        message: String,
        target: Option<String>,
    },
    /// No token could be had; retried, since identity endpoints have hiccups too.
    #[error("no access token for {resource}: {message}")]
    Token { resource: String, message: String },
}

impl AzureError {
    pub fn is_transient(&self) -> bool {
        !matches!(self, AzureError::Permanent { .. })
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AzureError::Transient { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Azure's error code, verbatim.
    pub fn code(&self) -> &str {
        match self {
            AzureError::Transient { code, .. } | AzureError::Permanent { code, .. } => code,
            AzureError::Token { .. } => "TokenUnavailable",
        }
    }

    pub fn message(&self) -> String {
        match self {
            AzureError::Transient { message, .. } | AzureError::Permanent { message, .. } => {
                message.clone()
            }
            AzureError::Token { message, .. } => message.clone(),
        }
    }

    pub fn target(&self) -> Option<String> {
        match self {
            AzureError::Permanent { target, .. } => target.clone(),
            _ => None,
        }
    }

    /// A connection-level failure (no HTTP answer).
    pub fn unreachable(service: &'static str, error: &reqwest::Error) -> AzureError {
        AzureError::Transient {
            service,
            status: 0,
            code: if error.is_timeout() {
                "Timeout"
            } else {
                "ConnectionFailed"
            }
            .to_owned(),
            message: crate::error_chain(error),
            retry_after: None,
        }
    }
}

/// `Retry-After` as seconds or an HTTP date (`x-ms-retry-after-ms` preferred when present).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    if let Some(ms) = headers
        .get("x-ms-retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        return Some(Duration::from_millis(ms));
    }
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// Sorts a non-success answer: ARM's `{"error":{code,message,target}}` (or Compute's bare `{code,message}`),
/// Storage's XML `<Error><Code>…`, or just the status.
pub fn classify(
    service: &'static str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> AzureError {
    let (code, message, target) = error_fields(body).unwrap_or_else(|| {
        (
            headers
                .get("x-ms-error-code")
                .and_then(|v| v.to_str().ok())
                .unwrap_or(status.canonical_reason().unwrap_or("Error"))
                .to_owned(),
            String::from_utf8_lossy(&body[..body.len().min(500)])
                .trim()
                .to_owned(),
            None,
        )
    });
    let transient = status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        // A conditional read found the blob changed under it (an upload still in progress): look again.
        || status == StatusCode::PRECONDITION_FAILED
        || status.is_server_error()
        // ARM answers 409 while another operation on the resource is in flight.
        || (status == StatusCode::CONFLICT && matches!(code.as_str(), "OperationNotAllowed" | "AnotherOperationInProgress" | "Conflict"));
    if transient {
        AzureError::Transient {
            service,
            status: status.as_u16(),
            code,
            message,
            retry_after: retry_after(headers),
        }
    } else {
        AzureError::Permanent {
            service,
            status: status.as_u16(),
            code,
            message,
            target,
        }
    }
}

fn error_fields(body: &[u8]) -> Option<(String, String, Option<String>)> {
    if let Ok(json) = serde_json::from_slice::<Value>(body) {
        let error = json.get("error").unwrap_or(&json);
        let code = error.get("code")?.as_str()?.to_owned();
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let target = error
            .get("target")
            .and_then(Value::as_str)
            .map(str::to_owned);
        return Some((code, message, target));
    }
    let text = std::str::from_utf8(body).ok()?;
    let between = |tag: &str| {
        let open = format!("<{tag}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find(&format!("</{tag}>"))? + start;
        Some(text[start..end].to_owned())
    };
    Some((
        between("Code")?,
        between("Message").unwrap_or_default(),
        None,
    ))
}

/// Bearer tokens for the resources galleon calls, from one credential (cached by the credential).
#[derive(Clone, Debug)]
pub struct Tokens {
    credential: Arc<dyn TokenCredential>,
}

impl Tokens {
    pub fn new(credential: Arc<dyn TokenCredential>) -> Tokens {
        Tokens { credential }
    }

    /// The managed identity of the function app (`IDENTITY_ENDPOINT`/`IDENTITY_HEADER` in Azure Functions,
    /// and in the local cloud).
    pub fn managed_identity() -> Result<Tokens, AzureError> {
        let credential = azure_identity::ManagedIdentityCredential::new(None).map_err(|e| {
            AzureError::Token {
                resource: "any".into(),
                message: crate::error_chain(&e),
            }
        })?;
        Ok(Tokens::new(credential))
    }

    /// The credential itself, for SDK clients that take one.
    pub fn credential(&self) -> Arc<dyn TokenCredential> {
        self.credential.clone()
    }

    pub async fn bearer(&self, resource: &str) -> Result<String, AzureError> {
        let scope = format!("{resource}/.default");
        let token = self
            .credential
            .get_token(&[scope.as_str()], None)
            .await
            .map_err(|e| AzureError::Token {
                resource: resource.to_owned(),
                message: crate::error_chain(&e),
            })?;
        Ok(format!("Bearer {}", token.token.secret()))
    }
}

/// The HTTP client every Azure call shares: timeouts, no redirects (ARM's Location is polled, not followed).
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("galleon/", env!("CARGO_PKG_VERSION")))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            if let Ok(v) = v.parse() {
                h.insert(*k, v);
            }
        }
        h
    }

    #[test]
    fn classification_table() {
        let throttled = classify(
            "ARM",
            StatusCode::TOO_MANY_REQUESTS,
            &headers(&[("retry-after", "17")]),
            br#"{"code":"OperationNotAllowed","message":"too many requests","details":[]}"#,
        );
        assert!(throttled.is_transient());
        assert_eq!(throttled.retry_after(), Some(Duration::from_secs(17)));
        assert_eq!(throttled.code(), "OperationNotAllowed");

        let immutable = classify(
            "ARM",
            StatusCode::CONFLICT,
            &HeaderMap::new(),
            br#"{"error":{"code":"PropertyChangeNotAllowed","message":"Changing property 'osType' is not allowed.","target":"osType"}}"#,
        );
        assert!(!immutable.is_transient());
        assert_eq!(immutable.code(), "PropertyChangeNotAllowed");
        assert_eq!(immutable.target().as_deref(), Some("osType"));

        let storage = classify(
            "Blob Storage",
            StatusCode::NOT_FOUND,
            &HeaderMap::new(),
            b"<?xml version=\"1.0\"?><Error><Code>BlobNotFound</Code><Message>The specified blob does not exist.</Message></Error>",
        );
        assert_eq!(storage.code(), "BlobNotFound");
        assert!(!storage.is_transient());

        let changed = classify(
            "Blob Storage",
            StatusCode::PRECONDITION_FAILED,
            &HeaderMap::new(),
            b"<Error><Code>ConditionNotMet</Code></Error>",
        );
        assert!(
            changed.is_transient(),
            "a blob that changed while being read is read again"
        );

        let unavailable = classify(
            "ARM",
            StatusCode::SERVICE_UNAVAILABLE,
            &headers(&[("x-ms-retry-after-ms", "1500")]),
            b"",
        );
        assert!(unavailable.is_transient());
        assert_eq!(unavailable.retry_after(), Some(Duration::from_millis(1500)));
        assert_eq!(unavailable.code(), "Service Unavailable");
    }

    #[test]
    fn retry_after_as_http_date() {
        let later = (chrono::Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
        let wait = retry_after(&headers(&[("retry-after", later.as_str())])).unwrap_or_default();
        assert!(
            wait > Duration::from_secs(100) && wait <= Duration::from_secs(120),
            "{wait:?}"
        );
    }
}
