//! What every chain step shares: how its outcome becomes facts and how failures are handled (the
//! clients it acts through are in [`super::ctx`], why it stops in [`super::step_error`]). A transient Azure failure schedules a retry of that step alone (a follow-up at
//! `Retry-After`, bounded by attempts and a deadline); a permanent one ends the step with one `step.failed`
//! fact. Steps themselves are plain `async fn(fact, ctx, attempt) -> Result<Vec<Emit>, StepError>`.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::{
    events::{
        Announce, Cause, Check, ErrorDetail, Fact, FactType, FailedInput, Payload, StepFailed,
    },
    host::{Failure, Invocation, Output, Trigger},
    ledger::Claim,
};

pub use super::ctx::{Ctx, Emit};
pub use super::step_error::{StepError, Stop, advice_for, detail_of};

pub type StepFuture = Pin<Box<dyn Future<Output = Result<Vec<Emit>, StepError>> + Send>>;
/// A chain step: the fact, the context, the attempt (1 for the first).
pub type StepFn = fn(Fact, Arc<Ctx>, u32) -> StepFuture;

/// The `then` of a follow-up: announce `data` as a fact of type `P` about `subject`.
pub fn announce<P: Payload>(subject: &str, data: &P) -> Result<Announce, StepError> {
    Ok(Announce {
        ty: P::TYPE.cloud_event_type(),
        subject: subject.to_owned(),
        data: serde_json::to_value(data).map_err(StepError::unreadable)?,
    })
}

/// The `step.failed` fact for `input`.
pub fn failed_fact(
    ctx: &Ctx,
    step: &str,
    input: &Fact,
    attempts: u32,
    stop: Stop,
) -> Result<Fact, StepError> {
    failed_fact_at(ctx, step, input, attempts, stop, super::handled_at::now())
}

/// [`failed_fact`] at time `at` (one a redelivery agrees on, so the fact it sends again is the same).
pub fn failed_fact_at(
    ctx: &Ctx,
    step: &str,
    input: &Fact,
    attempts: u32,
    stop: Stop,
    at: DateTime<Utc>,
) -> Result<Fact, StepError> {
    let data = StepFailed {
        step: step.to_owned(),
        error: stop.error,
        attempts: attempts.max(1),
        advice: crate::domain::resume::advice(
            step,
            input.cloud_event_type(),
            input.subject(),
            &stop.advice,
        ),
        input: FailedInput {
            ty: input.cloud_event_type().to_owned(),
            id: input.id().to_owned(),
            subject: input.subject().map(str::to_owned),
        },
        left_behind: stop.left_behind,
    };
    ctx.fact_at(
        &Cause::of(input),
        input.subject().unwrap_or(step),
        step,
        &data,
        at,
    )
}

/// The wait before the next try after a transient failure: Azure's `Retry-After` when it asks for longer,
/// never less than galleon's own backoff (a `Retry-After: 1` storm must not become a tight loop).
pub fn retry_wait(retry_after: Option<Duration>, base: Duration, failures: u32) -> Duration {
    crate::azure::wait_before_retry(retry_after, backoff(base, failures))
}

/// What a step's earlier tries met: failures (counted against `GALLEON_MAX_ATTEMPTS`) and throttled
/// answers (which only lengthen the wait).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tries {
    pub failures: u32,
    pub throttles: u32,
}

/// What to do after a transient error: try again after `wait`, or give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Again { tries: Tries, wait: Duration },
    GiveUp { tries: Tries },
}

/// The pure decision after a transient error. Throttling (429) is a wait, not a failure: it never uses
/// up the failure budget (the deadline still bounds it), and its wait grows with the throttled answers
/// in a row. Other transient trouble counts towards `max_failures`. Either way the wait is never shorter
/// than Azure's `Retry-After`.
pub fn after_transient(
    throttled: bool,
    before: Tries,
    retry_after: Option<Duration>,
    base: Duration,
    max_failures: u32,
) -> Next {
    let tries = if throttled {
        Tries {
            throttles: before.throttles + 1,
            ..before
        }
    } else {
        Tries {
            failures: before.failures + 1,
            ..before
        }
    };
    if !throttled && tries.failures >= max_failures {
        return Next::GiveUp { tries };
    }
    let streak = if throttled {
        tries.throttles
    } else {
        tries.failures
    };
    Next::Again {
        tries,
        wait: retry_wait(retry_after, base, streak),
    }
}

