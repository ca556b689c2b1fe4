//! The manifest: a small JSON blob written after the VHD, saying which VHD to publish and how. It is the
//! commit signal (a page blob fires BlobCreated before its pages are written). Parsing and validation are
//! pure; each refusal is a [`Reason`] naming the field and the fix. Schema: `events/manifest.schema.json`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{naming, policy};
use crate::events::{
    Architecture, BlobRef, DataDisk, DefinitionSpec, DiskController, Encryption, HostCaching,
    HyperVGeneration, Identifier, OsState, OsType, Plan, PublishFrom, PurchasePlan, Reason,
    Recommended, ReplicationMode, SafetyProfile, SecurityType, TargetRegion, VersionSpec,
};

/// Largest manifest read, in bytes.
pub const MAX_MANIFEST_BYTES: u64 = 64 * 1024;
/// Blob names ending like this are manifests.
pub const SUFFIX: &str = ".manifest.json";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManifestRegion {
    pub name: String,
    #[serde(default)]
    pub regional_replica_count: Option<u32>,
    #[serde(default)]
    pub storage_account_type: Option<String>,
    #[serde(default)]
    pub exclude_from_latest: Option<bool>,
    #[serde(default)]
    pub encryption: Option<Encryption>,
}

/// A data disk as the manifest names it: a VHD next to the manifest, and its LUN.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManifestDataDisk {
    pub vhd: String,
    pub lun: u32,
    #[serde(default)]
    pub host_caching: Option<HostCaching>,
}

/// The image definition's descriptive properties, used when galleon makes it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManifestDefinition {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub eula: Option<String>,
    #[serde(default)]
    pub release_note_uri: Option<String>,
    #[serde(default)]
    pub privacy_statement_uri: Option<String>,
    #[serde(default)]
    pub recommended: Option<Recommended>,
    #[serde(default)]
    pub disallowed_disk_types: Vec<String>,
    #[serde(default)]
    pub purchase_plan: Option<PurchasePlan>,
    #[serde(default)]
    pub end_of_life_date: Option<DateTime<Utc>>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// What a manifest says, as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Manifest {
    #[serde(rename = "$schema", default)]
    pub schema: Option<String>,
    /// The VHD, relative to the manifest's folder (`disk.vhd`, `../builds/disk.vhd` is refused).
    #[serde(default)]
    pub vhd: Option<String>,
    /// Instead of a VHD: a managed image made elsewhere (Packer's `managed_image_name`), by resource id.
    #[serde(default)]
    pub managed_image: Option<String>,
    pub image_definition: String,
    pub os_type: OsType,
    pub hyper_v_generation: HyperVGeneration,
    #[serde(default)]
    pub os_state: Option<OsState>,
    #[serde(default)]
    pub gallery: Option<String>,
    #[serde(default)]
    pub resource_group: Option<String>,
    #[serde(default)]
    pub subscription_id: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub identifier: Option<Identifier>,
    #[serde(default)]
    pub target_regions: Option<Vec<ManifestRegion>>,
    #[serde(default)]
    pub publish_from: Option<PublishFrom>,
    #[serde(default)]
    pub exclude_from_latest: bool,
    #[serde(default)]
    pub allow_generation_mismatch: bool,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    // Image definition features (immutable once the definition exists).
    #[serde(default)]
    pub architecture: Option<Architecture>,
    #[serde(default)]
    pub security_type: Option<SecurityType>,
    #[serde(default)]
    pub disk_controller_types: Option<Vec<DiskController>>,
    #[serde(default)]
    pub accelerated_networking: Option<bool>,
    #[serde(default)]
    pub hibernation: Option<bool>,
    #[serde(default)]
    pub definition: Option<ManifestDefinition>,
    // The version.
    #[serde(default)]
    pub end_of_life_date: Option<DateTime<Utc>>,
    #[serde(default)]
    pub replica_count: Option<u32>,
    #[serde(default)]
    pub replication_mode: Option<ReplicationMode>,
    #[serde(default)]
    pub safety_profile: Option<SafetyProfile>,
    #[serde(default)]
    pub host_caching: Option<HostCaching>,
    #[serde(default)]
    pub data_disks: Vec<ManifestDataDisk>,
}

