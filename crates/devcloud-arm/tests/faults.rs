//! Fault rules as the chaos suite uses them: an answer delayed after the write was carried out (its
//! client gone meanwhile, the write still happened), and used-up rules still listed with their counts.

mod common;

use std::time::Duration;

use common::*;
use devcloud_arm::ArmConfig;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn a_write_answered_late_has_happened_though_its_client_gave_up() {
    let env = Env::start(false, ArmConfig::fast()).await;
    let rule = env
        .admin(
            Method::POST,
            "faults",
            Some(
                json!({"id": "slow", "kind": "ResourceGroups_CreateOrUpdate", "count": 1,
                        "action": {"type": "latency", "ms": 3000, "after": true}}),
            ),
        )
        .await;
    assert_eq!(rule.status, 201, "{}", rule.body);
    let group = format!("{}?api-version=2025-04-01", env.rg_path("late"));
    let impatient = env
        .client
        .put(format!("{}{group}", env.arm.base_url))
        .bearer_auth(&env.token)
        .timeout(Duration::from_millis(500))
        .json(&json!({"location": "westeurope"}))
        .send()
        .await;
    assert!(
        impatient.is_err(),
        "no answer within the latency: {impatient:?}"
    );
    // The client is gone; the write was carried out before the answer was held back.
    let got = env.call(Method::GET, &group, None).await;
    assert_eq!(got.status, 200, "{}", got.body);

    // Used up (count 1), the rule no longer applies but is still listed with how often it did.
    let quick = env
        .client
        .put(format!(
            "{}{}?api-version=2025-04-01",
            env.arm.base_url,
            env.rg_path("quick")
        ))
        .bearer_auth(&env.token)
        .timeout(Duration::from_millis(2000))
        .json(&json!({"location": "westeurope"}))
        .send()
        .await
        .expect("answered at once");
    assert_eq!(quick.status(), 201);
    let rules = env.admin(Method::GET, "faults", None).await;
    assert_eq!(rules.body["value"][0]["id"], "slow", "{}", rules.body);
    assert_eq!(rules.body["value"][0]["applied"], 1, "{}", rules.body);
}
