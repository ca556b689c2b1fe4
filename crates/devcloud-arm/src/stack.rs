//! The whole local ARM stack in one call, for the binary and for end-to-end tests: TLS material,
//! identity key, Azurite (HTTPS + OAuth), the managed-identity endpoint and the ARM simulator.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use devcloud_core::azurite::Azurite;
use devcloud_core::{Identity, ServerHandle, Tls};

use crate::config::{ArmConfig, DEFAULT_SUBSCRIPTION_ID};
use crate::running::RunningArm;

/// Where and how to start the stack. Ports 0 mean ephemeral.
#[derive(Debug, Clone)]
pub struct StackOptions {
    pub state_dir: PathBuf,
    pub arm_port: u16,
    pub msi_port: u16,
    pub blob_port: u16,
    /// Start Azurite (otherwise source blob checks and VHD outputs are off).
    pub azurite: bool,
    pub config: ArmConfig,
    /// Resource groups to create in the default subscription at start, as infra would in Azure
    /// (galleon's `GALLEON_RESOURCE_GROUP`); added to `config.resource_groups`.
    pub resource_groups: Vec<String>,
}

/// The resource group galleon publishes to in its local settings (`GALLEON_RESOURCE_GROUP`).
pub const DEFAULT_RESOURCE_GROUP: &str = "rg-images";

impl StackOptions {
    /// Ephemeral ports, Azurite on, the given config.
    pub fn ephemeral(state_dir: impl Into<PathBuf>, config: ArmConfig) -> Self {
        Self {
            state_dir: state_dir.into(),
            arm_port: 0,
            msi_port: 0,
            blob_port: 0,
            azurite: true,
            config,
            resource_groups: vec![DEFAULT_RESOURCE_GROUP.to_string()],
        }
    }
}

/// A running stack. Dropping it stops Azurite and the servers.
pub struct Stack {
    pub tls: Tls,
    pub identity: Identity,
    /// The `X-IDENTITY-HEADER` secret of the managed-identity endpoint.
    pub identity_secret: String,
    pub azurite: Option<Azurite>,
    pub msi: ServerHandle,
    pub arm: RunningArm,
}

impl Stack {
    pub async fn start(opts: StackOptions) -> anyhow::Result<Stack> {
        devcloud_core::install_crypto_provider();
        let tls = Tls::load_or_create(&opts.state_dir).context("preparing TLS")?;
        let identity =
            Identity::load_or_create(&opts.state_dir).context("preparing the identity key")?;
        let mut config = opts.config;
        for name in &opts.resource_groups {
            config
                .resource_groups
                .push(crate::config::ResourceGroupSeed::new(name));
        }
        let azurite = if opts.azurite {
            let az = devcloud_core::azurite::start(
                &tls,
                opts.blob_port,
                &opts.state_dir.join("azurite"),
            )
            .await
            .context("starting Azurite")?;
            config.blob_endpoint = Some(az.blob_endpoint());
            Some(az)
        } else {
            None
        };
        let identity_secret = uuid::Uuid::new_v4().simple().to_string();
        let msi_listener = tokio::net::TcpListener::bind(("127.0.0.1", opts.msi_port))
            .await
            .with_context(|| format!("binding 127.0.0.1:{}", opts.msi_port))?;
        let msi =
            devcloud_core::serve_http(identity.msi_filter(identity_secret.clone()), msi_listener)
                .context("starting the managed-identity endpoint")?;
        let addr: SocketAddr = ([127, 0, 0, 1], opts.arm_port).into();
        let arm = crate::running::serve(config, identity.clone(), Some(&tls), addr).await?;
        Ok(Stack {
            tls,
            identity,
            identity_secret,
            azurite,
            msi,
            arm,
        })
    }

    /// Environment variables a client (galleon, the Azure SDKs) needs, secret included.
    pub fn env(&self) -> Vec<(String, String)> {
        let ca = std::fs::canonicalize(&self.tls.ca_pem).unwrap_or(self.tls.ca_pem.clone());
        let mut v = vec![
            (
                "AZURE_RESOURCE_MANAGER_ENDPOINT".to_string(),
                self.arm.base_url.clone(),
            ),
            (
                "AZURE_SUBSCRIPTION_ID".to_string(),
                DEFAULT_SUBSCRIPTION_ID.to_string(),
            ),
            (
                "IDENTITY_ENDPOINT".to_string(),
                format!("http://{}/msi/token", self.msi.addr()),
            ),
            ("IDENTITY_HEADER".to_string(), self.identity_secret.clone()),
            ("SSL_CERT_FILE".to_string(), ca.display().to_string()),
            ("REQUESTS_CA_BUNDLE".to_string(), ca.display().to_string()),
        ];
        if let Some(az) = &self.azurite {
            v.push((
                "AZURE_STORAGE_BLOB_ENDPOINT".to_string(),
                az.blob_endpoint(),
            ));
        }
        v
    }

    /// Stops the ARM and identity servers, then Azurite.
    pub async fn shutdown(self) {
        self.arm.shutdown().await;
        self.msi.shutdown().await;
        drop(self.azurite);
    }
}
