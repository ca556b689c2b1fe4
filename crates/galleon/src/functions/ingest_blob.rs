//! IngestBlob: a blob arrived (Event Grid `Microsoft.Storage.BlobCreated`). A manifest is the commit signal:
//! read it, check the VHD it names from a few range reads, and accept or reject. A bare `.vhd` under
//! `<container>/<image definition>/` is accepted only once complete and unchanged across two looks a while
//! apart (follow-ups). Nothing is written to Azure here, and a rejected blob is only marked, never moved.

use std::{collections::BTreeMap, sync::Arc};

use chrono::Utc;

use super::step::{self, Ctx, Emit, StepError};
use crate::{
    azure::{
        AzureError,
        arm::{self, ids},
        blob::{BlobProperties, VhdReader, redact},
    },
    domain::{
        manifest::{self, Manifest},
        naming, policy,
    },
    events::{
        BlobRef, Cause, Check, HyperVGeneration, Identifier, OsState, OsType, Plan, Reason,
        VhdAccepted, VhdRejected,
    },
    host::{Failure, Invocation, Output, Trigger},
};

pub const NAME: &str = "IngestBlob";
pub const TRIGGER: &str = "event";

/// Metadata galleon puts on a blob it rejects (keys must be C# identifiers for Azure metadata).
pub const REJECTION_KEY: &str = "galleonrejection";
pub const REJECTED_AT_KEY: &str = "galleonrejectedat";

/// A blob that arrived, from its BlobCreated event.
#[derive(Debug, Clone)]
pub struct Arrived {
    pub url: String,
    /// `/blobServices/default/containers/<container>/blobs/<path>`
    pub subject: String,
    pub container: String,
    pub path: String,
    pub storage_account_id: String,
}

/// Reads container and path out of a BlobCreated subject.
pub fn parse_subject(subject: &str) -> Option<(String, String)> {
    let rest = subject.strip_prefix("/blobServices/default/containers/")?;
    let (container, path) = rest.split_once("/blobs/")?;
    (!container.is_empty() && !path.is_empty()).then(|| (container.to_owned(), path.to_owned()))
}

/// What kind of blob arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Manifest,
    BareVhd,
    Other,
}

pub fn kind_of(path: &str) -> Kind {
    let lower = path.to_ascii_lowercase();
    if manifest::is_manifest(&lower) {
        Kind::Manifest
    } else if lower.ends_with(".vhd") {
        Kind::BareVhd
    } else {
        Kind::Other
    }
}

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

/// The manifest a VHD would have next to it.
pub fn sibling_manifest(url: &str) -> String {
    let base = url.split('?').next().unwrap_or(url);
    let stem = base
        .strip_suffix(".vhd")
        .or_else(|| base.strip_suffix(".VHD"))
        .unwrap_or(base);
    format!("{stem}{}", manifest::SUFFIX)
}

