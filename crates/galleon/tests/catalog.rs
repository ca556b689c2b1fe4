//! The event catalog in `events/` and the Rust fact types must not drift: every example validates against
//! its schemas, decodes into the Rust payload, and what the code emits for it validates too.

use std::{collections::BTreeSet, path::PathBuf};

use chrono::Utc;
use galleon::events::{Cause, Fact, FactType};
use serde_json::Value;

fn events_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../events")
}

fn load(name: &str) -> Value {
    let path = events_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::options()
        .should_validate_formats(true)
        .build(schema)
        .unwrap_or_else(|e| panic!("schema does not compile: {e}"))
}

fn assert_valid(validator: &jsonschema::Validator, instance: &Value, what: &str) {
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} is invalid:\n{}",
        errors.join("\n")
    );
}

#[test]
fn every_fact_type_has_a_schema_and_an_example_and_nothing_else_is_there() {
    let mut expected: BTreeSet<String> = BTreeSet::new();
    for ty in FactType::ALL {
        expected.insert(format!("{}.schema.json", ty.name()));
        expected.insert(format!("{}.example.json", ty.name()));
    }
    let found: BTreeSet<String> = std::fs::read_dir(events_dir())
        .expect("events/ exists")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".schema.json") || n.ends_with(".example.json"))
        .filter(|n| {
            !matches!(
                n.as_str(),
                "envelope.schema.json"
                    | "subscriptions.schema.json"
                    | "manifest.schema.json"
                    | "builds.schema.json"
                    | "build-request.schema.json"
                    | "request.schema.json"
            )
        })
        .collect();
    assert_eq!(
        found, expected,
        "events/ must hold exactly one schema and one example per fact type"
    );
}

#[test]
fn examples_validate_and_decode_into_the_rust_types() {
    let envelope = validator(&load("envelope.schema.json"));
    for ty in FactType::ALL.iter().copied() {
        let example = load(&format!("{}.example.json", ty.name()));
        let data_schema = validator(&load(&format!("{}.schema.json", ty.name())));
        assert_valid(
            &envelope,
            &example,
            &format!("{} example envelope", ty.name()),
        );
        assert_valid(
            &data_schema,
            &example["data"],
            &format!("{} example data", ty.name()),
        );
        assert_eq!(example["type"], ty.cloud_event_type());
        assert_eq!(example["dataschema"], ty.schema_url());

        let fact = Fact::from_json(&example.to_string())
            .unwrap_or_else(|e| panic!("{} example does not decode: {e}", ty.name()));
        assert_eq!(fact.fact_type(), Some(ty));

        // What the Rust type writes back must still satisfy the schema (catches fields the type drops or renames).
        let normalized = ty
            .normalize_payload(&example["data"])
            .expect("payload round-trips");
        assert_valid(
            &data_schema,
            &normalized,
            &format!("{} data as written by the Rust type", ty.name()),
        );
    }
}

