//! The gallery share action (GallerySharingProfile_Update): a long-running POST whose result is the
//! SharingUpdate, the gallery's sharingProfile and sharingStatus afterwards, and Azure's rules
//! (permissions Groups or Community first, GUID ids, at most 30 subscriptions and 5 tenants).

mod common;

use common::{Env, Resp, SUB};
use devcloud_arm::ArmConfig;
use reqwest::Method;
use serde_json::{Value, json};

const G: &str = "api-version=2025-03-03";

fn guid(n: u32) -> String {
    format!("{n:08x}-1111-4222-8333-444444444444")
}

async fn gallery(env: &Env, name: &str, profile: Value) -> String {
    let g = format!(
        "{}/providers/Microsoft.Compute/galleries/{name}",
        env.rg_path("rg")
    );
    env.ok(
        Method::PUT,
        &format!("{g}?{G}"),
        Some(json!({"location": "westeurope", "properties": {"sharingProfile": profile}})),
    )
    .await;
    g
}

async fn share(env: &Env, g: &str, body: Value) -> Resp {
    env.call(Method::POST, &format!("{g}/share?{G}"), Some(body))
        .await
}

/// Polls the Location of a 202 until it answers something else.
async fn final_answer(env: &Env, r: &Resp) -> Resp {
    let url = r.header("location").expect("Location");
    for _ in 0..500 {
        let p = env.call(Method::GET, &url, None).await;
        if p.status != 202 {
            return p;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the share operation did not end");
}

#[tokio::test]
async fn sharing_with_subscriptions_and_tenants_is_a_long_running_action() {
    let mut config = ArmConfig::fast();
    config.time_factor = 0.1; // a share takes 0.5 s: long enough to see it in progress
    let env = Env::start(false, config).await;
    let g = gallery(&env, "direct", json!({"permissions": "Groups"})).await;
    let add = json!({"operationType": "Add", "groups": [
        {"type": "Subscriptions", "ids": [guid(1), guid(2)]},
        {"type": "AADTenants", "ids": [guid(3)]}]});
    let r = share(&env, &g, add.clone()).await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body, add);
    assert!(r.header("azure-asyncoperation").is_some());
    let during = env.ok(Method::GET, &format!("{g}?{G}"), None).await.body;
    assert_eq!(
        during["properties"]["sharingStatus"]["aggregatedState"], "InProgress",
        "{during}"
    );
    assert_eq!(during["properties"]["provisioningState"], "Succeeded");
    // A second share while the first runs is refused.
    share(&env, &g, add.clone())
        .await
        .expect(409, "OperationNotAllowed");
    let done = final_answer(&env, &r).await;
    assert_eq!((done.status, &done.body), (200, &add));
    let got = env.ok(Method::GET, &format!("{g}?{G}"), None).await.body;
    let p = &got["properties"];
    assert_eq!(p["sharingProfile"]["permissions"], "Groups");
    assert_eq!(
        p["sharingProfile"]["groups"],
        json!([{"type": "Subscriptions", "ids": [guid(1), guid(2)]},
               {"type": "AADTenants", "ids": [guid(3)]}]),
        "{got}"
    );
    assert_eq!(p["sharingStatus"]["aggregatedState"], "Succeeded", "{got}");
    assert_eq!(p["sharingStatus"]["summary"][0]["region"], "westeurope");

    // groups is read-only: a PUT neither sets nor clears it.
    env.ok(
        Method::PUT,
        &format!("{g}?{G}"),
        Some(json!({"location": "westeurope", "properties": {"description": "d",
            "sharingProfile": {"permissions": "Groups", "groups": [{"type": "Subscriptions", "ids": [guid(9)]}]}}})),
    )
    .await;
    let got = env.ok(Method::GET, &format!("{g}?{G}"), None).await.body;
    assert_eq!(
        got["properties"]["sharingProfile"]["groups"][0]["ids"],
        json!([guid(1), guid(2)])
    );

    // Remove, then Reset.
    let r = share(
        &env,
        &g,
        json!({"operationType": "Remove", "groups": [{"type": "Subscriptions", "ids": [guid(1)]}]}),
    )
    .await;
    final_answer(&env, &r).await;
    let got = env.ok(Method::GET, &format!("{g}?{G}"), None).await.body;
    assert_eq!(
        got["properties"]["sharingProfile"]["groups"],
        json!([{"type": "Subscriptions", "ids": [guid(2)]}, {"type": "AADTenants", "ids": [guid(3)]}])
    );
    let r = share(&env, &g, json!({"operationType": "Reset"})).await;
    assert_eq!(r.status, 202);
    let done = final_answer(&env, &r).await;
    assert_eq!(done.body, json!({"operationType": "Reset"}));
    let got = env.ok(Method::GET, &format!("{g}?{G}"), None).await.body;
    assert_eq!(got["properties"]["sharingProfile"]["groups"], json!([]));
}

#[tokio::test]
async fn sharing_is_refused_where_azure_refuses_it() {
    let env = Env::start(false, ArmConfig::fast()).await;
    let private = gallery(&env, "private", json!({"permissions": "Private"})).await;
    let groups = gallery(&env, "groups", json!({"permissions": "Groups"})).await;
    let add = |ids: Vec<String>, t: &str| json!({"operationType": "Add", "groups": [{"type": t, "ids": ids}]});

    share(&env, &private, add(vec![guid(1)], "Subscriptions"))
        .await
        .expect(409, "OperationNotAllowed");
    let r = share(
        &env,
        &groups,
        add(vec!["not-a-guid".into()], "Subscriptions"),
    )
    .await;
    r.expect(400, "InvalidParameter");
    assert_eq!(r.body["error"]["target"], "sharingUpdate.groups.ids");
    share(&env, &groups, add(vec![guid(1)], "Users"))
        .await
        .expect(400, "InvalidParameter");
    share(&env, &groups, json!({"operationType": "Publish"}))
        .await
        .expect(400, "InvalidParameter");
    share(&env, &groups, json!({"groups": []}))
        .await
        .expect(400, "InvalidParameter");
    share(&env, &groups, json!({"operationType": "Add"}))
        .await
        .expect(400, "InvalidParameter");
    // [doc] at most 5 tenants and 30 subscriptions.
    share(&env, &groups, add((0..6).map(guid).collect(), "AADTenants"))
        .await
        .expect(400, "InvalidParameter");
    share(
        &env,
        &groups,
        add((0..31).map(guid).collect(), "Subscriptions"),
    )
    .await
    .expect(400, "InvalidParameter");
    let missing = format!(
        "/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/galleries/nope"
    );
    share(&env, &missing, add(vec![guid(1)], "Subscriptions"))
        .await
        .expect(404, "ResourceNotFound");
    // EnableCommunity needs permissions Community and the full communityGalleryInfo.
    share(&env, &groups, json!({"operationType": "EnableCommunity"}))
        .await
        .expect(409, "OperationNotAllowed");
    let half = gallery(
        &env,
        "half",
        json!({"permissions": "Community", "communityGalleryInfo": {"publisherUri": "https://example.org"}}),
    )
    .await;
    let r = share(&env, &half, json!({"operationType": "EnableCommunity"})).await;
    r.expect(400, "InvalidParameter");
    r.expect_message("publisherContact");
    let community = gallery(
        &env,
        "community",
        json!({"permissions": "Community", "communityGalleryInfo": {
            "publisherUri": "https://example.org", "publisherContact": "ops@example.org",
            "eula": "https://example.org/eula", "publicNamePrefix": "galleon"}}),
    )
    .await;
    let r = share(
        &env,
        &community,
        json!({"operationType": "EnableCommunity"}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    final_answer(&env, &r).await;
    let got = env
        .ok(Method::GET, &format!("{community}?{G}"), None)
        .await
        .body;
    let info = &got["properties"]["sharingProfile"]["communityGalleryInfo"];
    assert_eq!(info["communityGalleryEnabled"], true, "{got}");
    assert!(
        info["publicNames"][0]
            .as_str()
            .unwrap()
            .starts_with("galleon-")
    );
    // Unknown permissions on the gallery itself.
    let bad = format!(
        "{}/providers/Microsoft.Compute/galleries/bad",
        env.rg_path("rg")
    );
    env.call(
        Method::PUT,
        &format!("{bad}?{G}"),
        Some(json!({"location": "westeurope", "properties": {"sharingProfile": {"permissions": "Everyone"}}})),
    )
    .await
    .expect(400, "InvalidParameter");
}
