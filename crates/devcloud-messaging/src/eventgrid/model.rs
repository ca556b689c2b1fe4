//! Event Grid events as published and delivered: the two schemas (Event Grid and CloudEvents 1.0),
//! publish-time validation and conversion between schemas for delivery (filters are in `filter`).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

/// An event schema (topic input schema or subscription delivery schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    EventGrid,
    CloudEvents,
}

impl Schema {
    /// Parses the ARM names (`EventGridSchema`, `CloudEventSchemaV1_0`).
    pub fn parse(s: &str) -> Option<Schema> {
        match s.to_ascii_lowercase().as_str() {
            "eventgridschema" | "eventgrid" => Some(Schema::EventGrid),
            "cloudeventschemav1_0" | "cloudevents" | "cloudeventschema" => {
                Some(Schema::CloudEvents)
            }
            _ => None,
        }
    }

    pub fn arm_name(self) -> &'static str {
        match self {
            Schema::EventGrid => "EventGridSchema",
            Schema::CloudEvents => "CloudEventSchemaV1_0",
        }
    }
}

/// An event in the schema it was published in.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub schema: Schema,
    pub value: Value,
}

fn str_field<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// Event Grid's timestamp format (7 fractional digits, `Z`).
pub fn event_time(t: DateTime<Utc>) -> String {
    use chrono::Timelike;
    format!(
        "{}.{:07}Z",
        t.format("%Y-%m-%dT%H:%M:%S"),
        (t.nanosecond() % 1_000_000_000) / 100
    )
}

impl Event {
    pub fn id(&self) -> &str {
        str_field(&self.value, "id")
    }

    pub fn event_type(&self) -> &str {
        match self.schema {
            Schema::EventGrid => str_field(&self.value, "eventType"),
            Schema::CloudEvents => str_field(&self.value, "type"),
        }
    }

    pub fn subject(&self) -> &str {
        str_field(&self.value, "subject")
    }

    /// The event in `schema`: unchanged when the schemas agree, otherwise mapped field by field
    /// (Event Grid → CloudEvents: `source` = topic, `type` = eventType, `time` = eventTime;
    /// the reverse for CloudEvents → Event Grid).
    pub fn to_schema(&self, schema: Schema) -> Value {
        if schema == self.schema {
            return self.value.clone();
        }
        let v = &self.value;
        match schema {
            Schema::CloudEvents => {
                let mut m = Map::new();
                m.insert("source".into(), json!(str_field(v, "topic")));
                m.insert("subject".into(), json!(str_field(v, "subject")));
                m.insert("type".into(), json!(str_field(v, "eventType")));
                m.insert("time".into(), json!(str_field(v, "eventTime")));
                m.insert("id".into(), json!(str_field(v, "id")));
                if let Some(d) = v.get("data") {
                    m.insert("data".into(), d.clone());
                }
                m.insert("specversion".into(), json!("1.0"));
                Value::Object(m)
            }
            Schema::EventGrid => {
                let time = match str_field(v, "time") {
                    "" => event_time(Utc::now()),
                    t => t.to_string(),
                };
                let data = v
                    .get("data")
                    .cloned()
                    .or_else(|| v.get("data_base64").cloned())
                    .unwrap_or(Value::Null);
                json!({
                    "id": str_field(v, "id"),
                    "topic": str_field(v, "source"),
                    "subject": str_field(v, "subject"),
                    "eventType": str_field(v, "type"),
                    "eventTime": time,
                    "data": data,
                    "dataVersion": "",
                    "metadataVersion": "1",
                })
            }
        }
    }
}

/// Why a published body was refused (400), with the service's detail code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidEvent {
    pub detail_code: &'static str,
    pub message: String,
}

fn invalid(message: String) -> InvalidEvent {
    InvalidEvent {
        detail_code: "InputJsonInvalid",
        message,
    }
}

/// Most events in one publish request.
pub const MAX_EVENTS_PER_REQUEST: usize = 5000;

/// What a CloudEvents topic answers (415) to a publish whose `Content-Type` is missing or another type.
pub const CLOUDEVENTS_CONTENT_TYPE_REQUIRED: &str = "The Content-Type header is either missing or it doesn't have a valid value. The content type header must either be application/cloudevents+json; charset=utf-8 or application/cloudevents-batch+json; charset=UTF-8.";

/// Whether a publish to a CloudEvents topic has a content type the topic takes: structured
/// `application/cloudevents+json` (one event) or `application/cloudevents-batch+json`. Plain
/// `application/json`, or none, is refused with 415 ([`CLOUDEVENTS_CONTENT_TYPE_REQUIRED`]).
pub fn cloudevents_content_type(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else {
        return false;
    };
    let media = ct.split(';').next().unwrap_or_default().trim();
    media.eq_ignore_ascii_case("application/cloudevents+json")
        || media.eq_ignore_ascii_case("application/cloudevents-batch+json")
}

