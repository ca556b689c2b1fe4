//! Cross-subscription distribution, decided: the galleries in other subscriptions (and tenants) every
//! ready image is also published to (`GALLEON_DISTRIBUTION`), each checked at start-up against the
//! allow-list, and the plan of a target's copy of a version.

use serde::Deserialize;

use super::{naming, policy};
use crate::events::{Plan, TargetRegion};

/// A gallery an image is distributed to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Target {
    pub subscription_id: String,
    pub resource_group: String,
    pub gallery: String,
    /// The target's tenant, when it is not galleon's: Resource Manager then needs a token of that tenant
    /// and one of the source's tenant in `x-ms-authorization-auxiliary`.
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// Where the target's copy is replicated, its home region first (default: the source's regions).
    #[serde(default)]
    pub regions: Vec<Region>,
    /// Replicas in each of the target's regions that names none (default: 1 in a region the target
    /// names, the source's count in the source's regions).
    #[serde(default)]
    pub replica_count: Option<u32>,
    /// Storage account type of each of the target's regions that names none (default: Azure's in a
    /// region the target names, the source's in the source's regions).
    #[serde(default)]
    pub storage_account_type: Option<String>,
}

/// One of a target's regions: a name (`"eastus2"`), or the name with its own replication
/// (`{"name": "eastus2", "regionalReplicaCount": 2, "storageAccountType": "Standard_ZRS"}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "serde_json::Value")]
pub struct Region {
    pub name: String,
    pub regional_replica_count: Option<u32>,
    pub storage_account_type: Option<String>,
}

/// A region given as an object, as the manifest's target regions are.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RegionFields {
    name: String,
    #[serde(default)]
    regional_replica_count: Option<u32>,
    #[serde(default)]
    storage_account_type: Option<String>,
}

impl TryFrom<serde_json::Value> for Region {
    type Error = String;

    fn try_from(value: serde_json::Value) -> Result<Region, String> {
        if let serde_json::Value::String(name) = value {
            return Ok(Region {
                name,
                ..Region::default()
            });
        }
        let f: RegionFields = serde_json::from_value(value).map_err(|e| {
            format!("a region is a name or {{name, regionalReplicaCount, storageAccountType}}: {e}")
        })?;
        Ok(Region {
            name: f.name,
            regional_replica_count: f.regional_replica_count,
            storage_account_type: f.storage_account_type,
        })
    }
}

impl Target {
    /// A short name for facts and logs: `<subscription>/<resource group>/<gallery>`.
    pub fn name(&self) -> String {
        format!(
            "{}/{}/{}",
            self.subscription_id, self.resource_group, self.gallery
        )
    }
}

/// Reads `GALLEON_DISTRIBUTION` (a JSON list of targets); `Err` names the target and what is wrong.
pub fn parse(text: &str, allowed: &policy::Policy) -> Result<Vec<Target>, String> {
    let mut targets: Vec<Target> = serde_json::from_str(text)
        .map_err(|e| format!("is not a list of distribution targets: {e}"))?;
    for (n, t) in targets.iter_mut().enumerate() {
        let which = format!("target {} ({})", n + 1, t.name());
        if uuid::Uuid::parse_str(&t.subscription_id).is_err() {
            return Err(format!("{which}: subscriptionId is not a GUID"));
        }
        if t.tenant_id
            .as_deref()
            .is_some_and(|id| uuid::Uuid::parse_str(id).is_err())
        {
            return Err(format!("{which}: tenantId is not a GUID"));
        }
        if !naming::resource_group_ok(&t.resource_group) || naming::gallery(&t.gallery).is_err() {
            return Err(format!(
                "{which}: the resource group or gallery name is not one Azure accepts"
            ));
        }
        replication(t).map_err(|e| format!("{which}: {e}"))?;
        if !allowed.allows(&t.subscription_id, &t.resource_group, &t.gallery) {
            return Err(format!(
                "{which} is not on the allow-list (GALLEON_ALLOWED_GALLERIES): add it there, or take it out"
            ));
        }
        if t.subscription_id
            .eq_ignore_ascii_case(&allowed.subscription_id)
            && t.resource_group
                .eq_ignore_ascii_case(&allowed.resource_group)
            && t.gallery.eq_ignore_ascii_case(&allowed.gallery)
        {
            return Err(format!("{which} is the default gallery itself"));
        }
    }
    Ok(targets)
}

