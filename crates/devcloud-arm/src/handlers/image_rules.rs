//! The image-feature rules Azure enforces on gallery image definitions and versions: feature
//! values, generation V2 for Trusted Launch / confidential VMs / Arm64, shallow replication only in
//! the source region, well-formed disk encryption set ids, unique data disk LUNs.
//!
//! Codes are Azure's documented ones (`InvalidParameter`, `PropertyChangeNotAllowed`, and ARM's
//! `LinkedInvalidPropertyId` for ids that are not resource ids [obs]); the message wording of the
//! gallery-specific rules is not documented and is ours [mem].

use serde_json::Value;

use super::common::enum_check;
use super::replication::WantRegion;
use crate::error::ArmError;

/// `SecurityType` feature values [spec: GalleryImageFeature examples, Learn "Trusted launch"].
pub(crate) const SECURITY_TYPES: &[&str] = &[
    "TrustedLaunch",
    "TrustedLaunchSupported",
    "ConfidentialVM",
    "ConfidentialVmSupported",
    "TrustedLaunchAndConfidentialVmSupported",
];
const DISK_CONTROLLERS: &[&str] = &["SCSI", "NVMe"];
const BOOLEANS: &[&str] = &["True", "False"];
/// `confidentialVMEncryptionType` [spec].
const CVM_ENCRYPTION: &[&str] = &[
    "EncryptedVMGuestStateOnlyWithPmk",
    "EncryptedWithPmk",
    "EncryptedWithCmk",
    "NonPersistedTPM",
];

const FEATURES: &str = "galleryImage.properties.features";

