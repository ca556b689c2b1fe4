//! The blob system topic against a real Azurite (HTTPS, `--oauth basic`, bearer tokens), through the
//! blob proxy: exactly the operations that raise events in Azure (PutBlob, PutBlockList, CopyBlob,
//! DeleteBlob) become `Microsoft.Storage.BlobCreated`/`BlobDeleted` events delivered to a subscriber,
//! shaped like the documented samples; metadata, properties, pages, blocks and leases do not fire.

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
use serde_json::{Value, json};

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
        self.send(reqwest::Method::PUT, path, headers, body).await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> reqwest::Response {
        let mut rb = self
            .c
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(common::test_jwt("https://storage.azure.com"))
            .header("x-ms-version", "2021-12-02");
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        let r = rb.body(body).send().await.expect("storage request");
        if !r.status().is_success() {
            let status = r.status();
            panic!(
                "{method} {path}: {status}: {}",
                r.text().await.unwrap_or_default()
            );
        }
        r
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_operations_azure_reports_become_blob_events() {
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
        included_event_types: vec![
            "Microsoft.Storage.BlobCreated".into(),
            "Microsoft.Storage.BlobDeleted".into(),
        ],
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
            subscription_id: "sub-id".into(),
            resource_group: "rg".into(),
            listen: "127.0.0.1:0".parse().expect("addr"),
        }),
        ca_pem: Some(pki.ca_pem.clone().into_bytes()),
        subscription_id: "sub-id".into(),
        resource_group: "rg".into(),
        topics: vec![],
    };
    let eg = eventgrid::serve(
        config,
        Arc::new(StaticToken("t".into())),
        Some(pki.server.clone()),
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("event grid");
    assert!(eg.blob_watch_ready(Duration::from_secs(20)).await);
    let endpoint = eg.blob_endpoint().expect("blob endpoint");
    assert!(endpoint.starts_with("https://127.0.0.1:") && endpoint.ends_with("/devstoreaccount1"));
    assert_ne!(endpoint, azurite.url, "clients use the proxy, not Azurite");

    let storage = Storage {
        c: reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).expect("ca"),
            )
            .build()
            .expect("client"),
        base: endpoint.clone(),
    };
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
    storage.put("/vhds?restype=container", &[], vec![]).await;
    storage.put("/other?restype=container", &[], vec![]).await;
    let r = storage
        .put(
            "/vhds/a.txt",
            &[
                ("x-ms-blob-type", "BlockBlob"),
                ("Content-Type", "text/plain"),
                ("x-ms-client-request-id", "client-1"),
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
                ("x-ms-blob-content-length", "2048"),
                ("Content-Length", "0"),
            ],
            vec![],
        )
        .await;
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
    assert_eq!(
        text["source"],
        "/subscriptions/sub-id/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/devstoreaccount1"
    );
    assert_eq!(text["data"]["api"], "PutBlob");
    assert_eq!(text["data"]["blobType"], "BlockBlob");
    assert_eq!(text["data"]["contentLength"], 5);
    assert_eq!(text["data"]["contentType"], "text/plain");
    assert_eq!(text["data"]["eTag"], etag);
    assert_eq!(text["data"]["clientRequestId"], "client-1");
    assert_eq!(text["data"]["url"], format!("{endpoint}/vhds/a.txt"));
    assert_eq!(vhd["data"]["api"], "PutBlob");
    assert_eq!(vhd["data"]["blobType"], "PageBlob");
    assert_eq!(vhd["data"]["contentLength"], 2048);

    // None of these raise an event in Azure: pages, metadata, properties, leases, blocks.
    for offset in [0, 512, 1024] {
        let range = format!("bytes={offset}-{}", offset + 511);
        storage
            .put(
                "/vhds/disk.vhd?comp=page",
                &[("x-ms-page-write", "update"), ("x-ms-range", &range)],
                vec![7u8; 512],
            )
            .await;
    }
    let r = storage
        .put(
            "/vhds/a.txt?comp=metadata",
            &[("x-ms-meta-galleon", "rejected")],
            vec![],
        )
        .await;
    // (why polling cannot be faithful: a metadata change gives the blob a new ETag, as a rewrite does)
    assert_ne!(r.headers()["etag"].to_str().expect("etag"), etag);
    storage
        .put(
            "/vhds/a.txt?comp=properties",
            &[("x-ms-blob-content-type", "text/markdown")],
            vec![],
        )
        .await;
    storage
        .put(
            "/vhds/disk.vhd?comp=lease",
            &[
                ("x-ms-lease-action", "acquire"),
                ("x-ms-lease-duration", "-1"),
            ],
            vec![],
        )
        .await;
    storage
        .put(
            "/vhds/disk.vhd?comp=lease",
            &[
                ("x-ms-lease-action", "break"),
                ("x-ms-lease-break-period", "0"),
            ],
            vec![],
        )
        .await;
    storage
        .put(
            "/vhds/big.bin?comp=block&blockid=YmxvY2sx",
            &[],
            vec![1u8; 100],
        )
        .await;
    // These do: a block list commit, an overwrite, a copy, a delete.
    storage
        .put(
            "/vhds/big.bin?comp=blocklist",
            &[("Content-Type", "application/xml")],
            b"<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList><Latest>YmxvY2sx</Latest></BlockList>".to_vec(),
        )
        .await;
    storage
        .put(
            "/vhds/a.txt",
            &[
                ("x-ms-blob-type", "BlockBlob"),
                ("Content-Type", "text/plain"),
            ],
            b"again".to_vec(),
        )
        .await;
    let source = format!("{endpoint}/vhds/a.txt");
    storage
        .put("/vhds/copy.txt", &[("x-ms-copy-source", &source)], vec![])
        .await;
    storage
        .send(reqwest::Method::DELETE, "/vhds/copy.txt", &[], vec![])
        .await;
    // A page blob (a VHD) is deleted the same way; a DELETE that fails passes Azurite's answer
    // through unchanged and raises nothing.
    storage
        .send(reqwest::Method::DELETE, "/vhds/disk.vhd", &[], vec![])
        .await;
    let missing = storage
        .c
        .delete(format!("{endpoint}/vhds/never.vhd"))
        .bearer_auth(common::test_jwt("https://storage.azure.com"))
        .header("x-ms-version", "2021-12-02")
        .send()
        .await
        .expect("delete answers");
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.headers()["x-ms-error-code"], "BlobNotFound");
    // reads pass through unchanged
    let r = storage
        .send(reqwest::Method::GET, "/vhds/a.txt", &[], vec![])
        .await;
    assert_eq!(r.bytes().await.expect("body").as_ref(), b"again");

    wait(7).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut got = seen.lock().expect("lock").clone();
    let seq = |v: &Value| {
        u128::from_str_radix(v["data"]["sequencer"].as_str().expect("sequencer"), 16).expect("hex")
    };
    got.sort_by_key(seq);
    let summary: Vec<(String, String, String)> = got
        .iter()
        .map(|e| {
            (
                e["type"]
                    .as_str()
                    .unwrap_or("")
                    .replace("Microsoft.Storage.", ""),
                e["subject"]
                    .as_str()
                    .unwrap_or("")
                    .replace("/blobServices/default/containers/vhds/blobs/", ""),
                e["data"]["api"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let want = [
        ("BlobCreated", "a.txt", "PutBlob"),
        ("BlobCreated", "disk.vhd", "PutBlob"),
        ("BlobCreated", "big.bin", "PutBlockList"),
        ("BlobCreated", "a.txt", "PutBlob"),
        ("BlobCreated", "copy.txt", "CopyBlob"),
        ("BlobDeleted", "copy.txt", "DeleteBlob"),
        ("BlobDeleted", "disk.vhd", "DeleteBlob"),
    ]
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()));
    assert_eq!(summary, want, "{got:#?}");
    let deleted = &got[5];
    assert_eq!(deleted["data"]["blobType"], "BlockBlob");
    assert!(deleted["data"].get("eTag").is_none());
    let deleted_vhd = &got[6];
    assert_eq!(deleted_vhd["data"]["blobType"], "PageBlob", "{deleted_vhd}");
    assert!(deleted_vhd["data"].get("contentLength").is_none());
    let status: Value = storage
        .c
        .get(format!("{}/_devcloud/blobwatch", eg.url()))
        .send()
        .await
        .expect("admin")
        .json()
        .await
        .expect("json");
    assert_eq!(
        status["events"], 8,
        "7 in vhds plus other/ignored.txt: {status}"
    );
    assert_eq!(status["lastError"], Value::Null);
    eg.shutdown().await;
}

/// After the last attempt, the dead-lettered event is written to the subscription's
/// `deadLetterDestination` container, as Event Grid does: blob
/// `<SUBSCRIPTION>/<y>/<m>/<d>/<h>/<guid>.json` (upper case, no zero padding) holding an array with
/// the event and its dead-letter fields, shaped like the documented sample.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_written_to_the_dead_letter_container() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = common::make_pki(dir.path());
    let azurite = start_azurite(&pki, dir.path()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hook = httpserv::serve(listener, None, 1 << 20, |_req| async {
        httpserv::empty(StatusCode::INTERNAL_SERVER_ERROR)
    })
    .expect("hook");
    let mut sub = SubscriptionConfig::new(
        "Announce-Hook",
        "grid",
        Destination::Webhook(format!("http://{}/hook", hook.addr)),
        Schema::EventGrid,
    );
    sub.max_delivery_attempts = 2;
    sub.dead_letter_container = Some("galleon-deadletters".into());
    let delivery = DeliverySettings {
        time_factor: 0.001,
        timeout: Duration::from_secs(5),
        functions_host: None,
        validate_functions: false,
    };
    let config = EventGridConfig {
        topics: vec![eventgrid::TopicConfig {
            name: "grid".into(),
            input_schema: Schema::EventGrid,
            key: "k".into(),
            disable_local_auth: false,
            access: None,
        }],
        subscriptions: vec![sub],
        delivery,
        blob_watch: Some(BlobWatchConfig {
            account_url: azurite.url.clone(),
            auth: StorageAuth::Bearer(Arc::new(|| {
                Ok(common::test_jwt("https://storage.azure.com"))
            })),
            subscription_id: "sub-id".into(),
            resource_group: "rg".into(),
            listen: "127.0.0.1:0".parse().expect("addr"),
        }),
        ca_pem: Some(pki.ca_pem.clone().into_bytes()),
        subscription_id: "sub-id".into(),
        resource_group: "rg".into(),
    };
    let eg = eventgrid::serve(
        config,
        Arc::new(StaticToken("t".into())),
        None,
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("event grid");
    // The handshake of an Event Grid schema webhook would fail on a 500 before any delivery; skip it.
    for s in eg.dispatcher.subscriptions() {
        s.mark_validated().await;
    }
    let storage = Storage {
        c: reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).expect("ca"),
            )
            .build()
            .expect("client"),
        base: eg.blob_endpoint().expect("blob endpoint"),
    };
    let before = chrono::Utc::now();
    let published = json!([{"id": "dl-1", "eventType": "io.galleon.image.ready.v1", "subject": "images/x",
        "eventTime": "2026-11-21T11:00:00Z", "data": {"n": 1}, "dataVersion": "1"}]);
    let r = storage
        .c
        .post(format!("{}/topics/grid/api/events", eg.url()))
        .header("aeg-sas-key", "k")
        .json(&published)
        .send()
        .await
        .expect("publish");
    assert_eq!(r.status(), 200);

    // the container holds one blob, named as Event Grid names them
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let names = loop {
        let xml = storage
            .send(
                reqwest::Method::GET,
                "/galleon-deadletters?restype=container&comp=list",
                &[],
                vec![],
            )
            .await
            .text()
            .await
            .expect("listing");
        let names: Vec<String> = xml
            .split("<Name>")
            .skip(1)
            .filter_map(|p| p.split("</Name>").next().map(str::to_string))
            .collect();
        if !names.is_empty() {
            break names;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no dead-letter blob"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let after = chrono::Utc::now();
    assert_eq!(names.len(), 1, "{names:?}");
    let name = &names[0];
    use chrono::{Datelike, Timelike};
    let prefix = |t: chrono::DateTime<chrono::Utc>| {
        format!(
            "ANNOUNCE-HOOK/{}/{}/{}/{}/",
            t.year(),
            t.month(),
            t.day(),
            t.hour()
        )
    };
    assert!(
        name.starts_with(&prefix(before)) || name.starts_with(&prefix(after)),
        "{name}"
    );
    let guid = name
        .rsplit('/')
        .next()
        .and_then(|f| f.strip_suffix(".json"))
        .expect("<guid>.json");
    assert!(uuid::Uuid::parse_str(guid).is_ok(), "{name}");

    let body: Value = storage
        .send(
            reqwest::Method::GET,
            &format!("/galleon-deadletters/{name}"),
            &[],
            vec![],
        )
        .await
        .json()
        .await
        .expect("dead-letter blob is JSON");
    let events = body.as_array().expect("an array of events");
    assert_eq!(events.len(), 1);
    let dl = &events[0];
    let fixture: Value = serde_json::from_str(include_str!(
        "fixtures/eventgrid.BlobCreated.deadletter.eventgrid-schema.docs.json"
    ))
    .expect("fixture");
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(dl), keys(&fixture));
    assert_eq!(dl["id"], "dl-1");
    assert_eq!(dl["deadLetterReason"], "MaxDeliveryAttemptsExceeded");
    assert_eq!(dl["deliveryAttempts"], 2);
    assert_eq!(dl["lastDeliveryOutcome"], "GenericError");
    // still listed by the admin endpoint too
    let admin: Value = storage
        .c
        .get(format!("{}/_devcloud/deadletters", eg.url()))
        .send()
        .await
        .expect("admin")
        .json()
        .await
        .expect("json");
    assert_eq!(admin.as_array().map(Vec::len), Some(1));
    eg.shutdown().await;
}
