//! Typed triggers: what each trigger kind galleon uses looks like once the host's envelope is decoded.
//! Handlers see these, never the envelope.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::values;

/// The trigger kinds galleon's functions use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerKind {
    EventGrid,
    ServiceBus,
    Timer,
    Http,
}

impl TriggerKind {
    /// The binding `type` in function.json.
    pub fn binding_type(self) -> &'static str {
        match self {
            TriggerKind::EventGrid => "eventGridTrigger",
            TriggerKind::ServiceBus => "serviceBusTrigger",
            TriggerKind::Timer => "timerTrigger",
            TriggerKind::Http => "httpTrigger",
        }
    }
}

/// A decoded trigger value.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    EventGrid(GridEvent),
    ServiceBus(BusMessage),
    Timer(TimerTick),
    Http(HttpRequest),
}

/// Which Event Grid schema an event was delivered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GridSchema {
    EventGrid,
    CloudEvents,
}

/// One Event Grid delivery, in either schema, with the fields both schemas share under one name.
#[derive(Debug, Clone, PartialEq)]
pub struct GridEvent {
    pub schema: GridSchema,
    pub id: String,
    pub event_type: String,
    /// `source` (CloudEvents) or `topic` (Event Grid schema).
    pub source: String,
    pub subject: Option<String>,
    pub time: Option<DateTime<Utc>>,
    pub data: Value,
    /// The event as delivered, less `data` (moved to [`GridEvent::data`], not copied): extension attributes
    /// such as `traceparent` live here.
    pub raw: Map<String, Value>,
}

impl GridEvent {
    /// The event as it was delivered (`data` back in its place), to keep for a later try.
    pub fn to_json(&self) -> Value {
        let mut event = self.raw.clone();
        event.insert("data".into(), self.data.clone());
        Value::Object(event)
    }

    /// An event kept by [`GridEvent::to_json`], read as the trigger reads a delivery.
    pub fn from_json(value: Value) -> Result<GridEvent, TriggerError> {
        grid_event("event", value)
    }
}

/// One Service Bus message, body as text, broker properties from the host's metadata.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BusMessage {
    pub body: String,
    pub message_id: Option<String>,
    pub correlation_id: Option<String>,
    pub content_type: Option<String>,
    pub subject: Option<String>,
    pub delivery_count: Option<u32>,
    pub sequence_number: Option<i64>,
    pub enqueued_time: Option<DateTime<Utc>>,
    /// Set on a message dead-lettered in one entity and auto-forwarded to another: where it died.
    pub dead_letter_source: Option<String>,
    pub application_properties: Map<String, Value>,
}

/// One timer firing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TimerTick {
    pub is_past_due: bool,
    /// `ScheduleStatus` is null on a first run or without `useMonitor`.
    pub last: Option<DateTime<Utc>>,
    pub next: Option<DateTime<Utc>>,
}

/// An HTTP request delivered through the envelope (`Data.<req>`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    pub query: BTreeMap<String, String>,
    pub headers: BTreeMap<String, Vec<String>>,
    pub params: BTreeMap<String, String>,
    /// The body as the host sent it: text, a JSON value, or base64 for binary bodies.
    pub body: Value,
}

/// Why a trigger value could not be decoded. These are defects of the invocation, not of user input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TriggerError {
    #[error("trigger binding '{binding}' is missing from Data (Data has: {present})")]
    MissingBinding { binding: String, present: String },
    #[error("trigger binding '{binding}' should hold {expected}, but holds {found}")]
    WrongShape {
        binding: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error(
        "event in binding '{binding}' has neither 'specversion' (CloudEvents) nor 'eventType' (Event Grid schema)"
    )]
    UnknownEventSchema { binding: String },
    #[error("event in binding '{binding}' lacks required field '{field}'")]
    MissingEventField {
        binding: String,
        field: &'static str,
    },
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Decodes `Data[binding]` (with `metadata` for broker properties) as a trigger of `kind`.
pub fn decode(
    kind: TriggerKind,
    binding: &str,
    data: &Map<String, Value>,
    metadata: &Map<String, Value>,
) -> Result<Trigger, TriggerError> {
    let value = data
        .get(binding)
        .ok_or_else(|| missing_binding(binding, data))?;
    decode_value(kind, binding, value.clone(), metadata)
}

/// [`decode`], taking `data` by value: the trigger value is moved out of it, not copied (the server's
/// path, where the envelope is not needed afterwards).
pub fn decode_owned(
    kind: TriggerKind,
    binding: &str,
    mut data: Map<String, Value>,
    metadata: &Map<String, Value>,
) -> Result<Trigger, TriggerError> {
    let value = data
        .remove(binding)
        .ok_or_else(|| missing_binding(binding, &data))?;
    decode_value(kind, binding, value, metadata)
}

fn missing_binding(binding: &str, data: &Map<String, Value>) -> TriggerError {
    TriggerError::MissingBinding {
        binding: binding.to_owned(),
        present: if data.is_empty() {
            "nothing".to_owned()
        } else {
            data.keys().cloned().collect::<Vec<_>>().join(", ")
        },
    }
}

fn decode_value(
    kind: TriggerKind,
    binding: &str,
    value: Value,
    metadata: &Map<String, Value>,
) -> Result<Trigger, TriggerError> {
    match kind {
        TriggerKind::EventGrid => grid_event(binding, value).map(Trigger::EventGrid),
        TriggerKind::ServiceBus => bus_message(binding, &value, metadata).map(Trigger::ServiceBus),
        TriggerKind::Timer => timer_tick(binding, &value).map(Trigger::Timer),
        TriggerKind::Http => http_request(binding, &value).map(Trigger::Http),
    }
}

