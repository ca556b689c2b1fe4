//! ApplyLifecycle: an image definition's retention policy (`GALLEON_RETENTION`), applied after every
//! image ready and on the lifecycle timer. Each version the policy does not keep moves one step a run:
//! excluded from `latest`, then an end-of-life date, then deleted after the grace period; each change is
//! one `image.version.lifecycle` fact (a dry run announces and changes nothing). After image ready in
//! every region, the policy may also delete the source VHDs galleon accepted, and only those, unchanged.

use std::sync::Arc;

use chrono::Utc;
use reqwest::Method;
use serde_json::json;

use super::step::{Ctx, Emit, StepError, StepFuture, detail_of};
use crate::{
    azure::arm,
    domain::retention::{self, Decision, Policy, Step},
    events::{
        BlobRef, Cause, Fact, FactType, ImageReady, LifecycleRequested, LifecycleStep,
        VersionLifecycle,
    },
};

pub const NAME: &str = "ApplyLifecycle";
pub const TRIGGER: &str = "fact";
pub const HANDLES: &[FactType] = &[FactType::ImageReady, FactType::LifecycleRequested];

pub fn step(fact: Fact, ctx: Arc<Ctx>, _attempt: u32) -> StepFuture {
    Box::pin(async move { apply(fact, &ctx).await })
}

fn definition_name(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}

async fn apply(fact: Fact, ctx: &Ctx) -> Result<Vec<Emit>, StepError> {
    let (definition_id, ready) = match fact.fact_type() {
        Some(FactType::ImageReady) => {
            let ready: ImageReady = fact.data().map_err(StepError::unreadable)?;
            (ready.image_definition_id.clone(), Some(ready))
        }
        _ => {
            let asked: LifecycleRequested = fact.data().map_err(StepError::unreadable)?;
            (asked.image_definition_id, None)
        }
    };
    let Some(policy) = ctx
        .config
        .retention
        .for_definition(definition_name(&definition_id))
    else {
        return Ok(Vec::new());
    };
    let dry_run = ctx.config.retention.dry_run;
    let cause = Cause::of(&fact);
    let mut emits = Vec::new();
    if let Some(ready) = &ready
        && policy.delete_sources
    {
        emits.extend(delete_sources(ctx, &cause, ready, dry_run).await?);
    }
    emits.extend(retain(ctx, &cause, &definition_id, policy, dry_run).await?);
    Ok(emits)
}

/// The fact of one change.
#[allow(clippy::too_many_arguments)]
fn told(
    ctx: &Ctx,
    cause: &Cause,
    definition_id: &str,
    version_id: &str,
    step: LifecycleStep,
    why: String,
    dry_run: bool,
    extra: impl FnOnce(&mut VersionLifecycle),
) -> Result<Emit, StepError> {
    let mut data = VersionLifecycle {
        version_id: version_id.to_owned(),
        image_definition_id: definition_id.to_owned(),
        version: definition_name(version_id).to_owned(),
        step,
        why,
        dry_run,
        end_of_life_date: None,
        blob: None,
        error: None,
        at: Utc::now(),
    };
    extra(&mut data);
    let subject = format!(
        "galleries/{}/images/{}/versions/{}",
        version_id.split('/').nth(8).unwrap_or_default(),
        definition_name(definition_id),
        data.version
    );
    let discriminator = format!(
        "{step:?}:{}",
        data.blob.as_ref().map_or("", |b| b.url.as_str())
    );
    Ok(Emit::now(ctx.fact(
        &change_cause(cause, version_id, step, dry_run),
        &subject,
        &discriminator,
        &data,
    )?))
}

/// A change a version goes through once in its life (excluded, given an end of life, deleted) gets one
/// fact id whichever lifecycle run makes it: when an image ready and the timer meet, both make the same
/// change and the second copy is dropped as a duplicate. A dry run's report belongs to its run.
fn change_cause(cause: &Cause, version_id: &str, step: LifecycleStep, dry_run: bool) -> Cause {
    match step {
        LifecycleStep::ExcludeFromLatest | LifecycleStep::EndOfLife | LifecycleStep::Delete
            if !dry_run =>
        {
            Cause {
                id: format!("lifecycle:{}", version_id.to_ascii_lowercase()),
                ..cause.clone()
            }
        }
        _ => cause.clone(),
    }
}

