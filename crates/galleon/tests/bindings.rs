//! functions/<Name>/function.json and the handler's registrations must agree: same functions, same trigger
//! type and binding name, same output binding names. A mismatch would fail only in Azure otherwise.

use std::{collections::BTreeSet, path::PathBuf};

use galleon::{config::Config, functions};
use serde_json::Value;

fn functions_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../functions")
}

#[test]
fn function_json_matches_the_registered_handlers() {
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
        (
            "GALLEON_STATE_CONTAINER_URL",
            "https://contoso.blob.core.windows.net/galleon-state",
        ),
        ("GALLEON_STORAGE_ACCOUNTS", "ingest.blob.core.windows.net"),
    ];
    let config = Config::from_lookup(|k| {
        settings
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| (*v).to_owned())
    })
    .expect("config");
    galleon::telemetry::install_crypto_provider();
    let tokens = galleon::azure::Tokens::managed_identity().expect("credential");
    let app = functions::app(functions::context(config, tokens).expect("context"));
    let registered: BTreeSet<String> = app.functions().map(|f| f.name.clone()).collect();
    let mut on_disk = BTreeSet::new();
    for entry in std::fs::read_dir(functions_dir())
        .expect("functions/ exists")
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path().join("function.json");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let json: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let spec = app
            .get(&name)
            .unwrap_or_else(|| panic!("functions/{name} has no handler registered"));
        let bindings = json["bindings"].as_array().expect("bindings array");
        let triggers: Vec<&Value> = bindings
            .iter()
            .filter(|b| b["type"].as_str().is_some_and(|t| t.ends_with("Trigger")))
            .collect();
        assert_eq!(triggers.len(), 1, "{name}: exactly one trigger");
        assert_eq!(
            triggers[0]["type"],
            spec.trigger.binding_type(),
            "{name}: trigger type"
        );
        assert_eq!(
            triggers[0]["name"],
            spec.trigger_binding.as_str(),
            "{name}: trigger binding name"
        );
        let outputs: BTreeSet<String> = bindings
            .iter()
            .filter(|b| b["direction"] == "out")
            .filter_map(|b| b["name"].as_str().map(str::to_owned))
            .collect();
        let declared: BTreeSet<String> = spec.outputs.iter().cloned().collect();
        assert_eq!(outputs, declared, "{name}: output binding names");
        on_disk.insert(name);
    }
    assert_eq!(
        on_disk, registered,
        "every registered function has a folder and vice versa"
    );
}

#[test]
fn routing_names_only_subscriptions_of_known_fact_types() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../events/subscriptions.json");
    let routing: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("routing file")).expect("JSON");
    let subs = routing["serviceBus"]["subscriptions"]
        .as_array()
        .expect("subscriptions");
    assert!(!subs.is_empty());
    for sub in subs {
        for ty in sub["types"].as_array().expect("types") {
            let ty = ty.as_str().expect("type string");
            assert!(
                galleon::events::FactType::from_cloud_event_type(ty).is_some(),
                "unknown type {ty} in routing"
            );
        }
    }
    // Service Bus triggers in function.json point at subscriptions (or queues) that the routing declares.
    let names: BTreeSet<&str> = subs.iter().filter_map(|s| s["name"].as_str()).collect();
    let queues: BTreeSet<&str> = routing["serviceBus"]["queues"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|q| q["name"].as_str())
        .collect();
    // Nothing ends silently: every subscription forwards its dead letters to a declared queue.
    for sub in subs {
        let to = sub["forwardDeadLetteredMessagesTo"].as_str();
        assert!(
            to.is_some_and(|q| queues.contains(q)),
            "subscription {} must forward its dead letters to a declared queue, not {to:?}",
            sub["name"]
        );
    }
    for entry in std::fs::read_dir(functions_dir())
        .expect("functions/")
        .flatten()
    {
        let json: Value = serde_json::from_str(
            &std::fs::read_to_string(entry.path().join("function.json")).expect("read"),
        )
        .expect("JSON");
        for b in json["bindings"].as_array().into_iter().flatten() {
            if b["type"] == "serviceBusTrigger" && b["queueName"].is_string() {
                let queue = b["queueName"].as_str().unwrap_or_default();
                assert!(
                    queues.contains(queue),
                    "queue {queue} is not in events/subscriptions.json"
                );
            } else if b["type"] == "serviceBusTrigger" {
                assert_eq!(b["topicName"], routing["serviceBus"]["topic"]);
                let sub = b["subscriptionName"].as_str().expect("subscriptionName");
                assert!(
                    names.contains(sub),
                    "{sub} is not in events/subscriptions.json"
                );
            }
        }
    }
}

#[test]
fn every_setting_galleon_reads_is_documented() {
    let example_path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../local.settings.example.json");
    let example: Value =
        serde_json::from_str(&std::fs::read_to_string(&example_path).expect("example"))
            .expect("JSON");
    let documented: BTreeSet<String> = example["Values"]
        .as_object()
        .into_iter()
        .flatten()
        .chain(example["Comments"].as_object().into_iter().flatten())
        .map(|(k, _)| k.clone())
        .collect();
    let source =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/config.rs"))
            .expect("config.rs");
    let read: BTreeSet<String> = source
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            s.starts_with("GALLEON_")
                || s.starts_with("FUNCTIONS_CUSTOMHANDLER")
                || s.contains("__fullyQualifiedNamespace")
                || s.ends_with("__clientId")
        })
        .map(str::to_owned)
        .collect();
    assert!(read.len() > 10, "found the settings in config.rs: {read:?}");
    let missing: Vec<&String> = read.iter().filter(|s| !documented.contains(*s)).collect();
    assert!(
        missing.is_empty(),
        "settings read but not in local.settings.example.json: {missing:?}"
    );
    // And the example itself is a valid configuration.
    let values = example["Values"].as_object().cloned().unwrap_or_default();
    let config = Config::from_lookup(|k| {
        if k == "FUNCTIONS_CUSTOMHANDLER_PORT" {
            return Some("7072".into());
        }
        values.get(k).and_then(Value::as_str).map(str::to_owned)
    });
    assert!(
        config.is_ok(),
        "the example settings must be valid: {config:?}"
    );
}
