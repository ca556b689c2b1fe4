//! The bare-VHD path: a `.vhd` under `<container>/<image definition>/` with no manifest. A page blob fires
//! BlobCreated before its pages are written, so it is accepted only once complete and unchanged across
//! two looks a while apart (scheduled follow-ups, bounded by the deadline).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{
    checks::{self, problem_reason, scheme_name},
    parse_subject,
    reject::{Judged, blob_ref, reject},
    sibling_manifest,
};
use crate::{
    azure::blob::{BlobProperties, redact},
    domain::{manifest as manifest_rules, naming},
    events::{
        Cause, Check, DefinitionSpec, HyperVGeneration, Identifier, OsState, Plan, Reason,
        VhdAccepted,
    },
    functions::step::{self, Ctx, Emit, StepError},
};

/// The IngestBlob step name its follow-ups carry.
const STEP: &str = super::NAME;

/// The image definition a bare VHD names by its folder: `<definition>/<file>.vhd`.
pub fn bare_definition(path: &str) -> Result<String, Reason> {
    let segments: Vec<&str> = path.split('/').collect();
    let fix = "Put a bare VHD under a folder named after its image definition (images/ubuntu-2404/disk.vhd), or upload a manifest after the VHD.";
    match segments.as_slice() {
        [definition, file] if !file.is_empty() => {
            naming::image_definition(definition).map_err(|e| Reason {
                code: "NameInvalid".into(),
                message: e.to_string(),
                fix: fix.into(),
            })?;
            Ok((*definition).to_owned())
        }
        _ => Err(Reason {
            code: "BareVhdPathInvalid".into(),
            message: format!("bare VHD '{path}' is not at <image definition>/<file>.vhd"),
            fix: fix.into(),
        }),
    }
}

/// The VHD checks on a bare upload: `None` while the blob is still being written (it changed under the
/// ETag-pinned reads), which is a reason to look again later, not a failure.
async fn inspect_upload(
    ctx: &Ctx,
    url: &str,
    props: &BlobProperties,
    expectations: &vhd::Expectations,
    definition: &DefinitionSpec,
) -> Result<Option<Result<vhd::OsDiskInspection, vhd::Problem>>, StepError> {
    match checks::inspect_os(ctx, url, props, expectations, definition).await {
        Err(StepError::Transient(e)) if e.is_condition_not_met() => {
            tracing::info!(blob = %redact(url), "the blob changed while being read: still uploading");
            Ok(None)
        }
        other => other.map(Some),
    }
}

/// Manifests read per folder at most, looking for one that names a VHD.
const MANIFESTS_PER_FOLDER: usize = 50;

/// A manifest in the VHD's folder that speaks for it.
enum Named {
    /// It names the VHD, as its OS disk or a data disk: that manifest is its commit signal.
    By(String),
    /// It cannot be read as a manifest (its own rejection says why): it may well name the VHD, so the VHD
    /// waits for the manifest to be fixed rather than being published bare.
    Unreadable(String),
}

/// The manifest in the VHD's folder that names it, as its OS disk or a data disk, if any: then that
/// manifest is its commit signal, and a data disk is never published as an image of its own.
async fn named_by_a_manifest(
    ctx: &Ctx,
    url: &str,
    subject: &str,
) -> Result<Option<Named>, StepError> {
    let Some((_, path)) = super::parse_subject(subject) else {
        return Ok(None);
    };
    let (Some(container_url), Some((folder, _))) = (
        url.split('?')
            .next()
            .and_then(|u| u.strip_suffix(&format!("/{path}"))),
        path.rsplit_once('/'),
    ) else {
        return Ok(None);
    };
    let names = ctx
        .blobs
        .list_names(container_url, &format!("{folder}/"), 1000)
        .await?;
    let manifests = names
        .iter()
        .filter(|n| {
            manifest_rules::is_manifest(n) && n.rsplit_once('/').map(|(f, _)| f) == Some(folder)
        })
        .take(MANIFESTS_PER_FOLDER);
    let base = url.split('?').next().unwrap_or(url);
    for name in manifests {
        let manifest_url = format!("{container_url}/{name}");
        let Ok((bytes, _)) = ctx
            .blobs
            .read_small(&manifest_url, manifest_rules::MAX_MANIFEST_BYTES)
            .await
        else {
            continue;
        };
        let Ok(manifest) = manifest_rules::Manifest::parse(&bytes, name) else {
            return Ok(Some(Named::Unreadable(manifest_url)));
        };
        let os = manifest.vhd_url(&manifest_url).ok();
        let data = manifest.data_disk_urls(&manifest_url).unwrap_or_default();
        if os.as_deref() == Some(base) || data.iter().any(|(_, u)| u == base) {
            return Ok(Some(Named::By(manifest_url)));
        }
    }
    Ok(None)
}

