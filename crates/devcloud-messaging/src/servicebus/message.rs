//! Service Bus messages as the broker keeps them: the REST `BrokerProperties` header, application
//! properties (as HTTP headers), and the conversions between the wire forms and the stored form.

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// An application (user) property value, typed as the REST API types header values.
#[derive(Debug, Clone, PartialEq)]
pub enum PropValue {
    Str(String),
    Bool(bool),
    Int(i64),
    Float(f64),
}

impl PropValue {
    /// Types a header value: `"x"` is a string, bare `true`/`false` a bool, a bare number a number,
    /// anything else a string.
    pub fn from_header(raw: &str) -> PropValue {
        let v = raw.trim();
        if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
            return PropValue::Str(v[1..v.len() - 1].to_string());
        }
        match v {
            "true" => return PropValue::Bool(true),
            "false" => return PropValue::Bool(false),
            _ => {}
        }
        if let Ok(i) = v.parse::<i64>() {
            return PropValue::Int(i);
        }
        if v.chars().any(|c| c.is_ascii_digit())
            && let Ok(f) = v.parse::<f64>()
            && f.is_finite()
        {
            return PropValue::Float(f);
        }
        PropValue::Str(v.to_string())
    }

    /// The header form, the inverse of [`PropValue::from_header`] (strings are quoted).
    pub fn to_header(&self) -> String {
        match self {
            PropValue::Str(s) => format!("\"{s}\""),
            PropValue::Bool(b) => b.to_string(),
            PropValue::Int(i) => i.to_string(),
            PropValue::Float(f) => f.to_string(),
        }
    }

    /// From a JSON value (batch `UserProperties`); objects and arrays are kept as their JSON text.
    pub fn from_json(v: &Value) -> PropValue {
        match v {
            Value::String(s) => PropValue::Str(s.clone()),
            Value::Bool(b) => PropValue::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => PropValue::Int(i),
                None => PropValue::Float(n.as_f64().unwrap_or(0.0)),
            },
            other => PropValue::Str(other.to_string()),
        }
    }

    pub fn to_json(&self) -> Value {
        match self {
            PropValue::Str(s) => Value::String(s.clone()),
            PropValue::Bool(b) => Value::Bool(*b),
            PropValue::Int(i) => Value::from(*i),
            PropValue::Float(f) => Value::from(*f),
        }
    }

    /// The value as text, for comparisons with string literals.
    pub fn as_text(&self) -> String {
        match self {
            PropValue::Str(s) => s.clone(),
            other => other.to_header(),
        }
    }
}

/// The settable part of `BrokerProperties`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BrokerProps {
    pub message_id: Option<String>,
    pub correlation_id: Option<String>,
    pub label: Option<String>,
    pub session_id: Option<String>,
    pub partition_key: Option<String>,
    pub to: Option<String>,
    pub reply_to: Option<String>,
    pub reply_to_session_id: Option<String>,
    /// Seconds.
    pub time_to_live: Option<f64>,
    pub scheduled_enqueue_time: Option<DateTime<Utc>>,
}

/// Why a `BrokerProperties` value was refused (answered with 400).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PropsError {
    #[error("the BrokerProperties header is not a JSON object: {0}")]
    NotJson(String),
    #[error("BrokerProperties.{0} has an invalid value")]
    BadValue(&'static str),
    #[error("BrokerProperties.ScheduledEnqueueTimeUtc is not an RFC 1123 date: {0}")]
    BadDate(String),
    #[error("SessionId and PartitionKey must be equal when both are set")]
    SessionPartitionMismatch,
    #[error("BrokerProperties.{0} is longer than 128 characters")]
    TooLong(&'static str),
}

fn opt_string(obj: &Map<String, Value>, key: &'static str) -> Result<Option<String>, PropsError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(PropsError::BadValue(key)),
    }
}

