//! Blob Storage: properties, range reads and metadata of one blob, by URL, through the Azure SDK's
//! `azure_storage_blob` client with the managed identity's token (for the configured storage audience, and
//! only to the allow-listed storage accounts). Reads only what is asked for: a
//! multi-terabyte VHD is never downloaded; reads are pinned to an ETag so a blob that changes under a
//! check is noticed.

use std::collections::BTreeMap;

use azure_core::http::{Etag, StatusCode, headers::HeaderName};
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

use super::{AzureError, RequestIds, Tokens, error::classify_fields, identity::token_error};

const SERVICE: &str = "Blob Storage";

/// Blob clients for the allow-listed storage accounts only: a URL elsewhere is refused
/// ([`AzureError::is_foreign_host`]) before any token is asked for or sent.
#[derive(Clone, Debug)]
pub struct Blobs {
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

fn permanent(code: &str, message: String) -> AzureError {
    AzureError::permanent(SERVICE, code, message)
}

/// Sorts an SDK error like any other Azure answer: the status and the service's error code decide; a
/// credential failure is sorted as the identity endpoint's answer.
fn from_sdk(error: azure_core::Error, identity: &str, audience: &str) -> AzureError {
    match error.kind() {
        azure_core::error::ErrorKind::HttpResponse {
            status,
            error_code,
            raw_response,
        } => {
            let code = error_code.clone().unwrap_or_else(|| status.to_string());
            let ids = raw_response
                .as_ref()
                .map(|r| {
                    let get = |name: &'static str| {
                        r.headers()
                            .get_optional_string(&HeaderName::from_static(name))
                    };
                    RequestIds {
                        request_id: get("x-ms-request-id"),
                        correlation_request_id: get("x-ms-correlation-request-id"),
                    }
                })
                .unwrap_or_default();
            classify_fields(
                SERVICE,
                u16::from(*status),
                code,
                crate::error_chain(&error),
                None,
                None,
                ids,
            )
        }
        azure_core::error::ErrorKind::Credential => token_error(audience, identity, &error),
        _ => AzureError::transient(SERVICE, "ConnectionFailed", crate::error_chain(&error)),
    }
}

/// A copy's state as galleon names it (`pending` while the copy still runs).
fn copy_state(status: Option<CopyStatus>) -> Option<String> {
    status.map(|s| {
        if s == CopyStatus::Pending {
            "pending".to_owned()
        } else {
            s.to_string()
        }
    })
}

fn time(t: Option<time::OffsetDateTime>) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t?.unix_timestamp(), 0)
}

impl Blobs {
    pub fn new(tokens: Tokens) -> Blobs {
        Blobs { tokens }
    }

    fn sdk_error(&self, error: azure_core::Error) -> AzureError {
        from_sdk(
            error,
            self.tokens.identity(),
            &self.tokens.audiences().storage,
        )
    }

    /// Whether galleon may read `url`: a blob of an allow-listed storage account.
    pub fn check_url(&self, url: &str) -> Result<Url, AzureError> {
        let parsed = Url::parse(url)
            .map_err(|e| permanent("InvalidBlobUrl", format!("'{}': {e}", redact(url))))?;
        self.tokens.check_storage_url(&parsed)?;
        Ok(parsed)
    }

    fn client(&self, url: &str) -> Result<BlobClient, AzureError> {
        let url = self.check_url(url)?;
        BlobClient::new(url, Some(self.tokens.credential()), None).map_err(|e| self.sdk_error(e))
    }

