//! Blob Storage: properties, range reads and metadata of one blob, by URL, through the Azure SDK's
//! `azure_storage_blob` client with the managed identity's token. Reads only what is asked for: a
//! multi-terabyte VHD is never downloaded; reads are pinned to an ETag so a blob that changes under a
//! check is noticed.

use std::{collections::BTreeMap, sync::Arc};

use azure_core::{
    credentials::TokenCredential,
    http::{Etag, StatusCode},
};
use azure_storage_blob::{
    BlobClient,
    models::{
        BlobClientDownloadOptions, BlobClientGetPropertiesResultHeaders,
        BlobClientSetMetadataOptions, CopyStatus, HttpRange,
    },
};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use reqwest::Url;

use super::{AzureError, Tokens};

const SERVICE: &str = "Blob Storage";

#[derive(Clone, Debug)]
pub struct Blobs {
    credential: Arc<dyn TokenCredential>,
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

fn permanent(code: &str, message: String) -> AzureError {
    AzureError::Permanent {
        service: SERVICE,
        status: 0,
        code: code.to_owned(),
        message,
        target: None,
    }
}

/// Sorts an SDK error like any other Azure answer: the status and the service's error code decide.
fn from_sdk(error: azure_core::Error) -> AzureError {
    match error.kind() {
        azure_core::error::ErrorKind::HttpResponse {
            status, error_code, ..
        } => {
            let code = error_code.clone().unwrap_or_else(|| status.to_string());
            let status = u16::from(*status);
            let transient = status == 429 || status == 408 || status == 412 || status >= 500;
            if transient {
                AzureError::Transient {
                    service: SERVICE,
                    status,
                    code,
                    message: crate::error_chain(&error),
                    retry_after: None,
                }
            } else {
                AzureError::Permanent {
                    service: SERVICE,
                    status,
                    code,
                    message: crate::error_chain(&error),
                    target: None,
                }
            }
        }
        _ => AzureError::Transient {
            service: SERVICE,
            status: 0,
            code: "ConnectionFailed".into(),
            message: crate::error_chain(&error),
            retry_after: None,
        },
    }
}

fn time(t: Option<time::OffsetDateTime>) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t?.unix_timestamp(), 0)
}

impl Blobs {
    pub fn new(tokens: Tokens) -> Blobs {
        Blobs {
            credential: tokens.credential(),
        }
    }

    fn client(&self, url: &str) -> Result<BlobClient, AzureError> {
        let url = Url::parse(url)
            .map_err(|e| permanent("InvalidBlobUrl", format!("'{}': {e}", redact(url))))?;
        BlobClient::new(url, Some(self.credential.clone()), None).map_err(from_sdk)
    }

    /// The blob's properties; `None` when it does not exist (any more).
    pub async fn properties(&self, url: &str) -> Result<Option<BlobProperties>, AzureError> {
        let response = match self.client(url)?.get_properties(None).await {
            Ok(r) => r,
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => return Ok(None),
            Err(e) => return Err(from_sdk(e)),
        };
        let header_error =
            |e: azure_core::Error| permanent("UnreadableHeaders", crate::error_chain(&e));
        Ok(Some(BlobProperties {
            content_length: response
                .content_length()
                .map_err(header_error)?
                .unwrap_or(0),
            e_tag: response
                .etag()
                .map_err(header_error)?
                .map(|t| t.to_string())
                .unwrap_or_default(),
            blob_type: response
                .blob_type()
                .map_err(header_error)?
                .map(|t| t.to_string())
                .unwrap_or_default(),
            copy_status: response.copy_status().map_err(header_error)?.map(|s| {
                if s == CopyStatus::Pending {
                    "pending".to_owned()
                } else {
                    s.to_string()
                }
            }),
            created: time(response.creation_time().map_err(header_error)?),
            last_modified: time(response.last_modified().map_err(header_error)?),
            metadata: response
                .metadata()
                .map_err(header_error)?
                .into_iter()
                .collect(),
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
        let options = BlobClientDownloadOptions {
            range: Some(HttpRange::new(offset, len)),
            if_match: e_tag.map(|t| Etag::from(t.to_owned())),
            ..Default::default()
        };
        let download = self
            .client(url)?
            .download(Some(options))
            .await
            .map_err(from_sdk)?;
        download.body.collect().await.map_err(from_sdk)
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
            return Err(permanent(
                "BlobTooLarge",
                format!(
                    "{} is {} bytes; at most {max} are read",
                    redact(url),
                    properties.content_length
                ),
            ));
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
        // Metadata values travel as headers: visible ASCII only (galleon writes codes and times).
        let metadata = existing
            .iter()
            .chain(add.iter())
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.chars()
                        .map(|c| {
                            if c.is_ascii_graphic() || c == ' ' {
                                c
                            } else {
                                '?'
                            }
                        })
                        .collect(),
                )
            })
            .collect();
        let options = BlobClientSetMetadataOptions {
            if_match: Some(Etag::from(e_tag.to_owned())),
            ..Default::default()
        };
        self.client(url)?
            .set_metadata(&metadata, Some(options))
            .await
            .map_err(from_sdk)?;
        Ok(())
    }
}

/// The condition of a small write: create only if absent, or replace only the version read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteIf {
    Absent,
    Unchanged(String),
}

impl Blobs {
    /// Writes a small block blob under a condition; returns its new ETag. A failed condition is a
    /// permanent error (`BlobAlreadyExists` or `ConditionNotMet`) the caller can tell apart with
    /// [`AzureError::code`].
    pub async fn put_small(
        &self,
        url: &str,
        content: Bytes,
        condition: WriteIf,
    ) -> Result<String, AzureError> {
        let mut options = azure_storage_blob::models::BlobClientUploadOptions {
            blob_content_type: Some("application/json".into()),
            ..Default::default()
        };
        match condition {
            WriteIf::Absent => options.if_none_match = Some(Etag::from("*".to_owned())),
            WriteIf::Unchanged(e_tag) => options.if_match = Some(Etag::from(e_tag)),
        }
        let answer = self
            .client(url)?
            .upload(content.into(), Some(options))
            .await
            .map_err(|e| match e.http_status() {
                // A failed condition is an answer, not trouble: never retried blindly.
                Some(StatusCode::Conflict) => permanent("BlobAlreadyExists", redact(url)),
                Some(StatusCode::PreconditionFailed) => permanent("ConditionNotMet", redact(url)),
                _ => from_sdk(e),
            })?;
        Ok(answer.etag.map(|t| t.to_string()).unwrap_or_default())
    }

    /// Creates a blob container (an existing one is fine).
    pub async fn create_container(&self, container_url: &str) -> Result<(), AzureError> {
        let url = Url::parse(container_url).map_err(|e| {
            permanent(
                "InvalidBlobUrl",
                format!("'{}': {e}", redact(container_url)),
            )
        })?;
        let client =
            azure_storage_blob::BlobContainerClient::new(url, Some(self.credential.clone()), None)
                .map_err(from_sdk)?;
        match client.create(None).await {
            Ok(_) => Ok(()),
            Err(e) if e.http_status() == Some(StatusCode::Conflict) => Ok(()),
            Err(e) => Err(from_sdk(e)),
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
