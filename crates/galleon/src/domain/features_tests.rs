use chrono::TimeZone;
use serde_json::json;

use super::*;
use crate::events::{
    Architecture, ConfidentialEncryption, ConfidentialVmEncryptionType, DataDisk,
    DataDiskEncryption, DiskController, Encryption, Identifier, OsDiskEncryption, PurchasePlan,
    SafetyProfile,
};

const DES: &str = "/subscriptions/8c3e1f7a-2b4d-4e5f-9a6b-7c8d9e0f1a2b/resourceGroups/rg-keys/providers/Microsoft.Compute/diskEncryptionSets/des-weu";

fn plan() -> Plan {
    let example: Value = serde_json::from_str(include_str!(
        "../../../../events/vhd.accepted.v1.example.json"
    ))
    .unwrap_or(Value::Null);
    serde_json::from_value(example["data"]["plan"].clone())
        .unwrap_or_else(|e| panic!("example plan: {e}"))
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0)
        .single()
        .unwrap_or_default()
}

fn disk(lun: u32) -> DataDisk {
    DataDisk {
        lun,
        vhd: BlobRef {
            url: format!("https://a.blob.core.windows.net/images/data{lun}.vhd"),
            e_tag: "\"0x1\"".into(),
            content_length: 1024 * 1024 + 512,
        },
        host_caching: None,
    }
}

fn encrypted(os: Option<&str>, data: &[(u32, &str)]) -> Option<Encryption> {
    Some(Encryption {
        os_disk_image: os.map(|id| OsDiskEncryption {
            disk_encryption_set_id: Some(id.into()),
            security_profile: None,
        }),
        data_disk_images: data
            .iter()
            .map(|(lun, id)| DataDiskEncryption {
                lun: *lun,
                disk_encryption_set_id: (*id).into(),
            })
            .collect(),
    })
}

