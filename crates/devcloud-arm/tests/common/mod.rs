//! Test harness: Azurite + identity + ARM in-process on ephemeral ports, an authenticated client,
//! VHD creation with qemu-img and page-blob upload to Azurite.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use devcloud_arm::{ArmConfig, RunningArm};
use devcloud_core::{Identity, Tls, azurite::Azurite};
use reqwest::Method;
use serde_json::Value;

pub const SUB: &str = "11111111-2222-3333-4444-555555555555";

pub struct Env {
    pub dir: tempfile::TempDir,
    pub tls: Tls,
    pub identity: Identity,
    pub azurite: Option<Azurite>,
    pub arm: RunningArm,
    pub client: reqwest::Client,
    pub token: String,
}

pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }
    /// Asserts the HTTP status and ARM error code.
    pub fn expect(&self, status: u16, code: &str) {
        assert_eq!((self.status, self.code()), (status, code), "{}", self.body);
    }
    /// Asserts the error message contains `text`.
    pub fn expect_message(&self, text: &str) {
        assert!(
            self.message().contains(text),
            "{:?} not in {}",
            text,
            self.body
        );
    }
}

impl Env {
    /// Starts the simulator with resource group `rg` in [`SUB`] (as infra would have made it).
    pub async fn start(with_azurite: bool, mut config: ArmConfig) -> Env {
        config
            .resource_groups
            .push(devcloud_arm::ResourceGroupSeed {
                subscription: SUB.to_string(),
                name: "rg".to_string(),
                location: None,
            });
        devcloud_core::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let tls = Tls::load_or_create(dir.path()).unwrap();
        let identity = Identity::load_or_create(dir.path()).unwrap();
        let azurite = if with_azurite {
            let az = devcloud_core::azurite::start(&tls, 0, &dir.path().join("azurite"))
                .await
                .unwrap();
            config.blob_endpoint = Some(az.blob_endpoint());
            Some(az)
        } else {
            None
        };
        let arm = devcloud_arm::serve(
            config,
            identity.clone(),
            Some(&tls),
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
        let ca = reqwest::Certificate::from_pem(&tls.ca_pem_bytes().unwrap()).unwrap();
        let client = reqwest::Client::builder()
            .add_root_certificate(ca)
            .build()
            .unwrap();
        let token = identity.issue("https://management.azure.com/.default");
        Env {
            dir,
            tls,
            identity,
            azurite,
            arm,
            client,
            token,
        }
    }

    /// Replaces the simulator with a fresh one (same Azurite, CA and identity).
    pub async fn restart_arm(&mut self, mut config: ArmConfig) {
        config
            .resource_groups
            .push(devcloud_arm::ResourceGroupSeed {
                subscription: SUB.to_string(),
                name: "rg".to_string(),
                location: None,
            });
        config.blob_endpoint = self.azurite.as_ref().map(|a| a.blob_endpoint());
        let arm = devcloud_arm::serve(
            config,
            self.identity.clone(),
            Some(&self.tls),
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
        let old = std::mem::replace(&mut self.arm, arm);
        old.shutdown().await;
    }

    /// Creates resource group `rg` in [`SUB`] through the Microsoft.Resources API.
    pub async fn create_group(&self, rg: &str) {
        self.ok(
            Method::PUT,
            &format!("{}?api-version=2025-04-01", self.rg_path(rg)),
            Some(serde_json::json!({"location": "westeurope"})),
        )
        .await;
    }

    pub fn rg_path(&self, rg: &str) -> String {
        format!("/subscriptions/{SUB}/resourceGroups/{rg}")
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.arm.base_url)
        };
        let mut rb = self.client.request(method, &url).bearer_auth(&self.token);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Resp {
            status,
            headers,
            body,
        }
    }

