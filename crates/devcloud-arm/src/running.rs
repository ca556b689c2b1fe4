//! Starting the simulator: [`serve`] binds the listener, loads a snapshot if configured, and returns a
//! [`RunningArm`] handle.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use devcloud_core::{Identity, ServerHandle, Tls};

use crate::arm::Arm;
use crate::config::ArmConfig;
use crate::error::ArmError;
use crate::{admin, blob, model, server};

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

    /// The most recent requests, oldest first.
    pub fn request_log(&self) -> Vec<crate::arm::LogEntry> {
        self.arm
            .log
            .lock()
            .map(|l| l.entries.iter().cloned().collect())
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
    let mut seeds = config.resource_groups.clone();
    // The storage accounts' groups exist too (in the default subscription when the account is in all).
    for a in config.storage_accounts() {
        seeds.push(crate::config::ResourceGroupSeed {
            subscription: a
                .subscription
                .clone()
                .unwrap_or_else(|| crate::config::DEFAULT_SUBSCRIPTION_ID.to_string()),
            name: a.resource_group.clone(),
            location: a.location.clone(),
        });
    }
    let arm = Arc::new(Arm::new(config, identity, blob, state));
    for g in &seeds {
        arm.ensure_resource_group(&g.subscription, &g.name, g.location.as_deref());
    }
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