/// Checks a target's regions and replication, and writes them as Azure spells them (region names in
/// lower case, storage account types in their own case); `Err` says what is wrong and the fix.
fn replication(t: &mut Target) -> Result<(), String> {
    const FIX: &str =
        "give 1 to 100 replicas and Standard_LRS, Standard_ZRS, Premium_LRS or PremiumV2_LRS";
    let count = |what: &str, n: Option<u32>| match n {
        Some(n) if !(1..=100).contains(&n) => Err(format!("{what} {n} is outside 1-100: {FIX}")),
        _ => Ok(()),
    };
    let storage = |s: &mut Option<String>| -> Result<(), String> {
        if let Some(text) = s.as_deref() {
            *s = Some(policy::storage_type(text).map_err(|e| format!("{e}: {FIX}"))?);
        }
        Ok(())
    };
    count("replicaCount", t.replica_count)?;
    storage(&mut t.storage_account_type)?;
    let mut seen: Vec<String> = Vec::new();
    for r in &mut t.regions {
        r.name = r.name.to_ascii_lowercase();
        if !policy::region_name_ok(&r.name) {
            return Err(format!(
                "'{}' is not a region name: use ARM region names, like westeurope",
                r.name
            ));
        }
        if seen.contains(&r.name) {
            return Err(format!("region {} is listed twice: list it once", r.name));
        }
        seen.push(r.name.clone());
        count(
            &format!("regionalReplicaCount of {}", r.name),
            r.regional_replica_count,
        )?;
        storage(&mut r.storage_account_type)?;
    }
    Ok(())
}

/// How galleon reaches targets in other tenants: a multi-tenant app registration (`GALLEON_CROSS_TENANT_CLIENT_ID`)
/// that trusts galleon's managed identity through a federated credential, galleon's own tenant
/// (`GALLEON_TENANT_ID`), and which subscription is in which other tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrossTenant {
    pub client_id: String,
    pub home_tenant: String,
    /// (subscription, tenant) of every target in another tenant, lower case.
    pub subscriptions: Vec<(String, String)>,
}

impl CrossTenant {
    /// The other tenant `subscription` is in, when it is one of the targets'.
    pub fn tenant_of(&self, subscription: &str) -> Option<&str> {
        self.subscriptions
            .iter()
            .find(|(s, _)| s.eq_ignore_ascii_case(subscription))
            .map(|(_, t)| t.as_str())
    }
}

/// Decides how targets in other tenants are reached (`None`: every target is in galleon's tenant). `Err`
/// names the setting that is missing or wrong, and why.
pub fn cross_tenant(
    targets: &[Target],
    client_id: Option<&str>,
    home_tenant: Option<&str>,
) -> Result<Option<CrossTenant>, (&'static str, String)> {
    let guid = |setting: &'static str, v: Option<&str>| match v.map(str::trim) {
        Some(v) if uuid::Uuid::parse_str(v).is_err() => {
            Err((setting, format!("'{v}' is not a GUID")))
        }
        v => Ok(v.map(str::to_ascii_lowercase)),
    };
    let client_id = guid("GALLEON_CROSS_TENANT_CLIENT_ID", client_id)?;
    let home = guid("GALLEON_TENANT_ID", home_tenant)?;
    let foreign: Vec<&Target> = targets
        .iter()
        .filter(|t| {
            t.tenant_id
                .as_deref()
                .is_some_and(|id| home.as_deref() != Some(id.to_ascii_lowercase().as_str()))
        })
        .collect();
    let Some(first) = foreign.first() else {
        return Ok(None);
    };
    let Some(home_tenant) = home else {
        return Err((
            "GALLEON_TENANT_ID",
            format!(
                "target {} is in tenant {}: name galleon's own tenant (the directory id of its managed identity) so the source's tenant can go in the auxiliary token",
                first.name(),
                first.tenant_id.as_deref().unwrap_or_default()
            ),
        ));
    };
    let Some(client_id) = client_id else {
        return Err((
            "GALLEON_CROSS_TENANT_CLIENT_ID",
            format!(
                "target {} is in another tenant ({}): name the multi-tenant app registration that reaches it (docs/cross-tenant.md)",
                first.name(),
                first.tenant_id.as_deref().unwrap_or_default()
            ),
        ));
    };
    Ok(Some(CrossTenant {
        client_id,
        home_tenant,
        subscriptions: foreign
            .iter()
            .map(|t| {
                (
                    t.subscription_id.to_ascii_lowercase(),
                    t.tenant_id.clone().unwrap_or_default().to_ascii_lowercase(),
                )
            })
            .collect(),
    }))
}

