//! Scheduled rebuilds, decided: which Image Builder templates galleon runs and how their outputs are
//! published (the builds file and settings), what a template asks for (its source, outputs, timeout),
//! whether its source changed since the last successful build, and what to tell when a run fails.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::events::BuildSource;

/// Image Builder's default build timeout, for a template whose `buildTimeoutInMinutes` is 0 or absent.
pub const DEFAULT_BUILD_TIMEOUT_MINUTES: u32 = 240;
/// How long past its own timeout galleon lets a run go before cancelling it (Image Builder should have
/// ended it itself).
pub const DEFAULT_CANCEL_MARGIN_MINUTES: u32 = 30;

/// One template galleon rebuilds, and how (an entry of the builds file, or an id in
/// `GALLEON_BUILD_TEMPLATES` with every default).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateEntry {
    pub template_id: String,
    /// Build on schedule only when the template's source (the platform image's or source gallery
    /// image's latest version) differs from the one of the last successful build.
    #[serde(default)]
    pub only_when_source_changed: bool,
    /// Minutes past `buildTimeoutInMinutes` before galleon cancels a run.
    #[serde(default)]
    pub cancel_margin_minutes: Option<u32>,
    /// How the run's VHD or managed image is published: a manifest's fields without `vhd`
    /// (`imageDefinition`, `osType`, `hyperVGeneration`, `targetRegions`, …). For a gallery version the
    /// run made, only `targetRegions` (and `replicaCount`) are read: where galleon replicates it.
    #[serde(default)]
    pub publish: Option<serde_json::Map<String, Value>>,
    /// The storage account a VHD output is in, when it is not found by name in the template's
    /// subscription (a `distribute` `uri` in another subscription).
    #[serde(default)]
    pub storage_account_id: Option<String>,
}

impl TemplateEntry {
    fn with_id(template_id: &str) -> TemplateEntry {
        TemplateEntry {
            template_id: template_id.to_owned(),
            only_when_source_changed: false,
            cancel_margin_minutes: None,
            publish: None,
            storage_account_id: None,
        }
    }

    pub fn cancel_margin(&self) -> u32 {
        self.cancel_margin_minutes
            .unwrap_or(DEFAULT_CANCEL_MARGIN_MINUTES)
    }

    /// The template's name (the last segment of its id).
    pub fn name(&self) -> &str {
        self.template_id
            .rsplit('/')
            .next()
            .unwrap_or(&self.template_id)
    }
}

/// The builds file (`GALLEON_BUILDS_FILE`, `builds.json` in the app by default). Schema:
/// `events/builds.schema.json`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BuildsFile {
    #[serde(rename = "$schema", default)]
    _schema: Option<String>,
    templates: Vec<TemplateEntry>,
}

/// Whether `id` is an Image Builder template's resource id.
pub fn is_template_id(id: &str) -> bool {
    let parts: Vec<&str> = id.trim_start_matches('/').split('/').collect();
    parts.len() == 8
        && parts[0].eq_ignore_ascii_case("subscriptions")
        && parts[2].eq_ignore_ascii_case("resourceGroups")
        && parts[4].eq_ignore_ascii_case("providers")
        && parts[5].eq_ignore_ascii_case("Microsoft.VirtualMachineImages")
        && parts[6].eq_ignore_ascii_case("imageTemplates")
        && parts.iter().all(|p| !p.is_empty())
}

/// The templates galleon rebuilds: the builds file's entries, then the ids of `GALLEON_BUILD_TEMPLATES`
/// (comma-separated) that the file does not name. `Err` names the entry and what is wrong.
pub fn parse(ids: Option<&str>, file: Option<(&str, &str)>) -> Result<Vec<TemplateEntry>, String> {
    let mut entries = match file {
        Some((name, text)) => {
            serde_json::from_str::<BuildsFile>(text)
                .map_err(|e| format!("{name} is not a valid builds file: {e}"))?
                .templates
        }
        None => Vec::new(),
    };
    for id in ids.unwrap_or_default().split(',').map(str::trim) {
        if !id.is_empty()
            && !entries
                .iter()
                .any(|e| e.template_id.eq_ignore_ascii_case(id))
        {
            entries.push(TemplateEntry::with_id(id));
        }
    }
    for (n, e) in entries.iter().enumerate() {
        if !is_template_id(&e.template_id) {
            return Err(format!(
                "template {} ('{}') is not an Image Builder template id (/subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.VirtualMachineImages/imageTemplates/<name>)",
                n + 1,
                e.template_id
            ));
        }
        if entries[..n]
            .iter()
            .any(|o| o.template_id.eq_ignore_ascii_case(&e.template_id))
        {
            return Err(format!("template {} is listed twice", e.template_id));
        }
        if let Some(publish) = &e.publish {
            for field in ["vhd", "dataDisks"] {
                if publish.contains_key(field) {
                    return Err(format!(
                        "template {}: publish must not name \"{field}\" (the run's output is the disk)",
                        e.template_id
                    ));
                }
            }
        }
    }
    Ok(entries)
}

