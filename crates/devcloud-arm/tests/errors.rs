//! Bad requests get the ARM error a user would see from Azure: one test per case.

mod common;

use common::{Env, SUB, gallery_and_definition, managed_image};
use devcloud_arm::ArmConfig;
use reqwest::Method;
use serde_json::{Value, json};

const G: &str = "api-version=2025-03-03";
const I: &str = "api-version=2025-04-01";

fn gallery_path(env: &Env, g: &str) -> String {
    format!(
        "{}/providers/Microsoft.Compute/galleries/{g}",
        env.rg_path("rg")
    )
}

async fn plain() -> Env {
    Env::start(false, ArmConfig::fast()).await
}

fn version_body(source_id: &str) -> Value {
    json!({"location": "westeurope", "properties": {"storageProfile": {"source": {"id": source_id}}}})
}

#[tokio::test]
async fn invalid_gallery_name() {
    let env = plain().await;
    let r = env
        .call(
            Method::PUT,
            &format!("{}?{G}", gallery_path(&env, "my-gallery")),
            Some(json!({"location": "westeurope"})),
        )
        .await;
    r.expect(400, "InvalidParameter");
    r.expect_message("dashes, are disallowed");
}

#[tokio::test]
async fn invalid_version_name() {
    let env = plain().await;
    let d = gallery_and_definition(&env).await;
    let r = env
        .call(
            Method::PUT,
            &format!("{d}/versions/1.0?{G}"),
            Some(version_body("x")),
        )
        .await;
    r.expect(400, "InvalidParameter");
    r.expect_message("Major(int).Minor(int).Patch(int)");
}

#[tokio::test]
async fn invalid_image_name() {
    let env = plain().await;
    let r = env
        .call(
            Method::PUT,
            &format!(
                "{}/providers/Microsoft.Compute/images/bad.?{I}",
                env.rg_path("rg")
            ),
            Some(json!({"location": "westeurope"})),
        )
        .await;
    r.expect(400, "InvalidResourceName");
}

#[tokio::test]
async fn missing_required_properties() {
    let env = plain().await;
    let g = gallery_path(&env, "gal");
    // No location.
    let r = env
        .call(Method::PUT, &format!("{g}?{G}"), Some(json!({})))
        .await;
    r.expect(400, "LocationRequired");
    env.ok(
        Method::PUT,
        &format!("{g}?{G}"),
        Some(json!({"location": "westeurope"})),
    )
    .await;
    // Definition without osType.
    let r = env
        .call(
            Method::PUT,
            &format!("{g}/images/def?{G}"),
            Some(json!({"location": "westeurope", "properties": {
        "osState": "Generalized", "identifier": {"publisher": "p", "offer": "o", "sku": "s"}}})),
        )
        .await;
    r.expect(400, "InvalidParameter");
    assert_eq!(
        r.body["error"]["message"],
        "Required parameter 'osType' is missing (null)."
    );
    // Version without storageProfile.
    let d = gallery_and_definition(&env).await;
    let r = env
        .call(
            Method::PUT,
            &format!("{d}/versions/1.0.0?{G}"),
            Some(json!({"location": "westeurope", "properties": {}})),
        )
        .await;
    r.expect(400, "InvalidParameter");
    r.expect_message("'storageProfile'");
    // Image without osDisk.
    let r = env
        .call(
            Method::PUT,
            &format!(
                "{}/providers/Microsoft.Compute/images/img?{I}",
                env.rg_path("rg")
            ),
            Some(json!({"location": "westeurope", "properties": {"storageProfile": {}}})),
        )
        .await;
    r.expect(400, "InvalidParameter");
    // Malformed JSON.
    let r = env
        .client
        .put(format!("{}{g}?{G}", env.arm.base_url))
        .bearer_auth(&env.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "InvalidRequestContent");
}

