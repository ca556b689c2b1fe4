//! The blob storage system topic: polls Azurite's container and blob listings (Azurite emits no
//! events) and turns new or rewritten blobs into `Microsoft.Storage.BlobCreated` events (and
//! removed ones into `Microsoft.Storage.BlobDeleted`), shaped like Azure's.
//!
//! What fires, following Azure (which fires BlobCreated on PutBlob, PutBlockList, CopyBlob and
//! FlushWithClose, but not on PutPage, AppendBlock or metadata/property changes):
//! - any blob seen for the first time (a page blob fires as soon as it is created, before its pages
//!   are written, as in Azure);
//! - a blob whose `Creation-Time` changed (deleted and created again);
//! - a block blob whose ETag changed (a new PutBlob/PutBlockList/CopyBlob). A metadata-only change
//!   also changes the ETag and fires here, which Azure would not do: the listing cannot tell them apart.
//! - page and append blobs whose ETag changed without being re-created do **not** fire (PutPage,
//!   AppendBlock, resize, metadata).
//!
//! `api` is inferred: `CopyBlob` when the listing shows a copy, `PutBlockList` for a block blob with
//! committed blocks, otherwise `PutBlob`. The first listing is a baseline and fires nothing unless
//! `emit_existing` is set.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};

use super::model::{Event, Schema, event_time};

/// How the watcher authenticates to Azurite.
#[derive(Clone)]
pub enum StorageAuth {
    /// No credentials (public containers or an emulator without auth).
    Anonymous,
    /// A SAS query string (without `?`) appended to every request.
    Sas(String),
    /// A bearer token for `https://storage.azure.com`, minted on demand.
    Bearer(Arc<dyn Fn() -> Result<String, String> + Send + Sync>),
}

/// Where and how to watch.
#[derive(Clone)]
pub struct BlobWatchConfig {
    /// Account URL, e.g. `https://127.0.0.1:10000/devstoreaccount1`.
    pub account_url: String,
    pub auth: StorageAuth,
    pub poll_interval: Duration,
    /// Used in the topic resource id.
    pub subscription_id: String,
    pub resource_group: String,
    pub emit_existing: bool,
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
}

/// One blob as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct BlobInfo {
    pub container: String,
    pub name: String,
    pub etag: String,
    pub creation_time: String,
    pub blob_type: String,
    pub content_length: u64,
    pub content_type: String,
    pub copied: bool,
}