#[test]
fn every_bad_combination_is_refused_with_its_code() {
    type Change = fn(&mut Plan);
    let table: Vec<(&str, Change, Option<&str>)> = vec![
        ("nothing stated", |_| {}, None),
        (
            "Trusted Launch on V2",
            |p| p.definition.security_type = Some(SecurityType::TrustedLaunch),
            None,
        ),
        (
            "Trusted Launch on V1",
            |p| {
                p.hyper_v_generation = HyperVGeneration::V1;
                p.definition.security_type = Some(SecurityType::TrustedLaunch);
            },
            Some("SecurityTypeNeedsGeneration2"),
        ),
        (
            "Standard on V1",
            |p| {
                p.hyper_v_generation = HyperVGeneration::V1;
                p.definition.security_type = Some(SecurityType::Standard);
            },
            None,
        ),
        (
            "confidential VM on V1",
            |p| {
                p.hyper_v_generation = HyperVGeneration::V1;
                p.definition.security_type = Some(SecurityType::ConfidentialVm);
            },
            Some("SecurityTypeNeedsGeneration2"),
        ),
        (
            "Arm64 on V1",
            |p| {
                p.hyper_v_generation = HyperVGeneration::V1;
                p.definition.architecture = Some(Architecture::Arm64);
            },
            Some("Arm64NeedsGeneration2"),
        ),
        (
            "NVMe on V1",
            |p| {
                p.hyper_v_generation = HyperVGeneration::V1;
                p.definition.disk_controller_types =
                    vec![DiskController::Scsi, DiskController::Nvme];
            },
            Some("NvmeNeedsGeneration2"),
        ),
        (
            "version end of life in the past",
            |p| p.publishing.end_of_life_date = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single(),
            Some("EndOfLifeInPast"),
        ),
        (
            "definition end of life in the past",
            |p| p.definition.end_of_life_date = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).single(),
            Some("EndOfLifeInPast"),
        ),
        (
            "end of life next year",
            |p| {
                p.publishing.end_of_life_date = Utc.with_ymd_and_hms(2027, 12, 31, 0, 0, 0).single()
            },
            None,
        ),
        (
            "shallow replication to several regions",
            |p| p.publishing.replication_mode = Some(ReplicationMode::Shallow),
            Some("ShallowReplicationOneRegion"),
        ),
        (
            "shallow replication to the home region only",
            |p| {
                p.publishing.replication_mode = Some(ReplicationMode::Shallow);
                p.target_regions.truncate(1);
            },
            None,
        ),
        (
            "duplicate LUNs",
            |p| p.publishing.data_disks = vec![disk(0), disk(1), disk(0)],
            Some("DataDiskLunDuplicate"),
        ),
        (
            "a LUN past 63",
            |p| p.publishing.data_disks = vec![disk(64)],
            Some("DataDiskLunInvalid"),
        ),
        (
            "a disk encryption set per disk",
            |p| {
                p.publishing.data_disks = vec![disk(0)];
                p.target_regions[0].encryption = encrypted(Some(DES), &[(0, DES)]);
            },
            None,
        ),
        (
            "a malformed disk encryption set id",
            |p| p.target_regions[0].encryption = encrypted(Some("des-weu"), &[]),
            Some("DiskEncryptionSetIdInvalid"),
        ),
        (
            "a key vault id where a disk encryption set belongs",
            |p| {
                p.target_regions[0].encryption = encrypted(
                    Some(
                        "/subscriptions/8c3e1f7a-2b4d-4e5f-9a6b-7c8d9e0f1a2b/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/v",
                    ),
                    &[],
                )
            },
            Some("DiskEncryptionSetIdInvalid"),
        ),
        (
            "encryption of a LUN with no data disk",
            |p| p.target_regions[0].encryption = encrypted(None, &[(3, DES)]),
            Some("EncryptionLunUnknown"),
        ),
        (
            "confidential encryption without a confidential VM",
            |p| {
                p.definition.security_type = Some(SecurityType::TrustedLaunch);
                p.target_regions[0].encryption = Some(Encryption {
                    os_disk_image: Some(OsDiskEncryption {
                        disk_encryption_set_id: None,
                        security_profile: Some(ConfidentialEncryption {
                            confidential_vm_encryption_type: Some(
                                ConfidentialVmEncryptionType::EncryptedWithPmk,
                            ),
                            secure_vm_disk_encryption_set_id: None,
                        }),
                    }),
                    data_disk_images: Vec::new(),
                });
            },
            Some("ConfidentialEncryptionNeedsConfidentialVm"),
        ),
        (
            "replica count 0",
            |p| p.publishing.replica_count = Some(0),
            Some("ReplicaCountInvalid"),
        ),
        (
            "recommended memory min above max",
            |p| {
                p.definition.recommended = Some(crate::events::Recommended {
                    v_cpus: None,
                    memory: Some(crate::events::ResourceRange {
                        min: Some(64),
                        max: Some(8),
                    }),
                })
            },
            Some("RecommendedRangeInvalid"),
        ),
    ];
    for (case, change, want) in table {
        let mut p = plan();
        change(&mut p);
        let got = check(&p, now()).err();
        assert_eq!(
            got.as_ref().map(|r| r.code.as_str()),
            want,
            "{case}: {got:?}"
        );
        if let Some(r) = got {
            assert!(!r.message.is_empty() && !r.fix.is_empty(), "{case}: {r:?}");
        }
    }
}

#[test]
fn the_definition_body_carries_exactly_what_was_stated() {
    let mut p = plan();
    let bare = definition_body(&p);
    assert_eq!(
        bare["properties"].get("features"),
        None,
        "no features stated: Azure's defaults apply"
    );
    assert_eq!(bare["properties"].get("architecture"), None);
    p.definition = DefinitionSpec {
        architecture: Some(Architecture::Arm64),
        security_type: Some(SecurityType::TrustedLaunch),
        disk_controller_types: vec![DiskController::Scsi, DiskController::Nvme],
        accelerated_networking: Some(true),
        hibernation: Some(false),
        description: Some("Ubuntu for Arm".into()),
        eula: Some("https://contoso.example/eula".into()),
        release_note_uri: Some("https://contoso.example/notes".into()),
        privacy_statement_uri: Some("https://contoso.example/privacy".into()),
        recommended: None,
        disallowed_disk_types: vec!["Standard_LRS".into()],
        purchase_plan: Some(PurchasePlan {
            name: "n".into(),
            publisher: "p".into(),
            product: "q".into(),
        }),
        end_of_life_date: Utc.with_ymd_and_hms(2028, 1, 1, 0, 0, 0).single(),
        tags: [("team".to_owned(), "platform".to_owned())].into(),
    };
    let body = definition_body(&p);
    let props = &body["properties"];
    assert_eq!(props["architecture"], "Arm64");
    assert_eq!(
        props["features"],
        json!([
            {"name": "SecurityType", "value": "TrustedLaunch"},
            {"name": "DiskControllerTypes", "value": "SCSI, NVMe"},
            {"name": "IsAcceleratedNetworkSupported", "value": "True"},
            {"name": "IsHibernateSupported", "value": "False"},
        ])
    );
    assert_eq!(props["disallowed"], json!({"diskTypes": ["Standard_LRS"]}));
    assert_eq!(props["purchasePlan"]["product"], "q");
    assert_eq!(props["endOfLifeDate"], "2028-01-01T00:00:00Z");
    assert_eq!(props["description"], "Ubuntu for Arm");
    assert_eq!(body["tags"]["team"], "platform");
}