/// Parses an RFC 1123 date (`Sun, 06 Nov 1994 08:49:37 GMT`); ISO 8601 is accepted too.
pub fn parse_http_date(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc2822(s.trim())
        .or_else(|_| DateTime::parse_from_rfc3339(s.trim()))
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// Formats an RFC 1123 date as the REST API does.
pub fn format_http_date(d: DateTime<Utc>) -> String {
    d.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

impl BrokerProps {
    /// Parses the `BrokerProperties` JSON object (unknown keys are ignored, as the service does).
    pub fn from_json(obj: &Map<String, Value>) -> Result<BrokerProps, PropsError> {
        let mut p = BrokerProps {
            message_id: opt_string(obj, "MessageId")?,
            correlation_id: opt_string(obj, "CorrelationId")?,
            label: opt_string(obj, "Label")?,
            session_id: opt_string(obj, "SessionId")?,
            partition_key: opt_string(obj, "PartitionKey")?,
            to: opt_string(obj, "To")?,
            reply_to: opt_string(obj, "ReplyTo")?,
            reply_to_session_id: opt_string(obj, "ReplyToSessionId")?,
            time_to_live: None,
            scheduled_enqueue_time: None,
        };
        match obj.get("TimeToLive") {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) => match n.as_f64() {
                Some(s) if s > 0.0 && s.is_finite() => p.time_to_live = Some(s),
                _ => return Err(PropsError::BadValue("TimeToLive")),
            },
            Some(Value::String(s)) => match s.trim().parse::<f64>() {
                Ok(v) if v > 0.0 && v.is_finite() => p.time_to_live = Some(v),
                _ => return Err(PropsError::BadValue("TimeToLive")),
            },
            Some(_) => return Err(PropsError::BadValue("TimeToLive")),
        }
        match obj.get("ScheduledEnqueueTimeUtc") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => {
                p.scheduled_enqueue_time =
                    Some(parse_http_date(s).ok_or_else(|| PropsError::BadDate(s.clone()))?)
            }
            Some(_) => return Err(PropsError::BadValue("ScheduledEnqueueTimeUtc")),
        }
        if let (Some(s), Some(k)) = (&p.session_id, &p.partition_key)
            && s != k
        {
            return Err(PropsError::SessionPartitionMismatch);
        }
        if p.message_id
            .as_ref()
            .is_some_and(|m| m.chars().count() > 128)
        {
            return Err(PropsError::TooLong("MessageId"));
        }
        if p.session_id
            .as_ref()
            .is_some_and(|m| m.chars().count() > 128)
        {
            return Err(PropsError::TooLong("SessionId"));
        }
        Ok(p)
    }

    /// Parses the header text.
    pub fn from_header(text: &str) -> Result<BrokerProps, PropsError> {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(obj)) => BrokerProps::from_json(&obj),
            Ok(_) => Err(PropsError::NotJson("not an object".into())),
            Err(e) => Err(PropsError::NotJson(e.to_string())),
        }
    }
}

/// A message as sent (before the broker stamps it).
#[derive(Debug, Clone, Default)]
pub struct NewMessage {
    pub body: Bytes,
    pub content_type: Option<String>,
    pub props: BrokerProps,
    pub app_props: BTreeMap<String, PropValue>,
}

/// Most bytes one application property (name and value) may take.
pub const MAX_PROPERTY_SIZE: usize = 32 * 1024;
/// Most bytes all application properties together may take.
pub const MAX_PROPERTIES_SIZE: usize = 64 * 1024;

impl NewMessage {
    /// Why Service Bus refuses this message's application properties, if it does: each property at
    /// most 32 KB, all of them at most 64 KB (`BrokeredMessage.Properties`).
    pub fn properties_too_large(&self) -> Option<String> {
        let sizes = self
            .app_props
            .iter()
            .map(|(k, v)| (k, k.len() + v.to_header().len()));
        let mut total = 0;
        for (name, size) in sizes {
            if size > MAX_PROPERTY_SIZE {
                return Some(format!(
                    "The property '{name}' is {size} bytes; the size of each property cannot exceed {MAX_PROPERTY_SIZE} bytes."
                ));
            }
            total += size;
        }
        (total > MAX_PROPERTIES_SIZE).then(|| {
            format!(
                "The message's properties are {total} bytes; their collective size cannot exceed {MAX_PROPERTIES_SIZE} bytes."
            )
        })
    }

    /// Size as Service Bus counts it: body plus properties (approximately: names and values as text).
    pub fn size(&self) -> usize {
        let p = &self.props;
        let strings = [
            &p.message_id,
            &p.correlation_id,
            &p.label,
            &p.session_id,
            &p.partition_key,
            &p.to,
            &p.reply_to,
            &p.reply_to_session_id,
            &self.content_type,
        ];
        let sys: usize = strings
            .iter()
            .filter_map(|s| s.as_ref())
            .map(|s| s.len())
            .sum();
        let app: usize = self
            .app_props
            .iter()
            .map(|(k, v)| k.len() + v.to_header().len())
            .sum();
        self.body.len() + sys + app
    }
}

/// A message in the broker.
#[derive(Debug, Clone)]
pub struct Message {
    pub body: Bytes,
    pub content_type: Option<String>,
    pub props: BrokerProps,
    pub app_props: BTreeMap<String, PropValue>,
    /// Always set (assigned when the sender gave none).
    pub message_id: String,
    pub sequence_number: i64,
    pub enqueued_time: DateTime<Utc>,
    pub delivery_count: u32,
    pub expires_at: Option<DateTime<Utc>>,
    pub dead_letter_reason: Option<String>,
    pub dead_letter_description: Option<String>,
    pub dead_letter_source: Option<String>,
}

