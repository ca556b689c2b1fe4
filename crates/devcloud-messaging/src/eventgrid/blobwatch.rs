//! The blob storage system topic: a transparent proxy in front of Azurite (which emits no events)
//! that sees every storage operation and raises `Microsoft.Storage.BlobCreated` and
//! `Microsoft.Storage.BlobDeleted` exactly where Azure Storage does.
//!
//! Why a proxy and not polling: Azurite's listing shows `Creation-Time`, `Last-Modified`, `Etag` and
//! `Content-Length`. Set Blob Metadata/Properties change the ETag and Last-Modified just like an
//! overwrite; Azurite does move `Creation-Time` on an overwrite (not on a metadata change), but only
//! to the second, so an overwrite within the same second as the previous write looks like a metadata
//! change, and a listing cannot see two writes between polls as two events. The proxy sees the
//! operations themselves. Clients are given the proxy's account URL ([`BlobWatchConfig::listen`],
//! same TLS as the local Event Grid); requests and responses pass through unchanged (streamed).
//!
//! What fires (successful requests only), with `data.api` as Azure names the operation:
//! - Put Blob (`PUT` without `comp`, `x-ms-blob-type` BlockBlob, PageBlob or AppendBlob): `PutBlob`;
//!   a page blob fires when it is created, before its pages are written, as in Azure;
//! - Put Block List (`comp=blocklist`): `PutBlockList`;
//! - Copy Blob, Copy Blob From URL and Put Blob From URL (`x-ms-copy-source`): `CopyBlob`;
//! - Delete Blob: `BlobDeleted` (`DeleteBlob`).
//!
//! Nothing fires for Put Page, Put Block, Append Block, Set Blob Metadata, Set Blob Properties,
//! leases, tiers, tags, snapshots, reads or container operations.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, BodyStream, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::model::{Event, Schema, event_time};
use crate::httpserv::{self, Server};

/// How the event builder (and the dead-letter writer) authenticates to Azurite.
#[derive(Clone)]
pub enum StorageAuth {
    /// No credentials (public containers or an emulator without auth).
    Anonymous,
    /// A SAS query string (without `?`) appended to every request.
    Sas(String),
    /// A bearer token for `https://storage.azure.com`, minted on demand.
    Bearer(Arc<dyn Fn() -> Result<String, String> + Send + Sync>),
}

impl StorageAuth {
    /// Adds the credentials to a request for `url`.
    pub fn apply(
        &self,
        client: &reqwest::Client,
        method: Method,
        url: &str,
    ) -> Result<reqwest::RequestBuilder, String> {
        Ok(match self {
            StorageAuth::Anonymous => client.request(method, url),
            StorageAuth::Sas(sas) => {
                let sep = if url.contains('?') { '&' } else { '?' };
                client.request(method, format!("{url}{sep}{}", sas.trim_start_matches('?')))
            }
            StorageAuth::Bearer(mint) => client.request(method, url).bearer_auth(mint()?),
        }
        .header("x-ms-version", "2021-12-02"))
    }
}

/// Where Azurite is and where the proxy listens.
#[derive(Clone)]
pub struct BlobWatchConfig {
    /// Azurite's own account URL (the upstream), e.g. `https://127.0.0.1:10000/devstoreaccount1`.
    pub account_url: String,
    pub auth: StorageAuth,
    /// Used in the topic resource id.
    pub subscription_id: String,
    pub resource_group: String,
    /// Where the proxy listens (port 0: any free port). Its account URL is what clients use:
    /// [`super::RunningEventGrid::blob_endpoint`].
    pub listen: SocketAddr,
}

impl BlobWatchConfig {
    pub fn account_name(&self) -> String {
        self.account_url
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("devstoreaccount1")
            .to_string()
    }

    /// `/subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.Storage/storageAccounts/<account>`.
    pub fn topic_id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Storage/storageAccounts/{}",
            self.subscription_id,
            self.resource_group,
            self.account_name()
        )
    }

    /// `https://host:port` of Azurite.
    fn upstream_origin(&self) -> String {
        let u = self.account_url.trim_end_matches('/');
        match u.find("://") {
            Some(i) => match u[i + 3..].find('/') {
                Some(j) => u[..i + 3 + j].to_string(),
                None => u.to_string(),
            },
            None => u.to_string(),
        }
    }
}

/// A storage operation that raises an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOp {
    /// `Microsoft.Storage.BlobCreated` with this `api`.
    Created(&'static str),
    /// `Microsoft.Storage.BlobDeleted`.
    Deleted,
}

