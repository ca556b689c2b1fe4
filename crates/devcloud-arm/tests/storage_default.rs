//! The storage type of a gallery image version that names none: from api-version 2025-03-03 on,
//! the spec's default strategy PreferStandard_ZRS (ZRS where the region has zones, LRS elsewhere);
//! before it, Standard_LRS.

mod common;

use common::{Env, gallery_and_definition, managed_image};
use devcloud_arm::ArmConfig;
use reqwest::Method;
use serde_json::{Value, json};

fn regions(v: &Value) -> Vec<(String, String)> {
    v["properties"]["publishingProfile"]["targetRegions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["storageAccountType"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn body(img: &str, extra: Value) -> Value {
    let mut pp = json!({"targetRegions": [
        {"name": "westeurope"}, {"name": "westus"}, {"name": "eastus2", "storageAccountType": "Premium_LRS"}]});
    if let (Some(p), Some(e)) = (pp.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            p.insert(k.clone(), v.clone());
        }
    }
    json!({"location": "westeurope", "properties": {"publishingProfile": pp,
        "storageProfile": {"source": {"id": img}}}})
}

#[tokio::test]
async fn from_2025_03_03_a_version_without_storage_type_prefers_zrs() {
    let env = Env::start(false, ArmConfig::fast()).await;
    let d = gallery_and_definition(&env).await;
    let img = managed_image(&env).await;
    let url = format!("{d}/versions/1.0.0?api-version=2025-03-03");
    env.ok(Method::PUT, &url, Some(body(&img, json!({})))).await;
    let v = env.ok(Method::GET, &url, None).await.body;
    let pp = &v["properties"]["publishingProfile"];
    assert_eq!(pp["storageAccountStrategy"], "PreferStandard_ZRS", "{v}");
    assert_eq!(
        regions(&v),
        [
            ("westeurope".into(), "Standard_ZRS".into()),
            ("westus".into(), "Standard_LRS".into()),
            ("eastus2".into(), "Premium_LRS".into())
        ]
    );
    // A PATCH of another field keeps the strategy and the regions' types.
    env.ok(
        Method::PATCH,
        &url,
        Some(json!({"properties": {"publishingProfile": {"excludeFromLatest": true}}})),
    )
    .await;
    let after = env.ok(Method::GET, &url, None).await.body;
    assert_eq!(regions(&after), regions(&v));
    assert_eq!(
        after["properties"]["publishingProfile"]["storageAccountStrategy"],
        "PreferStandard_ZRS"
    );

    // DefaultStandard_LRS, and a newer api-version, too.
    let url2 = format!("{d}/versions/1.0.1?api-version=2026-03-03");
    env.ok(
        Method::PUT,
        &url2,
        Some(body(
            &img,
            json!({"storageAccountStrategy": "DefaultStandard_LRS"}),
        )),
    )
    .await;
    let v2 = env.ok(Method::GET, &url2, None).await.body;
    assert_eq!(regions(&v2)[0].1, "Standard_LRS");
    // Both at once is refused.
    env.call(
        Method::PUT,
        &format!("{d}/versions/1.0.2?api-version=2025-03-03"),
        Some(body(
            &img,
            json!({"storageAccountStrategy": "PreferStandard_ZRS", "storageAccountType": "Standard_LRS"}),
        )),
    )
    .await
    .expect(400, "InvalidParameter");
}

#[tokio::test]
async fn before_2025_03_03_the_default_is_standard_lrs() {
    let env = Env::start(false, ArmConfig::fast()).await;
    let d = gallery_and_definition(&env).await;
    let img = managed_image(&env).await;
    let url = format!("{d}/versions/1.0.0?api-version=2024-03-03");
    env.ok(Method::PUT, &url, Some(body(&img, json!({})))).await;
    let v = env.ok(Method::GET, &url, None).await.body;
    let pp = &v["properties"]["publishingProfile"];
    assert_eq!(pp["storageAccountType"], "Standard_LRS");
    assert!(pp["storageAccountStrategy"].is_null(), "{v}");
    assert_eq!(regions(&v)[0].1, "Standard_LRS");
    assert_eq!(regions(&v)[2].1, "Premium_LRS");
}
