//! The pump of resource events: the local ARM's sink, and the task that looks at tracked operations
//! and emits each one's event when it ends (the events themselves are built in `events`).

use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::arm::{Arm, Req, now};
use crate::events::{EventSink, Events, POLL, Pending, RequestInfo, build, claims};
use crate::model::OpStatus;

impl RequestInfo {
    /// What a request carries: method, URL (`base` + path + query), correlation and client request
    /// ids, and the claims of its bearer token.
    pub fn from_request(req: &Req, base: &str) -> RequestInfo {
        let header = |k: &str| {
            req.headers
                .get(k)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let query: Vec<String> = req.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let url = match query.is_empty() {
            true => format!("{base}{}", req.path),
            false => format!("{base}{}?{}", req.path, query.join("&")),
        };
        let action = (req.method == warp::http::Method::POST)
            .then(|| req.path.trim_end_matches('/').rsplit('/').next())
            .flatten()
            .map(str::to_ascii_lowercase);
        RequestInfo {
            method: req.method.to_string(),
            url,
            client_request_id: Some(header("x-ms-client-request-id"))
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            correlation_id: header("x-ms-correlation-request-id"),
            client_ip: "127.0.0.1".into(),
            claims: claims(&header("authorization")),
            action,
        }
    }
}

impl Arm {
    /// Sends every resource event from now on to `sink` (once; a second sink is refused) and starts
    /// the task that emits them. Needs a Tokio runtime.
    pub fn set_event_sink(self: &Arc<Self>, sink: EventSink) -> bool {
        if self.events.sink.set(sink).is_err() {
            return false;
        }
        let weak: Weak<Arm> = Arc::downgrade(self);
        let events = self.events.clone();
        tokio::spawn(async move {
            loop {
                // Registered before the sweep, so a push during it wakes the next wait.
                let woken = events.wake.notified();
                tokio::pin!(woken);
                woken.as_mut().enable();
                let busy = match weak.upgrade() {
                    Some(arm) => sweep(&events, &arm),
                    None => return,
                };
                let wait = if busy { POLL } else { Duration::from_secs(1) };
                let _ = tokio::time::timeout(wait, woken).await;
            }
        });
        true
    }
}

/// Emits what is ready; true while operations are still tracked.
fn sweep(events: &Events, arm: &Arm) -> bool {
    let items = std::mem::take(&mut *events.pending.lock().unwrap_or_else(|p| p.into_inner()));
    if items.is_empty() {
        return false;
    }
    let t = now();
    let mut out = Vec::new();
    let mut keep = Vec::new();
    {
        let st = arm.lock();
        for p in items {
            match p {
                Pending::Ready(e) => out.push(e),
                Pending::Op {
                    op_id,
                    resource_id,
                    request,
                } => {
                    let Some(op) = st.operations.get(&op_id) else {
                        continue;
                    };
                    match op.status(t) {
                        OpStatus::InProgress => keep.push(Pending::Op {
                            op_id,
                            resource_id,
                            request,
                        }),
                        // The event tells when the operation ended.
                        s => out.push(build(
                            &arm.identity.tenant_id,
                            &op.subscription,
                            &resource_id,
                            (op.verb, s, op.end.unwrap_or(t).min(t)),
                            &request,
                        )),
                    }
                }
            }
        }
    }
    // In the order things ended (a run ends after the image it wrote).
    out.sort_by_key(|e| e.time);
    let still = !keep.is_empty();
    {
        let mut pending = events.pending.lock().unwrap_or_else(|p| p.into_inner());
        let newer = std::mem::replace(&mut *pending, keep);
        pending.extend(newer);
    }
    if let Some(sink) = events.sink.get() {
        for e in out {
            sink(e);
        }
    }
    still
}
