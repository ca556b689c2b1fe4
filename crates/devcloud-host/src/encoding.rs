//! How the Functions host encodes binding values in a custom-handler invocation body
//! (`GetHttpScriptInvocationContextValue`, `Utility.ApplyBindingData`; functions-protocol.md §2.3).

use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

/// A host-side value before the host turns it into JSON for the handler.
#[derive(Debug, Clone, PartialEq)]
pub enum HostValue {
    /// A .NET `string` (delivered as its JSON text inside a JSON string).
    Str(String),
    /// An integer (delivered as its decimal text).
    Int(i64),
    /// A boolean (delivered as `"true"`/`"false"`).
    Bool(bool),
    /// A `Guid` (delivered like a string).
    Guid(uuid::Uuid),
    /// A `DateTime` (delivered zoneless, seconds precision).
    DateTime(DateTime<Utc>),
    /// A `DateTimeOffset` (delivered with `+00:00`, seconds precision).
    DateTimeOffset(DateTime<Utc>),
    /// `byte[]` (delivered as base64).
    Bytes(Vec<u8>),
    /// A POCO / dictionary / JObject: delivered as the JSON value itself when it is an object,
    /// otherwise (arrays, scalars) as its JSON text.
    Json(Value),
    /// A value the host drops (null binding data).
    Null,
}

/// Encode one value exactly as the host does for the HTTP worker.
pub fn encode(value: &HostValue) -> Option<Value> {
    Some(match value {
        HostValue::Null => return None,
        HostValue::Str(s) => Value::String(json_text(&Value::String(s.clone()))),
        HostValue::Int(n) => Value::String(n.to_string()),
        HostValue::Bool(b) => Value::String(b.to_string()),
        HostValue::Guid(g) => Value::String(format!("\"{g}\"")),
        HostValue::DateTime(t) => Value::String(t.format("%Y-%m-%dT%H:%M:%S").to_string()),
        HostValue::DateTimeOffset(t) => {
            Value::String(t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string())
        }
        HostValue::Bytes(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        HostValue::Json(v @ Value::Object(_)) => v.clone(),
        HostValue::Json(Value::Null) => return None,
        HostValue::Json(v) => Value::String(json_text(v)),
    })
}

fn json_text(v: &Value) -> String {
    // Serialising a serde_json::Value cannot fail.
    serde_json::to_string(v).unwrap_or_default()
}

/// Newtonsoft's default `DateTime` format for a UTC value (`sys.UtcNow`, timer status):
/// 7 fractional digits with trailing zeros trimmed, `Z` suffix.
pub fn newtonsoft_utc(t: &DateTime<Utc>) -> String {
    let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let ticks = t.timestamp_subsec_nanos() / 100;
    let mut frac = format!("{ticks:07}");
    while frac.ends_with('0') {
        frac.pop();
    }
    if frac.is_empty() {
        format!("{base}Z")
    } else {
        format!("{base}.{frac}Z")
    }
}

/// The `sys` metadata object of every invocation.
pub fn sys(method_name: &str, utc_now: &DateTime<Utc>, rand_guid: &uuid::Uuid) -> Value {
    serde_json::json!({
        "MethodName": method_name,
        "UtcNow": newtonsoft_utc(utc_now),
        "RandGuid": rand_guid.to_string(),
    })
}

/// Binding data as the host keeps it: an ordered, case-insensitive dictionary.
#[derive(Debug, Default, Clone)]
pub struct BindingData {
    entries: Vec<(String, HostValue)>,
}

impl BindingData {
    pub fn new() -> Self {
        Self::default()
    }

    /// `bindingData[key] = value` with a case-insensitive comparer: an existing key keeps its spelling.
    pub fn set(&mut self, key: &str, value: HostValue) {
        if let Some(slot) = self
            .entries
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
        {
            slot.1 = value;
        } else {
            self.entries.push((key.to_string(), value));
        }
    }

    pub fn get(&self, key: &str) -> Option<&HostValue> {
        self.entries
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    }

    /// `Utility.ApplyBindingData`: when the trigger value is a string holding a JSON object, its
    /// top-level non-array properties become binding data, overwriting same-named keys.
    /// Scalars go through `(string)JValue` (numbers as text, booleans `True`/`False`, ISO dates
    /// re-read by Json.NET and printed in invariant culture); objects stay objects.
    pub fn apply_body(&mut self, body: &str) {
        let trimmed = body.trim();
        if !(trimmed.starts_with('{') && trimmed.ends_with('}')) {
            return;
        }
        let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(trimmed) else {
            return;
        };
        for (k, v) in obj {
            let hv = match v {
                Value::Array(_) | Value::Null => continue,
                Value::Object(_) => HostValue::Json(v),
                Value::String(s) => HostValue::Str(jvalue_string_text(&s)),
                Value::Bool(b) => HostValue::Str(if b { "True" } else { "False" }.to_string()),
                Value::Number(n) => HostValue::Str(n.to_string()),
            };
            self.set(&k, hv);
        }
    }

    /// The `Metadata` object: nulls dropped, keys ending in "trigger" dropped, `sys` added.
    pub fn to_metadata(&self, sys: Value) -> Map<String, Value> {
        let mut out = Map::new();
        for (k, v) in &self.entries {
            if k.to_ascii_lowercase().ends_with("trigger") {
                continue;
            }
            if let Some(enc) = encode(v) {
                out.insert(k.clone(), enc);
            }
        }
        out.insert("sys".to_string(), sys);
        out
    }
}

/// Json.NET parses ISO-8601 looking strings as `DateTime` (DateParseHandling.DateTime); a cast
/// back to string then prints `MM/dd/yyyy HH:mm:ss` (invariant culture). Other strings are unchanged.
fn jvalue_string_text(s: &str) -> String {
    match DateTime::parse_from_rfc3339(s) {
        Ok(t) if s.len() >= 20 && s.as_bytes().get(10) == Some(&b'T') => {
            let t = t.with_timezone(&Utc);
            t.format("%m/%d/%Y %H:%M:%S").to_string()
        }
        _ => s.to_string(),
    }
}

/// Parse the ISO timestamps other components hand us (RFC 3339, or zoneless = UTC).
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = DateTime::parse_from_rfc2822(s) {
        return Some(t.with_timezone(&Utc));
    }
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|n| n.and_utc())
}