/// The configured entry for `template_id`, compared as Azure compares ids (case-insensitively). A request
/// blob may name the template by its name alone.
pub fn find<'a>(entries: &'a [TemplateEntry], template: &str) -> Option<&'a TemplateEntry> {
    entries.iter().find(|e| {
        e.template_id.eq_ignore_ascii_case(template)
            || (!template.contains('/') && e.name().eq_ignore_ascii_case(template))
    })
}

/// What a template builds from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Platform {
        publisher: String,
        offer: String,
        sku: String,
        version: String,
    },
    /// A gallery image version (`/versions/<v>`), or the latest of an image definition.
    Gallery {
        definition_id: String,
        version: Option<String>,
    },
    ManagedImage {
        id: String,
    },
}

impl Source {
    /// The source as a fact names it, with the version galleon found.
    pub fn resolved(&self, version: Option<String>) -> BuildSource {
        match self {
            Source::Platform {
                publisher,
                offer,
                sku,
                ..
            } => BuildSource {
                kind: "PlatformImage".into(),
                id: format!("{publisher}:{offer}:{sku}"),
                version,
            },
            Source::Gallery { definition_id, .. } => BuildSource {
                kind: "SharedImageVersion".into(),
                id: definition_id.clone(),
                version,
            },
            Source::ManagedImage { id } => BuildSource {
                kind: "ManagedImage".into(),
                id: id.clone(),
                version: None,
            },
        }
    }
}

/// One `distribute` entry of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Distribution {
    /// `VHD`, `ManagedImage` or `SharedImage`.
    pub kind: String,
    pub run_output_name: String,
    /// The regions Image Builder itself replicates a `SharedImage` to (it waits for all of them).
    pub regions: Vec<String>,
}

/// What galleon needs to know of a template before it runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    pub location: String,
    pub source: Source,
    pub distributions: Vec<Distribution>,
    pub build_timeout_minutes: u32,
    /// A fingerprint of what the template builds (source, customizers, distribution): a template
    /// deleted and made again with other steps is a change too.
    pub fingerprint: String,
}

