//! The one-call stack (what the binary runs): a token from the managed-identity endpoint is accepted by
//! the ARM simulator over HTTPS, and the environment it reports is complete.

use devcloud_arm::{ArmConfig, Stack, StackOptions};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_serves_identity_arm_and_azurite() {
    let dir = tempfile::tempdir().unwrap();
    let stack = Stack::start(StackOptions::ephemeral(dir.path(), ArmConfig::fast()))
        .await
        .unwrap();
    let env: std::collections::HashMap<_, _> = stack.env().into_iter().collect();
    for k in [
        "AZURE_RESOURCE_MANAGER_ENDPOINT",
        "AZURE_SUBSCRIPTION_ID",
        "IDENTITY_ENDPOINT",
        "IDENTITY_HEADER",
        "SSL_CERT_FILE",
        "AZURE_STORAGE_BLOB_ENDPOINT",
    ] {
        assert!(env.contains_key(k), "{k} missing");
    }
    let ca =
        reqwest::Certificate::from_pem(&std::fs::read(&env["SSL_CERT_FILE"]).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let tok: Value = client
        .get(format!(
            "{}?api-version=2019-08-01&resource=https://management.azure.com",
            env["IDENTITY_ENDPOINT"]
        ))
        .header("X-IDENTITY-HEADER", &env["IDENTITY_HEADER"])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = tok["access_token"].as_str().unwrap();
    let r = client
        .get(format!(
            "{}/subscriptions/{}/providers/Microsoft.Compute/galleries?api-version=2025-03-03",
            env["AZURE_RESOURCE_MANAGER_ENDPOINT"], env["AZURE_SUBSCRIPTION_ID"]
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The resource group galleon's local settings name exists from the start, as infra would make it.
    let r = client
        .get(format!(
            "{}/subscriptions/{}/resourceGroups/{}?api-version=2025-04-01",
            env["AZURE_RESOURCE_MANAGER_ENDPOINT"],
            env["AZURE_SUBSCRIPTION_ID"],
            devcloud_arm::stack::DEFAULT_RESOURCE_GROUP
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Azurite answers over HTTPS with the same CA.
    let storage: Value = client
        .get(format!(
            "{}?api-version=2019-08-01&resource=https://storage.azure.com",
            env["IDENTITY_ENDPOINT"]
        ))
        .header("X-IDENTITY-HEADER", &env["IDENTITY_HEADER"])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = client
        .get(format!("{}?comp=list", env["AZURE_STORAGE_BLOB_ENDPOINT"]))
        .bearer_auth(storage["access_token"].as_str().unwrap())
        .header("x-ms-version", "2025-01-05")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    stack.shutdown().await;
}