/// RFC 3339 with `Z`, for logs and the admin API.
pub fn iso(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn t() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2023, 10, 12, 20, 13, 49)
            .single()
            .unwrap()
            + chrono::Duration::nanoseconds(640_002_000)
    }

    #[test]
    fn value_table() {
        let g = uuid::Uuid::parse_str("4e773554-f6b7-4ea2-b07d-4c5fd5aba741").unwrap();
        let cases: Vec<(HostValue, Option<Value>)> = vec![
            (HostValue::Str("aaaaa".into()), Some(json!("\"aaaaa\""))),
            (
                HostValue::Str("{\"a\":1}".into()),
                Some(json!("\"{\\\"a\\\":1}\"")),
            ),
            (
                HostValue::Str("https://x/y".into()),
                Some(json!("\"https://x/y\"")),
            ),
            (HostValue::Int(1), Some(json!("1"))),
            (HostValue::Bool(false), Some(json!("false"))),
            (
                HostValue::Guid(g),
                Some(json!("\"4e773554-f6b7-4ea2-b07d-4c5fd5aba741\"")),
            ),
            (HostValue::DateTime(t()), Some(json!("2023-10-12T20:13:49"))),
            (
                HostValue::DateTimeOffset(t()),
                Some(json!("2023-10-12T20:13:49+00:00")),
            ),
            (
                HostValue::Bytes(b"hello from byte\n".to_vec()),
                Some(json!("aGVsbG8gZnJvbSBieXRlCg==")),
            ),
            (HostValue::Json(json!({"a": [1]})), Some(json!({"a": [1]}))),
            (HostValue::Json(json!([1, "x"])), Some(json!("[1,\"x\"]"))),
            (HostValue::Json(json!("s")), Some(json!("\"s\""))),
            (HostValue::Json(Value::Null), None),
            (HostValue::Null, None),
        ];
        for (input, want) in cases {
            assert_eq!(encode(&input), want, "{input:?}");
        }
    }

    #[test]
    fn utc_now_format() {
        assert_eq!(newtonsoft_utc(&t()), "2023-10-12T20:13:49.640002Z");
        let whole = Utc.with_ymd_and_hms(2023, 1, 2, 3, 4, 5).single().unwrap();
        assert_eq!(newtonsoft_utc(&whole), "2023-01-02T03:04:05Z");
        let seven = whole + chrono::Duration::nanoseconds(485_061_600);
        assert_eq!(newtonsoft_utc(&seven), "2023-01-02T03:04:05.4850616Z");
    }

    #[test]
    fn body_leaks_into_metadata_case_insensitively() {
        let mut bd = BindingData::new();
        bd.set("MessageId", HostValue::Str("broker".into()));
        bd.set("DeliveryCount", HostValue::Int(3));
        bd.set("QueueTrigger", HostValue::Str("x".into()));
        bd.set("Gone", HostValue::Null);
        bd.apply_body(
            r#"{"messageId":"body","n":2,"ok":true,"nested":{"a":1},"list":[1],"nil":null,"at":"2023-10-12T20:13:49.64Z"}"#,
        );
        let md = bd.to_metadata(json!({}));
        assert_eq!(md["MessageId"], json!("\"body\""));
        assert!(!md.contains_key("messageId"));
        assert_eq!(md["DeliveryCount"], json!("3"));
        assert_eq!(md["n"], json!("\"2\""));
        assert_eq!(md["ok"], json!("\"True\""));
        assert_eq!(md["nested"], json!({"a": 1}));
        assert_eq!(md["at"], json!("\"10/12/2023 20:13:49\""));
        for absent in ["list", "nil", "QueueTrigger", "Gone"] {
            assert!(!md.contains_key(absent), "{absent}");
        }
        assert_eq!(md["sys"], json!({}));
    }

    #[test]
    fn non_object_bodies_do_not_leak() {
        let mut bd = BindingData::new();
        for body in ["[1,2]", "plain", "{not json}", "\"{}\""] {
            bd.apply_body(body);
        }
        assert!(bd.to_metadata(json!({})).len() == 1);
    }

    #[test]
    fn parse_times() {
        assert_eq!(parse_time("2023-10-12T20:13:49.640002Z"), Some(t()));
        assert_eq!(parse_time("2023-10-12T20:13:49.640002"), Some(t()));
        assert!(parse_time("Thu, 12 Oct 2023 20:13:49 GMT").is_some());
        assert!(parse_time("nope").is_none());
    }
}
