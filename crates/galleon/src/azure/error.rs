//! The one error of every Azure call, sorted once into transient and permanent, with what callers branch
//! on as predicates (never by comparing code strings) and the request ids Azure gave the answer.

use std::{fmt, time::Duration};

use reqwest::{StatusCode, header::HeaderMap};
use serde_json::Value;

/// The ids Azure gives an answer (`x-ms-request-id`, `x-ms-correlation-request-id`), for support cases and
/// for finding the call in the activity log. Empty when there was no answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestIds {
    pub request_id: Option<String>,
    pub correlation_request_id: Option<String>,
}

impl RequestIds {
    pub fn from_headers(headers: &HeaderMap) -> RequestIds {
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        RequestIds {
            request_id: get("x-ms-request-id"),
            correlation_request_id: get("x-ms-correlation-request-id"),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.request_id.is_none() && self.correlation_request_id.is_none()
    }
}

/// Shown after an error's message: ` (x-ms-request-id: …, x-ms-correlation-request-id: …)`, or nothing.
impl fmt::Display for RequestIds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return Ok(());
        }
        let mut parts = Vec::new();
        if let Some(id) = &self.request_id {
            parts.push(format!("x-ms-request-id: {id}"));
        }
        if let Some(id) = &self.correlation_request_id {
            parts.push(format!("x-ms-correlation-request-id: {id}"));
        }
        write!(f, " ({})", parts.join(", "))
    }
}

/// An Azure call that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AzureError {
    /// Worth retrying: throttling (429), server errors, timeouts, connection failures, a resource still busy.
    #[error("{service} answered {status}: {code}: {message}{ids}")]
    Transient {
        service: &'static str,
        status: u16,
        code: String,
        message: String,
        retry_after: Option<Duration>,
        ids: Box<RequestIds>,
    },
    /// Will fail the same way again: the request or the resource is wrong.
    #[error("{service} refused the request ({status}): {code}: {message}{ids}")]
    Permanent {
        service: &'static str,
        status: u16,
        code: String,
        message: String,
        target: Option<String>,
        ids: Box<RequestIds>,
    },
    /// No token could be had for now (the identity endpoint failed or was unreachable); retried.
    #[error("no access token for {resource}: {message}")]
    Token { resource: String, message: String },
    /// The identity endpoint says the managed identity galleon asks for is not there (none assigned, or the
    /// client id is unknown): no retry will help.
    #[error("no managed identity {identity} for {resource}: {message}")]
    IdentityMissing {
        resource: String,
        /// `system-assigned`, or `client id <guid>`.
        identity: String,
        message: String,
    },
    /// A URL galleon was given points at a host its tokens must not go to.
    #[error("{service}: refused to send a token to {url}: {reason}")]
    ForeignHost {
        service: &'static str,
        /// The URL without its query.
        url: String,
        reason: String,
    },
}

/// What kind of failure, for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 429: too many requests.
    Throttled,
    /// 404, or a `*NotFound` code.
    NotFound,
    /// 412: the blob changed under an ETag-pinned read or write.
    ConditionNotMet,
    /// 409 while another operation on the resource (or one it depends on) is still running.
    ConflictInProgress,
    /// 409: a definition with the same (publisher, offer, sku) already exists in the gallery.
    IdentifierClash,
    /// 409: a resource of that name already exists in another location.
    LocationClash,
    /// 409: a lock on the scope forbids the write.
    Locked,
    /// Any other 409.
    Conflict,
    /// A copy into the blob is still running (galleon's own code `CopyPending`).
    CopyPending,
    /// Something Azure is making is not ready yet (galleon's own code `Provisioning`).
    Waiting,
    /// No HTTP answer (connection failure, timeout).
    Unreachable,
    /// 5xx or 408.
    ServerError,
    /// No token for now.
    Token,
    /// No such managed identity.
    IdentityMissing,
    /// A URL on a host tokens must not go to.
    ForeignHost,
    /// Anything else (400, 401, 403, …).
    Other,
}

/// galleon's own codes for waits it reports as transient errors.
const WAITING: &str = "Provisioning";
const COPY_PENDING: &str = "CopyPending";

/// 409 codes that always mean "busy, try again" (Azure's own retry guidance and the SDKs' retry lists).
const BUSY_CODES: &[&str] = &[
    "AnotherOperationInProgress",
    "RetryableError",
    "ReferencedResourceNotProvisioned",
    // Storage: a copy into the blob is still pending.
    "PendingCopyOperation",
];

/// 409 codes that mean "busy" only when the message says an operation is in progress (Compute answers
/// `OperationNotAllowed` both for that and for identifier clashes and quota).
const MAYBE_BUSY_CODES: &[&str] = &["Conflict", "OperationNotAllowed", "ConflictError"];

