//! Cross-subscription distribution and gallery sharing end to end on the local cloud: a ready image is
//! copied into the galleries of two other subscriptions, each replicated with its own facts; a target
//! that Azure refuses for good fails on its own, with one clear failure, while the other ends ready.

mod common;

use common::*;
use serde_json::json;

const DEFAULT: &str = devcloud_arm::DEFAULT_SUBSCRIPTION_ID;
const TEAM_A: &str = "11111111-2222-3333-4444-555555555555";
const TEAM_B: &str = "22222222-3333-4444-5555-666666666666";

fn allowed() -> String {
    format!("{DEFAULT}/rg-images/golden,{TEAM_A}/rg-team-a/shared,{TEAM_B}/rg-team-b/shared")
}

fn targets() -> String {
    json!([
        // Each target replicates as it says: a region's own values, else the target's.
        {"subscriptionId": TEAM_A, "resourceGroup": "rg-team-a", "gallery": "shared",
            "replicaCount": 2, "storageAccountType": "Premium_LRS",
            "regions": [{"name": "northeurope", "storageAccountType": "Standard_ZRS"}, {"name": "eastus2", "regionalReplicaCount": 3}]},
        {"subscriptionId": TEAM_B, "resourceGroup": "rg-team-b", "gallery": "shared",
            "regions": [{"name": "westeurope", "regionalReplicaCount": 2, "storageAccountType": "Standard_ZRS"}]}
    ])
    .to_string()
}

