//! Retention, decided: which versions of an image definition a policy keeps, and the one next step for
//! each version it does not (excluded from `latest`, then an end-of-life date, then deleted after a grace
//! period). Pure: the versions come in as Azure shows them, the steps go out.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An operator's tag that keeps a version whatever the policy says.
pub const PIN_TAG: &str = "galleon-pin";
/// An operator's tag that marks a version bad: the first to go.
pub const BAD_TAG: &str = "galleon-bad";
/// Days between a version's end of life and its deletion when the policy names none.
pub const DEFAULT_GRACE_DAYS: f64 = 7.0;

/// How long an image definition keeps its versions.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Policy {
    /// Keep the newest N versions.
    #[serde(default)]
    pub keep: Option<u32>,
    /// Keep versions published less than D days ago.
    #[serde(default)]
    pub max_age_days: Option<f64>,
    /// Days from a version's end of life to its deletion.
    #[serde(default)]
    pub grace_days: Option<f64>,
    /// Delete the source VHDs (and data disk VHDs) galleon accepted once the version is ready in every
    /// region.
    #[serde(default)]
    pub delete_sources: bool,
}

impl Policy {
    pub fn grace(&self) -> chrono::Duration {
        let days = self.grace_days.unwrap_or(DEFAULT_GRACE_DAYS);
        chrono::Duration::milliseconds((days * 86_400_000.0) as i64)
    }
}

/// The retention settings (`GALLEON_RETENTION`): a default policy, per-definition overrides, and
/// whether to only report.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Retention {
    #[serde(default)]
    pub default: Option<Policy>,
    /// Per image definition name (compared case-insensitively, as Azure does).
    #[serde(default)]
    pub definitions: BTreeMap<String, Policy>,
    /// Report what would happen, change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

impl Retention {
    /// Reads `GALLEON_RETENTION`; `Err` names the policy that cannot be used.
    pub fn parse(text: &str) -> Result<Retention, String> {
        let r: Retention =
            serde_json::from_str(text).map_err(|e| format!("is not a retention setting: {e}"))?;
        let named = r
            .default
            .iter()
            .map(|p| ("default", p))
            .chain(r.definitions.iter().map(|(k, p)| (k.as_str(), p)));
        for (name, p) in named {
            if p.keep.is_none() && p.max_age_days.is_none() && !p.delete_sources {
                return Err(format!(
                    "policy {name} says nothing to do (give keep, maxAgeDays or deleteSources)"
                ));
            }
            if p.keep == Some(0) && p.max_age_days.is_none_or(|d| d <= 0.0) {
                return Err(format!(
                    "policy {name} would delete every version (keep 0 and no maxAgeDays): keep at least 1"
                ));
            }
            if p.max_age_days.is_some_and(|d| !d.is_finite() || d < 0.0)
                || p.grace_days.is_some_and(|d| !d.is_finite() || d < 0.0)
            {
                return Err(format!(
                    "policy {name}: maxAgeDays and graceDays are days, 0 or more"
                ));
            }
        }
        Ok(r)
    }

    /// The policy of an image definition: its own, else the default.
    pub fn for_definition(&self, definition: &str) -> Option<&Policy> {
        self.definitions
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(definition))
            .map(|(_, p)| p)
            .or(self.default.as_ref())
    }

    /// Whether no policy is configured (neither a default nor any definition's).
    pub fn is_empty(&self) -> bool {
        self.default.is_none() && self.definitions.is_empty()
    }
}

/// A version as retention sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Version {
    pub id: String,
    pub name: String,
    pub published: Option<DateTime<Utc>>,
    pub state: String,
    pub excluded: bool,
    pub end_of_life: Option<DateTime<Utc>>,
    pub block_deletion: bool,
    pub pinned: bool,
    pub bad: bool,
}