fn reason(code: &str, message: impl Into<String>, fix: impl Into<String>) -> Reason {
    Reason {
        code: code.to_owned(),
        message: message.into(),
        fix: fix.into(),
    }
}

/// Whether `id` is a managed image's resource id (`Microsoft.Compute/images`).
pub fn is_managed_image_id(id: &str) -> bool {
    let p: Vec<&str> = id.trim_start_matches('/').split('/').collect();
    id.starts_with('/')
        && p.len() == 8
        && p[0].eq_ignore_ascii_case("subscriptions")
        && p[2].eq_ignore_ascii_case("resourceGroups")
        && p[4].eq_ignore_ascii_case("providers")
        && p[5].eq_ignore_ascii_case("Microsoft.Compute")
        && p[6].eq_ignore_ascii_case("images")
        && p.iter().all(|s| !s.is_empty())
}

/// Whether a blob name is a manifest.
pub fn is_manifest(blob_name: &str) -> bool {
    blob_name.ends_with(SUFFIX)
}

impl Manifest {
    pub fn parse(text: &[u8], name: &str) -> Result<Manifest, Reason> {
        let value: serde_json::Value = serde_json::from_slice(text).map_err(|e| {
            reason(
                "ManifestNotJson",
                format!("{name} is not JSON: {e}"),
                "Write the manifest as a JSON object (see events/manifest.schema.json) and upload it again after the VHD.",
            )
        })?;
        let manifest: Manifest = serde_json::from_value(value).map_err(|e| {
            reason(
                "ManifestInvalid",
                format!("{name} does not match the manifest schema: {e}"),
                "Fix the field named above; required are vhd (or managedImage), imageDefinition, osType and hyperVGeneration (events/manifest.schema.json lists every field).",
            )
        })?;
        let source_fix = "Name the disk with \"vhd\" (a VHD next to the manifest) or the image with \"managedImage\" (a managed image's resource id), not both.";
        match (&manifest.vhd, &manifest.managed_image) {
            (Some(_), None) => Ok(manifest),
            (None, Some(id)) if !is_managed_image_id(id) => Err(reason(
                "ManifestInvalid",
                format!("{name}: managedImage '{id}' is not a managed image's resource id"),
                "Give the id as /subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.Compute/images/<name> (az image show --query id).",
            )),
            (None, Some(_)) if !manifest.data_disks.is_empty() => Err(reason(
                "ManifestInvalid",
                format!("{name} names data disks and a managed image"),
                "A managed image holds its data disks already: leave dataDisks out.",
            )),
            (None, Some(_)) => Ok(manifest),
            (None, None) => Err(reason(
                "ManifestInvalid",
                format!("{name} names no disk"),
                source_fix,
            )),
            (Some(_), Some(_)) => Err(reason(
                "ManifestInvalid",
                format!("{name} names both a VHD and a managed image"),
                source_fix,
            )),
        }
    }

    /// The VHD's URL: the manifest's folder joined with `vhd`. Only plain relative names inside that folder
    /// tree are followed, so a manifest cannot point galleon at another container or account.
    pub fn vhd_url(&self, manifest_url: &str) -> Result<String, Reason> {
        relative_vhd_url(self.vhd.as_deref().unwrap_or_default(), manifest_url)
    }

    /// The data disks' VHD URLs, by LUN, resolved like [`Manifest::vhd_url`].
    pub fn data_disk_urls(&self, manifest_url: &str) -> Result<Vec<(u32, String)>, Reason> {
        self.data_disks
            .iter()
            .map(|d| Ok((d.lun, relative_vhd_url(&d.vhd, manifest_url)?)))
            .collect()
    }
}

