//! Retention and source cleanup end to end on the local cloud: with keep 3, the oldest versions go
//! through excluded from latest, end of life and deletion, in that order, one step a run; the newest
//! three and a pinned version are never touched; a dry run changes nothing and says what a real run
//! would; source VHDs are deleted only after image ready in every region, and a rejected blob always
//! stays.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const HOME_ONLY: &str = r#"[{"name": "westeurope"}]"#;

fn definition() -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/galleries/{}/images/ubuntu-2404",
        devcloud_arm::DEFAULT_SUBSCRIPTION_ID,
        devcloud::RESOURCE_GROUP,
        devcloud::GALLERY
    )
}

impl Scenario {
    /// Publishes version `1.0.<n>` (home region only) and waits for its image ready.
    async fn publish_version(&self, n: u32, extra: Value) {
        let mut fields = json!({"version": format!("1.0.{n}"), "targetRegions": serde_json::from_str::<Value>(HOME_ONLY).unwrap_or_default()});
        if let (Some(f), Some(extra)) = (fields.as_object_mut(), extra.as_object()) {
            f.extend(extra.clone());
        }
        self.publish(&format!("v{n}"), "fixed", "8M", fields).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        while !distinct(&self.receiver.received.of_type("io.galleon.image.ready.v1"))
            .iter()
            .any(|e| e["data"]["version"] == format!("1.0.{n}"))
        {
            assert!(
                std::time::Instant::now() < deadline,
                "1.0.{n} not ready:\n{}",
                self.recent_host_log(40)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The lifecycle facts, in the order they were received: (version, step, dry run).
    /// The lifecycle facts in the order galleon made them (their `time`: Event Grid does not keep the
    /// order of deliveries, and CI saw a `delete` arrive before the `endOfLife` made before it).
    fn lifecycle(&self) -> Vec<(String, String, bool)> {
        let mut seen = std::collections::BTreeSet::new();
        let mut facts: Vec<Value> = self
            .receiver
            .received
            .of_type("io.galleon.image.version.lifecycle.v1")
            .into_iter()
            .filter(|e| seen.insert(e["id"].as_str().unwrap_or_default().to_owned()))
            .collect();
        facts.sort_by_key(|e| {
            chrono::DateTime::parse_from_rfc3339(e["time"].as_str().unwrap_or_default()).ok()
        });
        facts
            .into_iter()
            .map(|e| {
                (
                    e["data"]["version"].as_str().unwrap_or_default().to_owned(),
                    e["data"]["step"].as_str().unwrap_or_default().to_owned(),
                    e["data"]["dryRun"] == true,
                )
            })
            .collect()
    }

    /// Fires the lifecycle timer (a run a day in Azure) until `total` lifecycle facts have arrived: a
    /// version Azure is still updating is left for the next run.
    async fn run_lifecycle(&self, total: usize) {
        for _ in 0..15 {
            if self.lifecycle().len() >= total {
                return;
            }
            self.cloud
                .host
                .fire_timer("ScheduleLifecycle")
                .await
                .expect("the timer fires");
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        panic!(
            "{} of {total} lifecycle facts: {:#?}\n{}",
            self.lifecycle().len(),
            self.lifecycle(),
            self.recent_host_log(40)
        );
    }

    async fn versions(&self) -> Vec<Value> {
        let mut all = Vec::new();
        for n in 0..=6 {
            let v = self
                .arm_get(&format!("{}/versions/1.0.{n}", definition()))
                .await;
            if v["_status"] == 200 {
                all.push(v);
            }
        }
        all
    }
}

#[tokio::test]
async fn keep_three_takes_the_oldest_through_exclude_end_of_life_and_delete_and_spares_the_rest() {
    let s = start(&[(
        "GALLEON_RETENTION",
        r#"{"default": {"keep": 3, "graceDays": 0}}"#,
    )])
    .await;
    // 1.0.0 is pinned by an operator; 1.0.1 to 1.0.6 follow, each published after the last is ready.
    s.publish_version(0, json!({"tags": {"galleon-pin": "true"}}))
        .await;
    for n in 1..=6 {
        s.publish_version(n, json!({})).await;
    }
    // Each image ready moved the oldest one step; timer runs finish what is left.
    s.run_lifecycle(9).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let facts = s.lifecycle();
    for old in ["1.0.1", "1.0.2", "1.0.3"] {
        let steps: Vec<&str> = facts
            .iter()
            .filter(|(v, _, _)| v == old)
            .map(|(_, s, _)| s.as_str())
            .collect();
        assert_eq!(
            steps,
            ["excludeFromLatest", "endOfLife", "delete"],
            "{old}: {facts:#?}"
        );
    }
    assert!(
        facts
            .iter()
            .all(|(v, _, dry)| ["1.0.1", "1.0.2", "1.0.3"].contains(&v.as_str()) && !dry),
        "nothing else was touched: {facts:#?}"
    );
    let left: Vec<String> = s
        .versions()
        .await
        .iter()
        .filter_map(|v| v["name"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        left,
        ["1.0.0", "1.0.4", "1.0.5", "1.0.6"],
        "the pinned and the newest three stay"
    );
    for v in s.versions().await {
        assert_ne!(
            v["properties"]["publishingProfile"]["excludeFromLatest"], true,
            "{v}"
        );
    }
    assert_catalog_valid(&s.receiver.received.all());
    s.assert_role_allows_what_galleon_did().await;
    s.stop().await;
}

#[tokio::test]
async fn a_dry_run_tells_what_it_would_do_and_changes_nothing() {
    let s = start(&[(
        "GALLEON_RETENTION",
        r#"{"default": {"keep": 1, "graceDays": 0, "deleteSources": true}, "dryRun": true}"#,
    )])
    .await;
    for n in 1..=3 {
        s.publish_version(n, json!({})).await;
    }
    s.run_lifecycle(1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let facts = s.lifecycle();
    assert!(facts.iter().all(|(_, _, dry)| *dry), "{facts:#?}");
    assert!(
        facts
            .iter()
            .any(|(v, step, _)| v == "1.0.1" && step == "excludeFromLatest"),
        "{facts:#?}"
    );
    assert!(
        facts.iter().any(|(_, step, _)| step == "deleteSource"),
        "{facts:#?}"
    );
    let versions = s.versions().await;
    assert_eq!(versions.len(), 3);
    for v in versions {
        assert_ne!(
            v["properties"]["publishingProfile"]["excludeFromLatest"], true,
            "changed in a dry run: {v}"
        );
        assert!(
            v["properties"]["publishingProfile"]["endOfLifeDate"].is_null(),
            "{v}"
        );
    }
    let storage = s.cloud.storage().expect("storage");
    for n in 1..=3 {
        assert!(
            storage
                .download("images", &format!("ubuntu-2404/v{n}.vhd"))
                .await
                .expect("read")
                .is_some(),
            "v{n}.vhd deleted in a dry run"
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn sources_are_deleted_only_after_image_ready_and_rejected_blobs_stay() {
    let s = start(&[(
        "GALLEON_RETENTION",
        r#"{"default": {"deleteSources": true}}"#,
    )])
    .await;
    let storage = s.cloud.storage().expect("storage");
    // A bad upload: rejected, and it stays.
    s.publish("bad", "dynamic", "8M", json!({})).await;
    s.wait_for_n("io.galleon.vhd.rejected.v1", 1, 60).await;
    // A good one, to three regions.
    s.publish("good", "fixed", "8M", json!({"version": "2.0.0"}))
        .await;
    let ready = s
        .wait_for_n("io.galleon.image.ready.v1", 1, 120)
        .await
        .into_iter()
        .next()
        .expect("image ready");
    let deleted = {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(f) = s
                .receiver
                .received
                .of_type("io.galleon.image.version.lifecycle.v1")
                .into_iter()
                .find(|e| e["data"]["step"] == "deleteSource")
            {
                break f;
            }
            assert!(std::time::Instant::now() < deadline, "no deleteSource");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    assert!(
        deleted["data"]["blob"]["url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/images/ubuntu-2404/good.vhd")),
        "{deleted}"
    );
    assert!(
        deleted["time"].as_str() >= ready["time"].as_str(),
        "not before image ready"
    );
    // Every region was announced ready before the source went.
    let replicas = distinct(
        &s.receiver
            .received
            .of_type("io.galleon.image.replica.ready.v1"),
    );
    assert_eq!(replicas.len(), 3);
    assert!(
        replicas
            .iter()
            .all(|r| r["time"].as_str() <= deleted["time"].as_str())
    );
    assert_eq!(
        storage
            .download("images", "ubuntu-2404/good.vhd")
            .await
            .expect("read"),
        None,
        "the published VHD is gone"
    );
    assert!(
        storage
            .download("images", "ubuntu-2404/good.manifest.json")
            .await
            .expect("read")
            .is_some(),
        "its manifest stays, as a record"
    );
    assert!(
        storage
            .download("images", "ubuntu-2404/bad.vhd")
            .await
            .expect("read")
            .is_some(),
        "a rejected blob stays, always"
    );
    assert_catalog_valid(&s.receiver.received.all());
    s.assert_role_allows_what_galleon_did().await;
    s.stop().await;
}

#[tokio::test]
async fn a_protected_version_is_said_once_and_a_refused_delete_is_announced_not_retried_in_a_loop()
{
    let s = start(&[(
        "GALLEON_RETENTION",
        r#"{"default": {"keep": 1, "graceDays": 0}}"#,
    )])
    .await;
    // The first delete Azure is asked for is refused, as when a lock or a policy forbids it.
    s.fault(json!({"kind": "GalleryImageVersions_Delete", "count": 1,
        "action": {"type": "error", "status": 409, "code": "ScopeLocked",
            "message": "The scope cannot perform delete operation because following scope(s) are locked: '/subscriptions/…/resourceGroups/rg-images'."}}))
        .await;
    // 1.0.1 is protected by its publisher until 2099.
    s.publish_version(
        1,
        json!({"endOfLifeDate": "2099-01-01T00:00:00Z", "safetyProfile": {"blockDeletionBeforeEndOfLife": true}}),
    )
    .await;
    s.publish_version(2, json!({})).await;
    s.publish_version(3, json!({})).await;
    // 1.0.1: excluded, then blocked. 1.0.2: excluded, end of life, refused, deleted.
    s.run_lifecycle(6).await;
    // More runs say nothing more: the block was said once, the delete is done.
    for _ in 0..3 {
        s.cloud
            .host
            .fire_timer("ScheduleLifecycle")
            .await
            .expect("the timer fires");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let facts = s.lifecycle();
    let steps = |version: &str| -> Vec<String> {
        facts
            .iter()
            .filter(|(v, _, _)| v == version)
            .map(|(_, s, _)| s.clone())
            .collect()
    };
    assert_eq!(
        steps("1.0.1"),
        ["excludeFromLatest", "deletionBlocked"],
        "{facts:#?}"
    );
    assert_eq!(
        steps("1.0.2"),
        [
            "excludeFromLatest",
            "endOfLife",
            "deletionBlocked",
            "delete"
        ],
        "{facts:#?}"
    );
    assert!(steps("1.0.3").is_empty(), "the newest is never touched");
    let refused = s
        .receiver
        .received
        .of_type("io.galleon.image.version.lifecycle.v1")
        .into_iter()
        .find(|e| e["data"]["version"] == "1.0.2" && e["data"]["step"] == "deletionBlocked")
        .expect("the refusal is announced");
    assert_eq!(refused["data"]["error"]["code"], "ScopeLocked", "{refused}");
    assert!(
        s.receiver
            .received
            .of_type("io.galleon.step.failed.v1")
            .is_empty(),
        "a refused retention step is a fact, not a failed run"
    );
    let protected = s.arm_get(&format!("{}/versions/1.0.1", definition())).await;
    assert_eq!(protected["_status"], 200, "{protected}");
    assert_catalog_valid(&s.receiver.received.all());
    s.stop().await;
}

#[tokio::test]
async fn a_dry_run_says_a_vhd_written_again_before_image_ready_would_be_kept() {
    let s = start(&[(
        "GALLEON_RETENTION",
        r#"{"default": {"deleteSources": true}, "dryRun": true}"#,
    )])
    .await;
    // Adding the other region does not finish until released: the uploader writes the VHD again meanwhile.
    s.fault(
        json!({"kind": "GalleryImageVersions_Update", "count": 1, "action": {"type": "stall"}}),
    )
    .await;
    s.publish(
        "kept",
        "fixed",
        "8M",
        json!({"version": "2.0.0", "targetRegions": [{"name": "westeurope"}, {"name": "northeurope"}]}),
    )
    .await;
    let admin = |path: &str| format!("{}/_devcloud/operations{path}", s.cloud.arm.base_url);
    let client = s.cloud.client().expect("client");
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let operation = loop {
        let listed: Value = client
            .get(admin(""))
            .send()
            .await
            .expect("operations")
            .json()
            .await
            .expect("JSON");
        if let Some(op) = listed["value"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|o| o["kind"] == "GalleryImageVersions_Update" && o["stalled"] == true)
        {
            break op["id"].as_str().unwrap_or_default().to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no stalled region update:\n{}",
            s.recent_host_log(40)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let work = tempfile::tempdir().expect("dir");
    let storage = s.cloud.storage().expect("storage");
    storage
        .upload_page_blob(
            "images",
            "ubuntu-2404/kept.vhd",
            &make_vhd(work.path(), "kept2.vhd", "fixed", "8M"),
        )
        .await
        .expect("written again");
    let released = client
        .post(admin(&format!("/{operation}/release")))
        .send()
        .await
        .expect("release");
    assert!(released.status().is_success(), "{}", released.status());
    s.wait_for("io.galleon.image.ready.v1", 120).await;
    // The dry run says what a real run would do: the VHD is someone's new content, and stays.
    let fact = s
        .wait_for("io.galleon.image.version.lifecycle.v1", 30)
        .await;
    let d = &fact["data"];
    assert_eq!(d["step"], "sourceKept", "{fact}");
    assert_eq!(d["dryRun"], true, "{fact}");
    assert!(
        d["blob"]["url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/images/ubuntu-2404/kept.vhd")),
        "{fact}"
    );
    assert!(
        storage
            .download("images", "ubuntu-2404/kept.vhd")
            .await
            .expect("read")
            .is_some(),
        "nothing is deleted in a dry run"
    );
    assert_catalog_valid(&s.receiver.received.all());
    s.stop().await;
}
