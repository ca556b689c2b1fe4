//! Conformance with an independent client: Python's official `azure-mgmt-compute`,
//! `azure-mgmt-imagebuilder` and `azure-mgmt-resource` (venv made by scripts/setup.sh) drive a full scenario against the
//! simulator, authenticating through the managed-identity endpoint and trusting the devcloud CA.

mod common;

use std::time::Duration;

use common::{Env, SUB};
use devcloud_arm::ArmConfig;

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
    let env = Env::start(true, config).await;
    let secret = "conformance-secret".to_string();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let msi = devcloud_core::serve_http(env.identity.msi_filter(secret.clone()), l).unwrap();
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
        stdout.contains("10 passed"),
        "unexpected pytest summary:\n{stdout}"
    );
}
