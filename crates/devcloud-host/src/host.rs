//! The host itself: loads the app, starts the handler, the HTTP endpoint (`server`) and the timer
//! and Service Bus triggers; `RunningHost` is the handle to stop it. Invoking is in `runtime`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::auth::{IdentityEndpoint, TokenSource};
use crate::config::{ConfigError, FunctionApp, FunctionDef, Trigger};
use crate::invocation::{self, InvocationContext};
use crate::log::{HostLog, InvocationRecord, Invocations};
use crate::runtime::{Core, HostConfig};
use crate::servicebus::ServiceBusClient;
use crate::worker::{Worker, WorkerConfig};

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
            redelivered: Mutex::new(std::collections::HashMap::new()),
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
        Ok(_) if i64::from(core.config.extra_deliveries) >= msg.delivery_count => {
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
