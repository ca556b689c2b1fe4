//! Azure Resource Manager: GET/PUT/PATCH/DELETE of resources by id, and one look at a long-running
//! operation at a time (galleon never waits on one inside an invocation; it schedules the next look).

use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{AzureError, RequestIds, Tokens, classify, retry_after};

const SERVICE: &str = "ARM";

/// API versions galleon speaks (shared/reference/arm-contract.md §0).
pub const COMPUTE_IMAGES_API: &str = "2025-04-01";
pub const GALLERY_API: &str = "2025-03-03";
pub const IMAGE_BUILDER_API: &str = "2024-02-01";

/// A Resource Manager endpoint with credentials. Tokens go to this endpoint's host only: a URL elsewhere
/// (an operation URL from an answer or a message, an id that is really a URL) is refused.
#[derive(Clone, Debug)]
pub struct Arm {
    http: reqwest::Client,
    endpoint: Url,
    tokens: Tokens,
    /// What ARM's answers said is left of the subscriptions' budgets.
    pub budgets: super::budget::Budgets,
}

/// What kind of URL a long-running operation is followed at; it decides what a finished answer looks like.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PollKind {
    /// `Azure-AsyncOperation`: every answer is a status body `{"status": …}`; a 200 without a readable
    /// status is no answer.
    #[default]
    AsyncOperation,
    /// `Location`: 202 while running; 200/201/204 when done (a 200's body, if any, is the resource).
    Location,
    /// The resource itself: its `provisioningState` tells.
    Resource,
}

/// What ARM said to a write: the resource as it stands, and where to look for the rest.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub status: u16,
    pub body: Option<Value>,
    /// `Azure-AsyncOperation` or else `Location`: the URL to poll, when the write is long-running.
    pub operation: Option<String>,
    /// Which header `operation` came from.
    pub operation_kind: Option<PollKind>,
    pub retry_after: Option<Duration>,
    /// The answer's `x-ms-request-id` and `x-ms-correlation-request-id`, for log lines and facts.
    pub ids: RequestIds,
}

impl Accepted {
    /// The write finished in the answer itself (no operation to follow, or the resource already reached a
    /// terminal state).
    pub fn is_done(&self) -> bool {
        let state = self
            .body
            .as_ref()
            .and_then(|b| b.pointer("/properties/provisioningState"))
            .and_then(Value::as_str);
        self.operation.is_none() || matches!(state, Some("Succeeded"))
    }

    /// The URL to follow and its kind, when the write is long-running.
    pub fn poll(&self) -> Option<(String, PollKind)> {
        Some((
            self.operation.clone()?,
            self.operation_kind.unwrap_or_default(),
        ))
    }
}

/// A whole HTTP answer from ARM.
struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: bytes::Bytes,
}

/// One look at a long-running operation.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    Running { retry_after: Option<Duration> },
    Succeeded,
    Failed { code: String, message: String },
    Canceled,
}

fn unreadable(status: StatusCode, why: String, headers: &reqwest::header::HeaderMap) -> AzureError {
    AzureError::Transient {
        service: SERVICE,
        status: status.as_u16(),
        code: "UnreadableResponse".into(),
        message: why,
        retry_after: retry_after(headers),
        ids: Box::new(RequestIds::from_headers(headers)),
    }
}

fn bad_url(code: &str, message: String) -> AzureError {
    AzureError::permanent(SERVICE, code, message)
}

/// A URL for logs: scheme, host and path (no query).
fn shown(url: &Url) -> String {
    format!(
        "{}://{}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.path()
    )
}

impl Arm {
    pub fn new(http: reqwest::Client, endpoint: Url, tokens: Tokens) -> Arm {
        Arm {
            http,
            endpoint,
            tokens,
            budgets: super::budget::Budgets::default(),
        }
    }

