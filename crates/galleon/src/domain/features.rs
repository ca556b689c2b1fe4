//! Image features, pure: the rules a plan must keep before any write (the ones Azure would refuse late or
//! not at all), the image definition's immutable properties against an existing definition, and the
//! request bodies for the definition and the version. Table-tested.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::events::{
    BlobRef, DefinitionSpec, HostCaching, HyperVGeneration, Identifier, Plan, Reason,
    ReplicationMode, SecurityType, TargetRegion,
};

fn reason(code: &str, message: impl Into<String>, fix: impl Into<String>) -> Reason {
    Reason {
        code: code.to_owned(),
        message: message.into(),
        fix: fix.into(),
    }
}

/// Whether `id` is a disk encryption set's resource id.
pub fn is_disk_encryption_set_id(id: &str) -> bool {
    let parts: Vec<&str> = id.trim_start_matches('/').split('/').collect();
    matches!(
        parts.as_slice(),
        [s, sub, r, rg, p, ns, t, name]
            if s.eq_ignore_ascii_case("subscriptions")
                && uuid::Uuid::parse_str(sub).is_ok()
                && r.eq_ignore_ascii_case("resourceGroups")
                && !rg.is_empty()
                && p.eq_ignore_ascii_case("providers")
                && ns.eq_ignore_ascii_case("Microsoft.Compute")
                && t.eq_ignore_ascii_case("diskEncryptionSets")
                && !name.is_empty()
    ) && id.starts_with('/')
}

/// The rules a plan's features must keep, checked before any write. `now` judges end-of-life dates.
pub fn check(plan: &Plan, now: DateTime<Utc>) -> Result<(), Reason> {
    let d = &plan.definition;
    let v = &plan.publishing;
    let gen1 = plan.hyper_v_generation == HyperVGeneration::V1;
    let gen2_fix = "Publish a generation 2 (UEFI) disk with hyperVGeneration V2: a GPT disk with an EFI system partition (for example an image built for Gen2 VMs), or leave the feature out for a generation 1 image.";
    if gen1 && let Some(s) = d.security_type.filter(|s| s.needs_generation_2()) {
        return Err(reason(
            "SecurityTypeNeedsGeneration2",
            format!(
                "securityType {} needs hyperVGeneration V2, the manifest says V1",
                s.as_str()
            ),
            gen2_fix,
        ));
    }
    if gen1 && d.architecture == Some(crate::events::Architecture::Arm64) {
        return Err(reason(
            "Arm64NeedsGeneration2",
            "architecture Arm64 needs hyperVGeneration V2 (Arm64 VMs boot only with UEFI), the manifest says V1",
            gen2_fix,
        ));
    }
    if gen1
        && d.disk_controller_types
            .contains(&crate::events::DiskController::Nvme)
    {
        return Err(reason(
            "NvmeNeedsGeneration2",
            "diskControllerTypes NVMe needs hyperVGeneration V2, the manifest says V1",
            gen2_fix,
        ));
    }
    for (what, date) in [
        ("the version's endOfLifeDate", v.end_of_life_date),
        ("definition.endOfLifeDate", d.end_of_life_date),
    ] {
        if let Some(date) = date.filter(|t| *t <= now) {
            return Err(reason(
                "EndOfLifeInPast",
                format!("{what} {date} is not in the future"),
                "Give an end-of-life date after today (RFC 3339, e.g. 2027-12-31T00:00:00Z), or leave it out.",
            ));
        }
    }
    if v.replication_mode == Some(ReplicationMode::Shallow) {
        let others: Vec<&str> = plan
            .target_regions
            .iter()
            .filter(|r| r.name != plan.location)
            .map(|r| r.name.as_str())
            .collect();
        if !others.is_empty() {
            return Err(reason(
                "ShallowReplicationOneRegion",
                format!(
                    "replicationMode Shallow replicates only to the source region {}, but the plan also names {}",
                    plan.location,
                    others.join(", ")
                ),
                "For a test image, set targetRegions to the home region only; for a release, use replicationMode Full (the default).",
            ));
        }
    }
    let mut luns: Vec<u32> = Vec::new();
    for disk in &v.data_disks {
        if disk.lun > 63 {
            return Err(reason(
                "DataDiskLunInvalid",
                format!(
                    "data disk {} has LUN {}; LUNs are 0 to 63",
                    disk.vhd.url, disk.lun
                ),
                "Give each data disk a LUN from 0 to 63.",
            ));
        }
        if luns.contains(&disk.lun) {
            return Err(reason(
                "DataDiskLunDuplicate",
                format!("two data disks have LUN {}", disk.lun),
                "Give each data disk its own LUN.",
            ));
        }
        luns.push(disk.lun);
    }
    for region in &plan.target_regions {
        check_encryption(region, d.security_type, &luns)?;
    }
    if let Some(count) = v.replica_count
        && !(1..=100).contains(&count)
    {
        return Err(reason(
            "ReplicaCountInvalid",
            format!("replicaCount {count} is outside 1-100"),
            "Give replicaCount from 1 to 100.",
        ));
    }
    if let Some(rec) = &d.recommended {
        for (what, range) in [("vCPUs", rec.v_cpus), ("memory", rec.memory)] {
            if let Some(r) = range
                && let (Some(min), Some(max)) = (r.min, r.max)
                && min > max
            {
                return Err(reason(
                    "RecommendedRangeInvalid",
                    format!("recommended {what} min {min} is above max {max}"),
                    "Give min ≤ max.",
                ));
            }
        }
    }
    Ok(())
}