fn says_in_progress(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "in progress",
        "another operation",
        "currently being updated",
        "currently being created",
        "still being created",
        "still being provisioned",
    ]
    .iter()
    .any(|w| m.contains(w))
}

fn conflict_kind(code: &str, message: &str) -> Kind {
    let m = message.to_ascii_lowercase();
    if BUSY_CODES.contains(&code) || (MAYBE_BUSY_CODES.contains(&code) && says_in_progress(message))
    {
        Kind::ConflictInProgress
    } else if code == "InvalidResourceLocation"
        || (m.contains("already exists in location") && m.contains("cannot be created"))
    {
        Kind::LocationClash
    } else if code == "GalleryImageIdentifierAlreadyExists"
        || (m.contains("identified by") && m.contains("already exists"))
    {
        Kind::IdentifierClash
    } else if code == "ScopeLocked" {
        Kind::Locked
    } else {
        Kind::Conflict
    }
}

impl AzureError {
    /// A transient error galleon itself decides on (no HTTP answer behind it).
    pub fn transient(service: &'static str, code: &str, message: impl Into<String>) -> AzureError {
        AzureError::Transient {
            service,
            status: 0,
            code: code.to_owned(),
            message: message.into(),
            retry_after: None,
            ids: Box::default(),
        }
    }

    /// A permanent error galleon itself decides on.
    pub fn permanent(service: &'static str, code: &str, message: impl Into<String>) -> AzureError {
        AzureError::Permanent {
            service,
            status: 0,
            code: code.to_owned(),
            message: message.into(),
            target: None,
            ids: Box::default(),
        }
    }

    /// Something Azure is still making: look again at the follow-up interval ([`Kind::Waiting`]).
    pub fn waiting(service: &'static str, message: impl Into<String>) -> AzureError {
        AzureError::transient(service, WAITING, message)
    }

    /// A copy into a blob is still running ([`Kind::CopyPending`]).
    pub fn copy_pending(message: impl Into<String>) -> AzureError {
        AzureError::transient("Blob Storage", COPY_PENDING, message)
    }

