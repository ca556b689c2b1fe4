//! How builds end beyond the plain cases, end to end on the local cloud: a managed image output is
//! published from the image region by region, a partially succeeded run is told with Image Builder's
//! message and only its made outputs go on, and a template galleon cannot publish is refused before
//! anything runs.

mod common;

use std::time::Duration;

use common::{builds::*, *};
use serde_json::{Value, json};

fn image_id(name: &str) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/images/{name}",
        sub(),
        devcloud::RESOURCE_GROUP
    )
}

/// The regions named by the distinct facts of `ty` about version `version_id`, sorted.
fn regions_of(s: &Scenario, ty: &str, version_id: &Value) -> Vec<String> {
    let mut names: Vec<String> = distinct(&s.receiver.received.of_type(ty))
        .into_iter()
        .filter(|r| &r["data"]["versionId"] == version_id)
        .filter_map(|r| r["data"]["region"]["name"].as_str().map(str::to_owned))
        .collect();
    names.sort_unstable();
    names
}

#[tokio::test]
async fn a_managed_image_output_is_published_from_the_image_region_by_region() {
    let (s, _dir) = start_building(vec![entry(
        "ubuntu-image",
        json!({"publish": {"imageDefinition": "ubuntu-image", "osType": "Linux", "hyperVGeneration": "V2",
            "identifier": {"publisher": "contoso", "offer": "ubuntu-image", "sku": "monthly"},
            "targetRegions": [{"name": "westeurope"}, {"name": "northeurope"}]}}),
    )])
    .await;
    let image = image_id("ubuntu-image-built");
    s.template(
        "ubuntu-image",
        ubuntu(),
        json!([{"type": "ManagedImage", "runOutputName": "image", "imageId": image,
                "location": devcloud::HOME_REGION}]),
        60,
    )
    .await;
    // A rebuild of just this template.
    s.request_build("ubuntu-image").await;
    let finished = s
        .wait_about("io.galleon.build.finished.v1", "ubuntu-image", 1, 120)
        .await;
    let f = &finished[0]["data"];
    assert_eq!(f["runState"], "Succeeded", "{f}");
    let out = &f["runOutputs"][0];
    assert_eq!(f["runOutputs"].as_array().map(Vec::len), Some(1), "{f}");
    assert_eq!(
        (&out["name"], &out["kind"], &out["artifactId"]),
        (&json!("image"), &json!("ManagedImage"), &json!(image)),
        "{f}"
    );
    let ready = s
        .wait_about("io.galleon.image.ready.v1", "ubuntu-image", 1, 180)
        .await;
    let v = &ready[0]["data"];
    assert!(
        v["versionId"]
            .as_str()
            .is_some_and(|id| id.contains("/images/ubuntu-image/versions/")),
        "{v}"
    );
    assert_eq!(v["sourceImageId"], image, "made from the image: {v}");
    assert!(v["sourceVhd"].is_null(), "{v}");
    assert_eq!(v["build"]["runOutputName"], "image", "{v}");
    let regions = region_names(v);
    assert_eq!(regions, ["westeurope", "northeurope"]);
    // One fact per region.
    assert_eq!(
        regions_of(&s, "io.galleon.image.replica.ready.v1", &v["versionId"]),
        ["northeurope", "westeurope"]
    );
    let version = s.arm_get(v["versionId"].as_str().unwrap_or_default()).await;
    let source = version["properties"]["storageProfile"]["source"]["id"]
        .as_str()
        .unwrap_or_default();
    assert!(source.eq_ignore_ascii_case(&image), "{version}");
    // Galleon did not make the image: it stays.
    assert_eq!(
        s.arm_get(&image).await["properties"]["provisioningState"],
        "Succeeded"
    );
    s.end_clean().await;
}