impl Message {
    /// The `BrokerProperties` JSON returned on receive.
    pub fn broker_properties_json(
        &self,
        lock: Option<(&str, DateTime<Utc>)>,
        state: &str,
    ) -> Value {
        let mut m = Map::new();
        let p = &self.props;
        m.insert("DeliveryCount".into(), Value::from(self.delivery_count));
        m.insert(
            "EnqueuedSequenceNumber".into(),
            Value::from(self.sequence_number),
        );
        m.insert(
            "EnqueuedTimeUtc".into(),
            Value::from(format_http_date(self.enqueued_time)),
        );
        m.insert("MessageId".into(), Value::from(self.message_id.clone()));
        m.insert("SequenceNumber".into(), Value::from(self.sequence_number));
        m.insert("State".into(), Value::from(state));
        if let Some((token, until)) = lock {
            m.insert("LockToken".into(), Value::from(token));
            m.insert(
                "LockedUntilUtc".into(),
                Value::from(format_http_date(until)),
            );
        }
        let ttl = p.time_to_live.unwrap_or(922337203685.4775);
        m.insert("TimeToLive".into(), Value::from(ttl));
        let optional = [
            ("CorrelationId", &p.correlation_id),
            ("Label", &p.label),
            ("SessionId", &p.session_id),
            ("PartitionKey", &p.partition_key),
            ("To", &p.to),
            ("ReplyTo", &p.reply_to),
            ("ReplyToSessionId", &p.reply_to_session_id),
            ("DeadLetterReason", &self.dead_letter_reason),
            ("DeadLetterErrorDescription", &self.dead_letter_description),
            ("DeadLetterSource", &self.dead_letter_source),
        ];
        for (k, v) in optional {
            if let Some(v) = v {
                m.insert(k.into(), Value::from(v.clone()));
            }
        }
        if let Some(s) = p.scheduled_enqueue_time {
            m.insert(
                "ScheduledEnqueueTimeUtc".into(),
                Value::from(format_http_date(s)),
            );
        }
        Value::Object(m)
    }

    /// A JSON summary for the admin endpoint (body as UTF-8 text when it is text, else base64-free length).
    pub fn admin_json(&self) -> Value {
        let body = match std::str::from_utf8(&self.body) {
            Ok(s) => Value::from(s),
            Err(_) => Value::from(format!("<{} bytes of binary>", self.body.len())),
        };
        let props: Map<String, Value> = self
            .app_props
            .iter()
            .map(|(k, v)| (k.clone(), v.to_json()))
            .collect();
        serde_json::json!({
            "brokerProperties": self.broker_properties_json(None, "Active"),
            "contentType": self.content_type,
            "userProperties": props,
            "body": body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_typing() {
        assert_eq!(
            PropValue::from_header("\"High\""),
            PropValue::Str("High".into())
        );
        assert_eq!(
            PropValue::from_header("High"),
            PropValue::Str("High".into())
        );
        assert_eq!(
            PropValue::from_header("\"12\""),
            PropValue::Str("12".into())
        );
        assert_eq!(PropValue::from_header("true"), PropValue::Bool(true));
        assert_eq!(PropValue::from_header("12"), PropValue::Int(12));
        assert_eq!(PropValue::from_header("-1.5"), PropValue::Float(-1.5));
        assert_eq!(PropValue::from_header("inf"), PropValue::Str("inf".into()));
        assert_eq!(PropValue::Str("a".into()).to_header(), "\"a\"");
    }

    #[test]
    fn broker_properties_fixtures() {
        let text = include_str!(
            "../../tests/fixtures/servicebus.BrokerProperties.all-properties.azure-sdk-for-php-test.json"
        );
        let p = BrokerProps::from_header(text).expect("fixture parses");
        assert_eq!(p.message_id.as_deref(), Some("testMessageId"));
        assert_eq!(p.correlation_id.as_deref(), Some("testCorrelationId"));
        assert_eq!(p.label.as_deref(), Some("testLabel"));
        assert_eq!(p.time_to_live, Some(123.456));
        let sched = p.scheduled_enqueue_time.expect("scheduled");
        assert_eq!(format_http_date(sched), "Sun, 06 Nov 2011 01:00:00 GMT");
        let text = include_str!(
            "../../tests/fixtures/servicebus.BrokerProperties.send-message.docs-example.json"
        );
        let p = BrokerProps::from_header(text).expect("fixture parses");
        assert_eq!(p.label.as_deref(), Some("M1"));
        assert_eq!(p.time_to_live, Some(10.0));
    }

    #[test]
    fn broker_properties_errors() {
        assert!(matches!(
            BrokerProps::from_header("{"),
            Err(PropsError::NotJson(_))
        ));
        assert!(matches!(
            BrokerProps::from_header("[]"),
            Err(PropsError::NotJson(_))
        ));
        assert!(matches!(
            BrokerProps::from_header(r#"{"ScheduledEnqueueTimeUtc":"tomorrow"}"#),
            Err(PropsError::BadDate(_))
        ));
        assert_eq!(
            BrokerProps::from_header(r#"{"TimeToLive":-1}"#),
            Err(PropsError::BadValue("TimeToLive"))
        );
        assert_eq!(
            BrokerProps::from_header(r#"{"SessionId":"a","PartitionKey":"b"}"#),
            Err(PropsError::SessionPartitionMismatch)
        );
        let long = "x".repeat(129);
        assert!(BrokerProps::from_header(&format!(r#"{{"MessageId":"{long}"}}"#)).is_err());
        // unknown keys are ignored
        assert!(BrokerProps::from_header(r#"{"State":"Active","Foo":1}"#).is_ok());
    }
}
