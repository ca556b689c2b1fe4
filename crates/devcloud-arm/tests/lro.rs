//! Long-running operations as ARM does them, replication schedules, throttling, fault injection,
//! the admin API, snapshots and Image Builder runs.

mod common;

use std::time::{Duration, Instant};

use common::{Env, Resp};
use devcloud_arm::{ArmConfig, Work};
use reqwest::Method;
use serde_json::{Value, json};

const G: &str = "api-version=2025-03-03";
const T: &str = "api-version=2024-02-01";

fn slow(home: f64, replicate: f64) -> ArmConfig {
    let mut c = ArmConfig::fast();
    c.time_factor = 1.0;
    for w in [
        Work::GalleryCreate,
        Work::GalleryUpdate,
        Work::GalleryDelete,
        Work::DefinitionCreate,
        Work::ImageCreate,
        Work::VersionUpdate,
        Work::VersionDelete,
    ] {
        c.latency.base_secs.insert(w, 0.3);
    }
    c.latency.base_secs.insert(Work::VersionHomeRegion, home);
    c.latency
        .base_secs
        .insert(Work::VersionReplicate, replicate);
    c
}

async fn wait_until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn setup_image_and_definition(env: &Env) -> (String, String) {
    (
        common::gallery_and_definition(env).await,
        common::managed_image(env).await,
    )
}

#[tokio::test]
async fn gallery_put_poll_and_delete_follow_arm_async_rules() {
    let mut c = ArmConfig::fast();
    c.time_factor = 1.0;
    // Long enough that a noisy machine still sees the in-progress states.
    c.latency.base_secs.insert(Work::GalleryCreate, 1.0);
    c.latency.base_secs.insert(Work::GalleryUpdate, 1.0);
    c.latency.base_secs.insert(Work::GalleryDelete, 1.0);
    let env = Env::start(false, c).await;
    let g = format!(
        "{}/providers/Microsoft.Compute/galleries/gal?{G}",
        env.rg_path("rg")
    );
    let r = env
        .call(
            Method::PUT,
            &g,
            Some(json!({"location": "westeurope", "properties": {"description": "d"}})),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["properties"]["provisioningState"], "Creating");
    let async_url = r.header("azure-asyncoperation").unwrap();
    let location = r.header("location").unwrap();
    assert!(
        async_url.contains("/providers/Microsoft.Compute/locations/westeurope/capsOperations/"),
        "{async_url}"
    );
    assert!(location.contains("monitor=true"), "{location}");
    assert!(r.header("retry-after").unwrap().parse::<u64>().is_ok());
    assert!(
        r.header("x-ms-ratelimit-remaining-subscription-writes")
            .is_some()
    );
    // While running: status InProgress (200), Location 202; then Succeeded and the resource.
    let s = env.call(Method::GET, &async_url, None).await;
    assert_eq!(
        (s.status, s.body["status"].as_str()),
        (200, Some("InProgress"))
    );
    let l = env.call(Method::GET, &location, None).await;
    assert_eq!(l.status, 202);
    assert!(l.header("location").is_some());
    let s = env.wait_async(&async_url).await;
    assert_eq!(s["status"], "Succeeded");
    assert!(s["endTime"].is_string());
    let l = env.call(Method::GET, &location, None).await;
    assert_eq!(l.status, 200);
    assert_eq!(l.body["properties"]["provisioningState"], "Succeeded");
    // Re-PUT is an update: 200 and Updating.
    let r = env
        .call(
            Method::PUT,
            &g,
            Some(json!({"location": "westeurope", "properties": {"description": "e"}})),
        )
        .await;
    assert_eq!(
        (r.status, r.body["properties"]["provisioningState"].as_str()),
        (200, Some("Updating"))
    );
    // A second write while it runs is refused.
    let busy = env
        .call(Method::PUT, &g, Some(json!({"location": "westeurope"})))
        .await;
    busy.expect(409, "OperationNotAllowed");
    env.wait_async(&r.header("azure-asyncoperation").unwrap())
        .await;
    // Delete: 202 + Location; Location answers 204 when done; then GET is 404.
    let d = env.call(Method::DELETE, &g, None).await;
    assert_eq!(d.status, 202);
    let loc = d.header("location").unwrap();
    let got = env.call(Method::GET, &g, None).await;
    assert_eq!(got.body["properties"]["provisioningState"], "Deleting");
    wait_until("delete", async || {
        env.call(Method::GET, &loc, None).await.status == 204
    })
    .await;
    assert_eq!(env.call(Method::GET, &g, None).await.status, 404);
}

