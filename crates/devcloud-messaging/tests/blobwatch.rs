//! The blob system topic against a real Azurite (HTTPS, `--oauth basic`, bearer tokens): blobs that
//! appear become `Microsoft.Storage.BlobCreated` events delivered to a subscriber, shaped like the
//! documented samples; page writes do not fire; subject filters apply.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use devcloud_messaging::auth::StaticToken;
use devcloud_messaging::eventgrid::{
    self, BlobWatchConfig, DeliverySettings, Destination, EventFilter, EventGridConfig, Schema,
    StorageAuth, SubscriptionConfig,
};
use devcloud_messaging::httpserv;
use http::StatusCode;
use serde_json::Value;

struct Azurite {
    child: tokio::process::Child,
    url: String,
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

async fn start_azurite(pki: &common::TestPki, dir: &std::path::Path) -> Azurite {
    let bin = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tools/azurite/node_modules/.bin/azurite-blob"
    );
    assert!(
        std::path::Path::new(bin).exists(),
        "Azurite is not installed at {bin}: run scripts/setup.sh"
    );
    let port = common::free_port();
    let child = tokio::process::Command::new(bin)
        .args([
            "--inMemoryPersistence",
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--oauth",
            "basic",
        ])
        .arg("--cert")
        .arg(&pki.cert_path)
        .arg("--key")
        .arg(&pki.key_path)
        .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("azurite starts");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "Azurite did not open port {port}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Azurite {
        child,
        url: format!("https://127.0.0.1:{port}/devstoreaccount1"),
    }
}

struct Storage {
    c: reqwest::Client,
    base: String,
}

