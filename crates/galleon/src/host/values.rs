//! Undoes the Functions host's value encoding: strings JSON-encoded inside strings, numbers as strings,
//! zoneless `...Utc` timestamps, base64 bytes (shared/reference/functions-protocol.md §2.3).

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::Value;

/// The text a host-encoded string value stands for.
///
/// The host sends a string `abc` as the JSON string `"\"abc\""`; hand-written samples and some bindings send it
/// plain. Both decode to `abc`. A string whose content parses as a JSON *string* is unwrapped once; anything else
/// (including text that is a JSON object, such as a message body) is returned as it is.
pub fn unquote(raw: &str) -> String {
    let trimmed = raw.trim_start();
    if trimmed.starts_with('"')
        && let Ok(Value::String(inner)) = serde_json::from_str::<Value>(raw)
    {
        return inner;
    }
    raw.to_owned()
}

/// A metadata value as text: unquoted strings, numbers and booleans rendered as text; `None` for null,
/// objects and arrays.
pub fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(unquote(s)),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A metadata integer: the host sends `"1"`; samples send `1`; a doubly quoted `"\"1\""` is tolerated too.
pub fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(_) => text(value)?.trim().parse().ok(),
        _ => None,
    }
}

/// A metadata timestamp as UTC: RFC 3339 with a zone or fraction, or the host's zoneless
/// `2023-10-12T20:13:49` (a `DateTime` rendered without its zone; the host's clock is UTC).
pub fn timestamp(value: &Value) -> Option<DateTime<Utc>> {
    let s = text(value)?;
    if let Ok(t) = DateTime::parse_from_rfc3339(&s) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(&s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|naive| naive.and_utc())
}

/// A value that may be a JSON document sent as text (a message body, or an event the host passed as a string).
/// Objects and arrays pass through; strings are unquoted and parsed when they hold JSON.
pub fn json_document(value: &Value) -> Result<Value, serde_json::Error> {
    match value {
        Value::String(s) => serde_json::from_str(&unquote(s)),
        other => Ok(other.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unquote_table() {
        let cases = [
            ("\"aaaaa\"", "aaaaa"),
            ("aaaaa", "aaaaa"),
            ("{\"a\":1}", "{\"a\":1}"),
            ("\"{\\\"a\\\":1}\"", "{\"a\":1}"),
            ("\"\"", ""),
            ("\"unterminated", "\"unterminated"),
            ("42", "42"),
        ];
        for (raw, want) in cases {
            assert_eq!(unquote(raw), want, "unquote({raw:?})");
        }
    }

    #[test]
    fn integers_arrive_as_strings() {
        assert_eq!(integer(&json!("1")), Some(1));
        assert_eq!(integer(&json!(7)), Some(7));
        assert_eq!(integer(&json!("\"3\"")), Some(3));
        assert_eq!(integer(&json!("one")), None);
        assert_eq!(integer(&json!({})), None);
    }

    #[test]
    fn timestamps_zoneless_and_zoned() {
        let zoneless = timestamp(&json!("2023-10-12T20:13:49")).map(|t| t.to_rfc3339());
        assert_eq!(zoneless.as_deref(), Some("2023-10-12T20:13:49+00:00"));
        let offset = timestamp(&json!("2023-10-12T20:13:49+00:00")).map(|t| t.to_rfc3339());
        assert_eq!(offset.as_deref(), Some("2023-10-12T20:13:49+00:00"));
        let fraction =
            timestamp(&json!("2023-10-12T20:13:49.640002Z")).map(|t| t.timestamp_micros());
        assert_eq!(fraction, Some(1_697_141_629_640_002));
        assert_eq!(timestamp(&json!("yesterday")), None);
    }

    #[test]
    fn documents_inside_strings() {
        assert_eq!(
            json_document(&json!("{\"a\":1}")).ok(),
            Some(json!({"a": 1}))
        );
        assert_eq!(
            json_document(&json!("\"{\\\"a\\\":1}\"")).ok(),
            Some(json!({"a": 1}))
        );
        assert_eq!(json_document(&json!({"a": 1})).ok(), Some(json!({"a": 1})));
        assert!(json_document(&json!("not json")).is_err());
    }
}
