//! The local ARM's resource events on Event Grid's `resources` system topic, wired as `devcloud up`
//! wires them ([`devcloud::resource_events::connect`]): subscriptions from a test-only routing file
//! (function destinations, CloudEvents and Event Grid schema) and one added through the admin API,
//! filtered on `data.operationName`. The deliveries are then read by the official clients:
//! `@azure/eventgrid` (tests/js/resource_events.test.mjs) and `azure-eventgrid` (tests/python/resource_events).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use devcloud_arm::{ArmConfig, DEFAULT_SUBSCRIPTION_ID as SUB, ResourceGroupSeed};
use devcloud_messaging::Routing;
use devcloud_messaging::eventgrid::{self, EventGridConfig};
use serde_json::{Value, json};
use warp::{Filter, Reply as _};

const RG: &str = "rg-images";
const C: &str = "api-version=2025-04-01";

/// Deliveries a webhook got: (path and query, body). Answers both handshakes.
type Seen = Arc<Mutex<Vec<(String, Value)>>>;

async fn hook() -> (String, Seen, devcloud_core::ServerHandle) {
    let seen: Seen = Arc::default();
    let store = seen.clone();
    let options = warp::options().map(|| {
        warp::reply::with_header(
            warp::reply::with_header(warp::reply(), "WebHook-Allowed-Origin", "*"),
            "WebHook-Allowed-Rate",
            "*",
        )
        .into_response()
    });
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    let post = warp::post()
        .and(warp::path::full())
        .and(query)
        .and(warp::header::optional::<String>("aeg-event-type"))
        .and(warp::body::bytes())
        .map(
            move |path: warp::path::FullPath,
                  q: String,
                  kind: Option<String>,
                  body: warp::hyper::body::Bytes| {
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                if kind.as_deref() == Some("SubscriptionValidation") {
                    let code = body[0]["data"]["validationCode"].clone();
                    return warp::reply::json(&json!({"validationResponse": code})).into_response();
                }
                store
                    .lock()
                    .unwrap()
                    .push((format!("{}?{q}", path.as_str()), body));
                warp::reply().into_response()
            },
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handle = devcloud_core::serve_http(options.or(post).unify(), listener).unwrap();
    (url, seen, handle)
}

fn bodies(seen: &Seen, path: &str) -> Vec<Value> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|(p, _)| p.contains(path))
        .map(|(_, b)| b.clone())
        .collect()
}

/// The Event Grid schema events a webhook got (each delivery is an array of one).
fn grid_events(seen: &Seen, path: &str) -> Vec<Value> {
    bodies(seen, path)
        .iter()
        .flat_map(|b| b.as_array().cloned().unwrap_or_default())
        .collect()
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const ROUTING: &str = r#"{"eventGrid": {"subscriptions": [
  {"name": "image-written", "function": "OnImageWritten", "topic": "resources",
   "eventDeliverySchema": "CloudEventSchemaV1_0",
   "filter": {"includedEventTypes": ["Microsoft.Resources.ResourceWriteSuccess"],
     "advancedFilters": [{"operatorType": "StringIn", "key": "data.operationName",
                          "values": ["Microsoft.Compute/images/write"]}]}},
  {"name": "gallery-written", "function": "OnGalleryWritten", "topic": "resources",
   "eventDeliverySchema": "EventGridSchema",
   "filter": {"advancedFilters": [{"operatorType": "StringIn", "key": "data.operationName",
                                   "values": ["Microsoft.Compute/galleries/write"]}]}}
]}}"#;

struct Stack {
    arm: devcloud_arm::RunningArm,
    eg: eventgrid::RunningEventGrid,
    client: reqwest::Client,
    token: String,
}