impl Storage {
    async fn put(&self, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> reqwest::Response {
        let mut rb = self
            .c
            .put(format!("{}{path}", self.base))
            .bearer_auth(common::test_jwt("https://storage.azure.com"))
            .header("x-ms-version", "2021-12-02");
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        let r = rb.body(body).send().await.expect("storage request");
        if !r.status().is_success() {
            let status = r.status();
            panic!(
                "PUT {path}: {status}: {}",
                r.text().await.unwrap_or_default()
            );
        }
        r
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azurite_blobs_become_blob_created_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = common::make_pki(dir.path());
    let azurite = start_azurite(&pki, dir.path()).await;

    // the subscriber
    let seen: Arc<Mutex<Vec<Value>>> = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hook = httpserv::serve(listener, None, 1 << 20, move |req| {
        let seen = s2.clone();
        async move {
            let Ok(req) = req else {
                return httpserv::empty(StatusCode::BAD_REQUEST);
            };
            if req.method() == http::Method::OPTIONS {
                let mut r = httpserv::empty(StatusCode::OK);
                r.headers_mut().insert(
                    "WebHook-Allowed-Origin",
                    http::HeaderValue::from_static("eventgrid.azure.net"),
                );
                return r;
            }
            if let Ok(v) = serde_json::from_slice::<Value>(req.body()) {
                seen.lock().expect("lock").push(v);
            }
            httpserv::empty(StatusCode::OK)
        }
    })
    .expect("hook");

    let mut sub = SubscriptionConfig::new(
        "ingest-blob",
        "storage",
        Destination::Webhook(format!("http://{}/hook", hook.addr)),
        Schema::CloudEvents,
    );
    sub.filter = EventFilter {
        included_event_types: vec!["Microsoft.Storage.BlobCreated".into()],
        subject_begins_with: "/blobServices/default/containers/vhds/".into(),
        ..Default::default()
    };
    let config = EventGridConfig {
        subscriptions: vec![sub],
        delivery: DeliverySettings {
            time_factor: 0.001,
            timeout: Duration::from_secs(5),
            functions_host: None,
            validate_functions: true,
        },
        blob_watch: Some(BlobWatchConfig {
            account_url: azurite.url.clone(),
            auth: StorageAuth::Bearer(Arc::new(|| {
                Ok(common::test_jwt("https://storage.azure.com"))
            })),
            poll_interval: Duration::from_millis(100),
            subscription_id: "sub-id".into(),
            resource_group: "rg".into(),
            emit_existing: false,
        }),
        ca_pem: Some(pki.ca_pem.clone().into_bytes()),
        subscription_id: "sub-id".into(),
        resource_group: "rg".into(),
        topics: vec![],
    };
    let eg = eventgrid::serve(
        config,
        Arc::new(StaticToken("t".into())),
        None,
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("event grid");
    assert!(
        eg.blob_watch_ready(Duration::from_secs(20)).await,
        "blob watcher never listed Azurite"
    );

    let storage = Storage {
        c: reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).expect("ca"),
            )
            .build()
            .expect("client"),
        base: azurite.url.clone(),
    };
    storage.put("/vhds?restype=container", &[], vec![]).await;
    storage.put("/other?restype=container", &[], vec![]).await;
    let r = storage
        .put(
            "/vhds/a.txt",
            &[
                ("x-ms-blob-type", "BlockBlob"),
                ("Content-Type", "text/plain"),
            ],
            b"hello".to_vec(),
        )
        .await;
    let etag = r.headers()["etag"].to_str().expect("etag").to_string();
    storage
        .put(
            "/other/ignored.txt",
            &[("x-ms-blob-type", "BlockBlob")],
            b"x".to_vec(),
        )
        .await;
    storage
        .put(
            "/vhds/disk.vhd",
            &[
                ("x-ms-blob-type", "PageBlob"),
                ("x-ms-blob-content-length", "1024"),
                ("Content-Length", "0"),
            ],
            vec![],
        )
        .await;

    let wait = |n: usize| {
        let seen = seen.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
            loop {
                let got = seen.lock().expect("lock").clone();
                if got.len() >= n {
                    return got;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "events so far: {got:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let got = wait(2).await;
    let by_subject = |got: &[Value], s: &str| got.iter().find(|e| e["subject"] == s).cloned();
    let text =
        by_subject(&got, "/blobServices/default/containers/vhds/blobs/a.txt").expect("a.txt event");
    let vhd = by_subject(&got, "/blobServices/default/containers/vhds/blobs/disk.vhd")
        .expect("disk.vhd event");

    // shaped like the documented CloudEvents sample
    let fixture: Value = serde_json::from_str(include_str!(
        "fixtures/eventgrid.BlobCreated.cloudevents-schema.docs.json"
    ))
    .expect("fixture");
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&text), keys(&fixture[0]));
    assert_eq!(keys(&text["data"]), keys(&fixture[0]["data"]));
    assert_eq!(text["type"], "Microsoft.Storage.BlobCreated");
    assert_eq!(text["specversion"], "1.0");
    assert_eq!(
        text["source"],
        "/subscriptions/sub-id/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/devstoreaccount1"
    );
    assert_eq!(text["data"]["api"], "PutBlob");
    assert_eq!(text["data"]["blobType"], "BlockBlob");
    assert_eq!(text["data"]["contentLength"], 5);
    assert_eq!(text["data"]["contentType"], "text/plain");
    assert_eq!(text["data"]["eTag"], etag);
    assert_eq!(text["data"]["url"], format!("{}/vhds/a.txt", azurite.url));
    assert_eq!(vhd["data"]["blobType"], "PageBlob");
    assert_eq!(vhd["data"]["contentLength"], 1024);
    let seq = |v: &Value| {
        u128::from_str_radix(v["data"]["sequencer"].as_str().expect("sequencer"), 16).expect("hex")
    };
    assert_ne!(seq(&text), seq(&vhd));

    // writing pages does not fire; a block list commit does
    storage
        .put(
            "/vhds/disk.vhd?comp=page",
            &[("x-ms-page-write", "update"), ("x-ms-range", "bytes=0-511")],
            vec![7u8; 512],
        )
        .await;
    storage
        .put(
            "/vhds/big.bin?comp=block&blockid=YmxvY2sx",
            &[],
            vec![1u8; 100],
        )
        .await;
    storage
        .put(
            "/vhds/big.bin?comp=blocklist",
            &[("Content-Type", "application/xml")],
            b"<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList><Latest>YmxvY2sx</Latest></BlockList>".to_vec(),
        )
        .await;
    let got = wait(3).await;
    let big = by_subject(&got, "/blobServices/default/containers/vhds/blobs/big.bin")
        .expect("big.bin event");
    assert_eq!(big["data"]["api"], "PutBlockList");
    assert!(seq(&big) > seq(&vhd));
    // a few more polls: still no event for the page write, nor for the other container
    tokio::time::sleep(Duration::from_millis(600)).await;
    let got = seen.lock().expect("lock").clone();
    assert_eq!(got.len(), 3, "{got:?}");
    let blob_events: Value = storage
        .c
        .get(format!("{}/_devcloud/events", eg.url()))
        .send()
        .await
        .expect("admin")
        .json()
        .await
        .expect("json");
    // the admin list shows every storage event, including the one no subscription matched
    assert!(
        blob_events
            .as_array()
            .expect("array")
            .iter()
            .any(|e| e["subject"] == "/blobServices/default/containers/other/blobs/ignored.txt")
    );
}