pub async fn run(invocation: Invocation, ctx: Arc<Ctx>) -> Result<Output, Failure> {
    let Trigger::EventGrid(event) = invocation.trigger else {
        return Err(Failure::new("IngestBlob is bound to an Event Grid trigger"));
    };
    if event.event_type != "Microsoft.Storage.BlobCreated" {
        tracing::warn!(event_type = %event.event_type, id = %event.id, "not a BlobCreated event; check the Event Grid subscription filter");
        return Ok(Output::default());
    }
    let url = event
        .data
        .get("url")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned();
    let Some((container, path)) = event.subject.as_deref().and_then(parse_subject) else {
        tracing::warn!(subject = ?event.subject, "BlobCreated without a blob subject; ignored");
        return Ok(Output::default());
    };
    let traceparent = event
        .raw
        .get("traceparent")
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .or(invocation.traceparent.clone())
        .or_else(|| Some(crate::events::new_traceparent(&event.id)));
    let cause = Cause::root(&event.id, traceparent);
    tracing::Span::current().record("correlation_id", cause.correlation_id.as_str());
    let arrived = Arrived {
        url,
        subject: event.subject.clone().unwrap_or_default(),
        container,
        path,
        storage_account_id: event.source.clone(),
    };
    tracing::info!(blob = %redact(&arrived.url), kind = ?kind_of(&arrived.path), "blob arrived");
    let outcome = match kind_of(&arrived.path) {
        Kind::Manifest => from_manifest(&ctx, &cause, &arrived).await,
        Kind::BareVhd => from_bare_vhd(&ctx, &cause, &arrived).await,
        Kind::Other => Ok(Vec::new()),
    };
    let emits = match outcome {
        Ok(emits) => emits,
        // Event Grid redelivers on a 5xx with its own backoff; the step is idempotent.
        Err(StepError::Transient(e)) => return Err(Failure::new(e)),
        Err(StepError::Failed {
            code,
            message,
            target,
            advice,
        }) => {
            // The step.failed names the BlobCreated event as its input.
            let data = crate::events::StepFailed {
                step: NAME.into(),
                error: crate::events::AzureError {
                    code,
                    message,
                    target,
                },
                attempts: 1,
                advice,
                input: crate::events::FailedInput {
                    ty: "Microsoft.Storage.BlobCreated".into(),
                    id: event.id.clone(),
                    subject: Some(arrived.subject.clone()),
                },
            };
            vec![Emit::now(
                ctx.fact(&cause, &arrived.subject, NAME, &data)
                    .map_err(|e| Failure::new(format!("{e:?}")))?,
            )]
        }
    };
    step::send(&ctx, &emits).await?;
    Ok(Output::default())
}

fn blob_ref(url: &str, props: &BlobProperties) -> BlobRef {
    BlobRef {
        url: url.split('?').next().unwrap_or(url).to_owned(),
        e_tag: props.e_tag.clone(),
        content_length: props.content_length,
    }
}

/// Marks `url` as rejected (unless it already carries the same mark) and builds the rejection fact.
/// Returns no fact when the blob already carries this very rejection: the mark itself changed the blob's
/// ETag, and the event that change may raise must not announce the rejection twice.
pub async fn reject(
    ctx: &Ctx,
    cause: &Cause,
    subject: &str,
    url: &str,
    props: &BlobProperties,
    vhd: Option<BlobRef>,
    reason: Reason,
) -> Result<Vec<Emit>, StepError> {
    if props.metadata.get(REJECTION_KEY) == Some(&reason.code) {
        tracing::info!(blob = %redact(url), code = %reason.code, "already rejected for this reason; not announcing again");
        return Ok(Vec::new());
    }
    tracing::warn!(blob = %redact(url), code = %reason.code, message = %reason.message, "rejecting");
    let mark = BTreeMap::from([
        (REJECTION_KEY.to_owned(), reason.code.clone()),
        (REJECTED_AT_KEY.to_owned(), Utc::now().to_rfc3339()),
    ]);
    let marked = match ctx
        .blobs
        .add_metadata(url, &props.e_tag, &props.metadata, &mark)
        .await
    {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(blob = %redact(url), error = %e, "could not mark the blob; the rejection is still announced");
            false
        }
    };
    let data = VhdRejected {
        blob: blob_ref(url, props),
        vhd,
        reason,
        marked,
    };
    let code = data.reason.code.clone();
    Ok(vec![Emit::now(ctx.fact(cause, subject, &code, &data)?)])
}

/// Runs the VHD checks; `Ok(Err(problem))` is a rejection, `Err` an I/O failure to retry.
async fn inspect(
    ctx: &Ctx,
    url: &str,
    props: &BlobProperties,
    expectations: &vhd::Expectations,
) -> Result<Result<vhd::Inspection, vhd::Problem>, StepError> {
    let reader = VhdReader {
        blobs: &ctx.blobs,
        url,
        e_tag: &props.e_tag,
    };
    match vhd::inspect(&reader, props.content_length, expectations).await {
        Ok(i) => Ok(Ok(i)),
        Err(vhd::InspectError::Rejected(problem)) => Ok(Err(problem)),
        Err(vhd::InspectError::Read { source, .. }) => Err(StepError::from(source)),
        Err(other) => Err(StepError::Transient(AzureError::transient(
            "Blob Storage",
            "ShortRead",
            other.to_string(),
        ))),
    }
}

