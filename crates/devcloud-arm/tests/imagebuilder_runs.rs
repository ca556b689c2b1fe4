//! Image Builder runs as Azure reports them: the source's exact version after a run (a gallery
//! source's `latest` resolved as Azure does), SharedImage versioning within a major, and no Succeeded
//! while the distributed gallery version is still being created.

mod common;

use std::time::{Duration, Instant};

use common::{Env, gallery_and_definition, managed_image};
use devcloud_arm::{ArmConfig, Work};
use reqwest::Method;
use serde_json::{Value, json};

const T: &str = "api-version=2024-02-01";
const G: &str = "api-version=2025-03-03";

async fn run_to_end(env: &Env, t: &str) -> Value {
    let run = env.call(Method::POST, &format!("{t}/run?{T}"), None).await;
    assert_eq!(run.status, 202, "{}", run.body);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let tpl = env.call(Method::GET, &format!("{t}?{T}"), None).await.body;
        if tpl["properties"]["lastRunStatus"]["runState"] != "Running" {
            return tpl;
        }
        assert!(Instant::now() < deadline, "the run did not end");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// ARM at real time, with `works` taking 50 ms each.
fn quick(works: &[Work]) -> ArmConfig {
    let mut c = ArmConfig::fast();
    c.time_factor = 1.0;
    for w in works {
        c.latency.base_secs.insert(*w, 0.05);
    }
    c
}

#[tokio::test]
async fn a_run_fills_exact_version_honours_major_and_waits_for_its_version() {
    let mut c = quick(&[
        Work::GalleryCreate,
        Work::DefinitionCreate,
        Work::ImageCreate,
        Work::TemplateCreate,
        Work::TemplateUpdate,
        Work::TemplateRun,
    ]);
    // The distributed version takes much longer than the build itself.
    c.latency.base_secs.insert(Work::VersionHomeRegion, 1.0);
    let env = Env::start(false, c).await;
    let d = gallery_and_definition(&env).await;
    let img = managed_image(&env).await;
    // Versions 1.0.0 and 3.1.4 exist: Latest within major 3 is 3.1.5.
    for v in ["1.0.0", "3.1.4"] {
        env.ok(
            Method::PUT,
            &format!("{d}/versions/{v}?{G}"),
            Some(json!({"location": "westeurope", "properties": {
                "storageProfile": {"source": {"id": img}}}})),
        )
        .await;
    }
    let def_id = env.ok(Method::GET, &format!("{d}?{G}"), None).await.body["id"]
        .as_str()
        .unwrap()
        .to_string();
    let t = format!(
        "{}/providers/Microsoft.VirtualMachineImages/imageTemplates/tpl",
        env.rg_path("rg")
    );
    let body = json!({"location": "westeurope", "identity": {"type": "None"}, "properties": {
        "source": {"type": "PlatformImage", "publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"},
        "distribute": [
            {"type": "SharedImage", "galleryImageId": def_id, "runOutputName": "three",
             "targetRegions": [{"name": "westeurope"}], "versioning": {"scheme": "Latest", "major": 3}},
            {"type": "SharedImage", "galleryImageId": def_id, "runOutputName": "five",
             "targetRegions": [{"name": "westeurope"}], "versioning": {"scheme": "Latest", "major": 5}}]}});
    env.ok(Method::PUT, &format!("{t}?{T}"), Some(body.clone()))
        .await;
    let tpl = run_to_end(&env, &t).await;
    assert_eq!(tpl["properties"]["lastRunStatus"]["runState"], "Succeeded");
    // The gallery versions it distributed are done when the run says so.
    let outs = env
        .call(Method::GET, &format!("{t}/runOutputs?{T}"), None)
        .await
        .body;
    let mut built: Vec<String> = outs["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["properties"]["artifactId"].as_str().unwrap().to_string())
        .collect();
    built.sort();
    assert!(built[0].ends_with("/versions/3.1.5"), "{built:?}");
    assert!(built[1].ends_with("/versions/5.0.0"), "{built:?}");
    for id in &built {
        let v = env.call(Method::GET, &format!("{id}?{G}"), None).await.body;
        assert_eq!(v["properties"]["provisioningState"], "Succeeded", "{v}");
    }
    // `latest` resolved to a concrete version.
    let exact = tpl["properties"]["source"]["exactVersion"]
        .as_str()
        .expect("exactVersion after the run");
    assert!(!exact.is_empty() && exact != "latest", "{exact}");
    // Re-PUT of the same template (without the read-only exactVersion) is not a change.
    env.ok(Method::PUT, &format!("{t}?{T}"), Some(body)).await;
}

/// Waits until the resource at `path` is provisioned.
async fn settled(env: &Env, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = env
            .call(Method::GET, &format!("{path}?{G}"), None)
            .await
            .body;
        if r["properties"]["provisioningState"] == "Succeeded" {
            return;
        }
        assert!(Instant::now() < deadline, "{path} did not settle: {r}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_gallery_source_at_latest_builds_from_the_highest_version_included_in_latest() {
    let c = quick(&[
        Work::GalleryCreate,
        Work::DefinitionCreate,
        Work::ImageCreate,
        Work::TemplateCreate,
        Work::TemplateRun,
        Work::VersionHomeRegion,
    ]);
    let env = Env::start(false, c).await;
    let d = gallery_and_definition(&env).await;
    let img = managed_image(&env).await;
    let def_id = env.ok(Method::GET, &format!("{d}?{G}"), None).await.body["id"]
        .as_str()
        .unwrap()
        .to_string();
    // 1.10.0 is the highest included in latest: above 1.9.0 numerically; 2.0.0 is excluded from
    // latest, 1.11.0 is excluded in the template's region.
    let versions = [
        ("1.0.0", json!({})),
        ("1.9.0", json!({})),
        ("1.10.0", json!({})),
        ("2.0.0", json!({"excludeFromLatest": true})),
        (
            "1.11.0",
            json!({"targetRegions": [{"name": "West Europe", "excludeFromLatest": true}]}),
        ),
    ];
    for (v, profile) in versions {
        let path = format!("{d}/versions/{v}");
        env.ok(
            Method::PUT,
            &format!("{path}?{G}"),
            Some(json!({"location": "westeurope", "properties": {
                "publishingProfile": profile, "storageProfile": {"source": {"id": img}}}})),
        )
        .await;
        settled(&env, &path).await;
    }
    let template = |name: &str, version_id: String| {
        let t = format!(
            "{}/providers/Microsoft.VirtualMachineImages/imageTemplates/{name}",
            env.rg_path("rg")
        );
        let body = json!({"location": "westeurope", "identity": {"type": "None"}, "properties": {
            "source": {"type": "SharedImageVersion", "imageVersionId": version_id},
            "distribute": [{"type": "VHD", "runOutputName": "disk"}]}});
        (t, body)
    };
    let (t, body) = template("from-latest", format!("{def_id}/versions/latest"));
    env.ok(Method::PUT, &format!("{t}?{T}"), Some(body)).await;
    let tpl = run_to_end(&env, &t).await;
    let status = &tpl["properties"]["lastRunStatus"];
    assert_eq!(status["runState"], "Succeeded", "{status}");
    // The exact ARM resource id of the version the build used [spec: exactVersion].
    let exact = tpl["properties"]["source"]["exactVersion"]
        .as_str()
        .expect("exactVersion after the run");
    assert!(
        exact.eq_ignore_ascii_case(&format!("{def_id}/versions/1.10.0")),
        "{exact}"
    );
    assert_eq!(
        tpl["properties"]["source"]["imageVersionId"],
        format!("{def_id}/versions/latest"),
        "what the user gave stays"
    );

    // A definition whose every version is excluded from latest has no latest to build from.
    let d2 = d.replace("/images/def", "/images/hidden");
    env.ok(
        Method::PUT,
        &format!("{d2}?{G}"),
        Some(json!({"location": "westeurope", "properties": {
            "osType": "Linux", "osState": "Generalized", "hyperVGeneration": "V2",
            "identifier": {"publisher": "p", "offer": "o", "sku": "hidden"}}})),
    )
    .await;
    let hidden = format!("{d2}/versions/1.0.0");
    env.ok(
        Method::PUT,
        &format!("{hidden}?{G}"),
        Some(json!({"location": "westeurope", "properties": {
            "publishingProfile": {"excludeFromLatest": true},
            "storageProfile": {"source": {"id": img}}}})),
    )
    .await;
    settled(&env, &hidden).await;
    let d2_id = def_id.replace("/images/def", "/images/hidden");
    let (t2, body) = template("none-latest", format!("{d2_id}/versions/latest"));
    env.ok(Method::PUT, &format!("{t2}?{T}"), Some(body)).await;
    let tpl = run_to_end(&env, &t2).await;
    let status = &tpl["properties"]["lastRunStatus"];
    assert_eq!(status["runState"], "Failed", "{status}");
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("BadSharedImageVersionSource")),
        "{status}"
    );
}