/// Decodes the five XML entities (and numeric ones).
fn xml_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let Some(end) = after.find(';') else {
            out.push_str(after);
            return out;
        };
        let ent = &after[1..end];
        let ch = match ent {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            e if e.starts_with("#x") => u32::from_str_radix(&e[2..], 16)
                .ok()
                .and_then(char::from_u32),
            e if e.starts_with('#') => e[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match ch {
            Some(c) => out.push(c),
            None => out.push_str(&after[..=end]),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The bodies of every `<tag>…</tag>` element (not nested in themselves).
fn elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(s) = rest.find(&open) {
        let body = &rest[s + open.len()..];
        let Some(e) = body.find(&close) else { break };
        out.push(&body[..e]);
        rest = &body[e + close.len()..];
    }
    out
}

/// The text of the first `<tag>` (unescaped).
fn text(xml: &str, tag: &str) -> Option<String> {
    elements(xml, tag).first().map(|t| xml_unescape(t))
}

/// Parses a List Containers response: names and the next marker.
pub fn parse_containers(xml: &str) -> (Vec<String>, Option<String>) {
    let names = elements(xml, "Container")
        .iter()
        .filter_map(|c| text(c, "Name"))
        .collect();
    (names, text(xml, "NextMarker").filter(|m| !m.is_empty()))
}

/// Parses a List Blobs response.
pub fn parse_blobs(container: &str, xml: &str) -> (Vec<BlobInfo>, Option<String>) {
    let blobs = elements(xml, "Blob")
        .iter()
        .filter_map(|b| {
            let props = elements(b, "Properties").first().copied().unwrap_or("");
            Some(BlobInfo {
                container: container.to_string(),
                name: text(b, "Name")?,
                etag: text(props, "Etag").unwrap_or_default(),
                creation_time: text(props, "Creation-Time").unwrap_or_default(),
                blob_type: text(props, "BlobType").unwrap_or_else(|| "BlockBlob".into()),
                content_length: text(props, "Content-Length")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(0),
                content_type: text(props, "Content-Type").unwrap_or_default(),
                copied: text(props, "CopyId").is_some_and(|c| !c.is_empty())
                    && text(props, "CopyStatus").as_deref() == Some("success"),
            })
        })
        .collect();
    (blobs, text(xml, "NextMarker").filter(|m| !m.is_empty()))
}

/// What changed between two listings.
#[derive(Debug, PartialEq)]
pub enum Change {
    Created(BlobInfo),
    Deleted(BlobInfo),
}

/// Compares listings by the rules in the module documentation.
pub fn diff(old: &HashMap<(String, String), BlobInfo>, new: &[BlobInfo]) -> Vec<Change> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for b in new {
        let key = (b.container.clone(), b.name.clone());
        seen.insert(key.clone());
        match old.get(&key) {
            None => out.push(Change::Created(b.clone())),
            Some(prev) if prev.etag == b.etag => {}
            Some(prev) => {
                let recreated =
                    prev.creation_time != b.creation_time || prev.blob_type != b.blob_type;
                if recreated || b.blob_type == "BlockBlob" {
                    out.push(Change::Created(b.clone()));
                }
            }
        }
    }
    for (key, b) in old {
        if !seen.contains(key) {
            out.push(Change::Deleted(b.clone()));
        }
    }
    out
}

/// Watches Azurite and hands events to `sink`.
pub struct BlobWatcher {
    config: BlobWatchConfig,
    client: reqwest::Client,
    known: HashMap<(String, String), BlobInfo>,
    sequencer: Arc<AtomicU64>,
}

/// Shared, observable watcher state.
#[derive(Default)]
pub struct WatchStatus {
    pub ready: tokio::sync::Notify,
    pub is_ready: std::sync::atomic::AtomicBool,
    pub last_error: std::sync::Mutex<Option<String>>,
    pub polls: AtomicU64,
    pub blobs: AtomicU64,
}

/// A failure talking to Azurite.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot reach Azurite at {url}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("Azurite answered {status} for {url}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("no storage token: {0}")]
    Token(String),
}

impl BlobWatcher {
    pub fn new(config: BlobWatchConfig, client: reqwest::Client) -> BlobWatcher {
        // sequencers grow across restarts too: start from the clock
        let start = Utc::now().timestamp_micros().max(0) as u64;
        BlobWatcher {
            config,
            client,
            known: HashMap::new(),
            sequencer: Arc::new(AtomicU64::new(start)),
        }
    }

    async fn get(&self, path_and_query: &str) -> Result<String, WatchError> {
        let base = self.config.account_url.trim_end_matches('/');
        let mut url = format!("{base}{path_and_query}");
        let mut rb;
        match &self.config.auth {
            StorageAuth::Sas(sas) => {
                url.push('&');
                url.push_str(sas.trim_start_matches('?'));
                rb = self.client.get(&url);
            }
            StorageAuth::Anonymous => rb = self.client.get(&url),
            StorageAuth::Bearer(mint) => {
                let token = mint().map_err(WatchError::Token)?;
                rb = self.client.get(&url).bearer_auth(token);
            }
        }
        rb = rb.header("x-ms-version", "2021-12-02");
        let resp = rb.send().await.map_err(|source| WatchError::Http {
            url: url.clone(),
            source,
        })?;
        let status = resp.status().as_u16();
        let body = resp.text().await.map_err(|source| WatchError::Http {
            url: url.clone(),
            source,
        })?;
        if status != 200 {
            return Err(WatchError::Status {
                url: url.split('?').next().unwrap_or("").to_string(),
                status,
                body: body.chars().take(300).collect(),
            });
        }
        Ok(body)
    }