/// A look at a bare VHD: the first (from its BlobCreated) or one a follow-up asked for.
pub struct BareLook<'a> {
    pub cause: &'a Cause,
    pub subject: &'a str,
    pub url: &'a str,
    /// The ETag at the previous look (`None` at the first).
    pub last_e_tag: Option<&'a str>,
    pub first_seen: DateTime<Utc>,
    pub attempt: u32,
    pub deadline: DateTime<Utc>,
    pub storage_account_id: &'a str,
}

/// Looks at a bare VHD: accept it when it is complete and unchanged since the last look, reject it when
/// it is bad, or look again after the settle time.
pub async fn look(ctx: &Ctx, look: BareLook<'_>) -> Result<Vec<Emit>, StepError> {
    let BareLook {
        cause,
        subject,
        url,
        last_e_tag,
        first_seen,
        attempt,
        deadline,
        storage_account_id,
    } = look;
    if ctx
        .blobs
        .properties(&sibling_manifest(url))
        .await?
        .is_some()
    {
        tracing::info!(blob = %redact(url), "a manifest names this VHD; the manifest is the commit signal");
        return Ok(Vec::new());
    }
    match named_by_a_manifest(ctx, url, subject).await? {
        Some(Named::By(manifest)) => {
            tracing::info!(blob = %redact(url), manifest = %redact(&manifest), "a manifest in this folder names this VHD (a data disk, or its OS disk); the manifest is the commit signal");
            return Ok(Vec::new());
        }
        Some(Named::Unreadable(manifest)) => {
            tracing::info!(blob = %redact(url), manifest = %redact(&manifest), "a manifest in this folder cannot be read (its rejection says why) and may name this VHD; the VHD waits for it rather than being published bare");
            return Ok(Vec::new());
        }
        None => {}
    }
    let Some(props) = ctx.blobs.properties(url).await? else {
        tracing::info!(blob = %redact(url), "bare VHD is gone; nothing to do");
        return Ok(Vec::new());
    };
    let judged = || Judged {
        subject,
        url,
        props: &props,
    };
    let path = parse_subject(subject).map(|(_, p)| p).unwrap_or_default();
    let file = path.rsplit('/').next().unwrap_or("disk.vhd");
    let settle_then_look = |e_tag: &str| -> Result<Vec<Emit>, StepError> {
        let at =
            Utc::now() + chrono::Duration::from_std(ctx.config.bare_vhd_settle).unwrap_or_default();
        if at > deadline {
            return Err(StepError::failed(
                "VhdIncomplete",
                format!(
                    "{} did not become a complete, unchanged fixed VHD before the deadline (first seen {first_seen})",
                    redact(url)
                ),
                None,
                "Finish the upload, or upload a manifest after the VHD to say it is complete.",
            ));
        }
        let check = Check::VhdComplete {
            url: url.to_owned(),
            e_tag: e_tag.to_owned(),
            first_seen,
            storage_account_id: storage_account_id.to_owned(),
        };
        Ok(vec![ctx.follow_up(
            cause,
            STEP,
            subject,
            check,
            None,
            attempt + 1,
            deadline,
            at,
        )?])
    };
    // The first look only starts the wait: a manifest may follow the VHD (then it is the commit signal
    // and judges the VHD once), and a VHD still being written is not judged yet.
    if last_e_tag.is_none() {
        return settle_then_look(&props.e_tag);
    }
    let definition = match bare_definition(&path) {
        Ok(d) => d,
        Err(reason) => return reject(ctx, cause, judged(), None, reason).await,
    };
    if let Some(reason) = checks::blob_type_problem(file, &props.blob_type) {
        return reject(ctx, cause, judged(), None, reason).await;
    }
    let expectations = vhd::Expectations::new(file);
    // A bare VHD has no manifest: the settings' features apply.
    let mut features = DefinitionSpec::default();
    crate::domain::features::with_defaults(&mut features, &ctx.config.policy.features);
    let inspected = inspect_upload(ctx, url, &props, &expectations, &features).await?;
    let settled =
        last_e_tag == Some(props.e_tag.as_str()) && props.copy_status.as_deref() != Some("pending");
    let look_again = || settle_then_look(&props.e_tag);
    let inspection = match inspected {
        None => return look_again(),
        Some(Err(problem)) if problem.code == vhd::ProblemCode::VhdFooterMissing => {
            return look_again();
        }
        Some(Err(problem)) => {
            return reject(ctx, cause, judged(), None, problem_reason(problem)).await;
        }
        Some(Ok(_)) if !settled => return look_again(),
        Some(Ok(os)) => {
            if features.architecture.is_none() {
                features.architecture = checks::detected_architecture(&os);
            }
            os.inspection
        }
    };
    let policy = &ctx.config.policy;
    let created = props.created.or(props.last_modified).unwrap_or(first_seen);
    let generation = match inspection.generation {
        Some(vhd::Generation::V1) => HyperVGeneration::V1,
        _ => HyperVGeneration::V2,
    };
    let plan = Plan {
        subscription_id: policy.subscription_id.clone(),
        resource_group: policy.resource_group.clone(),
        gallery: policy.gallery.clone(),
        image_definition: definition.clone(),
        version: naming::version_from_time(created).to_string(),
        location: policy.location.clone(),
        os_type: ctx.config.bare_os_type,
        os_state: OsState::Generalized,
        hyper_v_generation: generation,
        identifier: Identifier {
            publisher: policy.publisher.clone(),
            offer: definition.clone(),
            sku: format!("{definition}-{generation:?}").to_ascii_lowercase(),
        },
        target_regions: policy.target_regions_for(policy.features.replica_count),
        publish_from: policy.publish_from,
        storage_account_id: storage_account_id.to_owned(),
        exclude_from_latest: false,
        tags: BTreeMap::new(),
        definition: features,
        publishing: crate::events::VersionSpec {
            end_of_life_date: policy
                .features
                .version_lifetime_days
                .map(|days| chrono::Utc::now() + chrono::Duration::days(i64::from(days))),
            replica_count: policy.features.replica_count,
            ..Default::default()
        },
        build: None,
        distributed_from: None,
    };
    if let Err(reason) = crate::domain::features::check(&plan, chrono::Utc::now()) {
        return reject(ctx, cause, judged(), None, reason).await;
    }
    if let Some(reason) = checks::storage_region(ctx, storage_account_id, &plan.location).await? {
        return reject(ctx, cause, judged(), None, reason).await;
    }
    if let Some(existing) = checks::already_published(ctx, cause, &plan).await? {
        let reason = Reason {
            code: "AlreadyPublished".into(),
            message: format!("this VHD was already published as {existing}; nothing new was made"),
            fix: "Upload the VHD again (a new upload gets a new version), or use a manifest with an explicit version.".into(),
        };
        return reject(ctx, cause, judged(), None, reason).await;
    }
    let data = VhdAccepted {
        vhd: blob_ref(url, &props),
        manifest: None,
        virtual_size_bytes: inspection.virtual_size,
        partition_scheme: scheme_name(&inspection.partition_scheme).into(),
        plan,
        notes: inspection.notes.clone(),
    };
    tracing::info!(vhd = %redact(url), version = %data.plan.version, "bare VHD accepted");
    let accepted = ctx.fact(cause, subject, "", &data)?;
    let watchdog = step::watchdog(ctx, &accepted)?;
    Ok(vec![Emit::now(accepted), watchdog])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_vhd_paths() {
        assert_eq!(
            bare_definition("ubuntu-2404/disk.vhd").ok().as_deref(),
            Some("ubuntu-2404")
        );
        assert_eq!(
            bare_definition("disk.vhd").map_err(|r| r.code),
            Err("BareVhdPathInvalid".into())
        );
        assert_eq!(
            bare_definition("a/b/disk.vhd").map_err(|r| r.code),
            Err("BareVhdPathInvalid".into())
        );
        assert_eq!(
            bare_definition("-bad/disk.vhd").map_err(|r| r.code),
            Err("NameInvalid".into())
        );
    }
}
