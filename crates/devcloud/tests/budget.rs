//! Resource Manager's budget, end to end: what galleon reads per published image. A gallery and an image
//! definition that one publish saw exist are not read again by the next (for `GALLEON_KNOWN_SECONDS`).

mod common;

use std::collections::HashMap;

use common::*;
use serde_json::{Value, json};

fn reads_of(kinds: &HashMap<String, u64>, kind: &str) -> u64 {
    kinds.get(kind).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_publish_does_not_read_the_gallery_and_definition_again() {
    let s = start(&[("GALLEON_TARGET_REGIONS", "westeurope")]).await;
    s.publish("one", "fixed", "8M", json!({"version": "1.0.0"}))
        .await;
    s.wait_for("io.galleon.image.ready.v1", 120).await;
    let first = s.cloud.arm.requests_by_kind();
    s.publish("two", "fixed", "8M", json!({"version": "1.0.1"}))
        .await;
    // Both image.ready facts in (distinct ids).
    let ready = s.wait_for_n("io.galleon.image.ready.v1", 2, 120).await;
    assert_eq!(
        ready.len(),
        2,
        "the second image did not get ready: {:#?}",
        s.receiver.received.all()
    );
    let second = s.cloud.arm.requests_by_kind();
    for kind in ["Galleries_Get", "GalleryImages_Get"] {
        assert_eq!(
            reads_of(&second, kind),
            reads_of(&first, kind),
            "{kind}: the second publish read it again (first {first:?}, then {second:?})"
        );
    }
    assert!(
        reads_of(&first, "Galleries_Get") > 0,
        "the first publish read the gallery: {first:?}"
    );
    s.stop().await;
}

/// Every ARM call one image takes, from one upload to image ready, at three regions: the first image of
/// a definition (which also makes the gallery and the definition), then the next one.
async fn calls_per_image(publish_from: &str) -> [(u64, Vec<(String, u64)>); 2] {
    let s = start(&[("GALLEON_TARGET_REGIONS", "westeurope,northeurope,eastus2")]).await;
    let mut counts = Vec::new();
    for (n, version) in ["1.0.0", "1.0.1"].iter().enumerate() {
        let before = s.cloud.arm.requests_by_kind();
        s.publish(
            &format!("image{n}"),
            "fixed",
            "8M",
            json!({"version": version, "publishFrom": publish_from}),
        )
        .await;
        s.wait_for_n("io.galleon.image.ready.v1", n + 1, 180).await;
        let after = s.cloud.arm.requests_by_kind();
        let mut kinds: Vec<(String, u64)> = after
            .iter()
            .map(|(k, v)| (k.clone(), v - reads_of(&before, k)))
            .filter(|(_, v)| *v > 0)
            .collect();
        kinds.sort();
        counts.push((kinds.iter().map(|(_, v)| v).sum(), kinds));
    }
    s.stop().await;
    let second = counts.pop().unwrap_or_default();
    let first = counts.pop().unwrap_or_default();
    [first, second]
}

/// The goal: at most 10 ARM calls per image at three regions once the gallery and definition exist. From
/// a VHD it takes 6: ingest's version check, the version's GET, PUT and one look, the PATCH and one
/// replication look. From a managed image it takes 10: the intermediate image adds its own check, PUT
/// and look, and its DELETE at image ready (named with the run's mark, it needs no read first). One more
/// look is allowed either way for the simulator's jitter. The first image of a definition also makes
/// the gallery and the definition, and ingest reads the definition (missing then) before any write, to
/// hold a manifest to an existing one's immutable properties; the next image reads it from the
/// instance's cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_at_three_regions_takes_at_most_ten_arm_calls() {
    for (from, most) in [("vhd", 7), ("managedImage", 11)] {
        let [(first, first_kinds), (next, kinds)] = calls_per_image(from).await;
        println!("publishFrom {from}: first image {first} ARM calls {first_kinds:?}");
        println!("publishFrom {from}: next image {next} ARM calls {kinds:?}");
        assert!(
            next <= most,
            "publishFrom {from}: {next} ARM calls for one image at three regions (at most {most}): {kinds:?}"
        );
        assert!(
            first <= most + 9,
            "publishFrom {from}: {first} ARM calls for the first image (gallery and definition made too): {first_kinds:?}"
        );
    }
}