/// A step's next try after trouble a later try can get past: when, after what, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    pub tries: Tries,
    pub at: DateTime<Utc>,
    pub why: String,
}

/// What follows a step that did not finish: another try within its deadline (transient trouble, a wait
/// for Azure, a pace), or the [`Stop`] to announce (a permanent failure, the failure budget used up,
/// the deadline reached).
pub fn next_try(
    ctx: &Ctx,
    step: &str,
    attempt: u32,
    tries: Tries,
    deadline: DateTime<Utc>,
    error: StepError,
) -> Result<Retry, Box<Stop>> {
    match error {
        StepError::Failed(stop) => {
            tracing::warn!(step, code = %stop.error.code, message = %stop.error.message, left_behind = stop.left_behind.len(), "step failed");
            Err(stop)
        }
        // Waiting for something Azure is making is a steady look bounded by the deadline.
        StepError::Paced(hold) => {
            let at = ctx.next_look(Some(hold));
            tracing::info!(step, attempt, hold_seconds = hold.as_secs_f64(), retry_at = %at, "the subscription's ARM budget is low; this new image waits its turn");
            if at > deadline {
                return Err(Box::new(Stop {
                    error: ErrorDetail::new(
                        "StepDeadlineExceeded",
                        format!("{step} was still waiting for ARM budget at its deadline {deadline}"),
                    ),
                    advice: "The subscription's Resource Manager budget stayed low until the step's deadline: publish fewer images at once, or raise GALLEON_STEP_DEADLINE_MINUTES, then upload the manifest again.".into(),
                    left_behind: Vec::new(),
                }));
            }
            Ok(Retry {
                tries,
                at,
                why: "ARM budget".to_owned(),
            })
        }
        StepError::Waiting(what) => {
            tracing::info!(step, attempt, waiting_for = %what, "Azure is still at it; looking again later");
            let at = ctx.next_look(None);
            if at > deadline {
                return Err(Box::new(Stop {
                    error: ErrorDetail::new(
                        "StepDeadlineExceeded",
                        format!("{step} was still waiting at its deadline {deadline}: {what}"),
                    ),
                    advice: "Azure took longer than GALLEON_STEP_DEADLINE_MINUTES; look at the resource in the portal, then upload the manifest again to resume (steps are idempotent).".into(),
                    left_behind: Vec::new(),
                }));
            }
            Ok(Retry {
                tries,
                at,
                why: what,
            })
        }
        StepError::Transient(e) => {
            let next = after_transient(
                e.is_throttled(),
                tries,
                e.retry_after(),
                ctx.config.follow_up,
                ctx.config.max_attempts,
            );
            match next {
                Next::Again { tries, wait } if ctx.next_look(Some(wait)) <= deadline => {
                    let at = ctx.next_look(Some(wait));
                    tracing::info!(step, attempt, failures = tries.failures, throttles = tries.throttles, error = %e, retry_at = %at, "transient trouble; trying this step again later");
                    Ok(Retry {
                        tries,
                        at,
                        why: e.to_string(),
                    })
                }
                Next::Again { tries, .. } | Next::GiveUp { tries } => {
                    tracing::warn!(step, attempt, failures = tries.failures, throttles = tries.throttles, error = %e, "giving up after transient failures");
                    let advice = if e.is_throttled() {
                        format!(
                            "Azure kept throttling until the step's deadline ({} throttled answers); the chain stopped here. Publish fewer images at once or raise GALLEON_STEP_DEADLINE_MINUTES, then upload the manifest again.",
                            tries.throttles
                        )
                    } else {
                        format!(
                            "Azure kept failing transiently ({} failures in {attempt} attempts); the chain stopped here. Once Azure recovers, upload the manifest again to re-run it.",
                            tries.failures
                        )
                    };
                    Err(Box::new(Stop {
                        error: detail_of(&e),
                        advice,
                        left_behind: Vec::new(),
                    }))
                }
            }
        }
    }
}

