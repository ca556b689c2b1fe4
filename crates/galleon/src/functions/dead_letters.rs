//! DeadLetters: a message Service Bus dead-lettered (too many deliveries, expired, refused by a filter)
//! is never dropped silently. Every subscription forwards its dead letters to one queue; this function
//! announces each as `step.failed` of the run it belonged to, with Service Bus's reason and what to do
//! (once: a dead letter of a run that already ended is kept for operators, not announced again).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::step::{self, Ctx, Emit, Stop};
use crate::{
    events::{BlobRef, ErrorDetail, Fact, FactType},
    host::{BusMessage, Failure, Invocation, Output, Trigger},
    ledger::Claim,
};

pub const NAME: &str = "DeadLetters";
pub const TRIGGER: &str = "deadLetter";

/// Galleon's advice for Service Bus's dead-letter reasons.
pub fn advice_for(reason: &str) -> String {
    match reason {
        "MaxDeliveryCountExceeded" => "The function failed on this message on every delivery (see the function's logs for the message id); the run stopped here. Fix the cause (often Azure permissions or an outage that outlasted the retries), then upload the manifest again: every step is idempotent.".into(),
        "TTLExpiredException" => "The message waited longer than its time to live (the function app was stopped or could not keep up). Start the app, then upload the manifest again.".into(),
        "Session id is null." | "MaxTransferHopCountExceeded" => "Service Bus could not route this message; check the topic's subscriptions against events/subscriptions.json (infra/ deploys them).".into(),
        _ => "Service Bus dead-lettered this message; the reason and description are above. Fix the cause, then upload the manifest again (every step is idempotent).".into(),
    }
}

fn property(message: &BusMessage, key: &str) -> Option<String> {
    message
        .application_properties
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .and_then(|(_, v)| match v {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        })
}

/// What the dead letter says: Service Bus's reason and description, and where it died.
pub fn failure_of(message: &BusMessage) -> Stop {
    let reason = property(message, "DeadLetterReason").unwrap_or_else(|| "DeadLettered".into());
    let description = property(message, "DeadLetterErrorDescription").unwrap_or_default();
    let source = message
        .dead_letter_source
        .clone()
        .unwrap_or_else(|| "an unknown entity".into());
    let mut error = ErrorDetail::new(
        reason.clone(),
        format!(
            "Service Bus dead-lettered message {} in {source}: {description}",
            message.message_id.as_deref().unwrap_or("(no id)"),
        ),
    );
    error.target = Some(source);
    Stop {
        error,
        advice: advice_for(&reason),
        left_behind: Vec::new(),
    }
}

/// What galleon keeps of a dead-lettered fact, for operators to list and resubmit
/// (`deadletters/<fact id>.json` in the state container).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Kept {
    pub fact_id: String,
    pub fact_type: String,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub run: Option<String>,
    /// Service Bus's reason and description, and the entity that dead-lettered it.
    pub reason: String,
    pub description: String,
    pub source: String,
    pub deliveries: u32,
    pub at: DateTime<Utc>,
    /// When an operator sent it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resubmitted_at: Option<DateTime<Utc>>,
    /// The fact itself, as it was sent.
    pub fact: Value,
}

/// The note of a dead-lettered fact (ids are UUIDs; nothing from a message is trusted as a path).
pub fn note_name(fact_id: &str) -> String {
    let safe: String = fact_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    format!("deadletters/{safe}.json")
}

fn kept(message: &BusMessage, fact: &Fact, stop: &Stop) -> Kept {
    Kept {
        fact_id: fact.id().to_owned(),
        fact_type: fact.cloud_event_type().to_owned(),
        subject: fact.subject().map(str::to_owned),
        run: fact.correlation_id(),
        reason: stop.error.code.clone(),
        description: property(message, "DeadLetterErrorDescription").unwrap_or_default(),
        source: message.dead_letter_source.clone().unwrap_or_default(),
        deliveries: message.delivery_count.unwrap_or(0),
        at: Utc::now(),
        resubmitted_at: None,
        fact: fact.to_json(),
    }
}

/// Keeps the dead letter in the state container for operators; a failure to keep it is logged, not fatal.
async fn keep(ctx: &Ctx, message: &BusMessage, fact: &Fact, stop: &Stop) {
    let note = kept(message, fact, stop);
    let body = bytes::Bytes::from(serde_json::to_vec(&note).unwrap_or_default());
    if let Err(e) = ctx.ledger.write_note(&note_name(fact.id()), body).await {
        tracing::warn!(error = %crate::error_chain(&e), fact_id = fact.id(), "could not keep the dead letter for operators");
    }
}