/// With a small ARM budget (Azure's buckets scaled to a twentieth) and eight images at once, galleon reads
/// what is left from ARM's answers and holds new images back before the budget is gone: they wait their
/// turn, and every image still gets ready, none failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_budget_runs_low_new_images_wait_their_turn() {
    let s = start_configured(
        &[
            ("GALLEON_TARGET_REGIONS", "westeurope,northeurope"),
            ("GALLEON_ARM_READS_BUDGET", "12.5/1.25"),
            ("GALLEON_ARM_WRITES_BUDGET", "10/0.5"),
        ],
        false,
        |o| o.arm.throttling.scale = 0.05,
    )
    .await;
    let images = 8;
    for i in 0..images {
        s.publish(
            &format!("burst{i}"),
            "fixed",
            "8M",
            json!({"version": format!("1.0.{i}")}),
        )
        .await;
    }
    let ready = s.wait_for_n("io.galleon.image.ready.v1", images, 300).await;
    let failed = s.receiver.received.of_type("io.galleon.step.failed.v1");
    assert!(
        ready.len() == images && failed.is_empty(),
        "{} of {images} images ready; failed: {failed:#?}\n{}",
        ready.len(),
        s.recent_host_log(60)
    );
    let throttled = s
        .cloud
        .arm
        .request_log()
        .iter()
        .filter(|e| e.status == 429)
        .count();
    // An instance that held a new image back shared what ARM said was left, for the other instances.
    let subscription = s.cloud.settings["GALLEON_SUBSCRIPTION_ID"].to_ascii_lowercase();
    let note = s
        .cloud
        .storage()
        .expect("storage")
        .download("galleon-state", &format!("pace/{subscription}.json"))
        .await
        .expect("read the pace note");
    let note: Value = note
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    println!("{throttled} answers 429; shared pace note: {note}");
    assert!(
        note.get("writes").is_some() || note.get("reads").is_some(),
        "no new image was held back for the budget (no shared pace note)"
    );
    // A new image is held when what is left is short of its reserve (40 % of the bucket) plus what it
    // spends early (3 reads, 2 writes), so a shared word is below that.
    let low = [("reads", 12.5, 3.0), ("writes", 10.0, 2.0)]
        .iter()
        .any(|(class, burst, cost)| {
            note[class]["remaining"]
                .as_f64()
                .is_some_and(|r| r < 0.4 * burst + cost)
        });
    assert!(low, "the note shares a low budget: {note}");
    s.stop().await;
}

/// A throttled or failing Azure call while a blob is ingested is a retry that galleon schedules on
/// Service Bus, paced as a chain step's, never a failed Event Grid delivery: Azure's Event Grid backs off
/// 10 s, 30 s, 1 min, 5 min … up to 12 h between deliveries, and each one counts against the event's
/// 30 attempts and 24 h.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_ingest_waits_on_service_bus_not_on_event_grid_redelivery() {
    let s = start(&[
        ("GALLEON_TARGET_REGIONS", "westeurope"),
        ("GALLEON_MAX_ATTEMPTS", "2"),
    ])
    .await;
    // Only the ingest reads the VHD's storage account: five 429s in a row (more than the failure budget
    // of two, which throttling does not use up).
    s.fault(json!({"kind": "StorageAccounts_GetProperties", "count": 5, "action": {"type": "error", "status": 429, "code": "TooManyRequests", "message": "throttled", "retryAfter": 1}})).await;
    s.publish("thr", "fixed", "8M", json!({})).await;
    s.wait_for("io.galleon.image.ready.v1", 120).await;
    let ingest = s
        .cloud
        .event_grid
        .dispatcher
        .subscription("ingest-blob")
        .expect("the ingest-blob subscription")
        .state_json()
        .await;
    let answered: Vec<u16> = s
        .cloud
        .arm
        .request_log()
        .iter()
        .filter(|e| e.kind == "StorageAccounts_GetProperties")
        .map(|e| e.status)
        .collect();
    println!("storage account reads answered {answered:?}; ingest-blob: {ingest}");
    assert_eq!(
        answered.iter().filter(|s| **s == 429).count(),
        5,
        "the ingest met every fault: {answered:?}"
    );
    assert_eq!(
        ingest["failedAttempts"], 0,
        "the ingest failed Event Grid deliveries instead of retrying on Service Bus: {ingest}"
    );
    assert!(
        s.receiver
            .received
            .of_type("io.galleon.step.failed.v1")
            .is_empty()
    );
    s.stop().await;
}
