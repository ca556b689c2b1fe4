//! Resource events, as ARM hands them to Event Grid: a `Microsoft.Resources.Resource{Write,Delete,
//! Action}{Success,Failure,Cancel}` for every write, delete and action once it ends, given to a sink.
//!
//! Operations are tracked from their start ([`crate::handlers::Ctx::start_op`]) and a background
//! task emits their event when their status turns terminal (the state itself never ticks); writes
//! that end at once (resource groups, managed images a run distributes) are emitted as they happen.
//! Nothing is tracked until a sink is set ([`Arm::set_event_sink`]).

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::model::{OpStatus, Operation, Time, Verb};

/// An event of the resource group system topic, in the Event Grid schema's terms.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceEvent {
    pub id: String,
    /// `Microsoft.Resources.ResourceWriteSuccess`, …
    pub event_type: String,
    /// The system topic: `/subscriptions/{s}/resourceGroups/{rg}` (`/subscriptions/{s}` outside a group).
    pub topic: String,
    /// The resource id.
    pub subject: String,
    pub time: Time,
    /// `authorization`, `claims`, `correlationId`, `httpRequest`, `operationName`, …
    pub data: Value,
}

impl ResourceEvent {
    /// The event in the Event Grid schema (`dataVersion` 2, as Azure sends resource events).
    pub fn to_event_grid(&self) -> Value {
        json!({
            "id": self.id,
            "topic": self.topic,
            "subject": self.subject,
            "eventType": self.event_type,
            "eventTime": event_time(self.time),
            "data": self.data,
            "dataVersion": "2",
            "metadataVersion": "1",
        })
    }
}

/// Event Grid's timestamp (7 fractional digits).
fn event_time(t: Time) -> String {
    use chrono::Timelike;
    let ticks = (t.nanosecond() % 1_000_000_000) / 100;
    format!("{}.{ticks:07}Z", t.format("%Y-%m-%dT%H:%M:%S"))
}

/// Where events go (`devcloud` hands them to the local Event Grid). Called from a background task,
/// never while the simulator's state is locked.
pub type EventSink = Arc<dyn Fn(ResourceEvent) + Send + Sync>;

/// The request an event tells of (`httpRequest`, `claims`, `correlationId`).
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    pub method: String,
    pub url: String,
    pub client_request_id: String,
    pub correlation_id: String,
    pub client_ip: String,
    /// The caller's token claims, every value as a string (as Azure shows them).
    pub claims: Map<String, Value>,
    /// The action of a POST (`run`, `cancel`): its last path segment.
    pub action: Option<String>,
}

impl RequestInfo {
    /// The request Image Builder makes to write a resource a run distributes (a PUT of its id), on
    /// behalf of the run's request (INVENTED: its claims and correlation id are the run's).
    pub fn on_behalf_of(run: &RequestInfo, resource_id: &str) -> RequestInfo {
        let base = run
            .url
            .find("/subscriptions/")
            .map_or("", |i| &run.url[..i]);
        RequestInfo {
            method: "PUT".into(),
            url: format!("{base}{resource_id}"),
            client_request_id: uuid::Uuid::new_v4().to_string(),
            correlation_id: run.correlation_id.clone(),
            client_ip: run.client_ip.clone(),
            claims: run.claims.clone(),
            action: None,
        }
    }
}

/// The claims of a bearer token (already verified by the server), every value as a string.
pub(crate) fn claims(authorization: &str) -> Map<String, Value> {
    let token = authorization
        .strip_prefix("Bearer ")
        .or_else(|| authorization.strip_prefix("bearer "))
        .unwrap_or("");
    let payload = token.split('.').nth(1).unwrap_or("");
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()
        .and_then(|b| serde_json::from_slice::<Map<String, Value>>(&b).ok())
        .unwrap_or_default();
    decoded
        .into_iter()
        .map(|(k, v)| {
            let s = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (k, Value::String(s))
        })
        .collect()
}

/// One tracked operation, or an event ready to go.
pub(crate) enum Pending {
    Op {
        op_id: String,
        resource_id: String,
        request: RequestInfo,
    },
    Ready(ResourceEvent),
}