/// Deletes the VHDs the ready version was made from, each only while it is the blob galleon accepted.
async fn delete_sources(
    ctx: &Ctx,
    cause: &Cause,
    ready: &ImageReady,
    dry_run: bool,
) -> Result<Vec<Emit>, StepError> {
    let blobs: Vec<&BlobRef> = ready
        .source_vhd
        .iter()
        .chain(ready.source_data_disks.iter())
        .collect();
    let mut emits = Vec::new();
    for blob in blobs {
        let gone = if dry_run {
            // What a real run would do: delete the blob only while it is the one accepted (or find it gone).
            ctx.blobs.properties(&blob.url).await?.is_none_or(|now| {
                super::owned::etag_tag(&now.e_tag) == super::owned::etag_tag(&blob.e_tag)
            })
        } else {
            ctx.blobs
                .delete_if_unchanged(&blob.url, &blob.e_tag)
                .await?
        };
        let (step, why) = if gone {
            tracing::info!(blob = %blob.url, dry_run, "source VHD deleted (or would be, in a dry run): the version is ready in every region");
            (
                LifecycleStep::DeleteSource,
                format!(
                    "{} is ready in every region; the policy deletes its source VHDs",
                    ready.version_id
                ),
            )
        } else {
            (
                LifecycleStep::SourceKept,
                "the VHD changed since galleon accepted it: it is someone's new content and stays"
                    .to_owned(),
            )
        };
        emits.push(told(
            ctx,
            cause,
            &ready.image_definition_id,
            &ready.version_id,
            step,
            why,
            dry_run,
            |d| d.blob = Some(blob.clone()),
        )?);
    }
    Ok(emits)
}

/// One step further for each version the policy does not keep.
async fn retain(
    ctx: &Ctx,
    cause: &Cause,
    definition_id: &str,
    policy: &Policy,
    dry_run: bool,
) -> Result<Vec<Emit>, StepError> {
    if policy.keep.is_none() && policy.max_age_days.is_none() {
        return Ok(Vec::new());
    }
    let listed = ctx
        .arm
        .list(
            &format!("{definition_id}/versions"),
            arm::GALLERY_API,
            &[],
            100,
        )
        .await?;
    let versions: Vec<retention::Version> = listed.iter().map(retention::Version::of).collect();
    let now = Utc::now();
    let mut emits = Vec::new();
    for Decision { version, step, why } in retention::decide(policy, &versions, now) {
        let (fact_step, body, method) = match step {
            Step::ExcludeFromLatest => (
                LifecycleStep::ExcludeFromLatest,
                Some(json!({"properties": {"publishingProfile": {"excludeFromLatest": true}}})),
                Some(Method::PATCH),
            ),
            Step::EndOfLife => (
                LifecycleStep::EndOfLife,
                Some(json!({"properties": {"publishingProfile": {"endOfLifeDate": now}}})),
                Some(Method::PATCH),
            ),
            Step::Delete => (LifecycleStep::Delete, None, Some(Method::DELETE)),
            Step::DeletionBlocked => (LifecycleStep::DeletionBlocked, None, None),
        };
        let mut error = None;
        let mut fact_step = fact_step;
        if let (Some(method), false) = (method, dry_run) {
            match ctx
                .arm
                .write(method, &version.id, arm::GALLERY_API, body.as_ref())
                .await
            {
                Ok(_) => {}
                // Azure protects the version, or refuses for a reason that will not change by retrying:
                // said once, and the next run looks again.
                Err(e) if !e.is_transient() => {
                    tracing::warn!(version = %version.id, error = %e, "Azure refused a retention step");
                    if fact_step == LifecycleStep::Delete {
                        fact_step = LifecycleStep::DeletionBlocked;
                    }
                    error = Some(detail_of(&e));
                }
                Err(e) => return Err(e.into()),
            }
        }
        let eol = match step {
            Step::EndOfLife => Some(now),
            Step::DeletionBlocked => version.end_of_life,
            _ => None,
        };
        if fact_step == LifecycleStep::DeletionBlocked
            && !dry_run
            && !first_word_of_block(ctx, cause, &version.id, eol, error.as_ref()).await
        {
            tracing::debug!(version = %version.id, "its deletion is still blocked; said before");
            continue;
        }
        tracing::info!(version = %version.id, step = ?fact_step, dry_run, why = %why, "retention");
        emits.push(told(
            ctx,
            cause,
            definition_id,
            &version.id,
            fact_step,
            why,
            dry_run,
            |d| {
                d.end_of_life_date = eol;
                d.error = error;
            },
        )?);
    }
    Ok(emits)
}