fn check_encryption(
    region: &TargetRegion,
    security: Option<SecurityType>,
    luns: &[u32],
) -> Result<(), Reason> {
    let Some(enc) = &region.encryption else {
        return Ok(());
    };
    let des_fix = "Name a disk encryption set by its full resource id: /subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.Compute/diskEncryptionSets/<name> (it must be in that region).";
    let mut ids: Vec<&str> = Vec::new();
    if let Some(os) = &enc.os_disk_image {
        ids.extend(os.disk_encryption_set_id.as_deref());
        if let Some(profile) = &os.security_profile {
            ids.extend(profile.secure_vm_disk_encryption_set_id.as_deref());
            if profile.confidential_vm_encryption_type.is_some()
                && !security.is_some_and(SecurityType::is_confidential)
            {
                return Err(reason(
                    "ConfidentialEncryptionNeedsConfidentialVm",
                    format!(
                        "region {} asks for a confidential VM encryption type, but the image's securityType is {}",
                        region.name,
                        security.map(SecurityType::as_str).unwrap_or("not set")
                    ),
                    "Set securityType to ConfidentialVM (or ConfidentialVmSupported), or leave confidentialVMEncryptionType out.",
                ));
            }
        }
    }
    for data in &enc.data_disk_images {
        ids.push(&data.disk_encryption_set_id);
        if !luns.contains(&data.lun) {
            return Err(reason(
                "EncryptionLunUnknown",
                format!(
                    "region {} encrypts data disk LUN {}, which the manifest's dataDisks do not have",
                    region.name, data.lun
                ),
                "Name only LUNs listed in dataDisks.",
            ));
        }
    }
    if let Some(bad) = ids.into_iter().find(|id| !is_disk_encryption_set_id(id)) {
        return Err(reason(
            "DiskEncryptionSetIdInvalid",
            format!(
                "'{bad}' (region {}) is not a disk encryption set id",
                region.name
            ),
            des_fix,
        ));
    }
    Ok(())
}

/// The image definition's body when galleon makes it.
pub fn definition_body(plan: &Plan) -> Value {
    let d = &plan.definition;
    let mut props = json!({
        "osType": plan.os_type,
        "osState": plan.os_state,
        "hyperVGeneration": plan.hyper_v_generation,
        "identifier": plan.identifier,
        "description": d.description.clone().unwrap_or_else(|| "Created by galleon on first publish".into()),
    });
    let features: Vec<Value> = d
        .features()
        .into_iter()
        .map(|(name, value)| json!({"name": name, "value": value}))
        .collect();
    let fields = [
        ("architecture", json!(d.architecture)),
        ("features", json!(features)),
        ("eula", json!(d.eula)),
        ("releaseNoteUri", json!(d.release_note_uri)),
        ("privacyStatementUri", json!(d.privacy_statement_uri)),
        ("recommended", json!(d.recommended)),
        ("purchasePlan", json!(d.purchase_plan)),
        ("endOfLifeDate", json!(d.end_of_life_date)),
    ];
    for (key, value) in fields {
        let empty = value.is_null() || value.as_array().is_some_and(Vec::is_empty);
        if !empty && let Some(p) = props.as_object_mut() {
            p.insert(key.into(), value);
        }
    }
    if !d.disallowed_disk_types.is_empty() {
        props["disallowed"] = json!({"diskTypes": d.disallowed_disk_types});
    }
    let mut body = json!({"location": plan.location, "properties": props});
    if !d.tags.is_empty() {
        body["tags"] = json!(d.tags);
    }
    body
}