/// Reads a template (as `VirtualMachineImageTemplates_Get` answers) into its shape; `Err` says what is
/// missing or unsupported, in words for `step.failed`.
pub fn shape(template: &Value) -> Result<Shape, String> {
    let props = template
        .get("properties")
        .ok_or("the template has no properties")?;
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
    let source = props.get("source").ok_or("the template has no source")?;
    let source = match text(source, "type").as_deref() {
        Some("PlatformImage") => Source::Platform {
            publisher: text(source, "publisher").ok_or("source.publisher is missing")?,
            offer: text(source, "offer").ok_or("source.offer is missing")?,
            sku: text(source, "sku").ok_or("source.sku is missing")?,
            version: text(source, "version").unwrap_or_else(|| "latest".into()),
        },
        Some("SharedImageVersion") => {
            let id = text(source, "imageVersionId").ok_or("source.imageVersionId is missing")?;
            match id.to_ascii_lowercase().find("/versions/") {
                Some(at) => {
                    let version = id[at + "/versions/".len()..].to_owned();
                    Source::Gallery {
                        definition_id: id[..at].to_owned(),
                        version: (!version.eq_ignore_ascii_case("latest")).then_some(version),
                    }
                }
                None => Source::Gallery {
                    definition_id: id,
                    version: None,
                },
            }
        }
        Some("ManagedImage") => Source::ManagedImage {
            id: text(source, "imageId").ok_or("source.imageId is missing")?,
        },
        other => {
            return Err(format!(
                "source type {other:?} is not one Image Builder knows"
            ));
        }
    };
    let distributions: Vec<Distribution> = props
        .get("distribute")
        .and_then(Value::as_array)
        .ok_or("the template has no distribute list")?
        .iter()
        .map(|d| {
            let mut regions: Vec<String> = d
                .get("targetRegions")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(|t| text(t, "name")).collect())
                .unwrap_or_default();
            if regions.is_empty() {
                regions = d
                    .get("replicationRegions")
                    .and_then(Value::as_array)
                    .map(|r| {
                        r.iter()
                            .filter_map(|t| t.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
            }
            Distribution {
                kind: text(d, "type").unwrap_or_default(),
                run_output_name: text(d, "runOutputName").unwrap_or_default(),
                regions,
            }
        })
        .collect();
    if distributions.is_empty() {
        return Err("the template distributes nothing".into());
    }
    let timeout = props
        .get("buildTimeoutInMinutes")
        .and_then(Value::as_u64)
        .filter(|m| *m > 0)
        .map_or(DEFAULT_BUILD_TIMEOUT_MINUTES, |m| m.min(960) as u32);
    let what = serde_json::json!([
        props.get("source").map(strip_read_only),
        props.get("customize"),
        props.get("distribute")
    ]);
    let fingerprint = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, what.to_string().as_bytes())
        .simple()
        .to_string();
    Ok(Shape {
        location: text(template, "location").unwrap_or_default(),
        source,
        distributions,
        build_timeout_minutes: timeout,
        fingerprint,
    })
}

/// The source without what Image Builder fills in after a run (`exactVersion`).
fn strip_read_only(source: &Value) -> Value {
    let mut s = source.clone();
    if let Some(o) = s.as_object_mut() {
        o.remove("exactVersion");
    }
    s
}

/// What makes a build slow or fragile, to announce with `build.started`. Image Builder's own gallery
/// distribution blocks the run until every region has replicated.
pub fn warnings(shape: &Shape) -> Vec<String> {
    shape
        .distributions
        .iter()
        .filter(|d| d.kind == "SharedImage")
        .filter(|d| {
            d.regions
                .iter()
                .any(|r| !r.eq_ignore_ascii_case(&shape.location))
        })
        .map(|d| {
            format!(
                "distribute '{}' replicates to {} regions ({}) inside Image Builder, which holds the run until every region has replicated and fails the whole run for one region. Distribute to the home region only (or to a VHD) and let galleon replicate region by region (README: the recommended template shape).",
                d.run_output_name,
                d.regions.len(),
                d.regions.join(", ")
            )
        })
        .collect()
}

/// The entry's `publish` as the manifest of a disk named `disk_name` (a build's output); `None` without
/// `publish`.
pub fn publish_manifest(
    entry: &TemplateEntry,
    disk_name: &str,
) -> Result<Option<super::manifest::Manifest>, crate::events::Reason> {
    let Some(publish) = &entry.publish else {
        return Ok(None);
    };
    let mut fields = publish.clone();
    fields.insert("vhd".into(), Value::String(disk_name.to_owned()));
    let text = Value::Object(fields).to_string();
    super::manifest::Manifest::parse(text.as_bytes(), &format!("publish of {}", entry.name()))
        .map(Some)
}

/// The manifest fields a VHD or managed image output needs from `publish`.
pub const PUBLISH_REQUIRED: [&str; 3] = ["imageDefinition", "osType", "hyperVGeneration"];

/// Checks the entry's `publish` as far as it goes at start-up: every field it has is a manifest field
/// with a valid value (what a VHD or managed image output also needs is checked when the template is
/// read, [`publish_problem`]).
pub fn check_publish(entry: &TemplateEntry) -> Result<(), crate::events::Reason> {
    let Some(publish) = &entry.publish else {
        return Ok(());
    };
    let mut probe = publish.clone();
    for (key, placeholder) in PUBLISH_REQUIRED.iter().zip(["placeholder", "Linux", "V2"]) {
        probe
            .entry(key.to_string())
            .or_insert_with(|| Value::String(placeholder.into()));
    }
    publish_manifest(
        &TemplateEntry {
            publish: Some(probe),
            ..entry.clone()
        },
        "build.vhd",
    )
    .map(|_| ())
}

/// The kinds of output galleon can carry on, and what each needs: a VHD or managed image needs the
/// entry's `publish` (which image definition, which OS); `Err` says which output lacks it.
pub fn publish_problem(shape: &Shape, entry: &TemplateEntry) -> Option<String> {
    for d in &shape.distributions {
        match d.kind.as_str() {
            "VHD" | "ManagedImage"
                if entry
                    .publish
                    .as_ref()
                    .is_none_or(|p| PUBLISH_REQUIRED.iter().any(|k| !p.contains_key(*k))) =>
            {
                return Some(format!(
                    "distribute '{}' makes a {} but the builds file's publish of template {} does not say imageDefinition, osType and hyperVGeneration: galleon cannot tell where to publish it",
                    d.run_output_name, d.kind, entry.template_id
                ));
            }
            "VHD" | "ManagedImage" | "SharedImage" => {}
            other => {
                return Some(format!(
                    "distribute '{}' has type {other:?}; galleon publishes VHD, ManagedImage and SharedImage outputs",
                    d.run_output_name
                ));
            }
        }
    }
    None
}

/// Whether a managed image made elsewhere (by Image Builder, by Packer) can be published as `plan` says:
/// made, in the home region, of the OS type, state and generation the plan states. `Some(why)` if not.
pub fn image_problem(image: &Value, plan: &crate::events::Plan) -> Option<String> {
    let at = |p: &str| image.pointer(p).and_then(Value::as_str).unwrap_or_default();
    let id = at("/id");
    let state = at("/properties/provisioningState");
    if state != "Succeeded" {
        return Some(format!(
            "managed image {id} is in provisioningState '{state}', not Succeeded"
        ));
    }
    let norm = |s: &str| s.replace(' ', "").to_ascii_lowercase();
    if norm(at("/location")) != norm(&plan.location) {
        return Some(format!(
            "managed image {id} is in {}, but the version is made in {} (a gallery version is made from an image in its own region)",
            at("/location"),
            plan.location
        ));
    }
    let wants = |v: &dyn std::fmt::Debug| format!("{v:?}");
    let checks = [
        (
            "osType",
            at("/properties/storageProfile/osDisk/osType"),
            wants(&plan.os_type),
        ),
        (
            "osState",
            at("/properties/storageProfile/osDisk/osState"),
            wants(&plan.os_state),
        ),
        (
            "hyperVGeneration",
            at("/properties/hyperVGeneration"),
            wants(&plan.hyper_v_generation),
        ),
    ];
    for (name, has, want) in checks {
        // Azure leaves hyperVGeneration out of images made before generations existed: V1.
        let has = if has.is_empty() && name == "hyperVGeneration" {
            "V1"
        } else {
            has
        };
        if !has.eq_ignore_ascii_case(&want) {
            return Some(format!(
                "managed image {id} has {name} {has}, the plan states {want}"
            ));
        }
    }
    None
}

/// The highest version name, compared numerically part by part (`1.10.0` > `1.9.0`,
/// `24.04.202612010` > `24.04.202611200`).
pub fn latest_version<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let key = |v: &str| -> Vec<u64> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    names
        .into_iter()
        .max_by(|a, b| key(a).cmp(&key(b)))
        .map(str::to_owned)
}

