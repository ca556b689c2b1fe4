//! End to end on the local cloud: Azurite, the ARM simulator, identity, Service Bus, Event Grid and the
//! Functions host running the real galleon binary. A fixed VHD made with qemu-img goes in; a webhook
//! subscriber on galleon's public topic must see the facts come out, valid against the event catalog.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_vhd_is_published_straight_from_the_vhd_to_three_regions() {
    let s = start(&[]).await;
    s.publish("u", "fixed", "16M", json!({})).await;

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

    // Uploading the same manifest again publishes nothing new, and says so.
    let writes_before = kinds.get("GalleryImageVersions_CreateOrUpdate").copied();
    s.cloud
        .storage()
        .expect("storage")
        .upload_block_blob(
            "images",
            "ubuntu-2404/u.manifest.json",
            &manifest("u.vhd", json!({})),
        )
        .await
        .expect("manifest again");
    let again = s.wait_for("io.galleon.vhd.rejected.v1", 60).await;
    assert_eq!(
        again["data"]["reason"]["code"], "AlreadyPublished",
        "{again:#}"
    );
    assert!(
        again["data"]["reason"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(ready["data"]["versionId"].as_str().unwrap_or("?")))
    );
    assert_eq!(
        s.cloud
            .arm
            .requests_by_kind()
            .get("GalleryImageVersions_CreateOrUpdate")
            .copied(),
        writes_before,
        "no new version was written"
    );
    assert_eq!(
        distinct(&s.receiver.received.of_type("io.galleon.image.ready.v1")).len(),
        1,
        "still one image-ready fact"
    );
    s.assert_role_allows_what_galleon_did().await;
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
    // The managed image was only a step towards the version: gone once every region is ready.
    s.wait_gone(&source, "the intermediate managed image was not deleted")
        .await;
    assert!(
        ready["data"].get("leftBehind").is_none(),
        "nothing left behind: {ready:#}"
    );
    s.assert_role_allows_what_galleon_did().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_are_rejected_marked_and_kept() {
    let s = start(&[]).await;
    let storage = s.cloud.storage().expect("storage");
    s.publish("dyn", "dynamic", "16M", json!({})).await;
    storage
        .upload_block_blob("images", "ubuntu-2404/broken.manifest.json", b"{\"vhd\": ")
        .await
        .expect("manifest");
    let long_name = "d".repeat(81);
    let more = [
        ("missing", json!({"vhd": "ok.vhd", "osType": "Linux"})),
        (
            "toolong",
            // A bad name is told whether or not the VHD is there.
            json!({"vhd": "absent.vhd", "imageDefinition": long_name, "osType": "Linux", "hyperVGeneration": "V2"}),
        ),
        (
            "chars",
            json!({"vhd": "absent.vhd", "imageDefinition": "ubuntu 24.04!", "osType": "Linux", "hyperVGeneration": "V2"}),
        ),
        (
            "tricks",
            json!({"vhd": "../../other/ok.vhd", "imageDefinition": "ubuntu-2404", "osType": "Linux", "hyperVGeneration": "V2"}),
        ),
    ];
    for (name, body) in &more {
        storage
            .upload_block_blob(
                "images",
                &format!("ubuntu-2404/{name}.manifest.json"),
                body.to_string().as_bytes(),
            )
            .await
            .expect("manifest");
    }
    s.publish("ok", "fixed", "8M", json!({"gallery": "someoneelses"}))
        .await;

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
        if codes.len() >= 7 || Instant::now() > deadline {
            break codes;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        codes,
        [
            "GalleryNotAllowed",
            "ManifestInvalid",
            "ManifestNotJson",
            "ManifestVhdPath",
            "NameInvalid",
            "NameInvalid",
            "VhdIsDynamic"
        ]
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
        7,
        "each rejection announced once"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_arm_error_ends_in_one_step_failed_and_nothing_half_made() {
    let s = start(&[("GALLEON_TARGET_REGIONS", "westeurope")]).await;
    s.fault(json!({"kind": "GalleryImageVersions_CreateOrUpdate", "count": 1,
                   "action": {"type": "error", "status": 400, "code": "InvalidParameter", "message": "The source blob is not accessible.", "inOperation": true}})).await;
    s.publish("p", "fixed", "8M", json!({"version": "1.0.0"}))
        .await;

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
    // Galleon waits max(Retry-After, its own backoff) after each: six throttled answers cost about a
    // minute at most.
    s.fault(json!({"rate": 0.3, "count": 6, "action": {"type": "error", "status": 429, "code": "TooManyRequests", "message": "throttled", "retryAfter": 1}})).await;
    s.fault(json!({"kind": "GalleryImageVersions_Get", "count": 3, "action": {"type": "error", "status": 503, "code": "ServiceUnavailable", "message": "try later"}})).await;
    // Region writes fail northeurope whenever they include it, five writes carried out long (a
    // throttled write starts no operation and does not count): galleon takes it out and puts it back
    // on its own, at least twice.
    s.fault(json!({"kind": "GalleryImageVersions_Update", "count": 5, "action": {"type": "failRegion", "region": "northeurope", "details": "simulated capacity problem"}})).await;
    s.publish("t", "fixed", "8M", json!({})).await;

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
    // galleon saw northeurope fail twice and took it out and put it back on its own each time.
    let retries = s
        .cloud
        .host
        .logs()
        .iter()
        .filter(|l| format!("{l:?}").contains("regions failed; replicating them again"))
        .count();
    let related: Vec<String> = s
        .cloud
        .host
        .logs()
        .iter()
        .map(|l| format!("{l:?}"))
        .filter(|l| l.contains("region"))
        .collect();
    assert!(
        retries >= 2,
        "northeurope failed twice and was retried on its own each time (seen {retries} times): {related:#?}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_delivered_twice_changes_nothing() {
    let s = start_with(&[], true).await;
    s.publish("twice", "fixed", "8M", json!({})).await;

    let ready = s.wait_for("io.galleon.image.ready.v1", 150).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_catalog_valid(&s.receiver.received.all());
    assert_eq!(
        distinct(&s.receiver.received.of_type("io.galleon.image.ready.v1")).len(),
        1,
        "exactly one image-ready fact"
    );
    let replicas = distinct(
        &s.receiver
            .received
            .of_type("io.galleon.image.replica.ready.v1"),
    );
    assert_eq!(
        replicas.len(),
        3,
        "one replica-ready fact per region: {replicas:#?}"
    );
    assert!(
        s.receiver
            .received
            .of_type("io.galleon.step.failed.v1")
            .is_empty()
    );
    let kinds = s.cloud.arm.requests_by_kind();
    assert_eq!(
        kinds.get("GalleryImageVersions_CreateOrUpdate"),
        Some(&1),
        "the version is written once: {kinds:?}"
    );
    assert_eq!(kinds.get("Galleries_CreateOrUpdate"), Some(&1), "{kinds:?}");
    assert_eq!(
        kinds.get("GalleryImages_CreateOrUpdate"),
        Some(&1),
        "{kinds:?}"
    );
    let doubled = s
        .cloud
        .host
        .invocations()
        .iter()
        .filter(|i| i.function == "PublishVersion")
        .count();
    assert!(
        doubled >= 2,
        "the host really delivered twice ({doubled} PublishVersion invocations)"
    );
    let version = s
        .arm_get(ready["data"]["versionId"].as_str().unwrap_or_default())
        .await;
    assert_eq!(
        version["properties"]["replicationStatus"]["aggregatedState"],
        "Completed"
    );
    // The run's journal holds each of its facts once, in the order they were sent, and today's index
    // names the run once.
    let run = ready["correlationid"].as_str().unwrap_or_default();
    let storage = s.cloud.storage().expect("storage");
    let journal = storage
        .download("galleon-state", &format!("journal/{run}.jsonl"))
        .await
        .expect("read")
        .expect("the run has a journal");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&journal)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let ids: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["fact"]["id"].as_str())
        .collect();
    let unique: std::collections::BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len(), "a fact written twice: {ids:?}");
    let types: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["fact"]["type"].as_str())
        .collect();
    assert_eq!(
        types.first(),
        Some(&"io.galleon.vhd.accepted.v1"),
        "{types:?}"
    );
    assert_eq!(
        types.last(),
        Some(&"io.galleon.image.ready.v1"),
        "{types:?}"
    );
    assert_eq!(
        types
            .iter()
            .filter(|t| **t == "io.galleon.image.replica.ready.v1")
            .count(),
        3,
        "{types:?}"
    );
    assert!(
        !types.contains(&"io.galleon.operation.followup.v1"),
        "looks are not the run's story: {types:?}"
    );
    let day = chrono::Utc::now().date_naive();
    let index = storage
        .download("galleon-state", &format!("journal/index/{day}.jsonl"))
        .await
        .expect("read")
        .expect("today's index");
    assert_eq!(
        String::from_utf8_lossy(&index).matches(run).count(),
        1,
        "{}",
        String::from_utf8_lossy(&index)
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chain_completes_when_the_handler_is_killed_midway() {
    let s = start(&[]).await;
    s.publish("k", "fixed", "8M", json!({})).await;

    // Kill galleon (SIGKILL) once the version is published, while replication is being watched.
    s.wait_for("io.galleon.image.version.published.v1", 120)
        .await;
    let (pid, starts) = s.cloud.host.handler_process().await;
    assert!(pid > 0, "galleon is running");
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let ready = s.wait_for("io.galleon.image.ready.v1", 150).await;
    let (new_pid, new_starts) = s.cloud.host.handler_process().await;
    assert!(
        new_starts > starts && new_pid != pid,
        "the host restarted galleon ({pid}→{new_pid}, starts {starts}→{new_starts})"
    );
    let regions = distinct(
        &s.receiver
            .received
            .of_type("io.galleon.image.replica.ready.v1"),
    )
    .len();
    assert_eq!(regions, 3, "every region announced");
    assert_eq!(
        distinct(&s.receiver.received.of_type("io.galleon.image.ready.v1")).len(),
        1
    );
    assert!(ready["data"]["versionId"].as_str().is_some());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_bad_vhd_gets_its_own_rejection() {
    let s = start(&[]).await;
    let work = tempfile::tempdir().expect("dir");
    let storage = s.cloud.storage().expect("storage");
    let fixed = make_vhd(work.path(), "base.vhd", "fixed", "8M");
    let raw = work.path().join("raw.img");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "raw",
        raw.to_str().unwrap_or_default(),
        "8M",
    ]);
    let unaligned = work.path().join("unaligned.vhd");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "vpc",
        "-o",
        "subformat=fixed",
        unaligned.to_str().unwrap_or_default(),
        "100M",
    ]);
    let vhdx = work.path().join("x.vhdx");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "vhdx",
        vhdx.to_str().unwrap_or_default(),
        "8M",
    ]);
    let mut corrupt = fixed.clone();
    let n = corrupt.len();
    corrupt[n - 512 + 70] ^= 0xff; // a byte of the footer's unique id: the checksum no longer matches
    let mut truncated = fixed.clone();
    truncated.truncate(fixed.len() - 4096);
    let mut cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "vhdx",
            std::fs::read(&vhdx).expect("vhdx"),
            "VhdxNotSupported",
        ),
        (
            "unaligned",
            std::fs::read(&unaligned).expect("unaligned"),
            "VhdSizeNotAligned",
        ),
        ("corrupt", corrupt, "VhdFooterChecksum"),
        ("truncated", truncated, "VhdFooterMissing"),
        ("empty", Vec::new(), "BlobEmpty"),
        (
            "text",
            b"this is not a disk\n".repeat(60)[..1024].to_vec(),
            "NotAVhd",
        ),
    ];
    // A VHDX's length is not a multiple of 512 in general; pad page blobs the way an uploader must.
    for (_, bytes, _) in &mut cases {
        let pad = (512 - bytes.len() % 512) % 512;
        bytes.extend(std::iter::repeat_n(0u8, pad));
    }
    for (name, bytes, _) in &cases {
        storage
            .upload_page_blob("images", &format!("ubuntu-2404/{name}.vhd"), bytes)
            .await
            .expect("upload");
        storage
            .upload_block_blob(
                "images",
                &format!("ubuntu-2404/{name}.manifest.json"),
                &manifest(&format!("{name}.vhd"), json!({})),
            )
            .await
            .expect("manifest");
    }
    // Declared Gen1 on a disk with GPT and an EFI system partition: use a disk galleon's own vhd crate writes.
    let mut efi = vec![0u8; 8 * 1024 * 1024];
    let esp = vhd::partition::write::Part {
        type_guid: vhd::partition::ESP_GUID,
        first_lba: 2048,
        last_lba: 4095,
        name: "EFI system partition",
    };
    vhd::partition::write::gpt(&mut efi, &[esp]);
    let efi = vhd::fixed_vhd_in_memory(efi);
    storage
        .upload_page_blob("images", "ubuntu-2404/efi.vhd", &efi)
        .await
        .expect("upload");
    storage
        .upload_block_blob(
            "images",
            "ubuntu-2404/efi.manifest.json",
            &manifest("efi.vhd", json!({"hyperVGeneration": "V1"})),
        )
        .await
        .expect("manifest");

    let want: std::collections::BTreeMap<String, String> = cases
        .iter()
        .map(|(n, _, c)| (format!("{n}.vhd"), (*c).to_owned()))
        .chain([("efi.vhd".to_owned(), "GenerationMismatch".to_owned())])
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let got = loop {
        let got: std::collections::BTreeMap<String, String> = s
            .receiver
            .received
            .of_type("io.galleon.vhd.rejected.v1")
            .iter()
            .filter_map(|e| {
                let url = e["data"]["vhd"]["url"]
                    .as_str()
                    .or(e["data"]["blob"]["url"].as_str())?;
                Some((
                    url.rsplit('/').next()?.to_owned(),
                    e["data"]["reason"]["code"].as_str()?.to_owned(),
                ))
            })
            .collect();
        if got.len() >= want.len() || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(got, want);
    assert_catalog_valid(&s.receiver.received.all());
    for e in s.receiver.received.of_type("io.galleon.vhd.rejected.v1") {
        assert!(
            e["data"]["reason"]["fix"]
                .as_str()
                .is_some_and(|f| f.len() > 20),
            "every rejection says how to fix it: {e:#}"
        );
    }
    let kinds = s.cloud.arm.requests_by_kind();
    assert!(
        kinds.keys().all(|k| !k.contains("CreateOrUpdate")),
        "no ARM writes for bad input: {kinds:?}"
    );
    s.stop().await;
}