    pub fn kind(&self) -> Kind {
        let (status, code, message) = match self {
            AzureError::Transient {
                status,
                code,
                message,
                ..
            }
            | AzureError::Permanent {
                status,
                code,
                message,
                ..
            } => (*status, code.as_str(), message.as_str()),
            AzureError::Token { .. } => return Kind::Token,
            AzureError::IdentityMissing { .. } => return Kind::IdentityMissing,
            AzureError::ForeignHost { .. } => return Kind::ForeignHost,
        };
        match (status, code) {
            (_, WAITING) => Kind::Waiting,
            (_, COPY_PENDING) => Kind::CopyPending,
            (429, _) => Kind::Throttled,
            (412, _) | (_, "ConditionNotMet") => Kind::ConditionNotMet,
            (404, _) => Kind::NotFound,
            (_, c) if c.ends_with("NotFound") => Kind::NotFound,
            (409, c) => conflict_kind(c, message),
            (0, "Timeout" | "ConnectionFailed") => Kind::Unreachable,
            (408, _) => Kind::ServerError,
            (s, _) if s >= 500 => Kind::ServerError,
            _ => Kind::Other,
        }
    }

    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            AzureError::Transient { .. } | AzureError::Token { .. }
        )
    }

    pub fn is_throttled(&self) -> bool {
        self.kind() == Kind::Throttled
    }

    pub fn is_not_found(&self) -> bool {
        self.kind() == Kind::NotFound
    }

    /// The blob changed under an ETag-pinned read (an upload still being written).
    pub fn is_condition_not_met(&self) -> bool {
        self.kind() == Kind::ConditionNotMet
    }

    /// 409 because another operation on the resource is still running.
    pub fn is_conflict_in_progress(&self) -> bool {
        self.kind() == Kind::ConflictInProgress
    }

    pub fn is_copy_pending(&self) -> bool {
        self.kind() == Kind::CopyPending
    }

    /// A wait for something Azure is still making, not a failure (does not count towards attempts).
    pub fn is_waiting(&self) -> bool {
        self.kind() == Kind::Waiting
    }

    pub fn is_identity_missing(&self) -> bool {
        self.kind() == Kind::IdentityMissing
    }

    /// A URL (from an event or an answer) on a host galleon's tokens must not go to.
    pub fn is_foreign_host(&self) -> bool {
        self.kind() == Kind::ForeignHost
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AzureError::Transient { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Azure's error code, verbatim (or galleon's, for failures without an Azure answer).
    pub fn code(&self) -> &str {
        match self {
            AzureError::Transient { code, .. } | AzureError::Permanent { code, .. } => code,
            AzureError::Token { .. } => "TokenUnavailable",
            AzureError::IdentityMissing { .. } => "ManagedIdentityNotFound",
            AzureError::ForeignHost { .. } => "ForeignHost",
        }
    }

    pub fn message(&self) -> String {
        match self {
            AzureError::Transient { message, .. }
            | AzureError::Permanent { message, .. }
            | AzureError::Token { message, .. }
            | AzureError::IdentityMissing { message, .. } => message.clone(),
            AzureError::ForeignHost { url, reason, .. } => format!("{url}: {reason}"),
        }
    }

    pub fn target(&self) -> Option<String> {
        match self {
            AzureError::Permanent { target, .. } => target.clone(),
            _ => None,
        }
    }

    /// The answer's `x-ms-request-id` and `x-ms-correlation-request-id` (empty without an answer).
    pub fn request_ids(&self) -> RequestIds {
        match self {
            AzureError::Transient { ids, .. } | AzureError::Permanent { ids, .. } => {
                (**ids).clone()
            }
            _ => RequestIds::default(),
        }
    }

    /// What to do about it, for failures whose fix galleon knows.
    pub fn advice(&self) -> Option<&'static str> {
        Some(match self.kind() {
            Kind::IdentifierClash => {
                "Another image definition in the gallery already uses this (publisher, offer, sku). Give the manifest a different identifier (or definition name), or publish to the definition that has it."
            }
            Kind::LocationClash => {
                "A resource of that name already exists in another region; Azure cannot move it. Use a new name, or set GALLEON_LOCATION (or the manifest's location) to the region it is in."
            }
            Kind::Locked => {
                "A resource lock forbids the change; remove the lock (or exempt galleon's resource group) and upload the manifest again."
            }
            Kind::IdentityMissing => {
                "Assign the managed identity to the function app (Identity blade: system-assigned on, or add the user-assigned identity), and make GalleonIdentity__clientId name its client id when it is user-assigned; then upload the manifest again."
            }
            Kind::ForeignHost => {
                "Galleon only reads blobs in the storage accounts of GALLEON_STORAGE_ACCOUNTS and only talks to the ARM host of GALLEON_ARM_ENDPOINT; upload into an allowed account, or add the account to the setting."
            }
            _ => return None,
        })
    }

    /// A connection-level failure (no HTTP answer).
    pub fn unreachable(service: &'static str, error: &reqwest::Error) -> AzureError {
        AzureError::transient(
            service,
            if error.is_timeout() {
                "Timeout"
            } else {
                "ConnectionFailed"
            },
            crate::error_chain(error),
        )
    }
}

/// How long to wait before trying again: Azure's `Retry-After` when it is longer than galleon's own
/// backoff, else the backoff (`max(Retry-After, backoff)`).
pub fn wait_before_retry(retry_after: Option<Duration>, backoff: Duration) -> Duration {
    retry_after.map_or(backoff, |r| r.max(backoff))
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
    classify_fields(
        service,
        status.as_u16(),
        code,
        message,
        target,
        retry_after(headers),
        RequestIds::from_headers(headers),
    )
}

/// Sorts an answer already taken apart (the Storage SDK gives status and code, not the body).
pub(crate) fn classify_fields(
    service: &'static str,
    status: u16,
    code: String,
    message: String,
    target: Option<String>,
    retry_after: Option<Duration>,
    ids: RequestIds,
) -> AzureError {
    let transient = status == 429
        || status == 408
        // A conditional read found the blob changed under it (an upload still in progress): look again.
        || status == 412
        || status >= 500
        // 409 only while another operation on the resource is in flight; clashes are for good.
        || (status == 409 && conflict_kind(&code, &message) == Kind::ConflictInProgress);
    if transient {
        AzureError::Transient {
            service,
            status,
            code,
            message,
            retry_after,
            ids: Box::new(ids),
        }
    } else {
        AzureError::Permanent {
            service,
            status,
            code,
            message,
            target,
            ids: Box::new(ids),
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

/// The HTTP status a token endpoint answered, somewhere in a credential's error chain.
pub(crate) fn http_status(error: &azure_core::Error) -> Option<u16> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(core) = e.downcast_ref::<azure_core::Error>()
            && let azure_core::error::ErrorKind::HttpResponse { status, .. } = core.kind()
        {
            return Some(u16::from(*status));
        }
        cause = e.source();
    }
    None
}

#[cfg(test)]
#[path = "error_tests.rs"]
mod tests;
