//! Fuzzing galleon's decoders of outside input: the host protocol (what the Functions host posts), the
//! manifest parser, and the CloudEvents facts read off Service Bus. Seeds are the recorded fixtures and the
//! catalog's examples; each target must never panic and must keep its promises on whatever it accepts.
//!
//! `GALLEON_FUZZ_SECONDS` per target (3 s by default; `scripts/fuzz.sh` runs each for 60 s).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use fuzzing::{fuzz, json_from};
use galleon::domain::manifest::Manifest;
use galleon::events::Fact;
use galleon::host::{self, App, Limits, Output, TriggerKind};
use proptest::sample::select;
use serde_json::Value;

fn json_files(dir: PathBuf, keep: impl Fn(&str) -> bool) -> Vec<Value> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !keep(&name) {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).expect("a fixture");
        out.push(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}")));
    }
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out
}

/// A target that never accepts (or never refuses) what it is given is fuzzing only its first check.
fn reached(name: &str, cases: u64, accepted: &AtomicU64, refused: &AtomicU64) {
    let (a, r) = (accepted.load(Relaxed), refused.load(Relaxed));
    println!("fuzz target {name}: {a} accepted, {r} refused");
    assert!(
        cases > 0 && a > 0 && r > 0,
        "{name}: {a} accepted and {r} refused of {cases}"
    );
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
}

/// Every invocation the host can post (the recorded requests), changed, to a function of every trigger
/// kind under every binding name the recordings use: the answer is always the host's JSON, 200 or a 400
/// that names its reason; never a panic, never a 5xx for a handler that did not fail.
#[test]
fn fuzz_host_protocol_decoder() {
    let seeds = json_files(repo().join("../shared/fixtures/functions"), |n| {
        n.starts_with("request.") && n.ends_with(".json")
    });
    let mut bindings: Vec<String> = seeds
        .iter()
        .filter_map(|s| s["Data"].as_object())
        .flat_map(|d| d.keys().cloned())
        .collect();
    bindings.sort();
    bindings.dedup();
    let kinds = [
        ("Grid", TriggerKind::EventGrid),
        ("Bus", TriggerKind::ServiceBus),
        ("Timer", TriggerKind::Timer),
        ("Http", TriggerKind::Http),
    ];
    let mut app = App::new();
    let mut names = Vec::new();
    for (prefix, kind) in kinds {
        for binding in &bindings {
            let name = format!("{prefix}_{binding}");
            app = app.function(&name, kind, binding, &["out"], |inv| async move {
                // Touch what was decoded, as a function would.
                let seen = format!("{:?}", inv.trigger);
                Ok(Output::default().binding("out", Value::from(seen.len())))
            });
            names.push(name);
        }
    }
    let routes = host::router(
        Arc::new(app),
        Limits {
            max_body_bytes: 256 * 1024,
        },
    );
    let rt = runtime();
    let (ok, refused) = (AtomicU64::new(0), AtomicU64::new(0));
    let ran = fuzz(
        "host protocol decoder",
        (json_from(seeds), select(names)),
        |(body, function)| {
            let response = rt.block_on(
                warp::test::request()
                    .method("POST")
                    .path(&format!("/{function}"))
                    .header("content-type", "application/json")
                    .body(body)
                    .reply(&routes),
            );
            let status = response.status().as_u16();
            let answer: Value = serde_json::from_slice(response.body())
                .map_err(|e| format!("{status} answer is not JSON ({e}): {:?}", response.body()))?;
            match status {
                200 if answer.get("Outputs").is_some() => {
                    ok.fetch_add(1, Relaxed);
                    Ok(())
                }
                400 if answer["error"]["code"]
                    .as_str()
                    .is_some_and(|c| !c.is_empty())
                    && answer["error"]["message"]
                        .as_str()
                        .is_some_and(|m| !m.is_empty()) =>
                {
                    refused.fetch_add(1, Relaxed);
                    Ok(())
                }
                _ => Err(format!("unexpected answer {status}: {answer}")),
            }
        },
    );
    reached("host protocol decoder", ran.cases, &ok, &refused);
}

