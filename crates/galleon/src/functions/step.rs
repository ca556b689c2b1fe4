//! What every chain step shares: the clients it acts through, how its outcome becomes facts, and how
//! failures are handled. A transient Azure failure schedules a retry of that step alone (a follow-up at
//! `Retry-After`, bounded by attempts and a deadline); a permanent one ends the step with one `step.failed`
//! fact. Steps themselves are plain `async fn(fact, ctx, attempt) -> Result<Vec<Emit>, StepError>`.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::{
    azure::{AzureError, arm::Arm, blob::Blobs, bus::Bus},
    config::Config,
    events::{
        Announce, AzureError as FactAzureError, Cause, Check, Fact, FactType, FailedInput,
        FollowUp, Payload, StepFailed,
    },
    host::{Failure, Invocation, Output, Trigger},
};

/// The clients and settings a step acts through.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub config: Arc<Config>,
    pub arm: Arm,
    pub blobs: Blobs,
    pub bus: Bus,
}

/// A fact to send, now or at a given time.
#[derive(Debug, Clone)]
pub struct Emit {
    pub fact: Fact,
    pub at: Option<DateTime<Utc>>,
}

impl Emit {
    pub fn now(fact: Fact) -> Emit {
        Emit { fact, at: None }
    }
}

/// Why a step did not finish.
#[derive(Debug)]
pub enum StepError {
    /// Try again later (throttling, 5xx, a resource still being made).
    Transient(AzureError),
    /// Give up: Azure refused for a reason that will not change, or galleon cannot go on.
    Failed {
        code: String,
        message: String,
        target: Option<String>,
        advice: String,
    },
}

impl From<AzureError> for StepError {
    fn from(e: AzureError) -> StepError {
        if e.is_transient() {
            StepError::Transient(e)
        } else {
            StepError::Failed {
                code: e.code().to_owned(),
                message: e.message(),
                target: e.target(),
                advice: e
                    .advice()
                    .map(str::to_owned)
                    .unwrap_or_else(|| advice_for(e.code())),
            }
        }
    }
}

/// Galleon's advice for Azure error codes users meet.
pub fn advice_for(code: &str) -> String {
    match code {
        "PropertyChangeNotAllowed" => "The image definition already exists with other immutable properties (osType, osState, hyperVGeneration or identifier). Publish to a new image definition name, or make the manifest match the existing definition.".into(),
        "AuthorizationFailed" | "LinkedAuthorizationFailed" => "Grant the function app's managed identity Contributor on the gallery's resource group (and Storage Blob Data Reader on the source storage account).".into(),
        "InvalidParameter" | "BadRequest" => "Azure refused the request as written; the message names the parameter. Fix the manifest or the policy settings and upload the manifest again.".into(),
        "ResourceNotFound" | "NotFound" | "BlobNotFound" => "A resource galleon needs is gone; upload the VHD and manifest again once it exists.".into(),
        "QuotaExceeded" | "OperationNotAllowed" => "A subscription or gallery limit was reached; remove old image versions (or raise the quota) and upload the manifest again.".into(),
        _ => "See Azure's error above; once the cause is fixed, upload the manifest again to re-run the chain (every step is idempotent).".into(),
    }
}

pub type StepFuture = Pin<Box<dyn Future<Output = Result<Vec<Emit>, StepError>> + Send>>;
/// A chain step: the fact, the context, the attempt (1 for the first).
pub type StepFn = fn(Fact, Arc<Ctx>, u32) -> StepFuture;

impl Ctx {
    pub fn instance(&self) -> &str {
        &self.config.instance
    }

    /// Builds a fact caused by `cause`.
    pub fn fact<P: Payload>(
        &self,
        cause: &Cause,
        subject: &str,
        discriminator: &str,
        data: &P,
    ) -> Result<Fact, StepError> {
        Fact::new(
            self.instance(),
            cause,
            subject,
            discriminator,
            data,
            Utc::now(),
        )
        .map_err(|e| StepError::Failed {
            code: "FactNotBuilt".into(),
            message: e.to_string(),
            target: None,
            advice: "This is a galleon defect; report it with the input fact.".into(),
        })
    }

    /// When to look again: Azure's `Retry-After` if longer than galleon's own interval.
    pub fn next_look(&self, retry_after: Option<Duration>) -> DateTime<Utc> {
        let wait = retry_after
            .unwrap_or(self.config.follow_up)
            .max(self.config.follow_up.min(Duration::from_secs(1)));
        Utc::now()
            + chrono::Duration::from_std(wait).unwrap_or_else(|_| chrono::Duration::seconds(30))
    }

