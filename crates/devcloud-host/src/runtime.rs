//! The state a running host shares between its triggers and its HTTP endpoint: how it was asked to
//! run ([`HostConfig`]), the handler process, clients and records ([`Core`]), and invoking a function
//! with its outputs applied. Both `host` (triggers) and `server` (HTTP) depend on this module, never
//! on each other's internals.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use chrono::Utc;
use serde_json::Value;

use crate::auth::TokenSource;
use crate::config::{FunctionApp, FunctionDef, Output, Trigger};
use crate::invocation::{self, HandlerResult, InvocationContext, ScheduleStatus};
use crate::log::{HostLog, InvocationRecord, Invocations};
use crate::outputs;
use crate::servicebus::{Namespace, ServiceBusClient};
use crate::worker::Worker;

/// How to run a loaded app.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Where the host's HTTP endpoint listens (HTTP triggers, Event Grid webhook, admin).
    pub http_addr: SocketAddr,
    /// Accepted for `authLevel: admin` and every function.
    pub master_key: Option<String>,
    /// Host keys accepted for every `authLevel: function` endpoint.
    pub host_keys: Vec<String>,
    /// Per-function keys (`function name` → key).
    pub function_keys: BTreeMap<String, String>,
    /// Extra CA certificate(s) (PEM) to trust for Service Bus / Event Grid / identity calls.
    pub ca_cert_pem: Option<PathBuf>,
    /// How long the handler may take to answer `GET /` after a start.
    pub ready_timeout: Duration,
    /// Long-poll timeout of each Service Bus peek-lock request, in seconds.
    pub receive_timeout_secs: u64,
    /// How long shutdown waits for running invocations before killing the handler.
    pub drain_timeout: Duration,
    /// Fault injection for at-least-once tests: every Service Bus message and every Event Grid event is
    /// delivered this many more times (0: off). After a successful invocation the host abandons the
    /// message (as after a lost lock) or answers Event Grid 500, so the broker or Event Grid delivers it
    /// again, until it was delivered `1 + extra_deliveries` times.
    pub extra_deliveries: u32,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 7071)),
            master_key: None,
            host_keys: Vec::new(),
            function_keys: BTreeMap::new(),
            ca_cert_pem: None,
            ready_timeout: crate::worker::DEFAULT_READY_TIMEOUT,
            receive_timeout_secs: 5,
            drain_timeout: Duration::from_secs(10),
            extra_deliveries: 0,
        }
    }
}

/// Shared state of a running host.
pub(crate) struct Core {
    pub app: FunctionApp,
    pub(crate) worker: Mutex<Option<Arc<Worker>>>,
    /// (pid, starts) snapshot for status pages.
    pub(crate) worker_state: Mutex<(u32, u64)>,
    pub log: HostLog,
    pub invocations: Invocations,
    pub(crate) http: reqwest::Client,
    pub(crate) tokens: Arc<TokenSource>,
    pub(crate) sb_clients: Mutex<HashMap<String, ServiceBusClient>>,
    pub(crate) timer_status: Mutex<HashMap<String, TimerState>>,
    /// Event Grid event ids failed on purpose, with how many times (`extra_deliveries`).
    pub redelivered: Mutex<HashMap<String, u32>>,
    pub config: HostConfig,
    pub(crate) started: chrono::DateTime<Utc>,
    pub(crate) invocation_timeout: Duration,
}

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TimerState {
    pub(crate) last: Option<chrono::DateTime<Utc>>,
}

/// What an invocation produced that the trigger needs (the HTTP response).
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub http_response: Option<Value>,
}

impl Core {
    pub fn sb_client(&self, connection: &str) -> anyhow::Result<ServiceBusClient> {
        let mut m = self
            .sb_clients
            .lock()
            .map_err(|_| anyhow!("client cache poisoned"))?;
        if let Some(c) = m.get(connection) {
            return Ok(c.clone());
        }
        let ns = Namespace::resolve(connection, &self.app.settings)?;
        let c = ServiceBusClient::new(self.http.clone(), ns, self.tokens.clone());
        m.insert(connection.to_string(), c.clone());
        Ok(c)
    }

    pub async fn worker_info(&self) -> (u32, u64) {
        if let Some(w) = self.current_worker() {
            let info = (w.pid(), w.starts());
            if let Ok(mut s) = self.worker_state.lock() {
                *s = info;
            }
            return info;
        }
        self.worker_state.lock().map(|s| *s).unwrap_or_default()
    }

    fn current_worker(&self) -> Option<Arc<Worker>> {
        self.worker.lock().ok().and_then(|w| w.clone())
    }

    /// Send one invocation, log the handler's Logs, apply outputs, record it.
    pub async fn invoke(
        &self,
        f: &FunctionDef,
        ctx: &InvocationContext,
        body: Value,
    ) -> anyhow::Result<Outcome> {
        let id = uuid::Uuid::new_v4();
        let started = Instant::now();
        let result = self.invoke_inner(f, id, body).await;
        let (status, error, outputs) = match &result {
            Ok((_, n)) => ("Succeeded", None, *n),
            Err(e) => ("Failed", Some(format!("{e:#}")), 0),
        };
        let tag = format!("{} [{id}]", f.name);
        // As the real host words it (FunctionExecutor): outcome, invocation id and duration, per invocation.
        let duration_ms = started.elapsed().as_millis();
        match &error {
            None => self.log.info(
                &tag,
                &format!(
                    "Executed 'Functions.{}' (Succeeded, Id={id}, Duration={duration_ms}ms)",
                    f.name
                ),
            ),
            Some(e) => self.log.error(
                &tag,
                &format!(
                    "Executed 'Functions.{}' (Failed, Id={id}, Duration={duration_ms}ms): {e}",
                    f.name
                ),
            ),
        }
        self.invocations.push(InvocationRecord {
            id: id.to_string(),
            function: f.name.clone(),
            trigger: f.trigger.type_name().to_string(),
            started: crate::encoding::iso(&ctx.utc_now),
            duration_ms: duration_ms as u64,
            status: status.to_string(),
            error,
            outputs,
        });
        result.map(|(o, _)| o)
    }

