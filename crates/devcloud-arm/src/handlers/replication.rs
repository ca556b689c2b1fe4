//! Target regions of a gallery image version: parsing and checking them, their JSON, and the
//! replication schedule per region.

use serde_json::{Value, json};

use super::common::enum_check;
use crate::arm::Arm;
use crate::config::Work;
use crate::error::ArmError;
use crate::model::{RegionReplica, Time};
use crate::names::{self, norm_region};

/// A requested target region.
#[derive(Debug, Clone)]
pub struct WantRegion {
    pub name: String,
    pub norm: String,
    pub replicas: i64,
    pub sat: String,
}

/// Decides when each region finishes. Regions already scheduled keep their schedule; new ones start
/// after the home region's copy (or now, if that is already done).
///
/// The version's PUT (and each PATCH) completes when **all** its regions have replicated, as
/// arm-contract.md §2.4 believes Azure does; galleon's readiness rule covers either behaviour.
pub fn schedule(
    arm: &Arm,
    now: Time,
    home: &str,
    want: &[WantRegion],
    existing: &[RegionReplica],
    size: u64,
) -> Vec<RegionReplica> {
    let parallel = want
        .iter()
        .filter(|w| w.norm != home && !existing.iter().any(|r| r.norm == w.norm))
        .count();
    let home_end = existing.iter().find(|r| r.norm == home).map(|r| r.end);
    let mut out = Vec::new();
    let home_want = want.iter().find(|w| w.norm == home);
    let home_end = home_end.unwrap_or_else(|| {
        let reps = home_want.map(|w| w.replicas).unwrap_or(1);
        now + arm.jitter(
            arm.config
                .nominal_copy(Work::VersionHomeRegion, home, reps, size, 1),
        )
    });
    for w in want {
        if let Some(e) = existing.iter().find(|r| r.norm == w.norm) {
            out.push(RegionReplica {
                name: w.name.clone(),
                ..e.clone()
            });
            continue;
        }
        let (start, end) = if w.norm == home {
            (now, home_end)
        } else {
            let start = home_end.max(now);
            let mut d = arm.config.nominal_copy(
                Work::VersionReplicate,
                &w.norm,
                w.replicas,
                size,
                parallel,
            );
            if w.sat.contains("ZRS") {
                d = d.mul_f64(1.2);
            }
            (start, start + arm.jitter(d))
        };
        out.push(RegionReplica {
            name: w.name.clone(),
            norm: w.norm.clone(),
            start,
            end,
            failed: None,
        });
    }
    out
}

pub(crate) const SAT_VERSION: &[&str] = &[
    "Standard_LRS",
    "Standard_ZRS",
    "Premium_LRS",
    "PremiumV2_LRS",
];

/// The storage type of a region the request gives none for.
#[derive(Debug, Clone, PartialEq)]
pub enum StorageDefault {
    /// `publishingProfile.storageAccountType` (or Standard_LRS before api-version 2025-03-03).
    Type(String),
    /// `storageAccountStrategy: PreferStandard_ZRS`: ZRS where the region has zones, else LRS.
    PreferZrs,
    /// `storageAccountStrategy: DefaultStandard_LRS`.
    Lrs,
}

impl StorageDefault {
    pub fn for_region(&self, norm: &str) -> String {
        match self {
            StorageDefault::Type(t) => t.clone(),
            StorageDefault::PreferZrs if names::has_zones(norm) => "Standard_ZRS".into(),
            StorageDefault::PreferZrs | StorageDefault::Lrs => "Standard_LRS".into(),
        }
    }
}

/// The regions a request wants. A region it gives no storage type for keeps the type it already
/// has (`old`, the stored target regions), or gets `default`'s.
pub(crate) fn parse_regions(
    pp: &Value,
    location_shown: &str,
    location: &str,
    default_count: i64,
    default: &StorageDefault,
    old: &Value,
) -> Result<Vec<WantRegion>, ArmError> {
    let old_sat = |norm: &str| {
        old.as_array()
            .into_iter()
            .flatten()
            .find(|t| t["name"].as_str().map(norm_region).as_deref() == Some(norm))
            .and_then(|t| t["storageAccountType"].as_str().map(str::to_string))
    };
    let mut want = Vec::new();
    match pp["targetRegions"].as_array() {
        Some(list) if !list.is_empty() => {
            for t in list {
                let name = t["name"].as_str().ok_or_else(|| {
                    ArmError::required(
                        "name",
                        "galleryImageVersion.properties.publishingProfile.targetRegions.name",
                    )
                })?;
                let norm = names::region(name, "galleries/images/versions")?;
                if want.iter().any(|w: &WantRegion| w.norm == norm) {
                    return Err(ArmError::invalid_parameter(
                        "Duplicate regions are not allowed in target publishing regions.",
                        "galleryImageVersion.properties.publishingProfile.targetRegions",
                    ));
                }
                let replicas = t["regionalReplicaCount"].as_i64().unwrap_or(default_count);
                if !(1..=100).contains(&replicas) {
                    return Err(ArmError::invalid_parameter(
                        format!(
                            "The value {replicas} of parameter 'regionalReplicaCount' is out of range. The value must be between 1 and 100, inclusive."
                        ),
                        "galleryImageVersion.properties.publishingProfile.targetRegions.regionalReplicaCount",
                    ));
                }
                let sat = t["storageAccountType"]
                    .as_str()
                    .map(str::to_string)
                    .or_else(|| old_sat(&norm))
                    .unwrap_or_else(|| default.for_region(&norm));
                let sat = sat.as_str();
                enum_check(
                    Some(sat),
                    SAT_VERSION,
                    "storageAccountType",
                    "galleryImageVersion.properties.publishingProfile.targetRegions.storageAccountType",
                )?;
                want.push(WantRegion {
                    name: name.to_string(),
                    norm,
                    replicas,
                    sat: sat.to_string(),
                });
            }
        }
        _ => want.push(WantRegion {
            name: location_shown.to_string(),
            norm: location.to_string(),
            replicas: default_count,
            sat: old_sat(location).unwrap_or_else(|| default.for_region(location)),
        }),
    }
    if !want.iter().any(|w| w.norm == location) {
        return Err(ArmError::invalid_parameter(
            format!(
                "Gallery image version publishing profile regions '{}' must contain the location of image version '{location_shown}'.",
                want.iter()
                    .map(|w| w.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "galleryImageVersion.properties.publishingProfile.targetRegions",
        ));
    }
    Ok(want)
}

pub(crate) fn regions_json(want: &[WantRegion], given: &Value, old: &Value) -> Value {
    let given = given.as_array().cloned().unwrap_or_default();
    let old = old.as_array().cloned().unwrap_or_default();
    let find = |list: &[Value], norm: &str| {
        list.iter()
            .find(|g| g["name"].as_str().map(norm_region).as_deref() == Some(norm))
            .cloned()
    };
    Value::Array(
        want.iter()
            .map(|w| {
                // Fields of an existing region (encryption cannot be removed) overlaid with what was sent.
                let mut t = find(&old, &w.norm).unwrap_or(json!({}));
                if let Some(Value::Object(g)) = find(&given, &w.norm) {
                    for (k, v) in g {
                        t[k] = v;
                    }
                }
                t["name"] = json!(w.name);
                t["regionalReplicaCount"] = json!(w.replicas);
                t["storageAccountType"] = json!(w.sat);
                if t["excludeFromLatest"].is_null() {
                    t["excludeFromLatest"] = json!(false);
                }
                t
            })
            .collect(),
    )
}
