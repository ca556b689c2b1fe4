//! What the functions Event Grid triggers (IngestBlob, IngestImage, RequestBuild) share: their outcome
//! becomes facts, and trouble a later try can get past (a throttled or failing Azure call, a VHD still
//! being copied) becomes a retry scheduled on Service Bus, paced like a chain step's. Failing the
//! delivery instead would hand the event to Event Grid's own schedule (10 s, 30 s, 1 min, 5 min, 10 min,
//! 30 min, 1 h, 3 h, 6 h, then every 12 h): a storm of 429s at upload time would delay an ingest by hours.

use std::{future::Future, pin::Pin, sync::Arc};

use chrono::{DateTime, Utc};

use super::step::{self, Ctx, Emit, StepError, Tries};
use crate::{
    events::{Cause, Check, Fact, FailedInput, FollowUp, StepFailed},
    host::{Failure, GridEvent, Invocation, Output, Trigger},
};

/// Which try of an event this is, and the tries before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventTry {
    /// 1 for Event Grid's delivery.
    pub attempt: u32,
    pub tries: Tries,
    /// Past this, no further try is scheduled: the event's run ends in `step.failed`.
    pub deadline: DateTime<Utc>,
}

impl EventTry {
    /// Event Grid's delivery of the event: the first try, with the whole step deadline before it.
    pub fn delivered(ctx: &Ctx) -> EventTry {
        EventTry {
            attempt: 1,
            tries: Tries::default(),
            deadline: ctx.deadline_from_now(),
        }
    }
}

pub type EventFuture = Pin<Box<dyn Future<Output = Result<Output, Failure>> + Send>>;

/// Sends what a function triggered by `event` produced: its facts; for trouble a later try can get past,
/// a follow-up that runs the function again on the same event; for a permanent failure (or the deadline,
/// or the failure budget) one `step.failed` naming the event as its input. Only a failure to send is a
/// [`Failure`], so Event Grid delivers the event again.
pub async fn finish(
    ctx: &Ctx,
    step: &str,
    cause: &Cause,
    event: &GridEvent,
    tried: EventTry,
    outcome: Result<Vec<Emit>, StepError>,
) -> Result<Output, Failure> {
    let subject = event.subject.clone().unwrap_or_else(|| step.to_owned());
    let emits = match outcome {
        Ok(emits) => emits,
        Err(error) => {
            let next = step::next_try(ctx, step, tried.attempt, tried.tries, tried.deadline, error);
            let emit = match next {
                Ok(retry) => ctx.follow_up(
                    cause,
                    step,
                    &subject,
                    Check::RetryEvent {
                        event: event.to_json(),
                        failures: retry.tries.failures,
                        throttles: retry.tries.throttles,
                    },
                    None,
                    tried.attempt + 1,
                    tried.deadline,
                    retry.at,
                ),
                Err(stop) => {
                    let data = StepFailed {
                        step: step.to_owned(),
                        error: stop.error,
                        attempts: tried.attempt,
                        advice: stop.advice,
                        input: FailedInput {
                            ty: event.event_type.clone(),
                            id: event.id.clone(),
                            subject: event.subject.clone(),
                        },
                        left_behind: stop.left_behind,
                    };
                    ctx.fact(cause, &subject, step, &data).map(Emit::now)
                }
            };
            vec![emit.map_err(|e| Failure::new(format!("{e:?}")))?]
        }
    };
    step::send(ctx, &emits).await?;
    Ok(Output::default())
}

/// Runs the function a `retryEvent` follow-up names on its event again (from FollowUp). `None` when no
/// function triggered by Event Grid has that name.
pub fn run_again(
    fact: &Fact,
    data: &FollowUp,
    event: GridEvent,
    tries: Tries,
    ctx: Arc<Ctx>,
) -> Option<EventFuture> {
    let invocation = Invocation {
        function: data.step.clone(),
        invocation_id: fact.id().to_owned(),
        traceparent: fact.traceparent(),
        trigger: Trigger::EventGrid(event),
        host_time: None,
        retry_count: None,
    };
    let tried = EventTry {
        attempt: data.attempt,
        tries,
        deadline: data.deadline,
    };
    super::event_function(&data.step, invocation, ctx, tried)
}
