//! The host itself: loads the app, starts the handler, runs the triggers, invokes functions
//! and applies their outputs; `RunningHost` is the handle to stop it.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use chrono::Utc;
use serde_json::Value;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::auth::{IdentityEndpoint, TokenSource};
use crate::config::{ConfigError, FunctionApp, FunctionDef, Output, Trigger};
use crate::invocation::{self, HandlerResult, InvocationContext, ScheduleStatus};
use crate::log::{HostLog, InvocationRecord, Invocations};
use crate::outputs;
use crate::servicebus::{Namespace, ServiceBusClient};
use crate::worker::{Worker, WorkerConfig};

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
    /// delivered twice. After a first successful invocation the host abandons the message (as after a lost
    /// lock) or answers Event Grid 500, so the broker or Event Grid delivers it again.
    pub redeliver_every_message_once: bool,
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
            redeliver_every_message_once: false,
        }
    }
}

/// A loaded, validated function app, ready to start.
#[derive(Debug, Clone)]
pub struct Host {
    app: FunctionApp,
}

impl Host {
    /// Load `app_dir` (host.json, local.settings.json, function.json files); `settings`
    /// override local.settings.json values.
    pub fn load(app_dir: &Path, settings: BTreeMap<String, String>) -> Result<Self, ConfigError> {
        Ok(Self {
            app: FunctionApp::load(app_dir, settings)?,
        })
    }

    pub fn app(&self) -> &FunctionApp {
        &self.app
    }

    /// Start the handler, the HTTP endpoint and every trigger.
    pub async fn start(self, config: HostConfig) -> anyhow::Result<RunningHost> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let app = self.app;
        let log = HostLog::default();
        let http = build_http_client(&config, &app.settings)?;
        let setting = |k: &str| {
            app.settings
                .get(k)
                .cloned()
                .or_else(|| std::env::var(k).ok())
        };
        let identity = match (setting("IDENTITY_ENDPOINT"), setting("IDENTITY_HEADER")) {
            (Some(endpoint), Some(header)) => Some(IdentityEndpoint { endpoint, header }),
            _ => None,
        };
        let tokens = Arc::new(TokenSource::new(http.clone(), identity));
        let listener = tokio::net::TcpListener::bind(config.http_addr)
            .await
            .with_context(|| format!("cannot listen on {}", config.http_addr))?;
        let http_addr = listener.local_addr().context("listener address")?;

