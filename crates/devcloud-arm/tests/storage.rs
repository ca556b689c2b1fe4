//! Microsoft.Storage/storageAccounts GET for the Azurite account: where a VHD's account is (location)
//! and its blob endpoint, as ARM reports a storage account. Other accounts are not found.

mod common;

use common::{Env, SUB};
use devcloud_arm::{ArmConfig, StorageAccount};
use reqwest::Method;

const S: &str = "api-version=2025-06-01";

fn account_path(env: &Env, rg: &str, name: &str) -> String {
    format!(
        "{}/providers/Microsoft.Storage/storageAccounts/{name}?{S}",
        env.rg_path(rg)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_azurite_account_is_served_with_its_blob_endpoint() {
    let env = Env::start(true, ArmConfig::fast()).await;
    env.create_group("rg-ingest").await;
    let r = env
        .call(
            Method::GET,
            &account_path(&env, "rg-ingest", "devstoreaccount1"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let blob = env.azurite.as_ref().unwrap().blob_endpoint();
    assert_eq!(
        r.body["properties"]["primaryEndpoints"]["blob"],
        format!("{blob}/")
    );
    assert_eq!(r.body["location"], "westeurope");
    assert_eq!(r.body["type"], "Microsoft.Storage/storageAccounts");
    assert_eq!(r.body["kind"], "StorageV2");
    assert_eq!(r.body["sku"]["name"], "Standard_LRS");
    assert_eq!(
        r.body["id"],
        format!(
            "/subscriptions/{SUB}/resourceGroups/rg-ingest/providers/Microsoft.Storage/storageAccounts/devstoreaccount1"
        )
    );
    // Another account, or the same name in another group, does not exist.
    env.call(Method::GET, &account_path(&env, "rg-ingest", "other"), None)
        .await
        .expect(404, "ResourceNotFound");
    env.call(
        Method::GET,
        &account_path(&env, "rg", "devstoreaccount1"),
        None,
    )
    .await
    .expect(404, "ResourceNotFound");
    env.call(
        Method::GET,
        &format!(
            "{}/providers/Microsoft.Storage/storageAccounts/devstoreaccount1?api-version=2099-01-01",
            env.rg_path("rg-ingest")
        ),
        None,
    )
    .await
    .expect(400, "NoRegisteredProviderFound");
}

#[tokio::test]
async fn a_configured_account_reports_its_location() {
    let mut c = ArmConfig::fast();
    c.blob_endpoint = Some("https://127.0.0.1:1/ingest".into());
    c.storage_accounts = vec![StorageAccount {
        subscription: Some(SUB.into()),
        resource_group: "rg-far".into(),
        name: "ingest".into(),
        location: Some("northeurope".into()),
        kind: "BlockBlobStorage".into(),
        sku: "Premium_ZRS".into(),
    }];
    let env = Env::start(false, c).await;
    // The account's group exists from the start.
    let r = env
        .call(Method::GET, &account_path(&env, "rg-far", "ingest"), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["location"], "northeurope");
    assert_eq!(r.body["kind"], "BlockBlobStorage");
    assert_eq!(r.body["sku"]["tier"], "Premium");
    assert_eq!(
        r.body["properties"]["primaryEndpoints"]["blob"],
        "https://127.0.0.1:1/ingest/"
    );
    let list = env
        .call(
            Method::GET,
            &format!("/subscriptions/{SUB}/providers/Microsoft.Storage/storageAccounts?{S}"),
            None,
        )
        .await;
    assert_eq!(list.body["value"].as_array().unwrap().len(), 1);
}
