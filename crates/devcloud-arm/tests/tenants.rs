//! Subscriptions of several tenants: a version made from a version in another subscription of the
//! same tenant, and from one in another tenant's subscription, which needs an auxiliary token of that
//! tenant (`x-ms-authorization-auxiliary`) as in Azure; tokens of the wrong tenant are refused.

mod common;

use common::{Env, Resp, SUB};
use devcloud_arm::{ArmConfig, ResourceGroupSeed, SubscriptionSeed};
use devcloud_core::Principal;
use reqwest::Method;
use serde_json::{Value, json};

const G: &str = "api-version=2025-03-03";
/// Same tenant as SUB.
const SUB2: &str = "22222222-2222-4333-8444-555555555555";
/// Another tenant's subscription.
const SUB3: &str = "33333333-2222-4333-8444-555555555555";
const OTHER_TENANT: &str = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
const APP: &str = "3c9a7e21-5b4d-4f6a-9e08-1d2c3b4a5f60";

fn config() -> ArmConfig {
    let mut c = ArmConfig::fast();
    c.subscriptions = vec![
        SubscriptionSeed {
            id: SUB2.into(),
            tenant_id: None,
            display_name: Some("same tenant".into()),
        },
        SubscriptionSeed {
            id: SUB3.into(),
            tenant_id: Some(OTHER_TENANT.into()),
            display_name: Some("partner".into()),
        },
    ];
    for s in [SUB2, SUB3] {
        c.resource_groups.push(ResourceGroupSeed {
            subscription: s.into(),
            name: "src".into(),
            location: None,
        });
    }
    c
}

fn other_tenant_token(env: &Env, lifetime: i64, resource: &str) -> String {
    let p = Principal {
        tenant_id: OTHER_TENANT,
        object_id: "0d0d0d0d-1111-4222-8333-444444444444",
        client_id: APP,
    };
    env.identity.issue_for(&p, resource, lifetime)
}

