//! Subscriptions and locations (Microsoft.Resources) in the shapes of the spec, as azure-cli reads
//! them at `az login --identity` and when it validates regions.

mod common;

use common::{Env, SUB};
use devcloud_arm::{ArmConfig, DEFAULT_SUBSCRIPTION_ID};
use reqwest::Method;

const S: &str = "api-version=2022-12-01";

#[tokio::test]
async fn subscriptions_and_locations_are_served() {
    let env = Env::start(false, ArmConfig::fast()).await;
    let list = env
        .call(Method::GET, &format!("/subscriptions?{S}"), None)
        .await;
    assert_eq!(list.status, 200, "{}", list.body);
    let ids: Vec<&str> = list.body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["subscriptionId"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&DEFAULT_SUBSCRIPTION_ID) && ids.contains(&SUB),
        "{ids:?}"
    );
    let one = env
        .call(Method::GET, &format!("/subscriptions/{SUB}?{S}"), None)
        .await;
    assert_eq!(one.status, 200);
    assert_eq!(one.body["id"], format!("/subscriptions/{SUB}"));
    assert_eq!(one.body["state"], "Enabled");
    assert_eq!(one.body["tenantId"], env.identity.tenant_id.as_str());
    assert!(one.body["subscriptionPolicies"]["spendingLimit"].is_string());
    let locs = env
        .call(
            Method::GET,
            &format!("/subscriptions/{SUB}/locations?{S}"),
            None,
        )
        .await;
    assert_eq!(locs.status, 200);
    let we = locs.body["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "westeurope")
        .expect("westeurope listed");
    assert_eq!(we["displayName"], "West Europe");
    assert_eq!(we["type"], "Region");
    assert_eq!(
        we["id"],
        format!("/subscriptions/{SUB}/locations/westeurope")
    );
    assert_eq!(we["availabilityZoneMappings"].as_array().unwrap().len(), 3);
    // Unknown api-versions and malformed ids are refused as ARM does.
    env.call(Method::GET, "/subscriptions?api-version=2030-01-01", None)
        .await
        .expect(400, "InvalidApiVersionParameter");
    env.call(Method::GET, &format!("/subscriptions/not-a-guid?{S}"), None)
        .await
        .expect(400, "InvalidSubscriptionId");
}
