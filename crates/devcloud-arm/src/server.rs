//! The HTTP front of the simulator: routing, authentication, api-version checks, throttling, fault
//! injection, the request log and the `/_devcloud/` admin endpoints.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use chrono::Utc;
use devcloud_core::Identity;
use devcloud_core::serve::ResetConnection;
use serde::Serialize;
use serde_json::{Value, json};
use warp::http::{HeaderMap, Method, StatusCode};
use warp::{Filter, Reply as _};

use crate::blob::Blob;
use crate::config::{ArmConfig, Bucket};
use crate::error::ArmError;
use crate::faults::{Applied, FaultAction, FaultRule};
use crate::model::{OpFamily, State, Time};

/// A token bucket per subscription and class of request (reads, writes, deletes).
type BucketKey = (String, &'static str);

/// Shared state of one simulator instance.
pub struct Arm {
    pub config: ArmConfig,
    pub identity: Identity,
    pub blob: Option<Blob>,
    pub state: Mutex<State>,
    pub faults: Mutex<Vec<FaultRule>>,
    pub log: Mutex<RequestLog>,
    throttle: Mutex<HashMap<BucketKey, (f64, Instant)>>,
    rng: Mutex<u64>,
}

/// Request log and counts per operation kind.
#[derive(Debug, Default, Serialize)]
pub struct RequestLog {
    pub total: u64,
    pub by_kind: HashMap<String, u64>,
    pub entries: VecDeque<LogEntry>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    pub time: String,
    pub method: String,
    pub path: String,
    pub kind: String,
    pub status: u16,
    pub duration_ms: f64,
}

/// A parsed request.
pub struct Req {
    pub method: Method,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Req {
    pub fn q(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An answer before it becomes an HTTP response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Option<Value>,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Some(body),
        }
    }
    pub fn empty(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: None,
        }
    }
    pub fn header(mut self, k: &str, v: impl Into<String>) -> Self {
        self.headers.push((k.to_string(), v.into()));
        self
    }
}

impl From<ArmError> for Reply {
    fn from(e: ArmError) -> Self {
        Reply::json(e.status, e.body())
    }
}

impl Arm {
    pub fn new(config: ArmConfig, identity: Identity, blob: Option<Blob>, state: State) -> Self {
        let seed = config.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
        Self {
            config,
            identity,
            blob,
            state: Mutex::new(state),
            faults: Mutex::new(Vec::new()),
            log: Mutex::new(RequestLog::default()),
            throttle: Mutex::new(HashMap::new()),
            rng: Mutex::new(seed | 1),
        }
    }

