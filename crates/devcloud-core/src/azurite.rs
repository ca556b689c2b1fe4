//! Azurite, the real Blob Storage emulator: installed from npm when missing (`tools/azurite`) and started
//! in HTTPS + OAuth mode with the devcloud leaf certificate (in memory, or on disk and then restartable);
//! the returned guard kills it on drop.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::tls::Tls;

/// The Azurite development account.
pub const ACCOUNT: &str = "devstoreaccount1";
/// Environment variable that overrides where the repository root (holding `tools/azurite`) is.
pub const ROOT_ENV: &str = "GALLEON_ROOT";

/// Why Azurite could not be installed or started.
#[derive(Debug, thiserror::Error)]
pub enum AzuriteError {
    #[error("cannot find tools/azurite/package.json (set {ROOT_ENV} to the repository root)")]
    NoToolsDir,
    #[error("`npm install` in {dir} failed ({status}); run scripts/setup.sh")]
    Install { dir: PathBuf, status: String },
    #[error("cannot run {what}")]
    Spawn {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Azurite did not become ready within {0:?}; output: {1}")]
    NotReady(Duration, String),
    #[error("Azurite runs in memory: a restart would lose every blob (start it on disk)")]
    InMemory,
}

/// A running Azurite blob service. Dropping it kills the process group.
#[derive(Debug)]
pub struct Azurite {
    child: Option<Child>,
    pgid: Option<u32>,
    port: u16,
    /// How it was started, to start it again the same way.
    launch: Launch,
}

/// The command line Azurite runs with.
#[derive(Debug, Clone)]
struct Launch {
    bin: PathBuf,
    args: Vec<std::ffi::OsString>,
    work_dir: PathBuf,
    on_disk: bool,
}

impl Azurite {
    /// The blob service endpoint for the dev account: `https://127.0.0.1:<port>/devstoreaccount1`.
    pub fn blob_endpoint(&self) -> String {
        format!("https://127.0.0.1:{}/{ACCOUNT}", self.port)
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops Azurite the way a service stop does (SIGTERM: it saves its data and closes), then starts
    /// it again on the same port with the same data directory, as a storage node restart. Only an
    /// Azurite started [`on_disk`](start_on_disk) keeps its blobs across this.
    pub async fn restart(&mut self) -> Result<(), AzuriteError> {
        if !self.launch.on_disk {
            return Err(AzuriteError::InMemory);
        }
        if let Some(pgid) = self.pgid.take() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", "--", &format!("-{pgid}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if let Some(mut child) = self.child.take()
            && tokio::time::timeout(Duration::from_secs(15), child.wait())
                .await
                .is_err()
        {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        let mut launch = self.launch.clone();
        // The same port, now that it is known (the first start may have asked for any).
        if let Some(i) = launch.args.iter().position(|a| a == "--blobPort")
            && let Some(port) = launch.args.get_mut(i + 1)
        {
            *port = self.port.to_string().into();
        }
        let again = spawn(launch).await?;
        *self = again;
        Ok(())
    }

    /// Stops Azurite now (also done on drop).
    pub fn stop(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            // Negative pid: the whole process group started for Azurite.
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pgid}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
        }
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The repository root: `$GALLEON_ROOT`, else two levels above this crate's manifest, else the current dir
/// and its ancestors — the first holding `tools/azurite/package.json`.
pub fn repo_root() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Ok(root) = std::env::var(ROOT_ENV) {
        candidates.push(PathBuf::from(root));
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."));
    if let Ok(cwd) = std::env::current_dir() {
        candidates.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    candidates
        .into_iter()
        .find(|c| c.join("tools/azurite/package.json").is_file())
}

/// Path of the `azurite-blob` launcher, installing Azurite with npm first if it is missing.
pub async fn ensure_installed() -> Result<PathBuf, AzuriteError> {
    let root = repo_root().ok_or(AzuriteError::NoToolsDir)?;
    let dir = root.join("tools/azurite");
    let bin = dir.join("node_modules/.bin/azurite-blob");
    if bin.is_file() {
        return Ok(bin);
    }
    tracing::info!(dir = %dir.display(), "installing Azurite with npm");
    let status = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dir)
        .status()
        .await
        .map_err(|source| AzuriteError::Spawn {
            what: "npm".into(),
            source,
        })?;
    if !status.success() || !bin.is_file() {
        return Err(AzuriteError::Install {
            dir,
            status: status.to_string(),
        });
    }
    Ok(bin)
}

/// Starts `azurite-blob` over HTTPS with `--oauth basic` on `127.0.0.1:port` (0 = ephemeral), in memory,
/// and waits until it listens. `work_dir` is its working directory (it may write logs there).
pub async fn start(tls: &Tls, port: u16, work_dir: &Path) -> Result<Azurite, AzuriteError> {
    start_in(tls, port, work_dir, false).await
}

/// As [`start`], but Azurite keeps its blobs on disk in `work_dir`, so it can be
/// [restarted](Azurite::restart) without losing them.
pub async fn start_on_disk(tls: &Tls, port: u16, work_dir: &Path) -> Result<Azurite, AzuriteError> {
    start_in(tls, port, work_dir, true).await
}

async fn start_in(
    tls: &Tls,
    port: u16,
    work_dir: &Path,
    on_disk: bool,
) -> Result<Azurite, AzuriteError> {
    let bin = ensure_installed().await?;
    std::fs::create_dir_all(work_dir).map_err(|source| AzuriteError::Spawn {
        what: format!("mkdir {}", work_dir.display()),
        source,
    })?;
    let mut args: Vec<std::ffi::OsString> = vec![
        "--blobHost".into(),
        "127.0.0.1".into(),
        "--blobPort".into(),
        port.to_string().into(),
        "--cert".into(),
        tls.cert_pem.clone().into(),
        "--key".into(),
        tls.key_pem.clone().into(),
        "--oauth".into(),
        "basic".into(),
    ];
    if on_disk {
        args.extend(["--location".into(), work_dir.as_os_str().to_owned()]);
    } else {
        args.push("--inMemoryPersistence".into());
    }
    args.extend(["--disableTelemetry".into(), "--skipApiVersionCheck".into()]);
    spawn(Launch {
        bin,
        args,
        work_dir: work_dir.to_path_buf(),
        on_disk,
    })
    .await
}

/// Runs Azurite as `launch` says and waits until it listens.
async fn spawn(launch: Launch) -> Result<Azurite, AzuriteError> {
    let bin = launch.bin.clone();
    let mut cmd = Command::new(&bin);
    cmd.args(&launch.args)
        .current_dir(&launch.work_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|source| AzuriteError::Spawn {
        what: bin.display().to_string(),
        source,
    })?;
    let pgid = child.id();
    let port = launch
        .args
        .iter()
        .position(|a| a == "--blobPort")
        .and_then(|i| launch.args.get(i + 1))
        .and_then(|p| p.to_str()?.parse().ok())
        .unwrap_or(0);
    let mut guard = Azurite {
        child: None,
        pgid,
        port,
        launch,
    };
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    guard.child = Some(child);

    // Azurite prints "Azurite Blob service successfully listens on https://127.0.0.1:PORT".
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    if let Some(out) = stdout {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = tx.send(line);
            }
        });
    }
    if let Some(err) = stderr {
        tokio::spawn(async move {
            let mut lines = BufReader::new(err).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = tx.send(line);
            }
        });
    }
    let limit = Duration::from_secs(30);
    let deadline = tokio::time::Instant::now() + limit;
    let mut seen = String::new();
    loop {
        let line = match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(line)) => line,
            Ok(None) | Err(_) => return Err(AzuriteError::NotReady(limit, seen)),
        };
        tracing::debug!(target: "azurite", "{line}");
        let port = line
            .split("successfully listens on ")
            .nth(1)
            .and_then(|rest| rest.trim().rsplit(':').next())
            .and_then(|p| p.trim_end_matches('/').parse::<u16>().ok());
        if let Some(p) = port {
            guard.port = p;
            break;
        }
        seen.push_str(&line);
        seen.push('\n');
    }
    // Keep draining output so the pipe never fills.
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    Ok(guard)
}