    /// A follow-up: look at `check` at `at`, then announce `then`.
    #[allow(clippy::too_many_arguments)]
    pub fn follow_up(
        &self,
        cause: &Cause,
        step: &str,
        subject: &str,
        check: Check,
        then: Announce,
        attempt: u32,
        deadline: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<Emit, StepError> {
        let data = FollowUp {
            step: step.to_owned(),
            check,
            attempt,
            deadline,
            then,
        };
        let fact = self.fact(cause, subject, &format!("{step}:{attempt}"), &data)?;
        Ok(Emit { fact, at: Some(at) })
    }

    pub fn deadline_from_now(&self) -> DateTime<Utc> {
        Utc::now()
            + chrono::Duration::from_std(self.config.step_deadline)
                .unwrap_or_else(|_| chrono::Duration::hours(6))
    }
}

/// The `then` of a follow-up: announce `data` as a fact of type `P` about `subject`.
pub fn announce<P: Payload>(subject: &str, data: &P) -> Result<Announce, StepError> {
    Ok(Announce {
        ty: P::TYPE.cloud_event_type(),
        subject: subject.to_owned(),
        data: serde_json::to_value(data).map_err(|e| StepError::Failed {
            code: "FactNotBuilt".into(),
            message: e.to_string(),
            target: None,
            advice: "This is a galleon defect; report it with the input fact.".into(),
        })?,
    })
}

/// The `step.failed` fact for `input`.
pub fn failed_fact(
    ctx: &Ctx,
    step: &str,
    input: &Fact,
    attempts: u32,
    error: FactAzureError,
    advice: &str,
) -> Result<Fact, StepError> {
    let data = StepFailed {
        step: step.to_owned(),
        error,
        attempts: attempts.max(1),
        advice: advice.to_owned(),
        input: FailedInput {
            ty: input.cloud_event_type().to_owned(),
            id: input.id().to_owned(),
            subject: input.subject().map(str::to_owned),
        },
    };
    ctx.fact(
        &Cause::of(input),
        input.subject().unwrap_or(step),
        step,
        &data,
    )
}

/// Runs `step` on `fact` and turns every outcome into facts to send: its own facts, a scheduled retry, or
/// one `step.failed`.
pub async fn run(
    step: &str,
    run: StepFn,
    fact: Fact,
    ctx: Arc<Ctx>,
    attempt: u32,
    failures: u32,
    deadline: Option<DateTime<Utc>>,
) -> Vec<Emit> {
    let deadline = deadline.unwrap_or_else(|| ctx.deadline_from_now());
    // ARM calls of the step carry the run's id as x-ms-client-request-id.
    let outcome = match fact.correlation_id() {
        Some(run_id) => crate::azure::in_run(run_id, run(fact.clone(), ctx.clone(), attempt)).await,
        None => run(fact.clone(), ctx.clone(), attempt).await,
    };
    let fail = |code: &str, message: &str, target: Option<String>, advice: &str| match failed_fact(
        &ctx,
        step,
        &fact,
        attempt,
        FactAzureError {
            code: code.to_owned(),
            message: message.to_owned(),
            target,
        },
        advice,
    ) {
        Ok(f) => vec![Emit::now(f)],
        Err(e) => {
            tracing::error!(step, error = ?e, "could not even build the step.failed fact");
            Vec::new()
        }
    };
    match outcome {
        Ok(emits) => emits,
        Err(StepError::Failed {
            code,
            message,
            target,
            advice,
        }) => {
            tracing::warn!(step, code, message, "step failed");
            fail(&code, &message, target, &advice)
        }
        Err(StepError::Transient(e)) => {
            // Waiting for something Azure is making is a steady look bounded by the deadline; other trouble
            // backs off and counts towards GALLEON_MAX_ATTEMPTS.
            let waiting = e.code() == "Provisioning";
            let failures = failures + u32::from(!waiting);
            let wait = if waiting {
                ctx.config.follow_up
            } else {
                backoff(ctx.config.follow_up, failures)
            };
            let at = ctx.next_look(e.retry_after().or(Some(wait)));
            if failures >= ctx.config.max_attempts || at > deadline {
                tracing::warn!(step, attempt, error = %e, "giving up after transient failures");
                return fail(
                    e.code(),
                    &e.message(),
                    e.target(),
                    &format!(
                        "Azure kept failing transiently ({attempt} attempts); the chain stopped here. Once Azure recovers, upload the manifest again to re-run it."
                    ),
                );
            }
            tracing::info!(step, attempt, error = %e, retry_at = %at, "transient failure; retrying this step later");
            let then = Announce {
                ty: fact.cloud_event_type().to_owned(),
                subject: fact.subject().unwrap_or_default().to_owned(),
                data: fact.to_json().get("data").cloned().unwrap_or(Value::Null),
            };
            let check = Check::Retry {
                event: fact.to_json(),
                failures,
            };
            match ctx.follow_up(
                &Cause::of(&fact),
                step,
                fact.subject().unwrap_or(step),
                check,
                then,
                attempt + 1,
                deadline,
                at,
            ) {
                Ok(emit) => vec![emit],
                Err(_) => fail(
                    e.code(),
                    &e.message(),
                    None,
                    "The retry could not be scheduled.",
                ),
            }
        }
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
    }
    Ok(())
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
            let error = FactAzureError {
                code: "FactNotExpected".into(),
                message: format!("{step} does not handle {}", f.cloud_event_type()),
                target: None,
            };
            let failed = failed_fact(&ctx, step, &f, 1, error,
                "Fix the subscription's rules in events/subscriptions.json / infra: this step was sent a type it does not handle.")
                .map_err(|e| Failure::new(format!("{e:?}")))?;
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
    let emits = run(step, run_step, fact, ctx.clone(), 1, 0, None).await;
    send(&ctx, &emits).await?;
    Ok(Output::default())
}