fn object<'a>(
    binding: &str,
    value: &'a Value,
    expected: &'static str,
) -> Result<&'a Map<String, Value>, TriggerError> {
    value.as_object().ok_or(TriggerError::WrongShape {
        binding: binding.to_owned(),
        expected,
        found: kind_of(value),
    })
}

fn grid_event(binding: &str, value: Value) -> Result<GridEvent, TriggerError> {
    // The extension passes the event as an object; tolerate it arriving as JSON text.
    let value = if value.is_string() {
        values::json_document(&value).map_err(|_| TriggerError::WrongShape {
            binding: binding.to_owned(),
            expected: "an Event Grid event object",
            found: "a string that is not JSON",
        })?
    } else {
        value
    };
    let Value::Object(mut event) = value else {
        return Err(TriggerError::WrongShape {
            binding: binding.to_owned(),
            expected: "an Event Grid event object",
            found: kind_of(&value),
        });
    };
    let field = |name: &'static str| -> Result<String, TriggerError> {
        event
            .get(name)
            .and_then(values::text)
            .ok_or(TriggerError::MissingEventField {
                binding: binding.to_owned(),
                field: name,
            })
    };
    let optional = |name: &str| event.get(name).and_then(values::text);
    let (schema, event_type, source, time) = if event.contains_key("specversion") {
        (
            GridSchema::CloudEvents,
            field("type")?,
            field("source")?,
            event.get("time").and_then(values::timestamp),
        )
    } else if event.contains_key("eventType") {
        (
            GridSchema::EventGrid,
            field("eventType")?,
            optional("topic").unwrap_or_default(),
            event.get("eventTime").and_then(values::timestamp),
        )
    } else {
        return Err(TriggerError::UnknownEventSchema {
            binding: binding.to_owned(),
        });
    };
    Ok(GridEvent {
        schema,
        id: field("id")?,
        event_type,
        source,
        subject: optional("subject"),
        time,
        data: event.remove("data").unwrap_or(Value::Null),
        raw: event,
    })
}

fn bus_message(
    binding: &str,
    value: &Value,
    metadata: &Map<String, Value>,
) -> Result<BusMessage, TriggerError> {
    let body = match value {
        Value::String(s) => values::unquote(s),
        // A host configured with a JSON-typed binding may hand over the parsed body.
        Value::Object(_) | Value::Array(_) => value.to_string(),
        other => {
            return Err(TriggerError::WrongShape {
                binding: binding.to_owned(),
                expected: "the message body as text",
                found: kind_of(other),
            });
        }
    };
    let text = |key: &str| metadata.get(key).and_then(values::text);
    let application_properties = metadata
        .get("ApplicationProperties")
        .or_else(|| metadata.get("UserProperties"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    Ok(BusMessage {
        body,
        message_id: text("MessageId"),
        correlation_id: text("CorrelationId"),
        content_type: text("ContentType"),
        subject: text("Subject").or_else(|| text("Label")),
        delivery_count: metadata
            .get("DeliveryCount")
            .and_then(values::integer)
            .and_then(|n| u32::try_from(n).ok()),
        sequence_number: metadata.get("SequenceNumber").and_then(values::integer),
        enqueued_time: metadata
            .get("EnqueuedTimeUtc")
            .or_else(|| metadata.get("EnqueuedTime"))
            .and_then(values::timestamp),
        dead_letter_source: text("DeadLetterSource"),
        application_properties,
    })
}

fn timer_tick(binding: &str, value: &Value) -> Result<TimerTick, TriggerError> {
    let timer = object(binding, value, "a timer object")?;
    let status = timer.get("ScheduleStatus").and_then(Value::as_object);
    let at = |key: &str| status.and_then(|s| s.get(key)).and_then(values::timestamp);
    Ok(TimerTick {
        is_past_due: timer
            .get("IsPastDue")
            .and_then(|v| v.as_bool().or_else(|| values::text(v).map(|t| t == "true")))
            .unwrap_or(false),
        last: at("Last"),
        next: at("Next"),
    })
}

fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    // `Query` is an object on current hosts and the text "{}" in the docs sample.
    let owned = value.and_then(|v| values::json_document(v).ok());
    owned
        .as_ref()
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| values::text(v).map(|t| (k.clone(), t)))
                .collect()
        })
        .unwrap_or_default()
}

fn http_request(binding: &str, value: &Value) -> Result<HttpRequest, TriggerError> {
    let req = object(binding, value, "an HTTP request object")?;
    let headers = req
        .get("Headers")
        .and_then(Value::as_object)
        .map(|h| {
            h.iter()
                .map(|(k, v)| {
                    let all = match v {
                        Value::Array(items) => items.iter().filter_map(values::text).collect(),
                        other => values::text(other).into_iter().collect(),
                    };
                    (k.clone(), all)
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(HttpRequest {
        method: req.get("Method").and_then(values::text).unwrap_or_default(),
        url: req.get("Url").and_then(values::text).unwrap_or_default(),
        query: string_map(req.get("Query")),
        headers,
        params: string_map(req.get("Params")),
        body: req.get("Body").cloned().unwrap_or(Value::Null),
    })
}

impl HttpRequest {
    /// The first value of a header, matched case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.first())
            .map(String::as_str)
    }
}
