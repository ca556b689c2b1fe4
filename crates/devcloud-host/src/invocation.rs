//! Builds the invocation body `{"Data":…,"Metadata":…}` for each trigger, and reads the
//! handler's `{"Outputs","Logs","ReturnValue"}` answer (functions-protocol.md §2, §3).

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::encoding::{BindingData, HostValue, encode, newtonsoft_utc, sys};
use crate::servicebus::ReceivedMessage;

/// Per-invocation values the host makes up (fixed in tests).
#[derive(Debug, Clone)]
pub struct InvocationContext {
    pub function: String,
    pub utc_now: DateTime<Utc>,
    pub rand_guid: uuid::Uuid,
}

impl InvocationContext {
    pub fn new(function: &str) -> Self {
        Self {
            function: function.to_string(),
            utc_now: Utc::now(),
            rand_guid: uuid::Uuid::new_v4(),
        }
    }

    fn sys(&self) -> Value {
        sys(&self.function, &self.utc_now, &self.rand_guid)
    }
}

fn envelope(data: Map<String, Value>, metadata: Map<String, Value>) -> Value {
    json!({ "Data": data, "Metadata": metadata })
}

/// serviceBusTrigger: the body as text (double-encoded) or base64 for `dataType: binary`.
pub fn service_bus(
    ctx: &InvocationContext,
    binding: &str,
    msg: &ReceivedMessage,
    fqns: &str,
    binary: bool,
) -> Value {
    let mut bd = msg.binding_data(fqns);
    let trigger_value = if binary {
        HostValue::Bytes(msg.body.to_vec())
    } else {
        let text = String::from_utf8_lossy(&msg.body).into_owned();
        bd.apply_body(&text);
        HostValue::Str(text)
    };
    let mut data = Map::new();
    if let Some(v) = encode(&trigger_value) {
        data.insert(binding.to_string(), v);
    }
    envelope(data, bd.to_metadata(ctx.sys()))
}

/// The timer's persisted schedule status (`useMonitor`).
#[derive(Debug, Clone, Copy)]
pub struct ScheduleStatus {
    pub last: DateTime<Utc>,
    pub next: DateTime<Utc>,
    pub last_updated: DateTime<Utc>,
}

/// timerTrigger: `{"Schedule":{"AdjustForDST":true},"ScheduleStatus":…,"IsPastDue":…}`, Metadata = sys only.
pub fn timer(
    ctx: &InvocationContext,
    binding: &str,
    status: Option<ScheduleStatus>,
    is_past_due: bool,
) -> Value {
    let status = match status {
        Some(s) => json!({
            "Last": newtonsoft_utc(&s.last),
            "Next": newtonsoft_utc(&s.next),
            "LastUpdated": newtonsoft_utc(&s.last_updated),
        }),
        None => Value::Null,
    };
    let mut data = Map::new();
    data.insert(
        binding.to_string(),
        json!({"Schedule": {"AdjustForDST": true}, "ScheduleStatus": status, "IsPastDue": is_past_due}),
    );
    envelope(data, BindingData::new().to_metadata(ctx.sys()))
}

/// `Metadata.RetryContext` when a retry policy applies: the attempt number (0 first), the
/// policy's maximum, and the previous attempt's failure (Exception shape simplified to
/// `{"Message": …}`; the real host serialises a .NET exception there).
pub fn retry_context(
    retry_count: u32,
    max_retry_count: i64,
    previous_error: Option<&str>,
) -> Value {
    json!({
        "RetryCount": retry_count,
        "MaxRetryCount": max_retry_count,
        "Exception": previous_error.map(|m| json!({"Message": m})),
    })
}

/// eventGridTrigger: the event object as delivered; Metadata `data` = the event's data.
pub fn event_grid(ctx: &InvocationContext, binding: &str, event: &Value) -> Value {
    let mut bd = BindingData::new();
    let data = event.get("data").cloned().unwrap_or(Value::Null);
    bd.set(
        "data",
        match data {
            Value::String(s) => HostValue::Str(s),
            other => HostValue::Json(other),
        },
    );
    let mut d = Map::new();
    d.insert(binding.to_string(), event.clone());
    envelope(d, bd.to_metadata(ctx.sys()))
}

/// An HTTP request as the httpTrigger sees it.
#[derive(Debug, Clone, Default)]
pub struct HttpRequestData {
    pub url: String,
    pub method: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub params: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequestData {
    fn content_type(&self) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.as_str())
    }
}