/// The VHD checks on a bare upload: `None` while the blob is still being written (it changed under the
/// ETag-pinned reads), which is a reason to look again later, not a failure.
async fn inspect_upload(
    ctx: &Ctx,
    url: &str,
    props: &BlobProperties,
    expectations: &vhd::Expectations,
) -> Result<Option<Result<vhd::Inspection, vhd::Problem>>, StepError> {
    match inspect(ctx, url, props, expectations).await {
        Err(StepError::Transient(e)) if e.code() == "ConditionNotMet" => {
            tracing::info!(blob = %redact(url), "the blob changed while being read: still uploading");
            Ok(None)
        }
        other => other.map(Some),
    }
}

fn problem_reason(p: vhd::Problem) -> Reason {
    Reason {
        code: p.code.to_string(),
        message: p.message,
        fix: p.fix,
    }
}

fn scheme_name(scheme: &vhd::PartitionScheme) -> &'static str {
    match scheme {
        vhd::PartitionScheme::Gpt { has_esp: true, .. } => "gpt-esp",
        vhd::PartitionScheme::Gpt { .. } => "gpt",
        vhd::PartitionScheme::Mbr { .. } => "mbr",
        _ => "none",
    }
}

fn to_vhd_generation(g: HyperVGeneration) -> vhd::Generation {
    match g {
        HyperVGeneration::V1 => vhd::Generation::V1,
        HyperVGeneration::V2 => vhd::Generation::V2,
    }
}

/// Whether this plan's version was already published by another run. A version made by this very run (a
/// redelivered event) is not "already published": the chain just goes on, idempotently.
async fn already_published(
    ctx: &Ctx,
    cause: &Cause,
    plan: &Plan,
) -> Result<Option<String>, StepError> {
    let id = ids::image_version(
        &plan.subscription_id,
        &plan.resource_group,
        &plan.gallery,
        &plan.image_definition,
        &plan.version,
    );
    let Some(version) = ctx.arm.get(&id, arm::GALLERY_API, &[]).await? else {
        return Ok(None);
    };
    let run = version
        .pointer("/tags/galleon-run")
        .and_then(|v| v.as_str());
    let state = version
        .pointer("/properties/provisioningState")
        .and_then(|v| v.as_str());
    Ok((run != Some(cause.correlation_id.as_str()) && state == Some("Succeeded")).then_some(id))
}

