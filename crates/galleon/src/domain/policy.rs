//! Policies from settings: where galleon may write (the allow-list), and the defaults a manifest may
//! leave out (home region, target regions, replica counts, publishing path).

use crate::events::{Architecture, DiskController, PublishFrom, SecurityType, TargetRegion};

/// One allowed `subscription/resourceGroup/gallery`, each part a name or `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GalleryScope {
    pub subscription: String,
    pub resource_group: String,
    pub gallery: String,
}

impl GalleryScope {
    pub fn parse(text: &str) -> Result<GalleryScope, String> {
        let parts: Vec<&str> = text.trim().split('/').collect();
        match parts.as_slice() {
            [s, r, g] if !s.is_empty() && !r.is_empty() && !g.is_empty() => Ok(GalleryScope {
                subscription: (*s).to_owned(),
                resource_group: (*r).to_owned(),
                gallery: (*g).to_owned(),
            }),
            _ => Err(format!(
                "'{text}' is not subscription/resourceGroup/gallery (use * for any)"
            )),
        }
    }

    fn part_matches(pattern: &str, value: &str) -> bool {
        pattern == "*" || pattern.eq_ignore_ascii_case(value)
    }

    pub fn allows(&self, subscription: &str, resource_group: &str, gallery: &str) -> bool {
        Self::part_matches(&self.subscription, subscription)
            && Self::part_matches(&self.resource_group, resource_group)
            && Self::part_matches(&self.gallery, gallery)
    }
}

/// What galleon does when the input does not say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub subscription_id: String,
    pub resource_group: String,
    pub gallery: String,
    /// Home region: where the image, gallery and first replica live.
    pub location: String,
    /// Regions every version goes to, as the settings name them (see [`Policy::target_regions_for`]).
    pub target_regions: Vec<Region>,
    pub publish_from: PublishFrom,
    /// Identifier publisher for image definitions galleon creates.
    pub publisher: String,
    pub allowed: Vec<GalleryScope>,
    /// Image features a manifest may leave out.
    pub features: FeatureDefaults,
}

/// Image features from settings, for manifests (and bare VHDs) that say nothing of them; where the
/// settings say nothing either, Azure's default applies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeatureDefaults {
    /// `GALLEON_ARCHITECTURE`.
    pub architecture: Option<Architecture>,
    /// `GALLEON_SECURITY_TYPE`.
    pub security_type: Option<SecurityType>,
    /// `GALLEON_DISK_CONTROLLER_TYPES`.
    pub disk_controller_types: Vec<DiskController>,
    /// `GALLEON_REPLICA_COUNT`: the version's replica count (`publishingProfile.replicaCount`), which a
    /// region takes where neither the settings nor the manifest name its own.
    pub replica_count: Option<u32>,
    /// `GALLEON_VERSION_LIFETIME_DAYS`: a version's end of life, from its publication.
    pub version_lifetime_days: Option<u32>,
}

impl Policy {
    pub fn allows(&self, subscription: &str, resource_group: &str, gallery: &str) -> bool {
        self.allowed
            .iter()
            .any(|scope| scope.allows(subscription, resource_group, gallery))
    }

    /// The settings' regions for a version of `replica_count` replicas (`publishingProfile.replicaCount`;
    /// `None` is Azure's default, 1), the home region first: a region the settings give a count keeps it,
    /// the others take the version's.
    pub fn target_regions_for(&self, replica_count: Option<u32>) -> Vec<TargetRegion> {
        let replicas = replica_count.unwrap_or(1);
        let regions: Vec<TargetRegion> = self
            .target_regions
            .iter()
            .map(|r| TargetRegion {
                name: r.name.clone(),
                regional_replica_count: r.replicas.unwrap_or(replicas),
                storage_account_type: r.storage_account_type.clone(),
                ..TargetRegion::default()
            })
            .collect();
        home_first(&self.location, &regions, replicas)
    }
}

/// A region as `GALLEON_TARGET_REGIONS` names it: a replica count and a storage type only where the
/// setting gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub name: String,
    /// `None`: the version's replica count applies.
    pub replicas: Option<u32>,
    /// `None`: Azure's default for the API version.
    pub storage_account_type: Option<String>,
}

/// Parses `westeurope=2:Standard_ZRS,northeurope,eastus2=1` (no count means the version's replica count;
/// no storage type means Azure's default for the API version, which galleon leaves to Azure).
pub fn parse_regions(text: &str) -> Result<Vec<Region>, String> {
    let mut regions: Vec<Region> = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, rest) = item.split_once('=').unwrap_or((item, ""));
        let (count, storage) = rest.split_once(':').unwrap_or((rest, ""));
        let name = name.trim().to_ascii_lowercase();
        if !region_name_ok(&name) {
            return Err(format!(
                "'{name}' is not an ARM region name (like westeurope)"
            ));
        }
        let replicas = if count.trim().is_empty() {
            None
        } else {
            Some(
                count
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=100).contains(n))
                    .ok_or_else(|| {
                        format!("replica count '{count}' for {name} must be 1 to 100")
                    })?,
            )
        };
        let storage_account_type = if storage.trim().is_empty() {
            None
        } else {
            Some(storage_type(storage.trim())?)
        };
        if regions.iter().any(|r| r.name == name) {
            return Err(format!("region {name} is listed twice"));
        }
        regions.push(Region {
            name,
            replicas,
            storage_account_type,
        });
    }
    if regions.is_empty() {
        return Err("no region given".into());
    }
    Ok(regions)
}

