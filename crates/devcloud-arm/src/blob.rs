//! The simulator's own small Azurite client: checks that a source VHD exists and is a fixed VHD with a
//! virtual size that is a whole number of MiB (footer read with a ranged GET and a storage bearer token),
//! and writes the small fixed VHDs that Image Builder runs produce.

use devcloud_core::Identity;
use reqwest::StatusCode;

use crate::error::ArmError;

const MIB: u64 = 1024 * 1024;
const X_MS_VERSION: &str = "2025-01-05";

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

    /// Writes a fixed VHD of `virtual_size` bytes (a multiple of 1 MiB) at
    /// `<endpoint>/<container>/<name>`: the `pages` (byte offset, 512-byte-multiple data, e.g. an OS
    /// disk layout from [`crate::osdisk::layout`]) and the footer; the rest reads as zeros. Returns
    /// its URL.
    pub async fn write_fixed_vhd(
        &self,
        container: &str,
        name: &str,
        virtual_size: u64,
        pages: &[(u64, Vec<u8>)],
    ) -> Result<String, WriteError> {
        let url = format!("{}/{container}/{name}", self.endpoint);
        let fail = |what: String| WriteError {
            url: url.clone(),
            what,
        };
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
            .header("x-ms-blob-content-length", (virtual_size + 512).to_string())
            .header("content-length", "0")
            .send()
            .await
            .map_err(|e| fail(format!("create page blob: {e}")))?;
        if !r.status().is_success() {
            return Err(fail(format!("create page blob: {}", r.status())));
        }
        let footer = (virtual_size, fixed_vhd_footer(virtual_size).to_vec());
        for (at, data) in pages.iter().chain(std::iter::once(&footer)) {
            let r = self
                .client
                .put(format!("{url}?comp=page"))
                .bearer_auth(self.token())
                .header("x-ms-version", X_MS_VERSION)
                .header("x-ms-page-write", "update")
                .header(
                    "x-ms-range",
                    format!("bytes={at}-{}", at + data.len() as u64 - 1),
                )
                .body(data.clone())
                .send()
                .await
                .map_err(|e| fail(format!("put page at {at}: {e}")))?;
            if !r.status().is_success() {
                return Err(fail(format!("put page at {at}: {}", r.status())));
            }
        }
        Ok(url)
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

/// A 512-byte fixed-VHD footer (VHD specification 1.0).
pub fn fixed_vhd_footer(size: u64) -> [u8; 512] {
    let mut f = [0u8; 512];
    f[0..8].copy_from_slice(b"conectix");
    f[8..12].copy_from_slice(&2u32.to_be_bytes()); // features: reserved bit
    f[12..16].copy_from_slice(&0x0001_0000u32.to_be_bytes()); // format version
    f[16..24].copy_from_slice(&u64::MAX.to_be_bytes()); // data offset: none (fixed)
    let secs_since_2000 = (chrono::Utc::now().timestamp() - 946_684_800).max(0) as u32;
    f[24..28].copy_from_slice(&secs_since_2000.to_be_bytes());
    f[28..32].copy_from_slice(b"dvcl");
    f[32..36].copy_from_slice(&0x0001_0000u32.to_be_bytes());
    f[36..40].copy_from_slice(b"Wi2k");
    f[40..48].copy_from_slice(&size.to_be_bytes());
    f[48..56].copy_from_slice(&size.to_be_bytes());
    let (c, h, s) = chs(size);
    f[56..58].copy_from_slice(&c.to_be_bytes());
    f[58] = h;
    f[59] = s;
    f[60..64].copy_from_slice(&2u32.to_be_bytes()); // fixed
    f[68..84].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    let sum: u32 = f.iter().map(|b| *b as u32).sum();
    f[64..68].copy_from_slice(&(!sum).to_be_bytes());
    f
}

fn chs(size: u64) -> (u16, u8, u8) {
    let mut total = size / 512;
    total = total.min(65535 * 16 * 255);
    let (spt, heads, cth);
    if total >= 65535 * 16 * 63 {
        spt = 255;
        heads = 16;
        cth = total / spt;
    } else {
        let mut s = 17;
        let mut c = total / s;
        let mut h = c.div_ceil(1024);
        if h < 4 {
            h = 4;
        }
        if c >= h * 1024 || h > 16 {
            s = 31;
            h = 12;
            c = total / s;
        }
        if c >= h * 1024 {
            s = 63;
            h = 16;
            c = total / s;
        }
        spt = s;
        heads = h;
        cth = c;
    }
    ((cth / heads) as u16, heads as u8, spt as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn footer_is_fixed_with_valid_checksum() {
        let f = fixed_vhd_footer(4 * MIB);
        assert_eq!(&f[..8], b"conectix");
        let stored = u32::from_be_bytes([f[64], f[65], f[66], f[67]]);
        let mut g = f;
        g[64..68].fill(0);
        let sum: u32 = g.iter().map(|b| *b as u32).sum();
        assert_eq!(stored, !sum);
        assert_eq!(u32::from_be_bytes([f[60], f[61], f[62], f[63]]), 2);
    }
}
