//! Builds feed the chain, end to end on the local cloud: the timer (fired as the Functions host's admin
//! API fires it) runs Image Builder templates, galleon follows the runs without blocking and carries
//! their outputs on: a VHD through ingest's checks, a gallery version straight to replication, region by
//! region. Failed and stuck runs end with one announcement; a second firing starts nothing twice; an
//! unchanged source (a platform image's or a gallery image's latest version) is skipped; a request
//! blob starts a build.

mod common;

use std::time::{Duration, Instant};

use common::{builds::*, *};
use serde_json::{Value, json};

#[tokio::test]
async fn the_timer_builds_two_templates_into_ready_images_region_by_region() {
    let (s, _dir) = start_building(vec![
        entry("ubuntu-vhd", json!({"publish": {"imageDefinition": "ubuntu-built", "osType": "Linux", "hyperVGeneration": "V2",
            "identifier": {"publisher": "contoso", "offer": "ubuntu-built", "sku": "monthly"},
            "targetRegions": [{"name": "westeurope"}, {"name": "northeurope"}]}})),
        entry("ubuntu-acg", json!({"publish": {"targetRegions": [{"name": "westeurope"}, {"name": "northeurope"}, {"name": "eastus2"}]}})),
    ])
    .await;
    s.gallery_definition("ubuntu-acg").await;
    s.template(
        "ubuntu-vhd",
        ubuntu(),
        json!([{"type": "VHD", "runOutputName": "disk"}]),
        60,
    )
    .await;
    s.template(
        "ubuntu-acg",
        ubuntu(),
        // The recommended shape: Image Builder distributes to the home region only; galleon replicates.
        json!([{"type": "SharedImage", "runOutputName": "acg", "galleryImageId": definition_id("ubuntu-acg"),
                "targetRegions": [{"name": devcloud::HOME_REGION}], "versioning": {"scheme": "Latest", "major": 1}}]),
        60,
    )
    .await;
    s.fire_schedule().await;

    for name in ["ubuntu-vhd", "ubuntu-acg"] {
        let started = s
            .wait_about("io.galleon.build.started.v1", name, 1, 60)
            .await;
        assert_eq!(started[0]["data"]["reason"], "schedule");
        assert_eq!(
            started[0]["data"]["alreadyRunning"],
            Value::Null,
            "this request started the run"
        );
        assert!(
            started[0]["data"]["warnings"].is_null(),
            "home-region distribution warns of nothing"
        );
        assert_eq!(started[0]["data"]["source"]["kind"], "PlatformImage");
        assert!(
            started[0]["data"]["source"]["version"].is_string(),
            "latest resolved: {}",
            started[0]
        );
        let finished = s
            .wait_about("io.galleon.build.finished.v1", name, 1, 120)
            .await;
        let f = &finished[0]["data"];
        assert_eq!(f["runState"], "Succeeded", "{f}");
        assert!(f["durationSeconds"].is_u64(), "{f}");
        assert_eq!(f["runOutputs"].as_array().map(Vec::len), Some(1));
    }
    let vhd_ready = s
        .wait_about("io.galleon.image.ready.v1", "ubuntu-vhd", 1, 180)
        .await;
    let acg_ready = s
        .wait_about("io.galleon.image.ready.v1", "ubuntu-acg", 1, 180)
        .await;
    // The VHD went through ingest's checks into a version of the definition the builds file names.
    let v = &vhd_ready[0]["data"];
    assert!(
        v["versionId"]
            .as_str()
            .is_some_and(|id| id.contains("/images/ubuntu-built/versions/")),
        "{v}"
    );
    assert!(
        v["sourceVhd"]["url"]
            .as_str()
            .is_some_and(|u| u.contains("/imagebuilder/")),
        "{v}"
    );
    assert_eq!(v["build"]["runOutputName"], "disk");
    let regions = region_names(v);
    assert_eq!(regions, ["westeurope", "northeurope"]);
    // Image Builder's gallery version was replicated by galleon, region by region, to the three regions.
    let a = &acg_ready[0]["data"];
    assert!(
        a["versionId"]
            .as_str()
            .is_some_and(|id| id.contains("/images/ubuntu-acg/versions/1.0.0")),
        "{a}"
    );
    assert!(a["sourceVhd"].is_null(), "{a}");
    assert_eq!(a["build"]["runOutputName"], "acg");
    let replicas: Vec<Value> = distinct(
        &s.receiver
            .received
            .of_type("io.galleon.image.replica.ready.v1"),
    )
    .into_iter()
    .filter(|r| r["data"]["versionId"] == a["versionId"])
    .collect();
    let mut names: Vec<&str> = replicas
        .iter()
        .filter_map(|r| r["data"]["region"]["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["eastus2", "northeurope", "westeurope"],
        "one fact per region"
    );
    let version = s.arm_get(a["versionId"].as_str().unwrap_or_default()).await;
    assert_eq!(
        version["properties"]["publishingProfile"]["targetRegions"]
            .as_array()
            .map(Vec::len),
        Some(3),
        "{version}"
    );
    s.end_clean().await;
}

#[tokio::test]
async fn a_failed_run_and_a_stuck_run_each_end_with_one_announcement() {
    let (s, _dir) = start_building(vec![
        entry("failing", json!({"publish": {"imageDefinition": "failing", "osType": "Linux", "hyperVGeneration": "V2"}})),
        entry("stuck", json!({"cancelMarginMinutes": 0, "publish": {"imageDefinition": "stuck", "osType": "Linux", "hyperVGeneration": "V2"}})),
    ])
    .await;
    s.template(
        "failing",
        ubuntu(),
        json!([{"type": "VHD", "runOutputName": "disk"}]),
        60,
    )
    .await;
    // Image Builder's own timeout is one minute; the run never ends by itself.
    s.template(
        "stuck",
        ubuntu(),
        json!([{"type": "VHD", "runOutputName": "disk"}]),
        1,
    )
    .await;
    let message =
        "Customizer 'patch' failed: script exited with code 100 (E: Unable to locate package)";
    // Faults apply to the next run whatever its template, so the two runs go one after the other.
    s.fault(json!({"kind": "VirtualMachineImageTemplates_Run", "count": 1,
        "action": {"type": "error", "inOperation": true, "status": 400, "code": "ImageBuildFailed", "message": message}}))
        .await;
    s.request_build("failing").await;
    let failed = s
        .wait_about("io.galleon.build.finished.v1", "failing", 1, 120)
        .await;
    let f = &failed[0]["data"];
    assert_eq!(f["runState"], "Failed", "{f}");
    assert!(
        f["message"].as_str().is_some_and(|m| m.contains(message)),
        "Image Builder's message verbatim: {f}"
    );
    assert!(
        f["advice"]
            .as_str()
            .is_some_and(|a| a.contains("customization.log")),
        "{f}"
    );
    assert_eq!(f["runOutputs"], json!([]));

    s.fault(json!({"kind": "VirtualMachineImageTemplates_Run", "count": 1, "action": {"type": "stall"}}))
        .await;
    s.request_build("stuck").await;
    let stuck = s
        .wait_about("io.galleon.build.finished.v1", "stuck", 1, 150)
        .await;
    let k = &stuck[0]["data"];
    assert_eq!(k["runState"], "Canceled", "{k}");
    assert_eq!(k["timedOut"], true, "{k}");
    assert!(
        k["advice"]
            .as_str()
            .is_some_and(|a| a.contains("buildTimeoutInMinutes")),
        "{k}"
    );
    let template = s
        .arm_call(reqwest::Method::GET, &template_id("stuck"), AIB_API, None)
        .await;
    assert_eq!(
        template["properties"]["lastRunStatus"]["runState"], "Canceled",
        "galleon cancelled it in Azure"
    );

    // One announcement each: nothing else follows.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for name in ["failing", "stuck"] {
        assert_eq!(
            s.about("io.galleon.build.finished.v1", name).len(),
            1,
            "{name}"
        );
    }
    assert!(s.failures().is_empty(), "{:#?}", s.failures());
    assert!(
        s.receiver
            .received
            .of_type("io.galleon.image.ready.v1")
            .is_empty()
    );
    assert_catalog_valid(&s.receiver.received.all());
    s.stop().await;
}

