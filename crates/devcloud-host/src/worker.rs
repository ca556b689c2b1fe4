//! The custom handler process: start it like the host does (port, env, working directory),
//! wait for readiness (`GET /` every 25 ms), capture its output, restart it when it exits,
//! send invocations to it, and kill its whole process group on shutdown.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::log::HostLog;

/// The host version the local host reports to the handler.
pub const HOST_VERSION: &str = "4.1036.1.1";
/// How long the handler gets to answer `GET /` after each start.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How to start the handler.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub executable: PathBuf,
    pub arguments: Vec<String>,
    pub working_dir: PathBuf,
    pub app_root: PathBuf,
    /// App settings (added to the inherited environment).
    pub env: BTreeMap<String, String>,
    pub ready_timeout: Duration,
}

/// Why an invocation failed at the transport level.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("the custom handler did not become ready within {0:?}")]
    NotReady(Duration),
    #[error("the host is shutting down")]
    ShuttingDown,
    #[error("cannot reach the custom handler")]
    Connect(#[source] std::io::Error),
    #[error("HTTP exchange with the custom handler failed")]
    Http(#[source] hyper::Error),
    #[error("invocation timed out after {0:?}")]
    Timeout(Duration),
}

/// One answer from the handler.
#[derive(Debug, Clone)]
pub struct HandlerResponse {
    pub status: u16,
    pub body: Bytes,
}

/// The running (or restarting) custom handler.
pub struct Worker {
    ready: watch::Receiver<Option<u16>>,
    stop: watch::Sender<bool>,
    starts: Arc<AtomicU64>,
    pid: Arc<AtomicU64>,
    ready_wait: Duration,
    supervisor: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Worker {
    /// Start the supervisor; the handler starts in the background.
    pub fn start(cfg: WorkerConfig, log: HostLog) -> Self {
        let (ready_tx, ready) = watch::channel(None);
        let (stop, stop_rx) = watch::channel(false);
        let starts = Arc::new(AtomicU64::new(0));
        let pid = Arc::new(AtomicU64::new(0));
        let ready_wait = cfg.ready_timeout * 2;
        let supervisor = tokio::spawn(supervise(
            cfg,
            log,
            ready_tx,
            stop_rx,
            starts.clone(),
            pid.clone(),
        ));
        Self {
            ready,
            stop,
            starts,
            pid,
            ready_wait,
            supervisor: std::sync::Mutex::new(Some(supervisor)),
        }
    }

    /// How many times the process has been started.
    pub fn starts(&self) -> u64 {
        self.starts.load(Ordering::SeqCst)
    }

    /// The current process id (0 when not running).
    pub fn pid(&self) -> u32 {
        self.pid.load(Ordering::SeqCst) as u32
    }

    /// The handler's port once it answers `GET /`.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<u16, InvokeError> {
        let mut rx = self.ready.clone();
        let wait = async {
            loop {
                if *self.stop.borrow() {
                    return Err(InvokeError::ShuttingDown);
                }
                if let Some(p) = *rx.borrow_and_update() {
                    return Ok(p);
                }
                if rx.changed().await.is_err() {
                    return Err(InvokeError::ShuttingDown);
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| InvokeError::NotReady(timeout))?
    }

    /// POST one invocation to `/{function}` exactly as the host does (chunked body, host headers).
    /// Waits for the handler to be ready first (up to twice its start timeout), then allows
    /// `timeout` for the exchange.
    pub async fn invoke(
        &self,
        function: &str,
        invocation_id: uuid::Uuid,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<HandlerResponse, InvokeError> {
        // Held until the handler is (again) ready; the function timeout starts with the request.
        let port = self.wait_ready(self.ready_wait).await?;
        tokio::time::timeout(
            timeout,
            send_invocation(port, function, invocation_id, body),
        )
        .await
        .map_err(|_| InvokeError::Timeout(timeout))?
    }

    /// Stop the handler (its whole process group) and the supervisor.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let handle = self.supervisor.lock().ok().and_then(|mut s| s.take());
        if let Some(h) = handle {
            let _ = h.await;
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        let pid = self.pid();
        if pid != 0 {
            kill_group(pid, libc::SIGKILL);
        }
    }
}

/// A request body of unknown length (so it goes out chunked, like the host's).
pub type InvocationBody = StreamBody<
    futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, std::convert::Infallible>>>,
>;

/// Build the invocation request the way the host's HttpClient sends it.
pub fn invocation_request(
    port: u16,
    function: &str,
    invocation_id: uuid::Uuid,
    body: Vec<u8>,
) -> hyper::Request<InvocationBody> {
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let span_id = &uuid::Uuid::new_v4().simple().to_string()[..16];
    let frames = vec![Ok(Frame::data(Bytes::from(body)))];
    let body = StreamBody::new(futures::stream::iter(frames));
    let mut req = hyper::Request::new(body);
    *req.method_mut() = hyper::Method::POST;
    // Path segments are the folder name verbatim; escape only what cannot appear in a path.
    let path = format!("/{}", function.replace(' ', "%20"));
    *req.uri_mut() = path
        .parse()
        .unwrap_or_else(|_| hyper::Uri::from_static("/"));
    let h = req.headers_mut();
    let pairs = [
        ("host", format!("127.0.0.1:{port}")),
        ("x-azure-functions-hostversion", HOST_VERSION.to_string()),
        ("x-azure-functions-invocationid", invocation_id.to_string()),
        ("user-agent", format!("Azure-Functions-Host/{HOST_VERSION}")),
        ("transfer-encoding", "chunked".to_string()),
        ("traceparent", format!("00-{trace_id}-{span_id}-00")),
        (
            "content-type",
            "application/json; charset=utf-8".to_string(),
        ),
    ];
    for (k, v) in pairs {
        if let Ok(v) = hyper::header::HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
    req
}

/// POST one invocation to a handler listening on `port` (no readiness wait).
pub async fn send_invocation(
    port: u16,
    function: &str,
    invocation_id: uuid::Uuid,
    body: Vec<u8>,
) -> Result<HandlerResponse, InvokeError> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(InvokeError::Connect)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(InvokeError::Http)?;
    let conn_task = tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = invocation_request(port, function, invocation_id, body);
    let result = async {
        let resp = sender.send_request(req).await.map_err(InvokeError::Http)?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(InvokeError::Http)?
            .to_bytes();
        Ok(HandlerResponse { status, body })
    }
    .await;
    conn_task.abort();
    result
}

fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?.port())
}

fn kill_group(pid: u32, signal: i32) {
    if pid == 0 {
        return;
    }
    // SAFETY: kill(2) with a negative pid signals the process group we created for the handler.
    unsafe {
        libc::kill(-(pid as i32), signal);
    }
}

/// Any HTTP response to `GET /` means ready; only socket errors mean "not yet".
async fn probe(port: u16) -> bool {
    let attempt = async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        s.write_all(
            format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: Azure-Functions-Host/{HOST_VERSION}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .ok()?;
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).await.ok()?;
        (&buf == b"HTTP/").then_some(())
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .ok()
        .flatten()
        .is_some()
}

fn spawn_child(cfg: &WorkerConfig, port: u16, worker_id: &str) -> std::io::Result<Child> {
    let mut cmd = Command::new(&cfg.executable);
    cmd.args(&cfg.arguments)
        .current_dir(&cfg.working_dir)
        .envs(&cfg.env)
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("FUNCTIONS_CUSTOMHANDLER_WORKER_ID", worker_id)
        .env("FUNCTIONS_HTTPWORKER_PORT", port.to_string())
        .env("FUNCTIONS_HTTPWORKER_ID", worker_id)
        .env("FUNCTIONS_APP_ROOT_PATH", &cfg.app_root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    // If the host itself dies without shutting down (SIGKILL, crash), take the handler along:
    // it is in its own process group, so nothing else would stop it.
    let host_pid = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            #[cfg(target_os = "linux")]
            {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                if libc::getppid() != host_pid {
                    libc::_exit(1);
                }
            }
            Ok(())
        });
    }
    cmd.spawn()
}

