//! FollowUp: the scheduled second look at something long. It routes each check to the file that owns its
//! flow (an ARM operation, a version's replication, a bare VHD upload, a step to retry), then schedules
//! the next look or ends the step with `step.failed`. It decides nothing itself, and never waits.

use std::sync::Arc;

use chrono::Utc;

use super::step::{self, Ctx, Emit, StepError};
use crate::{
    events::{Cause, Check, Fact, FactType, FollowUp},
    host::{Failure, GridEvent, Invocation, Output},
};

pub const NAME: &str = "FollowUp";
pub const TRIGGER: &str = "fact";
pub const HANDLES: &[FactType] = &[FactType::FollowUp];

pub async fn run(invocation: Invocation, ctx: Arc<Ctx>) -> Result<Output, Failure> {
    step::on_message(
        NAME,
        |fact, ctx, _| Box::pin(async move { look(fact, ctx).await }),
        HANDLES,
        invocation,
        ctx,
    )
    .await
}

/// One look; transient trouble with the look itself schedules the same look again.
async fn look(fact: Fact, ctx: Arc<Ctx>) -> Result<Vec<Emit>, StepError> {
    let data: FollowUp = fact.data().map_err(StepError::unreadable)?;
    if let Check::Retry {
        event,
        failures,
        throttles,
    } = &data.check
    {
        let original = Fact::from_json(&event.to_string()).map_err(StepError::unreadable)?;
        let Some(run_step) = super::step_named(&data.step) else {
            return Err(StepError::failed(
                "UnknownStep",
                format!("no step named {}", data.step),
                None,
                "This follow-up was made by another galleon version; upload the manifest again.",
            ));
        };
        return Ok(step::run(
            &data.step,
            run_step,
            original,
            ctx,
            data.attempt,
            step::Tries {
                failures: *failures,
                throttles: *throttles,
            },
            Some(data.deadline),
        )
        .await);
    }
    if let Check::RetryEvent {
        event,
        failures,
        throttles,
    } = &data.check
    {
        let event = GridEvent::from_json(event.clone()).map_err(StepError::unreadable)?;
        let tries = step::Tries {
            failures: *failures,
            throttles: *throttles,
        };
        let Some(again_on_event) =
            super::on_event::run_again(&fact, &data, event, tries, ctx.clone())
        else {
            return Err(StepError::failed(
                "UnknownStep",
                format!("no function triggered by Event Grid is named {}", data.step),
                None,
                "This follow-up was made by another galleon version; upload the blob again.",
            ));
        };
        // It sends its own facts (or its next try); only a failure to send comes back here.
        return match again_on_event.await {
            Ok(_) => Ok(Vec::new()),
            Err(failure) => {
                tracing::warn!(step = %data.step, attempt = data.attempt, error = %failure, "could not finish the try on the event; trying it again later");
                again(&fact, &data, &ctx, None)
            }
        };
    }
    let outcome = if Utc::now() > data.deadline {
        Err(StepError::failed(
            "StepDeadlineExceeded",
            format!(
                "{} did not finish by {} ({} looks)",
                data.step, data.deadline, data.attempt
            ),
            None,
            "Azure took longer than GALLEON_STEP_DEADLINE_MINUTES; look at the resource in the portal, and upload the manifest again to resume (steps are idempotent).",
        ))
    } else {
        route(&fact, &data, &ctx).await
    };
    match outcome {
        Err(StepError::Transient(e)) => {
            tracing::info!(step = %data.step, attempt = data.attempt, error = %e, "look failed transiently; looking again later");
            again(&fact, &data, &ctx, e.retry_after())
        }
        Err(StepError::Waiting(what)) => {
            tracing::info!(step = %data.step, attempt = data.attempt, waiting_for = %what, "still waiting; looking again later");
            again(&fact, &data, &ctx, None)
        }
        Err(StepError::Paced(hold)) => again(&fact, &data, &ctx, Some(hold)),
        // The failure belongs to the step that started the operation, not to the look.
        Err(StepError::Failed(stop)) => {
            tracing::warn!(step = %data.step, code = %stop.error.code, message = %stop.error.message, "step failed");
            Ok(vec![Emit::now(step::failed_fact(
                &ctx,
                &data.step,
                &fact,
                data.attempt,
                *stop,
            )?)])
        }
        ok => ok,
    }
}