async fn from_manifest(
    ctx: &Ctx,
    cause: &Cause,
    arrived: &Arrived,
) -> Result<Vec<Emit>, StepError> {
    let (bytes, mprops) = match ctx
        .blobs
        .read_small(&arrived.url, manifest::MAX_MANIFEST_BYTES)
        .await
    {
        Ok(found) => found,
        Err(AzureError::Permanent { code, .. }) if code == "BlobNotFound" => {
            tracing::info!(blob = %redact(&arrived.url), "manifest is gone; nothing to do");
            return Ok(Vec::new());
        }
        Err(AzureError::Permanent { code, message, .. }) if code == "BlobTooLarge" => {
            let props = ctx
                .blobs
                .properties(&arrived.url)
                .await?
                .unwrap_or_else(empty_props);
            let reason = Reason { code: "ManifestTooLarge".into(), message, fix: "A manifest is a small JSON file (events/manifest.schema.json); upload the VHD as .vhd and describe it in a manifest under 64 KiB.".into() };
            return reject(
                ctx,
                cause,
                &arrived.subject,
                &arrived.url,
                &props,
                None,
                reason,
            )
            .await;
        }
        Err(e) => return Err(e.into()),
    };
    let name = arrived.path.rsplit('/').next().unwrap_or(&arrived.path);
    let reject_manifest = |reason: Reason| {
        reject(
            ctx,
            cause,
            &arrived.subject,
            &arrived.url,
            &mprops,
            None,
            reason,
        )
    };
    let manifest = match Manifest::parse(&bytes, name) {
        Ok(m) => m,
        Err(reason) => return reject_manifest(reason).await,
    };
    let vhd_url = match manifest.vhd_url(&arrived.url) {
        Ok(u) => u,
        Err(reason) => return reject_manifest(reason).await,
    };
    let Some(vprops) = ctx.blobs.properties(&vhd_url).await? else {
        let reason = Reason {
            code: "VhdMissing".into(),
            message: format!("the manifest names {} but no such blob exists", redact(&vhd_url)),
            fix: "Upload the VHD first and the manifest after it (the manifest is the signal that the VHD is complete).".into(),
        };
        return reject_manifest(reason).await;
    };
    if vprops.copy_status.as_deref() == Some("pending") {
        return Err(StepError::Transient(AzureError::copy_pending(format!(
            "{} is still being copied",
            redact(&vhd_url)
        ))));
    }
    let created = vprops
        .created
        .or(vprops.last_modified)
        .unwrap_or_else(Utc::now);
    let plan = match manifest.plan(&ctx.config.policy, &arrived.storage_account_id, created) {
        Ok(p) => p,
        Err(reason) => return reject_manifest(reason).await,
    };
    let vhd_name = vhd_url.rsplit('/').next().unwrap_or("disk.vhd").to_owned();
    let mut expectations = vhd::Expectations::new(vhd_name);
    expectations.declared_generation = Some(to_vhd_generation(plan.hyper_v_generation));
    expectations.allow_generation_mismatch = manifest.allow_generation_mismatch;
    let inspection = match inspect(ctx, &vhd_url, &vprops, &expectations).await? {
        Ok(i) => i,
        Err(problem) => {
            // Mark the VHD (the faulty blob); the fact's subject is the manifest that named it.
            let data_vhd = blob_ref(&vhd_url, &vprops);
            return reject(
                ctx,
                cause,
                &arrived.subject,
                &vhd_url,
                &vprops,
                Some(data_vhd),
                problem_reason(problem),
            )
            .await;
        }
    };
    for note in &inspection.notes {
        tracing::info!(note = %note, "VHD inspection note");
    }
    if let Some(existing) = already_published(ctx, cause, &plan).await? {
        let reason = Reason {
            code: "AlreadyPublished".into(),
            message: format!("this VHD was already published as {existing}; nothing new was made"),
            fix: "To publish it again as a new version, give the manifest a new \"version\" (or upload the VHD again).".into(),
        };
        return reject(
            ctx,
            cause,
            &arrived.subject,
            &arrived.url,
            &mprops,
            Some(blob_ref(&vhd_url, &vprops)),
            reason,
        )
        .await;
    }
    let data = VhdAccepted {
        vhd: blob_ref(&vhd_url, &vprops),
        manifest: Some(blob_ref(&arrived.url, &mprops)),
        virtual_size_bytes: inspection.virtual_size,
        partition_scheme: scheme_name(&inspection.partition_scheme).into(),
        plan,
    };
    tracing::info!(vhd = %redact(&vhd_url), version = %data.plan.version, "VHD accepted");
    Ok(vec![Emit::now(ctx.fact(
        cause,
        &arrived.subject,
        "",
        &data,
    )?)])
}

fn empty_props() -> BlobProperties {
    BlobProperties {
        content_length: 0,
        e_tag: String::new(),
        blob_type: String::new(),
        copy_status: None,
        created: None,
        last_modified: None,
        metadata: BTreeMap::new(),
    }
}

