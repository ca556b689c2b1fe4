//! Image Builder runs as Azure reports them: the source's exact version after a run, SharedImage
//! versioning within a major, and no Succeeded while the distributed gallery version is still being
//! created.

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

#[tokio::test]
async fn a_run_fills_exact_version_honours_major_and_waits_for_its_version() {
    let mut c = ArmConfig::fast();
    c.time_factor = 1.0;
    for w in [
        Work::GalleryCreate,
        Work::DefinitionCreate,
        Work::ImageCreate,
        Work::TemplateCreate,
        Work::TemplateUpdate,
        Work::TemplateRun,
    ] {
        c.latency.base_secs.insert(w, 0.05);
    }
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