/// Checks `features`: a list of `{name, value}` with distinct names; the values of the features
/// Azure knows (`SecurityType`, `DiskControllerTypes`, `IsAcceleratedNetworkSupported`,
/// `IsHibernateSupported`) must be theirs. Other names pass, as Azure's list is open.
pub(crate) fn check_features(features: &Value) -> Result<(), ArmError> {
    let list = match features {
        Value::Null => return Ok(()),
        Value::Array(list) => list,
        _ => {
            return Err(ArmError::invalid_parameter(
                "The property 'features' must be a list of {name, value} objects.",
                FEATURES,
            ));
        }
    };
    let mut seen: Vec<String> = Vec::new();
    for f in list {
        let name = f["name"]
            .as_str()
            .ok_or_else(|| ArmError::required("name", &format!("{FEATURES}.name")))?;
        let value = f["value"]
            .as_str()
            .ok_or_else(|| ArmError::required("value", &format!("{FEATURES}.value")))?;
        let lower = name.to_ascii_lowercase();
        if seen.contains(&lower) {
            return Err(ArmError::invalid_parameter(
                format!("The feature '{name}' is specified more than once."),
                FEATURES,
            ));
        }
        seen.push(lower);
        let target = format!("{FEATURES}.{name}");
        match name.to_ascii_lowercase().as_str() {
            "securitytype" => enum_check(Some(value), SECURITY_TYPES, name, &target)?,
            "isacceleratednetworksupported" | "ishibernatesupported" => {
                enum_check(Some(value), BOOLEANS, name, &target)?
            }
            "diskcontrollertypes" => {
                let parts: Vec<&str> = value.split(',').map(str::trim).collect();
                for p in &parts {
                    enum_check(Some(p), DISK_CONTROLLERS, name, &target)?;
                }
                let distinct = DISK_CONTROLLERS
                    .iter()
                    .filter(|d| parts.iter().any(|p| p.eq_ignore_ascii_case(d)))
                    .count();
                if distinct != parts.len() {
                    return Err(ArmError::invalid_parameter(
                        format!(
                            "The value '{value}' of feature '{name}' repeats a controller type."
                        ),
                        &target,
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The `SecurityType` feature's value, if any.
pub(crate) fn security_type(features: &Value) -> Option<&str> {
    features.as_array()?.iter().find(|f| {
        f["name"]
            .as_str()
            .is_some_and(|n| n.eq_ignore_ascii_case("SecurityType"))
    })?["value"]
        .as_str()
}

/// Trusted Launch, confidential VMs and Arm64 exist only as Hyper-V generation 2.
pub(crate) fn check_generation(props: &Value) -> Result<(), ArmError> {
    let hvg = props["hyperVGeneration"].as_str().unwrap_or("V1");
    if hvg.eq_ignore_ascii_case("V2") {
        return Ok(());
    }
    if let Some(t) = security_type(&props["features"]) {
        return Err(ArmError::invalid_parameter(
            format!(
                "The security type '{t}' is supported only for Hyper-V generation V2 images; the \
                 image definition's hyperVGeneration is '{hvg}'."
            ),
            "galleryImage.properties.hyperVGeneration",
        ));
    }
    if props["architecture"]
        .as_str()
        .is_some_and(|a| a.eq_ignore_ascii_case("Arm64"))
    {
        return Err(ArmError::invalid_parameter(
            format!(
                "The architecture 'Arm64' is supported only for Hyper-V generation V2 images; the \
                 image definition's hyperVGeneration is '{hvg}'."
            ),
            "galleryImage.properties.hyperVGeneration",
        ));
    }
    Ok(())
}

/// The features as a set: the same names (case-insensitive) with the same values, in any order.
pub(crate) fn same_features(a: &Value, b: &Value) -> bool {
    let norm = |v: &Value| {
        let mut list: Vec<(String, String, String)> = v
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| {
                (
                    f["name"].as_str().unwrap_or("").to_ascii_lowercase(),
                    f["value"].as_str().unwrap_or("").to_ascii_lowercase(),
                    f["startsAtVersion"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        list.sort();
        list
    };
    norm(a) == norm(b)
}

/// Shallow replication keeps the only copy in the source: the target regions must be just the
/// version's own region.
pub(crate) fn check_shallow(
    mode: Option<&str>,
    want: &[WantRegion],
    loc: &str,
) -> Result<(), ArmError> {
    if !mode.is_some_and(|m| m.eq_ignore_ascii_case("Shallow")) {
        return Ok(());
    }
    if let Some(other) = want.iter().find(|w| w.norm != loc) {
        return Err(ArmError::invalid_parameter(
            format!(
                "Replication mode 'Shallow' is supported only when the target regions contain just \
                 the source region '{loc}'; '{}' is another region.",
                other.name
            ),
            "galleryImageVersion.properties.publishingProfile.replicationMode",
        ));
    }
    Ok(())
}

/// Checks a disk encryption set id: an ARM resource id (else `LinkedInvalidPropertyId`, as ARM
/// answers for any id property) of type `Microsoft.Compute/diskEncryptionSets`.
fn check_des_id(id: &Value, path: &str) -> Result<(), ArmError> {
    let Some(s) = id.as_str() else {
        if id.is_null() {
            return Ok(());
        }
        return Err(ArmError::invalid_parameter(
            format!("The property '{path}' must be a string."),
            path,
        ));
    };
    let lower = s.to_ascii_lowercase();
    if !lower.starts_with("/subscriptions/") && !lower.starts_with("/providers/") {
        return Err(ArmError::new(
            400,
            "LinkedInvalidPropertyId",
            format!(
                "Property id '{s}' at path '{path}' is invalid. Expect fully qualified resource Id \
                 that start with '/subscriptions/{{subscriptionId}}' or \
                 '/providers/{{resourceProviderNamespace}}/'."
            ),
        ));
    }
    let parts: Vec<&str> = s.trim_end_matches('/').split('/').collect();
    // "", subscriptions, {sub}, resourceGroups, {rg}, providers, Microsoft.Compute, diskEncryptionSets, {name}
    let well_formed = parts.len() == 9
        && parts[1].eq_ignore_ascii_case("subscriptions")
        && uuid::Uuid::parse_str(parts[2]).is_ok()
        && parts[3].eq_ignore_ascii_case("resourceGroups")
        && !parts[4].is_empty()
        && parts[5].eq_ignore_ascii_case("providers")
        && parts[6].eq_ignore_ascii_case("Microsoft.Compute")
        && parts[7].eq_ignore_ascii_case("diskEncryptionSets")
        && !parts[8].is_empty();
    if !well_formed {
        return Err(ArmError::invalid_parameter(
            format!(
                "The disk encryption set id '{s}' is not valid: expected \
                 '/subscriptions/{{subscriptionId}}/resourceGroups/{{resourceGroupName}}/providers/Microsoft.Compute/diskEncryptionSets/{{name}}'."
            ),
            path,
        ));
    }
    Ok(())
}

/// Checks every region's `encryption`: disk encryption set ids well-formed, the confidential VM
/// encryption type known, data disk LUNs unique. A LUN the version has no data disk at is not
/// refused: Azure's own example (GalleryImageVersion_Create.json, fixture
/// GalleryImageVersions_CreateOrUpdate.ManagedImageSource) encrypts LUNs 0 and 1 of an image whose
/// only data disk is LUN 1.
pub(crate) fn check_encryption(target_regions: &Value) -> Result<(), ArmError> {
    for (i, t) in target_regions.as_array().into_iter().flatten().enumerate() {
        let enc = &t["encryption"];
        if enc.is_null() {
            continue;
        }
        let base = format!("properties.publishingProfile.targetRegions[{i}].encryption");
        let os = &enc["osDiskImage"];
        check_des_id(
            &os["diskEncryptionSetId"],
            &format!("{base}.osDiskImage.diskEncryptionSetId"),
        )?;
        let sp = &os["securityProfile"];
        check_des_id(
            &sp["secureVMDiskEncryptionSetId"],
            &format!("{base}.osDiskImage.securityProfile.secureVMDiskEncryptionSetId"),
        )?;
        enum_check(
            sp["confidentialVMEncryptionType"].as_str(),
            CVM_ENCRYPTION,
            "confidentialVMEncryptionType",
            &format!("{base}.osDiskImage.securityProfile.confidentialVMEncryptionType"),
        )?;
        let mut seen = Vec::new();
        for (j, d) in enc["dataDiskImages"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let path = format!("{base}.dataDiskImages[{j}]");
            let lun = d["lun"]
                .as_i64()
                .ok_or_else(|| ArmError::required("lun", &format!("{path}.lun")))?;
            if seen.contains(&lun) {
                return Err(ArmError::invalid_parameter(
                    format!(
                        "The encryption of data disk LUN {lun} in target region '{}' is given more \
                         than once.",
                        t["name"].as_str().unwrap_or(""),
                    ),
                    &format!("{path}.lun"),
                ));
            }
            seen.push(lun);
            check_des_id(
                &d["diskEncryptionSetId"],
                &format!("{path}.diskEncryptionSetId"),
            )?;
        }
    }
    Ok(())
}

/// The data disks' LUNs, each required, non-negative and unique.
pub(crate) fn data_disk_luns(storage_profile: &Value) -> Result<Vec<i64>, ArmError> {
    const T: &str = "galleryImageVersion.properties.storageProfile.dataDiskImages";
    let mut luns = Vec::new();
    for d in storage_profile["dataDiskImages"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let lun = d["lun"]
            .as_i64()
            .ok_or_else(|| ArmError::required("lun", &format!("{T}.lun")))?;
        if lun < 0 {
            return Err(ArmError::invalid_parameter(
                format!("The data disk LUN {lun} is not valid: LUNs are 0 or more."),
                &format!("{T}.lun"),
            ));
        }
        if luns.contains(&lun) {
            return Err(ArmError::invalid_parameter(
                format!(
                    "The data disk LUN {lun} is used by more than one data disk image; each data disk needs its own LUN."
                ),
                &format!("{T}.lun"),
            ));
        }
        luns.push(lun);
    }
    Ok(luns)
}