/// Runs `step` on `fact` and turns every outcome into facts to send: its own facts, a scheduled retry, or
/// one `step.failed`.
pub async fn run(
    step: &str,
    run: StepFn,
    fact: Fact,
    ctx: Arc<Ctx>,
    attempt: u32,
    tries: Tries,
    deadline: Option<DateTime<Utc>>,
) -> Vec<Emit> {
    let deadline = deadline.unwrap_or_else(|| ctx.deadline_from_now());
    // Every ARM call of the run carries its id as x-ms-client-request-id.
    let run_id = fact
        .correlation_id()
        .unwrap_or_else(|| fact.id().to_owned());
    let outcome = crate::azure::in_run(run_id, run(fact.clone(), ctx.clone(), attempt)).await;
    let fail = |stop: Stop| match failed_fact(&ctx, step, &fact, attempt, stop) {
        Ok(f) => vec![Emit::now(f)],
        Err(e) => {
            tracing::error!(step, error = ?e, "could not even build the step.failed fact");
            Vec::new()
        }
    };
    let Retry { tries, at, why } = match outcome {
        Ok(emits) => return emits,
        Err(error) => match next_try(&ctx, step, attempt, tries, deadline, error) {
            Ok(retry) => retry,
            Err(stop) => return fail(*stop),
        },
    };
    let then = Announce {
        ty: fact.cloud_event_type().to_owned(),
        subject: fact.subject().unwrap_or_default().to_owned(),
        data: fact.to_json().get("data").cloned().unwrap_or(Value::Null),
    };
    let check = Check::Retry {
        event: fact.to_json(),
        failures: tries.failures,
        throttles: tries.throttles,
    };
    match ctx.follow_up(
        &Cause::of(&fact),
        step,
        fact.subject().unwrap_or(step),
        check,
        Some(then),
        attempt + 1,
        deadline,
        at,
    ) {
        Ok(emit) => vec![emit],
        Err(_) => fail(Stop {
            error: ErrorDetail::new("RetryNotScheduled", why),
            advice: "The retry could not be scheduled; upload the manifest again.".into(),
            left_behind: Vec::new(),
        }),
    }
}

/// Exponential backoff from the follow-up interval, capped at 32×.
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    base.saturating_mul(1u32 << attempt.saturating_sub(1).min(5))
}

/// Sends what a step produced; a send failure is a [`Failure`] so the host redelivers (steps are idempotent
/// and fact ids deterministic, so the redelivery sends the same messages, which duplicate detection drops).
pub async fn send(ctx: &Ctx, emits: &[Emit]) -> Result<(), Failure> {
    for emit in emits {
        ctx.bus
            .send(&emit.fact, emit.at)
            .await
            .map_err(Failure::new)?;
        tracing::info!(fact_type = emit.fact.cloud_event_type(), fact_id = emit.fact.id(), subject = emit.fact.subject().unwrap_or(""), scheduled = ?emit.at, "fact sent");
        // The run's journal (looks at an operation are the chain's own business, not the run's story).
        if emit.fact.fact_type() != Some(FactType::FollowUp)
            && let Some(run) = emit.fact.correlation_id()
            && let Err(e) = ctx.journal.append(&run, &emit.fact, emit.at).await
        {
            // The fact is out; only the run's journal misses it.
            tracing::warn!(error = %crate::error_chain(&e), run, fact_id = emit.fact.id(), "could not write the fact to the run's journal");
        }
        if is_terminal(&emit.fact)
            && let Some(run) = emit.fact.correlation_id()
        {
            let outcome = crate::ledger::Outcome {
                run,
                fact_type: emit.fact.cloud_event_type().to_owned(),
                fact_id: emit.fact.id().to_owned(),
                at: Utc::now(),
            };
            if let Err(e) = ctx.ledger.record_outcome(&outcome).await {
                // The fact is out; only the run's watchdog may announce a needless deadline failure later.
                tracing::warn!(error = %e, run = %outcome.run, "could not record how the run ended");
            }
        }
    }
    Ok(())
}