        let mut env = app.settings.clone();
        env.entry("FUNCTIONS_WORKER_RUNTIME".into())
            .or_insert_with(|| "custom".into());
        let worker = Worker::start(
            WorkerConfig {
                executable: app.handler.executable.clone(),
                arguments: app.handler.arguments.clone(),
                working_dir: app.handler.working_dir.clone(),
                app_root: app.root.clone(),
                env,
                ready_timeout: config.ready_timeout,
            },
            log.clone(),
        );
        log.info(
            "host",
            &format!(
                "loaded {} function(s) from {}: {}",
                app.functions.len(),
                app.root.display(),
                app.functions
                    .iter()
                    .map(|f| format!("{} ({})", f.name, f.trigger.type_name()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        let (stop_tx, stop_rx) = watch::channel(false);
        let core = Arc::new(Core {
            invocation_timeout: app.function_timeout.unwrap_or(Duration::from_secs(30 * 60)),
            app,
            worker: Mutex::new(Some(Arc::new(worker))),
            worker_state: Mutex::new((0, 0)),
            log,
            invocations: Invocations::default(),
            http,
            tokens,
            sb_clients: Mutex::new(HashMap::new()),
            timer_status: Mutex::new(HashMap::new()),
            redelivered: Mutex::new(std::collections::HashSet::new()),
            config,
            started: Utc::now(),
        });
        let mut tasks = JoinSet::new();
        let server_core = core.clone();
        let server_stop = stop_rx.clone();
        tasks.spawn(async move { crate::server::serve(server_core, listener, server_stop).await });
        let mut triggers = JoinSet::new();
        for f in core.app.functions.clone() {
            let c = core.clone();
            let stop = stop_rx.clone();
            match &f.trigger {
                Trigger::ServiceBus { .. } => {
                    triggers.spawn(async move { run_service_bus(c, f, stop).await });
                }
                Trigger::Timer { .. } => {
                    triggers.spawn(async move { run_timer(c, f, stop).await });
                }
                Trigger::EventGrid { .. } | Trigger::Http { .. } => {}
            }
        }
        core.log
            .info("host", &format!("host listening on http://{http_addr}"));
        Ok(RunningHost {
            http_addr,
            core,
            stop: stop_tx,
            server: tasks,
            triggers,
        })
    }
}

fn build_http_client(
    config: &HostConfig,
    settings: &BTreeMap<String, String>,
) -> anyhow::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder().connect_timeout(Duration::from_secs(10));
    let mut pems: Vec<PathBuf> = config.ca_cert_pem.iter().cloned().collect();
    if let Some(p) = settings
        .get("SSL_CERT_FILE")
        .cloned()
        .or_else(|| std::env::var("SSL_CERT_FILE").ok())
    {
        pems.push(PathBuf::from(p));
    }
    for p in pems {
        let bytes = std::fs::read(&p)
            .with_context(|| format!("cannot read CA certificate {}", p.display()))?;
        for c in reqwest::Certificate::from_pem_bundle(&bytes)
            .with_context(|| format!("{} is not a PEM certificate bundle", p.display()))?
        {
            b = b.add_root_certificate(c);
        }
    }
    b.build().context("building the HTTP client")
}

/// Shared state of a running host.
pub(crate) struct Core {
    pub app: FunctionApp,
    worker: Mutex<Option<Arc<Worker>>>,
    /// (pid, starts) snapshot for status pages.
    worker_state: Mutex<(u32, u64)>,
    pub log: HostLog,
    pub invocations: Invocations,
    http: reqwest::Client,
    tokens: Arc<TokenSource>,
    sb_clients: Mutex<HashMap<String, ServiceBusClient>>,
    timer_status: Mutex<HashMap<String, TimerState>>,
    /// Event Grid event ids already failed once on purpose (`redeliver_every_message_once`).
    pub redelivered: Mutex<std::collections::HashSet<String>>,
    pub config: HostConfig,
    started: chrono::DateTime<Utc>,
    invocation_timeout: Duration,
}

#[derive(Debug, Clone, Copy, Default)]
struct TimerState {
    last: Option<chrono::DateTime<Utc>>,
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
        match &error {
            None => self
                .log
                .info(&tag, &format!("Executed '{}' (Succeeded)", f.name)),
            Some(e) => self
                .log
                .error(&tag, &format!("Executed '{}' (Failed): {e}", f.name)),
        }
        self.invocations.push(InvocationRecord {
            id: id.to_string(),
            function: f.name.clone(),
            trigger: f.trigger.type_name().to_string(),
            started: crate::encoding::iso(&ctx.utc_now),
            duration_ms: started.elapsed().as_millis() as u64,
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

    async fn run_timer_once(&self, f: &FunctionDef, is_past_due: bool) -> anyhow::Result<()> {
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

async fn run_timer(core: Arc<Core>, f: FunctionDef, mut stop: watch::Receiver<bool>) {
    let Trigger::Timer {
        schedule,
        run_on_startup,
        schedule_text,
        ..
    } = &f.trigger
    else {
        return;
    };
    core.log.info(
        &f.name,
        &format!(
            "timer schedule {schedule_text:?}; next occurrence {}",
            schedule
                .next_after(Utc::now(), core.started)
                .map(|t| crate::encoding::iso(&t))
                .unwrap_or_else(|| "never".into())
        ),
    );
    if *run_on_startup {
        let _ = core.run_timer_once(&f, false).await;
    }
    loop {
        let now = Utc::now();
        let Some(next) = schedule.next_after(now, core.started) else {
            core.log
                .warn(&f.name, "timer schedule has no further occurrence");
            return;
        };
        let wait = (next - now).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = crate::worker::stopped(&mut stop) => return,
        }
        let late = Utc::now() - next;
        let past_due = late > chrono::Duration::seconds(15);
        tokio::select! {
            _ = core.run_timer_once(&f, past_due) => {}
            _ = crate::worker::stopped(&mut stop) => return,
        }
    }
}

async fn run_service_bus(core: Arc<Core>, f: FunctionDef, mut stop: watch::Receiver<bool>) {
    let Trigger::ServiceBus {
        name: binding,
        entity,
        connection,
        binary,
    } = f.trigger.clone()
    else {
        return;
    };
    let client = match core.sb_client(&connection) {
        Ok(c) => c,
        Err(e) => {
            core.log
                .error(&f.name, &format!("Service Bus trigger disabled: {e:#}"));
            return;
        }
    };
    let path = entity.path();
    let max = core.app.service_bus.max_concurrent_calls;
    let sem = Arc::new(Semaphore::new(max));
    let f = Arc::new(f);
    let mut in_flight = JoinSet::new();
    let mut failing = false;
    core.log.info(
        &f.name,
        &format!(
            "listening on {}/{path} (maxConcurrentCalls {max})",
            client.namespace().base
        ),
    );
    loop {
        while in_flight.try_join_next().is_some() {}
        let permit = tokio::select! {
            p = sem.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = crate::worker::stopped(&mut stop) => break,
        };
        let received = tokio::select! {
            r = client.receive(&path, core.config.receive_timeout_secs) => r,
            _ = crate::worker::stopped(&mut stop) => break,
        };
        match received {
            Ok(None) => {
                failing = false;
            }
            Ok(Some(msg)) => {
                failing = false;
                let core = core.clone();
                let f = f.clone();
                let client = client.clone();
                let path = path.clone();
                let binding = binding.clone();
                in_flight.spawn(async move {
                    handle_message(&core, &f, &client, &path, &binding, binary, msg).await;
                    drop(permit);
                });
            }
            Err(e) => {
                if !failing {
                    core.log.warn(
                        &f.name,
                        &format!("receive from {path} failed (retrying): {e:#}"),
                    );
                    failing = true;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = crate::worker::stopped(&mut stop) => break,
                }
            }
        }
    }
    // Let running invocations finish (they settle their messages); the host kills the handler after the drain timeout.
    let drain = core.config.drain_timeout;
    let _ = tokio::time::timeout(drain, async {
        while in_flight.join_next().await.is_some() {}
    })
    .await;
    in_flight.abort_all();
}

async fn handle_message(
    core: &Core,
    f: &FunctionDef,
    client: &ServiceBusClient,
    path: &str,
    binding: &str,
    binary: bool,
    msg: crate::servicebus::ReceivedMessage,
) {
    let ctx = InvocationContext::new(&f.name);
    let body = invocation::service_bus(&ctx, binding, &msg, &client.namespace().fqns, binary);
    // Renew the lock while the invocation runs, up to maxAutoLockRenewalDuration.
    let renew_limit = core.app.service_bus.max_auto_lock_renewal;
    let renewer = {
        let client = client.clone();
        let path = path.to_string();
        let msg = msg.clone();
        let log = core.log.clone();
        let name = f.name.clone();
        tokio::spawn(async move {
            let began = Instant::now();
            let mut until = msg.locked_until;
            loop {
                let left = until
                    .map(|u| (u - Utc::now()).to_std().unwrap_or_default())
                    .unwrap_or(Duration::from_secs(60));
                let wait = (left / 2).max(Duration::from_millis(200));
                tokio::time::sleep(wait).await;
                if began.elapsed() + wait > renew_limit {
                    return;
                }
                match client.renew(&path, &msg).await {
                    Ok(u) => {
                        until = u.or(until.map(|_| Utc::now() + chrono::Duration::seconds(60)))
                    }
                    Err(e) => {
                        log.warn(&name, &format!("lock renewal failed: {e:#}"));
                        return;
                    }
                }
            }
        })
    };
    let result = core.invoke(f, &ctx, body).await;
    renewer.abort();
    let settle = match &result {
        Ok(_) if core.config.redeliver_every_message_once && msg.delivery_count <= 1 => {
            core.log.info(
                &f.name,
                &format!(
                    "fault injection: abandoning handled message {} so it is delivered again",
                    msg.message_id
                ),
            );
            client.abandon(path, &msg).await
        }
        Ok(_) if core.app.service_bus.auto_complete => client.complete(path, &msg).await,
        Ok(_) => Ok(()),
        Err(_) => client.abandon(path, &msg).await,
    };
    if let Err(e) = settle {
        core.log.warn(
            &f.name,
            &format!("settling message {} failed: {e:#}", msg.message_id),
        );
    }
}

/// A started host. Dropping it kills the handler; call [`RunningHost::shutdown`] to stop cleanly.
pub struct RunningHost {
    /// Where HTTP triggers, the Event Grid webhook and `/_devcloud/host/...` are served.
    pub http_addr: SocketAddr,
    pub(crate) core: Arc<Core>,
    stop: watch::Sender<bool>,
    server: JoinSet<()>,
    triggers: JoinSet<()>,
}

impl RunningHost {
    /// Fire a timer-triggered function now; returns once the invocation finished.
    pub async fn fire_timer(&self, function: &str) -> anyhow::Result<()> {
        self.core.fire_timer(function, false).await
    }

    /// Recent invocations, oldest first.
    pub fn invocations(&self) -> Vec<InvocationRecord> {
        self.core.invocations.list()
    }

    /// The host log (handler output, invocation logs, host events).
    pub fn logs(&self) -> Vec<crate::log::LogLine> {
        self.core.log.lines()
    }

    /// (pid, number of starts) of the custom handler.
    pub async fn handler_process(&self) -> (u32, u64) {
        self.core.worker_info().await
    }

    /// Stop triggers (letting running invocations settle), stop the HTTP endpoint, then kill
    /// the handler's process group. Nothing is left running afterwards.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        while self.triggers.join_next().await.is_some() {}
        let worker = self.core.worker.lock().ok().and_then(|mut w| w.take());
        if let Some(w) = worker {
            w.shutdown().await;
        }
        while self.server.join_next().await.is_some() {}
        self.core.log.info("host", "host stopped");
    }
}