/// What was last said about a version whose deletion is blocked.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockSaid {
    cause_id: String,
    end_of_life_date: Option<chrono::DateTime<Utc>>,
    code: Option<String>,
}

/// Whether to announce that `version_id`'s deletion is blocked: once, and again only when what blocks it
/// changes (its end of life, or Azure's reason), not every run. The note is written under a condition, so
/// of two runs at once (an image ready and the timer) only one says it; the run that said it says it again
/// on a retry (the same fact). When the note cannot be read or written, it is said (twice beats never).
async fn first_word_of_block(
    ctx: &Ctx,
    cause: &Cause,
    version_id: &str,
    eol: Option<chrono::DateTime<Utc>>,
    error: Option<&crate::events::ErrorDetail>,
) -> bool {
    let name = format!(
        "lifecycle/blocked/{}.json",
        uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_URL,
            version_id.to_ascii_lowercase().as_bytes()
        )
    );
    let now = BlockSaid {
        cause_id: cause.id.clone(),
        end_of_life_date: eol,
        code: error.map(|e| e.code.clone()),
    };
    let condition = match ctx.ledger.read_note_tagged(&name).await {
        Ok(Some((bytes, e_tag))) => match serde_json::from_slice::<BlockSaid>(&bytes) {
            Ok(said) if said.cause_id == now.cause_id => return true,
            Ok(said) if said.end_of_life_date == now.end_of_life_date && said.code == now.code => {
                return false;
            }
            _ => crate::azure::blob::WriteIf::Unchanged(e_tag),
        },
        Ok(None) => crate::azure::blob::WriteIf::Absent,
        Err(e) => {
            tracing::warn!(error = %crate::error_chain(&e), "could not read whether a blocked deletion was announced; announcing it");
            return true;
        }
    };
    let body = bytes::Bytes::from(serde_json::to_vec(&now).unwrap_or_default());
    match ctx.ledger.write_note_if(&name, body, condition).await {
        Ok(won) => won,
        Err(e) => {
            tracing::warn!(error = %crate::error_chain(&e), "could not note that a blocked deletion was announced; it will be again");
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_made_by_two_runs_is_one_fact() {
        let run = |id: &str| Cause {
            id: id.into(),
            correlation_id: format!("run-of-{id}"),
            traceparent: None,
        };
        let version = "/subscriptions/s/resourceGroups/r/providers/Microsoft.Compute/galleries/g/images/d/versions/1.0.1";
        let (ready, timer) = (run("image-ready"), run("timer"));
        for step in [
            LifecycleStep::ExcludeFromLatest,
            LifecycleStep::EndOfLife,
            LifecycleStep::Delete,
        ] {
            let a = change_cause(&ready, version, step, false);
            let b = change_cause(&timer, &version.to_ascii_uppercase(), step, false);
            assert_eq!(a.id, b.id, "{step:?}");
            assert_eq!(a.correlation_id, "run-of-image-ready", "the run is kept");
            // A dry run's report is its run's own.
            assert_ne!(
                change_cause(&ready, version, step, true).id,
                change_cause(&timer, version, step, true).id
            );
        }
        // What is said per run (a blocked deletion, a source kept) keeps the run's cause.
        assert_eq!(
            change_cause(&ready, version, LifecycleStep::DeletionBlocked, false).id,
            "image-ready"
        );
    }
}