#[test]
fn immutable_properties_of_an_existing_definition_must_match() {
    let mut p = plan();
    let base = json!({"properties": {"osType": "Linux", "osState": "Generalized", "hyperVGeneration": "V2"}});
    assert_eq!(definition_conflict(&base, &p), None);
    let case = json!({"properties": {"osType": "linux", "osState": "generalized", "hyperVGeneration": "v2"}});
    assert_eq!(
        definition_conflict(&case, &p),
        None,
        "ARM enums compare case-insensitively"
    );
    let windows = json!({"properties": {"osType": "Windows", "osState": "Generalized", "hyperVGeneration": "V2"}});
    assert_eq!(
        definition_conflict(&windows, &p),
        Some(("osType".into(), "Windows".into(), "Linux".into()))
    );
    let gen1 = json!({"properties": {"osType": "Linux", "osState": "Generalized"}});
    assert_eq!(
        definition_conflict(&gen1, &p).map(|c| c.0),
        Some("hyperVGeneration".into()),
        "no generation means V1"
    );
    // Stated features must match; absent ones are Azure's defaults.
    p.definition.architecture = Some(Architecture::Arm64);
    assert_eq!(
        definition_conflict(&base, &p),
        Some(("architecture".into(), "x64".into(), "Arm64".into())),
        "no architecture means x64"
    );
    p.definition.architecture = Some(Architecture::X64);
    assert_eq!(definition_conflict(&base, &p), None);
    p.definition.security_type = Some(SecurityType::TrustedLaunch);
    assert_eq!(
        definition_conflict(&base, &p),
        Some((
            "features.SecurityType".into(),
            "(not set)".into(),
            "TrustedLaunch".into()
        ))
    );
    let trusted = json!({"properties": {"osType": "Linux", "osState": "Generalized", "hyperVGeneration": "V2",
        "features": [{"name": "SecurityType", "value": "TrustedLaunch"}, {"name": "DiskControllerTypes", "value": "NVMe,SCSI"}]}});
    assert_eq!(definition_conflict(&trusted, &p), None);
    p.definition.disk_controller_types = vec![DiskController::Scsi, DiskController::Nvme];
    assert_eq!(
        definition_conflict(&trusted, &p),
        None,
        "list order and spacing do not matter"
    );
    p.definition.disk_controller_types = vec![DiskController::Scsi];
    assert_eq!(
        definition_conflict(&trusted, &p).map(|c| c.0),
        Some("features.DiskControllerTypes".into())
    );
    // Descriptive properties may differ: they are not immutable.
    p.definition.disk_controller_types.clear();
    p.definition.description = Some("other".into());
    assert_eq!(definition_conflict(&trusted, &p), None);
}