async fn get(env: &Env, url: &str) -> Resp {
    env.call(Method::GET, url, None).await
}

#[tokio::test]
async fn version_replicates_per_region_and_patch_adds_regions_while_replicating() {
    let env = Env::start(false, slow(0.8, 2.0)).await;
    let (d, img) = setup_image_and_definition(&env).await;
    let v = format!("{d}/versions/1.0.0?{G}");
    let r = env.call(Method::PUT, &v, Some(json!({"location": "westeurope", "properties": {
        "publishingProfile": {"targetRegions": [{"name": "westeurope"}, {"name": "northeurope", "regionalReplicaCount": 3}]},
        "storageProfile": {"source": {"id": img}}}}))).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let op = r.header("azure-asyncoperation").unwrap();
    let expand = format!("{d}/versions/1.0.0?{G}&$expand=ReplicationStatus");
    let first: Resp = get(&env, &expand).await;
    assert_eq!(first.body["properties"]["provisioningState"], "Creating");
    assert_eq!(
        first.body["properties"]["replicationStatus"]["aggregatedState"],
        "InProgress"
    );
    // Without $expand there is no replicationStatus.
    assert!(
        env.call(Method::GET, &v, None).await.body["properties"]["replicationStatus"].is_null()
    );
    // PATCH while the home region is still copying: adds a region, does not fail.
    let p = env.call(Method::PATCH, &v, Some(json!({"properties": {"publishingProfile": {"targetRegions": [
        {"name": "westeurope"}, {"name": "northeurope", "regionalReplicaCount": 3}, {"name": "eastus"}]}}}))).await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(p.body["properties"]["provisioningState"], "Updating");
    let patch_op = p.header("azure-asyncoperation").unwrap();
    // The home region completes before the others.
    wait_until("home region", async || {
        let b = get(&env, &expand).await.body;
        let s = &b["properties"]["replicationStatus"]["summary"];
        s.as_array()
            .unwrap()
            .iter()
            .any(|x| x["region"] == "westeurope" && x["state"] == "Completed")
    })
    .await;
    let mid = get(&env, &expand).await.body;
    let others: Vec<&Value> = mid["properties"]["replicationStatus"]["summary"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["region"] != "westeurope")
        .collect();
    assert_eq!(others.len(), 2);
    assert!(others.iter().any(|x| x["state"] == "Replicating"), "{mid}");
    assert_eq!(env.wait_async(&op).await["status"], "Succeeded");
    assert_eq!(env.wait_async(&patch_op).await["status"], "Succeeded");
    let done = get(&env, &expand).await.body;
    assert_eq!(done["properties"]["provisioningState"], "Succeeded");
    assert_eq!(
        done["properties"]["replicationStatus"]["aggregatedState"],
        "Completed"
    );
    let regions = done["properties"]["publishingProfile"]["targetRegions"]
        .as_array()
        .unwrap();
    assert_eq!(regions.len(), 3);
    assert_eq!(regions[1]["regionalReplicaCount"], 3);
    // api-version 2025-03-03 without a storage type: PreferStandard_ZRS, and eastus has zones.
    assert_eq!(regions[2]["storageAccountType"], "Standard_ZRS");
}