    /// The blob's properties; `None` when it does not exist (any more).
    pub async fn properties(&self, url: &str) -> Result<Option<BlobProperties>, AzureError> {
        let response = match self.client(url)?.get_properties(None).await {
            Ok(r) => r,
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => return Ok(None),
            Err(e) => return Err(self.sdk_error(e)),
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
            copy_status: copy_state(response.copy_status().map_err(header_error)?),
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
            .map_err(|e| self.sdk_error(e))?;
        download.body.collect().await.map_err(|e| self.sdk_error(e))
    }

    /// Reads a whole small blob (a manifest, a journal), refusing more than `max` bytes, in one GET: the
    /// properties answered are those of the bytes read, even when the blob changes at that moment (a
    /// journal appended to). A read in two steps (properties, then the bytes pinned to their ETag) failed
    /// there with ConditionNotMet.
    pub async fn read_small(
        &self,
        url: &str,
        max: u64,
    ) -> Result<(Bytes, BlobProperties), AzureError> {
        let options = BlobClientDownloadOptions {
            // One byte more than allowed tells a blob that is too large without reading it all.
            range: Some(HttpRange::new(0, max + 1)),
            ..Default::default()
        };
        let download = match self.client(url)?.download(Some(options)).await {
            Ok(d) => d,
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => {
                return Err(AzureError::Permanent {
                    service: SERVICE,
                    status: 404,
                    code: "BlobNotFound".into(),
                    message: format!("{} does not exist", redact(url)),
                    target: None,
                    ids: Box::default(),
                });
            }
            Err(e) => return Err(self.sdk_error(e)),
        };
        let p = download.properties;
        let bytes = download
            .body
            .collect()
            .await
            .map_err(|e| self.sdk_error(e))?;
        if bytes.len() as u64 > max {
            return Err(permanent(
                "BlobTooLarge",
                format!("{} is more than {max} bytes, all that is read", redact(url)),
            ));
        }
        let properties = BlobProperties {
            content_length: bytes.len() as u64,
            e_tag: p.etag.map(|t| t.to_string()).unwrap_or_default(),
            blob_type: p.blob_type.map(|t| t.to_string()).unwrap_or_default(),
            copy_status: copy_state(p.copy_status),
            created: time(p.created_on),
            last_modified: time(p.last_modified),
            metadata: p.metadata.into_iter().collect(),
        };
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
            .map_err(|e| self.sdk_error(e))?;
        Ok(())
    }
}

/// The condition of a small write: create only if absent, or replace only the version read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteIf {
    Absent,
    Unchanged(String),
    /// Whatever is there (a note where the newest word wins).
    Any,
}

impl Blobs {
    /// Writes a small block blob under a condition; returns its new ETag, or `None` when the condition
    /// failed (the blob exists, or changed since it was read): an answer, not trouble.
    pub async fn put_small(
        &self,
        url: &str,
        content: Bytes,
        condition: WriteIf,
    ) -> Result<Option<String>, AzureError> {
        self.put_small_with(url, content, condition, &BTreeMap::new())
            .await
    }

    /// As [`Blobs::put_small`], the blob made with `metadata`.
    pub async fn put_small_with(
        &self,
        url: &str,
        content: Bytes,
        condition: WriteIf,
        metadata: &BTreeMap<String, String>,
    ) -> Result<Option<String>, AzureError> {
        let mut options = azure_storage_blob::models::BlobClientUploadOptions {
            blob_content_type: Some("application/json".into()),
            metadata: (!metadata.is_empty()).then(|| {
                metadata
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            }),
            ..Default::default()
        };
        match condition {
            WriteIf::Absent => options.if_none_match = Some(Etag::from("*".to_owned())),
            WriteIf::Unchanged(e_tag) => options.if_match = Some(Etag::from(e_tag)),
            WriteIf::Any => {}
        }
        match self
            .client(url)?
            .upload(content.into(), Some(options))
            .await
        {
            Ok(answer) => Ok(Some(answer.etag.map(|t| t.to_string()).unwrap_or_default())),
            Err(e)
                if matches!(
                    e.http_status(),
                    Some(StatusCode::Conflict | StatusCode::PreconditionFailed)
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(self.sdk_error(e)),
        }
    }

    /// Creates an empty append blob unless one is there: `Ok(true)` when this call made it.
    pub async fn create_append_if_absent(&self, url: &str) -> Result<bool, AzureError> {
        let options = azure_storage_blob::models::AppendBlobClientCreateOptions {
            blob_content_type: Some("application/x-ndjson".into()),
            if_none_match: Some(Etag::from("*".to_owned())),
            ..Default::default()
        };
        match self
            .client(url)?
            .append_blob_client()
            .create(Some(options))
            .await
        {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.http_status(),
                    Some(StatusCode::Conflict | StatusCode::PreconditionFailed)
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(self.sdk_error(e)),
        }
    }

    /// Appends `block` to an append blob only at `position` (its length as last read): `Ok(false)` when
    /// the blob grew since (another writer came first), so nothing is appended twice out of order.
    pub async fn append_at(
        &self,
        url: &str,
        block: Bytes,
        position: u64,
    ) -> Result<bool, AzureError> {
        let length = block.len() as u64;
        let options = azure_storage_blob::models::AppendBlobClientAppendBlockOptions {
            append_position: Some(i64::try_from(position).unwrap_or(i64::MAX)),
            ..Default::default()
        };
        match self
            .client(url)?
            .append_blob_client()
            .append_block(block.into(), length, Some(options))
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.http_status() == Some(StatusCode::PreconditionFailed) => Ok(false),
            Err(e) => Err(self.sdk_error(e)),
        }
    }