/// The plan of the target's copy: the same definition name, version and image, in the target's gallery
/// and regions, each region replicated as the target says (a region's own count and storage type, else
/// the target's, else the source's region's or Azure's default).
pub fn target_plan(source: &Plan, target: &Target, source_version_id: &str) -> Plan {
    // A region the target names without a count takes the version's replica count, as the source's did.
    let replicas = source.publishing.replica_count.unwrap_or(1);
    let own = |base: TargetRegion, count: Option<u32>, storage: Option<&String>| TargetRegion {
        regional_replica_count: count
            .or(target.replica_count)
            .unwrap_or(base.regional_replica_count),
        storage_account_type: storage
            .or(target.storage_account_type.as_ref())
            .cloned()
            .or(base.storage_account_type),
        ..base
    };
    let regions: Vec<TargetRegion> = if target.regions.is_empty() {
        source
            .target_regions
            .iter()
            .map(|r| own(r.clone(), None, None))
            .collect()
    } else {
        target
            .regions
            .iter()
            .map(|r| {
                let base = TargetRegion {
                    name: r.name.to_ascii_lowercase(),
                    regional_replica_count: replicas,
                    ..TargetRegion::default()
                };
                own(
                    base,
                    r.regional_replica_count,
                    r.storage_account_type.as_ref(),
                )
            })
            .collect()
    };
    let location = regions
        .first()
        .map_or_else(|| source.location.clone(), |r| r.name.clone());
    Plan {
        subscription_id: target.subscription_id.clone(),
        resource_group: target.resource_group.clone(),
        gallery: target.gallery.clone(),
        target_regions: policy::home_first(&location, &regions, replicas),
        location,
        storage_account_id: String::new(),
        publish_from: crate::events::PublishFrom::ManagedImage,
        // The target definition is made as a copy of the source's; nothing more is stated.
        definition: Default::default(),
        publishing: crate::events::VersionSpec {
            data_disks: Vec::new(),
            ..source.publishing.clone()
        },
        distributed_from: Some(source_version_id.to_owned()),
        ..source.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> policy::Policy {
        policy::for_tests()
    }

    #[test]
    fn targets_are_checked_at_start_up() {
        let p = policy();
        let ok = r#"[{"subscriptionId": "11111111-2222-3333-4444-555555555555", "resourceGroup": "rg-team", "gallery": "shared",
            "tenantId": "99999999-2222-3333-4444-555555555555", "regions": ["eastus2", "westus3"]}]"#;
        let targets = parse(ok, &p).expect("valid");
        let names: Vec<&str> = targets[0].regions.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["eastus2", "westus3"]);
        for (text, want) in [
            (
                r#"[{"subscriptionId": "nope", "resourceGroup": "r", "gallery": "shared"}]"#,
                "not a GUID",
            ),
            (
                r#"[{"subscriptionId": "11111111-2222-3333-4444-555555555555", "resourceGroup": "r", "gallery": "shared", "tenantId": "contoso"}]"#,
                "tenantId is not a GUID",
            ),
            (
                r#"[{"subscriptionId": "11111111-2222-3333-4444-555555555555", "resourceGroup": "r", "gallery": "other"}]"#,
                "not on the allow-list",
            ),
            (
                r#"[{"subscriptionId": "11111111-2222-3333-4444-555555555555", "resourceGroup": "r", "gallery": "shared", "regions": ["west europe!"]}]"#,
                "not a region",
            ),
            (
                r#"[{"subscriptionId": "8c3e1f7a-2b4d-4e5f-9a6b-7c8d9e0f1a2b", "resourceGroup": "rg-images", "gallery": "golden"}]"#,
                "default gallery itself",
            ),
            (r#"{"targets": []}"#, "not a list"),
        ] {
            assert!(parse(text, &p).is_err_and(|e| e.contains(want)), "{text}");
        }
    }

    const TEAM: &str = r#""subscriptionId": "11111111-2222-3333-4444-555555555555", "resourceGroup": "r", "gallery": "shared""#;

    #[test]
    fn a_targets_replication_is_checked_at_start_up_and_names_the_fix() {
        let p = policy();
        let ok = format!(
            r#"[{{{TEAM}, "replicaCount": 2, "storageAccountType": "standard_zrs",
            "regions": ["NorthEurope", {{"name": "eastus2", "regionalReplicaCount": 3, "storageAccountType": "premium_lrs"}}]}}]"#
        );
        let t = &parse(&ok, &p).expect("valid")[0];
        assert_eq!(t.replica_count, Some(2));
        assert_eq!(t.storage_account_type.as_deref(), Some("Standard_ZRS"));
        assert_eq!(
            t.regions,
            [
                Region {
                    name: "northeurope".into(),
                    ..Region::default()
                },
                Region {
                    name: "eastus2".into(),
                    regional_replica_count: Some(3),
                    storage_account_type: Some("Premium_LRS".into()),
                }
            ]
        );
        for (fields, want) in [
            (r#""replicaCount": 0"#, "replicaCount 0 is outside 1-100"),
            (r#""replicaCount": 101"#, "give 1 to 100 replicas"),
            (r#""storageAccountType": "Premium_ZRS""#, "'Premium_ZRS'"),
            (
                r#""regions": [{"name": "eastus2", "regionalReplicaCount": 0}]"#,
                "regionalReplicaCount of eastus2 0 is outside 1-100",
            ),
            (
                r#""regions": [{"name": "eastus2", "storageAccountType": "StandardSSD_LRS"}]"#,
                "Standard_LRS, Standard_ZRS, Premium_LRS or PremiumV2_LRS",
            ),
            (r#""regions": ["eastus2", "EastUS2"]"#, "listed twice"),
            (
                r#""regions": [{"name": "eastus2", "replicas": 2}]"#,
                "unknown field",
            ),
            (
                r#""regions": [{"regionalReplicaCount": 2}]"#,
                "missing field",
            ),
            (r#""regions": [2]"#, "a region is a name or"),
        ] {
            let text = format!("[{{{TEAM}, {fields}}}]");
            let e = parse(&text, &p).expect_err(&text);
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn a_targets_copy_is_replicated_as_the_target_says() {
        let p = policy();
        let example: serde_json::Value = serde_json::from_str(include_str!(
            "../../../../events/vhd.accepted.v1.example.json"
        ))
        .unwrap_or_default();
        let mut source: Plan = serde_json::from_value(example["data"]["plan"].clone())
            .unwrap_or_else(|e| panic!("example plan: {e}"));
        source.target_regions = policy::parse_regions("westeurope=3:Standard_ZRS,northeurope=2")
            .expect("regions")
            .into_iter()
            .map(|r| TargetRegion {
                name: r.name,
                regional_replica_count: r.replicas.unwrap_or(1),
                storage_account_type: r.storage_account_type,
                ..TargetRegion::default()
            })
            .collect();
        let plan_of = |fields: &str| {
            let text = format!("[{{{TEAM}, {fields}}}]");
            let targets = parse(&text, &p).expect("valid");
            target_plan(&source, &targets[0], "/source")
                .target_regions
                .iter()
                .map(|r| {
                    (
                        r.name.clone(),
                        r.regional_replica_count,
                        r.storage_account_type.clone().unwrap_or_default(),
                    )
                })
                .collect::<Vec<_>>()
        };
        let r = |name: &str, n: u32, sat: &str| (name.to_owned(), n, sat.to_owned());
        // Nothing said: the source's regions, as the source replicates them.
        assert_eq!(
            plan_of(r#""regions": []"#),
            [r("westeurope", 3, "Standard_ZRS"), r("northeurope", 2, "")]
        );
        // The target's own count and type, over the source's regions.
        assert_eq!(
            plan_of(r#""replicaCount": 1, "storageAccountType": "Premium_LRS""#),
            [
                r("westeurope", 1, "Premium_LRS"),
                r("northeurope", 1, "Premium_LRS")
            ]
        );
        // Its own regions: a region's own values first, then the target's, then the version's count (1 when
        // unset) and Azure's default type.
        assert_eq!(
            plan_of(
                r#""replicaCount": 2, "regions": [{"name": "eastus2", "regionalReplicaCount": 4, "storageAccountType": "Standard_LRS"}, "westus3"]"#
            ),
            [r("eastus2", 4, "Standard_LRS"), r("westus3", 2, "")]
        );
        assert_eq!(
            plan_of(r#""storageAccountType": "Standard_ZRS", "regions": ["eastus2"]"#),
            [r("eastus2", 1, "Standard_ZRS")]
        );
    }

    #[test]
    fn targets_in_other_tenants_need_the_app_and_the_home_tenant() {
        const HOME: &str = "5f1c3e2a-7b4d-4c8e-9a61-0d2b9e4f7a10";
        const OTHER: &str = "99999999-2222-3333-4444-555555555555";
        const APP: &str = "3c9a7e21-5b4d-4f6a-9e08-1d2c3b4a5f60";
        let target = |tenant: Option<&str>| Target {
            subscription_id: "11111111-2222-3333-4444-555555555555".into(),
            resource_group: "rg-team".into(),
            gallery: "shared".into(),
            tenant_id: tenant.map(Into::into),
            regions: Vec::new(),
            replica_count: None,
            storage_account_type: None,
        };
        // No other tenant: nothing needed, whatever is set.
        assert_eq!(cross_tenant(&[target(None)], None, None), Ok(None));
        assert_eq!(
            cross_tenant(&[target(Some(HOME))], None, Some(HOME)),
            Ok(None)
        );
        // Another tenant: both settings, each named when missing or malformed.
        let other = [target(None), target(Some(&OTHER.to_uppercase()))];
        let cross = cross_tenant(&other, Some(APP), Some(HOME))
            .expect("valid")
            .expect("cross-tenant");
        assert_eq!(cross.client_id, APP);
        assert_eq!(cross.home_tenant, HOME);
        assert_eq!(
            cross.tenant_of("11111111-2222-3333-4444-555555555555"),
            Some(OTHER)
        );
        assert_eq!(
            cross.tenant_of("22222222-2222-3333-4444-555555555555"),
            None
        );
        for (client, home, setting, says) in [
            (Some(APP), None, "GALLEON_TENANT_ID", "galleon's own tenant"),
            (
                None,
                Some(HOME),
                "GALLEON_CROSS_TENANT_CLIENT_ID",
                "multi-tenant app",
            ),
            (
                Some("app"),
                Some(HOME),
                "GALLEON_CROSS_TENANT_CLIENT_ID",
                "not a GUID",
            ),
            (
                Some(APP),
                Some("contoso"),
                "GALLEON_TENANT_ID",
                "not a GUID",
            ),
        ] {
            let e = cross_tenant(&other, client, home).expect_err("refused");
            assert_eq!(e.0, setting);
            assert!(e.1.contains(says), "{e:?}");
        }
    }
}