/// The anonymous ClaimsIdentity the host always lists.
fn anonymous_identity() -> Value {
    json!({
        "AuthenticationType": null,
        "IsAuthenticated": false,
        "Actor": null,
        "BootstrapContext": null,
        "Claims": [],
        "Label": null,
        "Name": null,
        "NameClaimType": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
        "RoleClaimType": "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
    })
}

/// httpTrigger (envelope mode): `Data.<name>` = Url/Method/Query/Headers/Params/Identities/Body.
pub fn http(ctx: &InvocationContext, binding: &str, req: &HttpRequestData) -> Value {
    let mut query = Map::new();
    for (k, v) in &req.query {
        match query.get_mut(k) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(v);
            }
            _ => {
                query.insert(k.clone(), Value::String(v.clone()));
            }
        }
    }
    let mut headers: Vec<(String, Vec<String>)> = Vec::new();
    for (k, v) in &req.headers {
        match headers.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(k)) {
            Some((_, vals)) => vals.push(v.clone()),
            None => headers.push((k.clone(), vec![v.clone()])),
        }
    }
    let data_headers: Map<String, Value> =
        headers.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    let meta_headers: Map<String, Value> = headers
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.join(","))))
        .collect();
    let params: Map<String, Value> = req
        .params
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let binary = req.content_type().is_some_and(|ct| {
        let ct = ct.to_ascii_lowercase();
        ct.starts_with("application/octet-stream") || ct.starts_with("multipart/")
    });
    let body = if binary {
        base64::engine::general_purpose::STANDARD.encode(&req.body)
    } else {
        String::from_utf8_lossy(&req.body).into_owned()
    };
    let mut data = Map::new();
    data.insert(
        binding.to_string(),
        json!({
            "Url": req.url,
            "Method": req.method,
            "Query": query,
            "Headers": data_headers,
            "Params": params,
            "Identities": [anonymous_identity()],
            "Body": body,
        }),
    );
    let mut bd = BindingData::new();
    bd.set("Query", HostValue::Json(Value::Object(query)));
    bd.set("Headers", HostValue::Json(Value::Object(meta_headers)));
    for (k, v) in &req.params {
        bd.set(k, HostValue::Str(v.clone()));
    }
    envelope(data, bd.to_metadata(ctx.sys()))
}

/// The handler's answer, property names matched case-insensitively like Json.NET.
#[derive(Debug, Clone, Default)]
pub struct HandlerResult {
    pub outputs: Map<String, Value>,
    pub logs: Vec<String>,
    pub return_value: Option<Value>,
}

impl HandlerResult {
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| format!("Invalid HttpResponseMessage: body is not JSON ({e})"))?;
        let Value::Object(obj) = v else {
            return Err("Invalid HttpResponseMessage: body is not a JSON object".into());
        };
        let get = |name: &str| {
            obj.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let outputs = match get("Outputs") {
            Some(Value::Object(o)) => o,
            None | Some(Value::Null) => Map::new(),
            Some(_) => return Err("Invalid HttpResponseMessage: Outputs is not an object".into()),
        };
        let logs = match get("Logs") {
            Some(Value::Array(a)) => a
                .into_iter()
                .map(|l| match l {
                    Value::String(s) => s,
                    other => other.to_string(),
                })
                .collect(),
            _ => Vec::new(),
        };
        let return_value = get("ReturnValue").filter(|v| !v.is_null());
        Ok(Self {
            outputs,
            logs,
            return_value,
        })
    }

    /// The value for an output binding: `$return` ← ReturnValue, others ← Outputs[name] (exact).
    pub fn output(&self, binding: &str) -> Option<&Value> {
        if binding == "$return" {
            self.return_value.as_ref()
        } else {
            self.outputs.get(binding).filter(|v| !v.is_null())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_handler_results() {
        let r = HandlerResult::parse(br#"{"outputs":{"res":{"body":"x"},"n":null},"logs":["a",1],"returnValue":"{\"hello\":\"world\"}"}"#).unwrap();
        assert_eq!(r.output("res"), Some(&json!({"body":"x"})));
        assert_eq!(r.output("n"), None);
        assert_eq!(r.output("RES"), None);
        assert_eq!(r.logs, vec!["a", "1"]);
        assert_eq!(r.output("$return"), Some(&json!("{\"hello\":\"world\"}")));
        let empty =
            HandlerResult::parse(br#"{"Outputs":null,"Logs":null,"ReturnValue":null}"#).unwrap();
        assert!(empty.outputs.is_empty() && empty.return_value.is_none());
        assert!(HandlerResult::parse(b"not json").is_err());
        assert!(HandlerResult::parse(b"[1]").is_err());
    }
}