/// Manifests (the schema's examples and the shapes users write), changed: the parser never panics, and a
/// manifest it accepts never points galleon outside the manifest's own folder.
#[test]
fn fuzz_manifest_parser() {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("events/manifest.schema.json")).expect("the schema"),
    )
    .expect("the schema is JSON");
    let mut seeds: Vec<Value> = schema["examples"].as_array().cloned().unwrap_or_default();
    seeds.push(serde_json::json!({"vhd": "a.vhd", "imageDefinition": "x", "osType": "Linux", "hyperVGeneration": "V1"}));
    seeds.push(serde_json::json!({
        "managedImage": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/images/i",
        "imageDefinition": "x", "osType": "Windows", "hyperVGeneration": "V2"}));
    seeds.push(serde_json::json!({"vhd": "disks/os.vhd", "imageDefinition": "x", "osType": "Linux",
        "hyperVGeneration": "V2", "dataDisks": [{"vhd": "disks/data0.vhd", "lun": 0}, {"vhd": "d1.vhd", "lun": 1}]}));
    let folder = "https://ingest.blob.core.windows.net/images/team/ubuntu/";
    let manifest_url = format!("{folder}m.manifest.json");
    let (ok, refused) = (AtomicU64::new(0), AtomicU64::new(0));
    let ran = fuzz("manifest parser", json_from(seeds), |bytes| {
        let Ok(manifest) = Manifest::parse(&bytes, "m.manifest.json") else {
            refused.fetch_add(1, Relaxed);
            return Ok(());
        };
        ok.fetch_add(1, Relaxed);
        let mut urls: Vec<String> = manifest.vhd_url(&manifest_url).into_iter().collect();
        if let Ok(disks) = manifest.data_disk_urls(&manifest_url) {
            urls.extend(disks.into_iter().map(|(_, u)| u));
        }
        for url in urls {
            let rest = url.strip_prefix(folder).unwrap_or("..");
            if rest
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == "..")
                || rest.contains(['?', '#', '\\'])
            {
                return Err(format!(
                    "an accepted manifest points outside its folder: {url}"
                ));
            }
        }
        Ok(())
    });
    reached("manifest parser", ran.cases, &ok, &refused);
}

/// Facts as Service Bus delivers them (the catalog's examples), changed: decoding never panics; a fact
/// that decodes reads its typed payload or says why not, and written back it decodes the same.
#[test]
fn fuzz_cloudevents_decoder() {
    let seeds = json_files(repo().join("events"), |n| n.ends_with(".example.json"));
    let (ok, refused) = (AtomicU64::new(0), AtomicU64::new(0));
    let ran = fuzz("CloudEvents decoder", json_from(seeds), |bytes| {
        let text = String::from_utf8_lossy(&bytes);
        let Ok(fact) = Fact::from_json(&text) else {
            refused.fetch_add(1, Relaxed);
            return Ok(());
        };
        ok.fetch_add(1, Relaxed);
        let json = fact.to_json();
        if let Some(kind) = fact.fact_type() {
            let _ = kind.normalize_payload(&json["data"]);
        }
        let _ = (
            fact.correlation_id(),
            fact.traceparent(),
            fact.subject(),
            fact.time_text(),
        );
        let again = Fact::from_json(&json.to_string())
            .map_err(|e| format!("a decoded fact written back does not decode: {e:?}: {json}"))?;
        if again.id() != fact.id() || again.cloud_event_type() != fact.cloud_event_type() {
            return Err(format!("the fact changed when written back: {json}"));
        }
        Ok(())
    });
    reached("CloudEvents decoder", ran.cases, &ok, &refused);
}

/// The fixtures the targets start from are there: an empty seed list would fuzz nothing.
#[test]
fn the_seeds_are_the_recorded_requests_and_the_catalog() {
    let requests = json_files(repo().join("../shared/fixtures/functions"), |n| {
        n.starts_with("request.")
    });
    let facts = json_files(repo().join("events"), |n| n.ends_with(".example.json"));
    assert!(requests.len() >= 10, "{} recorded requests", requests.len());
    assert!(facts.len() >= 20, "{} catalog examples", facts.len());
    let decoded = facts
        .iter()
        .filter(|f| Fact::from_json(&f.to_string()).is_ok())
        .count();
    assert_eq!(
        decoded,
        facts.len(),
        "every catalog example decodes as a fact"
    );
}
