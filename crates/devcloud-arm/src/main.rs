//! `devcloud-arm`: starts the identity endpoint, Azurite (HTTPS + OAuth) and the ARM simulator with one
//! command, and prints the addresses and environment variables clients need.

use std::path::PathBuf;

use anyhow::{Context, bail};
use devcloud_arm::{ArmConfig, Stack, StackOptions};

const USAGE: &str =
    "usage: devcloud-arm [--state-dir DIR] [--arm-port 7443] [--msi-port 7444] [--blob-port 10000]
                    [--time-factor 1.0] [--no-azurite] [--config FILE.json] [--snapshot FILE.json]
                    [--resource-group NAME]... (default rg-images; created at start, as infra would)";

struct Args {
    state_dir: PathBuf,
    arm_port: u16,
    msi_port: u16,
    blob_port: u16,
    time_factor: Option<f64>,
    azurite: bool,
    config: Option<PathBuf>,
    snapshot: Option<PathBuf>,
    resource_groups: Vec<String>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        state_dir: PathBuf::from(".devcloud"),
        arm_port: 7443,
        msi_port: 7444,
        blob_port: 10000,
        time_factor: None,
        azurite: true,
        config: None,
        snapshot: None,
        resource_groups: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = |name: &str| {
            it.next()
                .with_context(|| format!("{name} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--state-dir" => a.state_dir = PathBuf::from(val("--state-dir")?),
            "--arm-port" => a.arm_port = val("--arm-port")?.parse().context("--arm-port")?,
            "--msi-port" => a.msi_port = val("--msi-port")?.parse().context("--msi-port")?,
            "--blob-port" => a.blob_port = val("--blob-port")?.parse().context("--blob-port")?,
            "--time-factor" => {
                a.time_factor = Some(val("--time-factor")?.parse().context("--time-factor")?)
            }
            "--config" => a.config = Some(PathBuf::from(val("--config")?)),
            "--snapshot" => a.snapshot = Some(PathBuf::from(val("--snapshot")?)),
            "--no-azurite" => a.azurite = false,
            "--resource-group" => a.resource_groups.push(val("--resource-group")?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    if a.resource_groups.is_empty() {
        a.resource_groups
            .push(devcloud_arm::stack::DEFAULT_RESOURCE_GROUP.to_string());
    }
    Ok(a)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = parse_args()?;
    let mut config = match &args.config {
        Some(p) => serde_json::from_str(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        )
        .with_context(|| format!("parsing {}", p.display()))?,
        None => ArmConfig::default(),
    };
    if let Some(f) = args.time_factor {
        config.time_factor = f;
    }
    if args.snapshot.is_some() {
        config.snapshot_path = args.snapshot.clone();
    }
    let stack = Stack::start(StackOptions {
        state_dir: args.state_dir.clone(),
        arm_port: args.arm_port,
        msi_port: args.msi_port,
        blob_port: args.blob_port,
        azurite: args.azurite,
        config,
        resource_groups: args.resource_groups.clone(),
    })
    .await?;
    let exports: Vec<String> = stack
        .env()
        .into_iter()
        .filter(|(k, _)| k != "IDENTITY_HEADER")
        .map(|(k, v)| format!("export {k}={v}"))
        .collect();
    let secret = stack.identity_secret.clone();
    // The identity header is a secret: it goes into an owner-only file, not onto the terminal.
    let env_file = args.state_dir.join("devcloud-arm.env");
    let mut text = exports.join("\n");
    text.push_str(&format!("\nexport IDENTITY_HEADER={secret}\n"));
    write_private(&env_file, &text).with_context(|| format!("writing {}", env_file.display()))?;
    println!(
        "# devcloud ARM is running. Environment for clients (IDENTITY_HEADER is only in the file):"
    );
    for line in &exports {
        println!("{line}");
    }
    println!(
        "source {}",
        std::fs::canonicalize(&env_file)
            .unwrap_or(env_file.clone())
            .display()
    );
    println!(
        "# admin: {}/_devcloud/requests, /_devcloud/operations, /_devcloud/faults, /_devcloud/snapshot",
        stack.arm.base_url
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    stack.shutdown().await;
    Ok(())
}

fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}