/// The version Image Builder builds from for a gallery source at `latest`, of the versions of its
/// definition (as the versions list answers): the highest that is made and not excluded from latest,
/// for the whole version or in the template's `location`.
pub fn latest_gallery_version(versions: &[Value], location: &str) -> Option<String> {
    let norm = |s: &str| s.replace(' ', "").to_ascii_lowercase();
    let usable = versions.iter().filter(|v| {
        let excluded =
            |r: &Value| r.get("excludeFromLatest").and_then(Value::as_bool) == Some(true);
        let profile = v.pointer("/properties/publishingProfile");
        v.pointer("/properties/provisioningState")
            .and_then(Value::as_str)
            == Some("Succeeded")
            && !profile.is_some_and(excluded)
            && !profile
                .and_then(|p| p.get("targetRegions"))
                .and_then(Value::as_array)
                .is_some_and(|regions| {
                    regions.iter().any(|r| {
                        r.get("name")
                            .and_then(Value::as_str)
                            .is_some_and(|n| norm(n) == norm(location))
                            && excluded(r)
                    })
                })
    });
    latest_version(usable.filter_map(|v| v.get("name").and_then(Value::as_str)))
}

/// The version name in a template's `source.exactVersion`: a platform image's version as it is, a
/// gallery version's whole resource id (`…/versions/1.2.3`) as its last segment.
pub fn exact_version_name(exact: &str) -> &str {
    exact.rsplit('/').next().unwrap_or(exact)
}