fn pipe_lines<R: tokio::io::AsyncRead + Unpin + Send + 'static>(r: R, log: HostLog, stderr: bool) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(r).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if stderr {
                log.error("handler", &line);
            } else {
                log.info("handler", &line);
            }
        }
    });
}

async fn stop_child(child: &mut Child, pid: u32) {
    kill_group(pid, libc::SIGTERM);
    if tokio::time::timeout(Duration::from_secs(3), child.wait())
        .await
        .is_err()
    {
        kill_group(pid, libc::SIGKILL);
        let _ = child.wait().await;
    }
    // Anything the handler left behind in its group goes too.
    kill_group(pid, libc::SIGKILL);
}

async fn supervise(
    cfg: WorkerConfig,
    log: HostLog,
    ready: watch::Sender<Option<u16>>,
    mut stop: watch::Receiver<bool>,
    starts: Arc<AtomicU64>,
    pid_slot: Arc<AtomicU64>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        if *stop.borrow() {
            break;
        }
        let port = match free_port() {
            Ok(p) => p,
            Err(e) => {
                log.error("host", &format!("no free port for the custom handler: {e}"));
                if sleep_or_stop(&mut stop, backoff).await {
                    break;
                }
                continue;
            }
        };
        let worker_id = uuid::Uuid::new_v4().to_string();
        let mut child = match spawn_child(&cfg, port, &worker_id) {
            Ok(c) => c,
            Err(e) => {
                log.error(
                    "host",
                    &format!(
                        "cannot start custom handler {}: {e}",
                        cfg.executable.display()
                    ),
                );
                if sleep_or_stop(&mut stop, backoff).await {
                    break;
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        let pid = child.id().unwrap_or(0);
        pid_slot.store(pid as u64, Ordering::SeqCst);
        starts.fetch_add(1, Ordering::SeqCst);
        log.info(
            "host",
            &format!(
                "started custom handler {} (pid {pid}, port {port}, worker {worker_id})",
                cfg.executable.display()
            ),
        );
        if let Some(out) = child.stdout.take() {
            pipe_lines(out, log.clone(), false);
        }
        if let Some(err) = child.stderr.take() {
            pipe_lines(err, log.clone(), true);
        }

        // Readiness: GET / every 25 ms until any HTTP response.
        let began = Instant::now();
        let mut is_ready = false;
        let mut exited = None;
        while began.elapsed() < cfg.ready_timeout {
            if *stop.borrow() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                exited = Some(status);
                break;
            }
            if probe(port).await {
                is_ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        if *stop.borrow() {
            stop_child(&mut child, pid).await;
            pid_slot.store(0, Ordering::SeqCst);
            break;
        }
        if !is_ready {
            match exited {
                Some(s) => log.error(
                    "host",
                    &format!("Language Worker Process exited before it was ready ({s})"),
                ),
                None => log.error(
                    "host",
                    &format!(
                        "custom handler did not answer GET / within {:?}; restarting it",
                        cfg.ready_timeout
                    ),
                ),
            }
            stop_child(&mut child, pid).await;
            pid_slot.store(0, Ordering::SeqCst);
            if sleep_or_stop(&mut stop, backoff).await {
                break;
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
            continue;
        }
        log.info(
            "host",
            &format!("custom handler ready after {:?}", began.elapsed()),
        );
        let _ = ready.send(Some(port));
        let up_since = Instant::now();
        let mut stop_wait = stop.clone();
        tokio::select! {
            status = child.wait() => {
                let _ = ready.send(None);
                kill_group(pid, libc::SIGKILL);
                pid_slot.store(0, Ordering::SeqCst);
                let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                log.error("host", &format!("Language Worker Process exited ({status}); restarting it"));
                if up_since.elapsed() > Duration::from_secs(10) {
                    backoff = Duration::from_millis(100);
                }
                if sleep_or_stop(&mut stop, backoff).await {
                    break;
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            _ = crate::worker::stopped(&mut stop_wait) => {
                let _ = ready.send(None);
                stop_child(&mut child, pid).await;
                pid_slot.store(0, Ordering::SeqCst);
                log.info("host", "custom handler stopped");
                break;
            }
        }
    }
    let _ = ready.send(None);
}

/// Sleep, returning true when asked to stop meanwhile.
async fn sleep_or_stop(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    let mut wait = stop.clone();
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        _ = crate::worker::stopped(&mut wait) => true,
    }
}

/// Resolves once `stop` is true (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