fn query_has(query: Option<&str>, key: &str, value: Option<&str>) -> bool {
    query.is_some_and(|q| {
        url::form_urlencoded::parse(q.as_bytes()).any(|(k, v)| {
            k.eq_ignore_ascii_case(key) && value.is_none_or(|want| v.eq_ignore_ascii_case(want))
        })
    })
}

/// Which event, if any, a blob request raises when it succeeds (Azure Storage's rules above).
pub fn classify(method: &Method, query: Option<&str>, headers: &HeaderMap) -> Option<BlobOp> {
    if query_has(query, "restype", None) {
        return None; // container and service operations
    }
    let comp = query.and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k.eq_ignore_ascii_case("comp"))
            .map(|(_, v)| v.to_ascii_lowercase())
    });
    match (method, comp.as_deref()) {
        (&Method::PUT, None) if headers.contains_key("x-ms-copy-source") => {
            Some(BlobOp::Created("CopyBlob"))
        }
        (&Method::PUT, None) if headers.contains_key("x-ms-blob-type") => {
            Some(BlobOp::Created("PutBlob"))
        }
        (&Method::PUT, Some("blocklist")) => Some(BlobOp::Created("PutBlockList")),
        (&Method::DELETE, None) => Some(BlobOp::Deleted),
        _ => None,
    }
}

/// Percent-decodes a path segment.
fn decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

/// `(container, blob)` of a request path `/<account>/<container>/<blob…>`.
pub fn blob_path(path: &str, account: &str) -> Option<(String, String)> {
    let rest = path
        .strip_prefix('/')?
        .strip_prefix(account)?
        .strip_prefix('/')?;
    let (container, blob) = rest.split_once('/')?;
    (!container.is_empty() && !blob.is_empty()).then(|| (decode(container), decode(blob)))
}

