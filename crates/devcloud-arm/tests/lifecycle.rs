//! A version's end of life: PATCH of excludeFromLatest and endOfLifeDate merges, DELETE is blocked
//! before the end of life when safetyProfile.blockDeletionBeforeEndOfLife says so, and what DELETE
//! allows: the last version of a definition, and a version another version was copied from.

mod common;

use std::time::Duration;

use common::{Env, gallery_and_definition, managed_image};
use devcloud_arm::ArmConfig;
use reqwest::Method;
use serde_json::json;

const G: &str = "api-version=2025-03-03";

fn in_secs(s: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(s))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[tokio::test]
async fn end_of_life_patch_merges_and_blocks_deletion_until_it_passes() {
    let env = Env::start(false, ArmConfig::fast()).await;
    let d = gallery_and_definition(&env).await;
    let img = managed_image(&env).await;
    let v = format!("{d}/versions/1.0.0?{G}");
    env.ok(
        Method::PUT,
        &v,
        Some(json!({"location": "westeurope", "properties": {
            "publishingProfile": {"replicaCount": 2, "targetRegions": [{"name": "westeurope"}, {"name": "northeurope"}]},
            "safetyProfile": {"blockDeletionBeforeEndOfLife": true},
            "storageProfile": {"source": {"id": img}}}})),
    )
    .await;
    // Without an end of life nothing blocks a delete, but first: a PATCH sets one, merging.
    let eol = in_secs(3);
    env.ok(
        Method::PATCH,
        &v,
        Some(json!({"properties": {"publishingProfile": {"endOfLifeDate": eol, "excludeFromLatest": true}}})),
    )
    .await;
    let got = env.ok(Method::GET, &v, None).await.body;
    let pp = &got["properties"]["publishingProfile"];
    assert_eq!(pp["excludeFromLatest"], true, "{got}");
    assert_eq!(pp["endOfLifeDate"], eol.as_str());
    assert_eq!(pp["replicaCount"], 2, "{got}");
    assert_eq!(pp["targetRegions"].as_array().unwrap().len(), 2, "{got}");
    assert_eq!(
        got["properties"]["safetyProfile"]["blockDeletionBeforeEndOfLife"],
        true
    );
    assert_eq!(
        got["properties"]["storageProfile"]["source"]["id"],
        img.as_str()
    );

    let r = env.call(Method::DELETE, &v, None).await;
    r.expect(409, "OperationNotAllowed");
    r.expect_message("end of life");
    assert_eq!(env.call(Method::GET, &v, None).await.status, 200);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    env.ok(Method::DELETE, &v, None).await;
    assert_eq!(env.call(Method::GET, &v, None).await.status, 404);
}

#[tokio::test]
async fn the_last_version_and_a_copied_source_can_be_deleted() {
    let env = Env::start(false, ArmConfig::fast()).await;
    let d = gallery_and_definition(&env).await;
    let img = managed_image(&env).await;
    let v1 = format!("{d}/versions/1.0.0");
    env.ok(
        Method::PUT,
        &format!("{v1}?{G}"),
        Some(json!({"location": "westeurope", "properties": {"storageProfile": {"source": {"id": img}}}})),
    )
    .await;
    // 2.0.0 copies 1.0.0; once made, 1.0.0 can go and 2.0.0 stays (a version holds its own copy).
    let v2 = format!("{d}/versions/2.0.0?{G}");
    env.ok(
        Method::PUT,
        &v2,
        Some(json!({"location": "westeurope", "properties": {"storageProfile": {"source": {"id": v1}}}})),
    )
    .await;
    env.ok(Method::DELETE, &format!("{v1}?{G}"), None).await;
    let kept = env.ok(Method::GET, &v2, None).await.body;
    assert_eq!(kept["properties"]["provisioningState"], "Succeeded");
    // The last version goes too; the definition stays, empty, and can then be deleted.
    env.ok(Method::DELETE, &v2, None).await;
    let list = env
        .ok(Method::GET, &format!("{d}/versions?{G}"), None)
        .await
        .body;
    assert_eq!(list["value"], json!([]), "{list}");
    assert_eq!(
        env.call(Method::GET, &format!("{d}?{G}"), None)
            .await
            .status,
        200
    );
    env.ok(Method::DELETE, &format!("{d}?{G}"), None).await;
}
