//! Announce: forwards the facts subscribers care about (image ready, replica ready, rejections, failures)
//! from the internal Service Bus topic to the public Event Grid topic, as CloudEvents.

use chrono::Utc;
use serde_json::Value;

use crate::{
    events::{Cause, ErrorDetail, Fact, FactError, FailedInput, StepFailed},
    host::{BusMessage, Failure, Invocation, Output, Trigger},
};

pub const NAME: &str = "Announce";
/// The trigger binding (Service Bus subscription `announce` of topic `galleon-facts`).
pub const TRIGGER: &str = "fact";
/// The Event Grid output binding.
pub const OUTPUT: &str = "announcements";

/// What to announce for one message: the fact itself when it is public, or a `step.failed` fact saying why
/// it could not be (so a bad message is reported, not retried ten times and not lost).
pub fn decide(message: &BusMessage, instance: &str) -> Result<Fact, FactError> {
    match Fact::from_json(&message.body) {
        Ok(fact) if fact.fact_type().is_some_and(|t| t.is_public()) => Ok(fact),
        Ok(fact) => undeliverable(
            message,
            instance,
            "FactNotPublic",
            format!(
                "{} is an internal fact and is never announced",
                fact.cloud_event_type()
            ),
            "The 'announce' subscription receives a type it should not: fix its rules to the public types in events/subscriptions.json.",
        ),
        Err(error) => undeliverable(
            message,
            instance,
            "FactUndecodable",
            crate::error_chain(&error),
            "The message on subscription 'announce' is not a galleon fact (a CloudEvent of a type in events/README.md with valid data). It was not retried. Find the sender by its message id; galleon itself only sends facts that validate.",
        ),
    }
}

fn undeliverable(
    message: &BusMessage,
    instance: &str,
    code: &str,
    detail: String,
    advice: &str,
) -> Result<Fact, FactError> {
    let id = message.message_id.clone().unwrap_or_else(|| {
        uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, message.body.as_bytes()).to_string()
    });
    let cause = Cause {
        id: id.clone(),
        correlation_id: message.correlation_id.clone().unwrap_or_else(|| id.clone()),
        traceparent: None,
    };
    let data = StepFailed {
        step: NAME.to_owned(),
        error: ErrorDetail::new(code, detail),
        attempts: message.delivery_count.unwrap_or(1).max(1),
        advice: advice.to_owned(),
        input: FailedInput {
            ty: message
                .application_properties
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_owned(),
            id,
            subject: None,
        },
        left_behind: Vec::new(),
    };
    Fact::new(
        instance,
        &cause,
        "functions/Announce",
        code,
        &data,
        Utc::now(),
    )
}

pub async fn run(invocation: Invocation, instance: String) -> Result<Output, Failure> {
    let Trigger::ServiceBus(message) = invocation.trigger else {
        return Err(Failure::new("Announce is bound to a Service Bus trigger"));
    };
    let fact = decide(&message, &instance).map_err(Failure::new)?;
    if let Some(correlation) = fact.correlation_id() {
        tracing::Span::current().record("correlation_id", correlation.as_str());
    }
    tracing::info!(
        fact_type = fact.cloud_event_type(),
        fact_id = fact.id(),
        subject = fact.subject().unwrap_or(""),
        "announcing"
    );
    Ok(Output::default().binding(OUTPUT, Value::Array(vec![fact.to_json()])))
}
