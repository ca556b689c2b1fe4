//! An independent client against the local Event Grid: runs the pytest suite in
//! `tests/python/eventgrid/` (Microsoft's `azure-eventgrid` publisher client with a key and with a
//! token credential) against the server over HTTPS with the devcloud CA and identity.

use std::time::Duration;

use devcloud_messaging::auth::identity_verifier;
use devcloud_messaging::eventgrid::{self, DeliverySettings, EventGridConfig, Schema, TopicConfig};
use devcloud_messaging::rbac::{Access, BuiltInRole, RoleAssignment};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_eventgrid_python_client_publishes_to_the_local_topic() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let python = format!("{root}/.venv/bin/python");
    assert!(
        std::path::Path::new(&python).exists(),
        "{python} is missing: run scripts/setup.sh"
    );
    let state = tempfile::tempdir().expect("tempdir");
    let tls = devcloud_core::Tls::load_or_create(state.path()).expect("tls");
    let identity = devcloud_core::Identity::from_key([42u8; 32]);
    let config = EventGridConfig {
        topics: vec![TopicConfig {
            name: "galleon-events".into(),
            input_schema: Schema::CloudEvents,
            key: "c2VjcmV0LWtleS1mb3ItdGVzdHMtMDEyMzQ1Njc4OQ==".into(),
            disable_local_auth: false,
            // The identity's principal has EventGrid Data Sender on the topic; another has no role.
            access: Some(Access {
                assignments: vec![RoleAssignment {
                    principal_id: identity.object_id.clone(),
                    role: BuiltInRole::EventGridDataSender,
                    scope: String::new(),
                }],
            }),
        }],
        delivery: DeliverySettings {
            time_factor: 0.001,
            timeout: Duration::from_secs(5),
            ..Default::default()
        },
        subscription_id: "sub".into(),
        resource_group: "rg".into(),
        ..Default::default()
    };
    let eg = eventgrid::serve(
        config,
        identity_verifier(identity.clone()),
        Some(tls.server_config.clone()),
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("event grid");
    let token = identity.issue("https://eventgrid.azure.net");
    let without_role = identity.issue_for(
        &devcloud_core::Principal {
            tenant_id: &identity.tenant_id,
            object_id: "7c1d0e52-2f3a-4b6c-9d8e-1a2b3c4d5e6f",
            client_id: "7c1d0e52-2f3a-4b6c-9d8e-1a2b3c4d5e6f",
        },
        "https://eventgrid.azure.net",
        3600,
    );
    let out = tokio::process::Command::new(&python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"])
        .arg(format!("{root}/tests/python/eventgrid"))
        .env(
            "DEVCLOUD_EVENTGRID_ENDPOINT",
            eg.topic_endpoint("galleon-events"),
        )
        .env(
            "DEVCLOUD_EVENTGRID_KEY",
            "c2VjcmV0LWtleS1mb3ItdGVzdHMtMDEyMzQ1Njc4OQ==",
        )
        .env("DEVCLOUD_EVENTGRID_TOKEN", token)
        .env("DEVCLOUD_EVENTGRID_TOKEN_WITHOUT_ROLE", without_role)
        .env("DEVCLOUD_EVENTGRID_ADMIN", eg.url())
        .env("REQUESTS_CA_BUNDLE", &tls.ca_pem)
        .env("SSL_CERT_FILE", &tls.ca_pem)
        .kill_on_drop(true)
        .output()
        .await
        .expect("pytest runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "pytest failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("6 passed"), "expected 6 passed:\n{stdout}");
    assert!(
        !stdout.contains("skipped"),
        "nothing may be skipped:\n{stdout}"
    );
}
