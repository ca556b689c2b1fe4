//! Resource events as Resource Manager raises them for Event Grid: one per write, delete or action,
//! when its operation ends (Success, or Failure when it fails), none for reads, and a write event for
//! what an Image Builder run distributes.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Env, SUB, gallery_and_definition, managed_image};
use devcloud_arm::{ArmConfig, ResourceEvent, Work};
use reqwest::Method;
use serde_json::{Value, json};

const C: &str = "api-version=2025-04-01";
const T: &str = "api-version=2024-02-01";
const G: &str = "api-version=2025-03-03";

type Seen = Arc<Mutex<Vec<ResourceEvent>>>;

/// The simulator with a sink that keeps every event.
async fn start(config: ArmConfig) -> (Env, Seen) {
    let env = Env::start(false, config).await;
    let seen: Seen = Arc::default();
    let s = seen.clone();
    assert!(env.arm.arm.set_event_sink(Arc::new(move |e| {
        s.lock().unwrap().push(e);
    })));
    (env, seen)
}

/// Slow enough to see an operation in progress: image create and delete take 0.4 s.
fn slow_images() -> ArmConfig {
    let mut c = ArmConfig::fast();
    c.time_factor = 1.0;
    for w in [Work::ImageCreate, Work::ImageUpdate, Work::ImageDelete] {
        c.latency.base_secs.insert(w, 0.4);
    }
    c
}

