//! Turning handler output values into what the host writes (§3.3 conversions) and writing
//! them: Service Bus messages (REST send) and Event Grid events (topic publish).

use base64::Engine as _;
use serde_json::Value;

/// `Convert.FromBase64String` acceptance: whitespace ignored, length multiple of 4, valid alphabet.
pub fn strict_base64(s: &str) -> Option<Vec<u8>> {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !compact.len().is_multiple_of(4) {
        return None;
    }
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .ok()
}

fn text_of(v: &Value) -> Vec<u8> {
    match v {
        Value::String(s) => s.as_bytes().to_vec(),
        // Json.NET JToken.ToString(): indented JSON.
        Value::Object(_) | Value::Array(_) => serde_json::to_string_pretty(v)
            .unwrap_or_default()
            .into_bytes(),
        other => other.to_string().into_bytes(),
    }
}

/// Collector outputs (serviceBus, queue): an array (or a string holding one) is one item per
/// element; other values are one item. Non-binary strings that are valid base64 are decoded.
pub fn collector_items(value: &Value, binary: bool) -> Vec<Vec<u8>> {
    match value {
        Value::Null => Vec::new(),
        Value::Array(a) => a.iter().filter(|v| !v.is_null()).map(text_of).collect(),
        Value::String(s) => {
            let t = s.trim();
            if t.starts_with('[')
                && t.ends_with(']')
                && let Ok(Value::Array(a)) = serde_json::from_str::<Value>(t)
            {
                return a.iter().filter(|v| !v.is_null()).map(text_of).collect();
            }
            if !binary && let Some(bytes) = strict_base64(s) {
                return vec![bytes];
            }
            vec![s.as_bytes().to_vec()]
        }
        other => vec![text_of(other)],
    }
}

/// Event Grid outputs: every element must be a complete event (objects, or strings holding one).
pub fn event_items(value: &Value) -> Result<Vec<Value>, String> {
    let parse = |v: &Value| -> Result<Value, String> {
        match v {
            Value::Object(_) => Ok(v.clone()),
            Value::String(s) => match serde_json::from_str::<Value>(s) {
                Ok(o @ Value::Object(_)) => Ok(o),
                _ => Err(format!("event output {s:?} is not a JSON event object")),
            },
            other => Err(format!("event output {other} is not an event object")),
        }
    };
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Array(a) => a.iter().filter(|v| !v.is_null()).map(parse).collect(),
        Value::String(s) if s.trim_start().starts_with('[') => match serde_json::from_str(s) {
            Ok(Value::Array(a)) => a.iter().map(parse).collect(),
            _ => Err("event output string is not a JSON array".into()),
        },
        other => Ok(vec![parse(other)?]),
    }
}

/// The first event decides: Event Grid schema when it has the EventGridEvent fields.
pub fn is_event_grid_schema(event: &Value) -> bool {
    ["id", "subject", "eventType", "eventTime", "dataVersion"]
        .iter()
        .all(|k| event.get(k).is_some())
}

/// Publish events to a topic endpoint with `aeg-sas-key` or a bearer token.
pub async fn publish_events(
    http: &reqwest::Client,
    tokens: &crate::auth::TokenSource,
    endpoint: &str,
    key: Option<&str>,
    events: Vec<Value>,
) -> anyhow::Result<()> {
    use anyhow::{Context, bail};
    let Some(first) = events.first() else {
        return Ok(());
    };
    let eg = is_event_grid_schema(first);
    let url = if endpoint.contains('?') {
        endpoint.to_string()
    } else {
        format!("{endpoint}?api-version=2018-01-01")
    };
    let mut req = http.post(&url);
    req = if eg {
        req.header("Content-Type", "application/json")
    } else {
        req.header(
            "Content-Type",
            "application/cloudevents-batch+json; charset=utf-8",
        )
    };
    req = match key {
        Some(k) => req.header("aeg-sas-key", k),
        None => req.header(
            "Authorization",
            format!(
                "Bearer {}",
                tokens.token("https://eventgrid.azure.net").await?
            ),
        ),
    };
    let body = serde_json::to_vec(&Value::Array(events)).context("serialising events")?;
    let resp = req
        .body(body)
        .send()
        .await
        .with_context(|| format!("publishing events to {endpoint} failed"))?;
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        bail!(
            "publishing events to {endpoint}: HTTP {status}: {}",
            text.chars().take(300).collect::<String>()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn collector_conversion_table() {
        let cases: Vec<(Value, bool, Vec<&[u8]>)> = vec![
            (json!(["a b", "c-d"]), false, vec![b"a b", b"c-d"]),
            (json!("[\"x y\",2]"), false, vec![b"x y", b"2"]),
            (json!("done"), false, vec![&[0x76, 0x89, 0xde]]),
            (json!("done"), true, vec![b"done"]),
            (json!("{\"a\":1}"), false, vec![b"{\"a\":1}"]),
            (json!({"a": 1}), false, vec![b"{\n  \"a\": 1\n}"]),
            (json!("hello world"), false, vec![b"hello world"]),
            (Value::Null, false, vec![]),
        ];
        for (v, binary, want) in cases {
            let got = collector_items(&v, binary);
            let want: Vec<Vec<u8>> = want.into_iter().map(|w| w.to_vec()).collect();
            assert_eq!(got, want, "{v}");
        }
    }

    #[test]
    fn event_conversion_and_schema() {
        let eg = json!({"id":"1","subject":"s","eventType":"t","eventTime":"2024-01-01T00:00:00Z","dataVersion":"1","data":{}});
        let ce = json!({"id":"1","source":"s","type":"t","specversion":"1.0"});
        assert!(is_event_grid_schema(&eg));
        assert!(!is_event_grid_schema(&ce));
        assert_eq!(
            event_items(&json!([eg.clone(), ce.to_string()])).unwrap(),
            vec![eg.clone(), ce.clone()]
        );
        assert_eq!(event_items(&ce).unwrap(), vec![ce]);
        assert!(event_items(&json!("nope")).is_err());
        assert!(event_items(&json!([1])).is_err());
    }
}