    /// Locks the state (a poisoned lock is recovered: the state stays usable after a panic elsewhere).
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A uniform random number in [0, 1).
    pub fn random(&self) -> f64 {
        let mut s = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        let mut x = *s;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *s = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Multiplies a duration by the jitter of the latency model.
    pub fn jitter(&self, d: std::time::Duration) -> chrono::Duration {
        let j = self.config.latency.jitter.clamp(0.0, 0.95);
        let f = 1.0 + j * (self.random() * 2.0 - 1.0);
        chrono::Duration::milliseconds((d.as_secs_f64() * f * 1000.0).round() as i64)
    }

    fn take_token(&self, sub: &str, class: &'static str) -> (bool, f64, u64) {
        let t = &self.config.throttling;
        let b: Bucket = match class {
            "reads" => t.reads,
            "writes" => t.writes,
            _ => t.deletes,
        };
        let cap = (b.capacity * t.scale).max(1.0);
        let refill = (b.refill_per_sec * t.scale).max(0.001);
        let mut m = self.throttle.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let e = m.entry((sub.to_string(), class)).or_insert((cap, now));
        e.0 = (e.0 + now.duration_since(e.1).as_secs_f64() * refill).min(cap);
        e.1 = now;
        if e.0 >= 1.0 {
            e.0 -= 1.0;
            (true, e.0.floor(), 0)
        } else {
            let wait = ((1.0 - e.0) / refill).ceil() as u64;
            (false, 0.0, wait.max(1))
        }
    }

    fn apply_faults(&self, kind: &str) -> Applied {
        let mut applied = Applied::default();
        let mut rules = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        for rule in rules.iter_mut() {
            if rule
                .kind
                .as_deref()
                .is_some_and(|k| !k.eq_ignore_ascii_case(kind))
            {
                continue;
            }
            if rule.count.is_some_and(|c| rule.applied >= c) {
                continue;
            }
            if let Some(rate) = rule.rate
                && self.random() >= rate
            {
                continue;
            }
            rule.applied += 1;
            match &rule.action {
                FaultAction::Latency { ms } => applied.latency_ms += ms,
                FaultAction::Reset => applied.reset = true,
                FaultAction::Stall => applied.op.stall = true,
                FaultAction::FailRegion { region, details } => applied.op.fail_regions.push((
                    crate::names::norm_region(region),
                    details.clone().unwrap_or_else(|| {
                        format!("Replication to region '{region}' failed (injected fault).")
                    }),
                )),
                a @ FaultAction::Error {
                    in_operation,
                    retry_after,
                    ..
                } => {
                    let err = a.to_error();
                    if *in_operation {
                        applied.op.error = err;
                    } else if applied.error.is_none() {
                        applied.error = err;
                        applied.retry_after = *retry_after;
                    }
                }
            }
        }
        rules.retain(|r| r.count.is_none_or(|c| r.applied < c));
        applied
    }

    fn record(&self, entry: LogEntry) {
        if self.config.log_requests {
            tracing::info!(
                method = %entry.method, path = %entry.path, kind = %entry.kind,
                status = entry.status, duration_ms = entry.duration_ms, "request"
            );
        }
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.total += 1;
        *log.by_kind.entry(entry.kind.clone()).or_insert(0) += 1;
        if log.entries.len() >= 5000 {
            log.entries.pop_front();
        }
        log.entries.push_back(entry);
    }
}

/// The warp filter serving the simulator.
pub fn filter(
    arm: Arc<Arm>,
    https: bool,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection>
+ Clone
+ Send
+ Sync
+ 'static {
    let raw_query = warp::query::raw().or(warp::any().map(String::new)).unify();
    warp::method()
        .and(warp::host::optional())
        .and(warp::path::full())
        .and(raw_query)
        .and(warp::header::headers_cloned())
        .and(warp::body::bytes())
        .then(
            move |method: Method,
                  authority: Option<warp::host::Authority>,
                  path: warp::path::FullPath,
                  query: String,
                  mut headers: HeaderMap,
                  body: Bytes| {
                let arm = arm.clone();
                // HTTP/2 carries the host in :authority, not in a Host header.
                if let Some(a) = authority
                    && let Ok(v) = warp::http::HeaderValue::from_str(a.as_str())
                {
                    headers.insert("host", v);
                }
                async move {
                    let query = url::form_urlencoded::parse(query.as_bytes())
                        .map(|(k, v)| (k.into_owned(), v.into_owned()))
                        .collect();
                    let req = Req {
                        method,
                        path: path.as_str().to_string(),
                        query,
                        headers,
                        body,
                    };
                    handle(arm, req, https).await
                }
            },
        )
}

fn to_response(reply: Reply) -> warp::reply::Response {
    let mut resp = match &reply.body {
        Some(v) => warp::reply::json(v).into_response(),
        None => warp::reply().into_response(),
    };
    *resp.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (k, v) in reply.headers {
        if let (Ok(name), Ok(value)) = (
            warp::http::HeaderName::from_bytes(k.as_bytes()),
            warp::http::HeaderValue::from_str(&v),
        ) {
            resp.headers_mut().append(name, value);
        }
    }
    resp
}

async fn handle(arm: Arc<Arm>, req: Req, https: bool) -> warp::reply::Response {
    let started = Instant::now();
    let host = req
        .headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_string();
    let base = format!("{}://{host}", if https { "https" } else { "http" });
    let path = req.path.clone();
    let method = req.method.to_string();

    if path.starts_with("/_devcloud/") || path == "/_devcloud" {
        let reply = crate::admin::handle(&arm, &req);
        return to_response(reply);
    }

    let route = crate::handlers::classify(&req);
    let kind = route.kind.clone();
    let request_id = uuid::Uuid::new_v4().to_string();
    let correlation = req
        .headers
        .get("x-ms-correlation-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| request_id.clone());
    let client_request_id = req
        .headers
        .get("x-ms-client-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);

    let mut reset = false;
    let mut reply = 'reply: {
        if route.anonymous {
            break 'reply crate::handlers::dispatch(&arm, &req, &route, &base, Default::default())
                .await;
        }
        let auth = req
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if let Err(e) = arm
            .identity
            .verify(auth, "https://management.azure.com/")
            .or_else(|e| match e {
                devcloud_core::AuthError::Audience { .. } => arm
                    .identity
                    .verify(auth, "https://management.core.windows.net/"),
                other => Err(other),
            })
        {
            let err = ArmError::new(401, e.code(), e.to_string());
            let challenge = format!(
                "Bearer authorization_uri=\"https://login.windows.net/{}\", error=\"invalid_token\", error_description=\"{}\"",
                arm.identity.tenant_id,
                e.code()
            );
            break 'reply Reply::from(err).header("WWW-Authenticate", challenge);
        }
        // Throttling (ARM token buckets per subscription and class of request).
        let class = match req.method {
            Method::GET | Method::HEAD => "reads",
            Method::DELETE => "deletes",
            _ => "writes",
        };
        let sub = route.subscription.clone().unwrap_or_default();
        let mut rl_header = None;
        if arm.config.throttling.enabled {
            let (ok, remaining, wait) = arm.take_token(&sub, class);
            if !ok {
                let e = ArmError::new(
                    429,
                    "SubscriptionRequestsThrottled",
                    format!(
                        "Number of '{}' requests for subscription '{sub}' actor '{}' exceeded. Please try again after '{wait}' seconds after additional tokens are available. Refer to https://aka.ms/arm-throttling",
                        class.trim_end_matches('s'),
                        arm.identity.object_id
                    ),
                );
                break 'reply Reply::from(e)
                    .header("Retry-After", wait.to_string())
                    .header(
                        &format!("x-ms-ratelimit-remaining-subscription-{class}"),
                        "0",
                    );
            }
            rl_header = Some((
                format!("x-ms-ratelimit-remaining-subscription-{class}"),
                format!("{remaining}"),
            ));
        }
        let applied = arm.apply_faults(&kind);
        if applied.latency_ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(applied.latency_ms)).await;
        }
        if applied.reset {
            reset = true;
            break 'reply Reply::empty(500);
        }
        let mut reply = if let Some(err) = applied.error.clone() {
            let mut r = Reply::from(err);
            if let Some(s) = applied.retry_after {
                r = r.header("Retry-After", s.to_string());
            }
            r
        } else {
            crate::handlers::dispatch(&arm, &req, &route, &base, applied.op).await
        };
        if let Some((k, v)) = rl_header {
            reply = reply.header(&k, v.clone());
            reply = reply.header(&k.replace("subscription", "global"), v);
        }
        reply
    };
    reply = reply
        .header("x-ms-request-id", request_id)
        .header("x-ms-correlation-request-id", correlation);
    if let Some(c) = client_request_id {
        reply = reply.header("x-ms-client-request-id", c);
    }
    if reply.status == 200 || reply.status == 201 || reply.status == 202 {
        reply = reply.header("Cache-Control", "no-cache");
    }
    let status = reply.status;
    arm.record(LogEntry {
        time: crate::model::fmt_time(Utc::now()),
        method,
        path,
        kind,
        status: if reset { 0 } else { status },
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
    });
    let mut resp = to_response(reply);
    if reset {
        resp.extensions_mut().insert(ResetConnection);
    }
    resp
}

/// Builds the status URL of an operation.
pub fn op_url(
    base: &str,
    family: OpFamily,
    sub: &str,
    loc: &str,
    id: &str,
    api: &str,
    monitor: bool,
) -> String {
    let (ns, coll) = family.path();
    let m = if monitor { "monitor=true&" } else { "" };
    format!(
        "{base}/subscriptions/{sub}/providers/{ns}/locations/{loc}/{coll}/{id}?{m}api-version={api}"
    )
}

/// Current time (one place, so tests could shift it).
pub fn now() -> Time {
    Utc::now()
}

/// JSON snapshot of counts for the admin API.
pub fn counts(arm: &Arm) -> Value {
    let log = arm.log.lock().unwrap_or_else(|p| p.into_inner());
    json!({"total": log.total, "byKind": log.by_kind})
}
