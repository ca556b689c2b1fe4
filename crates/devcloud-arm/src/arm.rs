//! The simulator's shared state and request/answer types: configuration, resources, fault rules,
//! throttling buckets, the request log, and helpers every part uses (operation URLs, the clock).

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use chrono::Utc;
use devcloud_core::Identity;
use serde::Serialize;
use serde_json::{Value, json};
use warp::http::{HeaderMap, Method};

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
    /// The platform images on offer (the configured ones, plus those published at run time).
    pub platform_images: Mutex<Vec<crate::platform::PlatformImage>>,
    /// Resource events waiting for their operation to end, and where they go.
    pub events: std::sync::Arc<crate::events::Events>,
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
    /// The tenant of the caller's verified token (none for anonymous or refused tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller_tenant: Option<String>,
    /// The tenants of the verified auxiliary tokens (`x-ms-authorization-auxiliary`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub auxiliary_tenants: Vec<String>,
    /// The caller's `User-Agent`, as Azure's activity log keeps the client's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

/// A parsed request.
pub struct Req {
    pub method: Method,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The verified primary token's claims (None for anonymous requests).
    pub caller: Option<devcloud_core::Claims>,
    /// Tenants of the verified auxiliary tokens (`x-ms-authorization-auxiliary`).
    pub aux_tenants: Vec<String>,
}

impl Req {
    /// The tenant of the caller's token (the devcloud tenant when anonymous).
    pub fn caller_tenant<'a>(&'a self, home: &'a str) -> &'a str {
        self.caller.as_ref().map(|c| c.tid.as_str()).unwrap_or(home)
    }
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
        let platform_images = Mutex::new(config.platform_images.clone());
        Self {
            config,
            identity,
            blob,
            state: Mutex::new(state),
            faults: Mutex::new(Vec::new()),
            log: Mutex::new(RequestLog::default()),
            platform_images,
            events: Default::default(),
            throttle: Mutex::new(HashMap::new()),
            rng: Mutex::new(seed | 1),
        }
    }

    /// The platform images on offer now.
    pub fn platform_images(
        &self,
    ) -> std::sync::MutexGuard<'_, Vec<crate::platform::PlatformImage>> {
        self.platform_images
            .lock()
            .unwrap_or_else(|p| p.into_inner())
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

    pub(crate) fn take_token(&self, sub: &str, class: &'static str) -> (bool, f64, u64) {
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

    /// The faults that apply to one request of `kind`. Rules that answer the request (an error, a reset,
    /// latency) roll first; rules about the operation the request starts (a stall, a failing region, an
    /// error inside the operation, …) roll only when the request is carried out: a request Azure answers
    /// 429 or 500 starts no operation, so such a rule neither applies nor counts.
    pub(crate) fn apply_faults(&self, kind: &str) -> Applied {
        let mut applied = Applied::default();
        let mut rules = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        let about_operation = |a: &FaultAction| {
            matches!(
                a,
                FaultAction::Stall
                    | FaultAction::LocationOnly
                    | FaultAction::FailRegion { .. }
                    | FaultAction::FailDistribute { .. }
                    | FaultAction::Error {
                        in_operation: true,
                        ..
                    }
            )
        };
        let (answering, operating): (Vec<_>, Vec<_>) = rules
            .iter_mut()
            .partition(|rule| !about_operation(&rule.action));
        self.roll(kind, answering, &mut applied);
        if applied.error.is_none() && !applied.reset {
            self.roll(kind, operating, &mut applied);
        }
        // A rule used up stays listed (`GET /_devcloud/faults` tells how often each applied); the count
        // check keeps it from applying again.
        applied
    }

    fn roll(&self, kind: &str, rules: Vec<&mut FaultRule>, applied: &mut Applied) {
        for rule in rules {
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
                FaultAction::Latency { ms, after: false } => applied.latency_ms += ms,
                FaultAction::Latency { ms, after: true } => applied.answer_latency_ms += ms,
                FaultAction::Reset => applied.reset = true,
                FaultAction::Stall => applied.op.stall = true,
                FaultAction::LocationOnly => applied.op.location_only = true,
                FaultAction::FailRegion { region, details } => applied.op.fail_regions.push((
                    crate::names::norm_region(region),
                    details.clone().unwrap_or_else(|| {
                        format!("Replication to region '{region}' failed (injected fault).")
                    }),
                )),
                FaultAction::FailDistribute {
                    run_output_name,
                    message,
                } => applied.op.fail_outputs.push((
                    run_output_name.clone(),
                    message.clone().unwrap_or_else(|| {
                        format!("Distribution to '{run_output_name}' failed (injected fault).")
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
    }

    pub(crate) fn record(&self, entry: LogEntry) {
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
    if family == OpFamily::Resources {
        // ARM's own operations (resource group deletion) are polled through Location only.
        return format!("{base}/subscriptions/{sub}/{coll}/{id}?api-version={api}");
    }
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
