//! Conformance with a second independent client: the official Azure SDK for JavaScript (npm packages
//! installed by scripts/setup.sh into tests/js/node_modules) runs `tests/js/conformance.test.mjs`
//! against Azurite, the ARM simulator and the managed-identity endpoint, trusting the local CA through
//! NODE_EXTRA_CA_CERTS and reaching blob storage with the connection string `devcloud up` writes.

use std::{path::PathBuf, process::Stdio, time::Duration};

use devcloud::connection::azurite_connection_string;
use devcloud_core::{Identity, Tls};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_sdks_drive_a_full_scenario() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let js = root.join("tests/js");
    assert!(
        js.join("node_modules/@azure/arm-compute").is_dir(),
        "{} has no node_modules: run scripts/setup.sh",
        js.display()
    );
    devcloud_core::install_crypto_provider();
    let dir = tempfile::tempdir().expect("dir");
    let tls = Tls::load_or_create(dir.path()).expect("CA");
    let identity = Identity::load_or_create(dir.path()).expect("identity");
    let azurite = devcloud_core::azurite::start(&tls, 0, &dir.path().join("azurite"))
        .await
        .expect("Azurite starts");
    let mut config = devcloud_arm::ArmConfig::fast();
    config.time_factor = 0.002;
    // Lists come in pages of two, so the SDKs' pagers follow nextLink.
    config.page_size = 2;
    config.blob_endpoint = Some(azurite.blob_endpoint());
    let arm = devcloud_arm::serve(
        config,
        identity.clone(),
        Some(&tls),
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("ARM starts");
    let secret = uuid::Uuid::new_v4().simple().to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let msi = devcloud_core::serve_http(identity.msi_filter(secret.clone()), listener)
        .expect("identity endpoint");

    let vhd = dir.path().join("base.vhd");
    devcloud::upload::make_fixed_vhd(&vhd, "8M")
        .await
        .expect("qemu-img makes a fixed VHD (apt-get install qemu-utils)");

    let sub = devcloud_arm::DEFAULT_SUBSCRIPTION_ID;
    let run = tokio::process::Command::new("node")
        .args(["--test", "--test-reporter=spec", "conformance.test.mjs"])
        .current_dir(&js)
        .env("DEVCLOUD_ARM_ENDPOINT", &arm.base_url)
        .env("AZURE_SUBSCRIPTION_ID", sub)
        .env("IDENTITY_ENDPOINT", format!("http://{}/msi/token", msi.addr()))
        .env("IDENTITY_HEADER", &secret)
        .env("NODE_EXTRA_CA_CERTS", &tls.ca_pem)
        .env(
            "AZURE_STORAGE_CONNECTION_STRING",
            azurite_connection_string(&azurite.blob_endpoint()),
        )
        .env(
            "DEVCLOUD_STORAGE_ACCOUNT_ID",
            format!("/subscriptions/{sub}/resourceGroups/rg-storage/providers/Microsoft.Storage/storageAccounts/devstoreaccount1"),
        )
        .env("DEVCLOUD_VHD_FILE", &vhd)
        .env("AZURE_LOG_LEVEL", "warning")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the JavaScript scenario did not finish within 120 s")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "node --test failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("pass 1") && stdout.contains("fail 0"),
        "{stdout}"
    );
    println!("{stdout}");
    msi.shutdown().await;
    arm.shutdown().await;
    drop(azurite);
}