/// Parses and validates a publish body for a topic.
///
/// CloudEvents topics take `application/cloudevents+json` (one object) or
/// `application/cloudevents-batch+json` (array); the server refuses other content types first
/// ([`cloudevents_content_type`]).
/// Event Grid topics take an array (`application/json`). `topic_id` fills an Event Grid event's
/// `topic` (which, when given, must equal it).
pub fn parse_publish(
    schema: Schema,
    content_type: &str,
    body: &[u8],
    topic_id: &str,
) -> Result<Vec<Event>, InvalidEvent> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| invalid(format!("The request body is not valid JSON: {e}.")))?;
    let ct = content_type.to_ascii_lowercase();
    let items: Vec<Value> = match (schema, v) {
        (Schema::CloudEvents, Value::Object(o)) if !ct.contains("cloudevents-batch") => {
            vec![Value::Object(o)]
        }
        (Schema::CloudEvents, Value::Array(a))
            if !ct.starts_with("application/cloudevents+json") =>
        {
            a
        }
        (Schema::CloudEvents, _) => {
            return Err(invalid(
                "Expected a CloudEvent object for application/cloudevents+json or an array for application/cloudevents-batch+json.".into(),
            ));
        }
        (Schema::EventGrid, Value::Array(a)) => a,
        (Schema::EventGrid, _) => {
            return Err(invalid(
                "The request body must be a JSON array of events in the Event Grid schema.".into(),
            ));
        }
    };
    if items.is_empty() {
        return Err(invalid("The request contains no events.".into()));
    }
    if items.len() > MAX_EVENTS_PER_REQUEST {
        return Err(invalid(format!(
            "The request contains {} events; the maximum is {MAX_EVENTS_PER_REQUEST}.",
            items.len()
        )));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match schema {
            Schema::CloudEvents => validate_cloud_event(i, item),
            Schema::EventGrid => validate_grid_event(i, item, topic_id),
        })
        .collect()
}

fn required_string(i: usize, o: &Map<String, Value>, k: &str) -> Result<(), InvalidEvent> {
    match o.get(k) {
        Some(Value::String(s)) if !s.is_empty() => Ok(()),
        _ => Err(invalid(format!(
            "Event {i}: the required property '{k}' is missing or not a non-empty string."
        ))),
    }
}

fn validate_cloud_event(i: usize, item: Value) -> Result<Event, InvalidEvent> {
    let o = item
        .as_object()
        .ok_or_else(|| invalid(format!("Event {i} is not a JSON object.")))?;
    for k in ["id", "source", "type", "specversion"] {
        required_string(i, o, k)?;
    }
    if o.get("specversion").and_then(Value::as_str) != Some("1.0") {
        return Err(invalid(format!("Event {i}: specversion must be \"1.0\".")));
    }
    if o.contains_key("data") && o.contains_key("data_base64") {
        return Err(invalid(format!(
            "Event {i}: data and data_base64 are mutually exclusive."
        )));
    }
    if let Some(t) = o.get("time")
        && t.as_str()
            .is_none_or(|t| DateTime::parse_from_rfc3339(t).is_err())
    {
        return Err(invalid(format!(
            "Event {i}: time is not an RFC 3339 timestamp."
        )));
    }
    Ok(Event {
        schema: Schema::CloudEvents,
        value: item,
    })
}

fn validate_grid_event(i: usize, mut item: Value, topic_id: &str) -> Result<Event, InvalidEvent> {
    let o = item
        .as_object_mut()
        .ok_or_else(|| invalid(format!("Event {i} is not a JSON object.")))?;
    for k in ["id", "subject", "eventType", "eventTime"] {
        required_string(i, o, k)?;
    }
    if o.get("eventTime")
        .and_then(Value::as_str)
        .is_none_or(|t| DateTime::parse_from_rfc3339(t).is_err())
    {
        return Err(invalid(format!(
            "Event {i}: eventTime is not an ISO 8601 timestamp."
        )));
    }
    match o.get("topic") {
        None | Some(Value::Null) => {
            o.insert("topic".into(), json!(topic_id));
        }
        Some(Value::String(t)) if t.eq_ignore_ascii_case(topic_id) => {}
        Some(_) => {
            return Err(InvalidEvent {
                detail_code: "InputJsonInvalid",
                message: format!(
                    "Event {i}: the topic property does not match the topic ({topic_id})."
                ),
            });
        }
    }
    if !o.contains_key("dataVersion") {
        o.insert("dataVersion".into(), json!(""));
    }
    o.insert("metadataVersion".into(), json!("1"));
    Ok(Event {
        schema: Schema::EventGrid,
        value: item,
    })
}

/// The `Microsoft.EventGrid.SubscriptionValidationEvent` for the Event Grid schema handshake.
pub fn validation_event(code: &str, validation_url: &str, topic_id: &str) -> Value {
    json!([{
        "id": uuid::Uuid::new_v4().to_string(),
        "topic": topic_id,
        "subject": "",
        "data": {"validationCode": code, "validationUrl": validation_url},
        "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
        "eventTime": event_time(Utc::now()),
        "metadataVersion": "1",
        "dataVersion": "1"
    }])
}

