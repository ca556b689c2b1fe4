//! Tests of what the settings and a manifest together put in the image version galleon sends: the
//! regions' replica counts and the version's own (`publishingProfile.replicaCount`).

use chrono::Utc;
use serde_json::{Value, json};

use super::tests::config;
use crate::{
    domain::{features, manifest::Manifest},
    events::{BlobRef, Plan},
};

const MANIFEST_URL: &str = "https://ingest.blob.core.windows.net/images/ubuntu/u.manifest.json";
const ACCOUNT: &str = "/subscriptions/8c3e1f7a-2b4d-4e5f-9a6b-7c8d9e0f1a2b/resourceGroups/rg-images/providers/Microsoft.Storage/storageAccounts/ingest";

/// The plan for a minimal manifest with `extra` merged in, under the settings `settings`.
pub(super) fn plan(settings: &[(&str, &str)], extra: Value) -> Plan {
    let mut all = vec![("FUNCTIONS_CUSTOMHANDLER_PORT", "7072")];
    all.extend_from_slice(settings);
    let c = config(&all).unwrap_or_else(|e| panic!("{settings:?}: {e:?}"));
    let mut m = json!({"vhd": "u.vhd", "imageDefinition": "ubuntu", "osType": "Linux", "hyperVGeneration": "V2"});
    if let (Some(m), Some(extra)) = (m.as_object_mut(), extra.as_object()) {
        m.extend(extra.clone());
    }
    let manifest = Manifest::parse(m.to_string().as_bytes(), "u.manifest.json")
        .unwrap_or_else(|r| panic!("{m}: {r:?}"));
    manifest
        .plan(&c.policy, ACCOUNT, MANIFEST_URL, Utc::now())
        .unwrap_or_else(|r| panic!("{m}: {r:?}"))
}

/// The version's publishing profile once every target region is in it (the home region's PUT, then the
/// PATCH that adds the others).
fn publishing_profile(plan: &Plan) -> Value {
    let vhd = BlobRef {
        url: "https://ingest.blob.core.windows.net/images/ubuntu/u.vhd".into(),
        e_tag: "\"0x1\"".into(),
        content_length: (8 << 20) + 512,
    };
    let body = features::version_body(
        plan,
        Some(&vhd),
        None,
        &plan.target_regions,
        &Default::default(),
    );
    body["properties"]["publishingProfile"].clone()
}

#[test]
fn replica_counts_from_the_manifest_and_the_settings() {
    let none = "";
    // (GALLEON_TARGET_REGIONS, GALLEON_REPLICA_COUNT, what the manifest adds,
    //  each region and its regionalReplicaCount, the version's replicaCount)
    type Row = (
        &'static str,
        &'static str,
        Value,
        Vec<(&'static str, u32)>,
        Option<u32>,
    );
    let table: Vec<Row> = vec![
        (
            "westeurope,northeurope",
            none,
            json!({}),
            vec![("westeurope", 1), ("northeurope", 1)],
            None,
        ),
        (
            "westeurope,northeurope",
            "3",
            json!({}),
            vec![("westeurope", 3), ("northeurope", 3)],
            Some(3),
        ),
        (
            "westeurope,northeurope",
            "3",
            json!({"replicaCount": 5}),
            vec![("westeurope", 5), ("northeurope", 5)],
            Some(5),
        ),
        (
            "westeurope,northeurope",
            none,
            json!({"replicaCount": 4}),
            vec![("westeurope", 4), ("northeurope", 4)],
            Some(4),
        ),
        (
            "westeurope=2,northeurope",
            none,
            json!({"replicaCount": 4}),
            vec![("westeurope", 2), ("northeurope", 4)],
            Some(4),
        ),
        (
            "northeurope",
            "2",
            json!({}),
            vec![("westeurope", 2), ("northeurope", 2)],
            Some(2),
        ),
        (
            "westeurope,northeurope",
            "3",
            json!({"targetRegions": [{"name": "eastus2"}, {"name": "westeurope", "regionalReplicaCount": 2}]}),
            vec![("westeurope", 2), ("eastus2", 3)],
            Some(3),
        ),
        (
            "westeurope",
            none,
            json!({"replicaCount": 6, "targetRegions": [{"name": "eastus2"}]}),
            vec![("westeurope", 6), ("eastus2", 6)],
            Some(6),
        ),
    ];
    for (regions, count, extra, want_regions, want_count) in table {
        let settings = [
            ("GALLEON_TARGET_REGIONS", regions),
            ("GALLEON_REPLICA_COUNT", count),
        ];
        let profile = publishing_profile(&plan(&settings, extra.clone()));
        let got: Vec<(String, u64)> = profile["targetRegions"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|r| {
                        (
                            r["name"].as_str().unwrap_or_default().to_owned(),
                            r["regionalReplicaCount"].as_u64().unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let want: Vec<(String, u64)> = want_regions
            .iter()
            .map(|(n, c)| ((*n).to_owned(), u64::from(*c)))
            .collect();
        let case = format!("settings {regions:?} count {count:?}, manifest {extra}");
        assert_eq!(got, want, "{case}: {profile:#}");
        assert_eq!(
            profile.get("replicaCount").and_then(Value::as_u64),
            want_count.map(u64::from),
            "{case}: {profile:#}"
        );
    }
}
