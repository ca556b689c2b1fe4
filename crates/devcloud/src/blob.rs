//! Blob storage as an uploader sees it: create a container, upload a VHD as a page blob (in 4 MiB pages,
//! so it exists before its pages are written, as with azcopy; all-zero ranges are skipped, pages are zero
//! until written), upload a manifest, read metadata.

use std::{collections::BTreeMap, path::Path};

use anyhow::{Context, Result, bail};
use devcloud_core::Identity;

const VERSION: &str = "2021-08-06";
const PAGE_CHUNK: usize = 4 * 1024 * 1024;

/// How requests are authorised: tokens issued in-process, or one token got from the identity endpoint.
enum Auth {
    Identity(Identity),
    Token(String),
}

pub struct Storage {
    http: reqwest::Client,
    endpoint: String,
    auth: Auth,
}

impl Storage {
    pub fn new(http: reqwest::Client, endpoint: String, identity: Identity) -> Storage {
        Storage {
            http,
            endpoint,
            auth: Auth::Identity(identity),
        }
    }

    /// With a bearer token for `https://storage.azure.com` (from the managed-identity endpoint).
    pub fn with_token(http: reqwest::Client, endpoint: String, token: String) -> Storage {
        Storage {
            http,
            endpoint,
            auth: Auth::Token(token),
        }
    }

    pub fn url(&self, container: &str, name: &str) -> String {
        format!("{}/{container}/{name}", self.endpoint.trim_end_matches('/'))
    }

    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, url)
            .bearer_auth(match &self.auth {
                Auth::Identity(identity) => identity.issue("https://storage.azure.com"),
                Auth::Token(token) => token.clone(),
            })
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
        let url = self
            .create_page_blob(container, name, bytes.len() as u64)
            .await?;
        for (i, chunk) in bytes.chunks(PAGE_CHUNK).enumerate() {
            self.put_pages(&url, (i * PAGE_CHUNK) as u64, chunk).await?;
        }
        Ok(())
    }

    async fn create_page_blob(&self, container: &str, name: &str, length: u64) -> Result<String> {
        if !length.is_multiple_of(512) {
            bail!("a page blob's length must be a multiple of 512 ({length} is not)");
        }
        let url = self.url(container, name);
        let r = self
            .request(reqwest::Method::PUT, &url)
            .header("x-ms-blob-type", "PageBlob")
            .header("x-ms-blob-content-length", length.to_string())
            .header("Content-Length", "0")
            .send()
            .await?;
        Self::check(r, "create page blob").await?;
        Ok(url)
    }

    /// Put Page for one range; an all-zero range is not sent (pages are zero until written).
    async fn put_pages(&self, url: &str, start: u64, chunk: &[u8]) -> Result<bool> {
        if chunk.iter().all(|b| *b == 0) {
            return Ok(false);
        }
        let r = self
            .request(reqwest::Method::PUT, &format!("{url}?comp=page"))
            .header("x-ms-page-write", "update")
            .header(
                "x-ms-range",
                format!("bytes={start}-{}", start + chunk.len() as u64 - 1),
            )
            .body(chunk.to_vec())
            .send()
            .await?;
        Self::check(r, "put pages").await?;
        Ok(true)
    }

    /// Uploads a file as a page blob, reading it 4 MiB at a time (a VHD may be tens of GiB); `progress`
    /// is told (bytes done, bytes in all) after each range. Returns how many bytes were sent (all-zero
    /// ranges are skipped).
    pub async fn upload_file_as_page_blob_with_progress(
        &self,
        container: &str,
        name: &str,
        path: &Path,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<u64> {
        use tokio::io::AsyncReadExt;
        let mut file = tokio::fs::File::open(path)
            .await
            .with_context(|| format!("opening {}", path.display()))?;
        let length = file.metadata().await?.len();
        let url = self.create_page_blob(container, name, length).await?;
        let mut buffer = vec![0u8; PAGE_CHUNK];
        let (mut offset, mut sent) = (0u64, 0u64);
        while offset < length {
            let n = (length - offset).min(PAGE_CHUNK as u64) as usize;
            file.read_exact(&mut buffer[..n])
                .await
                .with_context(|| format!("reading {} at {offset}", path.display()))?;
            if self.put_pages(&url, offset, &buffer[..n]).await? {
                sent += n as u64;
            }
            offset += n as u64;
            progress(offset, length);
        }
        Ok(sent)
    }

    pub async fn upload_file_as_page_blob(
        &self,
        container: &str,
        name: &str,
        path: &Path,
    ) -> Result<()> {
        self.upload_file_as_page_blob_with_progress(container, name, path, |_, _| {})
            .await
            .map(|_| ())
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

    /// Appends `bytes` at the end of an existing append blob (a writer beside galleon's own).
    pub async fn append_block(&self, container: &str, name: &str, bytes: &[u8]) -> Result<()> {
        let r = self
            .request(
                reqwest::Method::PUT,
                &format!("{}?comp=appendblock", self.url(container, name)),
            )
            .body(bytes.to_vec())
            .send()
            .await?;
        Self::check(r, "append block").await.map(|_| ())
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

    /// A whole blob's content, or `None` when it does not exist.
    pub async fn download(&self, container: &str, name: &str) -> Result<Option<Vec<u8>>> {
        let r = self
            .request(reqwest::Method::GET, &self.url(container, name))
            .send()
            .await?;
        if r.status().as_u16() == 404 {
            return Ok(None);
        }
        let r = Self::check(r, "get blob").await?;
        Ok(Some(r.bytes().await?.to_vec()))
    }
}