#[tokio::test]
async fn wrong_api_version() {
    let env = plain().await;
    let g = gallery_path(&env, "gal");
    let r = env
        .call(Method::GET, &format!("{g}?api-version=2019-01-01"), None)
        .await;
    r.expect(400, "NoRegisteredProviderFound");
    let r = env.call(Method::GET, &g, None).await;
    r.expect(400, "MissingApiVersionParameter");
    let r = env
        .call(Method::GET, &format!("{g}?api-version=latest"), None)
        .await;
    r.expect(400, "InvalidApiVersionParameter");
    // Image Builder versions are their own list.
    let r = env
        .call(
            Method::GET,
            &format!(
                "{}/providers/Microsoft.VirtualMachineImages/imageTemplates/t?{G}",
                env.rg_path("rg")
            ),
            None,
        )
        .await;
    r.expect(400, "NoRegisteredProviderFound");
}

async fn image_from(env: &Env, uri: &str) -> common::Resp {
    env.call(Method::PUT, &format!("{}/providers/Microsoft.Compute/images/img?{I}", env.rg_path("rg")),
        Some(json!({"location": "westeurope", "properties": {"hyperVGeneration": "V2", "storageProfile": {"osDisk": {
            "osType": "Linux", "osState": "Generalized", "blobUri": uri}}}}))).await
}

#[tokio::test]
async fn non_fixed_vhd_source() {
    let env = Env::start(true, ArmConfig::fast()).await;
    let uri = env.upload_vhd("vhds", "dyn.vhd", "dynamic", "8M").await;
    let r = image_from(&env, &uri).await;
    r.expect(400, "InvalidParameter");
    r.expect_message("fixed VHD");
    // The same check applies to a version made straight from the VHD.
    let d = gallery_and_definition(&env).await;
    let r = env.call(Method::PUT, &format!("{d}/versions/1.0.0?{G}"), Some(json!({"location": "westeurope", "properties": {
        "storageProfile": {"osDiskImage": {"source": {"uri": uri, "storageAccountId": "/subscriptions/x/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/a"}}}}}))).await;
    r.expect(400, "InvalidParameter");
}

