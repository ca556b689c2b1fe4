//! Conformance with an independent client: Python's official `azure-mgmt-compute`,
//! `azure-mgmt-imagebuilder` and `azure-mgmt-resource` (venv made by scripts/setup.sh) drive a full scenario against the
//! simulator, authenticating through the managed-identity endpoint and trusting the devcloud CA; `azure-identity`'s
//! ClientSecretCredential gets a partner tenant's token from the Entra token endpoint stand-in.

mod common;

use std::time::Duration;

use common::{Env, SUB};
use devcloud_arm::{ArmConfig, SubscriptionSeed};
use devcloud_core::{EntraApp, EntraConfig};

const OTHER_TENANT: &str = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
const OTHER_SUB: &str = "33333333-2222-4333-8444-555555555555";
const APP: &str = "3c9a7e21-5b4d-4f6a-9e08-1d2c3b4a5f60";
const APP_SECRET: &str = "conformance-app-secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdks_drive_a_full_scenario() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run scripts/setup.sh to create the venv with the Azure Python SDKs",
        python.display()
    );
    let mut config = ArmConfig::fast();
    config.time_factor = 0.002;
    // A partner tenant with its own subscription, and an app registered in both tenants
    // (tests/python/arm/test_sharing_and_tenants.py, which runs after
    // test_scenario.py: that one counts the requests of the whole run).
    config.subscriptions = vec![SubscriptionSeed {
        id: OTHER_SUB.into(),
        tenant_id: Some(OTHER_TENANT.into()),
        display_name: Some("partner".into()),
    }];
    let env = Env::start(true, config).await;
    let secret = "conformance-secret".to_string();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let msi = devcloud_core::serve_http(env.identity.msi_filter(secret.clone()), l).unwrap();
    let entra = devcloud_core::Entra::new(
        env.identity.clone(),
        EntraConfig {
            apps: vec![EntraApp {
                client_id: APP.into(),
                tenants: vec![env.identity.tenant_id.clone(), OTHER_TENANT.into()],
                secret: Some(APP_SECRET.into()),
                // It trusts the managed identity: its token for the token exchange is the app's
                // client assertion (test_app_token_from_a_managed_identitys_federated_assertion).
                federated: vec![devcloud_core::FederatedCredential {
                    issuer: format!("https://sts.windows.net/{}/", env.identity.tenant_id),
                    subject: env.identity.object_id.clone(),
                }],
            }],
            tenants: Vec::new(),
        },
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let entra =
        devcloud_core::serve_https(entra.filter(), l, env.tls.server_config.clone()).unwrap();
    let vhd = env.upload_vhd("vhds", "base.vhd", "fixed", "8M").await;
    let dynamic = env.upload_vhd("vhds", "dynamic.vhd", "dynamic", "8M").await;
    let ca = env.tls.ca_pem.display().to_string();
    let run = tokio::process::Command::new(&python)
        .args(["-m", "pytest", "tests/python/arm", "-q", "-p", "no:cacheprovider"])
        .current_dir(&root)
        .env("DEVCLOUD_ARM_ENDPOINT", &env.arm.base_url)
        .env("DEVCLOUD_SUBSCRIPTION_ID", SUB)
        .env("DEVCLOUD_VHD_URI", &vhd)
        .env("DEVCLOUD_DYNAMIC_VHD_URI", &dynamic)
        .env(
            "DEVCLOUD_STORAGE_ACCOUNT_ID",
            format!("/subscriptions/{SUB}/resourceGroups/rg-ingest/providers/Microsoft.Storage/storageAccounts/devstoreaccount1"),
        )
        .env("IDENTITY_ENDPOINT", format!("http://{}/msi/token", msi.addr()))
        .env("IDENTITY_HEADER", &secret)
        .env("DEVCLOUD_ENTRA_AUTHORITY", format!("https://{}", entra.addr()))
        .env("DEVCLOUD_HOME_TENANT", &env.identity.tenant_id)
        .env("DEVCLOUD_OTHER_TENANT", OTHER_TENANT)
        .env("DEVCLOUD_OTHER_SUBSCRIPTION_ID", OTHER_SUB)
        .env("DEVCLOUD_APP_ID", APP)
        .env("DEVCLOUD_APP_SECRET", APP_SECRET)
        .env("REQUESTS_CA_BUNDLE", &ca)
        .env("SSL_CERT_FILE", &ca)
        .env("AZURE_CORE_COLLECT_TELEMETRY", "no")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("pytest did not finish within 180 s")
        .expect("cannot run pytest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "pytest failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("13 passed"),
        "unexpected pytest summary:\n{stdout}"
    );
}
