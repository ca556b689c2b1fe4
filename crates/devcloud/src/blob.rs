//! Blob storage as an uploader sees it: create a container, upload a VHD as a page blob (in 4 MiB pages,
//! so it exists before its pages are written, as with azcopy), upload a manifest, read metadata.

use std::{collections::BTreeMap, path::Path};

use anyhow::{Context, Result, bail};
use devcloud_core::Identity;

const VERSION: &str = "2021-08-06";
const PAGE_CHUNK: usize = 4 * 1024 * 1024;

pub struct Storage {
    http: reqwest::Client,
    endpoint: String,
    identity: Identity,
}

impl Storage {
    pub fn new(http: reqwest::Client, endpoint: String, identity: Identity) -> Storage {
        Storage {
            http,
            endpoint,
            identity,
        }
    }

    pub fn url(&self, container: &str, name: &str) -> String {
        format!("{}/{container}/{name}", self.endpoint.trim_end_matches('/'))
    }

    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, url)
            .bearer_auth(self.identity.issue("https://storage.azure.com"))
            .header("x-ms-version", VERSION)
    }

    async fn check(response: reqwest::Response, what: &str) -> Result<reqwest::Response> {
        if response.status().is_success() || response.status().as_u16() == 409 {
            return Ok(response);
        }
        bail!(
            "{what}: {} {}",
            response.status(),
            response.text().await.unwrap_or_default()
        )
    }

    pub async fn create_container(&self, container: &str) -> Result<()> {
        let url = format!(
            "{}/{container}?restype=container",
            self.endpoint.trim_end_matches('/')
        );
        let r = self
            .request(reqwest::Method::PUT, &url)
            .header("Content-Length", "0")
            .send()
            .await?;
        Self::check(r, "create container").await.map(|_| ())
    }

    /// Uploads `bytes` as a page blob (length must be a multiple of 512).
    pub async fn upload_page_blob(&self, container: &str, name: &str, bytes: &[u8]) -> Result<()> {
        if !bytes.len().is_multiple_of(512) {
            bail!(
                "a page blob's length must be a multiple of 512 ({} is not)",
                bytes.len()
            );
        }
        let url = self.url(container, name);
        let r = self
            .request(reqwest::Method::PUT, &url)
            .header("x-ms-blob-type", "PageBlob")
            .header("x-ms-blob-content-length", bytes.len().to_string())
            .header("Content-Length", "0")
            .send()
            .await?;
        Self::check(r, "create page blob").await?;
        for (i, chunk) in bytes.chunks(PAGE_CHUNK).enumerate() {
            if chunk.iter().all(|b| *b == 0) {
                continue; // pages are zero until written
            }
            let start = i * PAGE_CHUNK;
            let r = self
                .request(reqwest::Method::PUT, &format!("{url}?comp=page"))
                .header("x-ms-page-write", "update")
                .header(
                    "x-ms-range",
                    format!("bytes={start}-{}", start + chunk.len() - 1),
                )
                .body(chunk.to_vec())
                .send()
                .await?;
            Self::check(r, "put pages").await?;
        }
        Ok(())
    }

    pub async fn upload_file_as_page_blob(
        &self,
        container: &str,
        name: &str,
        path: &Path,
    ) -> Result<()> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        self.upload_page_blob(container, name, &bytes).await
    }

    pub async fn upload_block_blob(&self, container: &str, name: &str, bytes: &[u8]) -> Result<()> {
        let r = self
            .request(reqwest::Method::PUT, &self.url(container, name))
            .header("x-ms-blob-type", "BlockBlob")
            .body(bytes.to_vec())
            .send()
            .await?;
        Self::check(r, "put blob").await.map(|_| ())
    }

    /// The blob's metadata, or `None` when it does not exist.
    pub async fn metadata(
        &self,
        container: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>> {
        let r = self
            .request(reqwest::Method::HEAD, &self.url(container, name))
            .send()
            .await?;
        if r.status().as_u16() == 404 {
            return Ok(None);
        }
        let r = Self::check(r, "get properties").await?;
        Ok(Some(
            r.headers()
                .iter()
                .filter_map(|(k, v)| {
                    Some((
                        k.as_str().strip_prefix("x-ms-meta-")?.to_owned(),
                        v.to_str().ok()?.to_owned(),
                    ))
                })
                .collect(),
        ))
    }
}