pub async fn run(invocation: Invocation, ctx: Arc<Ctx>) -> Result<Output, Failure> {
    let Trigger::ServiceBus(message) = invocation.trigger else {
        return Err(Failure::new(format!(
            "{NAME} is bound to a Service Bus trigger"
        )));
    };
    let stop = failure_of(&message);
    let fact = match Fact::from_json(&message.body) {
        Ok(fact) => fact,
        Err(e) => {
            // Not a fact at all: announce it as such (never retried, never lost).
            tracing::error!(message_id = message.message_id.as_deref().unwrap_or(""), reason = %stop.error.code, error = %crate::error_chain(&e), "dead-lettered message is not a galleon fact");
            let announce =
                super::announce::decide(&message, ctx.instance()).map_err(Failure::new)?;
            step::send(&ctx, &[Emit::now(announce)]).await?;
            return Ok(Output::default());
        }
    };
    if fact.fact_type() == Some(FactType::StepFailed) {
        // A failure that could not be announced is not announced again (that could loop): it is logged and
        // kept, so operators see it in `galleon dead-letters` and can resubmit it once the cause is gone.
        tracing::error!(fact_id = fact.id(), subject = fact.subject().unwrap_or(""), reason = %stop.error.code, description = %stop.error.message, "a step.failed fact was dead-lettered; subscribers did not receive it; kept for `galleon dead-letters`");
        keep(&ctx, &message, &fact, &stop).await;
        return Ok(Output::default());
    }
    let token = match ctx
        .ledger
        .claim(NAME, fact.id(), message.sequence_number)
        .await
    {
        Ok(Claim::Mine(token)) => token,
        Ok(_) => return Ok(Output::default()),
        Err(e) => return Err(Failure::new(e)),
    };
    tracing::warn!(fact_id = fact.id(), fact_type = fact.cloud_event_type(), reason = %stop.error.code, "a fact was dead-lettered; announcing the run's failure");
    // What is announced is the same on every delivery of the dead letter (a redelivery after a crash
    // sends the same fact again): the attempts Service Bus counted, the time the dead letter arrived.
    let attempts = attempts_of(&stop.error.message);
    let at = message.enqueued_time.unwrap_or_else(Utc::now);
    // Kept for operators (`galleon dead-letters`, `galleon resubmit`); the announcement below is the must.
    keep(&ctx, &message, &fact, &stop).await;
    if let Some(ending) = ended_already(&ctx, &fact).await {
        // A run ends once. A step can have sent what follows it and still be dead-lettered (killed
        // before it settled its message, delivery after delivery); its run may since have ended.
        tracing::warn!(
            fact_id = fact.id(),
            ending,
            "a fact of a run that already ended was dead-lettered; kept for operators, no second ending announced"
        );
    } else {
        let mut stop = stop;
        // The run ends here: the managed image it made only as a step towards its version goes too, as at
        // image ready (or the failure names it in leftBehind).
        if let (Some((image, vhd)), false) = (made_image(&fact), ctx.config.keep_managed_images)
            && let Some(run) = fact.correlation_id()
            && let Err(left) = super::owned::remove(
                &ctx,
                &image,
                &run,
                super::owned::Origin::of(vhd.as_ref(), &image),
            )
            .await
        {
            stop.left_behind.push(left);
        }
        let failed = step::failed_fact_at(&ctx, NAME, &fact, attempts, stop, at)
            .map_err(|e| Failure::new(format!("{e:?}")))?;
        // A run ends once, even when two of its facts are dead-lettered together (the journal may not
        // show the first ending yet): the ending that claims the run's outcome first is announced.
        let claimed = match fact.correlation_id() {
            Some(run) => ctx
                .ledger
                .claim_outcome(
                    &crate::ledger::Outcome {
                        run,
                        fact_type: failed.cloud_event_type().to_owned(),
                        fact_id: failed.id().to_owned(),
                        at,
                    },
                    // The dead-lettered fact may be the ending itself, recorded but never announced.
                    fact.id(),
                )
                .await
                .map_err(Failure::new)?,
            None => true,
        };
        if claimed {
            step::send(&ctx, &[Emit::now(failed)]).await?;
        } else {
            tracing::warn!(
                fact_id = fact.id(),
                "another fact ended this run first; this dead letter is kept for operators, no second ending announced"
            );
        }
    }
    if let Err(e) = ctx.ledger.done(token).await {
        tracing::warn!(error = %e, "could not mark the dead letter handled in the ledger");
    }
    Ok(Output::default())
}