    /// Polls an Azure-AsyncOperation URL until the status is terminal; returns the final status body.
    pub async fn wait_async(&self, url: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = self.call(Method::GET, url, None).await;
            assert_eq!(r.status, 200, "{:?}", r.body);
            let s = r.body["status"].as_str().unwrap_or("").to_string();
            if s != "InProgress" {
                return r.body;
            }
            assert!(Instant::now() < deadline, "operation did not finish: {url}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends a request and, if it started an operation, waits for it; asserts success.
    pub async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let r = self.call(method, path, body).await;
        assert!(
            r.status < 300,
            "{} {path}: {} {:?}",
            r.status,
            r.status,
            r.body
        );
        if let Some(url) = r.header("azure-asyncoperation") {
            let s = self.wait_async(&url).await;
            assert_eq!(s["status"], "Succeeded", "{s}");
        } else if let Some(url) = r.header("location") {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let p = self.call(Method::GET, &url, None).await;
                if p.status != 202 {
                    assert!(p.status < 300, "{:?}", p.body);
                    break;
                }
                assert!(Instant::now() < deadline);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        r
    }

    /// Uploads `data` (length a multiple of 512) as a page blob `container/name` in Azurite.
    pub async fn upload_page_blob(&self, container: &str, name: &str, data: &[u8]) -> String {
        let az = self.azurite.as_ref().expect("azurite");
        let token = self.identity.issue("https://storage.azure.com");
        let ep = az.blob_endpoint();
        let r = self
            .client
            .put(format!("{ep}/{container}?restype=container"))
            .bearer_auth(&token)
            .header("x-ms-version", "2025-01-05")
            .header("content-length", "0")
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success() || r.status() == 409,
            "{}",
            r.status()
        );
        let url = format!("{ep}/{container}/{name}");
        let r = self
            .client
            .put(&url)
            .bearer_auth(&token)
            .header("x-ms-version", "2025-01-05")
            .header("x-ms-blob-type", "PageBlob")
            .header("x-ms-blob-content-length", data.len().to_string())
            .header("content-length", "0")
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        let mut off = 0usize;
        while off < data.len() {
            let end = (off + 4 * 1024 * 1024).min(data.len());
            let chunk = &data[off..end];
            if chunk.iter().any(|b| *b != 0) {
                let r = self
                    .client
                    .put(format!("{url}?comp=page"))
                    .bearer_auth(&token)
                    .header("x-ms-version", "2025-01-05")
                    .header("x-ms-page-write", "update")
                    .header("x-ms-range", format!("bytes={}-{}", off, end - 1))
                    .body(chunk.to_vec())
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success(), "{}", r.status());
            }
            off = end;
        }
        url
    }

    /// Uploads a VHD made by qemu-img (`subformat` fixed or dynamic, size as qemu-img takes it).
    pub async fn upload_vhd(
        &self,
        container: &str,
        name: &str,
        subformat: &str,
        size: &str,
    ) -> String {
        let data = make_vhd(self.dir.path(), subformat, size);
        self.upload_page_blob(container, name, &data).await
    }

    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let url = format!("{}/_devcloud/{path}", self.arm.base_url);
        let mut rb = self.client.request(method, &url);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        Resp {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }
}

/// Makes a VHD with qemu-img; pads a dynamic one to a multiple of 512 bytes for page-blob upload.
pub fn make_vhd(dir: &std::path::Path, subformat: &str, size: &str) -> Vec<u8> {
    let path = dir.join(format!("{}-{subformat}-{size}.vhd", uuid_like()));
    let mut opts = format!("subformat={subformat}");
    if subformat == "fixed" {
        opts.push_str(",force_size=on");
    }
    let out = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "vpc", "-o", &opts])
        .arg(&path)
        .arg(size)
        .output()
        .expect("qemu-img is installed (apt-get install qemu-utils)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut data = std::fs::read(&path).unwrap();
    while !data.len().is_multiple_of(512) {
        data.push(0);
    }
    data
}

fn uuid_like() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// Creates gallery `gal` and definition `def` (Linux, Generalized, V2) in `rg`; returns the definition path.
pub async fn gallery_and_definition(env: &Env) -> String {
    let g = format!(
        "{}/providers/Microsoft.Compute/galleries/gal",
        env.rg_path("rg")
    );
    env.ok(
        Method::PUT,
        &format!("{g}?api-version=2025-03-03"),
        Some(serde_json::json!({"location": "westeurope"})),
    )
    .await;
    let d = format!("{g}/images/def");
    let body = serde_json::json!({"location": "westeurope", "properties": {
        "osType": "Linux", "osState": "Generalized", "hyperVGeneration": "V2",
        "identifier": {"publisher": "p", "offer": "o", "sku": "s"}}});
    env.ok(
        Method::PUT,
        &format!("{d}?api-version=2025-03-03"),
        Some(body),
    )
    .await;
    d
}

/// Creates managed image `img` in `rg` (Linux, V2) from a blob URI that is not checked without Azurite.
pub async fn managed_image(env: &Env) -> String {
    let img = format!(
        "{}/providers/Microsoft.Compute/images/img",
        env.rg_path("rg")
    );
    let body = serde_json::json!({"location": "westeurope", "properties": {"hyperVGeneration": "V2",
        "storageProfile": {"osDisk": {"osType": "Linux", "osState": "Generalized", "blobUri": "https://a.blob.core.windows.net/c/x.vhd"}}}});
    env.ok(
        Method::PUT,
        &format!("{img}?api-version=2025-04-01"),
        Some(body),
    )
    .await;
    img
}
