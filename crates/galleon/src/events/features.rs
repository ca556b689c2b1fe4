//! The image features a plan carries: how the image definition is made (security type, architecture,
//! disk controllers, descriptive properties) and how the version is published (end of life, replica
//! counts, replication mode, encryption, safety profile, data disks). Field names follow Azure's
//! Compute Gallery API, so these serialize straight into the request bodies.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::BlobRef;

/// The CPU architecture of the image definition (immutable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Architecture {
    #[serde(rename = "x64")]
    X64,
    Arm64,
}

/// The `SecurityType` feature of the image definition (immutable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecurityType {
    Standard,
    TrustedLaunch,
    TrustedLaunchSupported,
    #[serde(rename = "ConfidentialVM")]
    ConfidentialVm,
    ConfidentialVmSupported,
    TrustedLaunchAndConfidentialVmSupported,
}

impl SecurityType {
    /// Security types Azure allows only on Hyper-V generation 2 (UEFI) images.
    pub fn needs_generation_2(self) -> bool {
        !matches!(self, SecurityType::Standard)
    }

    /// Security types that make confidential VMs.
    pub fn is_confidential(self) -> bool {
        matches!(
            self,
            SecurityType::ConfidentialVm
                | SecurityType::ConfidentialVmSupported
                | SecurityType::TrustedLaunchAndConfidentialVmSupported
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SecurityType::Standard => "Standard",
            SecurityType::TrustedLaunch => "TrustedLaunch",
            SecurityType::TrustedLaunchSupported => "TrustedLaunchSupported",
            SecurityType::ConfidentialVm => "ConfidentialVM",
            SecurityType::ConfidentialVmSupported => "ConfidentialVmSupported",
            SecurityType::TrustedLaunchAndConfidentialVmSupported => {
                "TrustedLaunchAndConfidentialVmSupported"
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum DiskController {
    #[serde(rename = "SCSI")]
    Scsi,
    #[serde(rename = "NVMe")]
    Nvme,
}

impl DiskController {
    pub fn as_str(self) -> &'static str {
        match self {
            DiskController::Scsi => "SCSI",
            DiskController::Nvme => "NVMe",
        }
    }
}

/// A range of recommended resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceRange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recommended {
    #[serde(rename = "vCPUs", default, skip_serializing_if = "Option::is_none")]
    pub v_cpus: Option<ResourceRange>,
    /// GiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ResourceRange>,
}

/// A Marketplace purchase plan (immutable).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurchasePlan {
    pub name: String,
    pub publisher: String,
    pub product: String,
}

/// How galleon makes the image definition when it is missing. Every field is optional: left out, Azure's
/// default applies. The immutable ones (architecture, features, purchase plan) must match an existing
/// definition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DefinitionSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<Architecture>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_type: Option<SecurityType>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disk_controller_types: Vec<DiskController>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accelerated_networking: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hibernation: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eula: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_note_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy_statement_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommended: Option<Recommended>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disallowed_disk_types: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purchase_plan: Option<PurchasePlan>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_of_life_date: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

impl DefinitionSpec {
    pub fn is_empty(&self) -> bool {
        self == &DefinitionSpec::default()
    }

    /// The `features` list Azure takes, in a fixed order.
    pub fn features(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(s) = self.security_type {
            out.push(("SecurityType", s.as_str().to_owned()));
        }
        if !self.disk_controller_types.is_empty() {
            let names: Vec<&str> = self
                .disk_controller_types
                .iter()
                .map(|d| d.as_str())
                .collect();
            out.push(("DiskControllerTypes", names.join(", ")));
        }
        if let Some(b) = self.accelerated_networking {
            out.push(("IsAcceleratedNetworkSupported", capitalized(b)));
        }
        if let Some(b) = self.hibernation {
            out.push(("IsHibernateSupported", capitalized(b)));
        }
        out
    }
}

fn capitalized(b: bool) -> String {
    if b { "True" } else { "False" }.to_owned()
}

/// Whether the version may be deleted before its end of life, or from replicated regions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SafetyProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_deletion_of_replicated_locations: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_deletion_before_end_of_life: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicationMode {
    Full,
    /// Only to the source region, without copying the disk: for test images.
    Shallow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostCaching {
    None,
    ReadOnly,
    ReadWrite,
}

/// A data disk of the version: its VHD (checked like the OS disk's) and its LUN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataDisk {
    pub lun: u32,
    pub vhd: BlobRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_caching: Option<HostCaching>,
}

/// How the version is published, beyond its regions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_of_life_date: Option<DateTime<Utc>>,
    /// Replicas per region where a region names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_mode: Option<ReplicationMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_profile: Option<SafetyProfile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_caching: Option<HostCaching>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_disks: Vec<DataDisk>,
}

impl VersionSpec {
    pub fn is_empty(&self) -> bool {
        self == &VersionSpec::default()
    }
}

/// A region's encryption with customer-managed keys (disk encryption sets).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Encryption {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_disk_image: Option<OsDiskEncryption>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_disk_images: Vec<DataDiskEncryption>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OsDiskEncryption {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_encryption_set_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_profile: Option<ConfidentialEncryption>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfidentialEncryption {
    #[serde(
        rename = "confidentialVMEncryptionType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub confidential_vm_encryption_type: Option<ConfidentialVmEncryptionType>,
    #[serde(
        rename = "secureVMDiskEncryptionSetId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub secure_vm_disk_encryption_set_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfidentialVmEncryptionType {
    EncryptedVMGuestStateOnlyWithPmk,
    EncryptedWithPmk,
    EncryptedWithCmk,
    NonPersistedTPM,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DataDiskEncryption {
    pub lun: u32,
    pub disk_encryption_set_id: String,
}