/// The sink and what waits to be emitted.
#[derive(Default)]
pub struct Events {
    pub(crate) sink: OnceLock<EventSink>,
    pub(crate) pending: Mutex<Vec<Pending>>,
    pub(crate) wake: tokio::sync::Notify,
}

/// How often tracked operations are looked at while any is pending.
pub(crate) const POLL: Duration = Duration::from_millis(50);

impl Events {
    /// Whether a sink is set (nothing is tracked before).
    pub fn enabled(&self) -> bool {
        self.sink.get().is_some()
    }

    fn push(&self, p: Pending) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(p);
        self.wake.notify_one();
    }

    /// Tracks an operation started by `request`: its event goes out when it ends.
    pub fn track(&self, op: &Operation, resource_id: &str, request: RequestInfo) {
        if self.enabled() {
            self.push(Pending::Op {
                op_id: op.id.clone(),
                resource_id: resource_id.to_string(),
                request,
            });
        }
    }

    /// The request of a tracked operation still running (an Image Builder run), if any.
    pub fn request_of(&self, op_id: &str) -> Option<RequestInfo> {
        let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.iter().find_map(|p| match p {
            Pending::Op {
                op_id: id, request, ..
            } if id == op_id => Some(request.clone()),
            _ => None,
        })
    }

    /// Emits the event of a write, delete or action that ended at once.
    pub fn emit(
        &self,
        tenant: &str,
        subscription: &str,
        resource_id: &str,
        (verb, status): (Verb, OpStatus),
        request: &RequestInfo,
    ) {
        if self.enabled() {
            let e = build(
                tenant,
                subscription,
                resource_id,
                (verb, status, chrono::Utc::now()),
                request,
            );
            self.push(Pending::Ready(e));
        }
    }
}

/// The resource type of an id: `Microsoft.Compute/galleries/images` for a gallery image,
/// `Microsoft.Resources/subscriptions/resourceGroups` for a group.
pub fn resource_type(id: &str) -> String {
    let segs: Vec<&str> = id.trim_matches('/').split('/').collect();
    let Some(p) = segs
        .iter()
        .position(|s| s.eq_ignore_ascii_case("providers"))
    else {
        return "Microsoft.Resources/subscriptions/resourceGroups".into();
    };
    let rest = &segs[p + 1..];
    let mut out = vec![*rest.first().unwrap_or(&"")];
    out.extend(rest.iter().skip(1).step_by(2));
    out.join("/")
}

/// `{type}/write`, `{type}/delete` or `{type}/{action}/action`.
pub fn operation_name(resource_id: &str, verb: Verb, action: Option<&str>) -> String {
    let t = resource_type(resource_id);
    match verb {
        Verb::Create | Verb::Update => format!("{t}/write"),
        Verb::Delete => format!("{t}/delete"),
        Verb::Action => format!("{t}/{}/action", action.unwrap_or("action")),
    }
}

/// The event type for what ended how.
pub fn event_type(verb: Verb, status: OpStatus) -> &'static str {
    match (verb, status) {
        (Verb::Create | Verb::Update, OpStatus::Succeeded) => {
            "Microsoft.Resources.ResourceWriteSuccess"
        }
        (Verb::Create | Verb::Update, OpStatus::Canceled) => {
            "Microsoft.Resources.ResourceWriteCancel"
        }
        (Verb::Create | Verb::Update, _) => "Microsoft.Resources.ResourceWriteFailure",
        (Verb::Delete, OpStatus::Succeeded) => "Microsoft.Resources.ResourceDeleteSuccess",
        (Verb::Delete, OpStatus::Canceled) => "Microsoft.Resources.ResourceDeleteCancel",
        (Verb::Delete, _) => "Microsoft.Resources.ResourceDeleteFailure",
        (Verb::Action, OpStatus::Succeeded) => "Microsoft.Resources.ResourceActionSuccess",
        (Verb::Action, OpStatus::Canceled) => "Microsoft.Resources.ResourceActionCancel",
        (Verb::Action, _) => "Microsoft.Resources.ResourceActionFailure",
    }
}

/// The resource group named in an id (`None` for a subscription-level id).
fn resource_group(id: &str) -> Option<&str> {
    let segs: Vec<&str> = id.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        [s, _, rg, name, ..] if s.eq_ignore_ascii_case("subscriptions") => {
            rg.eq_ignore_ascii_case("resourceGroups").then_some(*name)
        }
        _ => None,
    }
}