#[tokio::test]
async fn two_targets_one_refused_for_good_give_one_ready_copy_and_one_clear_failure() {
    let allowed = allowed();
    let targets = targets();
    let s = start(&[
        ("GALLEON_ALLOWED_GALLERIES", allowed.as_str()),
        ("GALLEON_DISTRIBUTION", targets.as_str()),
    ])
    .await;
    s.publish(
        "dist",
        "fixed",
        "8M",
        json!({"version": "3.0.0", "targetRegions": [{"name": "westeurope"}]}),
    )
    .await;
    // The source is published; the next version write (one of the copies) is refused for good.
    s.wait_for_n("io.galleon.image.version.published.v1", 1, 60)
        .await;
    s.fault(json!({"kind": "GalleryImageVersions_CreateOrUpdate", "count": 1,
        "action": {"type": "error", "status": 403, "code": "AuthorizationFailed",
            "message": "The client does not have authorization to perform action 'Microsoft.Compute/galleries/images/versions/write' over scope '/subscriptions/…/resourceGroups/rg-team-…'."}}))
        .await;
    let ready = s.wait_for_n("io.galleon.image.ready.v1", 2, 120).await;
    let failed = s.wait_for_n("io.galleon.step.failed.v1", 1, 30).await;
    assert_eq!(ready.len(), 2, "the source and one copy: {ready:#?}");
    assert_eq!(failed.len(), 1, "{failed:#?}");
    let source = ready
        .iter()
        .find(|r| r["data"]["distributedFrom"].is_null())
        .expect("the source's image ready");
    let copy = ready
        .iter()
        .find(|r| r["data"]["distributedFrom"].is_string())
        .expect("a copy's image ready");
    assert_eq!(copy["data"]["distributedFrom"], source["data"]["versionId"]);
    assert_eq!(copy["data"]["version"], "3.0.0");
    let f = &failed[0]["data"];
    assert_eq!(
        f["error"]["code"], "AuthorizationFailed",
        "Azure's error verbatim: {f}"
    );
    assert_eq!(f["step"], "PublishVersion");
    assert_eq!(
        failed[0]["data"]["input"]["type"],
        "io.galleon.image.distribution.requested.v1"
    );
    // The failed target is the other one; the copy that succeeded is in its own subscription and regions.
    let copy_id = copy["data"]["versionId"].as_str().unwrap_or_default();
    let failed_subject = failed[0]["subject"].as_str().unwrap_or_default();
    assert!(
        copy_id.contains(TEAM_A) || copy_id.contains(TEAM_B),
        "{copy_id}"
    );
    let version = s.arm_get(copy_id).await;
    assert_eq!(
        version["properties"]["storageProfile"]["source"]["id"], source["data"]["versionId"],
        "made from the source version: {version}"
    );
    let regions: Vec<&str> = copy["data"]["regions"]
        .as_array()
        .expect("regions")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    // What Resource Manager shows of the copy: each region replicated as its target says.
    let replication: Vec<(String, i64, String)> =
        version["properties"]["publishingProfile"]["targetRegions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                (
                    r["name"]
                        .as_str()
                        .unwrap_or_default()
                        .replace(' ', "")
                        .to_ascii_lowercase(),
                    r["regionalReplicaCount"].as_i64().unwrap_or_default(),
                    r["storageAccountType"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect();
    let r = |name: &str, n: i64, sat: &str| (name.to_owned(), n, sat.to_owned());
    if copy_id.contains(TEAM_A) {
        assert_eq!(regions, ["northeurope", "eastus2"]);
        assert_eq!(
            replication,
            [
                r("northeurope", 2, "Standard_ZRS"),
                r("eastus2", 3, "Premium_LRS")
            ],
            "{version}"
        );
    } else {
        assert_eq!(regions, ["westeurope"]);
        assert_eq!(
            replication,
            [r("westeurope", 2, "Standard_ZRS")],
            "{version}"
        );
    }
    // Per-region facts of the copy are its own.
    let copy_replicas = distinct(
        &s.receiver
            .received
            .of_type("io.galleon.image.replica.ready.v1"),
    )
    .into_iter()
    .filter(|r| r["data"]["versionId"] == copy["data"]["versionId"])
    .count();
    assert_eq!(copy_replicas, regions.len());
    assert!(
        failed_subject.starts_with("galleries/shared/images/"),
        "{failed_subject}"
    );
    assert_catalog_valid(&s.receiver.received.all());
    s.assert_role_allows_what_galleon_did().await;
    s.stop().await;
}

#[tokio::test]
async fn the_gallery_is_shared_with_the_configured_groups_and_it_is_announced() {
    let tenant = "33333333-4444-5555-6666-777777777777";
    let sharing = json!([{"subscriptions": [TEAM_A, TEAM_B], "tenants": [tenant]}]).to_string();
    let s = start(&[("GALLEON_SHARING", sharing.as_str())]).await;
    s.publish(
        "shared",
        "fixed",
        "8M",
        json!({"version": "4.0.0", "targetRegions": [{"name": "westeurope"}]}),
    )
    .await;
    s.wait_for("io.galleon.image.ready.v1", 120).await;
    let shared = s.wait_for("io.galleon.gallery.shared.v1", 60).await;
    let d = &shared["data"];
    assert_eq!(d["operationType"], "Add");
    assert_eq!(d["subscriptions"], json!([TEAM_A, TEAM_B]));
    assert_eq!(d["tenants"], json!([tenant]));
    // What Azure shows now: the gallery is shared with both groups.
    let gallery = s.arm_get(d["galleryId"].as_str().unwrap_or_default()).await;
    let profile = &gallery["properties"]["sharingProfile"];
    assert_eq!(profile["permissions"], "Groups", "{gallery}");
    let ids = |ty: &str| -> Vec<String> {
        profile["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|g| g["type"] == ty)
            .flat_map(|g| g["ids"].as_array().cloned().unwrap_or_default())
            .filter_map(|v| v.as_str().map(str::to_ascii_lowercase))
            .collect()
    };
    assert_eq!(ids("Subscriptions"), [TEAM_A, TEAM_B]);
    assert_eq!(ids("AADTenants"), [tenant]);
    // The fact says exactly that: every group the gallery is shared with now, as Azure shows it.
    assert_eq!(
        d["sharedWith"],
        json!([{"type": "Subscriptions", "ids": [TEAM_A, TEAM_B]}, {"type": "AADTenants", "ids": [tenant]}]),
        "{d}"
    );
    assert_eq!(
        groups_shown(profile),
        groups_shown(&json!({"groups": d["sharedWith"]}))
    );
    // A second image changes nothing: the gallery shows every group already.
    s.publish(
        "again",
        "fixed",
        "8M",
        json!({"version": "4.0.1", "targetRegions": [{"name": "westeurope"}]}),
    )
    .await;
    s.wait_for_n("io.galleon.image.ready.v1", 2, 120).await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(
        distinct(&s.receiver.received.of_type("io.galleon.gallery.shared.v1")).len(),
        1
    );
    assert_catalog_valid(&s.receiver.received.all());
    s.assert_role_allows_what_galleon_did().await;
    s.stop().await;
}

/// A partner's subscription in another tenant, where the app registration is consented.
const PARTNER: &str = "33333333-2222-4333-8444-555555555555";
const PARTNER_TENANT: &str = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
/// A subscription in a tenant where nobody consented to the app.
const STRANGER: &str = "44444444-2222-4333-8444-555555555555";
const STRANGER_TENANT: &str = "8b2c3d4e-5f60-4b7c-9d8e-0f1a2b3c4d5e";
/// The multi-tenant app registration galleon reaches other tenants with.
const APP: &str = "3c9a7e21-5b4d-4f6a-9e08-1d2c3b4a5f60";

#[tokio::test]
async fn a_target_in_another_tenant_is_reached_with_the_apps_tokens_and_an_auxiliary_one() {
    let home = devcloud_core::identity::DEFAULT_TENANT_ID;
    let allowed = format!(
        "{DEFAULT}/rg-images/golden,{PARTNER}/rg-partner/shared,{STRANGER}/rg-stranger/shared"
    );
    let targets = json!([
        {"subscriptionId": PARTNER, "resourceGroup": "rg-partner", "gallery": "shared", "tenantId": PARTNER_TENANT},
        {"subscriptionId": STRANGER, "resourceGroup": "rg-stranger", "gallery": "shared", "tenantId": STRANGER_TENANT}
    ])
    .to_string();
    let s = start_configured(
        &[
            ("GALLEON_ALLOWED_GALLERIES", allowed.as_str()),
            ("GALLEON_DISTRIBUTION", targets.as_str()),
            ("GALLEON_CROSS_TENANT_CLIENT_ID", APP),
            ("GALLEON_TENANT_ID", home),
            ("GALLEON_RETENTION", r#"{"default": {"keep": 5}}"#),
        ],
        false,
        |o| {
            for (id, tenant) in [(PARTNER, PARTNER_TENANT), (STRANGER, STRANGER_TENANT)] {
                o.arm.subscriptions.push(devcloud_arm::SubscriptionSeed {
                    id: id.into(),
                    tenant_id: Some(tenant.into()),
                    display_name: None,
                });
            }
            // Registered in galleon's tenant and consented in the partner's (not the stranger's); it
            // trusts galleon's managed identity, so no secret is kept.
            o.entra.apps.push(devcloud_core::EntraApp {
                client_id: APP.into(),
                tenants: vec![home.into(), PARTNER_TENANT.into()],
                secret: None,
                federated: vec![devcloud_core::FederatedCredential {
                    issuer: format!("https://login.microsoftonline.com/{home}/v2.0"),
                    subject: devcloud_core::identity::DEFAULT_OBJECT_ID.into(),
                }],
            });
        },
    )
    .await;
    s.publish(
        "partner",
        "fixed",
        "8M",
        json!({"version": "5.0.0", "targetRegions": [{"name": "westeurope"}]}),
    )
    .await;
    let ready = s.wait_for_n("io.galleon.image.ready.v1", 2, 120).await;
    let failed = s.wait_for_n("io.galleon.step.failed.v1", 1, 30).await;
    let copy = ready
        .iter()
        .find(|r| r["data"]["distributedFrom"].is_string())
        .unwrap_or_else(|| panic!("the partner's copy is ready: {failed:#?}"));
    let copy_id = copy["data"]["versionId"].as_str().unwrap_or_default();
    assert!(copy_id.contains(PARTNER), "{copy_id}");
    // The lifecycle timer ages copies where they were made too: it lists the target galleries' image
    // definitions (the stranger's cannot be read, which does not stop the others).
    s.cloud
        .host
        .fire_timer("ScheduleLifecycle")
        .await
        .expect("the timer fires");
    let listed = |log: &serde_json::Value, sub: &str, kind: &str| {
        log["entries"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["kind"] == kind && e["path"].as_str().is_some_and(|p| p.contains(sub)))
            .count()
    };
    let mut log = serde_json::Value::Null;
    for _ in 0..30 {
        log = request_log(&s).await;
        if listed(&log, PARTNER, "GalleryImageVersions_ListByGalleryImage") > 1
            && listed(&log, DEFAULT, "GalleryImageVersions_ListByGalleryImage") > 1
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert!(
        listed(&log, PARTNER, "GalleryImages_ListByGallery") > 0
            && listed(&log, PARTNER, "GalleryImageVersions_ListByGalleryImage") > 1,
        "the partner's gallery is aged by the timer: {log}"
    );
    // Azure's log of the copy's write: the partner tenant's token, galleon's tenant's as the auxiliary.
    let writes: Vec<&serde_json::Value> = log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["kind"] == "GalleryImageVersions_CreateOrUpdate")
        .filter(|e| e["path"].as_str().is_some_and(|p| p.contains(PARTNER)))
        .collect();
    assert!(!writes.is_empty(), "{log}");
    for w in &writes {
        assert_eq!(w["callerTenant"], PARTNER_TENANT, "{w}");
        assert_eq!(w["auxiliaryTenants"], json!([home]), "{w}");
    }
    // Calls to galleon's own subscription carry no auxiliary token.
    assert!(
        log["entries"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["path"].as_str().is_some_and(|p| p.contains(DEFAULT)))
            .all(|e| e["auxiliaryTenants"].is_null() && e["callerTenant"] != PARTNER_TENANT)
    );
    // The stranger's tenant has not consented: one clear failure naming the fix, nothing made there.
    let f = &failed[0]["data"];
    assert_eq!(f["error"]["code"], "CrossTenantTokenRefused", "{f}");
    let message = f["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(STRANGER_TENANT)
            && message.contains("AADSTS700016")
            && message.contains("az ad sp create --id"),
        "{message}"
    );
    assert!(
        failed[0]["subject"]
            .as_str()
            .is_some_and(|sub| sub.starts_with("galleries/shared/")),
        "{failed:#?}"
    );
    assert_catalog_valid(&s.receiver.received.all());
    s.stop().await;
}

/// A sharing profile's groups as (type, sorted lower-case ids), sorted: what is visible to whom.
fn groups_shown(profile: &serde_json::Value) -> Vec<(String, Vec<String>)> {
    let mut groups: Vec<(String, Vec<String>)> = profile["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| {
            let mut ids: Vec<String> = g["ids"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_ascii_lowercase))
                .collect();
            ids.sort();
            (g["type"].as_str().unwrap_or_default().to_owned(), ids)
        })
        .filter(|(_, ids)| !ids.is_empty())
        .collect();
    groups.sort();
    groups
}

/// The local Resource Manager's request log.
async fn request_log(s: &Scenario) -> serde_json::Value {
    s.cloud
        .client()
        .expect("client")
        .get(format!(
            "{}/_devcloud/requests?limit=5000",
            s.cloud.arm.base_url
        ))
        .send()
        .await
        .expect("request log")
        .json::<serde_json::Value>()
        .await
        .expect("json")
}

#[tokio::test]
async fn the_gallery_is_published_as_a_community_gallery_and_it_is_announced() {
    let sharing = json!([{"community": {
        "publisherUri": "https://images.contoso.example",
        "publisherContact": "images@contoso.example",
        "eula": "https://images.contoso.example/eula",
        "publicNamePrefix": "contoso"
    }}])
    .to_string();
    let s = start(&[("GALLEON_SHARING", sharing.as_str())]).await;
    s.publish(
        "community",
        "fixed",
        "8M",
        json!({"version": "6.0.0", "targetRegions": [{"name": "westeurope"}]}),
    )
    .await;
    s.wait_for("io.galleon.image.ready.v1", 120).await;
    let shared = s.wait_for("io.galleon.gallery.shared.v1", 60).await;
    let d = &shared["data"];
    assert_eq!(d["operationType"], "EnableCommunity", "{d}");
    assert_eq!(d["community"], true, "{d}");
    // What Azure shows now: a community gallery with the publisher's details.
    let mut gallery = json!(null);
    for _ in 0..40 {
        gallery = s.arm_get(d["galleryId"].as_str().unwrap_or_default()).await;
        if gallery["properties"]["sharingProfile"]["communityGalleryInfo"]["communityGalleryEnabled"]
            == true
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let profile = &gallery["properties"]["sharingProfile"];
    assert_eq!(profile["permissions"], "Community", "{gallery}");
    let info = &profile["communityGalleryInfo"];
    assert_eq!(info["communityGalleryEnabled"], true, "{gallery}");
    assert_eq!(info["publisherUri"], "https://images.contoso.example");
    assert_eq!(info["publicNamePrefix"], "contoso");
    // The fact says exactly that: everyone sees it (community), and no group is shared with besides.
    assert_eq!(d["sharedWith"], json!([]), "{d}");
    assert!(groups_shown(profile).is_empty(), "{gallery}");
    assert_catalog_valid(&s.receiver.received.all());
    s.assert_role_allows_what_galleon_did().await;
    s.stop().await;
}