/// What galleon remembers of a template's last successful build (`builds/<template>.json` in its state
/// container).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastBuild {
    pub source: BuildSource,
    pub fingerprint: String,
    pub finished_at: DateTime<Utc>,
}

/// Whether the schedule's rebuild can be skipped: the source resolved to the same version as at the
/// last successful build, and the template builds the same way. `Some(why)` to skip.
pub fn unchanged(now: &BuildSource, fingerprint: &str, last: Option<&LastBuild>) -> Option<String> {
    let last = last?;
    if now.version.is_none() || last.source != *now || last.fingerprint != fingerprint {
        return None;
    }
    Some(format!(
        "{} is still at {}, the version the last successful build (finished {}) used, and the template is unchanged; it rebuilds only when its source changes",
        now.id,
        now.version.as_deref().unwrap_or_default(),
        last.finished_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    ))
}

/// A run as `lastRunStatus` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunStatus {
    pub state: String,
    pub sub_state: Option<String>,
    pub message: Option<String>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

impl RunStatus {
    pub fn of(template: &Value) -> Option<RunStatus> {
        let s = template.pointer("/properties/lastRunStatus")?;
        let text = |k: &str| {
            s.get(k)
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
        };
        let time = |k: &str| {
            text(k)
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| t.with_timezone(&Utc))
        };
        Some(RunStatus {
            state: text("runState")?,
            sub_state: text("runSubState"),
            message: text("message"),
            start: time("startTime"),
            end: time("endTime"),
        })
    }

    pub fn in_progress(&self) -> bool {
        matches!(self.state.as_str(), "Running" | "Canceling")
    }
}

/// Whether a run galleon noted starting at `noted` is the run Image Builder shows starting at `shown`
/// (galleon notes the time it asks, a moment before Image Builder starts the run).
pub fn same_run(noted: DateTime<Utc>, shown: DateTime<Utc>) -> bool {
    (shown - noted).num_seconds().abs() <= 120
}

/// Whether galleon cancels the run now: it has run past the template's timeout and galleon's margin.
pub fn overdue(started: DateTime<Utc>, cancel_after_minutes: u32, now: DateTime<Utc>) -> bool {
    now > started + chrono::Duration::minutes(i64::from(cancel_after_minutes))
}

/// Galleon's advice for a run that did not succeed: where to look, and what to do.
pub fn advice(run_state: &str, timed_out: bool, staging: Option<&str>) -> Option<String> {
    let staging = staging.map_or_else(
        || "the run's staging resource group (IT_<resource group>_<template>_<id>)".to_owned(),
        |s| format!("the staging resource group {s}"),
    );
    let logs = format!(
        "The customization log is customization.log under packerlogs/ in the storage account of {staging}; the build VM's resources are in that group too while the run lasts."
    );
    match run_state {
        "Succeeded" => None,
        "Canceled" if timed_out => Some(format!(
            "The run went past the template's buildTimeoutInMinutes and galleon's margin, so galleon cancelled it. {logs} Find the step that hangs (a Windows Update or reboot loop is common), fix the template or raise buildTimeoutInMinutes (recreate the template), then request the build again."
        )),
        "Canceled" => Some(format!(
            "The run was cancelled (in Azure, by someone or something other than galleon's timeout). {logs} Request the build again when it should run."
        )),
        "PartiallySucceeded" => Some(format!(
            "Some distribution targets failed (Image Builder's message names them); the outputs that were made go on into the chain. {logs} Fix the failed target (region quota, the gallery's image definition matching the source's OS and generation), then request the build again."
        )),
        _ => Some(format!(
            "Image Builder's message above says what failed. {logs} Fix the customizer or the template (templates are immutable: delete and create it again), then request the build again."
        )),
    }
}

#[cfg(test)]
#[path = "builds_tests.rs"]
mod tests;
