//! A chain step runs on behalf of its run: inside `step::run`, `azure::current_run()` is the fact's
//! correlation id, which the ARM client sends as `x-ms-client-request-id`.

use std::sync::{Arc, Mutex};

use galleon::{
    azure,
    config::Config,
    events::Fact,
    functions::{self, step},
};

static SEEN: Mutex<Option<Option<String>>> = Mutex::new(None);

fn record(_: Fact, _: Arc<step::Ctx>, _: u32) -> step::StepFuture {
    Box::pin(async {
        if let Ok(mut seen) = SEEN.lock() {
            *seen = Some(azure::current_run());
        }
        Ok(Vec::new())
    })
}

#[tokio::test]
async fn a_step_runs_in_its_run() {
    let settings = [
        ("FUNCTIONS_CUSTOMHANDLER_PORT", "7072"),
        (
            "GALLEON_SUBSCRIPTION_ID",
            "8c3e1f7a-2b4d-4e5f-9a6b-7c8d9e0f1a2b",
        ),
        ("GALLEON_RESOURCE_GROUP", "rg-images"),
        ("GALLEON_GALLERY", "golden"),
        ("GALLEON_LOCATION", "westeurope"),
        (
            "ServiceBusConnection__fullyQualifiedNamespace",
            "contoso.servicebus.windows.net",
        ),
        ("GALLEON_STORAGE_ACCOUNTS", "ingest.blob.core.windows.net"),
        (
            "GALLEON_STATE_CONTAINER_URL",
            "https://ingest.blob.core.windows.net/galleon-state",
        ),
    ];
    let config = Config::from_lookup(|k| {
        settings
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| (*v).to_owned())
    })
    .expect("config");
    galleon::telemetry::install_crypto_provider();
    let tokens = azure::Tokens::managed_identity().expect("credential");
    let ctx = functions::context(config, tokens).expect("context");
    let text = std::fs::read_to_string(
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../events/vhd.accepted.v1.example.json"),
    )
    .expect("example");
    let fact = Fact::from_json(&text).expect("a fact");
    let run = fact.correlation_id().expect("the example has a run");
    assert_eq!(azure::current_run(), None, "no run outside a step");
    step::run("Record", record, fact, ctx, 1, step::Tries::default(), None).await;
    let seen = SEEN.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(seen, Some(Some(run)));
}