/// RFC 3339 text for admin output.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPIC: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.EventGrid/topics/t";

    #[test]
    fn publish_eventgrid_fixture() {
        let body = include_str!(
            "../../tests/fixtures/eventgrid.custom-topic-publish.eventgrid-schema.docs.json"
        );
        let evs = parse_publish(
            Schema::EventGrid,
            "application/json",
            body.as_bytes(),
            TOPIC,
        )
        .expect("valid");
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].event_type(), "recordInserted");
        assert_eq!(evs[0].value["topic"], TOPIC);
        assert_eq!(evs[0].value["metadataVersion"], "1");
        // not an array
        assert!(parse_publish(Schema::EventGrid, "application/json", b"{}", TOPIC).is_err());
        // missing eventTime
        let bad = br#"[{"id":"1","eventType":"x","subject":"s","data":{}}]"#;
        assert!(parse_publish(Schema::EventGrid, "application/json", bad, TOPIC).is_err());
        // foreign topic
        let bad = br#"[{"id":"1","eventType":"x","subject":"s","eventTime":"2017-08-10T21:03:07+00:00","topic":"/other"}]"#;
        assert!(parse_publish(Schema::EventGrid, "application/json", bad, TOPIC).is_err());
    }

    #[test]
    fn cloudevents_content_types() {
        for (ct, ok) in [
            (Some("application/cloudevents+json; charset=utf-8"), true),
            (
                Some("application/cloudevents-batch+json; charset=UTF-8"),
                true,
            ),
            (Some("application/cloudevents+json"), true),
            (Some("Application/CloudEvents-Batch+JSON"), true),
            (Some("application/json"), false),
            (Some("application/json; charset=utf-8"), false),
            (Some("text/plain"), false),
            (Some(""), false),
            (None, false),
        ] {
            assert_eq!(cloudevents_content_type(ct), ok, "{ct:?}");
        }
    }

    #[test]
    fn publish_cloudevents() {
        let one = br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data":{"a":1}}"#;
        let evs = parse_publish(
            Schema::CloudEvents,
            "application/cloudevents+json; charset=utf-8",
            one,
            TOPIC,
        )
        .expect("valid");
        assert_eq!(evs[0].value["data"]["a"], 1);
        let batch = format!("[{}]", std::str::from_utf8(one).expect("utf8"));
        let evs = parse_publish(
            Schema::CloudEvents,
            "application/cloudevents-batch+json; charset=utf-8",
            batch.as_bytes(),
            TOPIC,
        )
        .expect("valid");
        assert_eq!(evs.len(), 1);
        assert!(
            parse_publish(
                Schema::CloudEvents,
                "application/cloudevents-batch+json",
                one,
                TOPIC
            )
            .is_err()
        );
        assert!(
            parse_publish(
                Schema::CloudEvents,
                "application/cloudevents+json",
                batch.as_bytes(),
                TOPIC
            )
            .is_err()
        );
        for bad in [
            r#"{"specversion":"0.3","id":"1","source":"/s","type":"t"}"#,
            r#"{"specversion":"1.0","source":"/s","type":"t"}"#,
            r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","time":"yesterday"}"#,
            r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data":1,"data_base64":"AA=="}"#,
            r#"[]"#,
            "not json",
        ] {
            assert!(
                parse_publish(
                    Schema::CloudEvents,
                    "application/json",
                    bad.as_bytes(),
                    TOPIC
                )
                .is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn schema_conversion_matches_fixtures() {
        let grid: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/eventgrid.BlobCreated.eventgrid-schema.docs.json"
        ))
        .expect("fixture");
        let cloud: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/eventgrid.BlobCreated.cloudevents-schema.docs.json"
        ))
        .expect("fixture");
        let e = Event {
            schema: Schema::EventGrid,
            value: grid[0].clone(),
        };
        assert_eq!(e.to_schema(Schema::CloudEvents), cloud[0]);
        let c = Event {
            schema: Schema::CloudEvents,
            value: cloud[0].clone(),
        };
        assert_eq!(c.to_schema(Schema::EventGrid), grid[0]);
        assert_eq!(c.to_schema(Schema::CloudEvents), cloud[0]);
    }

    #[test]
    fn time_format() {
        let t = DateTime::parse_from_rfc3339("2017-06-26T18:41:00.9584103Z")
            .expect("time")
            .with_timezone(&Utc);
        assert_eq!(event_time(t), "2017-06-26T18:41:00.9584103Z");
    }

    #[test]
    fn validation_event_shape() {
        let fixture: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/eventgrid.SubscriptionValidationEvent.docs.json"
        ))
        .expect("fixture");
        let ours = validation_event("code", "https://x/validate", "/t");
        let keys = |v: &Value| {
            let mut k: Vec<String> = v[0].as_object().expect("object").keys().cloned().collect();
            k.sort();
            k
        };
        assert_eq!(keys(&ours), keys(&fixture));
        assert_eq!(ours[0]["eventType"], fixture[0]["eventType"]);
        assert_eq!(ours[0]["data"]["validationCode"], "code");
    }
}