fn same_text(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(a), Value::String(b)) => a.eq_ignore_ascii_case(b),
        _ => a == b,
    }
}

/// The features an existing definition has, by name (lower-cased), values as Azure shows them.
fn features_of(existing: &Value) -> Vec<(String, String)> {
    existing
        .pointer("/properties/features")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|f| {
                    Some((
                        f.get("name")?.as_str()?.to_ascii_lowercase(),
                        f.get("value")?.as_str()?.to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Normalizes a feature value for comparison: case and the spacing of lists do not matter.
fn feature_value(v: &str) -> String {
    let mut parts: Vec<String> = v
        .split(',')
        .map(|p| p.trim().to_ascii_lowercase())
        .filter(|p| !p.is_empty())
        .collect();
    parts.sort();
    parts.join(",")
}

/// One immutable property an existing definition has otherwise than the plan states:
/// `(property, what the definition has, what the plan states)`.
pub type Conflict = (String, String, String);

/// The first immutable property of an existing definition that differs from what the plan states (see
/// [`definition_conflicts`]).
pub fn definition_conflict(existing: &Value, plan: &Plan) -> Option<Conflict> {
    definition_conflicts(existing, plan).into_iter().next()
}

/// Every immutable property of an existing definition that differs from what the plan states. Properties
/// the plan leaves out are not compared (the existing definition decides them); nor is the identifier,
/// which a plan always has (galleon derives one): see [`identifier_conflict`] for a stated one.
pub fn definition_conflicts(existing: &Value, plan: &Plan) -> Vec<Conflict> {
    let Some(props) = existing.get("properties") else {
        return Vec::new();
    };
    let mut conflicts = Vec::new();
    let shown = |v: &Value| match v {
        Value::Null => "(not set)".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut want = vec![
        ("osType", json!(plan.os_type)),
        ("osState", json!(plan.os_state)),
        ("hyperVGeneration", json!(plan.hyper_v_generation)),
    ];
    if let Some(a) = plan.definition.architecture {
        want.push(("architecture", json!(a)));
    }
    if let Some(p) = &plan.definition.purchase_plan {
        want.push(("purchasePlan", json!(p)));
    }
    for (key, value) in want {
        let mut have = props.get(key).cloned().unwrap_or(Value::Null);
        // Azure's defaults when a property is absent.
        if have.is_null() {
            have = match key {
                "hyperVGeneration" => json!("V1"),
                "architecture" => json!("x64"),
                _ => have,
            };
        }
        let same = match (&have, &value) {
            (Value::Object(_), Value::Object(v)) => {
                v.iter().all(|(k, x)| same_text(&have[k.as_str()], x))
            }
            _ => same_text(&have, &value),
        };
        if !same {
            conflicts.push((key.to_owned(), shown(&have), shown(&value)));
        }
    }
    let existing_features = features_of(existing);
    for (name, value) in plan.definition.features() {
        let have = existing_features
            .iter()
            .find(|(n, _)| *n == name.to_ascii_lowercase())
            .map(|(_, v)| v.clone());
        let same = match (&have, name) {
            (Some(h), _) => feature_value(h) == feature_value(&value),
            // Absent means Azure's default: Standard security, SCSI, no accelerated networking or
            // hibernation declared.
            (None, "SecurityType") => value == "Standard",
            (None, "DiskControllerTypes") => feature_value(&value) == "scsi",
            (None, _) => value == "False",
        };
        if !same {
            conflicts.push((
                format!("features.{name}"),
                have.unwrap_or_else(|| "(not set)".into()),
                value,
            ));
        }
    }
    conflicts
}

/// The identifier (publisher/offer/sku) an existing definition has, when it is not the one stated. Azure
/// does not let it change; ARM compares its parts case-insensitively.
pub fn identifier_conflict(existing: &Value, stated: &Identifier) -> Option<Conflict> {
    let have = existing.pointer("/properties/identifier");
    let part = |k: &str| {
        have.and_then(|h| h.get(k))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let has = [part("publisher"), part("offer"), part("sku")];
    let wants = [&stated.publisher, &stated.offer, &stated.sku];
    let same = has
        .iter()
        .zip(wants)
        .all(|(h, w)| h.eq_ignore_ascii_case(w));
    (!same).then(|| {
        (
            "identifier".to_owned(),
            has.join("/"),
            format!("{}/{}/{}", stated.publisher, stated.offer, stated.sku),
        )
    })
}

/// The rejection of a plan whose image definition exists with other immutable properties: each property
/// with both values, and the fix.
pub fn conflict_reason(definition: &str, conflicts: &[Conflict]) -> Reason {
    let each: Vec<String> = conflicts
        .iter()
        .map(|(property, has, wants)| {
            format!("{property} is {has} there, the manifest states {wants}")
        })
        .collect();
    let keep: Vec<String> = conflicts
        .iter()
        .map(|(property, has, _)| format!("{property} {has}"))
        .collect();
    let names: Vec<&str> = conflicts.iter().map(|(p, _, _)| p.as_str()).collect();
    reason(
        "ImageDefinitionMismatch",
        format!(
            "image definition {definition} already exists and Azure does not let {} change: {}",
            names.join(", "),
            each.join("; ")
        ),
        format!(
            "Publish to a new image definition name (\"imageDefinition\"), or make the manifest match the existing definition: {} (an optional property left out takes the definition's).",
            keep.join(", ")
        ),
    )
}

/// The image version's body: the home region only (the others follow in one PATCH), the publishing
/// profile's options, the OS disk and data disks from their VHDs (or the managed image), the safety
/// profile, galleon's ownership tags.
pub fn version_body(
    plan: &Plan,
    vhd: Option<&BlobRef>,
    image_id: Option<&str>,
    home: &[TargetRegion],
    tags: &std::collections::BTreeMap<String, String>,
) -> Value {
    let v = &plan.publishing;
    let mut publishing = json!({
        "targetRegions": home,
        "excludeFromLatest": plan.exclude_from_latest,
    });
    for (key, value) in [
        ("endOfLifeDate", json!(v.end_of_life_date)),
        ("replicaCount", json!(v.replica_count)),
        ("replicationMode", json!(v.replication_mode)),
    ] {
        if !value.is_null() {
            publishing[key] = value;
        }
    }
    let caching = |c: Option<HostCaching>, default: HostCaching| json!(c.unwrap_or(default));
    let storage = match (image_id, vhd) {
        // The managed image holds the data disks already.
        (image, None) => json!({"source": {"id": image.unwrap_or_default()}}),
        (Some(image), Some(_)) => json!({"source": {"id": image}}),
        (None, Some(vhd)) => {
            let source = |blob: &BlobRef| json!({"storageAccountId": plan.storage_account_id, "uri": blob.url});
            let mut profile = json!({
                "osDiskImage": {
                    "source": source(vhd),
                    "hostCaching": caching(v.host_caching, HostCaching::ReadOnly),
                }
            });
            if !v.data_disks.is_empty() {
                profile["dataDiskImages"] = v
                    .data_disks
                    .iter()
                    .map(|d| {
                        json!({
                            "lun": d.lun,
                            "source": source(&d.vhd),
                            "hostCaching": caching(d.host_caching, HostCaching::None),
                        })
                    })
                    .collect();
            }
            profile
        }
    };
    let mut properties = json!({
        "publishingProfile": publishing,
        "storageProfile": storage,
    });
    if let Some(safety) = &v.safety_profile {
        properties["safetyProfile"] = json!(safety);
    }
    json!({"location": plan.location, "tags": tags, "properties": properties})
}

/// What a feature default leaves the plan when neither manifest nor settings say: nothing (Azure's
/// default applies).
pub fn with_defaults(spec: &mut DefinitionSpec, defaults: &super::policy::FeatureDefaults) {
    if spec.architecture.is_none() {
        spec.architecture = defaults.architecture;
    }
    if spec.security_type.is_none() {
        spec.security_type = defaults.security_type;
    }
    if spec.disk_controller_types.is_empty() {
        spec.disk_controller_types = defaults.disk_controller_types.clone();
    }
}

#[cfg(test)]
#[path = "features_tests.rs"]
mod tests;
