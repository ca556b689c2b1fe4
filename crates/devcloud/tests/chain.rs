//! End to end on the local cloud: Azurite, the ARM simulator, identity, Service Bus, Event Grid and the
//! Functions host running the real galleon binary. A fixed VHD made with qemu-img goes in; a webhook
//! subscriber on galleon's public topic must see the facts come out, valid against the event catalog.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use devcloud::{Cloud, Options, Ports, receiver::Receiver};
use serde_json::{Value, json};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The directory of the galleon executable: `GALLEON_BIN`'s (CI points it at the release build) or the
/// workspace's debug build.
fn galleon_dir() -> PathBuf {
    let bin = std::env::var_os("GALLEON_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/debug/galleon"));
    assert!(
        bin.is_file(),
        "{} is missing: cargo build -p galleon",
        bin.display()
    );
    bin.parent().map(Path::to_path_buf).unwrap_or_default()
}

fn qemu_img(args: &[&str]) {
    let status = std::process::Command::new("qemu-img")
        .args(args)
        .status()
        .expect("qemu-img runs (apt-get install qemu-utils)");
    assert!(status.success(), "qemu-img {args:?} failed");
}

/// A VHD made by qemu-img: `fixed` with force_size (what Azure wants) or `dynamic`.
fn make_vhd(dir: &Path, name: &str, subformat: &str, size: &str) -> Vec<u8> {
    let path = dir.join(name);
    let options = format!("subformat={subformat},force_size");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "vpc",
        "-o",
        &options,
        path.to_str().unwrap_or_default(),
        size,
    ]);
    std::fs::read(&path).expect("read the VHD")
}

struct Scenario {
    cloud: Cloud,
    receiver: Receiver,
    _dir: tempfile::TempDir,
}

async fn start(settings: &[(&str, &str)]) -> Scenario {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut options = Options::new(repo_root(), galleon_dir(), dir.path().join("state"));
    options.ports = Ports::ephemeral();
    options.arm_time_factor = 0.01;
    options.settings = settings
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect::<BTreeMap<_, _>>();
    let cloud = Cloud::start(options).await.expect("the local cloud starts");
    let receiver = Receiver::start().await.expect("receiver");
    cloud
        .subscribe("test-subscriber", &receiver.url())
        .await
        .expect("subscribed");
    cloud
        .storage()
        .expect("storage")
        .create_container("images")
        .await
        .expect("container");
    Scenario {
        cloud,
        receiver,
        _dir: dir,
    }
}