#[tokio::test]
async fn unaligned_vhd_source() {
    let env = Env::start(true, ArmConfig::fast()).await;
    // 8 MiB + 512 bytes: a fixed VHD whose virtual size is not a whole number of MiB.
    let uri = env.upload_vhd("vhds", "odd.vhd", "fixed", "8389120").await;
    let r = image_from(&env, &uri).await;
    r.expect(400, "InvalidParameter");
    r.expect_message("The size must be a whole number (in MBs)");
    // A good one is accepted, mapped from its production-style URL.
    env.upload_vhd("vhds", "good.vhd", "fixed", "8M").await;
    let r = image_from(
        &env,
        "https://someaccount.blob.core.windows.net/vhds/good.vhd",
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
}

#[tokio::test]
async fn missing_blob_source() {
    let env = Env::start(true, ArmConfig::fast()).await;
    let uri = format!(
        "{}/vhds/nothere.vhd",
        env.azurite.as_ref().unwrap().blob_endpoint()
    );
    let r = image_from(&env, &uri).await;
    r.expect(400, "InvalidParameter");
    r.expect_message("Source was not found");
}

#[tokio::test]
async fn immutable_property_change() {
    let env = plain().await;
    let d = gallery_and_definition(&env).await;
    let r = env
        .call(
            Method::PUT,
            &format!("{d}?{G}"),
            Some(json!({"location": "westeurope", "properties": {
        "osType": "Windows", "osState": "Generalized", "hyperVGeneration": "V2",
        "identifier": {"publisher": "p", "offer": "o", "sku": "s"}}})),
        )
        .await;
    r.expect(409, "PropertyChangeNotAllowed");
    assert_eq!(
        r.body["error"]["message"],
        "Changing property 'galleryImage.properties.osType' is not allowed."
    );
    let r = env.call(Method::PATCH, &format!("{d}?{G}"), Some(json!({"properties": {"identifier": {"publisher": "p", "offer": "o", "sku": "other"}}}))).await;
    r.expect(409, "PropertyChangeNotAllowed");
    // Version source.
    let img = managed_image(&env).await;
    env.ok(
        Method::PUT,
        &format!("{d}/versions/1.0.0?{G}"),
        Some(version_body(&img)),
    )
    .await;
    let r = env
        .call(
            Method::PUT,
            &format!("{d}/versions/1.0.0?{G}"),
            Some(version_body(&format!("{img}2"))),
        )
        .await;
    r.expect(409, "PropertyChangeNotAllowed");
    r.expect_message("storageProfile.source.id");
}

#[tokio::test]
async fn missing_parent_and_resource() {
    let env = plain().await;
    let g = gallery_path(&env, "nogal");
    let r = env
        .call(
            Method::PUT,
            &format!("{g}/images/def?{G}"),
            Some(json!({"location": "westeurope"})),
        )
        .await;
    r.expect(404, "ParentResourceNotFound");
    let r = env.call(Method::GET, &format!("{g}?{G}"), None).await;
    r.expect(404, "ResourceNotFound");
    let r = env.call(Method::DELETE, &format!("{g}?{G}"), None).await;
    assert_eq!(r.status, 204);
}

#[tokio::test]
async fn delete_parent_with_children() {
    let env = plain().await;
    gallery_and_definition(&env).await;
    let r = env
        .call(
            Method::DELETE,
            &format!("{}?{G}", gallery_path(&env, "gal")),
            None,
        )
        .await;
    r.expect(409, "CannotDeleteResource");
}

#[tokio::test]
async fn version_regions_rules() {
    let env = plain().await;
    let d = gallery_and_definition(&env).await;
    let img = managed_image(&env).await;
    let mut body = version_body(&img);
    body["properties"]["publishingProfile"] = json!({"targetRegions": [{"name": "northeurope"}]});
    let r = env
        .call(
            Method::PUT,
            &format!("{d}/versions/1.0.0?{G}"),
            Some(body.clone()),
        )
        .await;
    r.expect(400, "InvalidParameter");
    r.expect_message("must contain the location");
    body["properties"]["publishingProfile"] =
        json!({"targetRegions": [{"name": "westeurope"}, {"name": "West Europe"}]});
    let r = env
        .call(
            Method::PUT,
            &format!("{d}/versions/1.0.0?{G}"),
            Some(body.clone()),
        )
        .await;
    assert_eq!(
        r.body["error"]["message"],
        "Duplicate regions are not allowed in target publishing regions."
    );
    body["properties"]["publishingProfile"] =
        json!({"targetRegions": [{"name": "westeurope", "regionalReplicaCount": 0}]});
    let r = env
        .call(
            Method::PUT,
            &format!("{d}/versions/1.0.0?{G}"),
            Some(body.clone()),
        )
        .await;
    r.expect_message("out of range");
    // Source in another region.
    let mut other = version_body(&img);
    other["location"] = json!("northeurope");
    let r = env
        .call(Method::PUT, &format!("{d}/versions/1.0.1?{G}"), Some(other))
        .await;
    r.expect(400, "InvalidParameter");
    r.expect_message("same region");
}

#[tokio::test]
async fn duplicate_identifier_in_gallery() {
    let env = plain().await;
    let d = gallery_and_definition(&env).await;
    let other = d.replace("/images/def", "/images/def2");
    let r = env.call(Method::PUT, &format!("{other}?{G}"), Some(json!({"location": "westeurope", "properties": {
        "osType": "Linux", "osState": "Generalized", "identifier": {"publisher": "P", "offer": "o", "sku": "s"}}}))).await;
    // As Azure's troubleshooting guide shows it: 409 OperationNotAllowed, "identified by (…) already exists".
    r.expect(409, "OperationNotAllowed");
    r.expect_message("identified by (publisher:P, offer:o, sku:s) already exists");
}

#[tokio::test]
async fn authentication_is_checked() {
    let env = plain().await;
    let url = format!("{}{}?{G}", env.arm.base_url, gallery_path(&env, "gal"));
    let r = env.client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("www-authenticate").is_some());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "AuthenticationFailed");
    let storage = env.identity.issue("https://storage.azure.com");
    let r = env
        .client
        .get(&url)
        .bearer_auth(storage)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "InvalidAuthenticationTokenAudience");
    let expired = env
        .identity
        .issue_with_lifetime("https://management.azure.com", -60);
    let r = env
        .client
        .get(&url)
        .bearer_auth(expired)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "ExpiredAuthenticationToken");
    // Metadata needs no token; the subscription is echoed.
    let r = env
        .client
        .get(format!(
            "{}/metadata/endpoints?api-version=2022-09-01",
            env.arm.base_url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["resourceManager"]
            .as_str()
            .unwrap()
            .starts_with("https://127.0.0.1")
    );
    let _ = SUB;
}