#[test]
fn every_mismatch_and_a_stated_identifier_are_named_with_both_values_and_the_fix() {
    let mut p = plan();
    p.definition.architecture = Some(Architecture::Arm64);
    p.definition.security_type = Some(SecurityType::TrustedLaunch);
    let existing = json!({"properties": {"osType": "Linux", "osState": "Generalized", "hyperVGeneration": "V2",
        "identifier": {"publisher": "Contoso", "offer": "UBUNTU", "sku": "24_04"}}});
    let all = definition_conflicts(&existing, &p);
    assert_eq!(
        all.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(),
        ["architecture", "features.SecurityType"]
    );
    let same = Identifier {
        publisher: "contoso".into(),
        offer: "ubuntu".into(),
        sku: "24_04".into(),
    };
    assert_eq!(
        identifier_conflict(&existing, &same),
        None,
        "ARM compares the identifier case-insensitively"
    );
    let other = Identifier {
        sku: "24_04-gen2".into(),
        ..same
    };
    assert_eq!(
        identifier_conflict(&existing, &other),
        Some((
            "identifier".into(),
            "Contoso/UBUNTU/24_04".into(),
            "contoso/ubuntu/24_04-gen2".into()
        ))
    );
    assert!(
        identifier_conflict(&json!({"properties": {}}), &other).is_some(),
        "a definition without an identifier does not have the stated one"
    );
    let mut named = all;
    named.extend(identifier_conflict(&existing, &other));
    let r = conflict_reason("ubuntu-2404", &named);
    assert_eq!(r.code, "ImageDefinitionMismatch");
    for part in [
        "ubuntu-2404",
        "architecture is x64 there, the manifest states Arm64",
        "features.SecurityType is (not set) there, the manifest states TrustedLaunch",
        "identifier is Contoso/UBUNTU/24_04 there, the manifest states contoso/ubuntu/24_04-gen2",
    ] {
        assert!(r.message.contains(part), "{part}: {}", r.message);
    }
    assert!(
        r.fix.contains("new image definition name")
            && r.fix.contains("architecture x64")
            && r.fix.contains("identifier Contoso/UBUNTU/24_04"),
        "{}",
        r.fix
    );
}

#[test]
fn the_version_body_publishes_home_first_with_every_option() {
    let mut p = plan();
    p.publishing.end_of_life_date = Utc.with_ymd_and_hms(2027, 6, 30, 0, 0, 0).single();
    p.publishing.replica_count = Some(2);
    p.publishing.safety_profile = Some(SafetyProfile {
        allow_deletion_of_replicated_locations: Some(false),
        block_deletion_before_end_of_life: Some(true),
    });
    p.publishing.data_disks = vec![disk(0)];
    p.target_regions[0].exclude_from_latest = Some(true);
    p.target_regions[0].encryption = encrypted(Some(DES), &[(0, DES)]);
    let vhd = disk(9).vhd;
    let home = vec![p.target_regions[0].clone()];
    let body = version_body(&p, Some(&vhd), None, &home, &Default::default());
    let props = &body["properties"];
    assert_eq!(
        props["publishingProfile"]["endOfLifeDate"],
        "2027-06-30T00:00:00Z"
    );
    assert_eq!(props["publishingProfile"]["replicaCount"], 2);
    assert_eq!(
        props["publishingProfile"]["targetRegions"][0]["excludeFromLatest"],
        true
    );
    assert_eq!(
        props["publishingProfile"]["targetRegions"][0]["encryption"]["dataDiskImages"][0],
        json!({"lun": 0, "diskEncryptionSetId": DES})
    );
    assert_eq!(
        props["storageProfile"]["osDiskImage"]["hostCaching"],
        "ReadOnly"
    );
    assert_eq!(props["storageProfile"]["dataDiskImages"][0]["lun"], 0);
    assert_eq!(
        props["storageProfile"]["dataDiskImages"][0]["hostCaching"],
        "None"
    );
    assert_eq!(props["safetyProfile"]["blockDeletionBeforeEndOfLife"], true);
    // From a managed image, the image holds every disk.
    let from_image = version_body(
        &p,
        Some(&vhd),
        Some("/subscriptions/s/resourceGroups/r/providers/Microsoft.Compute/images/i"),
        &home,
        &Default::default(),
    );
    assert_eq!(
        from_image["properties"]["storageProfile"],
        json!({"source": {"id": "/subscriptions/s/resourceGroups/r/providers/Microsoft.Compute/images/i"}})
    );
    // Nothing stated: nothing sent (Azure's defaults apply).
    let plain = version_body(&plan(), Some(&vhd), None, &home, &Default::default());
    let profile = &plain["properties"]["publishingProfile"];
    assert!(profile.get("endOfLifeDate").is_none() && profile.get("replicationMode").is_none());
    assert!(plain["properties"].get("safetyProfile").is_none());
}