/// Percent-encodes a blob path for a URL, keeping `/`.
fn enc_path(s: &str) -> String {
    s.split('/')
        .map(|p| {
            url::form_urlencoded::byte_serialize(p.as_bytes())
                .collect::<String>()
                .replace('+', "%20")
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// What the proxy saw of one operation.
#[derive(Debug, Clone)]
struct Seen {
    op: BlobOp,
    container: String,
    blob: String,
    etag: Option<String>,
    request_id: Option<String>,
    client_request_id: Option<String>,
    /// Properties read before a delete (the blob is gone afterwards).
    props: Option<BlobProps>,
}

#[derive(Debug, Clone, Default)]
struct BlobProps {
    content_length: u64,
    content_type: String,
    blob_type: String,
}

/// Observable state of the watcher, for the admin endpoint.
#[derive(Default)]
pub struct WatchStatus {
    pub ready: tokio::sync::Notify,
    pub is_ready: AtomicBool,
    pub last_error: std::sync::Mutex<Option<String>>,
    /// Requests proxied.
    pub requests: AtomicU64,
    /// Events raised.
    pub events: AtomicU64,
}

impl WatchStatus {
    fn error(&self, e: String) {
        tracing::debug!(error = %e, "blob watcher");
        if let Ok(mut le) = self.last_error.lock() {
            *le = Some(e);
        }
    }
}

type ProxyBody = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

fn full(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    let mut r = Response::new(
        Full::new(Bytes::from_static(body.as_bytes()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r
}

/// Headers that belong to one connection, not to the request.
fn hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "expect"
            | "host"
    )
}

struct Proxy {
    config: BlobWatchConfig,
    upstream: String,
    account: String,
    client: reqwest::Client,
    seen: mpsc::UnboundedSender<Seen>,
    status: Arc<WatchStatus>,
}

impl Proxy {
    /// Reads a blob's properties from Azurite with the watcher's own credentials.
    async fn properties(&self, container: &str, blob: &str) -> Result<BlobProps, String> {
        let url = format!(
            "{}/{}/{}",
            self.config.account_url.trim_end_matches('/'),
            enc_path(container),
            enc_path(blob)
        );
        let resp = self
            .config
            .auth
            .apply(&self.client, Method::HEAD, &url)?
            .send()
            .await
            .map_err(|e| format!("reading the properties of {container}/{blob}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!(
                "reading the properties of {container}/{blob}: HTTP {}",
                resp.status()
            ));
        }
        let h = resp.headers();
        let s = |k: &str| {
            h.get(k)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        Ok(BlobProps {
            content_length: s("content-length").parse().unwrap_or(0),
            content_type: s("content-type"),
            blob_type: s("x-ms-blob-type"),
        })
    }

    async fn forward(self: Arc<Self>, req: Request<Incoming>) -> Response<ProxyBody> {
        self.status.requests.fetch_add(1, Ordering::Relaxed);
        let (parts, body) = req.into_parts();
        let op = classify(&parts.method, parts.uri.query(), &parts.headers);
        let target = blob_path(parts.uri.path(), &self.account);
        let path_q = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        // A deleted blob's type and size are only known before the delete.
        let props_before = match (op, &target) {
            (Some(BlobOp::Deleted), Some((c, b))) => self.properties(c, b).await.ok(),
            _ => None,
        };
        let mut rb = self
            .client
            .request(parts.method.clone(), format!("{}{path_q}", self.upstream));
        for (k, v) in &parts.headers {
            if !hop_by_hop(k.as_str()) {
                rb = rb.header(k, v);
            }
        }
        let stream = BodyStream::new(body).filter_map(|frame| async move {
            match frame {
                Ok(f) => f.into_data().ok().map(Ok::<Bytes, hyper::Error>),
                Err(e) => Some(Err(e)),
            }
        });
        rb = rb.body(reqwest::Body::wrap_stream(stream));
        let resp = match rb.send().await {
            Ok(r) => r,
            Err(e) => {
                self.status
                    .error(format!("forwarding to Azurite at {}: {e}", self.upstream));
                return full(StatusCode::BAD_GATEWAY, "Azurite is not reachable");
            }
        };
        let status = resp.status();
        if let (Some(op), Some((container, blob)), true) = (op, target, status.is_success()) {
            let h =
                |m: &HeaderMap, k: &str| m.get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
            let _ = self.seen.send(Seen {
                op,
                container,
                blob,
                etag: h(resp.headers(), "etag"),
                request_id: h(resp.headers(), "x-ms-request-id"),
                client_request_id: h(&parts.headers, "x-ms-client-request-id"),
                props: props_before,
            });
        }
        let mut out = Response::builder().status(status.as_u16());
        for (k, v) in resp.headers() {
            if !hop_by_hop(k.as_str()) {
                out = out.header(k, v);
            }
        }
        let body = StreamBody::new(resp.bytes_stream().map(|chunk| {
            chunk
                .map(Frame::data)
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        }));
        out.body(BodyExt::boxed(body))
            .unwrap_or_else(|_| full(StatusCode::BAD_GATEWAY, "bad response from Azurite"))
    }

    /// Builds the Event Grid schema event for one operation, as the storage system topic does.
    async fn event_for(&self, s: &Seen, sequencer: u64, public_url: &str) -> Event {
        let (ty, api) = match s.op {
            BlobOp::Created(api) => ("Microsoft.Storage.BlobCreated", api),
            BlobOp::Deleted => ("Microsoft.Storage.BlobDeleted", "DeleteBlob"),
        };
        let props = match &s.props {
            Some(p) => p.clone(),
            None => match self.properties(&s.container, &s.blob).await {
                Ok(p) => p,
                Err(e) => {
                    self.status.error(e);
                    BlobProps::default()
                }
            },
        };
        let mut data = json!({
            "api": api,
            "clientRequestId": s.client_request_id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            "requestId": s.request_id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            "eTag": s.etag.clone().unwrap_or_default(),
            "contentType": props.content_type,
            "contentLength": props.content_length,
            "blobType": props.blob_type,
            "url": format!("{}/{}/{}", public_url.trim_end_matches('/'), enc_path(&s.container), enc_path(&s.blob)),
            "sequencer": format!("{sequencer:032x}"),
            "storageDiagnostics": {"batchId": uuid::Uuid::new_v4().to_string()},
        });
        if let (BlobOp::Deleted, Value::Object(o)) = (s.op, &mut data) {
            o.remove("eTag");
            o.remove("contentLength");
        }
        Event {
            schema: Schema::EventGrid,
            value: json!({
                "topic": self.config.topic_id(),
                "subject": format!("/blobServices/default/containers/{}/blobs/{}", s.container, s.blob),
                "eventType": ty,
                "eventTime": event_time(Utc::now()),
                "id": uuid::Uuid::new_v4().to_string(),
                "data": data,
                "dataVersion": "",
                "metadataVersion": "1",
            }),
        }
    }
}

/// A running blob proxy.
pub struct RunningProxy {
    pub addr: SocketAddr,
    /// The account URL clients use (`https://127.0.0.1:<port>/<account>`).
    pub account_url: String,
    server: Server,
}

impl RunningProxy {
    pub async fn shutdown(self) {
        self.server.shutdown().await
    }
}

/// Starts the proxy; every event goes to `sink`, one operation at a time in the order Azurite
/// answered them.
pub async fn start(
    config: BlobWatchConfig,
    tls: Option<Arc<rustls::ServerConfig>>,
    client: reqwest::Client,
    status: Arc<WatchStatus>,
    sink: impl Fn(Vec<Event>) + Send + 'static,
) -> std::io::Result<RunningProxy> {
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let account = config.account_name();
    let account_url = format!("{scheme}://{addr}/{account}");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let proxy = Arc::new(Proxy {
        upstream: config.upstream_origin(),
        account,
        config,
        client,
        seen: tx,
        status: status.clone(),
    });
    let builder = proxy.clone();
    let public = account_url.clone();
    tokio::spawn(async move {
        // sequencers grow across restarts too: start from the clock
        let mut sequencer = Utc::now().timestamp_micros().max(0) as u64;
        while let Some(seen) = rx.recv().await {
            sequencer += 1;
            let event = builder.event_for(&seen, sequencer, &public).await;
            builder.status.events.fetch_add(1, Ordering::Relaxed);
            sink(vec![event]);
        }
    });
    let server = httpserv::serve_streaming(listener, tls, move |req| proxy.clone().forward(req))?;
    status.is_ready.store(true, Ordering::SeqCst);
    status.ready.notify_waiters();
    Ok(RunningProxy {
        addr,
        account_url,
        server,
    })
}

/// The proxy's HTTP client: the devcloud CA, no redirects, no decompression, no overall timeout
/// (uploads may be large).
pub fn proxy_client(ca_pem: Option<&[u8]>) -> Result<reqwest::Client, reqwest::Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .no_gzip()
        .no_brotli()
        .no_deflate()
        .no_zstd();
    if let Some(pem) = ca_pem {
        b = b.add_root_certificate(reqwest::Certificate::from_pem(pem)?);
    }
    b.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, http::HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn operations_that_fire_as_in_azure() {
        let put = Method::PUT;
        let block = headers(&[("x-ms-blob-type", "BlockBlob")]);
        let page = headers(&[("x-ms-blob-type", "PageBlob")]);
        let copy = headers(&[("x-ms-copy-source", "https://a/b/c")]);
        let none = HeaderMap::new();
        assert_eq!(
            classify(&put, None, &block),
            Some(BlobOp::Created("PutBlob"))
        );
        assert_eq!(
            classify(&put, Some("timeout=30"), &page),
            Some(BlobOp::Created("PutBlob"))
        );
        assert_eq!(
            classify(&put, None, &copy),
            Some(BlobOp::Created("CopyBlob"))
        );
        assert_eq!(
            classify(&put, Some("comp=blocklist"), &none),
            Some(BlobOp::Created("PutBlockList"))
        );
        assert_eq!(
            classify(&Method::DELETE, None, &none),
            Some(BlobOp::Deleted)
        );
        for q in [
            "comp=page",
            "comp=block&blockid=AA",
            "comp=appendblock",
            "comp=metadata",
            "comp=properties",
            "comp=lease",
            "comp=tier",
            "comp=tags",
            "comp=snapshot",
            "restype=container",
        ] {
            assert_eq!(classify(&put, Some(q), &block), None, "{q}");
        }
        assert_eq!(classify(&Method::GET, None, &none), None);
        assert_eq!(classify(&Method::HEAD, None, &none), None);
        assert_eq!(
            classify(&Method::DELETE, Some("restype=container"), &none),
            None
        );
    }

    #[test]
    fn paths() {
        assert_eq!(
            blob_path("/devstoreaccount1/images/u/a%20b.vhd", "devstoreaccount1"),
            Some(("images".into(), "u/a b.vhd".into()))
        );
        assert_eq!(
            blob_path("/devstoreaccount1/images", "devstoreaccount1"),
            None
        );
        assert_eq!(blob_path("/other/images/a", "devstoreaccount1"), None);
        assert_eq!(enc_path("dir/a b+c.vhd"), "dir/a%20b%2Bc.vhd");
        let c = BlobWatchConfig {
            account_url: "https://127.0.0.1:10000/devstoreaccount1".into(),
            auth: StorageAuth::Anonymous,
            subscription_id: "s".into(),
            resource_group: "r".into(),
            listen: "127.0.0.1:0".parse().expect("addr"),
        };
        assert_eq!(c.upstream_origin(), "https://127.0.0.1:10000");
        assert_eq!(c.account_name(), "devstoreaccount1");
    }
}