fn relative_vhd_url(vhd: &str, manifest_url: &str) -> Result<String, Reason> {
    {
        let bad = |why: &str| {
            reason(
                "ManifestVhdPath",
                format!("vhd '{vhd}' {why}"),
                "Name the VHD relative to the manifest's folder, e.g. \"vhd\": \"ubuntu-2404.vhd\" or \"disks/ubuntu-2404.vhd\".",
            )
        };
        let path = vhd;
        if path.is_empty()
            || path.starts_with('/')
            || path.contains("://")
            || path.contains('?')
            || path.contains('#')
            || path.contains('\\')
        {
            return Err(bad("must be a relative blob name"));
        }
        if path
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        {
            return Err(bad("must not contain empty, '.' or '..' segments"));
        }
        if !path.to_ascii_lowercase().ends_with(".vhd") {
            return Err(bad("must name a .vhd blob"));
        }
        let base = manifest_url.split('?').next().unwrap_or(manifest_url);
        let folder = base.rsplit_once('/').map(|(f, _)| f).unwrap_or(base);
        Ok(format!("{folder}/{path}"))
    }
}

impl Manifest {
    /// The publication plan: the manifest's choices, the policy's defaults, the allow-list enforced, every
    /// name checked with Azure's rules, the image features' rules kept ([`super::features::check`]).
    /// `vhd_created` sets the version when the manifest gives none; data disks are resolved next to
    /// `manifest_url` (their ETags and sizes are filled in when they are checked).
    pub fn plan(
        &self,
        policy: &policy::Policy,
        storage_account_id: &str,
        manifest_url: &str,
        vhd_created: DateTime<Utc>,
    ) -> Result<Plan, Reason> {
        let subscription_id = self
            .subscription_id
            .clone()
            .unwrap_or_else(|| policy.subscription_id.clone());
        let resource_group = self
            .resource_group
            .clone()
            .unwrap_or_else(|| policy.resource_group.clone());
        let gallery = self
            .gallery
            .clone()
            .unwrap_or_else(|| policy.gallery.clone());
        let name_fix = "Use a name Azure accepts (galleries: letters, digits, '_' and '.'; image definitions also '-'; up to 80 characters).";
        naming::gallery(&gallery).map_err(|e| reason("NameInvalid", e.to_string(), name_fix))?;
        naming::image_definition(&self.image_definition)
            .map_err(|e| reason("NameInvalid", e.to_string(), name_fix))?;
        if !naming::resource_group_ok(&resource_group) {
            return Err(reason(
                "NameInvalid",
                format!("resource group name '{resource_group}' is invalid"),
                name_fix,
            ));
        }
        if uuid::Uuid::parse_str(&subscription_id).is_err() {
            return Err(reason(
                "NameInvalid",
                format!("subscriptionId '{subscription_id}' is not a GUID"),
                "Give the subscription id as a GUID.",
            ));
        }
        if !policy.allows(&subscription_id, &resource_group, &gallery) {
            return Err(reason(
                "GalleryNotAllowed",
                format!(
                    "the manifest asks to publish to gallery {subscription_id}/{resource_group}/{gallery}, which is not on galleon's allow-list"
                ),
                "Publish to an allowed gallery, or ask the operators to add it to GALLEON_ALLOWED_GALLERIES.",
            ));
        }
        let tag_fix = "Give at most 44 tags (the definition's: 50) with names Azure accepts (no <, >, %, &, \\, ?, /, up to 512 characters) and values of up to 256 characters, none named as galleon's own (galleon-run, galleon-source, galleon-source-etag, galleon-managed).";
        super::tags::check(
            &self.tags,
            super::tags::OWNERSHIP.len() + super::tags::MARKS,
        )
        .map_err(|m| reason("TagsInvalid", format!("tags: {m}"), tag_fix))?;
        if let Some(d) = &self.definition {
            super::tags::check(&d.tags, 0)
                .map_err(|m| reason("TagsInvalid", format!("definition.tags: {m}"), tag_fix))?;
        }
        let version = match &self.version {
            Some(v) => v
                .parse::<naming::Version>()
                .map_err(|e| reason("VersionInvalid", e.to_string(), "Give the version as Major.Minor.Patch, e.g. 1.4.0, or leave it out to get YYYY.MMDD.HHMMSS of the upload."))?,
            None => naming::version_from_time(vhd_created),
        };
        // The version's replica count: a region without its own count takes it.
        let replicas = self.replica_count.or(policy.features.replica_count);
        let target_regions = match &self.target_regions {
            None => policy.target_regions_for(replicas),
            Some(list) => {
                let mut regions: Vec<TargetRegion> = Vec::new();
                for r in list {
                    let name = r.name.to_ascii_lowercase();
                    let fix = "Use ARM region names (westeurope), 1-100 replicas, and Standard_LRS, Standard_ZRS, Premium_LRS or PremiumV2_LRS.";
                    if !policy::region_name_ok(&name) || regions.iter().any(|x| x.name == name) {
                        return Err(reason(
                            "RegionInvalid",
                            format!("target region '{}' is invalid or listed twice", r.name),
                            fix,
                        ));
                    }
                    let count = r.regional_replica_count.unwrap_or(1);
                    if !(1..=100).contains(&count) {
                        return Err(reason(
                            "RegionInvalid",
                            format!("regionalReplicaCount {count} for {name} is outside 1-100"),
                            fix,
                        ));
                    }
                    let storage = match &r.storage_account_type {
                        Some(s) => Some(
                            policy::storage_type(s).map_err(|m| reason("RegionInvalid", m, fix))?,
                        ),
                        None => None,
                    };
                    regions.push(TargetRegion {
                        name,
                        regional_replica_count: r
                            .regional_replica_count
                            .or(replicas)
                            .unwrap_or(count),
                        storage_account_type: storage,
                        exclude_from_latest: r.exclude_from_latest,
                        encryption: r.encryption.clone(),
                    });
                }
                regions
            }
        };
        let identifier = self.identifier.clone().unwrap_or_else(|| Identifier {
            publisher: policy.publisher.clone(),
            offer: self.image_definition.clone(),
            sku: format!("{}-{:?}", self.image_definition, self.hyper_v_generation)
                .to_ascii_lowercase(),
        });
        let plan = Plan {
            subscription_id,
            resource_group,
            gallery,
            image_definition: self.image_definition.clone(),
            version: version.to_string(),
            location: policy.location.clone(),
            os_type: self.os_type,
            os_state: self.os_state.unwrap_or(OsState::Generalized),
            hyper_v_generation: self.hyper_v_generation,
            identifier,
            target_regions: policy::home_first(
                &policy.location,
                &target_regions,
                replicas.unwrap_or(1),
            ),
            publish_from: self.publish_from.unwrap_or(policy.publish_from),
            storage_account_id: storage_account_id.to_owned(),
            exclude_from_latest: self.exclude_from_latest,
            tags: self.tags.clone(),
            definition: self.definition_spec(policy),
            publishing: self.version_spec(policy, manifest_url, vhd_created)?,
            build: None,
            distributed_from: None,
        };
        super::features::check(&plan, vhd_created.max(Utc::now()))?;
        Ok(plan)
    }

