//! Watching a long-running ARM operation a step started (a managed image, an image version): one look per
//! follow-up, at the resource itself (its provisioningState; the GET is also the final GET) or at the
//! operation URL; when done, the VHD the operation read must still be the one that was checked. A failed operation is reported with Azure's
//! error verbatim, after removing what this run made (and naming what could not be removed).

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{
    ingest::reject::changed_after_check,
    owned, pinned,
    step::{self, Ctx, Emit, StepError, Stop},
};
use crate::{
    azure::arm::{Operation, PollKind},
    events::{Announce, BlobRef, DataDisk, ErrorDetail, Fact, FactType},
};

/// What one look found.
pub enum Look {
    Running(Option<std::time::Duration>),
    Done(Value),
    Failed(ErrorDetail),
}

/// Where a follow-up looks: the resource itself (one GET, which is also the final GET), with the write's
/// operation URL kept for Azure's error when the resource shows `Failed`; or an operation URL.
pub struct Watch<'a> {
    pub url: &'a str,
    pub poll: PollKind,
    pub resource_id: &'a str,
    pub operation: Option<(&'a str, PollKind)>,
    /// When the write was sent.
    pub started_at: Option<DateTime<Utc>>,
}

/// Looks once: at the resource (its `provisioningState`), or at the operation and then the resource.
pub async fn look(ctx: &Ctx, watch: &Watch<'_>) -> Result<Look, StepError> {
    let resource_id = watch.resource_id;
    if watch.poll == PollKind::Resource {
        return look_at_resource(ctx, watch).await;
    }
    match ctx.arm.operation(watch.url, watch.poll).await? {
        Operation::Running { retry_after } => Ok(Look::Running(retry_after)),
        Operation::Failed { code, message } => Ok(Look::Failed(
            ErrorDetail::new(code, message).with_target(resource_id),
        )),
        Operation::Canceled => Ok(Look::Failed(canceled(resource_id))),
        Operation::Succeeded => {
            match ctx
                .arm
                .finished(resource_id, owned::api_for(resource_id))
                .await
            {
                Ok(resource) => Ok(Look::Done(resource)),
                // Some providers end the operation a moment before the resource shows it.
                Err(e) if e.is_waiting() => Ok(Look::Running(None)),
                Err(e) if e.is_transient() => Err(StepError::Transient(e)),
                Err(e) => Ok(Look::Failed(step::detail_of(&e))),
            }
        }
    }
}

fn canceled(resource_id: &str) -> ErrorDetail {
    ErrorDetail::new(
        "OperationCanceled",
        format!("the operation on {resource_id} was canceled"),
    )
    .with_target(resource_id)
}

/// One GET of the resource: `Succeeded` (or no state) is done, `Failed` is read from the operation for
/// Azure's own error, anything else is still running.
async fn look_at_resource(ctx: &Ctx, watch: &Watch<'_>) -> Result<Look, StepError> {
    let resource_id = watch.resource_id;
    let Some(resource) = ctx
        .arm
        .get(resource_id, owned::api_for(resource_id), &[])
        .await?
    else {
        return Ok(Look::Failed(
            ErrorDetail::new(
                "ResourceNotFound",
                format!("{resource_id} is gone while Azure was making it"),
            )
            .with_target(resource_id),
        ));
    };
    let state = resource
        .pointer("/properties/provisioningState")
        .and_then(Value::as_str)
        .unwrap_or("Succeeded");
    if state.eq_ignore_ascii_case("Succeeded") {
        return Ok(Look::Done(resource));
    }
    if state.eq_ignore_ascii_case("Canceled") {
        return Ok(Look::Failed(canceled(resource_id)));
    }
    if !state.eq_ignore_ascii_case("Failed") {
        return Ok(Look::Running(None));
    }
    // Azure's error is on the operation, not on the resource.
    let why = match watch.operation {
        Some((url, kind)) => match ctx.arm.operation(url, kind).await {
            Ok(Operation::Failed { code, message }) => Some(ErrorDetail::new(code, message)),
            Ok(_) => None,
            Err(e) if e.is_transient() => return Err(StepError::Transient(e)),
            Err(e) => Some(step::detail_of(&e)),
        },
        None => None,
    };
    Ok(Look::Failed(
        why.unwrap_or_else(|| {
            ErrorDetail::new(
                "ProvisioningFailed",
                format!("{resource_id} is in provisioningState Failed"),
            )
        })
        .with_target(resource_id),
    ))
}