#[tokio::test]
async fn gallery_limits_are_enforced() {
    let mut c = ArmConfig::fast();
    c.limits.galleries_per_region = 1;
    c.limits.replicas_per_version = 3;
    let env = Env::start(false, c).await;
    let d = gallery_and_definition(&env).await;
    let r = env
        .call(
            Method::PUT,
            &format!("{}?{G}", gallery_path(&env, "second")),
            Some(json!({"location": "westeurope"})),
        )
        .await;
    r.expect(409, "GalleryQuotaExceeded");
    // Another region has its own quota.
    let r = env
        .call(
            Method::PUT,
            &format!("{}?{G}", gallery_path(&env, "second")),
            Some(json!({"location": "northeurope"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let img = managed_image(&env).await;
    let mut body = version_body(&img);
    body["properties"]["publishingProfile"] = json!({"targetRegions": [{"name": "westeurope", "regionalReplicaCount": 2}, {"name": "eastus", "regionalReplicaCount": 2}]});
    let r = env
        .call(Method::PUT, &format!("{d}/versions/1.0.0?{G}"), Some(body))
        .await;
    r.expect(400, "InvalidParameter");
    r.expect_message("exceeds the limit of 3 replicas");
}

#[tokio::test]
async fn tags_beyond_azures_limits_are_refused_on_put_and_patch() {
    let env = plain().await;
    let too_many: serde_json::Map<String, Value> =
        (0..51).map(|i| (format!("t{i}"), json!("v"))).collect();
    let r = env
        .call(
            Method::PUT,
            &format!("{}?{G}", gallery_path(&env, "golden")),
            Some(json!({"location": "westeurope", "tags": too_many})),
        )
        .await;
    r.expect(400, "InvalidTags");
    r.expect_message("Maximum number of tags allowed - '50'");
    let r = env
        .call(
            Method::PUT,
            &format!("{}?{G}", gallery_path(&env, "golden")),
            Some(json!({"location": "westeurope", "tags": {"k8s.io/role": "x"}})),
        )
        .await;
    r.expect(400, "InvalidTagNameCharacters");
    // Nothing was made by the refused requests; a gallery with fitting tags is.
    let r = env
        .call(
            Method::GET,
            &format!("{}?{G}", gallery_path(&env, "golden")),
            None,
        )
        .await;
    r.expect(404, "ResourceNotFound");
    let r = env
        .call(
            Method::PUT,
            &format!("{}?{G}", gallery_path(&env, "golden")),
            Some(json!({"location": "westeurope", "tags": {"team": "platform"}})),
        )
        .await;
    assert!(r.status < 300, "{}", r.body);
    let r = env
        .call(
            Method::PATCH,
            &format!("{}?{G}", gallery_path(&env, "golden")),
            Some(json!({"tags": {"team": "v".repeat(257)}})),
        )
        .await;
    r.expect(400, "InvalidTagValueLength");
}
