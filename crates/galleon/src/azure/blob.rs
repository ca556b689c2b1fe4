//! Blob Storage: properties, range reads and metadata of one blob, by URL, with a bearer token. Reads
//! only what is asked for: a multi-terabyte VHD is never downloaded.

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode, Url};

use super::{AzureError, STORAGE_RESOURCE, Tokens, classify};

const SERVICE: &str = "Blob Storage";
const VERSION: &str = "2021-08-06";

#[derive(Clone, Debug)]
pub struct Blobs {
    http: reqwest::Client,
    tokens: Tokens,
}

/// What a HEAD of a blob tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobProperties {
    pub content_length: u64,
    pub e_tag: String,
    /// `BlockBlob`, `PageBlob` or `AppendBlob`.
    pub blob_type: String,
    /// `pending` while a copy into this blob is still running.
    pub copy_status: Option<String>,
    pub created: Option<DateTime<Utc>>,
    pub last_modified: Option<DateTime<Utc>>,
    pub metadata: BTreeMap<String, String>,
}

fn parse_url(url: &str) -> Result<Url, AzureError> {
    Url::parse(url).map_err(|e| AzureError::Permanent {
        service: SERVICE,
        status: 0,
        code: "InvalidBlobUrl".into(),
        message: format!("'{url}': {e}"),
        target: None,
    })
}

impl Blobs {
    pub fn new(http: reqwest::Client, tokens: Tokens) -> Blobs {
        Blobs { http, tokens }
    }

    async fn request(
        &self,
        method: Method,
        url: Url,
    ) -> Result<reqwest::RequestBuilder, AzureError> {
        let token = self.tokens.bearer(STORAGE_RESOURCE).await?;
        Ok(self
            .http
            .request(method, url)
            .header("Authorization", token)
            .header("x-ms-version", VERSION)
            .header(
                "x-ms-date",
                Utc::now().format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
            ))
    }

    async fn fail(response: reqwest::Response) -> AzureError {
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap_or_default();
        classify(SERVICE, status, &headers, &bytes)
    }

    /// The blob's properties; `None` when it does not exist (any more).
    pub async fn properties(&self, url: &str) -> Result<Option<BlobProperties>, AzureError> {
        let response = self
            .request(Method::HEAD, parse_url(url)?)
            .await?
            .send()
            .await
            .map_err(|e| AzureError::unreachable(SERVICE, &e))?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(Self::fail(response).await);
        }
        let h = response.headers();
        let text = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let time = |name: &str| {
            text(name)
                .and_then(|t| DateTime::parse_from_rfc2822(&t).ok())
                .map(|t| t.with_timezone(&Utc))
        };
        let metadata = h
            .iter()
            .filter_map(|(k, v)| {
                let key = k.as_str().strip_prefix("x-ms-meta-")?;
                Some((key.to_owned(), v.to_str().ok()?.to_owned()))
            })
            .collect();
        Ok(Some(BlobProperties {
            content_length: text("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            e_tag: text("etag").unwrap_or_default(),
            blob_type: text("x-ms-blob-type").unwrap_or_default(),
            copy_status: text("x-ms-copy-status"),
            created: time("x-ms-creation-time"),
            last_modified: time("last-modified"),
            metadata,
        }))
    }

    /// Reads `len` bytes at `offset`, only if the blob still has ETag `e_tag` (when given).
    pub async fn read_range(
        &self,
        url: &str,
        offset: u64,
        len: u64,
        e_tag: Option<&str>,
    ) -> Result<Bytes, AzureError> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let mut request = self.request(Method::GET, parse_url(url)?).await?.header(
            "x-ms-range",
            format!("bytes={}-{}", offset, offset + len - 1),
        );
        if let Some(tag) = e_tag {
            request = request.header("If-Match", tag);
        }
        let response = request
            .send()
            .await
            .map_err(|e| AzureError::unreachable(SERVICE, &e))?;
        if !response.status().is_success() {
            return Err(Self::fail(response).await);
        }
        response
            .bytes()
            .await
            .map_err(|e| AzureError::unreachable(SERVICE, &e))
    }

    /// Reads a whole small blob (a manifest), refusing more than `max` bytes.
    pub async fn read_small(
        &self,
        url: &str,
        max: u64,
    ) -> Result<(Bytes, BlobProperties), AzureError> {
        let properties = self
            .properties(url)
            .await?
            .ok_or_else(|| AzureError::Permanent {
                service: SERVICE,
                status: 404,
                code: "BlobNotFound".into(),
                message: format!("{} does not exist", redact(url)),
                target: None,
            })?;
        if properties.content_length > max {
            return Err(AzureError::Permanent {
                service: SERVICE,
                status: 0,
                code: "BlobTooLarge".into(),
                message: format!(
                    "{} is {} bytes; at most {max} are read",
                    redact(url),
                    properties.content_length
                ),
                target: None,
            });
        }
        let bytes = self
            .read_range(url, 0, properties.content_length, Some(&properties.e_tag))
            .await?;
        Ok((bytes, properties))
    }

    /// Adds metadata to a blob, keeping what it has, only if it still has ETag `e_tag`. Content is untouched.
    pub async fn add_metadata(
        &self,
        url: &str,
        e_tag: &str,
        existing: &BTreeMap<String, String>,
        add: &BTreeMap<String, String>,
    ) -> Result<(), AzureError> {
        let mut target = parse_url(url)?;
        target.query_pairs_mut().append_pair("comp", "metadata");
        let mut request = self
            .request(Method::PUT, target)
            .await?
            .header("If-Match", e_tag)
            .header("Content-Length", "0");
        for (k, v) in existing.iter().chain(add.iter()) {
            // Header values must be visible ASCII: metadata is for codes and short notes.
            let value: String = v
                .chars()
                .map(|c| {
                    if c.is_ascii_graphic() || c == ' ' {
                        c
                    } else {
                        '?'
                    }
                })
                .collect();
            request = request.header(format!("x-ms-meta-{k}"), value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| AzureError::unreachable(SERVICE, &e))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(Self::fail(response).await)
        }
    }
}

/// A blob URL with any query (SAS token) removed, for logs and facts.
pub fn redact(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?<redacted>"),
        None => url.to_owned(),
    }
}

/// Reads ranges of one blob for the VHD checks, pinned to the ETag it had when the checks began.
pub struct VhdReader<'a> {
    pub blobs: &'a Blobs,
    pub url: &'a str,
    pub e_tag: &'a str,
}

impl vhd::RangeRead for VhdReader<'_> {
    type Error = AzureError;

    async fn read_range(&self, offset: u64, len: u64) -> Result<Bytes, AzureError> {
        self.blobs
            .read_range(self.url, offset, len, Some(self.e_tag))
            .await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redaction_drops_the_query() {
        assert_eq!(
            super::redact("https://a/c/x.vhd?sv=1&sig=abc"),
            "https://a/c/x.vhd?<redacted>"
        );
        assert_eq!(super::redact("https://a/c/x.vhd"), "https://a/c/x.vhd");
    }
}