/// The same look, later.
fn again(
    fact: &Fact,
    data: &FollowUp,
    ctx: &Ctx,
    retry_after: Option<std::time::Duration>,
) -> Result<Vec<Emit>, StepError> {
    again_at(
        fact,
        data,
        ctx,
        ctx.next_look(retry_after.or(Some(ctx.config.follow_up))),
    )
}

/// The same look, at `at`.
fn again_at(
    fact: &Fact,
    data: &FollowUp,
    ctx: &Ctx,
    at: chrono::DateTime<Utc>,
) -> Result<Vec<Emit>, StepError> {
    let subject = fact.subject().unwrap_or(&data.step).to_owned();
    Ok(vec![ctx.follow_up(
        &Cause::of(fact),
        &data.step,
        &subject,
        data.check.clone(),
        data.then.clone(),
        data.attempt + 1,
        data.deadline,
        at,
    )?])
}

async fn route(fact: &Fact, data: &FollowUp, ctx: &Ctx) -> Result<Vec<Emit>, StepError> {
    match &data.check {
        Check::Operation {
            url,
            resource_id,
            poll,
            operation,
            operation_poll,
            started_at,
        } => {
            let then = data
                .then
                .as_ref()
                .ok_or_else(|| StepError::unreadable("an operation follow-up without its fact"))?;
            let watch = super::operation::Watch {
                url,
                poll: *poll,
                resource_id,
                operation: operation.as_deref().map(|u| (u, *operation_poll)),
                started_at: *started_at,
            };
            match super::operation::follow(ctx, fact, then, &watch).await? {
                Ok(emits) => Ok(emits),
                Err(retry_after) => {
                    let at = ctx.look_after(resource_id, *started_at, None, retry_after);
                    again_at(fact, data, ctx, at)
                }
            }
        }
        Check::Replication { .. } => super::replicate_version::look(ctx, fact, data).await,
        Check::VhdComplete {
            url,
            e_tag,
            first_seen,
            storage_account_id,
        } => {
            let subject = fact.subject().unwrap_or_default();
            let look = super::ingest::bare::BareLook {
                cause: &Cause::of(fact),
                subject,
                url,
                last_e_tag: Some(e_tag),
                first_seen: *first_seen,
                attempt: data.attempt,
                deadline: data.deadline,
                storage_account_id,
            };
            super::ingest::bare::look(ctx, look).await
        }
        Check::Build { .. } => super::build_image::look(ctx, fact, data).await,
        Check::RunDeadline { accepted_at } => run_deadline(ctx, fact, *accepted_at).await,
        Check::Retry { .. } | Check::RetryEvent { .. } => Ok(Vec::new()),
    }
}

/// The run's watchdog: the run has had its time; unless it ended, it ends now.
async fn run_deadline(
    ctx: &Ctx,
    fact: &Fact,
    accepted_at: chrono::DateTime<Utc>,
) -> Result<Vec<Emit>, StepError> {
    let run = fact.correlation_id().unwrap_or_default();
    if let Some(outcome) = ctx.ledger.outcome(&run).await? {
        tracing::info!(run = %run, ended_with = %outcome.fact_type, "the run ended in time");
        return Ok(Vec::new());
    }
    Err(StepError::failed(
        "RunDeadlineExceeded",
        format!(
            "the run accepted at {accepted_at} did not end (image.ready, step.failed or vhd.rejected) within GALLEON_RUN_DEADLINE_SECONDS ({} s)",
            ctx.config.run_deadline.as_secs()
        ),
        fact.subject().map(str::to_owned),
        "Something in the chain stopped without a word (a message removed by hand, a subscription rule changed, an outage longer than the retries). Look at the run's facts and the dead-letter queue; if the image version exists and is complete, nothing is lost; otherwise upload the manifest again.",
    ))
}