pub fn region_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Whether `name` is a valid blob container name: 3-63 of lower-case letters, digits and hyphens, starting
/// and ending with a letter or digit, no two hyphens in a row.
pub fn container_name_ok(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

/// The storage account types a gallery replica may use.
pub fn storage_type(text: &str) -> Result<String, String> {
    const TYPES: [&str; 4] = [
        "Standard_LRS",
        "Standard_ZRS",
        "Premium_LRS",
        "PremiumV2_LRS",
    ];
    TYPES
        .iter()
        .find(|t| t.eq_ignore_ascii_case(text))
        .map(|t| (*t).to_owned())
        .ok_or_else(|| {
            format!(
                "storage account type '{text}' must be one of {}",
                TYPES.join(", ")
            )
        })
}

/// Puts the home region first (adding it with `replicas` replicas if missing), keeping the others in
/// order.
pub fn home_first(home: &str, regions: &[TargetRegion], replicas: u32) -> Vec<TargetRegion> {
    let mut ordered: Vec<TargetRegion> =
        regions.iter().filter(|r| r.name == home).cloned().collect();
    if ordered.is_empty() {
        ordered.push(TargetRegion {
            name: home.to_owned(),
            regional_replica_count: replicas,
            ..TargetRegion::default()
        });
    }
    ordered.extend(regions.iter().filter(|r| r.name != home).cloned());
    ordered
}

/// The policy the domain's table tests share: galleon's own gallery in westeurope, and another
/// subscription's `shared` galleries allowed as targets.
#[cfg(test)]
pub fn for_tests() -> Policy {
    let scope = |s: &str| GalleryScope::parse(s).expect("scope");
    Policy {
        subscription_id: "8c3e1f7a-2b4d-4e5f-9a6b-7c8d9e0f1a2b".into(),
        resource_group: "rg-images".into(),
        gallery: "golden".into(),
        location: "westeurope".into(),
        target_regions: parse_regions("westeurope").expect("regions"),
        publish_from: crate::events::PublishFrom::Vhd,
        publisher: "contoso".into(),
        allowed: vec![
            scope("8c3e1f7a-2b4d-4e5f-9a6b-7c8d9e0f1a2b/rg-images/golden"),
            scope("11111111-2222-3333-4444-555555555555/*/shared"),
        ],
        features: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_table() {
        let r = parse_regions("westeurope=2:Standard_ZRS, northeurope ,eastus2=1").expect("valid");
        assert_eq!(r.len(), 3);
        assert_eq!(
            (
                r[0].name.as_str(),
                r[0].replicas,
                r[0].storage_account_type.as_deref()
            ),
            ("westeurope", Some(2), Some("Standard_ZRS"))
        );
        assert_eq!(
            (
                r[1].name.as_str(),
                r[1].replicas,
                r[1].storage_account_type.as_deref()
            ),
            ("northeurope", None, None),
            "no count: the version's applies; no storage type: Azure's default applies (PreferStandard_ZRS in current API versions)"
        );
        for bad in [
            "",
            "West Europe",
            "westeurope=0",
            "westeurope=101",
            "westeurope=1:Gold",
            "a,a",
        ] {
            assert!(parse_regions(bad).is_err(), "{bad:?} must be refused");
        }
        assert_eq!(
            parse_regions("WESTEUROPE").map(|r| r[0].name.clone()),
            Ok("westeurope".into())
        );
    }

    #[test]
    fn allow_list_table() {
        let scopes = ["8c3e/rg-images/golden", "8c3e/rg-lab/*"]
            .map(|s| GalleryScope::parse(s).expect("scope"));
        let policy = |s: &str, r: &str, g: &str| scopes.iter().any(|x| x.allows(s, r, g));
        assert!(policy("8c3e", "rg-images", "golden"));
        assert!(
            policy("8c3e", "RG-IMAGES", "Golden"),
            "ARM names are case-insensitive"
        );
        assert!(policy("8c3e", "rg-lab", "anything"));
        assert!(!policy("8c3e", "rg-images", "other"));
        assert!(!policy("ffff", "rg-images", "golden"));
        assert!(GalleryScope::parse("only/two").is_err());
        assert!(GalleryScope::parse("a//c").is_err());
    }

    #[test]
    fn home_region_goes_first() {
        let regions = [("northeurope", 1), ("westeurope", 2)].map(|(name, n)| TargetRegion {
            name: name.into(),
            regional_replica_count: n,
            ..TargetRegion::default()
        });
        let ordered = home_first("westeurope", &regions, 1);
        assert_eq!(
            ordered.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["westeurope", "northeurope"]
        );
        assert_eq!(ordered[0].regional_replica_count, 2);
        let added = home_first("eastus2", &regions, 3);
        assert_eq!(added[0].name, "eastus2");
        assert_eq!(
            added[0].regional_replica_count, 3,
            "an added home region takes the version's count"
        );
        assert_eq!(added.len(), 3);
    }
}