    async fn invoke_inner(
        &self,
        f: &FunctionDef,
        id: uuid::Uuid,
        body: Value,
    ) -> anyhow::Result<(Outcome, usize)> {
        let bytes = serde_json::to_vec(&body).context("serialising the invocation")?;
        let worker = self
            .current_worker()
            .ok_or_else(|| anyhow!("the host is stopping"))?;
        let resp = worker
            .invoke(&f.name, id, bytes, self.invocation_timeout)
            .await?;
        if !(200..300).contains(&resp.status) {
            anyhow::bail!("the handler answered HTTP {}", resp.status);
        }
        let result = HandlerResult::parse(&resp.body).map_err(|e| anyhow!(e))?;
        let tag = format!("{} [{id}]", f.name);
        for line in &result.logs {
            self.log.info(&tag, line);
        }
        let mut outcome = Outcome::default();
        let mut written = 0;
        for out in &f.outputs {
            let Some(value) = result.output(out.name()) else {
                continue;
            };
            match out {
                Output::Http { .. } => {
                    outcome.http_response = Some(value.clone());
                    written += 1;
                }
                Output::ServiceBus {
                    entity,
                    connection,
                    binary,
                    ..
                } => {
                    let client = self.sb_client(connection)?;
                    for item in outputs::collector_items(value, *binary) {
                        client
                            .send(&entity.path(), item, "text/plain")
                            .await
                            .with_context(|| format!("output binding {:?}", out.name()))?;
                        written += 1;
                    }
                }
                Output::EventGrid { endpoint, key, .. } => {
                    let events = outputs::event_items(value).map_err(|e| anyhow!(e))?;
                    let n = events.len();
                    outputs::publish_events(
                        &self.http,
                        &self.tokens,
                        endpoint,
                        key.as_deref(),
                        events,
                    )
                    .await
                    .with_context(|| format!("output binding {:?}", out.name()))?;
                    written += n;
                }
                Output::Unsupported { name, kind } => {
                    self.log.warn(
                        &tag,
                        &format!("output binding {name:?} of type {kind:?} is not written by the local host"),
                    );
                }
            }
        }
        Ok((outcome, written))
    }

    /// Fire a timer function now (admin), waiting for the result.
    pub async fn fire_timer(&self, name: &str, is_past_due: bool) -> anyhow::Result<()> {
        let f = self
            .app
            .function(name)
            .ok_or_else(|| anyhow!("no function named {name:?}"))?
            .clone();
        self.run_timer_once(&f, is_past_due).await
    }

    pub(crate) async fn run_timer_once(
        &self,
        f: &FunctionDef,
        is_past_due: bool,
    ) -> anyhow::Result<()> {
        let Trigger::Timer {
            name: binding,
            schedule,
            use_monitor,
            ..
        } = &f.trigger
        else {
            anyhow::bail!("function {} is not timer-triggered", f.name);
        };
        let ctx = InvocationContext::new(&f.name);
        let monitor = use_monitor.unwrap_or_else(|| schedule.period_at_least_a_minute(ctx.utc_now));
        let last = self
            .timer_status
            .lock()
            .ok()
            .and_then(|m| m.get(&f.name).and_then(|s| s.last));
        let status = match (monitor, last) {
            (true, Some(last)) => Some(ScheduleStatus {
                last,
                next: schedule
                    .next_after(ctx.utc_now, self.started)
                    .unwrap_or(ctx.utc_now),
                last_updated: last,
            }),
            _ => None,
        };
        let mut retry = 0u32;
        let mut last_error: Option<String> = None;
        let result = loop {
            // Each retry is a new invocation (new UtcNow, RandGuid and invocation id).
            let attempt = if retry == 0 {
                ctx.clone()
            } else {
                InvocationContext::new(&f.name)
            };
            let mut body = invocation::timer(&attempt, binding, status, is_past_due);
            if let Some(policy) = &f.retry {
                body["Metadata"]["RetryContext"] =
                    invocation::retry_context(retry, policy.max_retry_count, last_error.as_deref());
            }
            let result = self.invoke(f, &attempt, body).await.map(|_| ());
            match (&result, &f.retry) {
                (Err(e), Some(policy)) if policy.allows(retry + 1) => {
                    retry += 1;
                    let delay = policy.delay(retry);
                    self.log.warn(
                        &f.name,
                        &format!("invocation failed; retry {retry} in {delay:?}"),
                    );
                    last_error = Some(format!("{e:#}"));
                    tokio::time::sleep(delay).await;
                }
                _ => break result,
            }
        };
        if let Ok(mut m) = self.timer_status.lock() {
            m.entry(f.name.clone()).or_default().last = Some(ctx.utc_now);
        }
        result
    }
}