    /// Appends `block` at the end of an append blob, wherever the end is (Azure appends each block whole,
    /// so concurrent writers never interleave nor conflict).
    pub async fn append(&self, url: &str, block: Bytes) -> Result<(), AzureError> {
        let length = block.len() as u64;
        self.client(url)?
            .append_blob_client()
            .append_block(block.into(), length, None)
            .await
            .map_err(|e| self.sdk_error(e))?;
        Ok(())
    }

    /// Deletes a blob only while it is the version that was read (`e_tag`), with its snapshots. `Ok(true)`
    /// when it is gone (or was already), `Ok(false)` when it changed since: then it stays.
    pub async fn delete_if_unchanged(&self, url: &str, e_tag: &str) -> Result<bool, AzureError> {
        let options = azure_storage_blob::models::BlobClientDeleteOptions {
            if_match: Some(Etag::from(e_tag.to_owned())),
            delete_snapshots: Some(azure_storage_blob::models::DeleteSnapshotsOptionType::Include),
            ..Default::default()
        };
        match self.client(url)?.delete(Some(options)).await {
            Ok(_) => Ok(true),
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => Ok(true),
            Err(e) if e.http_status() == Some(StatusCode::PreconditionFailed) => Ok(false),
            Err(e) => Err(self.sdk_error(e)),
        }
    }

    /// The names of the blobs in `container_url` that start with `prefix` (every page, at most `max`).
    pub async fn list_names(
        &self,
        container_url: &str,
        prefix: &str,
        max: usize,
    ) -> Result<Vec<String>, AzureError> {
        use futures::StreamExt;
        let url = self.check_url(container_url)?;
        let client =
            azure_storage_blob::BlobContainerClient::new(url, Some(self.tokens.credential()), None)
                .map_err(|e| self.sdk_error(e))?;
        let options = azure_storage_blob::models::BlobContainerClientListBlobsOptions {
            prefix: Some(prefix.to_owned()),
            ..Default::default()
        };
        let mut pages = client
            .list_blobs(Some(options))
            .map_err(|e| self.sdk_error(e))?
            .into_pages();
        let mut names = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page
                .map_err(|e| self.sdk_error(e))?
                .into_model()
                .map_err(|e| self.sdk_error(e))?;
            names.extend(page.blob_items.into_iter().filter_map(|b| b.name));
            if names.len() >= max {
                names.truncate(max);
                break;
            }
        }
        Ok(names)
    }

    /// Creates a blob container (an existing one is fine).
    pub async fn create_container(&self, container_url: &str) -> Result<(), AzureError> {
        let url = self.check_url(container_url)?;
        let client =
            azure_storage_blob::BlobContainerClient::new(url, Some(self.tokens.credential()), None)
                .map_err(|e| self.sdk_error(e))?;
        match client.create(None).await {
            Ok(_) => Ok(()),
            Err(e) if e.http_status() == Some(StatusCode::Conflict) => Ok(()),
            Err(e) => Err(self.sdk_error(e)),
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