async fn from_bare_vhd(
    ctx: &Ctx,
    cause: &Cause,
    arrived: &Arrived,
) -> Result<Vec<Emit>, StepError> {
    if ctx
        .blobs
        .properties(&sibling_manifest(&arrived.url))
        .await?
        .is_some()
    {
        tracing::info!(blob = %redact(&arrived.url), "a manifest names this VHD; the manifest is the commit signal");
        return Ok(Vec::new());
    }
    let Some(props) = ctx.blobs.properties(&arrived.url).await? else {
        return Ok(Vec::new());
    };
    if let Err(reason) = bare_definition(&arrived.path) {
        return reject(
            ctx,
            cause,
            &arrived.subject,
            &arrived.url,
            &props,
            None,
            reason,
        )
        .await;
    }
    let expectations =
        vhd::Expectations::new(arrived.path.rsplit('/').next().unwrap_or("disk.vhd"));
    match inspect_upload(ctx, &arrived.url, &props, &expectations).await? {
        Some(Err(problem)) if problem.code != vhd::ProblemCode::VhdFooterMissing => {
            reject(
                ctx,
                cause,
                &arrived.subject,
                &arrived.url,
                &props,
                None,
                problem_reason(problem),
            )
            .await
        }
        // Complete-looking or still uploading: look again after the settle time.
        _ => {
            let check = Check::VhdComplete {
                url: arrived.url.clone(),
                e_tag: props.e_tag.clone(),
                first_seen: Utc::now(),
            };
            let then = step::announce::<VhdAccepted>(
                &arrived.subject,
                &placeholder_accepted(arrived, &props),
            )?;
            let at = Utc::now()
                + chrono::Duration::from_std(ctx.config.bare_vhd_settle).unwrap_or_default();
            Ok(vec![ctx.follow_up(
                cause,
                NAME,
                &arrived.subject,
                check,
                then,
                1,
                ctx.deadline_from_now(),
                at,
            )?])
        }
    }
}

/// What a bare VHD will be accepted as (the follow-up fills in the checked figures).
fn placeholder_accepted(arrived: &Arrived, props: &BlobProperties) -> VhdAccepted {
    VhdAccepted {
        vhd: blob_ref(&arrived.url, props),
        manifest: None,
        virtual_size_bytes: props.content_length.saturating_sub(512),
        partition_scheme: "none".into(),
        plan: Plan {
            subscription_id: String::new(),
            resource_group: String::new(),
            gallery: String::new(),
            image_definition: arrived
                .path
                .split('/')
                .next()
                .unwrap_or_default()
                .to_owned(),
            version: String::new(),
            location: String::new(),
            os_type: OsType::Linux,
            os_state: OsState::Generalized,
            hyper_v_generation: HyperVGeneration::V2,
            identifier: Identifier {
                publisher: String::new(),
                offer: String::new(),
                sku: String::new(),
            },
            target_regions: Vec::new(),
            publish_from: crate::events::PublishFrom::Vhd,
            storage_account_id: arrived.storage_account_id.clone(),
            exclude_from_latest: false,
            tags: BTreeMap::new(),
        },
    }
}

/// A look at a bare VHD that a follow-up asked for.
pub struct BareLook<'a> {
    pub cause: &'a Cause,
    pub subject: &'a str,
    pub url: &'a str,
    pub last_e_tag: &'a str,
    pub first_seen: chrono::DateTime<Utc>,
    pub attempt: u32,
    pub deadline: chrono::DateTime<Utc>,
    pub storage_account_id: &'a str,
}