pub(crate) fn build(
    tenant: &str,
    subscription: &str,
    resource_id: &str,
    (verb, status, time): (Verb, OpStatus, Time),
    request: &RequestInfo,
) -> ResourceEvent {
    let operation = operation_name(resource_id, verb, request.action.as_deref());
    let provider = operation.split('/').next().unwrap_or("").to_string();
    let rg = resource_group(resource_id);
    let topic = match rg {
        Some(rg) => format!("/subscriptions/{subscription}/resourceGroups/{rg}"),
        None => format!("/subscriptions/{subscription}"),
    };
    let principal = request
        .claims
        .get("oid")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let data = json!({
        // INVENTED evidence: devcloud has no role assignments; its identity acts as an Owner.
        "authorization": {"scope": resource_id, "action": operation,
            "evidence": {"role": "Owner", "roleAssignmentScope": format!("/subscriptions/{subscription}"),
                "principalId": principal, "principalType": "ServicePrincipal"}},
        "claims": request.claims,
        "correlationId": request.correlation_id,
        "httpRequest": {"clientRequestId": request.client_request_id, "clientIpAddress": request.client_ip,
            "method": request.method, "url": request.url},
        "resourceProvider": provider,
        "resourceUri": resource_id,
        "operationName": operation,
        "status": status.as_str(),
        "subscriptionId": subscription,
        "tenantId": tenant,
        "resourceGroup": rg.unwrap_or(""),
    });
    ResourceEvent {
        id: uuid::Uuid::new_v4().to_string(),
        event_type: event_type(verb, status).to_string(),
        topic,
        subject: resource_id.to_string(),
        time,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMG: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/images/i";

    #[test]
    fn names() {
        assert_eq!(resource_type(IMG), "Microsoft.Compute/images");
        let v = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/galleries/g/images/d/versions/1.0.0";
        assert_eq!(
            operation_name(v, Verb::Create, None),
            "Microsoft.Compute/galleries/images/versions/write"
        );
        let t = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.VirtualMachineImages/imageTemplates/t";
        assert_eq!(
            operation_name(t, Verb::Action, Some("run")),
            "Microsoft.VirtualMachineImages/imageTemplates/run/action"
        );
        assert_eq!(
            operation_name("/subscriptions/s/resourceGroups/rg", Verb::Delete, None),
            "Microsoft.Resources/subscriptions/resourceGroups/delete"
        );
        assert_eq!(resource_group(IMG), Some("rg"));
        assert_eq!(resource_group("/subscriptions/s"), None);
    }

    #[test]
    fn event_shape() {
        let mut req = RequestInfo {
            method: "PUT".into(),
            ..Default::default()
        };
        req.claims.insert("oid".into(), json!("o"));
        let e = build(
            "t",
            "s",
            IMG,
            (Verb::Create, OpStatus::Succeeded, chrono::Utc::now()),
            &req,
        );
        let v = e.to_event_grid();
        assert_eq!(v["eventType"], "Microsoft.Resources.ResourceWriteSuccess");
        assert_eq!(v["topic"], "/subscriptions/s/resourceGroups/rg");
        assert_eq!(v["subject"], IMG);
        assert_eq!(v["data"]["operationName"], "Microsoft.Compute/images/write");
        assert_eq!(v["data"]["resourceProvider"], "Microsoft.Compute");
        assert_eq!(v["data"]["status"], "Succeeded");
        assert_eq!(v["data"]["authorization"]["evidence"]["principalId"], "o");
        assert_eq!(v["eventTime"].as_str().map(str::len), Some(28));
        let failed = build(
            "t",
            "s",
            IMG,
            (Verb::Delete, OpStatus::Failed, chrono::Utc::now()),
            &req,
        );
        assert_eq!(
            failed.event_type,
            "Microsoft.Resources.ResourceDeleteFailure"
        );
    }

    #[test]
    fn claims_are_strings() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"aud":"https://management.azure.com/","iat":5}"#);
        let c = claims(&format!("Bearer h.{payload}.s"));
        assert_eq!(c["aud"], "https://management.azure.com/");
        assert_eq!(c["iat"], "5");
        assert!(claims("nothing").is_empty());
    }
}
