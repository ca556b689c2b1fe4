//! The VM image versions API (VirtualMachineImages_List / _Get) answers from the configured platform
//! image catalogue, with `$top`/`$orderby`, and `POST /_devcloud/platform-images` releases a new
//! version at run time (a new base image), which Image Builder's `latest` then resolves to.

mod common;

use std::time::{Duration, Instant};

use common::{Env, SUB};
use devcloud_arm::{ArmConfig, PlatformImage, Work};
use reqwest::Method;
use serde_json::json;

const C: &str = "api-version=2024-11-01";
const T: &str = "api-version=2024-02-01";

fn versions_path(loc: &str, publisher: &str, offer: &str, sku: &str) -> String {
    format!(
        "/subscriptions/{SUB}/providers/Microsoft.Compute/locations/{loc}/publishers/{publisher}/artifacttypes/vmimage/offers/{offer}/skus/{sku}/versions"
    )
}

fn names(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .expect("a JSON array, as the spec says")
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect()
}

/// Runs the template to its end; returns the source's exactVersion.
async fn run_exact(env: &Env, t: &str) -> serde_json::Value {
    env.ok(Method::POST, &format!("{t}/run?{T}"), None).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let tpl = env.ok(Method::GET, &format!("{t}?{T}"), None).await.body;
        let st = &tpl["properties"]["lastRunStatus"]["runState"];
        if st != "Running" {
            assert_eq!(st, "Succeeded", "{tpl}");
            return tpl["properties"]["source"]["exactVersion"].clone();
        }
        assert!(Instant::now() < deadline, "the run did not end");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn versions_list_get_order_top_and_a_release_at_run_time() {
    let mut c = ArmConfig::fast();
    c.platform_images = vec![PlatformImage {
        publisher: "Canonical".into(),
        offer: "ubuntu-24_04-lts".into(),
        sku: "server".into(),
        // Out of order, and 10 > 9 numerically (not as text).
        versions: vec![
            "24.04.202410020".into(),
            "24.04.202409120".into(),
            "24.4.10".into(),
            "24.4.9".into(),
        ],
        os_type: "Linux".into(),
        hyper_v_generation: "V2".into(),
        architecture: "x64".into(),
        os_disk_size_gb: 30,
        locations: vec!["westeurope".into()],
    }];
    for w in [Work::TemplateCreate, Work::TemplateRun] {
        c.latency.base_secs.insert(w, 0.05);
    }
    c.time_factor = 1.0;
    let env = Env::start(false, c).await;
    let p = versions_path("westeurope", "canonical", "Ubuntu-24_04-LTS", "server");
    // Ascending, numerically.
    let all = env.ok(Method::GET, &format!("{p}?{C}"), None).await.body;
    assert_eq!(
        names(&all),
        ["24.4.9", "24.4.10", "24.04.202409120", "24.04.202410020"]
    );
    assert_eq!(all[0]["location"], "westeurope");
    assert_eq!(
        all[3]["id"],
        format!(
            "/Subscriptions/{SUB}/Providers/Microsoft.Compute/Locations/westeurope/Publishers/Canonical/ArtifactTypes/VMImage/Offers/ubuntu-24_04-lts/Skus/server/Versions/24.04.202410020"
        )
    );
    // The latest: $orderby=name desc, $top=1.
    let latest = env
        .ok(
            Method::GET,
            &format!("{p}?$orderby=name%20desc&$top=1&{C}"),
            None,
        )
        .await
        .body;
    assert_eq!(names(&latest), ["24.04.202410020"]);
    let two = env
        .ok(Method::GET, &format!("{p}?$top=2&{C}"), None)
        .await
        .body;
    assert_eq!(names(&two), ["24.4.9", "24.4.10"]);
    env.call(Method::GET, &format!("{p}?$top=0&{C}"), None)
        .await
        .expect(400, "InvalidParameter");
    env.call(Method::GET, &format!("{p}?$orderby=location&{C}"), None)
        .await
        .expect(400, "InvalidParameter");
    // One version, with the image's properties.
    let one = env
        .ok(Method::GET, &format!("{p}/24.04.202409120?{C}"), None)
        .await
        .body;
    assert_eq!(one["name"], "24.04.202409120");
    assert_eq!(one["properties"]["osDiskImage"]["operatingSystem"], "Linux");
    assert_eq!(one["properties"]["hyperVGeneration"], "V2");
    assert_eq!(one["properties"]["architecture"], "x64");
    // Not found: an unknown version, `latest` (not a version of this API), another sku, a region
    // the image is not offered in; an unknown region is refused.
    for path in [
        format!("{p}/24.04.209901010?{C}"),
        format!("{p}/latest?{C}"),
        format!(
            "{}?{C}",
            versions_path("westeurope", "Canonical", "ubuntu-24_04-lts", "nope")
        ),
        format!(
            "{}?{C}",
            versions_path("eastus2", "Canonical", "ubuntu-24_04-lts", "server")
        ),
    ] {
        env.call(Method::GET, &path, None)
            .await
            .expect(404, "NotFound");
    }
    env.call(
        Method::GET,
        &format!(
            "{}?{C}",
            versions_path("atlantis", "Canonical", "ubuntu-24_04-lts", "server")
        ),
        None,
    )
    .await
    .expect(400, "LocationNotAvailableForResourceType");
    // An api-version Compute does not have.
    env.call(Method::GET, &format!("{p}?api-version=2024-02-01"), None)
        .await
        .expect(400, "NoRegisteredProviderFound");

    // A template from `latest` resolves to the newest version...
    let t = format!(
        "{}/providers/Microsoft.VirtualMachineImages/imageTemplates/tpl",
        env.rg_path("rg")
    );
    let img =
        format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/images/out");
    env.ok(Method::PUT, &format!("{t}?{T}"), Some(json!({"location": "westeurope", "identity": {"type": "None"}, "properties": {
        "source": {"type": "PlatformImage", "publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"},
        "distribute": [{"type": "ManagedImage", "imageId": img, "location": "westeurope", "runOutputName": "img"}]}}))).await;
    assert_eq!(run_exact(&env, &t).await, "24.04.202410020");
    // ... and after a release, to the new one.
    let rel = env
        .admin(
            Method::POST,
            "platform-images",
            Some(json!({"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "24.04.202411030"})),
        )
        .await;
    assert_eq!(rel.status, 201, "{}", rel.body);
    assert_eq!(rel.body["latest"], "24.04.202411030");
    let latest = env
        .ok(
            Method::GET,
            &format!("{p}?$orderby=name desc&$top=1&{C}"),
            None,
        )
        .await
        .body;
    assert_eq!(names(&latest), ["24.04.202411030"]);
    assert_eq!(run_exact(&env, &t).await, "24.04.202411030");
    // A release of a new sku; a version that is not Major.Minor.Build is refused.
    let rel = env
        .admin(
            Method::POST,
            "platform-images",
            Some(json!({"publisher": "MicrosoftWindowsServer", "offer": "WindowsServer", "sku": "2025-datacenter-azure-edition", "version": "26100.2314.241107", "osType": "Windows"})),
        )
        .await;
    assert_eq!(rel.status, 201, "{}", rel.body);
    let win = env
        .ok(
            Method::GET,
            &format!(
                "{}/26100.2314.241107?{C}",
                versions_path(
                    "northeurope",
                    "MicrosoftWindowsServer",
                    "WindowsServer",
                    "2025-datacenter-azure-edition"
                )
            ),
            None,
        )
        .await
        .body;
    assert_eq!(
        win["properties"]["osDiskImage"]["operatingSystem"],
        "Windows"
    );
    let bad = env
        .admin(
            Method::POST,
            "platform-images",
            Some(json!({"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"})),
        )
        .await;
    assert_eq!(bad.status, 400);
    let listed = env.admin(Method::GET, "platform-images", None).await.body;
    assert_eq!(listed["value"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_run_uses_the_latest_version_of_when_it_started() {
    let mut c = ArmConfig::fast();
    c.time_factor = 1.0;
    c.latency.base_secs.insert(Work::TemplateCreate, 0.05);
    c.latency.base_secs.insert(Work::TemplateRun, 0.6);
    let env = Env::start(false, c).await;
    let t = format!(
        "{}/providers/Microsoft.VirtualMachineImages/imageTemplates/tpl",
        env.rg_path("rg")
    );
    env.ok(Method::PUT, &format!("{t}?{T}"), Some(json!({"location": "westeurope", "identity": {"type": "None"}, "properties": {
        "source": {"type": "PlatformImage", "publisher": "Canonical", "offer": "0001-com-ubuntu-server-jammy", "sku": "22_04-lts-gen2", "version": "latest"},
        "distribute": [{"type": "VHD", "runOutputName": "vhd"}]}}))).await;
    env.ok(Method::POST, &format!("{t}/run?{T}"), None).await;
    // Released while the build runs: this build keeps the version it started from.
    let rel = env
        .admin(
            Method::POST,
            "platform-images",
            Some(json!({"publisher": "Canonical", "offer": "0001-com-ubuntu-server-jammy", "sku": "22_04-lts-gen2", "version": "22.04.209901010"})),
        )
        .await;
    assert_eq!(rel.status, 201);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let tpl = env.ok(Method::GET, &format!("{t}?{T}"), None).await.body;
        if tpl["properties"]["lastRunStatus"]["runState"] != "Running" {
            assert_eq!(tpl["properties"]["lastRunStatus"]["runState"], "Succeeded");
            assert_eq!(
                tpl["properties"]["source"]["exactVersion"],
                "22.04.202411010"
            );
            break;
        }
        assert!(Instant::now() < deadline, "the run did not end");
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert_eq!(run_exact(&env, &t).await, "22.04.209901010");
}