#[tokio::test]
async fn a_partially_succeeded_run_is_told_verbatim_and_only_its_made_outputs_go_on() {
    let (s, _dir) = start_building(vec![entry("partial", json!({}))]).await;
    for d in ["partial-kept", "partial-lost"] {
        s.gallery_definition(d).await;
    }
    s.template(
        "partial",
        ubuntu(),
        json!([
            {"type": "SharedImage", "runOutputName": "kept", "galleryImageId": definition_id("partial-kept"),
             "targetRegions": [{"name": devcloud::HOME_REGION}]},
            {"type": "SharedImage", "runOutputName": "lost", "galleryImageId": definition_id("partial-lost"),
             "targetRegions": [{"name": devcloud::HOME_REGION}]}]),
        60,
    )
    .await;
    s.fault(
        json!({"kind": "VirtualMachineImageTemplates_Run", "count": 1,
        "action": {"type": "failDistribute", "runOutputName": "lost",
                   "message": "Gallery image quota exceeded in westeurope."}}),
    )
    .await;
    s.request_build("partial").await;
    let finished = s
        .wait_about("io.galleon.build.finished.v1", "partial", 1, 120)
        .await;
    let f = &finished[0]["data"];
    assert_eq!(f["runState"], "PartiallySucceeded", "{f}");
    // Image Builder's message, verbatim, as the template shows it.
    let template = s
        .arm_call(reqwest::Method::GET, &template_id("partial"), AIB_API, None)
        .await;
    let shown = &template["properties"]["lastRunStatus"]["message"];
    assert!(
        shown
            .as_str()
            .is_some_and(|m| m.contains("'lost'") && m.contains("quota exceeded")),
        "{template}"
    );
    assert_eq!(&f["message"], shown, "{f}");
    // Galleon's advice: the customization log and the staging resource group.
    let staging = template["properties"]["exactStagingResourceGroup"]
        .as_str()
        .unwrap_or_default();
    assert!(!staging.is_empty(), "{template}");
    assert_eq!(f["stagingResourceGroup"], staging, "{f}");
    let advice = f["advice"].as_str().unwrap_or_default();
    assert!(
        advice.contains("customization.log") && advice.contains(staging),
        "{advice}"
    );
    // Only the made output goes on.
    let outputs: Vec<&str> = f["runOutputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .filter_map(|o| o["name"].as_str())
        .collect();
    assert_eq!(outputs, ["kept"], "{f}");
    let ready = s
        .wait_about("io.galleon.image.ready.v1", "partial", 1, 180)
        .await;
    assert_eq!(ready[0]["data"]["build"]["runOutputName"], "kept");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(s.about("io.galleon.image.ready.v1", "partial").len(), 1);
    assert_eq!(s.about("io.galleon.build.finished.v1", "partial").len(), 1);
    let lost = s
        .arm_call(
            reqwest::Method::GET,
            &format!("{}/versions", definition_id("partial-lost")),
            GALLERY_API,
            None,
        )
        .await;
    assert_eq!(lost["value"], json!([]), "{lost}");
    assert!(s.failures().is_empty(), "{:#?}", s.failures());
    assert_catalog_valid(&s.receiver.received.all());
    s.stop().await;
}

#[tokio::test]
async fn a_template_galleon_cannot_publish_is_refused_once_and_nothing_runs() {
    // A VHD output, but no publish in the builds file: galleon would not know where to publish it.
    let (s, _dir) = start_building(vec![entry("unpublishable", json!({}))]).await;
    s.template(
        "unpublishable",
        ubuntu(),
        json!([{"type": "VHD", "runOutputName": "disk"}]),
        60,
    )
    .await;
    s.request_build("unpublishable").await;
    let failed = s.wait_for("io.galleon.step.failed.v1", 60).await;
    let d = &failed["data"];
    assert_eq!(d["step"], "BuildImage", "{failed}");
    assert_eq!(d["error"]["code"], "BuildPublishMissing", "{failed}");
    assert!(
        d["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("'disk'") && m.contains("imageDefinition")),
        "{failed}"
    );
    assert!(
        d["advice"]
            .as_str()
            .is_some_and(|a| a.contains("\"publish\"")),
        "{failed}"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        distinct(&s.receiver.received.of_type("io.galleon.step.failed.v1")).len(),
        1,
        "one announcement"
    );
    assert!(
        s.about("io.galleon.build.started.v1", "unpublishable")
            .is_empty()
    );
    assert!(
        s.about("io.galleon.build.finished.v1", "unpublishable")
            .is_empty()
    );
    let template = s
        .arm_call(
            reqwest::Method::GET,
            &template_id("unpublishable"),
            AIB_API,
            None,
        )
        .await;
    assert!(
        template["properties"]["lastRunStatus"].is_null(),
        "never run: {template}"
    );
    assert_catalog_valid(&s.receiver.received.all());
    s.stop().await;
}