#[test]
fn facts_built_by_the_code_validate_against_the_catalog() {
    let envelope = validator(&load("envelope.schema.json"));
    let cause = Cause::root(
        "831e1650-001e-001b-66ab-eeb76e069631",
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
    );
    for ty in FactType::ALL.iter().copied() {
        let example = load(&format!("{}.example.json", ty.name()));
        let data_schema = validator(&load(&format!("{}.schema.json", ty.name())));
        let data = ty
            .normalize_payload(&example["data"])
            .expect("payload round-trips");
        let fact = galleon::events::build_untyped(
            ty,
            "galleon-test",
            &cause,
            "galleries/g/images/i/versions/1.0.0",
            "",
            data,
            Utc::now(),
        )
        .expect("fact builds");
        let json = fact.to_json();
        assert_valid(&envelope, &json, &format!("{} as built", ty.name()));
        assert_valid(
            &data_schema,
            &json["data"],
            &format!("{} data as built", ty.name()),
        );
        assert_eq!(json["correlationid"], cause.correlation_id.as_str());
        assert!(
            json["traceparent"]
                .as_str()
                .is_some_and(|t| t.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"))
        );
    }
}

#[test]
fn fact_ids_are_deterministic_from_the_cause() {
    let cause = Cause::root("evt-1", None);
    let example = load("image.ready.v1.example.json");
    let data = FactType::ImageReady
        .normalize_payload(&example["data"])
        .expect("payload");
    let build = |c: &Cause, disc: &str| {
        galleon::events::build_untyped(
            FactType::ImageReady,
            "x",
            c,
            "s",
            disc,
            data.clone(),
            Utc::now(),
        )
        .expect("fact")
        .id()
        .to_owned()
    };
    assert_eq!(build(&cause, ""), build(&cause, ""), "same cause, same id");
    assert_ne!(
        build(&cause, ""),
        build(&cause, "westeurope"),
        "discriminator separates"
    );
    assert_ne!(
        build(&cause, ""),
        build(&Cause::root("evt-2", None), ""),
        "another cause, another id"
    );
}

#[test]
fn schemas_reject_broken_facts() {
    let schema = validator(&load("vhd.accepted.v1.schema.json"));
    let example = load("vhd.accepted.v1.example.json");
    type Mutation = Box<dyn Fn(&mut Value)>;
    let mutations: Vec<(&str, Mutation)> = vec![
        (
            "missing version",
            Box::new(|d| {
                d["plan"].as_object_mut().map(|p| p.remove("version"));
            }),
        ),
        (
            "unaligned size",
            Box::new(|d| d["virtualSizeBytes"] = 1_048_577.into()),
        ),
        (
            "SAS in url",
            Box::new(|d| {
                d["vhd"]["url"] = "https://a.blob.core.windows.net/c/x.vhd?sig=secret".into()
            }),
        ),
        (
            "gallery with hyphen",
            Box::new(|d| d["plan"]["gallery"] = "my-gallery".into()),
        ),
        (
            "version part too long",
            Box::new(|d| d["plan"]["version"] = "1.0.12345678901".into()),
        ),
        ("unknown field", Box::new(|d| d["surprise"] = true.into())),
    ];
    for (what, mutate) in mutations {
        let mut data = example["data"].clone();
        mutate(&mut data);
        assert!(
            !schema.is_valid(&data),
            "schema accepted a fact with {what}"
        );
    }
    let envelope = validator(&load("envelope.schema.json"));
    let mut no_correlation = example.clone();
    no_correlation
        .as_object_mut()
        .map(|e| e.remove("correlationid"));
    assert!(
        !envelope.is_valid(&no_correlation),
        "envelope accepted a fact without correlationid"
    );
}

/// A policy with galleon's defaults, for planning the manifest examples.
fn example_policy() -> galleon::domain::policy::Policy {
    use galleon::domain::policy::{self, GalleryScope, Policy};
    let subscription = "8c3e1f7a-2b4d-4e5f-9a6b-7c8d9e0f1a2b";
    Policy {
        subscription_id: subscription.into(),
        resource_group: "rg-images".into(),
        gallery: "golden".into(),
        location: "westeurope".into(),
        target_regions: policy::parse_regions("westeurope").unwrap_or_default(),
        publish_from: galleon::events::PublishFrom::Vhd,
        publisher: "galleon".into(),
        allowed: GalleryScope::parse(&format!("{subscription}/rg-images/golden"))
            .into_iter()
            .collect(),
        features: Default::default(),
    }
}

#[test]
fn manifest_schema_and_parser_agree() {
    use galleon::domain::manifest::Manifest;
    let schema_json = load("manifest.schema.json");
    let schema = validator(&schema_json);
    let good: Vec<Value> = schema_json["examples"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        good.len() >= 2
            && good
                .iter()
                .any(|m| m.get("dataDisks").is_some() && m.get("securityType").is_some()),
        "the schema's examples show a plain manifest and one with the image features"
    );
    let minimal = serde_json::json!({"vhd": "a.vhd", "imageDefinition": "x", "osType": "Linux", "hyperVGeneration": "V1"});
    let image = "/subscriptions/s/resourceGroups/rg-packer/providers/Microsoft.Compute/images/ubuntu-2404-20261201";
    let packer = serde_json::json!({"managedImage": image, "imageDefinition": "x", "osType": "Linux", "hyperVGeneration": "V2"});
    for m in good.iter().chain([&minimal, &packer]) {
        assert_valid(&schema, m, "manifest example");
        Manifest::parse(m.to_string().as_bytes(), "m")
            .unwrap_or_else(|r| panic!("parser refuses a schema-valid manifest: {r:?}"));
    }
    // The schema's own examples also keep the publishing rules (a plan is made of each).
    for m in &good {
        let manifest = Manifest::parse(m.to_string().as_bytes(), "m")
            .unwrap_or_else(|r| panic!("parser refuses an example: {r:?}"));
        manifest
            .plan(
                &example_policy(),
                "/subscriptions/8c3e1f7a-2b4d-4e5f-9a6b-7c8d9e0f1a2b/resourceGroups/rg-images/providers/Microsoft.Storage/storageAccounts/ingest",
                "https://ingest.blob.core.windows.net/images/ubuntu/m.manifest.json",
                Utc::now(),
            )
            .unwrap_or_else(|r| panic!("an example breaks a publishing rule: {r:?}\n{m:#}"));
    }
    let bad = [
        serde_json::json!({"imageDefinition": "x", "osType": "Linux", "hyperVGeneration": "V1"}),
        serde_json::json!({"vhd": "a.vhd", "imageDefinition": "x", "osType": "Linux", "hyperVGeneration": "V3"}),
        serde_json::json!({"vhd": "a.vhd", "imageDefinition": "x", "osType": "Linux", "hyperVGeneration": "V1", "osTYPE": "Linux"}),
        serde_json::json!({"vhd": "a.vhd", "imageDefinition": "x", "osType": "BeOS", "hyperVGeneration": "V1"}),
        // A VHD or a managed image, never both; a managed image holds its own data disks.
        serde_json::json!({"vhd": "a.vhd", "managedImage": image, "imageDefinition": "x", "osType": "Linux", "hyperVGeneration": "V1"}),
        serde_json::json!({"managedImage": image, "dataDisks": [{"vhd": "d.vhd", "lun": 0}], "imageDefinition": "x", "osType": "Linux", "hyperVGeneration": "V1"}),
        serde_json::json!({"managedImage": "/subscriptions/s/resourceGroups/r/providers/Microsoft.Compute/disks/d", "imageDefinition": "x", "osType": "Linux", "hyperVGeneration": "V1"}),
    ];
    for m in &bad {
        assert!(!schema.is_valid(m), "schema accepts {m}");
        assert!(
            Manifest::parse(m.to_string().as_bytes(), "m").is_err(),
            "parser accepts {m}"
        );
    }
    let paths = [
        "../a.vhd",
        "/a.vhd",
        "a//b.vhd",
        "a.vhdx",
        "https://x/a.vhd",
    ];
    for p in paths {
        let m = serde_json::json!({"vhd": p, "imageDefinition": "x", "osType": "Linux", "hyperVGeneration": "V1"});
        assert!(!schema.is_valid(&m), "schema accepts vhd {p}");
    }
    // Tags Azure refuses (or that leave no room for galleon's own): the schema refuses them and so does
    // the plan, before any write.
    let many: serde_json::Map<String, Value> = (0..45)
        .map(|i| (format!("t{i}"), Value::from("v")))
        .collect();
    let tag_cases = [
        serde_json::json!({"tags": {"k8s.io/role": "x"}}),
        serde_json::json!({"tags": {"": "x"}}),
        serde_json::json!({"tags": many}),
        serde_json::json!({"tags": {"notes": "n".repeat(257)}}),
        serde_json::json!({"definition": {"tags": {"a&b": "x"}}}),
        serde_json::json!({"definition": {"tags": {"notes": "n".repeat(257)}}}),
    ];
    for extra in tag_cases {
        let mut m = minimal.clone();
        if let (Some(o), Some(e)) = (m.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        assert!(!schema.is_valid(&m), "schema accepts {m}");
        let refused = Manifest::parse(m.to_string().as_bytes(), "m").and_then(|manifest| {
            manifest.plan(
                &example_policy(),
                "/subscriptions/8c3e1f7a-2b4d-4e5f-9a6b-7c8d9e0f1a2b/resourceGroups/rg-images/providers/Microsoft.Storage/storageAccounts/ingest",
                "https://ingest.blob.core.windows.net/images/ubuntu/m.manifest.json",
                Utc::now(),
            )
        });
        assert!(
            refused.as_ref().is_err_and(|r| r.code == "TagsInvalid"),
            "{m}: {refused:?}"
        );
    }
}

#[test]
fn the_builds_example_fits_its_schema_and_the_parser() {
    let schema = validator(&load("builds.schema.json"));
    let path = events_dir().join("../builds.example.json");
    let text = std::fs::read_to_string(&path).expect("builds.example.json");
    let example: Value = serde_json::from_str(&text).expect("json");
    assert_valid(&schema, &example, "builds.example.json");
    let entries = galleon::domain::builds::parse(None, Some(("builds.example.json", &text)))
        .expect("the parser takes the example");
    for e in &entries {
        galleon::domain::builds::check_publish(e).expect("its publish is a valid manifest");
    }
    // The schema refuses what the parser refuses.
    let vhd = serde_json::json!({"templates": [{"templateId": "/subscriptions/s/resourceGroups/r/providers/Microsoft.VirtualMachineImages/imageTemplates/t",
        "publish": {"vhd": "a.vhd"}}]});
    assert!(!schema.is_valid(&vhd));
    assert!(galleon::domain::builds::parse(None, Some(("b", &vhd.to_string()))).is_err());
    let request = validator(&load("build-request.schema.json"));
    assert!(
        request.is_valid(&serde_json::json!({"template": "ubuntu-2404-monthly", "reason": "CVE"}))
    );
    assert!(!request.is_valid(&serde_json::json!({"tmpl": "x"})));
}

#[test]
fn request_schema_and_parser_agree() {
    use galleon::functions::requests::parse;
    let schema_json = load("request.schema.json");
    let schema = validator(&schema_json);
    let good: Vec<Value> = schema_json["examples"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(good.len() >= 5, "an example of every kind");
    for r in &good {
        assert_valid(&schema, r, "request example");
        parse(&r.to_string())
            .unwrap_or_else(|u| panic!("parser refuses a schema-valid request {r}: {u:?}"));
    }
    let bad = [
        serde_json::json!({"imageDefinition": "u", "version": "1.0.0"}),
        serde_json::json!({"kind": "delete", "imageDefinition": "u", "version": "1.0.0"}),
        serde_json::json!({"kind": "replicate", "version": "1.0.0"}),
        serde_json::json!({"kind": "replicate", "imageDefinition": "u", "version": "latest"}),
        serde_json::json!({"kind": "replicate", "imageDefinition": "u", "version": "1.0.0", "regions": "uksouth"}),
        serde_json::json!({"kind": "replicate", "imageDefinition": "u", "version": "1.0.0", "template": "t"}),
        serde_json::json!({"kind": "rebuild"}),
        serde_json::json!({"kind": "rebuild", "template": "t", "force": "yes"}),
        serde_json::json!({"kind": "publish", "vhd": "https://a.blob.core.windows.net/images/d.vhd"}),
        serde_json::json!({"kind": "publish", "vhd": "https://a.blob.core.windows.net/images/d.vhd", "manifest": "m"}),
        serde_json::json!({"kind": "markBad", "imageDefinition": "u", "version": "1.0.0", "reason": 5}),
        serde_json::json!({"kind": "pin", "id": "", "imageDefinition": "u", "version": "1.0.0"}),
        serde_json::json!({"kind": "pin", "imageDefinition": "bad name!", "version": "1.0.0"}),
    ];
    for r in &bad {
        assert!(!schema.is_valid(r), "schema accepts {r}");
        assert!(parse(&r.to_string()).is_err(), "parser accepts {r}");
    }
}