/// Whether a fact ends its run: every run ends in exactly one of these (a build run also in
/// `build.skipped`, or in a `build.finished` without outputs to publish).
pub fn is_terminal(fact: &Fact) -> bool {
    match fact.fact_type() {
        Some(FactType::ImageReady | FactType::StepFailed | FactType::VhdRejected) => true,
        Some(FactType::BuildSkipped) => true,
        Some(FactType::BuildFinished) => fact
            .data::<crate::events::BuildFinished>()
            .is_ok_and(|f| !f.has_outputs()),
        _ => false,
    }
}

/// The run's watchdog, scheduled when its VHD is accepted: ends the run at its deadline unless it ended.
pub fn watchdog(ctx: &Ctx, accepted: &Fact) -> Result<Emit, StepError> {
    let now = Utc::now();
    let at = now
        + chrono::Duration::from_std(ctx.config.run_deadline)
            .unwrap_or_else(|_| chrono::Duration::days(1));
    ctx.follow_up(
        &Cause::of(accepted),
        "Run",
        accepted.subject().unwrap_or("run"),
        Check::RunDeadline { accepted_at: now },
        None,
        1,
        at + chrono::Duration::hours(1),
        at,
    )
}

/// The Service Bus trigger of a chain step: decode the fact (a message that is not one becomes a
/// `step.failed`, never a retry storm), run the step, send its facts.
pub async fn on_message(
    step: &'static str,
    run_step: StepFn,
    expects: &'static [FactType],
    invocation: Invocation,
    ctx: Arc<Ctx>,
) -> Result<Output, Failure> {
    let Trigger::ServiceBus(message) = invocation.trigger else {
        return Err(Failure::new(format!(
            "{step} is bound to a Service Bus trigger"
        )));
    };
    let fact = match Fact::from_json(&message.body) {
        Ok(f) if f.fact_type().is_some_and(|t| expects.contains(&t)) => f,
        Ok(f) => {
            tracing::warn!(
                step,
                fact_type = f.cloud_event_type(),
                "fact of a type this step does not handle; check the subscription rules"
            );
            let stop = Stop {
                error: ErrorDetail::new(
                    "FactNotExpected",
                    format!("{step} does not handle {}", f.cloud_event_type()),
                ),
                advice: "Fix the subscription's rules in events/subscriptions.json / infra: this step was sent a type it does not handle.".into(),
                left_behind: Vec::new(),
            };
            let failed =
                failed_fact(&ctx, step, &f, 1, stop).map_err(|e| Failure::new(format!("{e:?}")))?;
            send(&ctx, &[Emit::now(failed)]).await?;
            return Ok(Output::default());
        }
        Err(e) => {
            tracing::warn!(step, error = %crate::error_chain(&e), message_id = message.message_id.as_deref().unwrap_or(""), "message is not a galleon fact");
            let announce = crate::functions::announce::decide(&message, ctx.instance())
                .map_err(Failure::new)?;
            send(&ctx, &[Emit::now(announce)]).await?;
            return Ok(Output::default());
        }
    };
    if let Some(correlation) = fact.correlation_id() {
        tracing::Span::current().record("correlation_id", correlation.as_str());
    }
    // At least once in, once in effect: a copy of a fact another delivery handles is dropped here.
    let token = match ctx
        .ledger
        .claim(step, fact.id(), message.sequence_number)
        .await
    {
        Ok(Claim::Mine(token)) => token,
        Ok(Claim::Done) => {
            tracing::info!(
                step,
                fact_id = fact.id(),
                "fact already handled; this delivery is a duplicate and changes nothing"
            );
            return Ok(Output::default());
        }
        Ok(Claim::Copy { sequence_number }) => {
            tracing::info!(step, fact_id = fact.id(), handled_by = ?sequence_number, this = ?message.sequence_number, "another copy of this fact is being handled; this copy is dropped");
            return Ok(Output::default());
        }
        // The ledger is unreachable: let the host deliver the message again later.
        Err(e) => return Err(Failure::new(e)),
    };
    // Facts are stamped with when this fact was first handled, so a redelivery after a crash sends
    // the very same facts.
    let emits = super::handled_at::scope(
        token.first_handled_at(),
        run(step, run_step, fact, ctx.clone(), 1, Tries::default(), None),
    )
    .await;
    send(&ctx, &emits).await?;
    if let Err(e) = ctx.ledger.done(token).await {
        // Not fatal: a later copy then finds the fact still "working" and is dropped, a redelivery of
        // this message redoes it idempotently.
        tracing::warn!(step, error = %e, "could not mark the fact handled in the ledger");
    }
    Ok(Output::default())
}