    fn url(&self, id: &str, api_version: &str, query: &[(&str, &str)]) -> Result<Url, AzureError> {
        let mut url = self
            .endpoint
            .join(id.trim_start_matches('/'))
            .map_err(|e| {
                bad_url(
                    "InvalidResourceId",
                    format!("'{id}' does not make a URL: {e}"),
                )
            })?;
        url.query_pairs_mut()
            .append_pair("api-version", api_version);
        for (k, v) in query {
            url.query_pairs_mut().append_pair(k, v);
        }
        Ok(url)
    }

    /// Refuses a URL that is not on the configured Resource Manager (scheme, host and port).
    pub fn check_url(&self, url: &Url) -> Result<(), AzureError> {
        let same = url.scheme() == self.endpoint.scheme()
            && url.host_str().map(str::to_ascii_lowercase)
                == self.endpoint.host_str().map(str::to_ascii_lowercase)
            && url.port_or_known_default() == self.endpoint.port_or_known_default();
        if same {
            Ok(())
        } else {
            Err(AzureError::ForeignHost {
                service: SERVICE,
                url: shown(url),
                reason: format!(
                    "not on the configured Resource Manager {} (GALLEON_ARM_ENDPOINT)",
                    self.endpoint.as_str().trim_end_matches('/')
                ),
            })
        }
    }

    /// Sends one request and reads the whole answer. The run's id goes as `x-ms-client-request-id`; the
    /// answer's ids are logged with the call.
    async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<Answer, AzureError> {
        self.check_url(&url)?;
        let (token, auxiliary) = self.tokens.arm_authorization(url.path()).await?;
        let client_request_id =
            super::current_run().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let mut request = self
            .http
            .request(method.clone(), url.clone())
            .header("Authorization", token)
            .header("x-ms-client-request-id", client_request_id.as_str());
        if let Some(auxiliary) = auxiliary {
            request = request.header("x-ms-authorization-auxiliary", auxiliary);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| {
            tracing::warn!(method = %method, url = %shown(&url), client_request_id, error = %crate::error_chain(&e), "ARM did not answer");
            AzureError::unreachable(SERVICE, &e)
        })?;
        let status = response.status();
        let headers = response.headers().clone();
        self.budgets.answered(&method, url.path(), status, &headers);
        let ids = RequestIds::from_headers(&headers);
        let request_id = ids.request_id.as_deref().unwrap_or("");
        let correlation_request_id = ids.correlation_request_id.as_deref().unwrap_or("");
        if method == Method::GET && status.is_success() {
            tracing::debug!(method = %method, url = %shown(&url), status = status.as_u16(), x_ms_request_id = request_id, x_ms_correlation_request_id = correlation_request_id, client_request_id, "ARM call");
        } else {
            tracing::info!(method = %method, url = %shown(&url), status = status.as_u16(), x_ms_request_id = request_id, x_ms_correlation_request_id = correlation_request_id, client_request_id, "ARM call");
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| AzureError::unreachable(SERVICE, &e))?;
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// GETs a resource; `None` when it does not exist.
    pub async fn get(
        &self,
        id: &str,
        api_version: &str,
        query: &[(&str, &str)],
    ) -> Result<Option<Value>, AzureError> {
        let Answer {
            status,
            headers,
            body: bytes,
        } = self
            .call(Method::GET, self.url(id, api_version, query)?, None)
            .await?;
        match status {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| unreadable(s, e.to_string(), &headers)),
            s => Err(classify(SERVICE, s, &headers, &bytes)),
        }
    }