#[tokio::test]
async fn firing_the_timer_twice_while_runs_are_in_progress_starts_each_template_once() {
    let names = ["first", "second"];
    let (s, _dir) = start_building(names.iter().map(|n| entry(n, json!({}))).collect()).await;
    for n in names {
        s.gallery_definition(n).await;
        s.template(
            n,
            ubuntu(),
            json!([{"type": "SharedImage", "runOutputName": "acg", "galleryImageId": definition_id(n),
                    "targetRegions": [{"name": devcloud::HOME_REGION}]}]),
            60,
        )
        .await;
    }
    s.fire_schedule().await;
    for n in names {
        s.wait_about("io.galleon.build.started.v1", n, 1, 60).await;
    }
    s.fire_schedule().await;
    for n in names {
        let started = s.wait_about("io.galleon.build.started.v1", n, 2, 60).await;
        let joined = started
            .iter()
            .filter(|e| e["data"]["alreadyRunning"] == true)
            .count();
        assert_eq!(
            joined, 1,
            "the second request is answered with the run in progress: {started:#?}"
        );
        s.wait_about("io.galleon.image.ready.v1", n, 1, 180).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    for n in names {
        assert_eq!(
            s.about("io.galleon.build.finished.v1", n).len(),
            1,
            "one run, told once: {n}"
        );
        assert_eq!(s.about("io.galleon.image.ready.v1", n).len(), 1, "{n}");
        // One version: Image Builder ran the template once.
        let versions = s
            .arm_call(
                reqwest::Method::GET,
                &format!("{}/versions", definition_id(n)),
                GALLERY_API,
                None,
            )
            .await;
        assert_eq!(
            versions["value"].as_array().map(Vec::len),
            Some(1),
            "{versions}"
        );
    }
    assert!(s.failures().is_empty(), "{:#?}", s.failures());
    s.stop().await;
}

#[tokio::test]
async fn rebuilding_only_on_change_skips_an_unchanged_source_and_builds_a_changed_one() {
    let (s, _dir) = start_building(vec![entry(
        "patched",
        json!({"onlyWhenSourceChanged": true}),
    )])
    .await;
    s.gallery_definition("patched").await;
    s.template(
        "patched",
        ubuntu(),
        json!([{"type": "SharedImage", "runOutputName": "acg", "galleryImageId": definition_id("patched"),
                "targetRegions": [{"name": devcloud::HOME_REGION}]}]),
        60,
    )
    .await;
    // Never built: it builds.
    s.fire_schedule().await;
    s.wait_about("io.galleon.image.ready.v1", "patched", 1, 180)
        .await;
    let first = s.about("io.galleon.build.finished.v1", "patched");
    let built_from = first[0]["data"]["source"]["version"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!built_from.is_empty(), "{first:#?}");

    // Nothing changed: skipped, with why.
    s.fire_schedule().await;
    let skipped = s
        .wait_about("io.galleon.build.skipped.v1", "patched", 1, 60)
        .await;
    let why = skipped[0]["data"]["why"].as_str().unwrap_or_default();
    assert!(why.contains(&built_from), "{why}");
    assert_eq!(
        s.about("io.galleon.build.started.v1", "patched").len(),
        1,
        "no second run"
    );

    // Canonical ships a new image: the next firing builds from it.
    let newer = "24.04.209912310";
    let released = s
        .cloud
        .client()
        .expect("client")
        .post(format!("{}/_devcloud/platform-images", s.cloud.arm.base_url))
        .json(&json!({"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": newer}))
        .send()
        .await
        .expect("released");
    assert!(released.status().is_success());
    s.fire_schedule().await;
    let started = s
        .wait_about("io.galleon.build.started.v1", "patched", 2, 60)
        .await;
    assert!(
        started
            .iter()
            .any(|e| e["data"]["source"]["version"] == newer),
        "{started:#?}"
    );
    s.wait_about("io.galleon.image.ready.v1", "patched", 2, 180)
        .await;
    s.end_clean().await;
}

/// Runs template `name` straight through ARM (not galleon) to a successful end.
async fn run_directly(s: &Scenario, name: &str) {
    let id = template_id(name);
    let run = s
        .arm_call(reqwest::Method::POST, &format!("{id}/run"), AIB_API, None)
        .await;
    assert_eq!(run["_status"], 202, "{run}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let t = s.arm_call(reqwest::Method::GET, &id, AIB_API, None).await;
        let status = &t["properties"]["lastRunStatus"];
        if status["runState"] == "Succeeded" {
            return;
        }
        assert!(
            status["runState"] == "Running" && Instant::now() < deadline,
            "{name}: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn rebuilding_only_on_change_follows_a_gallery_sources_latest_version() {
    let (s, _dir) = start_building(vec![entry(
        "derived",
        json!({"onlyWhenSourceChanged": true}),
    )])
    .await;
    for d in ["base", "derived"] {
        s.gallery_definition(d).await;
    }
    // The base image is itself built (outside galleon): 1.0.0; a hidden one is excluded from latest.
    let to_base = |exclude: bool| {
        json!([{"type": "SharedImage", "runOutputName": "base", "galleryImageId": definition_id("base"),
                "targetRegions": [{"name": devcloud::HOME_REGION}], "excludeFromLatest": exclude}])
    };
    s.template("base-maker", ubuntu(), to_base(false), 60).await;
    s.template("base-hidden", ubuntu(), to_base(true), 60).await;
    run_directly(&s, "base-maker").await;
    s.template(
        "derived",
        json!({"type": "SharedImageVersion", "imageVersionId": format!("{}/versions/latest", definition_id("base"))}),
        json!([{"type": "SharedImage", "runOutputName": "acg", "galleryImageId": definition_id("derived"),
                "targetRegions": [{"name": devcloud::HOME_REGION}]}]),
        60,
    )
    .await;
    s.fire_schedule().await;
    let started = s
        .wait_about("io.galleon.build.started.v1", "derived", 1, 60)
        .await;
    let source = &started[0]["data"]["source"];
    assert_eq!(source["kind"], "SharedImageVersion", "{source}");
    assert_eq!(source["version"], "1.0.0", "latest resolved: {source}");
    s.wait_about("io.galleon.image.ready.v1", "derived", 1, 180)
        .await;
    let finished = s.about("io.galleon.build.finished.v1", "derived");
    assert_eq!(
        finished[0]["data"]["source"]["version"], "1.0.0",
        "the version of Image Builder's exactVersion (the version's id): {:#}",
        finished[0]
    );

    // A new base version excluded from latest is not a change.
    run_directly(&s, "base-hidden").await;
    s.fire_schedule().await;
    let skipped = s
        .wait_about("io.galleon.build.skipped.v1", "derived", 1, 60)
        .await;
    let why = skipped[0]["data"]["why"].as_str().unwrap_or_default();
    assert!(why.contains("1.0.0"), "{why}");

    // A new base version in latest is: the next firing builds from it.
    run_directly(&s, "base-maker").await;
    s.fire_schedule().await;
    let started = s
        .wait_about("io.galleon.build.started.v1", "derived", 2, 60)
        .await;
    assert!(
        started
            .iter()
            .any(|e| e["data"]["source"]["version"] == "1.0.2"),
        "{started:#?}"
    );
    s.wait_about("io.galleon.image.ready.v1", "derived", 2, 180)
        .await;
    let template = s
        .arm_call(reqwest::Method::GET, &template_id("derived"), AIB_API, None)
        .await;
    let exact = template["properties"]["source"]["exactVersion"]
        .as_str()
        .unwrap_or_default();
    assert!(
        exact.eq_ignore_ascii_case(&format!("{}/versions/1.0.2", definition_id("base"))),
        "{template}"
    );
    assert_eq!(s.about("io.galleon.build.skipped.v1", "derived").len(), 1);
    assert!(s.failures().is_empty(), "{:#?}", s.failures());
    assert_catalog_valid(&s.receiver.received.all());
    s.stop().await;
}

#[tokio::test]
async fn a_request_blob_starts_a_build_and_a_bad_one_is_told_why() {
    let (s, _dir) = start_building(vec![entry("on-demand", json!({}))]).await;
    s.gallery_definition("on-demand").await;
    s.template(
        "on-demand",
        ubuntu(),
        json!([{"type": "SharedImage", "runOutputName": "acg", "galleryImageId": definition_id("on-demand"),
                "targetRegions": [{"name": devcloud::HOME_REGION}]}]),
        60,
    )
    .await;
    let storage = s.cloud.storage().expect("storage");
    storage
        .create_container("build-requests")
        .await
        .expect("container");
    let bad = br#"{"template": "nightly"}"#;
    storage
        .upload_block_blob("build-requests", "pipeline/bad.json", bad)
        .await
        .expect("bad request");
    let failed = s.wait_for("io.galleon.step.failed.v1", 60).await;
    assert_eq!(
        failed["data"]["error"]["code"], "BuildRequestInvalid",
        "{failed}"
    );
    assert!(
        failed["data"]["advice"]
            .as_str()
            .is_some_and(|a| a.contains("on-demand")),
        "names the configured templates: {failed}"
    );
    assert_eq!(
        storage
            .download("build-requests", "pipeline/bad.json")
            .await
            .expect("read"),
        Some(bad.to_vec()),
        "the request blob is never changed"
    );

    let good = br#"{"template": "on-demand", "reason": "CVE-2026-4242 fixed upstream"}"#;
    storage
        .upload_block_blob("build-requests", "pipeline/good.json", good)
        .await
        .expect("request");
    let started = s
        .wait_about("io.galleon.build.started.v1", "on-demand", 1, 60)
        .await;
    assert_eq!(started[0]["data"]["reason"], "request");
    s.wait_about("io.galleon.image.ready.v1", "on-demand", 1, 180)
        .await;
    assert_catalog_valid(&s.receiver.received.all());
    s.stop().await;
}

// Multi-threaded: the tool runs as a blocking child process while the local cloud serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_rebuilds_a_template_now_with_the_galleon_tool() {
    let (s, _dir) = start_building(vec![entry("urgent", json!({}))]).await;
    s.gallery_definition("urgent").await;
    s.template(
        "urgent",
        ubuntu(),
        json!([{"type": "SharedImage", "runOutputName": "acg", "galleryImageId": definition_id("urgent"),
                "targetRegions": [{"name": devcloud::HOME_REGION}]}]),
        60,
    )
    .await;
    let (host, key) = s.tool_env();
    let env = [
        ("GALLEON_URL", host.as_str()),
        ("GALLEON_FUNCTIONS_KEY", key.as_str()),
    ];
    let unknown = galleon(&["rebuild", "nightly"], &env, None);
    assert_eq!(unknown.code, 3, "{}", unknown.stderr);
    assert!(
        unknown
            .stderr
            .contains("'nightly' is not one galleon builds (urgent)"),
        "names the configured templates: {}",
        unknown.stderr
    );
    let asked = galleon(
        &["rebuild", "urgent", "--note", "CVE-2026-4242"],
        &env,
        None,
    );
    assert_eq!(asked.code, 0, "{}", asked.stderr);
    assert!(
        asked
            .stdout
            .contains(&format!("build of {} requested", template_id("urgent"))),
        "{}",
        asked.stdout
    );
    let started = s
        .wait_about("io.galleon.build.started.v1", "urgent", 1, 60)
        .await;
    assert_eq!(started[0]["data"]["reason"], "operator", "{}", started[0]);
    s.wait_about("io.galleon.image.ready.v1", "urgent", 1, 180)
        .await;
    assert!(s.failures().is_empty(), "{:#?}", s.failures());
    assert_catalog_valid(&s.receiver.received.all());
    s.stop().await;
}