    /// Lists every blob of every container.
    pub async fn list_all(&self) -> Result<Vec<BlobInfo>, WatchError> {
        let mut containers = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let q = match &marker {
                Some(m) => format!("/?comp=list&marker={}", enc(m)),
                None => "/?comp=list".to_string(),
            };
            let (mut names, next) = parse_containers(&self.get(&q).await?);
            containers.append(&mut names);
            match next {
                Some(m) => marker = Some(m),
                None => break,
            }
        }
        let mut blobs = Vec::new();
        for c in containers {
            let mut marker: Option<String> = None;
            loop {
                let mut q = format!("/{}?restype=container&comp=list&include=copy", enc(&c));
                if let Some(m) = &marker {
                    q.push_str(&format!("&marker={}", enc(m)));
                }
                let xml = match self.get(&q).await {
                    Ok(x) => x,
                    // the container was deleted between the two listings
                    Err(WatchError::Status { status: 404, .. }) => break,
                    Err(e) => return Err(e),
                };
                let (mut list, next) = parse_blobs(&c, &xml);
                blobs.append(&mut list);
                match next {
                    Some(m) => marker = Some(m),
                    None => break,
                }
            }
        }
        Ok(blobs)
    }

    async fn infer_api(&self, b: &BlobInfo) -> &'static str {
        if b.copied {
            return "CopyBlob";
        }
        if b.blob_type != "BlockBlob" {
            return "PutBlob";
        }
        let q = format!(
            "/{}/{}?comp=blocklist&blocklisttype=committed",
            enc(&b.container),
            enc_path(&b.name)
        );
        match self.get(&q).await {
            Ok(xml) if !elements(&xml, "Block").is_empty() => "PutBlockList",
            _ => "PutBlob",
        }
    }

    fn next_sequencer(&self) -> String {
        format!("{:032x}", self.sequencer.fetch_add(1, Ordering::Relaxed))
    }

    /// Builds the Event Grid schema event for a change.
    pub async fn event_for(&self, change: &Change) -> Event {
        let (b, ty, api) = match change {
            Change::Created(b) => (b, "Microsoft.Storage.BlobCreated", self.infer_api(b).await),
            Change::Deleted(b) => (b, "Microsoft.Storage.BlobDeleted", "DeleteBlob"),
        };
        let url = format!(
            "{}/{}/{}",
            self.config.account_url.trim_end_matches('/'),
            b.container,
            enc_path(&b.name)
        );
        let etag = if b.etag.starts_with('"') {
            b.etag.clone()
        } else {
            format!("\"{}\"", b.etag)
        };
        let mut data = json!({
            "api": api,
            "clientRequestId": uuid::Uuid::new_v4().to_string(),
            "requestId": uuid::Uuid::new_v4().to_string(),
            "eTag": etag,
            "contentType": b.content_type,
            "contentLength": b.content_length,
            "blobType": b.blob_type,
            "url": url,
            "sequencer": self.next_sequencer(),
            "storageDiagnostics": {"batchId": uuid::Uuid::new_v4().to_string()},
        });
        if let (Change::Deleted(_), Value::Object(o)) = (change, &mut data) {
            o.remove("eTag");
            o.remove("contentLength");
        }
        Event {
            schema: Schema::EventGrid,
            value: json!({
                "topic": self.config.topic_id(),
                "subject": format!("/blobServices/default/containers/{}/blobs/{}", b.container, b.name),
                "eventType": ty,
                "eventTime": event_time(Utc::now()),
                "id": uuid::Uuid::new_v4().to_string(),
                "data": data,
                "dataVersion": "",
                "metadataVersion": "1",
            }),
        }
    }

    /// Polls until `stop` fires, calling `sink` with each batch of events.
    pub async fn run(
        mut self,
        status: Arc<WatchStatus>,
        mut stop: tokio::sync::watch::Receiver<bool>,
        sink: impl Fn(Vec<Event>) + Send + 'static,
    ) {
        let mut baseline = !self.config.emit_existing;
        let mut ticker = tokio::time::interval(self.config.poll_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.changed() => return,
            }
            match self.list_all().await {
                Ok(list) => {
                    let changes = if baseline {
                        Vec::new()
                    } else {
                        diff(&self.known, &list)
                    };
                    baseline = false;
                    let mut events = Vec::with_capacity(changes.len());
                    for c in &changes {
                        events.push(self.event_for(c).await);
                    }
                    status.blobs.store(list.len() as u64, Ordering::Relaxed);
                    self.known = list
                        .into_iter()
                        .map(|b| ((b.container.clone(), b.name.clone()), b))
                        .collect();
                    if let Ok(mut e) = status.last_error.lock() {
                        *e = None;
                    }
                    if !events.is_empty() {
                        sink(events);
                    }
                    status.polls.fetch_add(1, Ordering::Relaxed);
                    if !status.is_ready.swap(true, Ordering::SeqCst) {
                        status.ready.notify_waiters();
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "blob listing failed");
                    if let Ok(mut le) = status.last_error.lock() {
                        *le = Some(format!(
                            "{e}: {}",
                            std::error::Error::source(&e)
                                .map(|s| s.to_string())
                                .unwrap_or_default()
                        ));
                    }
                }
            }
        }
    }
}

