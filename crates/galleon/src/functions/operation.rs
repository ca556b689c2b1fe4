//! Watching a long-running ARM operation a step started (a managed image, an image version): one look per
//! follow-up; when Azure says it succeeded, a final GET of the resource must agree, and the VHD the
//! operation read must still be the one that was checked. A failed operation is reported with Azure's
//! error verbatim, after removing what this run made (and naming what could not be removed).

use serde_json::Value;

use super::{
    ingest::reject::changed_after_check,
    owned, pinned,
    step::{self, Ctx, Emit, StepError, Stop},
};
use crate::{
    azure::arm::{Operation, PollKind},
    events::{Announce, BlobRef, ErrorDetail, Fact},
};

/// What one look found.
pub enum Look {
    Running(Option<std::time::Duration>),
    Done(Value),
    Failed(ErrorDetail),
}

/// Looks once at the operation, and at the resource when the operation says it is over.
pub async fn look(
    ctx: &Ctx,
    url: &str,
    poll: PollKind,
    resource_id: &str,
) -> Result<Look, StepError> {
    match ctx.arm.operation(url, poll).await? {
        Operation::Running { retry_after } => Ok(Look::Running(retry_after)),
        Operation::Failed { code, message } => Ok(Look::Failed(
            ErrorDetail::new(code, message).with_target(resource_id),
        )),
        Operation::Canceled => Ok(Look::Failed(
            ErrorDetail::new(
                "OperationCanceled",
                format!("the operation on {resource_id} was canceled"),
            )
            .with_target(resource_id),
        )),
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

/// The follow-up of an operation: announce `then` once done (`Ok(Ok(facts))`), look again while running
/// (`Ok(Err(Retry-After))`), or end the step.
pub async fn follow(
    ctx: &Ctx,
    fact: &Fact,
    then: &Announce,
    url: &str,
    poll: PollKind,
    resource_id: &str,
) -> Result<Result<Vec<Emit>, Option<std::time::Duration>>, StepError> {
    let run = fact.correlation_id().unwrap_or_default();
    let source = source_of(then);
    match look(ctx, url, poll, resource_id).await? {
        Look::Running(retry_after) => Ok(Err(retry_after)),
        Look::Done(_) => {
            if let Some((vhd, true)) = &source
                && let Err(changed) = pinned::verify(ctx, vhd).await?
            {
                // Azure may have copied a mix of the old and new blob: what it made goes.
                if let Err(left) = owned::remove(ctx, resource_id, &run, vhd).await {
                    return Err(StepError::failed(
                        "VhdChanged",
                        format!("{} changed while Azure copied it into {resource_id}", vhd.url),
                        Some(resource_id.to_owned()),
                        "Do not write to a VHD while galleon publishes it. Delete the resource named under leftBehind, then upload the manifest again.",
                    )
                    .with_left_behind(vec![left]));
                }
                return changed_after_check(
                    ctx,
                    &step::checked_cause(fact, resource_id),
                    vhd,
                    changed.now(),
                )
                .map(Ok);
            }
            tracing::info!(resource = %resource_id, "operation succeeded");
            Ok(Ok(vec![step::promised(
                ctx,
                fact,
                then,
                resource_id,
                then.data.clone(),
            )?]))
        }
        Look::Failed(error) => {
            let advice = step::advice_for(&error.code);
            let left_behind = match &source {
                Some((vhd, _)) => owned::remove(ctx, resource_id, &run, vhd)
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
