//! What each `devcloud` command does, once clap has parsed its arguments: start the cloud and publish
//! the connection file (`up`), the self-contained demo and scale run, `inspect` and `upload` against a
//! running `up`.
//! This file holds what they share.

mod demo;
mod inspect;
mod scale;
mod up;
mod upload;

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::Instant,
};

use anyhow::{Context, Result, bail};
use devcloud::{Options, Ports, find_app_root, follow::Outcome};

use crate::{Cli, Command, GalleonArg, PortArgs};

/// Exit code when the run did not end in time (as GNU `timeout`).
const EXIT_TIMED_OUT: u8 = 124;
/// Exit code after Ctrl-C (128 + SIGINT).
const EXIT_INTERRUPTED: u8 = 130;

pub async fn run(cli: Cli) -> Result<ExitCode> {
    let paths = Paths {
        app: cli.app,
        state_dir: cli.state_dir,
    };
    match cli.command {
        Command::Up(args) => up::up(paths, args).await,
        Command::Demo(args) => demo::demo(paths, args).await,
        Command::Inspect(args) => inspect::inspect(paths, args).await,
        Command::Upload(args) => upload::upload(paths, args).await,
        Command::Scale(args) => scale::scale(paths, args).await,
    }
}

struct Paths {
    app: Option<PathBuf>,
    state_dir: Option<PathBuf>,
}

impl Paths {
    fn app_root(&self) -> Result<PathBuf> {
        let start = match &self.app {
            Some(app) => {
                let root = find_app_root(app).filter(|r| r == app);
                return root.with_context(|| {
                    format!(
                        "{} is not a galleon app directory (no host.json and events/subscriptions.json)",
                        app.display()
                    )
                });
            }
            None => std::env::current_dir()?,
        };
        find_app_root(&start).context(
            "run devcloud inside the galleon repository (no host.json and events/subscriptions.json above here), or pass --app",
        )
    }

    fn state_dir(&self) -> Result<PathBuf> {
        match &self.state_dir {
            Some(dir) => Ok(dir.clone()),
            None => Ok(self.app_root()?.join(".devcloud")),
        }
    }
}

/// The directory of the galleon handler (put on the host's PATH, as host.json names `galleon-handler`).
fn galleon_dir(arg: &GalleonArg) -> Result<PathBuf> {
    let bin = match (&arg.galleon, std::env::var_os("GALLEON_BIN")) {
        (Some(path), _) => path.clone(),
        (None, Some(path)) => PathBuf::from(path),
        (None, None) => std::env::current_exe()?
            .parent()
            .context("locating devcloud's own directory")?
            .join("galleon-handler"),
    };
    if !bin.is_file() {
        bail!(
            "no galleon handler at {}; build it (cargo build --release -p galleon -p devcloud) or pass --galleon",
            bin.display()
        );
    }
    if bin.file_name().and_then(|n| n.to_str()) != Some("galleon-handler") {
        bail!(
            "{}: host.json runs an executable named `galleon-handler`",
            bin.display()
        );
    }
    let bin = bin
        .canonicalize()
        .with_context(|| format!("resolving {}", bin.display()))?;
    Ok(bin.parent().map(Path::to_path_buf).unwrap_or_default())
}

/// A temporary directory (prefix `prefix`) and options for a local cloud of the command's own there:
/// free ports, its state in the directory unless --state-dir says otherwise.
fn private_cloud(
    paths: &Paths,
    galleon: &GalleonArg,
    prefix: &str,
) -> Result<(tempfile::TempDir, Options)> {
    let work = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .context("making a temporary directory")?;
    let state = paths
        .state_dir
        .clone()
        .unwrap_or_else(|| work.path().join("state"));
    let mut options = Options::new(paths.app_root()?, galleon_dir(galleon)?, state);
    options.ports = Ports::ephemeral();
    Ok((work, options))
}

fn ports(args: &PortArgs) -> Ports {
    let base = if args.any_ports {
        Ports::ephemeral()
    } else {
        Ports::default()
    };
    Ports {
        azurite: args.azurite_port.unwrap_or(base.azurite),
        arm: args.arm_port.unwrap_or(base.arm),
        identity: args.identity_port.unwrap_or(base.identity),
        service_bus: args.service_bus_port.unwrap_or(base.service_bus),
        event_grid: args.event_grid_port.unwrap_or(base.event_grid),
        host: args.host_port.unwrap_or(base.host),
        entra: args.entra_port.unwrap_or(base.entra),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn elapsed(since: Instant) -> String {
    format!("{:.1}s", since.elapsed().as_secs_f64())
}

/// Bytes for people: 512 B, 4.0 KiB, 8.0 MiB, 30.0 GiB.
fn size(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1048576 => format!("{:.1} KiB", b / 1024.0),
        1048576..1073741824 => format!("{:.1} MiB", b / 1048576.0),
        _ => format!("{:.1} GiB", b / 1073741824.0),
    }
}

fn exit_code(outcome: &Outcome) -> ExitCode {
    match outcome {
        Outcome::Ready(_) => ExitCode::SUCCESS,
        Outcome::Failed(_) => ExitCode::FAILURE,
        Outcome::TimedOut(_) => ExitCode::from(EXIT_TIMED_OUT),
    }
}
