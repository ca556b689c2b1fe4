//! PATCH merges, as Azure's update operations do: fields left out of the body stay as they are.

mod common;

use common::{Env, gallery_and_definition, managed_image};
use devcloud_arm::ArmConfig;
use reqwest::Method;
use serde_json::json;

const G: &str = "api-version=2025-03-03";

#[tokio::test]
async fn version_patch_of_one_field_keeps_regions_replicas_and_storage_type() {
    let env = Env::start(false, ArmConfig::fast()).await;
    let d = gallery_and_definition(&env).await;
    let img = managed_image(&env).await;
    let v = format!("{d}/versions/1.0.0?{G}");
    env.ok(
        Method::PUT,
        &v,
        Some(json!({"location": "westeurope", "properties": {
            "publishingProfile": {"replicaCount": 2, "storageAccountType": "Standard_ZRS",
                "targetRegions": [
                    {"name": "westeurope", "regionalReplicaCount": 3},
                    {"name": "northeurope", "regionalReplicaCount": 2, "storageAccountType": "Standard_LRS"}]},
            "storageProfile": {"source": {"id": img}}}})),
    )
    .await;
    let before = env.ok(Method::GET, &v, None).await.body;
    let r = env
        .ok(
            Method::PATCH,
            &v,
            Some(json!({"properties": {"publishingProfile": {"excludeFromLatest": true}}})),
        )
        .await;
    assert!(r.status < 300);
    let after = env
        .ok(
            Method::GET,
            &format!("{d}/versions/1.0.0?$expand=ReplicationStatus&{G}"),
            None,
        )
        .await
        .body;
    let (pb, pa) = (
        &before["properties"]["publishingProfile"],
        &after["properties"]["publishingProfile"],
    );
    assert_eq!(pa["excludeFromLatest"], true, "{after}");
    assert_eq!(pa["targetRegions"], pb["targetRegions"], "{after}");
    assert_eq!(pa["replicaCount"], 2, "{after}");
    assert_eq!(pa["storageAccountType"], "Standard_ZRS", "{after}");
    let regions: Vec<&str> = after["properties"]["replicationStatus"]["summary"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["region"].as_str().unwrap())
        .collect();
    assert_eq!(regions, ["westeurope", "northeurope"], "{after}");
    // A partial safetyProfile merges too.
    env.ok(
        Method::PATCH,
        &v,
        Some(json!({"properties": {"safetyProfile": {"blockDeletionBeforeEndOfLife": false}}})),
    )
    .await;
    let after = env.ok(Method::GET, &v, None).await.body;
    assert_eq!(
        after["properties"]["publishingProfile"]["targetRegions"],
        pb["targetRegions"]
    );
    assert_eq!(
        after["properties"]["safetyProfile"]["allowDeletionOfReplicatedLocations"],
        true
    );
}

#[tokio::test]
async fn gallery_and_definition_patches_keep_what_is_left_out() {
    let env = Env::start(false, ArmConfig::fast()).await;
    let d = gallery_and_definition(&env).await;
    let g = d.rsplit_once("/images/").unwrap().0.to_string();
    env.ok(
        Method::PATCH,
        &format!("{g}?{G}"),
        Some(json!({"properties": {"description": "first"}, "tags": {"a": "1"}})),
    )
    .await;
    env.ok(
        Method::PATCH,
        &format!("{g}?{G}"),
        Some(json!({"properties": {"softDeletePolicy": {"isSoftDeleteEnabled": false}}})),
    )
    .await;
    let gal = env.ok(Method::GET, &format!("{g}?{G}"), None).await.body;
    assert_eq!(gal["properties"]["description"], "first", "{gal}");
    assert_eq!(gal["tags"]["a"], "1", "{gal}");
    assert!(
        gal["properties"]["identifier"]["uniqueName"].is_string(),
        "{gal}"
    );

    env.ok(
        Method::PATCH,
        &format!("{d}?{G}"),
        Some(json!({"properties": {"description": "desc",
            "recommended": {"vCPUs": {"min": 2, "max": 8}, "memory": {"min": 4}}}})),
    )
    .await;
    env.ok(
        Method::PATCH,
        &format!("{d}?{G}"),
        Some(json!({"properties": {"recommended": {"vCPUs": {"max": 16}}}})),
    )
    .await;
    let def = env.ok(Method::GET, &format!("{d}?{G}"), None).await.body;
    let p = &def["properties"];
    assert_eq!(p["description"], "desc", "{def}");
    assert_eq!(p["osType"], "Linux");
    assert_eq!(p["hyperVGeneration"], "V2");
    assert_eq!(p["identifier"]["publisher"], "p");
    assert_eq!(p["recommended"]["vCPUs"]["min"], 2, "{def}");
    assert_eq!(p["recommended"]["vCPUs"]["max"], 16, "{def}");
    assert_eq!(p["recommended"]["memory"]["min"], 4, "{def}");
}

#[tokio::test]
async fn image_patch_changes_tags_only() {
    let env = Env::start(false, ArmConfig::fast()).await;
    let img = managed_image(&env).await;
    let url = format!("{img}?api-version=2025-04-01");
    let before = env.ok(Method::GET, &url, None).await.body;
    env.ok(Method::PATCH, &url, Some(json!({"tags": {"t": "x"}})))
        .await;
    let after = env.ok(Method::GET, &url, None).await.body;
    assert_eq!(after["tags"]["t"], "x");
    assert_eq!(
        after["properties"]["storageProfile"],
        before["properties"]["storageProfile"]
    );
}

#[tokio::test]
async fn template_patch_merges_the_vm_profile() {
    let mut c = ArmConfig::fast();
    c.time_factor = 0.0;
    let env = Env::start(false, c).await;
    let t = format!(
        "{}/providers/Microsoft.VirtualMachineImages/imageTemplates/tpl?api-version=2024-02-01",
        env.rg_path("rg")
    );
    env.ok(
        Method::PUT,
        &t,
        Some(json!({"location": "westeurope", "identity": {"type": "None"}, "properties": {
            "source": {"type": "PlatformImage", "publisher": "p", "offer": "o", "sku": "s", "version": "latest"},
            "distribute": [{"type": "VHD", "runOutputName": "vhd"}],
            "vmProfile": {"vmSize": "Standard_D2ds_v5", "osDiskSizeGB": 64}}})),
    )
    .await;
    env.ok(
        Method::PATCH,
        &t,
        Some(json!({"properties": {"vmProfile": {"vmSize": "Standard_D4ds_v5"}}})),
    )
    .await;
    let got = env.ok(Method::GET, &t, None).await.body;
    assert_eq!(got["properties"]["vmProfile"]["vmSize"], "Standard_D4ds_v5");
    assert_eq!(got["properties"]["vmProfile"]["osDiskSizeGB"], 64, "{got}");
    assert_eq!(got["properties"]["distribute"][0]["runOutputName"], "vhd");
}
