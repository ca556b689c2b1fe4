//! A local Azure Resource Manager for Compute images, galleries and Image Builder, faithful enough for the official clients.
//!
//! Start it with [`serve`]; it listens on 127.0.0.1 over HTTPS (with the devcloud CA) or HTTP, checks the
//! bearer tokens of [`devcloud_core::Identity`], and keeps state in memory (optionally snapshotted).
//! Admin endpoints live under `/_devcloud/` (see [`admin`]).

pub mod admin;
pub mod blob;
pub mod config;
pub mod error;
pub mod faults;
pub mod handlers;
pub mod imagebuilder;
pub mod model;
pub mod names;
pub mod server;
pub mod stack;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use devcloud_core::{Identity, ServerHandle, Tls};

pub use config::{ApiVersions, ArmConfig, Bucket, LatencyModel, Limits, Throttling, Work};
pub use error::{ArmError, INVENTED_CODES};
pub use faults::{FaultAction, FaultRule};
pub use server::Arm;
pub use stack::{Stack, StackOptions};

/// The subscription the devcloud binary prints for clients (any subscription id is accepted).
pub const DEFAULT_SUBSCRIPTION_ID: &str = "6d3f8b1e-0c4a-4d2b-9e57-1a2b3c4d5e6f";

/// A running simulator.
pub struct RunningArm {
    /// Bound address.
    pub addr: SocketAddr,
    /// `https://127.0.0.1:<port>` (or `http://` without TLS).
    pub base_url: String,
    /// The simulator's state and configuration (for in-process inspection).
    pub arm: Arc<Arm>,
    server: ServerHandle,
}

impl RunningArm {
    /// Stops the server; with `snapshot_path` configured, writes the state there first.
    pub async fn shutdown(self) {
        if let Some(path) = self.arm.config.snapshot_path.clone()
            && let Err(e) = admin::write_snapshot(&self.arm, &path)
        {
            tracing::warn!(error = format!("{e:#}"), path = %path.display(), "snapshot on shutdown failed");
        }
        self.server.shutdown().await;
    }

    /// Requests served so far, per operation kind (e.g. `GalleryImageVersions_CreateOrUpdate`).
    pub fn requests_by_kind(&self) -> HashMap<String, u64> {
        self.arm
            .log
            .lock()
            .map(|l| l.by_kind.clone())
            .unwrap_or_default()
    }

    /// Writes a snapshot of the state to `path`.
    pub fn snapshot(&self, path: &std::path::Path) -> anyhow::Result<usize> {
        admin::write_snapshot(&self.arm, path)
    }
}

/// Starts the simulator on `addr` (use port 0 in tests). With `tls`, it serves HTTPS with the devcloud
/// leaf certificate and trusts the devcloud CA when it talks to Azurite (`config.blob_endpoint`).
pub async fn serve(
    config: ArmConfig,
    identity: Identity,
    tls: Option<&Tls>,
    addr: SocketAddr,
) -> anyhow::Result<RunningArm> {
    devcloud_core::install_crypto_provider();
    let blob = match &config.blob_endpoint {
        Some(endpoint) => {
            let mut builder =
                reqwest::Client::builder().timeout(std::time::Duration::from_secs(30));
            if let Some(tls) = tls {
                let pem = tls.ca_pem_bytes().context("reading the devcloud CA")?;
                let cert =
                    reqwest::Certificate::from_pem(&pem).context("parsing the devcloud CA")?;
                builder = builder.add_root_certificate(cert);
            }
            let client = builder.build().context("building the storage client")?;
            Some(blob::Blob::new(client, endpoint, identity.clone()))
        }
        None => None,
    };
    let state = match &config.snapshot_path {
        Some(p) if p.is_file() => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading snapshot {}", p.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("parsing snapshot {}", p.display()))?
        }
        _ => model::State::default(),
    };
    let mut state = state;
    interrupt_runs(&mut state);
    let arm = Arc::new(Arm::new(config, identity, blob, state));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let bound = listener.local_addr().context("reading the bound address")?;
    let (server, scheme) = match tls {
        Some(tls) => (
            devcloud_core::serve_https(
                server::filter(arm.clone(), true),
                listener,
                tls.server_config.clone(),
            )
            .context("starting the HTTPS server")?,
            "https",
        ),
        None => (
            devcloud_core::serve_http(server::filter(arm.clone(), false), listener)
                .context("starting the HTTP server")?,
            "http",
        ),
    };
    Ok(RunningArm {
        addr: bound,
        base_url: format!("{scheme}://{bound}"),
        arm,
        server,
    })
}

/// Image Builder runs that were in flight when a snapshot was taken cannot resume: they end `Failed`.
fn interrupt_runs(state: &mut model::State) {
    let now = chrono::Utc::now();
    let mut ops = Vec::new();
    for r in state.resources.values_mut() {
        if let Some(run) = r.run.as_mut().filter(|run| run.outcome.is_none()) {
            run.outcome = Some((
                "Failed".into(),
                "The build was interrupted by a simulator restart.".into(),
                now,
            ));
            ops.push(run.op_id.clone());
        }
    }
    for id in ops {
        if let Some(op) = state.operations.get_mut(&id) {
            op.end = Some(now);
            op.error = Some(ArmError::invented(
                500,
                "ImageBuildFailed",
                "The build was interrupted by a simulator restart.",
            ));
        }
    }
}