impl Scenario {
    /// Waits until an event of `ty` arrives (or a failure fact does, which ends the wait early).
    async fn wait_for(&self, ty: &str, seconds: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            if let Some(e) = self.receiver.received.of_type(ty).into_iter().next() {
                return e;
            }
            let failures: Vec<Value> = ["io.galleon.step.failed.v1", "io.galleon.vhd.rejected.v1"]
                .iter()
                .filter(|t| **t != ty)
                .flat_map(|t| self.receiver.received.of_type(t))
                .collect();
            assert!(
                failures.is_empty(),
                "waiting for {ty}, got failures: {failures:#?}"
            );
            if Instant::now() > deadline {
                let log: Vec<String> = self
                    .cloud
                    .host
                    .logs()
                    .iter()
                    .rev()
                    .take(60)
                    .map(|l| format!("{l:?}"))
                    .collect();
                panic!(
                    "no {ty} within {seconds} s; received {:#?}\nhost log (newest first):\n{}",
                    self.receiver.received.all(),
                    log.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn arm_get(&self, id: &str) -> Value {
        let api = if id.contains("/Microsoft.Compute/images/") {
            "2025-04-01"
        } else {
            "2025-03-03"
        };
        let token = self.cloud.identity.issue("https://management.azure.com");
        let client = self.cloud.client().expect("client");
        let response = client
            .get(format!("{}{id}?api-version={api}", self.cloud.arm.base_url))
            .query(
                &[("$expand", "ReplicationStatus")]
                    .into_iter()
                    .filter(|_| api == "2025-03-03")
                    .collect::<Vec<_>>(),
            )
            .bearer_auth(token)
            .send()
            .await
            .expect("ARM answers");
        let status = response.status().as_u16();
        let mut body: Value = response.json().await.unwrap_or(Value::Null);
        body["_status"] = status.into();
        body
    }

    async fn fault(&self, rule: Value) {
        let response = self
            .cloud
            .client()
            .expect("client")
            .post(format!("{}/_devcloud/faults", self.cloud.arm.base_url))
            .json(&rule)
            .send()
            .await
            .expect("fault set");
        assert!(
            response.status().is_success(),
            "fault rule refused: {}",
            response.text().await.unwrap_or_default()
        );
    }

    async fn stop(self) {
        self.receiver.stop().await;
        self.cloud.stop().await;
    }
}

fn validator(name: &str) -> jsonschema::Validator {
    let text = std::fs::read_to_string(repo_root().join("events").join(name)).expect("schema");
    jsonschema::options()
        .should_validate_formats(true)
        .build(&serde_json::from_str(&text).expect("json"))
        .expect("schema compiles")
}

/// Every event a subscriber received validates against the catalog.
fn assert_catalog_valid(events: &[Value]) {
    let envelope = validator("envelope.schema.json");
    for e in events {
        let ty = e["type"].as_str().unwrap_or_default();
        let name = ty.strip_prefix("io.galleon.").unwrap_or(ty);
        let data = validator(&format!("{name}.schema.json"));
        let errors: Vec<String> = envelope
            .iter_errors(e)
            .chain(data.iter_errors(&e["data"]))
            .map(|x| format!("{x} at {}", x.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{ty} does not validate: {errors:?}\n{e:#}"
        );
    }
}

fn manifest(vhd: &str, extra: Value) -> Vec<u8> {
    let mut m = json!({"vhd": vhd, "imageDefinition": "ubuntu-2404", "osType": "Linux", "hyperVGeneration": "V2",
                       "identifier": {"publisher": "contoso", "offer": "ubuntu", "sku": "24_04-lts-gen2"}});
    if let (Some(m), Some(extra)) = (m.as_object_mut(), extra.as_object()) {
        m.extend(extra.clone());
    }
    m.to_string().into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_vhd_is_published_straight_from_the_vhd_to_three_regions() {
    let s = start(&[]).await;
    let work = tempfile::tempdir().expect("dir");
    let storage = s.cloud.storage().expect("storage");
    storage
        .upload_page_blob(
            "images",
            "ubuntu-2404/u.vhd",
            &make_vhd(work.path(), "u.vhd", "fixed", "16M"),
        )
        .await
        .expect("vhd");
    storage
        .upload_block_blob(
            "images",
            "ubuntu-2404/u.manifest.json",
            &manifest("u.vhd", json!({})),
        )
        .await
        .expect("manifest");

    let ready = s.wait_for("io.galleon.image.ready.v1", 150).await;
    // Let any straggler (a duplicate) arrive before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let events = s.receiver.received.all();
    assert_catalog_valid(&events);
    assert_eq!(
        s.receiver
            .received
            .of_type("io.galleon.image.ready.v1")
            .len(),
        1,
        "exactly one image-ready"
    );
    let replicas = s
        .receiver
        .received
        .of_type("io.galleon.image.replica.ready.v1");
    // Event Grid does not promise delivery order; the facts' own times tell the order of completion.
    let time = |e: &Value| {
        e["time"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    };
    let mut by_time: Vec<(chrono::DateTime<chrono::FixedOffset>, &str)> = replicas
        .iter()
        .filter_map(|e| Some((time(e)?, e["data"]["region"]["name"].as_str()?)))
        .collect();
    by_time.sort_unstable();
    assert_eq!(
        by_time.first().map(|(_, r)| *r),
        Some("westeurope"),
        "the home region is ready first: {by_time:?}"
    );
    let mut regions: Vec<&str> = by_time.iter().map(|(_, r)| *r).collect();
    regions.sort_unstable();
    assert_eq!(
        regions,
        ["eastus2", "northeurope", "westeurope"],
        "each region announced once"
    );
    let ready_time = time(&ready).expect("image ready has a time");
    assert!(
        by_time.iter().all(|(t, _)| *t <= ready_time),
        "image ready is the last fact: {by_time:?} then {ready_time}"
    );
    let correlation = &ready["correlationid"];
    assert!(
        events.iter().all(|e| e["correlationid"] == *correlation),
        "one correlation id for the whole journey"
    );
    assert!(
        ready["data"]["sourceVhd"]["url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/images/ubuntu-2404/u.vhd"))
    );

    let version = s
        .arm_get(ready["data"]["versionId"].as_str().unwrap_or_default())
        .await;
    assert_eq!(version["_status"], 200);
    assert_eq!(version["properties"]["provisioningState"], "Succeeded");
    assert_eq!(
        version["properties"]["replicationStatus"]["aggregatedState"],
        "Completed"
    );
    assert!(
        version["properties"]["storageProfile"]["osDiskImage"]["source"]["uri"]
            .as_str()
            .is_some_and(|u| u.ends_with("u.vhd")),
        "published straight from the VHD: {version:#}"
    );
    let kinds = s.cloud.arm.requests_by_kind();
    assert!(
        !kinds.contains_key("Images_CreateOrUpdate"),
        "no managed image on the direct path: {kinds:?}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_vhd_is_published_through_a_managed_image() {
    let s = start(&[
        ("GALLEON_PUBLISH_FROM", "managedImage"),
        ("GALLEON_TARGET_REGIONS", "westeurope,northeurope"),
    ])
    .await;
    let work = tempfile::tempdir().expect("dir");
    let storage = s.cloud.storage().expect("storage");
    storage
        .upload_page_blob(
            "images",
            "debian-12/debian-12-20261121.vhd",
            &make_vhd(work.path(), "d.vhd", "fixed", "8M"),
        )
        .await
        .expect("vhd");

    let ready = s.wait_for("io.galleon.image.ready.v1", 150).await;
    assert_catalog_valid(&s.receiver.received.all());
    assert!(
        ready["subject"]
            .as_str()
            .is_some_and(|x| x.starts_with("galleries/golden/images/debian-12/versions/")),
        "{ready:#}"
    );
    let version = s
        .arm_get(ready["data"]["versionId"].as_str().unwrap_or_default())
        .await;
    let source = version["properties"]["storageProfile"]["source"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        source.contains("/providers/Microsoft.Compute/images/debian-12-"),
        "published from the managed image: {version:#}"
    );
    assert_eq!(
        s.arm_get(&source).await["properties"]["provisioningState"],
        "Succeeded"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_are_rejected_marked_and_kept() {
    let s = start(&[]).await;
    let work = tempfile::tempdir().expect("dir");
    let storage = s.cloud.storage().expect("storage");
    storage
        .upload_page_blob(
            "images",
            "ubuntu-2404/dyn.vhd",
            &make_vhd(work.path(), "dyn.vhd", "dynamic", "16M"),
        )
        .await
        .expect("vhd");
    storage
        .upload_block_blob(
            "images",
            "ubuntu-2404/dyn.manifest.json",
            &manifest("dyn.vhd", json!({})),
        )
        .await
        .expect("manifest");
    storage
        .upload_block_blob("images", "ubuntu-2404/broken.manifest.json", b"{\"vhd\": ")
        .await
        .expect("manifest");
    storage
        .upload_page_blob(
            "images",
            "ubuntu-2404/ok.vhd",
            &make_vhd(work.path(), "ok.vhd", "fixed", "8M"),
        )
        .await
        .expect("vhd");
    storage
        .upload_block_blob(
            "images",
            "ubuntu-2404/ok.manifest.json",
            &manifest("ok.vhd", json!({"gallery": "someoneelses"})),
        )
        .await
        .expect("manifest");

    let deadline = Instant::now() + Duration::from_secs(60);
    let codes = loop {
        let mut codes: Vec<String> = s
            .receiver
            .received
            .of_type("io.galleon.vhd.rejected.v1")
            .iter()
            .filter_map(|e| e["data"]["reason"]["code"].as_str().map(str::to_owned))
            .collect();
        codes.sort();
        if codes.len() >= 3 || Instant::now() > deadline {
            break codes;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        codes,
        ["GalleryNotAllowed", "ManifestNotJson", "VhdIsDynamic"]
    );
    assert_catalog_valid(&s.receiver.received.all());
    let dynamic = s
        .receiver
        .received
        .of_type("io.galleon.vhd.rejected.v1")
        .into_iter()
        .find(|e| e["data"]["reason"]["code"] == "VhdIsDynamic")
        .unwrap_or_default();
    assert!(
        dynamic["data"]["reason"]["fix"].as_str().is_some_and(
            |f| f.contains("qemu-img convert") && f.contains("subformat=fixed,force_size")
        ),
        "{dynamic:#}"
    );
    // The blobs stay, marked.
    let meta = storage
        .metadata("images", "ubuntu-2404/dyn.vhd")
        .await
        .expect("head")
        .expect("the dynamic VHD is still there");
    assert_eq!(
        meta.get("galleonrejection").map(String::as_str),
        Some("VhdIsDynamic")
    );
    let meta = storage
        .metadata("images", "ubuntu-2404/broken.manifest.json")
        .await
        .expect("head")
        .expect("the broken manifest is still there");
    assert_eq!(
        meta.get("galleonrejection").map(String::as_str),
        Some("ManifestNotJson")
    );
    // Nothing was written to Azure.
    let kinds = s.cloud.arm.requests_by_kind();
    assert!(
        kinds.keys().all(|k| !k.contains("CreateOrUpdate")),
        "no ARM writes for bad input: {kinds:?}"
    );
    // The mark changed the blobs' ETags; no second rejection is announced for them.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        s.receiver
            .received
            .of_type("io.galleon.vhd.rejected.v1")
            .len(),
        3,
        "each rejection announced once"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_arm_error_ends_in_one_step_failed_and_nothing_half_made() {
    let s = start(&[("GALLEON_TARGET_REGIONS", "westeurope")]).await;
    s.fault(json!({"kind": "GalleryImageVersions_CreateOrUpdate", "count": 1,
                   "action": {"type": "error", "status": 400, "code": "InvalidParameter", "message": "The source blob is not accessible.", "inOperation": true}})).await;
    let work = tempfile::tempdir().expect("dir");
    let storage = s.cloud.storage().expect("storage");
    storage
        .upload_page_blob(
            "images",
            "ubuntu-2404/p.vhd",
            &make_vhd(work.path(), "p.vhd", "fixed", "8M"),
        )
        .await
        .expect("vhd");
    storage
        .upload_block_blob(
            "images",
            "ubuntu-2404/p.manifest.json",
            &manifest("p.vhd", json!({"version": "1.0.0"})),
        )
        .await
        .expect("manifest");

    let failed = s.wait_for("io.galleon.step.failed.v1", 90).await;
    assert_eq!(failed["data"]["error"]["code"], "InvalidParameter");
    assert_eq!(
        failed["data"]["error"]["message"],
        "The source blob is not accessible."
    );
    assert_eq!(failed["data"]["step"], "PublishVersion");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        s.receiver
            .received
            .of_type("io.galleon.step.failed.v1")
            .len(),
        1,
        "one clear failure"
    );
    assert!(
        s.receiver
            .received
            .of_type("io.galleon.image.ready.v1")
            .is_empty()
    );
    assert_catalog_valid(&s.receiver.received.all());
    let version_id = format!(
        "/subscriptions/{}/resourceGroups/rg-images/providers/Microsoft.Compute/galleries/golden/images/ubuntu-2404/versions/1.0.0",
        devcloud_arm::DEFAULT_SUBSCRIPTION_ID
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = s.arm_get(&version_id).await["_status"].clone();
        if status == 404 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the failed version was not cleaned up (GET answers {status})"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_server_errors_and_a_failing_region_are_ridden_out() {
    let s = start(&[("GALLEON_MAX_ATTEMPTS", "20")]).await;
    s.fault(json!({"rate": 0.3, "count": 12, "action": {"type": "error", "status": 429, "code": "TooManyRequests", "message": "throttled", "retryAfter": 1}})).await;
    s.fault(json!({"kind": "GalleryImageVersions_Get", "count": 3, "action": {"type": "error", "status": 503, "code": "ServiceUnavailable", "message": "try later"}})).await;
    s.fault(json!({"kind": "GalleryImageVersions_Update", "count": 1, "action": {"type": "failRegion", "region": "northeurope", "details": "simulated capacity problem"}})).await;
    let work = tempfile::tempdir().expect("dir");
    let storage = s.cloud.storage().expect("storage");
    storage
        .upload_page_blob(
            "images",
            "ubuntu-2404/t.vhd",
            &make_vhd(work.path(), "t.vhd", "fixed", "8M"),
        )
        .await
        .expect("vhd");
    storage
        .upload_block_blob(
            "images",
            "ubuntu-2404/t.manifest.json",
            &manifest("t.vhd", json!({})),
        )
        .await
        .expect("manifest");

    let ready = s.wait_for("io.galleon.image.ready.v1", 180).await;
    assert_catalog_valid(&s.receiver.received.all());
    let version = s
        .arm_get(ready["data"]["versionId"].as_str().unwrap_or_default())
        .await;
    assert_eq!(
        version["properties"]["replicationStatus"]["aggregatedState"], "Completed",
        "{version:#}"
    );
    let mut regions: Vec<String> = s
        .receiver
        .received
        .of_type("io.galleon.image.replica.ready.v1")
        .iter()
        .filter_map(|e| e["data"]["region"]["name"].as_str().map(str::to_owned))
        .collect();
    regions.sort();
    assert_eq!(regions, ["eastus2", "northeurope", "westeurope"]);
    s.stop().await;
}
