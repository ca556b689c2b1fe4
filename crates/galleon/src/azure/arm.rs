//! Azure Resource Manager: GET/PUT/PATCH/DELETE of resources by id, and one look at a long-running
//! operation at a time (galleon never waits on one inside an invocation; it schedules the next look).

use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

use super::{ARM_RESOURCE, AzureError, Tokens, classify, retry_after};

const SERVICE: &str = "ARM";

/// API versions galleon speaks (shared/reference/arm-contract.md §0).
pub const COMPUTE_IMAGES_API: &str = "2025-04-01";
pub const GALLERY_API: &str = "2025-03-03";
pub const IMAGE_BUILDER_API: &str = "2024-02-01";

/// A Resource Manager endpoint with credentials.
#[derive(Clone, Debug)]
pub struct Arm {
    http: reqwest::Client,
    endpoint: Url,
    tokens: Tokens,
}

/// What ARM said to a write: the resource as it stands, and where to look for the rest.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub status: u16,
    pub body: Option<Value>,
    /// `Azure-AsyncOperation` or else `Location`: the URL to poll, when the write is long-running.
    pub operation: Option<String>,
    pub retry_after: Option<Duration>,
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

impl Arm {
    pub fn new(http: reqwest::Client, endpoint: Url, tokens: Tokens) -> Arm {
        Arm {
            http,
            endpoint,
            tokens,
        }
    }

    fn url(&self, id: &str, api_version: &str, query: &[(&str, &str)]) -> Result<Url, AzureError> {
        let mut url = self
            .endpoint
            .join(id.trim_start_matches('/'))
            .map_err(|e| AzureError::Permanent {
                service: SERVICE,
                status: 0,
                code: "InvalidResourceId".into(),
                message: format!("'{id}' does not make a URL: {e}"),
                target: None,
            })?;
        url.query_pairs_mut()
            .append_pair("api-version", api_version);
        for (k, v) in query {
            url.query_pairs_mut().append_pair(k, v);
        }
        Ok(url)
    }

    /// Sends one request and reads the whole answer.
    async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<Answer, AzureError> {
        let token = self.tokens.bearer(ARM_RESOURCE).await?;
        let mut request = self
            .http
            .request(method, url)
            .header("Authorization", token)
            .header("x-ms-client-request-id", uuid::Uuid::new_v4().to_string());
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| AzureError::unreachable(SERVICE, &e))?;
        let status = response.status();
        let headers = response.headers().clone();
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
            s if s.is_success() => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| AzureError::Transient {
                        service: SERVICE,
                        status: s.as_u16(),
                        code: "UnreadableResponse".into(),
                        message: e.to_string(),
                        retry_after: None,
                    })
            }
            s => Err(classify(SERVICE, s, &headers, &bytes)),
        }
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
        Ok(Accepted {
            status: status.as_u16(),
            body: serde_json::from_slice(&bytes).ok(),
            operation: header("azure-asyncoperation").or_else(|| header("location")),
            retry_after: retry_after(&headers),
        })
    }

    /// Looks once at an operation URL (`Azure-AsyncOperation` status body, or `Location` 202/200/204).
    pub async fn operation(&self, url: &str) -> Result<Operation, AzureError> {
        let url = Url::parse(url).map_err(|e| AzureError::Permanent {
            service: SERVICE,
            status: 0,
            code: "InvalidOperationUrl".into(),
            message: format!("'{url}': {e}"),
            target: None,
        })?;
        let Answer {
            status,
            headers,
            body: bytes,
        } = self.call(Method::GET, url, None).await?;
        if !status.is_success() {
            return Err(classify(SERVICE, status, &headers, &bytes));
        }
        if status == StatusCode::ACCEPTED {
            return Ok(Operation::Running {
                retry_after: retry_after(&headers),
            });
        }
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let state = body
            .get("status")
            .or_else(|| body.pointer("/properties/provisioningState"))
            .and_then(Value::as_str);
        Ok(match state {
            None | Some("Succeeded") => Operation::Succeeded,
            Some("Failed") => Operation::Failed {
                code: body
                    .pointer("/error/code")
                    .and_then(Value::as_str)
                    .unwrap_or("OperationFailed")
                    .to_owned(),
                message: body
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
            },
            Some("Canceled") => Operation::Canceled,
            Some(_) => Operation::Running {
                retry_after: retry_after(&headers),
            },
        })
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
