//! Resource groups (Microsoft.Resources) as ARM serves them, and the rule that every resource lives
//! in an existing group.

mod common;

use std::time::{Duration, Instant};

use common::{Env, SUB};
use devcloud_arm::{ArmConfig, Work};
use reqwest::Method;
use serde_json::json;

const R: &str = "api-version=2025-04-01";
const G: &str = "api-version=2025-03-03";

#[tokio::test]
async fn a_put_into_a_missing_group_is_refused_as_azure_does() {
    let env = Env::start(false, ArmConfig::fast()).await;
    let g = format!(
        "{}/providers/Microsoft.Compute/galleries/gal?{G}",
        env.rg_path("nope")
    );
    let r = env
        .call(Method::PUT, &g, Some(json!({"location": "westeurope"})))
        .await;
    r.expect(404, "ResourceGroupNotFound");
    assert_eq!(r.message(), "Resource group 'nope' could not be found.");
    env.call(Method::GET, &g, None)
        .await
        .expect(404, "ResourceGroupNotFound");
    let list = format!(
        "{}/providers/Microsoft.Compute/galleries?{G}",
        env.rg_path("nope")
    );
    env.call(Method::GET, &list, None)
        .await
        .expect(404, "ResourceGroupNotFound");
    // Once the group exists, the same PUT is accepted.
    env.create_group("nope").await;
    env.ok(Method::PUT, &g, Some(json!({"location": "westeurope"})))
        .await;
}

#[tokio::test]
async fn groups_are_created_read_listed_and_checked_case_insensitively() {
    let env = Env::start(false, ArmConfig::fast()).await;
    let url = format!("/subscriptions/{SUB}/resourcegroups/Rg-Two?{R}");
    let r = env
        .call(
            Method::PUT,
            &url,
            Some(json!({"location": "northeurope", "tags": {"team": "images"}})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        r.body["id"],
        format!("/subscriptions/{SUB}/resourceGroups/Rg-Two")
    );
    assert_eq!(r.body["type"], "Microsoft.Resources/resourceGroups");
    assert_eq!(r.body["location"], "northeurope");
    assert_eq!(r.body["properties"]["provisioningState"], "Succeeded");
    let again = env
        .call(Method::PUT, &url, Some(json!({"location": "northeurope"})))
        .await;
    assert_eq!(again.status, 200);
    let moved = env
        .call(Method::PUT, &url, Some(json!({"location": "eastus"})))
        .await;
    moved.expect(409, "InvalidResourceGroupLocation");
    let got = env
        .call(
            Method::GET,
            &format!("/subscriptions/{SUB}/resourceGroups/rg-two?{R}"),
            None,
        )
        .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["name"], "Rg-Two");
    let head = env
        .call(
            Method::HEAD,
            &format!("/subscriptions/{SUB}/resourceGroups/RG-TWO?{R}"),
            None,
        )
        .await;
    assert_eq!(head.status, 204);
    let missing = env
        .call(
            Method::HEAD,
            &format!("/subscriptions/{SUB}/resourceGroups/none?{R}"),
            None,
        )
        .await;
    assert_eq!(missing.status, 404);
    env.call(
        Method::GET,
        &format!("/subscriptions/{SUB}/resourceGroups/none?{R}"),
        None,
    )
    .await
    .expect(404, "ResourceGroupNotFound");
    let list = env
        .call(
            Method::GET,
            &format!("/subscriptions/{SUB}/resourcegroups?{R}"),
            None,
        )
        .await;
    let names: Vec<&str> = list.body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"Rg-Two") && names.contains(&"rg"),
        "{names:?}"
    );
    // The admin state shows the groups too.
    let state = env.admin(Method::GET, "state", None).await;
    assert!(
        state.body["resourceGroups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "Rg-Two"),
        "{}",
        state.body
    );
    // Bad requests.
    env.call(
        Method::PUT,
        &format!("/subscriptions/{SUB}/resourceGroups/x?api-version=2099-01-01"),
        Some(json!({"location": "westeurope"})),
    )
    .await
    .expect(400, "InvalidApiVersionParameter");
    env.call(
        Method::PUT,
        &format!("/subscriptions/{SUB}/resourceGroups/x?{R}"),
        Some(json!({})),
    )
    .await
    .expect(400, "LocationRequired");
    env.call(
        Method::PUT,
        &format!("/subscriptions/{SUB}/resourceGroups/bad%20name?{R}"),
        Some(json!({"location": "westeurope"})),
    )
    .await
    .expect(400, "InvalidResourceGroup");
}

#[tokio::test]
async fn deleting_a_group_deletes_its_resources_through_a_location_operation() {
    let mut c = ArmConfig::fast();
    c.time_factor = 1.0;
    for w in [Work::GalleryCreate, Work::DefinitionCreate] {
        c.latency.base_secs.insert(w, 0.01);
    }
    c.latency.base_secs.insert(Work::ResourceGroupDelete, 0.6);
    let env = Env::start(false, c).await;
    env.create_group("doomed").await;
    let g = format!(
        "{}/providers/Microsoft.Compute/galleries/gal",
        env.rg_path("doomed")
    );
    env.ok(
        Method::PUT,
        &format!("{g}?{G}"),
        Some(json!({"location": "westeurope"})),
    )
    .await;
    env.ok(
        Method::PUT,
        &format!("{g}/images/def?{G}"),
        Some(
            json!({"location": "westeurope", "properties": {"osType": "Linux",
            "osState": "Generalized", "identifier": {"publisher": "p", "offer": "o", "sku": "s"}}}),
        ),
    )
    .await;
    let r = env
        .call(
            Method::DELETE,
            &format!("{}?{R}", env.rg_path("doomed")),
            None,
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert!(r.header("azure-asyncoperation").is_none());
    let location = r.header("location").expect("Location header");
    assert!(
        location.contains(&format!("/subscriptions/{SUB}/operationresults/")),
        "{location}"
    );
    assert!(r.header("retry-after").is_some());
    // While it is being deleted: reads work, writes are refused.
    let during = env
        .call(Method::GET, &format!("{}?{R}", env.rg_path("doomed")), None)
        .await;
    assert_eq!(during.body["properties"]["provisioningState"], "Deleting");
    env.call(
        Method::PUT,
        &format!("{g}/images/other?{G}"),
        Some(json!({"location": "westeurope"})),
    )
    .await
    .expect(409, "ResourceGroupBeingDeleted");
    let first = env.call(Method::GET, &location, None).await;
    assert_eq!(first.status, 202);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let p = env.call(Method::GET, &location, None).await;
        if p.status != 202 {
            assert_eq!(p.status, 200, "{}", p.body);
            break;
        }
        assert!(Instant::now() < deadline, "the group delete did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    env.call(Method::GET, &format!("{}?{R}", env.rg_path("doomed")), None)
        .await
        .expect(404, "ResourceGroupNotFound");
    // Its resources are gone with it: re-creating the group finds it empty.
    env.create_group("doomed").await;
    env.call(Method::GET, &format!("{g}?{G}"), None)
        .await
        .expect(404, "ResourceNotFound");
}
