//! End to end on the local cloud, where it is as strict as Azure: galleon owns only what it made from the
//! VHD it checked, publishes only that VHD, refuses blobs Azure would refuse before any write, reports
//! every failed region, and ends every run in one fact.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const DEFINITION: &str = "ubuntu-2404";

fn version_id(version: &str) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/rg-images/providers/Microsoft.Compute/galleries/golden/images/{DEFINITION}/versions/{version}",
        devcloud_arm::DEFAULT_SUBSCRIPTION_ID
    )
}

/// Where the local ARM keeps the managed images of galleon's resource group.
fn managed_images() -> String {
    format!(
        "/subscriptions/{}/resourceGroups/rg-images/providers/Microsoft.Compute/images",
        devcloud_arm::DEFAULT_SUBSCRIPTION_ID
    )
}

/// A recorded example fact, `events/{kind}.v1.example.json`.
fn example(kind: &str) -> Value {
    let path = repo_root().join(format!("events/{kind}.v1.example.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("example")).expect("JSON")
}

/// The recorded `image.created`, as fact `id` of run `run`: the managed image `image`, made from `vhd_url`.
fn image_created(id: &str, run: &str, image: &str, vhd_url: &str) -> Value {
    let mut fact = example("image.created");
    fact["id"] = json!(id);
    fact["correlationid"] = json!(run);
    fact["data"]["imageId"] = json!(image);
    fact["data"]["vhd"]["url"] = json!(vhd_url);
    fact
}

/// `fact`, as Service Bus forwards a message it dead-lettered after its last delivery.
async fn dead_letter(s: &Scenario, fact: &Value) {
    let id = fact["id"].as_str().unwrap_or_default();
    s.send_to_queue(
        "galleon-deadletters",
        id,
        &fact.to_string(),
        &[
            ("DeadLetterReason", "\"MaxDeliveryCountExceeded\""),
            (
                "DeadLetterErrorDescription",
                "\"Message could not be consumed after 10 delivery attempts.\"",
            ),
        ],
    )
    .await;
}

impl Scenario {
    /// Makes a managed image from `vhd_url` by hand, with `tags`, and waits until it is made (Azure
    /// refuses to delete an image still being made).
    async fn make_managed_image(&self, id: &str, vhd_url: &str, tags: Value) {
        let made = self
            .arm_put(
                id,
                "2025-04-01",
                &json!({"location": "westeurope", "tags": tags, "properties": {"hyperVGeneration": "V2",
                    "storageProfile": {"osDisk": {"osType": "Linux", "osState": "Generalized", "blobUri": vhd_url}}}}),
            )
            .await;
        assert!(made["_status"] == 200 || made["_status"] == 201, "{made:#}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.arm_get(id).await["properties"]["provisioningState"] != "Succeeded" {
            assert!(Instant::now() < deadline, "{id} was not made");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The local ARM's long-running operations, as its admin endpoint lists them.
    async fn operations(&self) -> Vec<Value> {
        let answer: Value = self
            .cloud
            .client()
            .expect("client")
            .get(format!("{}/_devcloud/operations", self.cloud.arm.base_url))
            .send()
            .await
            .expect("operations")
            .json()
            .await
            .expect("JSON");
        answer["value"].as_array().cloned().unwrap_or_default()
    }

    async fn release(&self, operation: &str) {
        let response = self
            .cloud
            .client()
            .expect("client")
            .post(format!(
                "{}/_devcloud/operations/{operation}/release",
                self.cloud.arm.base_url
            ))
            .send()
            .await
            .expect("release");
        assert!(response.status().is_success());
    }

    /// Waits for a stalled operation of `kind` and returns its id.
    async fn stalled(&self, kind: &str, seconds: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            if let Some(op) = self
                .operations()
                .await
                .into_iter()
                .find(|o| o["kind"] == kind && o["stalled"] == true)
            {
                return op["id"].as_str().unwrap_or_default().to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "no stalled {kind} within {seconds} s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vhd_overwritten_while_azure_copies_it_is_not_published() {
    let s = start(&[("GALLEON_TARGET_REGIONS", "westeurope")]).await;
    s.fault(json!({"kind": "GalleryImageVersions_CreateOrUpdate", "count": 1, "action": {"type": "stall"}}))
        .await;
    s.publish("o", "fixed", "8M", json!({"version": "1.0.0"}))
        .await;
    let operation = s.stalled("GalleryImageVersions_CreateOrUpdate", 60).await;
    // The uploader writes the VHD again while Azure is copying it.
    let work = tempfile::tempdir().expect("dir");
    s.cloud
        .storage()
        .expect("storage")
        .upload_page_blob(
            "images",
            &format!("{DEFINITION}/o.vhd"),
            &make_vhd(work.path(), "o2.vhd", "fixed", "16M"),
        )
        .await
        .expect("overwrite");
    s.release(&operation).await;

    let rejected = s.wait_for("io.galleon.vhd.rejected.v1", 60).await;
    assert_eq!(
        rejected["data"]["reason"]["code"], "VhdChanged",
        "{rejected:#}"
    );
    assert!(
        rejected["data"]["reason"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("changed after it was checked")),
        "{rejected:#}"
    );
    assert_eq!(
        rejected["data"]["marked"], false,
        "the new upload is not marked"
    );
    assert_catalog_valid(&s.receiver.received.all());
    // What Azure made from a changing blob is gone; nothing was announced as published.
    s.wait_gone(
        &version_id("1.0.0"),
        "the version made from the changed blob was not removed",
    )
    .await;
    assert!(
        s.receiver
            .received
            .of_type("io.galleon.image.version.published.v1")
            .is_empty()
    );
    assert!(
        s.receiver
            .received
            .of_type("io.galleon.image.ready.v1")
            .is_empty()
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_blob_vhd_is_rejected_before_any_write_and_a_rejection_is_told_every_time() {
    let s = start(&[]).await;
    let work = tempfile::tempdir().expect("dir");
    let storage = s.cloud.storage().expect("storage");
    storage
        .upload_block_blob(
            "images",
            &format!("{DEFINITION}/block.vhd"),
            &make_vhd(work.path(), "block.vhd", "fixed", "8M"),
        )
        .await
        .expect("vhd as a block blob");
    let manifest_name = format!("{DEFINITION}/block.manifest.json");
    storage
        .upload_block_blob("images", &manifest_name, &manifest("block.vhd", json!({})))
        .await
        .expect("manifest");
    let first = s.wait_for("io.galleon.vhd.rejected.v1", 60).await;
    assert_eq!(
        first["data"]["reason"]["code"], "VhdNotPageBlob",
        "{first:#}"
    );
    assert!(
        first["data"]["reason"]["fix"]
            .as_str()
            .is_some_and(|f| f.contains("--blob-type PageBlob")),
        "{first:#}"
    );
    // The user uploads the manifest again without fixing the VHD: told again, not silence.
    storage
        .upload_block_blob("images", &manifest_name, &manifest("block.vhd", json!({})))
        .await
        .expect("manifest again");
    let both = s.wait_for_n("io.galleon.vhd.rejected.v1", 2, 60).await;
    assert_eq!(
        both.len(),
        2,
        "the second upload is rejected again: {both:#?}"
    );
    // Marking a blob raises no BlobCreated in Azure, so there is no third.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        distinct(&s.receiver.received.of_type("io.galleon.vhd.rejected.v1")).len(),
        2
    );
    assert_catalog_valid(&s.receiver.received.all());
    let kinds = s.cloud.arm.requests_by_kind();
    assert!(
        kinds.keys().all(|k| !k.contains("CreateOrUpdate")),
        "no ARM writes: {kinds:?}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_outside_the_ingest_containers_are_not_galleons() {
    let s = start(&[]).await;
    let storage = s.cloud.storage().expect("storage");
    storage
        .create_container("backups")
        .await
        .expect("container");
    let work = tempfile::tempdir().expect("dir");
    storage
        .upload_page_blob(
            "backups",
            &format!("{DEFINITION}/dyn.vhd"),
            &make_vhd(work.path(), "dyn.vhd", "dynamic", "8M"),
        )
        .await
        .expect("vhd");
    storage
        .upload_block_blob(
            "backups",
            &format!("{DEFINITION}/dyn.manifest.json"),
            &manifest("dyn.vhd", json!({})),
        )
        .await
        .expect("manifest");
    // A marker upload in the ingest container proves the chain is alive while the backups stay untouched.
    s.publish("alive", "dynamic", "8M", json!({})).await;
    let rejected = s.wait_for("io.galleon.vhd.rejected.v1", 60).await;
    assert!(
        rejected["subject"]
            .as_str()
            .is_some_and(|x| x.contains("/containers/images/"))
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        s.receiver.received.all().len(),
        1,
        "nothing about the backups container"
    );
    let meta = storage
        .metadata("backups", &format!("{DEFINITION}/dyn.vhd"))
        .await
        .expect("head")
        .expect("still there");
    assert!(
        !meta.contains_key("galleonrejection"),
        "never marked: {meta:?}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn someone_elses_managed_image_of_a_versions_name_is_never_published_nor_deleted() {
    let s = start(&[
        ("GALLEON_PUBLISH_FROM", "managedImage"),
        ("GALLEON_TARGET_REGIONS", "westeurope"),
    ])
    .await;
    // An image made by hand, named `<definition>-<version>` as the version galleon then publishes.
    let image = format!("{}/{DEFINITION}-3.0.0", managed_images());
    let hand_made_vhd = s.upload_vhd_elsewhere("handmade/other.vhd").await;
    s.make_managed_image(&image, &hand_made_vhd, json!({}))
        .await;
    s.publish("m", "fixed", "8M", json!({"version": "3.0.0"}))
        .await;

    // The run makes its own image, named with its mark, publishes from it and deletes it at image ready.
    let ready = s.wait_for("io.galleon.image.ready.v1", 90).await;
    let run = ready["correlationid"].as_str().expect("run id");
    let mark: String = run
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect();
    let own = format!("{image}-{mark}");
    let version = s.arm_get(&version_id("3.0.0")).await;
    assert_eq!(
        version["properties"]["storageProfile"]["source"]["id"]
            .as_str()
            .map(str::to_ascii_lowercase),
        Some(own.to_ascii_lowercase()),
        "published from the run's own image: {version:#}"
    );
    s.wait_gone(&own, "the run's image goes at image ready")
        .await;
    let hand_made = s.arm_get(&image).await;
    assert_eq!(
        hand_made["_status"], 200,
        "the hand-made image is left alone"
    );
    assert_eq!(
        hand_made["properties"]["storageProfile"]["osDisk"]["blobUri"], hand_made_vhd,
        "and unchanged"
    );
    assert!(
        s.receiver
            .received
            .of_type("io.galleon.step.failed.v1")
            .is_empty()
    );
    assert_catalog_valid(&s.receiver.received.all());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regions_that_fail_for_good_are_all_reported_with_the_usable_ones() {
    let s = start(&[("GALLEON_MAX_ATTEMPTS", "2")]).await;
    for region in ["northeurope", "eastus2"] {
        s.fault(json!({"kind": "GalleryImageVersions_Update", "count": 50, "action": {"type": "failRegion", "region": region, "details": format!("no capacity in {region}")}})).await;
    }
    s.publish("r", "fixed", "8M", json!({})).await;

    let partial = s
        .wait_for_n("io.galleon.image.partially.ready.v1", 1, 150)
        .await;
    assert_eq!(partial.len(), 1, "{:#?}", s.receiver.received.all());
    let p = &partial[0]["data"];
    assert_eq!(p["usableRegions"][0]["name"], "westeurope", "{p:#}");
    let mut failed: Vec<&str> = p["failedRegions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["region"].as_str())
        .collect();
    failed.sort_unstable();
    assert_eq!(
        failed,
        ["eastus2", "northeurope"],
        "every failed region, not only the first"
    );
    assert!(
        p["failedRegions"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|r| r["failures"] == 2)
    );
    let ended = s.wait_for_n("io.galleon.step.failed.v1", 1, 30).await;
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0]["data"]["error"]["code"], "ReplicationFailed");
    let message = ended[0]["data"]["error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("no capacity in northeurope")
            && message.contains("no capacity in eastus2"),
        "{message}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        s.receiver
            .received
            .of_type("io.galleon.image.ready.v1")
            .is_empty()
    );
    assert_eq!(
        distinct(&s.receiver.received.of_type("io.galleon.step.failed.v1")).len(),
        1,
        "one failure ends the run"
    );
    assert_catalog_valid(&s.receiver.received.all());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_never_ends_is_ended_by_its_watchdog() {
    let s = start(&[
        ("GALLEON_TARGET_REGIONS", "westeurope"),
        ("GALLEON_RUN_DEADLINE_SECONDS", "6"),
        ("GALLEON_STEP_DEADLINE_MINUTES", "60"),
    ])
    .await;
    // Azure never finishes the version: the step keeps looking within its own (long) deadline.
    s.fault(json!({"kind": "GalleryImageVersions_CreateOrUpdate", "count": 1, "action": {"type": "stall"}}))
        .await;
    s.publish("w", "fixed", "8M", json!({"version": "5.0.0"}))
        .await;
    let failed = s.wait_for("io.galleon.step.failed.v1", 60).await;
    assert_eq!(
        failed["data"]["error"]["code"], "RunDeadlineExceeded",
        "{failed:#}"
    );
    assert_catalog_valid(&s.receiver.received.all());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_lettered_fact_ends_its_run_in_step_failed() {
    let s = start(&[]).await;
    // A fact of a run, as Service Bus forwards it after dead-lettering it in the publish-version
    // subscription, and another fact of the same run dead-lettered at the same time (a step that sent
    // what follows it, then was killed delivery after delivery).
    let example = example("vhd.accepted");
    let fact = |id: &str| {
        let mut fact = example.clone();
        fact["id"] = json!(id);
        fact
    };
    let ids = [
        example["id"].as_str().unwrap_or_default().to_owned(),
        "0b6f3a9e-4c1d-5e2f-8a7b-00000000dead".to_owned(),
    ];
    for id in &ids {
        dead_letter(&s, &fact(id)).await;
    }
    let failed = s.wait_for("io.galleon.step.failed.v1", 60).await;
    assert_eq!(
        failed["data"]["error"]["code"], "MaxDeliveryCountExceeded",
        "{failed:#}"
    );
    assert_eq!(failed["data"]["step"], "DeadLetters");
    assert_eq!(
        failed["correlationid"], example["correlationid"],
        "the failure belongs to the fact's run"
    );
    assert!(
        ids.iter()
            .any(|id| failed["data"]["input"]["id"] == id.as_str()),
        "{failed:#}"
    );
    // A third, later: the run has ended, so it is kept but not announced again.
    let later = "0b6f3a9e-4c1d-5e2f-8a7b-00000000deed";
    dead_letter(&s, &fact(later)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let (url, key) = s.tool_env();
    loop {
        let kept: Value = s
            .cloud
            .client()
            .expect("client")
            .get(format!("{url}/api/deadletters"))
            .header("x-functions-key", &key)
            .send()
            .await
            .expect("listed")
            .json()
            .await
            .expect("JSON");
        if kept["deadLetters"].as_array().map(Vec::len) == Some(3) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the later dead letters were not kept: {kept:#}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        distinct(&s.receiver.received.of_type("io.galleon.step.failed.v1")).len(),
        1,
        "a run ends once"
    );
    assert_catalog_valid(&s.receiver.received.all());
    s.stop().await;
}

/// A run a dead letter ends made a managed image on the way to its version: it goes, as at image ready.
/// Someone else's image named by another run's dead-lettered fact stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_a_dead_letter_ends_deletes_its_managed_image_and_nothing_else() {
    let s = start(&[]).await;
    let vhd_url = s.upload_vhd_elsewhere("dead/disk.vhd").await;
    let images = managed_images();
    // Run A's own image, named with its run's mark (the first 8 letters and digits of its id), and
    // someone's image that run B's fact names.
    let (run_a, run_b) = (
        "3f2a1b0c-9d8e-5f7a-8b6c-5d4e3f2a1b0c",
        "7c7c7c7c-1111-5222-8333-444444444444",
    );
    let own = format!("{images}/ubuntu-2404-2026.1121.1043-3f2a1b0c");
    let someones = format!("{images}/golden-base");
    s.make_managed_image(
        &own,
        &vhd_url,
        json!({"galleon-run": run_a, "galleon-source": vhd_url}),
    )
    .await;
    s.make_managed_image(&someones, &vhd_url, json!({})).await;
    for (id, run, image) in [
        ("0b6f3a9e-4c1d-5e2f-8a7b-0000000000a1", run_a, &own),
        ("0b6f3a9e-4c1d-5e2f-8a7b-0000000000b2", run_b, &someones),
    ] {
        dead_letter(&s, &image_created(id, run, image, &vhd_url)).await;
    }
    let failed = s.wait_for_n("io.galleon.step.failed.v1", 2, 60).await;
    for f in &failed {
        assert_eq!(
            f["data"]["error"]["code"], "MaxDeliveryCountExceeded",
            "{f:#}"
        );
        assert!(
            f["data"]["leftBehind"]
                .as_array()
                .is_none_or(|left| left.is_empty()),
            "nothing left behind: {f:#}"
        );
    }
    // Deleting an image is a long-running operation: it is gone once ARM has carried it out.
    s.wait_gone(&own, "the run's own image goes with its run")
        .await;
    assert_eq!(
        s.arm_get(&someones).await["_status"],
        200,
        "an image galleon did not make is left alone"
    );
    assert_catalog_valid(&s.receiver.received.all());
    s.stop().await;
}

/// A run can end while Azure still makes its managed image (its follow-up dead-lettered): Azure refuses to
/// delete an image another operation holds, so the delete waits for that operation and nothing is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_ending_while_its_image_is_made_deletes_it_once_made() {
    let s = start(&[]).await;
    let vhd_url = s.upload_vhd_elsewhere("dead/busy.vhd").await;
    let run = "5e5e5e5e-2222-5333-8444-555555555555";
    let own = format!("{}/ubuntu-2404-2026.1121.1043-5e5e5e5e", managed_images());
    s.fault(json!({"kind": "Images_CreateOrUpdate", "count": 1, "action": {"type": "stall"}}))
        .await;
    let made = s
        .arm_put(
            &own,
            "2025-04-01",
            &json!({"location": "westeurope", "tags": {"galleon-run": run, "galleon-source": vhd_url},
                "properties": {"hyperVGeneration": "V2", "storageProfile": {"osDisk": {
                    "osType": "Linux", "osState": "Generalized", "blobUri": vhd_url}}}}),
        )
        .await;
    assert!(made["_status"] == 201, "{made:#}");
    let creation = s.stalled("Images_CreateOrUpdate", 30).await;
    let id = "0b6f3a9e-4c1d-5e2f-8a7b-0000000000c3";
    dead_letter(&s, &image_created(id, run, &own, &vhd_url)).await;
    // Azure finishes making the image a few seconds after the run's end began.
    tokio::time::sleep(Duration::from_secs(3)).await;
    s.release(&creation).await;
    let failed = s.wait_for("io.galleon.step.failed.v1", 90).await;
    assert!(
        failed["data"]["leftBehind"]
            .as_array()
            .is_none_or(|left| left.is_empty()),
        "the image was deleted once made, not left behind: {failed:#}"
    );
    s.wait_gone(&own, "the run's image goes once Azure has made it")
        .await;
    assert_catalog_valid(&s.receiver.received.all());
    s.stop().await;
}

/// A `step.failed` that Service Bus dead-lettered (say Event Grid refused galleon's publishes for longer
/// than the retries) is not announced again, which could loop, but kept: `galleon dead-letters` lists it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_lettered_failure_is_kept_for_operators_not_announced_again() {
    let s = start(&[]).await;
    let example = example("step.failed");
    let id = example["id"].as_str().unwrap_or_default().to_owned();
    dead_letter(&s, &example).await;
    let host = s.cloud.connection().functions_host;
    let key = s.cloud.functions_key.clone();
    let env = [
        ("GALLEON_URL", host.as_str()),
        ("GALLEON_FUNCTIONS_KEY", key.as_str()),
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let listed = loop {
        let listed = galleon(&["dead-letters"], &env, None);
        assert_eq!(listed.code, 0, "{}", listed.stderr);
        if listed.stdout.contains(&id) || std::time::Instant::now() > deadline {
            break listed;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    let line = listed
        .stdout
        .lines()
        .find(|l| l.contains(&id))
        .unwrap_or_else(|| {
            panic!(
                "the dead-lettered failure is not listed:\n{}",
                listed.stdout
            )
        });
    assert!(
        line.contains("step.failed.v1") && line.contains("MaxDeliveryCountExceeded"),
        "{line}"
    );
    // Kept, and never announced again: no step.failed about it reaches the subscriber.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let about_it: Vec<Value> = s
        .receiver
        .received
        .of_type("io.galleon.step.failed.v1")
        .into_iter()
        .filter(|f| f["data"]["input"]["id"] == id.as_str() || f["id"] == id.as_str())
        .collect();
    assert!(about_it.is_empty(), "{about_it:#?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_in_a_storage_account_galleon_is_not_configured_for_gets_no_token() {
    let s = start(&[
        (
            "GALLEON_STORAGE_ACCOUNTS",
            "https://elsewhere.blob.core.windows.net",
        ),
        (
            "GALLEON_STATE_CONTAINER_URL",
            "https://elsewhere.blob.core.windows.net/galleon-state",
        ),
    ])
    .await;
    s.publish("f", "fixed", "8M", json!({})).await;
    let rejected = s.wait_for("io.galleon.vhd.rejected.v1", 60).await;
    assert_eq!(
        rejected["data"]["reason"]["code"], "StorageAccountNotAllowed",
        "{rejected:#}"
    );
    assert!(
        rejected["data"]["reason"]["fix"]
            .as_str()
            .is_some_and(|f| f.contains("GALLEON_STORAGE_ACCOUNTS"))
    );
    assert_eq!(rejected["data"]["marked"], false);
    assert!(
        s.cloud.arm.requests_by_kind().is_empty(),
        "no Azure call at all for a blob galleon may not read"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vhd_in_a_storage_account_of_another_region_is_rejected_before_any_write() {
    let s = start_configured(&[], false, |o| {
        o.arm.storage_accounts = vec![
            serde_json::from_value(json!({"resourceGroup": "rg-ingest", "name": "devstoreaccount1", "location": "eastus"}))
                .expect("a storage account"),
        ];
    })
    .await;
    s.publish("far", "fixed", "8M", json!({})).await;
    let rejected = s.wait_for("io.galleon.vhd.rejected.v1", 60).await;
    assert_eq!(
        rejected["data"]["reason"]["code"], "StorageAccountRegionMismatch",
        "{rejected:#}"
    );
    let message = rejected["data"]["reason"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("eastus") && message.contains("westeurope"),
        "{message}"
    );
    let kinds = s.cloud.arm.requests_by_kind();
    assert!(
        kinds
            .keys()
            .all(|k| !k.contains("CreateOrUpdate") || k.starts_with("ResourceGroups")),
        "no ARM writes: {kinds:?}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_answered_with_location_only_are_followed_to_image_ready() {
    let s = start_configured(
        &[
            ("GALLEON_PUBLISH_FROM", "managedImage"),
            ("GALLEON_TARGET_REGIONS", "westeurope,northeurope"),
        ],
        false,
        |o| o.arm.location_only = vec!["*".into()],
    )
    .await;
    s.publish("loc", "fixed", "8M", json!({"version": "7.0.0"}))
        .await;
    let ready = s.wait_for("io.galleon.image.ready.v1", 120).await;
    assert_eq!(ready["data"]["versionId"], version_id("7.0.0"));
    let version = s.arm_get(&version_id("7.0.0")).await;
    assert_eq!(
        version["properties"]["replicationStatus"]["aggregatedState"], "Completed",
        "{version:#}"
    );
    assert_catalog_valid(&s.receiver.received.all());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_never_uses_up_the_failure_budget() {
    // A budget of two failures, and four throttled answers to the version's creation: throttling is a
    // wait (bounded by the deadline), not a failed attempt.
    let s = start(&[
        ("GALLEON_MAX_ATTEMPTS", "2"),
        ("GALLEON_TARGET_REGIONS", "westeurope"),
    ])
    .await;
    s.fault(json!({"kind": "GalleryImageVersions_CreateOrUpdate", "count": 4, "action": {"type": "error", "status": 429, "code": "TooManyRequests", "message": "throttled", "retryAfter": 1}})).await;
    s.publish("thr", "fixed", "8M", json!({})).await;
    s.wait_for("io.galleon.image.ready.v1", 120).await;
    let throttled = s
        .cloud
        .host
        .logs()
        .iter()
        .filter(|l| {
            let l = format!("{l:?}");
            l.contains("trying this step again later") && l.contains("throttles=")
        })
        .count();
    assert!(
        throttled >= 4,
        "the step met the four 429s (saw {throttled})"
    );
    assert!(
        s.receiver
            .received
            .of_type("io.galleon.step.failed.v1")
            .is_empty()
    );
    s.stop().await;
}