impl Version {
    /// Reads a version as `GalleryImageVersions_ListByGalleryImage` shows it.
    pub fn of(v: &Value) -> Version {
        let text = |p: &str| {
            v.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let time = |p: &str| {
            DateTime::parse_from_rfc3339(&text(p))
                .ok()
                .map(|t| t.with_timezone(&Utc))
        };
        let flag = |tag: &str| {
            v.pointer(&format!("/tags/{tag}"))
                .and_then(Value::as_str)
                .is_some_and(|t| t.eq_ignore_ascii_case("true"))
        };
        Version {
            id: text("/id"),
            name: text("/name"),
            published: time("/properties/publishingProfile/publishedDate"),
            state: text("/properties/provisioningState"),
            excluded: v
                .pointer("/properties/publishingProfile/excludeFromLatest")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            end_of_life: time("/properties/publishingProfile/endOfLifeDate"),
            block_deletion: v
                .pointer("/properties/safetyProfile/blockDeletionBeforeEndOfLife")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            pinned: flag(PIN_TAG),
            bad: flag(BAD_TAG),
        }
    }
}

/// The next step for a version the policy does not keep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Step {
    ExcludeFromLatest,
    EndOfLife,
    Delete,
    /// Its safety profile forbids deletion before its end of life, which is later than now.
    DeletionBlocked,
}

/// One decision: the version, its next step, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub version: Version,
    pub step: Step,
    pub why: String,
}

fn numeric(name: &str) -> Vec<u64> {
    name.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

/// What the policy does now to `versions`: nothing to the newest, to the newest usable one (succeeded,
/// not marked bad), to pinned versions, to versions Azure is still making or removing, or to versions the policy keeps (the newest `keep` not marked bad, and
/// those younger than `maxAgeDays`); one step further for each other version.
pub fn decide(policy: &Policy, versions: &[Version], now: DateTime<Utc>) -> Vec<Decision> {
    let mut sorted: Vec<&Version> = versions.iter().collect();
    // Newest first: by publication, then by version number.
    sorted.sort_by(|a, b| {
        b.published
            .cmp(&a.published)
            .then_with(|| numeric(&b.name).cmp(&numeric(&a.name)))
    });
    let newest = sorted.first().map(|v| v.id.clone());
    // The newest version a VM can be made from: a newer one Azure is still making (or failed to make), or
    // one marked bad, does not replace it, so it is never retired, whatever the policy.
    let newest_usable = sorted
        .iter()
        .find(|v| v.state == "Succeeded" && !v.bad)
        .map(|v| v.id.clone());
    let mut kept_by_count = 0u32;
    let mut decisions = Vec::new();
    for v in sorted {
        // Pinned versions and versions Azure is still at are left alone and do not count.
        if v.pinned || !matches!(v.state.as_str(), "Succeeded" | "Failed") {
            continue;
        }
        if Some(&v.id) == newest.as_ref() || Some(&v.id) == newest_usable.as_ref() {
            kept_by_count += 1;
            continue;
        }
        let young = policy.max_age_days.is_some_and(|days| {
            v.published.is_some_and(|p| {
                now - p < chrono::Duration::milliseconds((days * 86_400_000.0) as i64)
            })
        });
        let counted = !v.bad && policy.keep.is_some_and(|n| kept_by_count < n);
        if !v.bad && (young || counted) {
            kept_by_count += 1;
            continue;
        }
        if policy.keep.is_none() && policy.max_age_days.is_none() {
            continue; // A policy that only cleans sources.
        }
        let why = if v.bad {
            format!("{} is marked bad ({BAD_TAG})", v.name)
        } else {
            let mut reasons = Vec::new();
            if let Some(n) = policy.keep {
                reasons.push(format!("{n} newer versions are kept"));
            }
            if let Some(d) = policy.max_age_days {
                reasons.push(format!("it is older than {d} days"));
            }
            format!("{}: {}", v.name, reasons.join(" and "))
        };
        let step = if !v.excluded {
            Step::ExcludeFromLatest
        } else {
            match v.end_of_life {
                Some(eol) if eol > now && v.block_deletion => Step::DeletionBlocked,
                Some(eol) if eol <= now => {
                    if now >= eol + policy.grace() {
                        Step::Delete
                    } else {
                        continue; // In its grace period.
                    }
                }
                _ => Step::EndOfLife,
            }
        };
        decisions.push(Decision {
            version: v.clone(),
            step,
            why,
        });
    }
    decisions
}

#[cfg(test)]
#[path = "retention_tests.rs"]
mod tests;