/// The cause of a fact announced once `key` (an operation, a version) was checked, within this run: any
/// look that finds the same thing done announces the same fact id, and a later run publishing the same
/// resource gets fresh ids.
pub fn checked_cause(fact: &Fact, key: &str) -> Cause {
    let correlation_id = fact
        .correlation_id()
        .unwrap_or_else(|| fact.id().to_owned());
    Cause {
        id: format!("{key}:{correlation_id}"),
        correlation_id,
        traceparent: fact.traceparent(),
    }
}

/// The fact a follow-up promised (`then`), with `payload` as its data.
pub fn promised(
    ctx: &Ctx,
    fact: &Fact,
    then: &Announce,
    key: &str,
    payload: Value,
) -> Result<Emit, StepError> {
    let ty = FactType::from_cloud_event_type(&then.ty).ok_or_else(|| {
        StepError::failed(
            "UnknownFactType",
            then.ty.clone(),
            None,
            "This follow-up was made by another galleon version; upload the manifest again.",
        )
    })?;
    let built = crate::events::build_untyped(
        ty,
        ctx.instance(),
        &checked_cause(fact, key),
        &then.subject,
        "",
        payload,
        super::handled_at::now(),
    )
    .map_err(StepError::unreadable)?;
    Ok(Emit::now(built))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_is_a_wait_not_a_failure() {
        let base = Duration::from_secs(1);
        let mut tries = Tries::default();
        // Fifty 429s in a row never give up (only the deadline can end them) and never count as failures.
        for n in 1..=50u32 {
            match after_transient(true, tries, Some(Duration::from_secs(1)), base, 3) {
                Next::Again { tries: t, wait } => {
                    assert_eq!(t.failures, 0);
                    assert_eq!(t.throttles, n);
                    assert!(wait >= Duration::from_secs(1));
                    tries = t;
                }
                Next::GiveUp { .. } => panic!("throttling gave up after {n}"),
            }
        }
        // Three other transient failures use up a budget of three.
        let mut tries = Tries::default();
        for n in 1..=3u32 {
            match after_transient(false, tries, None, base, 3) {
                Next::Again { tries: t, .. } if n < 3 => tries = t,
                Next::GiveUp { tries: t } if n == 3 => assert_eq!(t.failures, 3),
                other => panic!("failure {n}: {other:?}"),
            }
        }
        // The throttled wait grows with the streak and honours a longer Retry-After.
        let long = after_transient(
            true,
            Tries {
                failures: 0,
                throttles: 4,
            },
            Some(Duration::from_secs(60)),
            base,
            3,
        );
        assert_eq!(
            long,
            Next::Again {
                tries: Tries {
                    failures: 0,
                    throttles: 5
                },
                wait: Duration::from_secs(60)
            }
        );
        let grown = after_transient(
            true,
            Tries {
                failures: 0,
                throttles: 4,
            },
            None,
            base,
            3,
        );
        assert_eq!(
            grown,
            Next::Again {
                tries: Tries {
                    failures: 0,
                    throttles: 5
                },
                wait: Duration::from_secs(16)
            }
        );
    }

    #[test]
    fn retry_waits_for_the_longer_of_retry_after_and_backoff() {
        let base = Duration::from_secs(2);
        // (Retry-After, failures so far) → wait
        let table = [
            (None, 1, 2),
            (None, 3, 8),
            (Some(1), 3, 8), // a short Retry-After does not shorten galleon's backoff
            (Some(60), 1, 60), // a long one is honoured
            (Some(0), 1, 2),
            (None, 40, 64), // capped at 32×
        ];
        for (retry_after, failures, want) in table {
            assert_eq!(
                retry_wait(retry_after.map(Duration::from_secs), base, failures),
                Duration::from_secs(want),
                "Retry-After {retry_after:?}, failures {failures}"
            );
        }
    }
}
