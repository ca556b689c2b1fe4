//! `devcloud-host --app <dir>`: run a function app locally with the devcloud Functions host;
//! `devcloud-host fire <Function> [--port <port>]`: run a timer function of a running host now.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};

fn usage() -> &'static str {
    "usage: devcloud-host --app <dir> [--port <port> (default: local.settings.json Host.LocalHttpPort, else 7071)] [--master-key <key>] [--host-key <key>]... [--ca <pem>]\n\
     App settings come from <dir>/local.settings.json; environment variables of the same name win.\n\
       devcloud-host fire <Function> [--port <port>]   run a timer-triggered function of a running host now"
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    if std::env::args().nth(1).as_deref() == Some("fire") {
        return fire(std::env::args().skip(2).collect()).await;
    }
    let mut app = None;
    let mut port = None;
    let mut config = devcloud_host::HostConfig::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .with_context(|| format!("{name} needs a value\n{}", usage()))
        };
        match a.as_str() {
            "--app" => app = Some(PathBuf::from(value("--app")?)),
            "--port" => {
                let p: u16 = value("--port")?
                    .parse()
                    .context("--port must be a number")?;
                port = Some(p);
            }
            "--master-key" => config.master_key = Some(value("--master-key")?),
            "--host-key" => config.host_keys.push(value("--host-key")?),
            "--ca" => config.ca_cert_pem = Some(PathBuf::from(value("--ca")?)),
            "-h" | "--help" => {
                println!("{}", usage());
                return Ok(());
            }
            other => bail!("unknown argument {other:?}\n{}", usage()),
        }
    }
    let Some(app) = app else { bail!("{}", usage()) };
    // Environment variables override local.settings.json, as with Core Tools.
    let loaded = devcloud_host::FunctionApp::load(&app, BTreeMap::new())?;
    let overrides: BTreeMap<String, String> = loaded
        .settings
        .keys()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.clone(), v)))
        .collect();
    // --port, else local.settings.json Host.LocalHttpPort, else 7071.
    let port = port.or(loaded.local_http_port).unwrap_or(7071);
    config.http_addr = SocketAddr::from(([127, 0, 0, 1], port));
    let host = devcloud_host::Host::load(&app, overrides)?;
    let running = host.start(config).await?;
    eprintln!(
        "devcloud Functions host listening on http://{}",
        running.http_addr
    );
    // The handler runs in its own process group, so it never sees our signals: stop it on
    // Ctrl-C, SIGTERM (e.g. from `devcloud up`) and SIGHUP alike.
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
        _ = hup.recv() => {}
    }
    eprintln!("stopping the Functions host");
    running.shutdown().await;
    Ok(())
}

/// `fire <Function> [--port N]`: POST /_devcloud/host/functions/<Function>/fire on a running host.
async fn fire(args: Vec<String>) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut function = None;
    let mut port: u16 = 7071;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--port" => {
                port = it
                    .next()
                    .context("--port needs a value")?
                    .parse()
                    .context("--port must be a number")?
            }
            other if function.is_none() && !other.starts_with('-') => {
                function = Some(other.to_string())
            }
            other => bail!("unknown argument {other:?}\n{}", usage()),
        }
    }
    let Some(function) = function else {
        bail!("{}", usage())
    };
    let url = format!("http://127.0.0.1:{port}/_devcloud/host/functions/{function}/fire");
    let resp = reqwest::Client::new()
        .post(&url)
        .send()
        .await
        .with_context(|| format!("no Functions host answering at {url}"))?;
    let status = resp.status();
    let body: serde_json::Value = resp
        .json()
        .await
        .context("the host answered with invalid JSON")?;
    println!("{body}");
    if !status.is_success() || body["status"] != "Succeeded" {
        bail!("firing {function} did not succeed (HTTP {status})");
    }
    Ok(())
}