/// The VHD a promised fact was made from, and whether making it read the blob (a version made from a
/// managed image does not: the image holds its own copy).
fn source_of(then: &Announce) -> Option<(BlobRef, bool)> {
    let vhd: BlobRef = serde_json::from_value(then.data.get("vhd")?.clone()).ok()?;
    let from_image = then
        .data
        .get("imageId")
        .is_some_and(|v| !v.is_null() && v.as_str() != Some(""));
    Some((vhd, !from_image))
}

/// The data disks' VHDs the operation read along with the OS disk's.
fn data_disks_of(then: &Announce) -> Vec<BlobRef> {
    then.data
        .pointer("/plan/publishing/dataDisks")
        .and_then(|d| serde_json::from_value::<Vec<DataDisk>>(d.clone()).ok())
        .map(|disks| disks.into_iter().map(|d| d.vhd).collect())
        .unwrap_or_default()
}

/// The first of the VHDs that is no longer the one that was checked.
async fn changed_source(
    ctx: &Ctx,
    vhds: &[BlobRef],
) -> Result<Option<(BlobRef, pinned::Changed)>, StepError> {
    for vhd in vhds {
        if let Err(changed) = pinned::verify(ctx, vhd).await? {
            return Ok(Some((vhd.clone(), changed)));
        }
    }
    Ok(None)
}

/// The follow-up of an operation: announce `then` once done (`Ok(Ok(facts))`), look again while running
/// (`Ok(Err(Retry-After))`), or end the step.
pub async fn follow(
    ctx: &Ctx,
    fact: &Fact,
    then: &Announce,
    watch: &Watch<'_>,
) -> Result<Result<Vec<Emit>, Option<std::time::Duration>>, StepError> {
    let resource_id = watch.resource_id;
    let run = fact.correlation_id().unwrap_or_default();
    let source = source_of(then);
    match look(ctx, watch).await? {
        Look::Running(retry_after) => Ok(Err(retry_after)),
        Look::Done(_) => {
            let read: Vec<BlobRef> = match &source {
                Some((vhd, true)) => std::iter::once(vhd.clone())
                    .chain(data_disks_of(then))
                    .collect(),
                _ => Vec::new(),
            };
            if let (Some((vhd, _)), Some((changed_vhd, changed))) =
                (&source, changed_source(ctx, &read).await?)
            {
                // Azure may have copied a mix of the old and new blob: what it made goes.
                if let Err(left) =
                    owned::remove(ctx, resource_id, &run, owned::Origin::Vhd(vhd)).await
                {
                    return Err(StepError::failed(
                        "VhdChanged",
                        format!(
                            "{} changed while Azure copied it into {resource_id}",
                            changed_vhd.url
                        ),
                        Some(resource_id.to_owned()),
                        "Do not write to a VHD while galleon publishes it. Delete the resource named under leftBehind, then upload the manifest again.",
                    )
                    .with_left_behind(vec![left]));
                }
                return changed_after_check(
                    ctx,
                    &step::checked_cause(fact, resource_id),
                    &changed_vhd,
                    changed.now(),
                )
                .map(Ok);
            }
            let took = watch
                .started_at
                .map(|t| (Utc::now() - t).num_seconds().max(0) as u64);
            tracing::info!(resource = %resource_id, took_seconds = ?took, "operation succeeded");
            let mut data = then.data.clone();
            // How long the home region took predicts how long replication will.
            if then.ty == FactType::VersionPublished.cloud_event_type()
                && let (Some(took), Some(fields)) = (took, data.as_object_mut())
            {
                fields.insert("homeRegionSeconds".into(), took.into());
            }
            Ok(Ok(vec![step::promised(
                ctx,
                fact,
                then,
                resource_id,
                data,
            )?]))
        }
        Look::Failed(error) => {
            let advice = step::advice_for(&error.code);
            let left_behind = match &source {
                Some((vhd, _)) => owned::remove(ctx, resource_id, &run, owned::Origin::Vhd(vhd))
                    .await
                    .err()
                    .into_iter()
                    .collect(),
                None => Vec::new(),
            };
            Err(StepError::Failed(Box::new(Stop {
                error,
                advice,
                left_behind,
            })))
        }
    }
}
