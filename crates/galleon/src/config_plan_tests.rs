//! Tests of what the settings and a manifest together put in the plan and the image version galleon
//! sends: the regions' replica counts and the version's own, and the feature defaults a manifest overrides.

use chrono::{Duration, TimeZone, Utc};
use serde_json::{Value, json};

use super::tests::config;
use crate::{
    domain::{features, manifest::Manifest},
    events::{Architecture, BlobRef, DiskController, Plan, SecurityType},
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

#[test]
fn feature_settings_fill_what_the_manifest_leaves_out() {
    let settings = [
        ("GALLEON_ARCHITECTURE", "Arm64"),
        ("GALLEON_SECURITY_TYPE", "TrustedLaunch"),
        ("GALLEON_DISK_CONTROLLER_TYPES", "SCSI, NVMe"),
        ("GALLEON_REPLICA_COUNT", "2"),
        ("GALLEON_VERSION_LIFETIME_DAYS", "30"),
    ];
    let before = Utc::now();
    let p = plan(&settings, json!({}));
    let after = Utc::now();
    assert_eq!(p.definition.architecture, Some(Architecture::Arm64));
    assert_eq!(
        p.definition.security_type,
        Some(SecurityType::TrustedLaunch)
    );
    assert_eq!(
        p.definition.disk_controller_types,
        [DiskController::Scsi, DiskController::Nvme]
    );
    assert_eq!(p.publishing.replica_count, Some(2));
    let end = p.publishing.end_of_life_date.expect("a lifetime");
    assert!(
        end >= before + Duration::days(30) && end <= after + Duration::days(30),
        "30 days after publication: {end}"
    );
    // The definition galleon makes, and the version, carry them.
    let definition = features::definition_body(&p);
    assert_eq!(definition["properties"]["architecture"], "Arm64");
    assert_eq!(
        definition["properties"]["features"],
        json!([
            {"name": "SecurityType", "value": "TrustedLaunch"},
            {"name": "DiskControllerTypes", "value": "SCSI, NVMe"},
        ])
    );
    assert_eq!(publishing_profile(&p)["replicaCount"], 2);

    // The manifest speaks: its values win.
    let p = plan(
        &settings,
        json!({"architecture": "x64", "securityType": "Standard", "diskControllerTypes": ["SCSI"],
               "replicaCount": 4, "endOfLifeDate": "2030-01-01T00:00:00Z"}),
    );
    assert_eq!(p.definition.architecture, Some(Architecture::X64));
    assert_eq!(p.definition.security_type, Some(SecurityType::Standard));
    assert_eq!(p.definition.disk_controller_types, [DiskController::Scsi]);
    assert_eq!(p.publishing.replica_count, Some(4));
    assert_eq!(
        p.publishing.end_of_life_date,
        Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).single()
    );

    // Both silent: nothing stated, Azure's defaults apply.
    let p = plan(&[], json!({}));
    assert_eq!(p.definition.architecture, None);
    assert_eq!(p.definition.security_type, None);
    assert!(p.definition.disk_controller_types.is_empty());
    assert_eq!(p.publishing.replica_count, None);
    assert_eq!(p.publishing.end_of_life_date, None);
    let definition = features::definition_body(&p);
    assert!(definition["properties"].get("architecture").is_none());
    assert!(definition["properties"].get("features").is_none());
}

#[test]
fn a_bad_feature_setting_is_named() {
    for (setting, value) in [
        ("GALLEON_ARCHITECTURE", "x86"),
        ("GALLEON_SECURITY_TYPE", "Secure"),
        ("GALLEON_DISK_CONTROLLER_TYPES", "SCSI,IDE"),
        ("GALLEON_REPLICA_COUNT", "0"),
        ("GALLEON_REPLICA_COUNT", "101"),
        ("GALLEON_VERSION_LIFETIME_DAYS", "0"),
    ] {
        let got = config(&[("FUNCTIONS_CUSTOMHANDLER_PORT", "7072"), (setting, value)]);
        assert!(
            got.as_ref().is_err_and(|e| e.setting == setting),
            "{setting}={value}: {:?}",
            got.map(|_| ())
        );
    }
}