impl Stack {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut rb = self
            .client
            .request(method, format!("{}{path}", self.arm.base_url))
            .bearer_auth(&self.token)
            .header("x-ms-correlation-request-id", "corr-images");
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        rb.send().await.unwrap()
    }

    /// PUTs a managed image and waits for its operation to end; returns its final status.
    async fn put_image(&self, id: &str) -> String {
        let body = json!({"location": "westeurope", "properties": {"hyperVGeneration": "V2",
            "storageProfile": {"osDisk": {"osType": "Linux", "osState": "Generalized",
                "blobUri": "https://a.blob.core.windows.net/c/x.vhd"}}}});
        let r = self
            .call(reqwest::Method::PUT, &format!("{id}?{C}"), Some(body))
            .await;
        assert_eq!(r.status(), 201);
        let op = r.headers()["azure-asyncoperation"]
            .to_str()
            .unwrap()
            .to_string();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let s: Value = self
                .client
                .get(&op)
                .bearer_auth(&self.token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let status = s["status"].as_str().unwrap_or("").to_string();
            if status != "InProgress" {
                return status;
            }
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_events_reach_resources_subscriptions_filtered_on_the_operation() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let js = root.join("tests/js");
    assert!(
        js.join("node_modules/@azure/eventgrid").is_dir(),
        "{} has no @azure/eventgrid: run scripts/setup.sh",
        js.display()
    );
    let python = root.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup.sh",
        python.display()
    );
    devcloud_core::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let identity = devcloud_core::Identity::load_or_create(dir.path()).unwrap();
    let (hook_url, seen, hook_handle) = hook().await;

    let routing = Routing::parse(ROUTING).unwrap();
    let mut config = EventGridConfig::from_routing(&routing, "key").unwrap();
    config.subscription_id = SUB.into();
    config.delivery.functions_host = Some(hook_url.clone());
    config.delivery.time_factor = 0.001;
    let eg = eventgrid::serve(
        config,
        devcloud_messaging::auth::identity_verifier(identity.clone()),
        None,
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let mut arm_config = ArmConfig::fast();
    arm_config.resource_groups.push(ResourceGroupSeed::new(RG));
    let arm = devcloud_arm::serve(
        arm_config,
        identity.clone(),
        None,
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    assert!(devcloud::resource_events::connect(&arm, &eg));
    let s = Stack {
        arm,
        eg,
        client: reqwest::Client::new(),
        token: identity.issue("https://management.azure.com/"),
    };

    // The system topic is listed; a webhook subscribes through the admin API to every image event.
    let topics: Value = s
        .client
        .get(format!("{}/_devcloud/topics", s.eg.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        topics
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "resources"),
        "{topics}"
    );
    let images =
        format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/images/");
    let add = s
        .client
        .post(format!("{}/_devcloud/subscriptions", s.eg.url()))
        .json(&json!({"name": "image-log", "topic": "resources", "endpoint": format!("{hook_url}/image-log"),
            "eventDeliverySchema": "EventGridSchema", "filter": {"subjectBeginsWith": images,
            "advancedFilters": [{"operatorType": "StringBeginsWith", "key": "data.operationName",
                                 "values": ["Microsoft.Compute/images/"]}]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(add.status(), 201, "{}", add.text().await.unwrap());

    // A managed image is written: exactly one ResourceWriteSuccess for the function, in CloudEvents.
    let img = format!("{images}img");
    assert_eq!(s.put_image(&img).await, "Succeeded");
    until("the image write", || {
        bodies(&seen, "OnImageWritten").len() == 1
    })
    .await;
    // Reads raise nothing.
    for path in [
        format!("{img}?{C}"),
        format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/images?{C}"),
    ] {
        assert_eq!(
            s.call(reqwest::Method::GET, &path, None).await.status(),
            200
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let written = bodies(&seen, "OnImageWritten");
    assert_eq!(written.len(), 1, "{written:?}");
    let e = &written[0];
    let topic = format!("/subscriptions/{SUB}/resourceGroups/{RG}");
    assert_eq!(e["type"], "Microsoft.Resources.ResourceWriteSuccess");
    assert_eq!(e["source"], topic.as_str());
    assert_eq!(e["subject"], img.as_str());
    assert_eq!(e["specversion"], "1.0");
    assert_eq!(e["data"]["operationName"], "Microsoft.Compute/images/write");
    assert_eq!(e["data"]["resourceUri"], img.as_str());
    assert_eq!(e["data"]["status"], "Succeeded");
    assert_eq!(e["data"]["correlationId"], "corr-images");
    // A filter on another operation gets nothing.
    assert!(bodies(&seen, "OnGalleryWritten").is_empty());
    let log = grid_events(&seen, "/image-log");
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(
        log[0]["eventType"],
        "Microsoft.Resources.ResourceWriteSuccess"
    );
    assert_eq!(log[0]["topic"], topic.as_str());

    // A long-running write that fails: ResourceWriteFailure, and no WriteSuccess anywhere.
    let fault = s
        .client
        .post(format!("{}/_devcloud/faults", s.arm.base_url))
        .json(
            &json!({"kind": "Images_CreateOrUpdate", "count": 1, "action": {"type": "error",
            "status": 409, "code": "OperationNotAllowed", "message": "no", "inOperation": true}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(fault.status(), 201);
    let bad = format!("{images}bad");
    assert_eq!(s.put_image(&bad).await, "Failed");
    until("the failed write", || {
        grid_events(&seen, "/image-log").len() == 2
    })
    .await;
    let failure = &grid_events(&seen, "/image-log")[1];
    assert_eq!(
        failure["eventType"],
        "Microsoft.Resources.ResourceWriteFailure"
    );
    assert_eq!(failure["subject"], bad.as_str());
    assert_eq!(failure["data"]["status"], "Failed");
    // The delete of the image.
    let del = s
        .call(reqwest::Method::DELETE, &format!("{img}?{C}"), None)
        .await;
    assert_eq!(del.status(), 202);
    until("the delete", || grid_events(&seen, "/image-log").len() == 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = grid_events(&seen, "/image-log");
    assert_eq!(log.len(), 3, "{log:?}");
    assert_eq!(
        log[2]["eventType"],
        "Microsoft.Resources.ResourceDeleteSuccess"
    );
    assert_eq!(
        log[2]["data"]["operationName"],
        "Microsoft.Compute/images/delete"
    );
    assert_eq!(bodies(&seen, "OnImageWritten").len(), 1);
    assert!(bodies(&seen, "OnGalleryWritten").is_empty());

    // The official clients read what was delivered.
    let file = dir.path().join("resource-events.json");
    let captured = json!({"imageId": img, "topic": topic, "eventGrid": bodies(&seen, "/image-log"),
        "cloudEvents": bodies(&seen, "OnImageWritten")});
    std::fs::write(&file, captured.to_string()).unwrap();
    let node = tokio::process::Command::new("node")
        .args(["--test", "--test-reporter=spec", "resource_events.test.mjs"])
        .current_dir(&js)
        .env("DEVCLOUD_RESOURCE_EVENTS_FILE", &file)
        .kill_on_drop(true)
        .output()
        .await
        .expect("node runs");
    let out = String::from_utf8_lossy(&node.stdout);
    assert!(
        node.status.success(),
        "@azure/eventgrid conformance failed:\n{out}\n{}",
        String::from_utf8_lossy(&node.stderr)
    );
    assert!(out.contains("pass 2") && out.contains("fail 0"), "{out}");
    let py = tokio::process::Command::new(&python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"])
        .arg(root.join("tests/python/resource_events"))
        .env("DEVCLOUD_RESOURCE_EVENTS_FILE", &file)
        .kill_on_drop(true)
        .output()
        .await
        .expect("pytest runs");
    let out = String::from_utf8_lossy(&py.stdout);
    assert!(
        py.status.success(),
        "azure-eventgrid conformance failed:\n{out}\n{}",
        String::from_utf8_lossy(&py.stderr)
    );
    assert!(
        out.contains("2 passed") && !out.contains("skipped"),
        "{out}"
    );

    s.eg.shutdown().await;
    s.arm.shutdown().await;
    hook_handle.shutdown().await;
}