async fn send(
    env: &Env,
    m: Method,
    path: &str,
    token: &str,
    aux: Option<&str>,
    body: Option<Value>,
) -> Resp {
    let url = format!("{}{path}", env.arm.base_url);
    let mut rb = env.client.request(m, &url).bearer_auth(token);
    if let Some(a) = aux {
        rb = rb.header("x-ms-authorization-auxiliary", a);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    Resp {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

/// Waits for an operation through its Azure-AsyncOperation URL, with `token`.
async fn settle(env: &Env, r: &Resp, token: &str) {
    let url = r
        .header("azure-asyncoperation")
        .expect("Azure-AsyncOperation");
    for _ in 0..500 {
        let s = env
            .client
            .get(&url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let v: Value = s.json().await.unwrap();
        if v["status"] != "InProgress" {
            assert_eq!(v["status"], "Succeeded", "{v}");
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("operation did not end");
}

/// Gallery `gal`, definition `def` and version 1.0.0 (from a managed image) in `sub`/`src`.
async fn source_version(env: &Env, sub: &str, token: &str) -> String {
    let rg = format!("/subscriptions/{sub}/resourceGroups/src/providers/Microsoft.Compute");
    let img = format!("{rg}/images/img");
    let steps = [
        (
            img.clone(),
            "2025-04-01",
            json!({"location": "westeurope", "properties": {"hyperVGeneration": "V2",
            "storageProfile": {"osDisk": {"osType": "Linux", "osState": "Generalized", "blobUri": "https://a.blob.core.windows.net/c/x.vhd"}}}}),
        ),
        (
            format!("{rg}/galleries/gal"),
            "2025-03-03",
            json!({"location": "westeurope"}),
        ),
        (
            format!("{rg}/galleries/gal/images/def"),
            "2025-03-03",
            json!({"location": "westeurope", "properties": {
            "osType": "Linux", "osState": "Generalized", "hyperVGeneration": "V2",
            "identifier": {"publisher": "p", "offer": "o", "sku": "s"}}}),
        ),
        (
            format!("{rg}/galleries/gal/images/def/versions/1.0.0"),
            "2025-03-03",
            json!({"location": "westeurope", "properties": {
            "storageProfile": {"source": {"id": img}}}}),
        ),
    ];
    let mut last = String::new();
    for (path, api, body) in steps {
        let r = send(
            env,
            Method::PUT,
            &format!("{path}?api-version={api}"),
            token,
            None,
            Some(body),
        )
        .await;
        assert!(r.status < 300, "{path}: {} {}", r.status, r.body);
        settle(env, &r, token).await;
        last = path;
    }
    last
}

fn version_from(source: &str) -> Value {
    json!({"location": "westeurope", "properties": {"storageProfile": {"source": {"id": source}}}})
}

#[tokio::test]
async fn a_version_from_another_subscription_and_tenant_needs_that_tenants_token() {
    let env = Env::start(false, config()).await;
    let d = common::gallery_and_definition(&env).await;
    let home = env.token.clone();
    let other = other_tenant_token(&env, 3600, "https://management.azure.com/");

    // Same tenant, other subscription: works as in Azure.
    let same = source_version(&env, SUB2, &home).await;
    let r = env
        .call(
            Method::PUT,
            &format!("{d}/versions/1.0.0?{G}"),
            Some(version_from(&same)),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    settle(&env, &r, &home).await;

    // Another tenant's subscription refuses the home tenant's token, and the other way round.
    let rg3 = format!("/subscriptions/{SUB3}/resourceGroups/src?api-version=2025-04-01");
    send(&env, Method::GET, &rg3, &home, None, None)
        .await
        .expect(401, "InvalidAuthenticationTokenTenant");
    send(
        &env,
        Method::GET,
        &format!("{}?api-version=2025-04-01", env.rg_path("rg")),
        &other,
        None,
        None,
    )
    .await
    .expect(401, "InvalidAuthenticationTokenTenant");
    let foreign = source_version(&env, SUB3, &other).await;

    // Without an auxiliary token of the source's tenant: 403 LinkedAuthorizationFailed.
    let v2 = format!("{d}/versions/2.0.0?{G}");
    let r = send(
        &env,
        Method::PUT,
        &v2,
        &home,
        None,
        Some(version_from(&foreign)),
    )
    .await;
    r.expect(403, "LinkedAuthorizationFailed");
    r.expect_message(&format!(
        "is not authorized to access linked subscription '{SUB3}'"
    ));
    r.expect_message("Microsoft.Compute/galleries/images/versions/write");
    // With a token of the wrong tenant (the caller's own) it is still refused.
    let aux_home = format!("Bearer {home}");
    send(
        &env,
        Method::PUT,
        &v2,
        &home,
        Some(&aux_home),
        Some(version_from(&foreign)),
    )
    .await
    .expect(403, "LinkedAuthorizationFailed");
    // Expired, wrong audience, unknown scheme, more than three: 401.
    let expired = format!(
        "Bearer {}",
        other_tenant_token(&env, -60, "https://management.azure.com/")
    );
    let r = send(
        &env,
        Method::PUT,
        &v2,
        &home,
        Some(&expired),
        Some(version_from(&foreign)),
    )
    .await;
    r.expect(401, "ExpiredAuthenticationToken");
    r.expect_message(OTHER_TENANT);
    let storage = format!(
        "Bearer {}",
        other_tenant_token(&env, 600, "https://storage.azure.com/")
    );
    send(
        &env,
        Method::PUT,
        &v2,
        &home,
        Some(&storage),
        Some(version_from(&foreign)),
    )
    .await
    .expect(401, "InvalidAuthenticationTokenAudience");
    send(
        &env,
        Method::PUT,
        &v2,
        &home,
        Some(&format!("Basic {other}")),
        Some(version_from(&foreign)),
    )
    .await
    .expect(401, "InvalidAuthenticationToken");
    let four = [&aux_home; 4].map(|s| s.as_str()).join(", ");
    send(
        &env,
        Method::PUT,
        &v2,
        &home,
        Some(&four),
        Some(version_from(&foreign)),
    )
    .await
    .expect(401, "InvalidAuthenticationToken");
    assert_eq!(
        env.call(Method::GET, &v2, None).await.status,
        404,
        "nothing was created"
    );

    // With it (among others, comma-separated): created, and it replicates like any version.
    let aux = format!("{aux_home}, Bearer {other}");
    let r = send(
        &env,
        Method::PUT,
        &v2,
        &home,
        Some(&aux),
        Some(version_from(&foreign)),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    settle(&env, &r, &home).await;
    let got = env.ok(Method::GET, &v2, None).await.body;
    assert_eq!(got["properties"]["storageProfile"]["source"]["id"], foreign);
    assert_eq!(got["properties"]["provisioningState"], "Succeeded");
}

#[tokio::test]
async fn subscriptions_are_listed_per_tenant_with_their_tenant_id() {
    let env = Env::start(false, config()).await;
    let home = env.token.clone();
    let other = other_tenant_token(&env, 3600, "https://management.azure.com/");
    let ids = |r: &Resp| -> Vec<String> {
        r.body["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["subscriptionId"].as_str().unwrap().to_string())
            .collect()
    };
    let mine = send(
        &env,
        Method::GET,
        "/subscriptions?api-version=2022-12-01",
        &home,
        None,
        None,
    )
    .await;
    assert!(ids(&mine).contains(&SUB2.to_string()), "{}", mine.body);
    assert!(ids(&mine).contains(&SUB.to_string()));
    assert!(!ids(&mine).contains(&SUB3.to_string()));
    let theirs = send(
        &env,
        Method::GET,
        "/subscriptions?api-version=2022-12-01",
        &other,
        None,
        None,
    )
    .await;
    assert_eq!(ids(&theirs), [SUB3.to_string()], "{}", theirs.body);
    let one = send(
        &env,
        Method::GET,
        &format!("/subscriptions/{SUB3}?api-version=2022-12-01"),
        &other,
        None,
        None,
    )
    .await;
    assert_eq!(one.body["tenantId"], OTHER_TENANT);
    assert_eq!(one.body["displayName"], "partner");
}