    /// GETs a list, following `nextLink` (on this Resource Manager only) to its end; empty when the parent
    /// does not exist. At most `max_pages` pages are read.
    pub async fn list(
        &self,
        id: &str,
        api_version: &str,
        query: &[(&str, &str)],
        max_pages: usize,
    ) -> Result<Vec<Value>, AzureError> {
        let mut items = Vec::new();
        let mut next = Some(self.url(id, api_version, query)?);
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            let Answer {
                status,
                headers,
                body,
            } = self.call(Method::GET, url, None).await?;
            let page: Value = match status {
                StatusCode::NOT_FOUND => return Ok(items),
                s if s.is_success() => serde_json::from_slice(&body)
                    .map_err(|e| unreadable(s, e.to_string(), &headers))?,
                s => return Err(classify(SERVICE, s, &headers, &body)),
            };
            match &page {
                // Some lists (VM image versions) are a bare array.
                Value::Array(all) => items.extend(all.iter().cloned()),
                _ => items.extend(
                    page.get("value")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .cloned(),
                ),
            }
            if pages < max_pages
                && let Some(link) = page.get("nextLink").and_then(Value::as_str)
            {
                next = Some(
                    Url::parse(link)
                        .map_err(|e| bad_url("InvalidNextLink", format!("'{link}': {e}")))?,
                );
            }
        }
        Ok(items)
    }

    /// PUT (create or update), PATCH or DELETE; returns what ARM accepted.
    pub async fn write(
        &self,
        method: Method,
        id: &str,
        api_version: &str,
        body: Option<&Value>,
    ) -> Result<Accepted, AzureError> {
        let Answer {
            status,
            headers,
            body: bytes,
        } = self
            .call(method, self.url(id, api_version, &[])?, body)
            .await?;
        if !status.is_success() {
            return Err(classify(SERVICE, status, &headers, &bytes));
        }
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (operation, operation_kind) = match (header("azure-asyncoperation"), header("location"))
        {
            (Some(url), _) => (Some(url), Some(PollKind::AsyncOperation)),
            (None, Some(url)) => (Some(url), Some(PollKind::Location)),
            (None, None) => (None, None),
        };
        if let Some(url) = &operation {
            // An operation URL elsewhere would get the next look's token: refuse it now.
            let parsed = Url::parse(url)
                .map_err(|e| bad_url("InvalidOperationUrl", format!("'{url}': {e}")))?;
            self.check_url(&parsed)?;
        }
        Ok(Accepted {
            status: status.as_u16(),
            body: serde_json::from_slice(&bytes).ok(),
            operation,
            operation_kind,
            retry_after: retry_after(&headers),
            ids: RequestIds::from_headers(&headers),
        })
    }

    /// Looks once at an operation URL of `kind` (see [`PollKind`] for what each answers). An answer that
    /// does not say how the operation stands is a transient error, looked at again, never a success.
    pub async fn operation(&self, url: &str, kind: PollKind) -> Result<Operation, AzureError> {
        let url =
            Url::parse(url).map_err(|e| bad_url("InvalidOperationUrl", format!("'{url}': {e}")))?;
        let Answer {
            status,
            headers,
            body: bytes,
        } = self.call(Method::GET, url, None).await?;
        if !status.is_success() {
            let error = classify(SERVICE, status, &headers, &bytes);
            // A Location URL answers a failed operation with the failure's own status and error body:
            // that is the operation's outcome, not trouble with the look (429 and 5xx stay transient).
            if kind == PollKind::Location && !error.is_transient() {
                return Ok(Operation::Failed {
                    code: error.code().to_owned(),
                    message: error.message(),
                });
            }
            return Err(error);
        }
        let running = || Operation::Running {
            retry_after: retry_after(&headers),
        };
        if status == StatusCode::ACCEPTED {
            return Ok(running());
        }
        let empty = bytes.iter().all(u8::is_ascii_whitespace);
        if kind == PollKind::Location && empty {
            // Location: 200/201/204 without a body is done.
            return Ok(Operation::Succeeded);
        }
        let body: Value = serde_json::from_slice(&bytes).map_err(|e| {
            unreadable(
                status,
                format!("the operation's answer is not JSON ({e}); looking again"),
                &headers,
            )
        })?;
        let state = match kind {
            PollKind::AsyncOperation => body
                .get("status")
                .or_else(|| body.pointer("/properties/provisioningState")),
            PollKind::Location | PollKind::Resource => body
                .pointer("/properties/provisioningState")
                .or_else(|| body.get("status")),
        }
        .and_then(Value::as_str);
        Ok(match state {
            Some(s) if s.eq_ignore_ascii_case("Succeeded") => Operation::Succeeded,
            Some(s) if s.eq_ignore_ascii_case("Failed") => Operation::Failed {
                code: body
                    .pointer("/error/code")
                    .or_else(|| body.pointer("/properties/error/code"))
                    .and_then(Value::as_str)
                    .unwrap_or("OperationFailed")
                    .to_owned(),
                message: body
                    .pointer("/error/message")
                    .or_else(|| body.pointer("/properties/error/message"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
            },
            Some(s) if s.eq_ignore_ascii_case("Canceled") => Operation::Canceled,
            Some(_) => running(),
            // A Location 200 with the resource, or a resource, that has no provisioningState: done.
            None if kind != PollKind::AsyncOperation => Operation::Succeeded,
            None => {
                return Err(unreadable(
                    status,
                    "the Azure-AsyncOperation answer has no status; looking again".into(),
                    &headers,
                ));
            }
        })
    }

    /// The final GET after an operation succeeded: the resource, once its `provisioningState` is
    /// `Succeeded` (or it has none). Still being made → a transient wait ([`AzureError::is_waiting`]);
    /// `Failed` or gone → permanent.
    pub async fn finished(&self, id: &str, api_version: &str) -> Result<Value, AzureError> {
        let Some(resource) = self.get(id, api_version, &[]).await? else {
            return Err(AzureError::Permanent {
                service: SERVICE,
                status: 404,
                code: "ResourceNotFound".into(),
                message: format!("{id} is gone although its operation succeeded"),
                target: Some(id.to_owned()),
                ids: Box::default(),
            });
        };
        match resource
            .pointer("/properties/provisioningState")
            .and_then(Value::as_str)
        {
            None => Ok(resource),
            Some(s) if s.eq_ignore_ascii_case("Succeeded") => Ok(resource),
            Some(s) if s.eq_ignore_ascii_case("Failed") || s.eq_ignore_ascii_case("Canceled") => {
                Err(AzureError::Permanent {
                    service: SERVICE,
                    status: 200,
                    code: "ProvisioningFailed".into(),
                    message: format!(
                        "{id} is in provisioningState {s} although its operation succeeded"
                    ),
                    target: Some(id.to_owned()),
                    ids: Box::default(),
                })
            }
            Some(s) => Err(AzureError::waiting(
                SERVICE,
                format!("{id} is still {s} after its operation succeeded"),
            )),
        }
    }
}

/// Resource ids, built in one place.
pub mod ids {
    pub fn resource_group(sub: &str, rg: &str) -> String {
        format!("/subscriptions/{sub}/resourceGroups/{rg}")
    }
    pub fn gallery(sub: &str, rg: &str, gallery: &str) -> String {
        format!(
            "{}/providers/Microsoft.Compute/galleries/{gallery}",
            resource_group(sub, rg)
        )
    }
    pub fn image_definition(sub: &str, rg: &str, gallery: &str, definition: &str) -> String {
        format!("{}/images/{definition}", self::gallery(sub, rg, gallery))
    }
    pub fn image_version(
        sub: &str,
        rg: &str,
        gallery: &str,
        definition: &str,
        version: &str,
    ) -> String {
        format!(
            "{}/versions/{version}",
            image_definition(sub, rg, gallery, definition)
        )
    }
    pub fn managed_image(sub: &str, rg: &str, image: &str) -> String {
        format!(
            "{}/providers/Microsoft.Compute/images/{image}",
            resource_group(sub, rg)
        )
    }
}

#[cfg(test)]
#[path = "arm_tests.rs"]
mod tests;