/// The managed image a fact says its run made on the way to the version (`image.created`,
/// `image.version.published`, a replication follow-up), with the VHD it was made from. Whether the run
/// really owns it is [`super::owned::remove`]'s to check (an image made elsewhere is never deleted).
fn made_image(fact: &Fact) -> Option<(String, Option<BlobRef>)> {
    let json = fact.to_json();
    let data = json.get("data")?;
    let image = data
        .get("imageId")
        .or_else(|| data.pointer("/check/imageId"))
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())?;
    let vhd = data
        .get("vhd")
        .or_else(|| data.pointer("/then/data/sourceVhd"))
        .and_then(|v| serde_json::from_value::<BlobRef>(v.clone()).ok());
    Some((image.to_owned(), vhd))
}

/// The delivery attempts Service Bus's description counts (`… after 10 delivery attempts.`), else 1:
/// the dead letter's own delivery count is the `galleon-deadletters` queue's, not the dead message's.
fn attempts_of(description: &str) -> u32 {
    description
        .split("after ")
        .nth(1)
        .and_then(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .unwrap_or(1)
}

/// The ending (`step.failed`, `image.ready`, `vhd.rejected`) the fact's run already has in its journal,
/// other than the fact itself; `None` when it has none or the journal cannot be read (then the failure
/// is announced: never lost).
async fn ended_already(ctx: &Ctx, fact: &Fact) -> Option<String> {
    let run = fact.correlation_id()?;
    let entries = match ctx.journal.run(&run).await {
        Ok(entries) => entries?,
        Err(e) => {
            tracing::warn!(error = %crate::error_chain(&e), run, "could not read the run's journal");
            return None;
        }
    };
    let endings: Vec<String> = [
        FactType::StepFailed,
        FactType::ImageReady,
        FactType::VhdRejected,
    ]
    .into_iter()
    .map(FactType::cloud_event_type)
    .collect();
    // The dead-lettered fact may be the ending itself (never announced): that is no earlier ending.
    entries
        .iter()
        .filter(|e| e.id() != fact.id())
        .find_map(|e| {
            let ty = e.fact.get("type")?.as_str()?;
            endings.iter().any(|t| t == ty).then(|| ty.to_owned())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_managed_image_a_run_made_is_read_off_its_facts() {
        let example = |name: &str| {
            let path = format!(
                "{}/../../events/{name}.v1.example.json",
                env!("CARGO_MANIFEST_DIR")
            );
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            Fact::from_json(&text).unwrap_or_else(|e| panic!("{name}: {e:?}"))
        };
        let created = made_image(&example("image.created")).expect("image.created names its image");
        assert!(
            created.0.contains("/providers/Microsoft.Compute/images/"),
            "{created:?}"
        );
        assert!(created.1.is_some(), "made from a VHD: {created:?}");
        // A fact about a blob, or a replication follow-up without an image, names none.
        assert_eq!(made_image(&example("vhd.rejected")), None);
        let mut follow_up = example("operation.followup").to_json();
        follow_up["data"]["check"]["imageId"] =
            json!("/subscriptions/s/resourceGroups/r/providers/Microsoft.Compute/images/i-1.0.0");
        let follow_up = Fact::from_json(&follow_up.to_string()).expect("a fact");
        assert_eq!(
            made_image(&follow_up).map(|(id, _)| id).as_deref(),
            Some("/subscriptions/s/resourceGroups/r/providers/Microsoft.Compute/images/i-1.0.0")
        );
    }

    #[test]
    fn a_dead_letter_becomes_a_failure_with_service_bus_reason() {
        let mut message = BusMessage {
            message_id: Some("m-1".into()),
            delivery_count: Some(10),
            dead_letter_source: Some("galleon-facts/Subscriptions/publish-version".into()),
            ..BusMessage::default()
        };
        message
            .application_properties
            .insert("DeadLetterReason".into(), json!("MaxDeliveryCountExceeded"));
        message.application_properties.insert(
            "DeadLetterErrorDescription".into(),
            json!("Message could not be consumed after 10 delivery attempts."),
        );
        let stop = failure_of(&message);
        assert_eq!(stop.error.code, "MaxDeliveryCountExceeded");
        assert!(stop.error.message.contains("publish-version"));
        assert!(stop.error.message.contains("10 delivery attempts"));
        assert_eq!(attempts_of(&stop.error.message), 10);
        assert_eq!(attempts_of("Message expired."), 1);
        assert!(stop.advice.contains("upload the manifest again"));
        let bare = failure_of(&BusMessage::default());
        assert_eq!(bare.error.code, "DeadLettered");
    }
}
