//! An operator's request to replicate a published version again, decided from the version as Azure shows
//! it: which regions are added, which are replicated again (failed), which stand, or why there is nothing
//! to do. Pure; table-tested.

use super::{
    policy,
    replication::{RegionState, region_key},
};
use crate::events::TargetRegion;

/// What a request to replicate again comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every region is complete and no region is added: nothing to do.
    Nothing {
        regions: Vec<String>,
    },
    /// Replication is still under way in these regions and no region is added or failed: wait for it.
    Underway {
        regions: Vec<String>,
    },
    Replicate(Replication),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replication {
    /// The version's target regions after the request: the home region first, then those it has, then
    /// the added ones.
    pub regions: Vec<TargetRegion>,
    pub added: Vec<String>,
    /// Regions whose replication failed, replicated again.
    pub again: Vec<String>,
    /// Regions complete already (not announced again).
    pub ready: Vec<String>,
}

/// Why the request is refused: a code and a message naming the cause and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub code: &'static str,
    pub message: String,
}

fn refused(code: &'static str, message: String) -> Refused {
    Refused { code, message }
}

/// Decides a request to add `add` to a version whose target regions are `current` (as its GET shows them,
/// display names allowed), home region `home`, with replication states `states`.
pub fn decide(
    current: &[TargetRegion],
    states: &[RegionState],
    home: &str,
    add: &[String],
) -> Result<Decision, Refused> {
    let home = region_key(home);
    let state_of = |region: &str| {
        states
            .iter()
            .find(|s| s.region == region)
            .map(|s| s.state.as_str())
            .unwrap_or("Unknown")
    };
    if state_of(&home).eq_ignore_ascii_case("Failed") {
        return Err(refused(
            "HomeRegionFailed",
            format!(
                "the version failed in its home region {home}, so it cannot be replicated from; upload its VHD and manifest again (a new version)"
            ),
        ));
    }
    let mut regions: Vec<TargetRegion> = current
        .iter()
        .map(|r| TargetRegion {
            name: region_key(&r.name),
            ..r.clone()
        })
        .collect();
    regions = policy::home_first(&home, &regions, 1);
    let mut added = Vec::new();
    for name in add {
        let key = region_key(name);
        if !policy::region_name_ok(&key) {
            return Err(refused(
                "RegionInvalid",
                format!("region '{name}' is not an ARM region name (such as westeurope)"),
            ));
        }
        if regions.iter().any(|r| r.name == key) || added.contains(&key) {
            continue;
        }
        added.push(key);
    }
    if !added.is_empty()
        && let Some(encrypted) = regions.iter().find(|r| r.encryption.is_some())
    {
        return Err(refused(
            "RegionNeedsItsOwnKeys",
            format!(
                "the version's disks are encrypted with a disk encryption set in {} and each region needs its own; add {} with its encryption set (az sig image-version update --add publishingProfile.targetRegions …)",
                encrypted.name,
                added.join(", ")
            ),
        ));
    }
    let failed: Vec<String> = regions
        .iter()
        .map(|r| r.name.clone())
        .filter(|r| state_of(r).eq_ignore_ascii_case("Failed"))
        .collect();
    let ready: Vec<String> = regions
        .iter()
        .map(|r| r.name.clone())
        .filter(|r| state_of(r).eq_ignore_ascii_case("Completed"))
        .collect();
    if added.is_empty() && failed.is_empty() {
        let underway: Vec<String> = regions
            .iter()
            .map(|r| r.name.clone())
            .filter(|r| !ready.contains(r))
            .collect();
        return Ok(if underway.is_empty() {
            Decision::Nothing { regions: ready }
        } else {
            Decision::Underway { regions: underway }
        });
    }
    // An added region takes the home region's replicas and storage type; its own latest and keys stay
    // Azure's defaults.
    let template = regions.first().cloned().unwrap_or_default();
    regions.extend(added.iter().map(|name| TargetRegion {
        name: name.clone(),
        regional_replica_count: template.regional_replica_count.max(1),
        storage_account_type: template.storage_account_type.clone(),
        exclude_from_latest: None,
        encryption: None,
    }));
    Ok(Decision::Replicate(Replication {
        regions,
        added,
        again: failed,
        ready,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(name: &str, count: u32) -> TargetRegion {
        TargetRegion {
            name: name.into(),
            regional_replica_count: count,
            storage_account_type: Some("Standard_ZRS".into()),
            ..TargetRegion::default()
        }
    }

    fn state(region: &str, state: &str) -> RegionState {
        RegionState {
            region: region.into(),
            state: state.into(),
            details: String::new(),
        }
    }

    fn names(regions: &[TargetRegion]) -> Vec<&str> {
        regions.iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn requests_come_to_what_the_version_needs() {
        let current = [region("West Europe", 2), region("northeurope", 1)];
        let done = [
            state("westeurope", "Completed"),
            state("northeurope", "Completed"),
        ];
        let failed = [
            state("westeurope", "Completed"),
            state("northeurope", "Failed"),
        ];
        let running = [
            state("westeurope", "Completed"),
            state("northeurope", "Replicating"),
        ];
        // Nothing added, all complete: nothing to do; asked again for a region it has: the same.
        for add in [vec![], vec!["northeurope".to_owned()]] {
            assert_eq!(
                decide(&current, &done, "westeurope", &add),
                Ok(Decision::Nothing {
                    regions: vec!["westeurope".into(), "northeurope".into()]
                })
            );
        }
        assert_eq!(
            decide(&current, &running, "westeurope", &[]),
            Ok(Decision::Underway {
                regions: vec!["northeurope".into()]
            })
        );
        // A failed region is replicated again.
        let Ok(Decision::Replicate(again)) = decide(&current, &failed, "westeurope", &[]) else {
            panic!("a failed region is replicated again");
        };
        assert_eq!(again.again, vec!["northeurope".to_owned()]);
        assert_eq!(again.ready, vec!["westeurope".to_owned()]);
        assert!(again.added.is_empty());
        // Added regions follow the ones it has, with the home region's replicas and storage, once each.
        let add = vec!["EastUS2".to_owned(), "eastus2".to_owned(), "uksouth".into()];
        let Ok(Decision::Replicate(more)) = decide(&current, &done, "westeurope", &add) else {
            panic!("regions are added");
        };
        assert_eq!(
            names(&more.regions),
            ["westeurope", "northeurope", "eastus2", "uksouth"]
        );
        assert_eq!(more.added, vec!["eastus2".to_owned(), "uksouth".into()]);
        assert_eq!(more.regions[2].regional_replica_count, 2);
        assert_eq!(
            more.regions[3].storage_account_type.as_deref(),
            Some("Standard_ZRS")
        );
        assert_eq!(
            more.ready,
            vec!["westeurope".to_owned(), "northeurope".into()]
        );
    }

    #[test]
    fn what_cannot_be_replicated_is_refused_with_the_fix() {
        let current = [region("westeurope", 1), region("northeurope", 1)];
        let home_failed = [state("westeurope", "Failed")];
        assert_eq!(
            decide(&current, &home_failed, "westeurope", &[]).map_err(|r| r.code),
            Err("HomeRegionFailed")
        );
        assert_eq!(
            decide(&current, &[], "westeurope", &["west europe!".into()]).map_err(|r| r.code),
            Err("RegionInvalid")
        );
        let mut encrypted = current.clone();
        encrypted[1].encryption = Some(Default::default());
        let refused = decide(&encrypted, &[], "westeurope", &["uksouth".into()])
            .expect_err("keys are regional");
        assert_eq!(refused.code, "RegionNeedsItsOwnKeys");
        assert!(refused.message.contains("uksouth"), "{}", refused.message);
    }
}
