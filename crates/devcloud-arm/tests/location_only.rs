//! Long-running operations answered with only a `Location` header, as many Azure providers do
//! (switched on per kind in the configuration, or per request by the `locationOnly` fault action),
//! and `Retry-After`, which is never below 1 second.

mod common;

use std::time::{Duration, Instant};

use common::{Env, managed_image};
use devcloud_arm::{ArmConfig, Work};
use reqwest::Method;
use serde_json::json;

const G: &str = "api-version=2025-03-03";

fn slow_galleries() -> ArmConfig {
    let mut c = ArmConfig::fast();
    c.time_factor = 1.0;
    c.latency.base_secs.insert(Work::GalleryCreate, 0.5);
    c.latency.base_secs.insert(Work::GalleryDelete, 0.5);
    c
}

/// Polls a Location URL: 202 (with Location and Retry-After ≥ 1) while running; returns the end.
async fn follow(env: &Env, url: &str) -> common::Resp {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut saw_running = false;
    loop {
        let p = env.call(Method::GET, url, None).await;
        if p.status != 202 {
            assert!(saw_running, "the operation was never seen running");
            return p;
        }
        saw_running = true;
        let retry: u64 = p.header("retry-after").unwrap().parse().unwrap();
        assert!(retry >= 1);
        assert!(p.header("location").is_some());
        assert!(p.header("azure-asyncoperation").is_none());
        assert!(Instant::now() < deadline, "the operation did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_kind_configured_location_only_is_polled_through_location() {
    let mut c = slow_galleries();
    c.location_only = vec!["Galleries".into()];
    let env = Env::start(false, c).await;
    let g = format!(
        "{}/providers/Microsoft.Compute/galleries/gal?{G}",
        env.rg_path("rg")
    );
    let r = env
        .call(Method::PUT, &g, Some(json!({"location": "westeurope"})))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(
        r.header("azure-asyncoperation").is_none(),
        "{:?}",
        r.headers
    );
    let location = r.header("location").expect("Location");
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    let done = follow(&env, &location).await;
    assert_eq!(done.status, 200);
    assert_eq!(done.body["properties"]["provisioningState"], "Succeeded");
    assert_eq!(done.body["name"], "gal");
    let d = env.call(Method::DELETE, &g, None).await;
    assert_eq!(d.status, 202);
    assert!(d.header("azure-asyncoperation").is_none());
    let end = follow(&env, &d.header("location").unwrap()).await;
    assert_eq!(end.status, 204);
    env.call(Method::GET, &g, None)
        .await
        .expect(404, "ResourceNotFound");
}

#[tokio::test]
async fn a_fault_rule_makes_one_request_location_only() {
    let mut c = ArmConfig::fast();
    c.time_factor = 1.0;
    c.latency.base_secs.insert(Work::ImageCreate, 0.5);
    let env = Env::start(false, c).await;
    let rule = env
        .admin(
            Method::POST,
            "faults",
            Some(json!({"kind": "Images_CreateOrUpdate", "count": 1, "action": {"type": "locationOnly"}})),
        )
        .await;
    assert_eq!(rule.status, 201, "{}", rule.body);
    let img = format!(
        "{}/providers/Microsoft.Compute/images/img?api-version=2025-04-01",
        env.rg_path("rg")
    );
    let body = json!({"location": "westeurope", "properties": {"hyperVGeneration": "V2",
        "storageProfile": {"osDisk": {"osType": "Linux", "osState": "Generalized", "blobUri": "https://a.blob.core.windows.net/c/x.vhd"}}}});
    let r = env.call(Method::PUT, &img, Some(body.clone())).await;
    assert_eq!(r.status, 201);
    assert!(r.header("azure-asyncoperation").is_none());
    let done = follow(&env, &r.header("location").unwrap()).await;
    assert_eq!(done.status, 200);
    assert_eq!(done.body["properties"]["provisioningState"], "Succeeded");
    // The rule applied once: the next image PUT is answered as Compute does, with Azure-AsyncOperation.
    let again = env.call(Method::PUT, &img, Some(body)).await;
    assert!(again.header("azure-asyncoperation").is_some());
}

#[tokio::test]
async fn retry_after_is_never_below_one_second() {
    // Operations here last about a millisecond: the remaining time rounds to 0, Retry-After to 1.
    let env = Env::start(false, ArmConfig::fast()).await;
    let img = managed_image(&env).await;
    let r = env
        .call(
            Method::PATCH,
            &format!("{img}?api-version=2025-04-01"),
            Some(json!({"tags": {"a": "b"}})),
        )
        .await;
    assert_eq!(r.header("retry-after").as_deref(), Some("1"));
    let status = env
        .call(
            Method::GET,
            &r.header("azure-asyncoperation").unwrap(),
            None,
        )
        .await;
    assert_eq!(status.header("retry-after").as_deref(), Some("1"));
    // An injected 429 that names Retry-After 0 is raised to 1 too.
    env.admin(
        Method::POST,
        "faults",
        Some(json!({"kind": "Images_Get", "count": 1,
            "action": {"type": "error", "status": 429, "retryAfter": 0}})),
    )
    .await;
    let t = env
        .call(Method::GET, &format!("{img}?api-version=2025-04-01"), None)
        .await;
    assert_eq!(t.status, 429);
    assert_eq!(t.header("retry-after").as_deref(), Some("1"));
}