/// Percent-encodes a URL component.
fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// Percent-encodes a blob path, keeping `/`.
fn enc_path(s: &str) -> String {
    s.split('/').map(enc).collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = r#"<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="https://127.0.0.1:10000/devstoreaccount1" ContainerName="vhds"><Prefix/><Marker/><MaxResults>5000</MaxResults><Blobs><Blob><Name>a &amp; b.vhd</Name><Properties><Creation-Time>Sat, 21 Nov 2026 11:00:00 GMT</Creation-Time><Last-Modified>Sat, 21 Nov 2026 11:00:00 GMT</Last-Modified><Etag>"0x1D9A"</Etag><Content-Length>1048576</Content-Length><Content-Type>application/octet-stream</Content-Type><BlobType>PageBlob</BlobType></Properties></Blob><Blob><Name>dir/x.txt</Name><Properties><Creation-Time>Sat, 21 Nov 2026 11:00:01 GMT</Creation-Time><Etag>0x1D9B</Etag><Content-Length>3</Content-Length><Content-Type>text/plain</Content-Type><BlobType>BlockBlob</BlobType><CopyId>abc</CopyId><CopyStatus>success</CopyStatus></Properties></Blob></Blobs><NextMarker/></EnumerationResults>"#;

    #[test]
    fn parses_listings() {
        let (blobs, next) = parse_blobs("vhds", LIST);
        assert_eq!(next, None);
        assert_eq!(blobs.len(), 2);
        assert_eq!(blobs[0].name, "a & b.vhd");
        assert_eq!(blobs[0].etag, "\"0x1D9A\"");
        assert_eq!(blobs[0].blob_type, "PageBlob");
        assert_eq!(blobs[0].content_length, 1048576);
        assert!(!blobs[0].copied);
        assert!(blobs[1].copied);
        let (c, next) = parse_containers(
            "<EnumerationResults><Containers><Container><Name>vhds</Name><Properties/></Container><Container><Name>logs</Name></Container></Containers><NextMarker>m2</NextMarker></EnumerationResults>",
        );
        assert_eq!(c, ["vhds", "logs"]);
        assert_eq!(next.as_deref(), Some("m2"));
        assert_eq!(xml_unescape("&lt;&#65;&#x42;&unknown;"), "<AB&unknown;");
    }

    #[test]
    fn diff_rules() {
        let (blobs, _) = parse_blobs("vhds", LIST);
        let empty = HashMap::new();
        assert_eq!(diff(&empty, &blobs).len(), 2);
        let known: HashMap<_, _> = blobs
            .iter()
            .map(|b| ((b.container.clone(), b.name.clone()), b.clone()))
            .collect();
        assert!(diff(&known, &blobs).is_empty());
        // page blob pages written: new ETag, same creation time → nothing
        let mut page = blobs.clone();
        page[0].etag = "\"0x1D9C\"".into();
        assert!(diff(&known, &page).is_empty());
        // page blob re-created → fires
        page[0].creation_time = "Sat, 21 Nov 2026 11:05:00 GMT".into();
        assert_eq!(diff(&known, &page), vec![Change::Created(page[0].clone())]);
        // block blob overwritten → fires
        let mut block = blobs.clone();
        block[1].etag = "0x1D9D".into();
        assert_eq!(
            diff(&known, &block),
            vec![Change::Created(block[1].clone())]
        );
        // deleted
        assert_eq!(
            diff(&known, &blobs[..1]),
            vec![Change::Deleted(blobs[1].clone())]
        );
    }

    #[test]
    fn encoding() {
        assert_eq!(enc_path("dir/a b+c.vhd"), "dir/a%20b%2Bc.vhd");
    }
}