    fn definition_spec(&self, policy: &policy::Policy) -> DefinitionSpec {
        let d = self.definition.clone().unwrap_or_default();
        let mut spec = DefinitionSpec {
            architecture: self.architecture,
            security_type: self.security_type,
            disk_controller_types: self.disk_controller_types.clone().unwrap_or_default(),
            accelerated_networking: self.accelerated_networking,
            hibernation: self.hibernation,
            description: d.description,
            eula: d.eula,
            release_note_uri: d.release_note_uri,
            privacy_statement_uri: d.privacy_statement_uri,
            recommended: d.recommended,
            disallowed_disk_types: d.disallowed_disk_types,
            purchase_plan: d.purchase_plan,
            end_of_life_date: d.end_of_life_date,
            tags: d.tags,
        };
        super::features::with_defaults(&mut spec, &policy.features);
        spec
    }

    fn version_spec(
        &self,
        policy: &policy::Policy,
        manifest_url: &str,
        published: DateTime<Utc>,
    ) -> Result<VersionSpec, Reason> {
        let lifetime = policy
            .features
            .version_lifetime_days
            .map(|days| published.max(Utc::now()) + chrono::Duration::days(i64::from(days)));
        let data_disks = self
            .data_disk_urls(manifest_url)?
            .into_iter()
            .zip(&self.data_disks)
            .map(|((lun, url), d)| DataDisk {
                lun,
                vhd: BlobRef {
                    url,
                    e_tag: String::new(),
                    content_length: 0,
                },
                host_caching: d.host_caching,
            })
            .collect();
        Ok(VersionSpec {
            end_of_life_date: self.end_of_life_date.or(lifetime),
            replica_count: self.replica_count.or(policy.features.replica_count),
            replication_mode: self.replication_mode,
            safety_profile: self.safety_profile,
            host_caching: self.host_caching,
            data_disks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const SUB: &str = "8c3e1f7a-2b4d-4e5f-9a6b-7c8d9e0f1a2b";

    fn policy() -> policy::Policy {
        policy::Policy {
            subscription_id: SUB.into(),
            resource_group: "rg-images".into(),
            gallery: "golden".into(),
            location: "westeurope".into(),
            target_regions: policy::parse_regions("westeurope,northeurope,eastus2")
                .expect("regions"),
            publish_from: PublishFrom::Vhd,
            publisher: "contoso".into(),
            allowed: vec![
                policy::GalleryScope::parse(&format!("{SUB}/rg-images/golden")).expect("scope"),
            ],
            features: policy::FeatureDefaults::default(),
        }
    }

    fn created() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 21, 10, 43, 1)
            .single()
            .expect("time")
    }

    const MANIFEST_URL: &str = "https://ingest.blob.core.windows.net/images/ubuntu/m.manifest.json";
    const ACCOUNT: &str = "/subscriptions/8c3e1f7a-2b4d-4e5f-9a6b-7c8d9e0f1a2b/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/ingest";

    fn plan_of(json: &str) -> Result<Plan, Reason> {
        Manifest::parse(json.as_bytes(), "m.manifest.json")?.plan(
            &policy(),
            ACCOUNT,
            MANIFEST_URL,
            created(),
        )
    }

    #[test]
    fn minimal_manifest_takes_the_policy_defaults() {
        let plan = plan_of(r#"{"vhd":"u.vhd","imageDefinition":"ubuntu-2404","osType":"Linux","hyperVGeneration":"V2"}"#).expect("valid");
        assert_eq!(plan.gallery, "golden");
        assert_eq!(plan.version, "2026.1121.104301");
        assert_eq!(
            plan.target_regions
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>(),
            ["westeurope", "northeurope", "eastus2"]
        );
        assert_eq!(plan.os_state, OsState::Generalized);
        assert_eq!(plan.identifier.publisher, "contoso");
        assert_eq!(plan.publish_from, PublishFrom::Vhd);
    }

    #[test]
    fn explicit_choices_win() {
        let plan = plan_of(r#"{"vhd":"u.vhd","imageDefinition":"ubuntu-2404","osType":"Linux","hyperVGeneration":"V1",
            "version":"1.4.0","publishFrom":"managedImage","targetRegions":[{"name":"eastus2","regionalReplicaCount":3,"storageAccountType":"standard_zrs"}],
            "identifier":{"publisher":"p","offer":"o","sku":"s"},"tags":{"build":"42"}}"#).expect("valid");
        assert_eq!(plan.version, "1.4.0");
        assert_eq!(plan.publish_from, PublishFrom::ManagedImage);
        assert_eq!(
            plan.target_regions[0].name, "westeurope",
            "home region first"
        );
        assert_eq!(plan.target_regions[1].regional_replica_count, 3);
        assert_eq!(
            plan.target_regions[1].storage_account_type.as_deref(),
            Some("Standard_ZRS")
        );
        assert_eq!(plan.tags["build"], "42");
    }

    #[test]
    fn refusals_name_the_cause() {
        let base = r#""vhd":"u.vhd","osType":"Linux","hyperVGeneration":"V2""#;
        let cases = [
            ("not json", "ManifestNotJson"),
            ("[1,2]", "ManifestInvalid"),
            (
                r#"{"vhd":"u.vhd","osType":"Linux","hyperVGeneration":"V2"}"#,
                "ManifestInvalid",
            ),
            (
                &format!(r#"{{{base},"imageDefinition":"x","osTYPE":"Linux"}}"#) as &str,
                "ManifestInvalid",
            ),
            (
                &format!(
                    r#"{{{base},"imageDefinition":"x","osType":"Linux","hyperVGeneration":"V3"}}"#
                ),
                "ManifestInvalid",
            ),
            (
                &format!(r#"{{{base},"imageDefinition":"ubuntu_2404!"}}"#),
                "NameInvalid",
            ),
            (
                &format!(r#"{{{base},"imageDefinition":"{}"}}"#, "d".repeat(81)),
                "NameInvalid",
            ),
            (
                &format!(r#"{{{base},"imageDefinition":"x","gallery":"my-gallery"}}"#),
                "NameInvalid",
            ),
            (
                &format!(r#"{{{base},"imageDefinition":"x","gallery":"elsewhere"}}"#),
                "GalleryNotAllowed",
            ),
            (
                &format!(r#"{{{base},"imageDefinition":"x","resourceGroup":"rg-other"}}"#),
                "GalleryNotAllowed",
            ),
            (
                &format!(r#"{{{base},"imageDefinition":"x","subscriptionId":"not-a-guid"}}"#),
                "NameInvalid",
            ),
            (
                &format!(r#"{{{base},"imageDefinition":"x","version":"1.0"}}"#),
                "VersionInvalid",
            ),
            (
                &format!(r#"{{{base},"imageDefinition":"x","version":"3000000000.0.0"}}"#),
                "VersionInvalid",
            ),
            (
                &format!(
                    r#"{{{base},"imageDefinition":"x","targetRegions":[{{"name":"West Europe"}}]}}"#
                ),
                "RegionInvalid",
            ),
            (
                &format!(
                    r#"{{{base},"imageDefinition":"x","targetRegions":[{{"name":"eastus","regionalReplicaCount":0}}]}}"#
                ),
                "RegionInvalid",
            ),
        ];
        for (text, code) in cases {
            let got = plan_of(text).expect_err(text);
            assert_eq!(got.code, code, "{text}: {got:?}");
            assert!(!got.fix.is_empty());
        }
    }

    #[test]
    fn vhd_paths_stay_inside_the_manifest_folder() {
        let manifest = |vhd: &str| {
            Manifest {
            vhd: Some(vhd.to_owned()),
            ..Manifest::parse(br#"{"vhd":"a.vhd","imageDefinition":"x","osType":"Linux","hyperVGeneration":"V2"}"#, "m").expect("valid")
        }
        };
        let url = "https://acct.blob.core.windows.net/images/ubuntu/u.manifest.json";
        assert_eq!(
            manifest("u.vhd").vhd_url(url).ok().as_deref(),
            Some("https://acct.blob.core.windows.net/images/ubuntu/u.vhd")
        );
        assert_eq!(
            manifest("disks/u.vhd").vhd_url(url).ok().as_deref(),
            Some("https://acct.blob.core.windows.net/images/ubuntu/disks/u.vhd")
        );
        for bad in [
            "../u.vhd",
            "/images/u.vhd",
            "https://evil/u.vhd",
            "u.vhd?sig=x",
            "a//u.vhd",
            "./u.vhd",
            "u.vhdx",
            "",
            "a\\u.vhd",
        ] {
            assert_eq!(
                manifest(bad).vhd_url(url).map_err(|r| r.code),
                Err("ManifestVhdPath".into()),
                "{bad:?}"
            );
        }
    }
}