/// Waits until `n` events are seen (at most 10 s), then a little more for any extra one.
async fn wait_for(seen: &Seen, n: usize) -> Vec<ResourceEvent> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.lock().unwrap().len() < n {
        assert!(
            Instant::now() < deadline,
            "{n} event(s) expected, seen {:?}",
            seen.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    seen.lock().unwrap().clone()
}

fn types(events: &[ResourceEvent]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| {
            (
                e.event_type.clone(),
                e.data["operationName"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn image_body() -> Value {
    json!({"location": "westeurope", "properties": {"hyperVGeneration": "V2",
        "storageProfile": {"osDisk": {"osType": "Linux", "osState": "Generalized",
            "blobUri": "https://a.blob.core.windows.net/c/x.vhd"}}}})
}

#[tokio::test]
async fn an_image_put_raises_one_write_success_when_its_operation_ends_and_reads_raise_none() {
    let (env, seen) = start(slow_images()).await;
    let id =
        format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/images/img");
    let put = env
        .client
        .put(format!("{}{id}?{C}", env.arm.base_url))
        .bearer_auth(&env.token)
        .header("x-ms-correlation-request-id", "corr-1")
        .header("x-ms-client-request-id", "client-1")
        .json(&image_body())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    // Still creating: no event yet.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        seen.lock().unwrap().is_empty(),
        "{:?}",
        seen.lock().unwrap()
    );
    let events = wait_for(&seen, 1).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e.event_type, "Microsoft.Resources.ResourceWriteSuccess");
    assert_eq!(e.subject, id);
    assert_eq!(e.topic, format!("/subscriptions/{SUB}/resourceGroups/rg"));
    let d = &e.data;
    assert_eq!(d["operationName"], "Microsoft.Compute/images/write");
    assert_eq!(d["resourceProvider"], "Microsoft.Compute");
    assert_eq!(d["resourceUri"], id.as_str());
    assert_eq!(d["status"], "Succeeded");
    assert_eq!(d["subscriptionId"], SUB);
    assert_eq!(d["resourceGroup"], "rg");
    assert_eq!(d["tenantId"], env.identity.tenant_id.as_str());
    assert_eq!(d["correlationId"], "corr-1");
    assert_eq!(d["httpRequest"]["method"], "PUT");
    assert_eq!(d["httpRequest"]["clientRequestId"], "client-1");
    assert!(
        d["httpRequest"]["url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("{id}?{C}"))
    );
    assert_eq!(
        d["authorization"]["action"],
        "Microsoft.Compute/images/write"
    );
    assert_eq!(d["authorization"]["scope"], id.as_str());
    assert_eq!(d["claims"]["oid"], env.identity.object_id.as_str());
    assert!(d.get("tags").is_none());
    // Reads (GET, list) raise nothing.
    env.ok(Method::GET, &format!("{id}?{C}"), None).await;
    env.ok(
        Method::GET,
        &format!(
            "{}/providers/Microsoft.Compute/images?{C}",
            env.rg_path("rg")
        ),
        None,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(seen.lock().unwrap().len(), 1);
    // A tags PATCH is a write; the DELETE a delete.
    env.ok(
        Method::PATCH,
        &format!("{id}?{C}"),
        Some(json!({"tags": {"a": "b"}})),
    )
    .await;
    env.ok(Method::DELETE, &format!("{id}?{C}"), None).await;
    let events = wait_for(&seen, 3).await;
    assert_eq!(
        types(&events[1..]),
        [
            (
                "Microsoft.Resources.ResourceWriteSuccess".into(),
                "Microsoft.Compute/images/write".into()
            ),
            (
                "Microsoft.Resources.ResourceDeleteSuccess".into(),
                "Microsoft.Compute/images/delete".into()
            ),
        ]
    );
    assert_eq!(events[2].subject, id);
    assert_eq!(events[2].data["httpRequest"]["method"], "DELETE");
    assert_eq!(events.len(), 3);
}

#[tokio::test]
async fn a_failed_operation_raises_write_failure_and_no_success_a_refused_request_nothing() {
    let (env, seen) = start(slow_images()).await;
    let r = env
        .admin(
            Method::POST,
            "faults",
            Some(json!({"kind": "Images_CreateOrUpdate", "count": 1, "action": {"type": "error",
                "status": 409, "code": "OperationNotAllowed", "message": "no", "inOperation": true}})),
        )
        .await;
    assert_eq!(r.status, 201);
    let id = format!(
        "{}/providers/Microsoft.Compute/images/bad",
        env.rg_path("rg")
    );
    let put = env
        .call(Method::PUT, &format!("{id}?{C}"), Some(image_body()))
        .await;
    assert_eq!(put.status, 201);
    let status = env
        .wait_async(&put.header("azure-asyncoperation").unwrap())
        .await;
    assert_eq!(status["status"], "Failed");
    let events = wait_for(&seen, 1).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        events[0].event_type,
        "Microsoft.Resources.ResourceWriteFailure"
    );
    assert_eq!(events[0].data["status"], "Failed");
    assert_eq!(events[0].subject, id);
    // Refused before any operation (no osDisk): nothing.
    let bad = env
        .call(
            Method::PUT,
            &format!("{id}2?{C}"),
            Some(json!({"location": "westeurope",
            "properties": {"storageProfile": {}}})),
        )
        .await;
    assert_eq!(bad.status, 400);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn resource_group_writes_and_deletes_raise_events_of_microsoft_resources() {
    let (env, seen) = start(ArmConfig::fast()).await;
    env.create_group("other").await;
    env.ok(
        Method::DELETE,
        &format!("{}?{C}", env.rg_path("other")),
        None,
    )
    .await;
    let events = wait_for(&seen, 2).await;
    assert_eq!(
        types(&events),
        [
            (
                "Microsoft.Resources.ResourceWriteSuccess".into(),
                "Microsoft.Resources/subscriptions/resourceGroups/write".into()
            ),
            (
                "Microsoft.Resources.ResourceDeleteSuccess".into(),
                "Microsoft.Resources/subscriptions/resourceGroups/delete".into()
            ),
        ]
    );
    for e in &events {
        assert_eq!(e.subject, env.rg_path("other"));
        assert_eq!(e.data["resourceProvider"], "Microsoft.Resources");
    }
}

#[tokio::test]
async fn an_image_builder_run_raises_its_action_and_the_writes_of_what_it_distributes() {
    let (env, seen) = start(ArmConfig::fast()).await;
    let d = gallery_and_definition(&env).await;
    managed_image(&env).await;
    let def_id = env.ok(Method::GET, &format!("{d}?{G}"), None).await.body["id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = format!(
        "{}/providers/Microsoft.Compute/images/built",
        env.rg_path("rg")
    );
    let t = format!(
        "{}/providers/Microsoft.VirtualMachineImages/imageTemplates/tpl",
        env.rg_path("rg")
    );
    let body = json!({"location": "westeurope", "identity": {"type": "None"}, "properties": {
        "source": {"type": "PlatformImage", "publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"},
        "distribute": [
            {"type": "ManagedImage", "imageId": out, "location": "westeurope", "runOutputName": "image"},
            {"type": "SharedImage", "galleryImageId": def_id, "runOutputName": "gallery",
             "targetRegions": [{"name": "westeurope"}]}]}});
    env.ok(Method::PUT, &format!("{t}?{T}"), Some(body)).await;
    assert_eq!(wait_for(&seen, 4).await.len(), 4);
    let run = env
        .client
        .post(format!("{}{t}/run?{T}", env.arm.base_url))
        .bearer_auth(&env.token)
        .header("x-ms-correlation-request-id", "run-1")
        .send()
        .await
        .unwrap();
    assert_eq!(run.status(), 202);
    let events = wait_for(&seen, 7).await;
    let write = "Microsoft.Resources.ResourceWriteSuccess".to_string();
    assert_eq!(
        types(&events),
        [
            (write.clone(), "Microsoft.Compute/galleries/write".into()),
            (
                write.clone(),
                "Microsoft.Compute/galleries/images/write".into()
            ),
            (write.clone(), "Microsoft.Compute/images/write".into()),
            (
                write.clone(),
                "Microsoft.VirtualMachineImages/imageTemplates/write".into()
            ),
            (write.clone(), "Microsoft.Compute/images/write".into()),
            (
                write,
                "Microsoft.Compute/galleries/images/versions/write".into()
            ),
            (
                "Microsoft.Resources.ResourceActionSuccess".into(),
                "Microsoft.VirtualMachineImages/imageTemplates/run/action".into()
            ),
        ]
    );
    // What the run wrote, on behalf of the run, and then the run itself.
    assert_eq!(events[4].subject, out);
    assert!(
        events[5]
            .subject
            .starts_with(&format!("{def_id}/versions/")),
        "{}",
        events[5].subject
    );
    for e in &events[4..6] {
        assert_eq!(e.data["correlationId"], "run-1");
        assert_eq!(e.data["httpRequest"]["method"], "PUT");
        assert!(
            e.data["httpRequest"]["url"]
                .as_str()
                .unwrap()
                .ends_with(&e.subject)
        );
    }
    assert_eq!(events[6].subject, t);
    assert_eq!(events[6].data["correlationId"], "run-1");
    assert_eq!(events[6].data["httpRequest"]["method"], "POST");
}