/// The follow-up of a bare VHD: accept it if it is complete and unchanged since the last look.
pub async fn recheck_bare_vhd(ctx: &Ctx, look: BareLook<'_>) -> Result<Vec<Emit>, StepError> {
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
        tracing::info!(blob = %redact(url), "a manifest arrived for this VHD; it takes over");
        return Ok(Vec::new());
    }
    let Some(props) = ctx.blobs.properties(url).await? else {
        tracing::info!(blob = %redact(url), "bare VHD was deleted while waiting");
        return Ok(Vec::new());
    };
    let path = parse_subject(subject).map(|(_, p)| p).unwrap_or_default();
    let definition = match bare_definition(&path) {
        Ok(d) => d,
        Err(reason) => return reject(ctx, cause, subject, url, &props, None, reason).await,
    };
    let expectations = vhd::Expectations::new(path.rsplit('/').next().unwrap_or("disk.vhd"));
    let inspected = inspect_upload(ctx, url, &props, &expectations).await?;
    let settled = props.e_tag == last_e_tag && props.copy_status.as_deref() != Some("pending");
    let look_again = |reason_if_late: Reason| -> Result<Vec<Emit>, StepError> {
        let at =
            Utc::now() + chrono::Duration::from_std(ctx.config.bare_vhd_settle).unwrap_or_default();
        if at > deadline {
            return Err(StepError::Failed {
                code: reason_if_late.code,
                message: reason_if_late.message,
                target: None,
                advice: reason_if_late.fix,
            });
        }
        let check = Check::VhdComplete {
            url: url.to_owned(),
            e_tag: props.e_tag.clone(),
            first_seen,
        };
        let arrived = Arrived {
            url: url.to_owned(),
            subject: subject.to_owned(),
            container: String::new(),
            path: path.clone(),
            storage_account_id: storage_account_id.to_owned(),
        };
        let then = step::announce::<VhdAccepted>(subject, &placeholder_accepted(&arrived, &props))?;
        Ok(vec![ctx.follow_up(
            cause,
            NAME,
            subject,
            check,
            then,
            attempt + 1,
            deadline,
            at,
        )?])
    };
    let incomplete = Reason {
        code: "VhdIncomplete".into(),
        message: format!(
            "{} did not become a complete, unchanged fixed VHD before the deadline (first seen {first_seen})",
            redact(url)
        ),
        fix: "Finish the upload, or upload a manifest after the VHD to say it is complete.".into(),
    };
    match inspected {
        None => look_again(incomplete),
        Some(Err(problem)) if problem.code == vhd::ProblemCode::VhdFooterMissing => {
            look_again(incomplete)
        }
        Some(Err(problem)) => {
            reject(
                ctx,
                cause,
                subject,
                url,
                &props,
                None,
                problem_reason(problem),
            )
            .await
        }
        Some(Ok(_)) if !settled => look_again(incomplete),
        Some(Ok(inspection)) => {
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
                target_regions: policy::home_first(&policy.location, &policy.target_regions),
                publish_from: policy.publish_from,
                storage_account_id: storage_account_id.to_owned(),
                exclude_from_latest: false,
                tags: BTreeMap::new(),
            };
            if let Some(existing) = already_published(ctx, cause, &plan).await? {
                let reason = Reason {
                    code: "AlreadyPublished".into(),
                    message: format!("this VHD was already published as {existing}; nothing new was made"),
                    fix: "Upload the VHD again (a new upload gets a new version), or use a manifest with an explicit version.".into(),
                };
                return reject(ctx, cause, subject, url, &props, None, reason).await;
            }
            let data = VhdAccepted {
                vhd: blob_ref(url, &props),
                manifest: None,
                virtual_size_bytes: inspection.virtual_size,
                partition_scheme: scheme_name(&inspection.partition_scheme).into(),
                plan,
            };
            Ok(vec![Emit::now(ctx.fact(cause, subject, "", &data)?)])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_and_kinds() {
        assert_eq!(
            parse_subject("/blobServices/default/containers/images/blobs/ubuntu/u.manifest.json"),
            Some(("images".into(), "ubuntu/u.manifest.json".into()))
        );
        assert_eq!(
            parse_subject("/blobServices/default/containers/images"),
            None
        );
        assert_eq!(kind_of("ubuntu/u.manifest.json"), Kind::Manifest);
        assert_eq!(kind_of("ubuntu/U.VHD"), Kind::BareVhd);
        assert_eq!(kind_of("ubuntu/u.vhdx"), Kind::Other);
        assert_eq!(kind_of("notes.txt"), Kind::Other);
    }

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
        assert_eq!(
            sibling_manifest("https://a/c/ubuntu/disk.vhd"),
            "https://a/c/ubuntu/disk.manifest.json"
        );
    }
}
