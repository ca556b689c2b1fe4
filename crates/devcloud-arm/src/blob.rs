//! The simulator's own small Azurite client: checks that a source VHD exists and is a fixed VHD with a
//! virtual size that is a whole number of MiB (footer read with a ranged GET and a storage bearer token),
//! and uploads the fixed VHDs that Image Builder runs produce (made by [`crate::qemu`]) as page blobs.

use devcloud_core::Identity;
use reqwest::StatusCode;

use crate::error::ArmError;

const MIB: u64 = 1024 * 1024;
const X_MS_VERSION: &str = "2025-01-05";
/// The most one Put Page writes.
const MAX_PAGE_WRITE: u64 = 4 * MIB;

/// A client for the Azurite account all storage URLs are mapped to.
#[derive(Clone)]
pub struct Blob {
    client: reqwest::Client,
    /// `https://127.0.0.1:<port>/devstoreaccount1`, without trailing slash.
    endpoint: String,
    identity: Identity,
}

/// Why a VHD write failed.
#[derive(Debug, thiserror::Error)]
#[error("writing {url}: {what}")]
pub struct WriteError {
    url: String,
    what: String,
}

impl Blob {
    pub fn new(client: reqwest::Client, endpoint: &str, identity: Identity) -> Self {
        Self {
            client,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            identity,
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Maps `https://<acct>.blob.core.windows.net/<container>/<blob>` (or an Azurite URL) to the Azurite URL.
    pub fn map_uri(&self, uri: &str) -> Option<String> {
        if uri.starts_with(&self.endpoint) {
            return Some(uri.to_string());
        }
        let u = url::Url::parse(uri).ok()?;
        let host = u.host_str()?;
        if host.ends_with(".blob.core.windows.net") {
            let path = u.path().trim_start_matches('/');
            if path.split('/').filter(|s| !s.is_empty()).count() < 2 {
                return None;
            }
            return Some(format!("{}/{}", self.endpoint, path));
        }
        None
    }

    fn token(&self) -> String {
        self.identity.issue("https://storage.azure.com")
    }

    /// Checks the blob behind `uri` is a fixed VHD whose virtual size is a multiple of 1 MiB;
    /// returns the virtual size. Errors are the ones a user sees from Azure (messages [mem]).
    pub async fn check_vhd(&self, uri: &str, target: &str) -> Result<u64, ArmError> {
        let disk = uri.rsplit('/').next().unwrap_or(uri);
        let Some(url) = self.map_uri(uri) else {
            return Err(ArmError::invalid_parameter(
                format!("The blob URI '{uri}' is not a valid Azure Storage blob URI."),
                target,
            ));
        };
        let head = self
            .client
            .head(&url)
            .bearer_auth(self.token())
            .header("x-ms-version", X_MS_VERSION)
            .send()
            .await
            .map_err(|e| storage_unreachable(uri, &e))?;
        if head.status() == StatusCode::NOT_FOUND {
            return Err(ArmError::invalid_parameter(
                format!(
                    "Source was not found: {uri}. The blob does not exist or the storage account is not reachable."
                ),
                target,
            ));
        }
        if head.status().is_server_error() {
            return Err(storage_failed(uri, head.status()));
        }
        if !head.status().is_success() {
            return Err(ArmError::invalid_parameter(
                format!(
                    "Unable to access the blob {uri}: storage returned {}.",
                    head.status()
                ),
                target,
            ));
        }
        let blob_type = head
            .headers()
            .get("x-ms-blob-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let size: u64 = head
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if !blob_type.eq_ignore_ascii_case("PageBlob") {
            return Err(ArmError::invalid_parameter(
                format!(
                    "The blob {uri} is of type '{blob_type}'. Only page blobs can be used as a VHD source."
                ),
                target,
            ));
        }
        if size < 512 {
            return Err(not_vhd(disk, uri, target));
        }
        let resp = self
            .client
            .get(&url)
            .bearer_auth(self.token())
            .header("x-ms-version", X_MS_VERSION)
            .header("x-ms-range", format!("bytes={}-{}", size - 512, size - 1))
            .send()
            .await
            .map_err(|e| storage_unreachable(uri, &e))?;
        if resp.status().is_server_error() {
            return Err(storage_failed(uri, resp.status()));
        }
        if !resp.status().is_success() {
            return Err(ArmError::invalid_parameter(
                format!(
                    "Unable to read the blob {uri}: storage returned {}.",
                    resp.status()
                ),
                target,
            ));
        }
        let footer = resp
            .bytes()
            .await
            .map_err(|e| storage_unreachable(uri, &e))?;
        if footer.len() != 512 || &footer[..8] != b"conectix" {
            return Err(not_vhd(disk, uri, target));
        }
        let disk_type = u32::from_be_bytes([footer[60], footer[61], footer[62], footer[63]]);
        if disk_type != 2 {
            return Err(ArmError::invalid_parameter(
                format!(
                    "The specified disk type in VHD footer indicates that disk '{disk}' with blob {uri} is not a supported VHD. Disk is expected to be a fixed VHD; dynamic and differencing VHDs are not supported."
                ),
                target,
            ));
        }
        let mut cur = [0u8; 8];
        cur.copy_from_slice(&footer[48..56]);
        let virtual_size = u64::from_be_bytes(cur);
        if virtual_size % MIB != 0 || virtual_size == 0 {
            return Err(ArmError::invalid_parameter(
                format!(
                    "Disk '{disk}' with blob {uri} has unsupported virtual size of {virtual_size} bytes.  The size must be a whole number (in MBs)."
                ),
                target,
            ));
        }
        if size != virtual_size + 512 {
            return Err(ArmError::invalid_parameter(
                format!(
                    "The blob {uri} is {size} bytes long, but its VHD footer declares {virtual_size} bytes; a fixed VHD is its virtual size plus a 512-byte footer."
                ),
                target,
            ));
        }
        Ok(virtual_size)
    }

    /// Uploads the fixed VHD `disk` as the page blob `<endpoint>/<container>/<name>`: its data
    /// extents in pages of at most 4 MiB (all-zero ones skipped: a page blob reads as zeros where
    /// nothing was written). Returns its URL.
    pub async fn write_page_blob(
        &self,
        container: &str,
        name: &str,
        disk: &crate::qemu::FixedVhd,
    ) -> Result<String, WriteError> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let url = format!("{}/{container}/{name}", self.endpoint);
        let fail = |what: String| WriteError {
            url: url.clone(),
            what,
        };
        if !disk.len.is_multiple_of(512) {
            return Err(fail(format!(
                "{} is {} bytes, not a whole number of 512-byte pages",
                disk.path.display(),
                disk.len
            )));
        }
        let r = self
            .client
            .put(format!("{}/{container}?restype=container", self.endpoint))
            .bearer_auth(self.token())
            .header("x-ms-version", X_MS_VERSION)
            .header("content-length", "0")
            .send()
            .await
            .map_err(|e| fail(format!("create container: {e}")))?;
        if !(r.status().is_success() || r.status() == StatusCode::CONFLICT) {
            return Err(fail(format!("create container: {}", r.status())));
        }
        let r = self
            .client
            .put(&url)
            .bearer_auth(self.token())
            .header("x-ms-version", X_MS_VERSION)
            .header("x-ms-blob-type", "PageBlob")
            .header("x-ms-blob-content-length", disk.len.to_string())
            .header("content-length", "0")
            .send()
            .await
            .map_err(|e| fail(format!("create page blob: {e}")))?;
        if !r.status().is_success() {
            return Err(fail(format!("create page blob: {}", r.status())));
        }
        let mut file = tokio::fs::File::open(&disk.path)
            .await
            .map_err(|e| fail(format!("open {}: {e}", disk.path.display())))?;
        for &(start, length) in &disk.extents {
            // Pages are 512-byte aligned: widen the extent to whole pages.
            let mut at = start - start % 512;
            let end = (start + length).next_multiple_of(512).min(disk.len);
            while at < end {
                let n = (end - at).min(MAX_PAGE_WRITE);
                let mut data = vec![0u8; n as usize];
                file.seek(std::io::SeekFrom::Start(at))
                    .await
                    .map_err(|e| fail(format!("read at {at}: {e}")))?;
                file.read_exact(&mut data)
                    .await
                    .map_err(|e| fail(format!("read at {at}: {e}")))?;
                if data.iter().any(|b| *b != 0) {
                    self.put_page(&url, at, data).await.map_err(fail)?;
                }
                at += n;
            }
        }
        Ok(url)
    }

    async fn put_page(&self, url: &str, at: u64, data: Vec<u8>) -> Result<(), String> {
        let range = format!("bytes={at}-{}", at + data.len() as u64 - 1);
        let r = self
            .client
            .put(format!("{url}?comp=page"))
            .bearer_auth(self.token())
            .header("x-ms-version", X_MS_VERSION)
            .header("x-ms-page-write", "update")
            .header("x-ms-range", range)
            .body(data)
            .send()
            .await
            .map_err(|e| format!("put page at {at}: {e}"))?;
        if !r.status().is_success() {
            return Err(format!("put page at {at}: {}", r.status()));
        }
        Ok(())
    }
}

fn storage_unreachable(uri: &str, e: &reqwest::Error) -> ArmError {
    ArmError::new(
        500,
        "InternalServerError",
        format!("The storage account behind {uri} could not be reached: {e}"),
    )
}

/// Storage failing (5xx, e.g. restarting) is Azure's trouble, not a bad parameter: a retryable 500, as
/// when it cannot be reached at all.
fn storage_failed(uri: &str, status: StatusCode) -> ArmError {
    ArmError::new(
        500,
        "InternalServerError",
        format!("The storage account behind {uri} failed: it answered {status}."),
    )
}

fn not_vhd(disk: &str, uri: &str, target: &str) -> ArmError {
    ArmError::invalid_parameter(
        format!(
            "The specified cookie value in VHD footer indicates that disk '{disk}' with blob {uri} is not a supported VHD. Disk is expected to have cookie value 'conectix'."
        ),
        target,
    )
}
