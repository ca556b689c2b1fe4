//! Replication decisions, pure: per-region states from a version's replication status, and what one
//! look decides (regions to announce, to retry on their own, given up, to put back). Table-tested.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::events::{RegionFailure, TargetRegion};

/// Region names as ARM shows them ("West Europe") to ARM names ("westeurope").
pub fn region_key(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Per-region replication state from a version's `$expand=ReplicationStatus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionState {
    pub region: String,
    pub state: String,
    pub details: String,
}

pub fn replication_states(version: &Value) -> Vec<RegionState> {
    version
        .pointer("/properties/replicationStatus/summary")
        .and_then(Value::as_array)
        .map(|summary| {
            summary
                .iter()
                .map(|s| RegionState {
                    region: region_key(s.get("region").and_then(Value::as_str).unwrap_or_default()),
                    state: s
                        .get("state")
                        .and_then(Value::as_str)
                        .unwrap_or("Unknown")
                        .to_owned(),
                    details: s
                        .get("details")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// What one look at replication decides.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Progress {
    /// Regions newly complete, in target order: announce each.
    pub newly: Vec<TargetRegion>,
    /// Every target region is complete.
    pub all_done: bool,
    /// The home region failed: the version itself failed.
    pub home_failed: Option<RegionState>,
    /// Regions that failed again and will be taken out and put back.
    pub retry: Vec<String>,
    /// Regions that failed `max` times: reported, no longer retried.
    pub given_up: Vec<RegionFailure>,
    /// Target regions the version does not list (taken out earlier): put them back.
    pub missing: Vec<String>,
    /// Failures so far, per region, including this look's.
    pub failures: BTreeMap<String, u32>,
    /// Every region is either complete or given up (and some are given up): the run ends.
    pub settled_with_failures: bool,
}

/// The pure decision of one replication look.
pub fn progress(
    targets: &[TargetRegion],
    home: &str,
    states: &[RegionState],
    announced: &[String],
    failures: &BTreeMap<String, u32>,
    max_failures: u32,
) -> Progress {
    let mut out = Progress {
        failures: failures.clone(),
        ..Progress::default()
    };
    let state_of = |key: &str| states.iter().find(|s| s.region == key);
    let mut done = BTreeSet::new();
    for target in targets {
        let key = region_key(&target.name);
        let Some(state) = state_of(&key) else {
            if !states.is_empty() {
                out.missing.push(key);
            }
            continue;
        };
        match state.state.as_str() {
            "Completed" => {
                done.insert(key.clone());
                if !announced.contains(&key) {
                    out.newly.push(target.clone());
                }
            }
            "Failed" if key == region_key(home) => out.home_failed = Some(state.clone()),
            "Failed" => {
                let count = out.failures.entry(key.clone()).or_insert(0);
                if *count < max_failures {
                    *count += 1;
                }
                if *count >= max_failures {
                    out.given_up.push(RegionFailure {
                        region: key,
                        details: state.details.clone(),
                        failures: *count,
                    });
                } else {
                    out.retry.push(key);
                }
            }
            _ => {}
        }
    }
    out.all_done = targets.iter().all(|t| done.contains(&region_key(&t.name)));
    out.settled_with_failures = !out.given_up.is_empty()
        && targets.iter().all(|t| {
            let key = region_key(&t.name);
            done.contains(&key) || out.given_up.iter().any(|g| g.region == key)
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn target(name: &str) -> TargetRegion {
        TargetRegion {
            name: name.into(),
            regional_replica_count: 1,
            storage_account_type: None,
            ..TargetRegion::default()
        }
    }

    fn states(pairs: &[(&str, &str)]) -> Vec<RegionState> {
        pairs
            .iter()
            .map(|(r, s)| RegionState {
                region: region_key(r),
                state: (*s).into(),
                details: format!("{s} in {r}"),
            })
            .collect()
    }

    #[test]
    fn progress_announces_each_region_once_and_all_at_the_end() {
        let targets = [
            target("westeurope"),
            target("northeurope"),
            target("eastus2"),
        ];
        let version = json!({"properties": {"replicationStatus": {"aggregatedState": "InProgress", "summary": [
            {"region": "West Europe", "state": "Completed", "progress": 100},
            {"region": "North Europe", "state": "Replicating", "progress": 40},
            {"region": "East US 2", "state": "Completed", "progress": 100}
        ]}}});
        let s = replication_states(&version);
        let p = progress(&targets, "westeurope", &s, &[], &BTreeMap::new(), 3);
        assert_eq!(
            p.newly.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["westeurope", "eastus2"]
        );
        assert!(!p.all_done);
        let p = progress(
            &targets,
            "westeurope",
            &s,
            &["westeurope".into(), "eastus2".into()],
            &BTreeMap::new(),
            3,
        );
        assert!(
            p.newly.is_empty(),
            "announced regions are not announced again"
        );
        let done = states(&[
            ("westeurope", "Completed"),
            ("northeurope", "Completed"),
            ("eastus2", "Completed"),
        ]);
        let p = progress(
            &targets,
            "westeurope",
            &done,
            &["westeurope".into(), "eastus2".into()],
            &BTreeMap::new(),
            3,
        );
        assert_eq!(p.newly.len(), 1);
        assert!(p.all_done);
    }

    #[test]
    fn failures_are_counted_per_region_not_per_look() {
        let targets = [target("westeurope"), target("northeurope")];
        let replicating = states(&[("westeurope", "Completed"), ("northeurope", "Replicating")]);
        let mut failures = BTreeMap::new();
        // Many looks at a slow region cost nothing.
        for _ in 0..50 {
            let p = progress(&targets, "westeurope", &replicating, &[], &failures, 3);
            assert!(p.retry.is_empty() && p.given_up.is_empty());
            failures = p.failures;
        }
        let failed = states(&[("westeurope", "Completed"), ("northeurope", "Failed")]);
        let p1 = progress(&targets, "westeurope", &failed, &[], &failures, 3);
        assert_eq!(p1.retry, ["northeurope"]);
        let p2 = progress(&targets, "westeurope", &failed, &[], &p1.failures, 3);
        assert_eq!(p2.retry, ["northeurope"]);
        let p3 = progress(&targets, "westeurope", &failed, &[], &p2.failures, 3);
        assert!(p3.retry.is_empty());
        assert_eq!(p3.given_up.len(), 1);
        assert_eq!(p3.given_up[0].failures, 3);
        assert!(p3.settled_with_failures);
    }

    #[test]
    fn every_failed_region_is_reported_and_the_home_region_fails_the_version() {
        let targets = [
            target("westeurope"),
            target("northeurope"),
            target("eastus2"),
        ];
        let both = states(&[
            ("westeurope", "Completed"),
            ("northeurope", "Failed"),
            ("eastus2", "Failed"),
        ]);
        let p = progress(&targets, "westeurope", &both, &[], &BTreeMap::new(), 1);
        assert_eq!(
            p.given_up
                .iter()
                .map(|g| g.region.as_str())
                .collect::<Vec<_>>(),
            ["northeurope", "eastus2"]
        );
        assert!(p.settled_with_failures);
        let home = states(&[("westeurope", "Failed"), ("northeurope", "Completed")]);
        let p = progress(&targets, "westeurope", &home, &[], &BTreeMap::new(), 3);
        assert!(p.home_failed.is_some());
        assert!(p.retry.is_empty(), "the home region is never taken out");
        let missing = states(&[("westeurope", "Completed")]);
        let p = progress(&targets, "westeurope", &missing, &[], &BTreeMap::new(), 3);
        assert_eq!(p.missing, ["northeurope", "eastus2"]);
        assert_eq!(region_key("East US 2"), "eastus2");
    }
}