#[tokio::test]
async fn throttling_answers_429_with_retry_after() {
    let mut c = ArmConfig::fast();
    c.throttling.reads = devcloud_arm::Bucket {
        capacity: 5.0,
        refill_per_sec: 0.5,
    };
    let env = Env::start(false, c).await;
    let url = format!(
        "{}/providers/Microsoft.Compute/galleries/none?{G}",
        env.rg_path("rg")
    );
    let mut seen = Vec::new();
    for _ in 0..8 {
        let r = env.call(Method::GET, &url, None).await;
        seen.push(r.status);
        if r.status == 429 {
            assert_eq!(r.code(), "SubscriptionRequestsThrottled");
            assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
            assert_eq!(
                r.header("x-ms-ratelimit-remaining-subscription-reads")
                    .as_deref(),
                Some("0")
            );
        } else {
            assert!(
                r.header("x-ms-ratelimit-remaining-subscription-reads")
                    .is_some()
            );
        }
    }
    assert_eq!(&seen[..5], &[404; 5]);
    assert!(seen[5..].contains(&429), "{seen:?}");
}

#[tokio::test]
async fn faults_fail_operations_return_errors_reset_and_stall() {
    let env = Env::start(false, ArmConfig::fast()).await;
    let (d, img) = setup_image_and_definition(&env).await;
    // Fail the next version create inside its operation.
    let r = env.admin(Method::POST, "faults", Some(json!({"kind": "GalleryImageVersions_CreateOrUpdate", "count": 1,
        "action": {"type": "error", "status": 409, "code": "OperationNotAllowed", "message": "quota", "inOperation": true}}))).await;
    assert_eq!(r.status, 201);
    let body = json!({"location": "westeurope", "properties": {"storageProfile": {"source": {"id": img}}}});
    let v = env
        .call(
            Method::PUT,
            &format!("{d}/versions/1.0.0?{G}"),
            Some(body.clone()),
        )
        .await;
    assert_eq!(v.status, 201);
    let s = env
        .wait_async(&v.header("azure-asyncoperation").unwrap())
        .await;
    assert_eq!(
        (s["status"].as_str(), s["error"]["code"].as_str()),
        (Some("Failed"), Some("OperationNotAllowed"))
    );
    let l = env
        .call(Method::GET, &v.header("location").unwrap(), None)
        .await;
    l.expect(409, "OperationNotAllowed");
    let got = env
        .call(Method::GET, &format!("{d}/versions/1.0.0?{G}"), None)
        .await;
    assert_eq!(got.body["properties"]["provisioningState"], "Failed");
    // Re-issuing the PUT succeeds (the rule was used up).
    env.ok(
        Method::PUT,
        &format!("{d}/versions/1.0.0?{G}"),
        Some(body.clone()),
    )
    .await;
    // 503 on GETs, twice.
    env.admin(Method::POST, "faults", Some(json!({"kind": "Galleries_Get", "count": 2, "action": {"type": "error", "status": 503}}))).await;
    let g = d.replace("/images/def", "");
    assert_eq!(
        env.call(Method::GET, &format!("{g}?{G}"), None)
            .await
            .status,
        503
    );
    assert_eq!(
        env.call(Method::GET, &format!("{g}?{G}"), None)
            .await
            .status,
        503
    );
    assert_eq!(
        env.call(Method::GET, &format!("{g}?{G}"), None)
            .await
            .status,
        200
    );
    // Connection reset.
    env.admin(
        Method::POST,
        "faults",
        Some(json!({"kind": "Galleries_Get", "count": 1, "action": {"type": "reset"}})),
    )
    .await;
    let reset = env
        .client
        .get(format!("{}{g}?{G}", env.arm.base_url))
        .bearer_auth(&env.token)
        .send()
        .await;
    assert!(reset.is_err(), "{reset:?}");
    // Latency.
    env.admin(
        Method::POST,
        "faults",
        Some(
            json!({"kind": "Galleries_Get", "count": 1, "action": {"type": "latency", "ms": 300}}),
        ),
    )
    .await;
    let t = Instant::now();
    assert_eq!(
        env.call(Method::GET, &format!("{g}?{G}"), None)
            .await
            .status,
        200
    );
    assert!(t.elapsed() >= Duration::from_millis(300));
    // Stall: the operation stays InProgress until released.
    env.admin(Method::POST, "faults", Some(json!({"kind": "GalleryImageVersions_CreateOrUpdate", "count": 1, "action": {"type": "stall"}}))).await;
    let v = env
        .call(
            Method::PUT,
            &format!("{d}/versions/1.0.1?{G}"),
            Some(body.clone()),
        )
        .await;
    let url = v.header("azure-asyncoperation").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        env.call(Method::GET, &url, None).await.body["status"],
        "InProgress"
    );
    let ops = env.admin(Method::GET, "operations", None).await;
    let stalled = ops.body["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["stalled"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    env.admin(Method::POST, &format!("operations/{stalled}/release"), None)
        .await;
    assert_eq!(env.wait_async(&url).await["status"], "Succeeded");
    // A region failure, behind a throttled attempt: the 429 starts no operation, so the region's fault
    // neither applies to it nor counts it.
    env.admin(
        Method::POST,
        "faults",
        Some(
            json!({"id": "throttled", "kind": "GalleryImageVersions_CreateOrUpdate", "count": 1,
        "action": {"type": "error", "status": 429, "code": "TooManyRequests", "message": "throttled", "retryAfter": 1}}),
        ),
    )
    .await;
    env.admin(
        Method::POST,
        "faults",
        Some(
            json!({"id": "region", "kind": "GalleryImageVersions_CreateOrUpdate", "count": 1,
        "action": {"type": "failRegion", "region": "northeurope", "details": "copy failed"}}),
        ),
    )
    .await;
    let mut b2 = body.clone();
    b2["properties"]["publishingProfile"] =
        json!({"targetRegions": [{"name": "westeurope"}, {"name": "North Europe"}]});
    let throttled = env
        .call(
            Method::PUT,
            &format!("{d}/versions/1.0.2?{G}"),
            Some(b2.clone()),
        )
        .await;
    assert_eq!(throttled.status, 429, "{}", throttled.body);
    let rules = env.admin(Method::GET, "faults", None).await.body;
    let applied = |id: &str| {
        rules
            .as_array()
            .into_iter()
            .flatten()
            .chain(rules["value"].as_array().into_iter().flatten())
            .find(|r| r["id"] == id)
            .map(|r| r["applied"].clone())
    };
    assert_eq!(applied("throttled"), Some(json!(1)), "{rules}");
    assert_eq!(applied("region"), Some(json!(0)), "{rules}");
    let v = env
        .call(Method::PUT, &format!("{d}/versions/1.0.2?{G}"), Some(b2))
        .await;
    assert_eq!(
        env.wait_async(&v.header("azure-asyncoperation").unwrap())
            .await["status"],
        "Failed"
    );
    let rs = env
        .call(
            Method::GET,
            &format!("{d}/versions/1.0.2?{G}&$expand=ReplicationStatus"),
            None,
        )
        .await
        .body;
    assert_eq!(
        rs["properties"]["replicationStatus"]["aggregatedState"],
        "Failed"
    );
    let ne = rs["properties"]["replicationStatus"]["summary"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["region"] == "North Europe")
        .unwrap()
        .clone();
    assert_eq!(
        (ne["state"].as_str(), ne["details"].as_str()),
        (Some("Failed"), Some("copy failed"))
    );
    // Counts per kind.
    let counts = env.admin(Method::GET, "requests", None).await.body;
    assert_eq!(counts["byKind"]["GalleryImageVersions_CreateOrUpdate"], 5);
    assert!(
        counts["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["status"] == 0),
        "a reset is logged with status 0"
    );
}

#[tokio::test]
async fn snapshot_restores_state() {
    let env = Env::start(false, ArmConfig::fast()).await;
    let (d, _) = setup_image_and_definition(&env).await;
    let path = env.dir.path().join("snap/state.json");
    let r = env
        .admin(Method::POST, "snapshot", Some(json!({"path": path})))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["resources"], 3);
    let mut c = ArmConfig::fast();
    c.snapshot_path = Some(path);
    let second = devcloud_arm::serve(
        c,
        env.identity.clone(),
        Some(&env.tls),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let got = env
        .client
        .get(format!("{}{d}?{G}", second.base_url))
        .bearer_auth(&env.token)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    let v: Value = got.json().await.unwrap();
    assert_eq!(v["properties"]["identifier"]["sku"], "s");
    second.shutdown().await;
}

#[tokio::test]
async fn image_builder_run_writes_a_fixed_vhd_and_cancel_cancels() {
    let mut c = ArmConfig::fast();
    c.time_factor = 0.001;
    c.latency.base_secs.insert(Work::TemplateRun, 1500.0);
    let env = Env::start(true, c).await;
    let t = format!(
        "{}/providers/Microsoft.VirtualMachineImages/imageTemplates/tpl",
        env.rg_path("rg")
    );
    let body = json!({"location": "westeurope", "identity": {"type": "None"}, "properties": {
        "source": {"type": "PlatformImage", "publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"},
        "distribute": [{"type": "VHD", "runOutputName": "vhd"}]}});
    env.ok(Method::PUT, &format!("{t}?{T}"), Some(body.clone()))
        .await;
    let run = env.call(Method::POST, &format!("{t}/run?{T}"), None).await;
    assert_eq!(run.status, 202);
    let op = run.header("azure-asyncoperation").unwrap();
    assert!(
        op.contains("/providers/Microsoft.VirtualMachineImages/locations/westeurope/operations/")
    );
    let during = env.call(Method::GET, &format!("{t}?{T}"), None).await.body;
    assert_eq!(during["properties"]["lastRunStatus"]["runState"], "Running");
    assert_eq!(during["properties"]["provisioningState"], "Succeeded");
    let again = env.call(Method::POST, &format!("{t}/run?{T}"), None).await;
    assert_eq!(again.status, 409);
    assert_eq!(env.wait_async(&op).await["status"], "Succeeded");
    let outs = env
        .call(Method::GET, &format!("{t}/runOutputs?{T}"), None)
        .await
        .body;
    let uri = outs["value"][0]["properties"]["artifactUri"]
        .as_str()
        .unwrap()
        .to_string();
    // The artifact is a real fixed VHD in Azurite.
    let token = env.identity.issue("https://storage.azure.com");
    let head = env
        .client
        .head(&uri)
        .bearer_auth(&token)
        .header("x-ms-version", "2025-01-05")
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    let len: u64 = head.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let footer = env
        .client
        .get(&uri)
        .bearer_auth(&token)
        .header("x-ms-version", "2025-01-05")
        .header("x-ms-range", format!("bytes={}-{}", len - 512, len - 1))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&footer[..8], b"conectix");
    assert_eq!(
        u32::from_be_bytes([footer[60], footer[61], footer[62], footer[63]]),
        2
    );
    // Cancel a second run.
    let run = env.call(Method::POST, &format!("{t}/run?{T}"), None).await;
    let run_op = run.header("azure-asyncoperation").unwrap();
    let cancel = env
        .call(Method::POST, &format!("{t}/cancel?{T}"), None)
        .await;
    assert_eq!(cancel.status, 202);
    assert_eq!(
        env.wait_async(&cancel.header("azure-asyncoperation").unwrap())
            .await["status"],
        "Succeeded"
    );
    assert_eq!(env.wait_async(&run_op).await["status"], "Canceled");
    let after = env.call(Method::GET, &format!("{t}?{T}"), None).await.body;
    assert_eq!(after["properties"]["lastRunStatus"]["runState"], "Canceled");
    let nothing = env
        .call(Method::POST, &format!("{t}/cancel?{T}"), None)
        .await;
    assert_eq!(nothing.status, 409);
    // Delete answers 202 with Location only.
    let del = env.call(Method::DELETE, &format!("{t}?{T}"), None).await;
    assert_eq!(del.status, 202);
    assert!(del.header("location").is_some() && del.header("azure-asyncoperation").is_none());
}
