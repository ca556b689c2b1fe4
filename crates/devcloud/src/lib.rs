//! Galleon's local cloud, started as one piece: the devcloud CA and managed identity, Azurite (real blob
//! storage), the ARM simulator, Service Bus and Event Grid from the routing file, and the Functions host
//! running galleon from this repository's host.json and functions/. Used by `devcloud up`, the demo and
//! the end-to-end tests.

pub mod blob;
pub mod chaos;
pub mod connection;
pub mod follow;
pub mod receiver;
pub mod resource_events;
pub mod scale;
pub mod settings;
pub mod upload;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, Result};
use devcloud_core::{Identity, ServerHandle, Tls};

/// Where every service listens. `Ports::ephemeral()` for tests, `Ports::default()` for `devcloud up`.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub azurite: u16,
    pub arm: u16,
    pub identity: u16,
    pub service_bus: u16,
    pub event_grid: u16,
    pub host: u16,
    /// The Microsoft Entra token endpoint stand-in (HTTPS).
    pub entra: u16,
}

impl Default for Ports {
    fn default() -> Self {
        Ports {
            azurite: 10000,
            arm: 7443,
            identity: 7444,
            service_bus: 7445,
            event_grid: 7446,
            host: 7071,
            entra: 7447,
        }
    }
}

impl Ports {
    pub fn ephemeral() -> Ports {
        Ports {
            azurite: 0,
            arm: 0,
            identity: 0,
            service_bus: 0,
            event_grid: 0,
            host: 0,
            entra: 0,
        }
    }
}

/// How to start the local cloud.
#[derive(Debug, Clone)]
pub struct Options {
    /// The function app: host.json and the function folders (the repository root, or an unpacked
    /// release package).
    pub app_root: PathBuf,
    /// The routing file the Service Bus and Event Grid entities are made from, as infra does in Azure
    /// (default: `<app_root>/events/subscriptions.json`; a release package holds none).
    pub routing_file: PathBuf,
    /// The directory holding the `galleon` executable (put on the host's PATH, as host.json names `galleon`).
    pub galleon_dir: PathBuf,
    /// CA, identity key, Azurite's working directory.
    pub state_dir: PathBuf,
    pub ports: Ports,
    /// Scales ARM latencies (0.02: a 10-minute replication takes 12 s).
    pub arm_time_factor: f64,
    /// Scales Event Grid's retry schedule.
    pub grid_time_factor: f64,
    /// Extra app settings for galleon (override the defaults below).
    pub settings: BTreeMap<String, String>,
    /// ARM configuration tweaks (latency, throttling) beyond the time factor.
    pub arm: devcloud_arm::ArmConfig,
    /// Fault injection: the host makes every message and event arrive twice (at-least-once delivery).
    pub deliver_everything_twice: bool,
    /// Fault injection: the host makes every message and event arrive this many more times (at least
    /// once more with `deliver_everything_twice`).
    pub extra_deliveries: u32,
    /// Creates the Service Bus topic without duplicate detection although events/subscriptions.json
    /// declares it, as in an Azure namespace whose topic was made without it (galleon must stay
    /// idempotent on its own).
    pub service_bus_duplicate_detection_off: bool,
    /// Azurite keeps its blobs on disk under the state directory (else in memory), so
    /// [`Cloud::restart_azurite`] keeps them, as Azure Storage does across a node restart.
    pub azurite_on_disk: bool,
    /// App registrations the Entra token endpoint knows (client id, tenants, secret, federated
    /// credentials); with `arm.subscriptions` naming subscriptions of other tenants.
    pub entra: devcloud_core::EntraConfig,
}

impl Options {
    pub fn new(app_root: PathBuf, galleon_dir: PathBuf, state_dir: PathBuf) -> Options {
        Options {
            routing_file: app_root.join("events/subscriptions.json"),
            app_root,
            galleon_dir,
            state_dir,
            ports: Ports::default(),
            arm_time_factor: 0.02,
            grid_time_factor: 0.01,
            settings: BTreeMap::new(),
            arm: devcloud_arm::ArmConfig {
                log_requests: false,
                // Image Builder's output VHDs: 64 MiB instead of the template's 30+ GiB, so a laptop's
                // Azurite holds them and galleon checks them quickly.
                image_builder_vhd_bytes: Some(64 << 20),
                ..Default::default()
            },
            deliver_everything_twice: false,
            extra_deliveries: 0,
            service_bus_duplicate_detection_off: false,
            azurite_on_disk: false,
            entra: Default::default(),
        }
    }
}

/// Subscriptions of other tenants and the app registrations that reach them (`devcloud up --tenants`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Tenants {
    pub subscriptions: Vec<devcloud_arm::SubscriptionSeed>,
    pub apps: Vec<devcloud_core::EntraApp>,
}

impl Tenants {
    /// Reads a tenants file (JSON).
    pub fn read(path: &std::path::Path) -> Result<Tenants> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

/// The gallery galleon publishes to locally.
pub const RESOURCE_GROUP: &str = "rg-images";
/// The resource group of the storage account galleon reads VHDs from (where the local ARM reports
/// the Azurite account).
pub const INGEST_RESOURCE_GROUP: &str = devcloud_arm::DEFAULT_STORAGE_RESOURCE_GROUP;
pub const GALLERY: &str = "golden";
pub const HOME_REGION: &str = "westeurope";
pub const TARGET_REGIONS: &str = "westeurope,northeurope,eastus2";
/// The container uploads go to.
pub const IMAGES_CONTAINER: &str = "images";
/// Galleon's public Event Grid topic.
pub const EVENTS_TOPIC: &str = "galleon-events";

/// The running local cloud.
pub struct Cloud {
    pub tls: Tls,
    pub identity: Identity,
    pub azurite: devcloud_core::Azurite,
    pub arm: devcloud_arm::RunningArm,
    pub service_bus: devcloud_messaging::servicebus::RunningServiceBus,
    pub event_grid: devcloud_messaging::eventgrid::RunningEventGrid,
    pub host: devcloud_host::RunningHost,
    msi: ServerHandle,
    entra: ServerHandle,
    /// The app settings galleon runs with.
    pub settings: BTreeMap<String, String>,
    /// `https://127.0.0.1:<port>/devstoreaccount1`: the blob proxy in front of Azurite (it raises the
    /// storage events), the endpoint every client uses.
    pub blob_endpoint: String,
    /// The Functions host's key (random per start): `authLevel: function` endpoints such as `/api/runs`
    /// answer 401 without it, as in Azure.
    pub functions_key: String,
}

/// The resource groups (subscription, name) galleon's settings name: its own, those of the allowed
/// galleries that are not wildcards, and the ingest storage account's.
fn resource_groups_named(settings: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let sub = settings
        .get("GALLEON_SUBSCRIPTION_ID")
        .cloned()
        .unwrap_or_else(|| devcloud_arm::DEFAULT_SUBSCRIPTION_ID.to_owned());
    let mut groups = vec![(
        devcloud_arm::DEFAULT_SUBSCRIPTION_ID.to_owned(),
        INGEST_RESOURCE_GROUP.to_owned(),
    )];
    if let Some(rg) = settings.get("GALLEON_RESOURCE_GROUP") {
        groups.push((sub.clone(), rg.clone()));
    }
    for scope in settings
        .get("GALLEON_ALLOWED_GALLERIES")
        .map(|v| v.split(',').collect::<Vec<_>>())
        .unwrap_or_default()
    {
        if let [s, rg, _] = scope.trim().split('/').collect::<Vec<_>>()[..]
            && s != "*"
            && rg != "*"
            && !rg.is_empty()
        {
            groups.push((s.to_owned(), rg.to_owned()));
        }
    }
    groups
}

fn free_port(wanted: u16) -> Result<u16> {
    if wanted != 0 {
        return Ok(wanted);
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// A free port for a server that starts later, held bound until then so that nothing else (another
/// cloud's free port, say) takes it meanwhile: drop the listener just before the server binds.
fn reserve_port(wanted: u16) -> Result<(u16, Option<std::net::TcpListener>)> {
    if wanted != 0 {
        return Ok((wanted, None));
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok((listener.local_addr()?.port(), Some(listener)))
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

impl Cloud {
    pub async fn start(options: Options) -> Result<Cloud> {
        devcloud_core::install_crypto_provider();
        std::fs::create_dir_all(&options.state_dir)
            .with_context(|| format!("creating {}", options.state_dir.display()))?;
        let tls = Tls::load_or_create(&options.state_dir).context("making the local CA")?;
        let identity =
            Identity::load_or_create(&options.state_dir).context("making the identity key")?;
        let msi_secret = uuid::Uuid::new_v4().simple().to_string();
        let msi = devcloud_core::serve_http(
            identity.msi_filter(msi_secret.clone()),
            tokio::net::TcpListener::bind(addr(options.ports.identity))
                .await
                .context("binding the identity endpoint")?,
        )
        .context("starting the identity endpoint")?;
        // The Entra token endpoint over HTTPS (MSAL and azure-identity refuse an http authority). The
        // tenants of the configured subscriptions exist there, whether or not an app is consented in them.
        let mut entra_config = options.entra.clone();
        entra_config.tenants.extend(
            options
                .arm
                .subscriptions
                .iter()
                .filter_map(|s| s.tenant_id.clone()),
        );
        let entra = devcloud_core::serve_https(
            devcloud_core::Entra::new(identity.clone(), entra_config).filter(),
            tokio::net::TcpListener::bind(addr(options.ports.entra))
                .await
                .context("binding the Entra token endpoint")?,
            tls.server_config.clone(),
        )
        .context("starting the Entra token endpoint")?;

        // Azurite itself listens on a free port; everyone is given the blob proxy in front of it
        // (on `ports.azurite`), which raises the storage events where Azure does.
        let azurite_dir = options.state_dir.join("azurite");
        let azurite = if options.azurite_on_disk {
            devcloud_core::azurite::start_on_disk(&tls, free_port(0)?, &azurite_dir).await
        } else {
            devcloud_core::azurite::start(&tls, free_port(0)?, &azurite_dir).await
        }
        .context("starting Azurite")?;

        let (host_port, host_reservation) = reserve_port(options.ports.host)?;
        let routing = devcloud_messaging::Routing::load(&options.routing_file)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("reading events/subscriptions.json")?;
        // Azure gives every topic keys; galleon's refuses them (disableLocalAuth in the routing file).
        let topic_key = uuid::Uuid::new_v4().simple().to_string();
        let mut messaging = devcloud_messaging::MessagingOptions::new(
            routing,
            devcloud_messaging::auth::identity_verifier(identity.clone()),
            &topic_key,
        );
        messaging.tls = Some(tls.server_config.clone());
        messaging.ca_pem = Some(tls.ca_pem_bytes().context("reading the CA")?);
        messaging.servicebus_addr = addr(options.ports.service_bus);
        messaging.eventgrid_addr = addr(options.ports.event_grid);
        messaging.functions_host = Some(format!("http://127.0.0.1:{host_port}"));
        messaging.time_factor = options.grid_time_factor;
        messaging.duplicate_detection_off = options.service_bus_duplicate_detection_off;
        // The routing file's role assignments name galleon's managed identity.
        messaging
            .principals
            .insert("galleon".to_owned(), identity.object_id.clone());
        let storage_identity = identity.clone();
        messaging.blob_watch = Some(devcloud_messaging::eventgrid::BlobWatchConfig {
            account_url: azurite.blob_endpoint(),
            auth: devcloud_messaging::eventgrid::StorageAuth::Bearer(Arc::new(move || {
                Ok(storage_identity.issue("https://storage.azure.com"))
            })),
            subscription_id: devcloud_arm::DEFAULT_SUBSCRIPTION_ID.to_owned(),
            resource_group: INGEST_RESOURCE_GROUP.to_owned(),
            listen: addr(options.ports.azurite),
        });
        let (service_bus, event_grid) = devcloud_messaging::start(messaging)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("starting Service Bus and Event Grid")?;
        if !event_grid.blob_watch_ready(Duration::from_secs(20)).await {
            anyhow::bail!("the blob proxy in front of Azurite did not start within 20 s");
        }
        let blob_endpoint = event_grid
            .blob_endpoint()
            .context("the local Event Grid has no blob endpoint")?;

        let mut arm_config = options.arm.clone();
        arm_config.time_factor = options.arm_time_factor;
        arm_config.blob_endpoint = Some(blob_endpoint.clone());
        let arm = devcloud_arm::serve(
            arm_config,
            identity.clone(),
            Some(&tls),
            addr(options.ports.arm),
        )
        .await
        .context("starting the ARM simulator")?;
        // Its writes, deletes and actions raise resource events on Event Grid's `resources` topic.
        resource_events::connect(&arm, &event_grid);

        let path = std::env::var("PATH").unwrap_or_default();
        let mut settings: BTreeMap<String, String> = [
            ("FUNCTIONS_WORKER_RUNTIME", "custom".to_owned()),
            (
                "ServiceBusConnection__fullyQualifiedNamespace",
                service_bus.addr.to_string(),
            ),
            (
                "GalleonEventsTopic__topicEndpointUri",
                format!("{}/topics/galleon-events/api/events", event_grid.url()),
            ),
            (
                "IDENTITY_ENDPOINT",
                format!("http://{}/msi/token", msi.addr()),
            ),
            ("IDENTITY_HEADER", msi_secret),
            // Where an app gets tokens of other tenants (client credentials), as from Entra.
            ("AZURE_AUTHORITY_HOST", format!("https://{}", entra.addr())),
            ("SSL_CERT_FILE", tls.ca_pem.display().to_string()),
            ("GALLEON_INSTANCE", "devcloud".to_owned()),
            ("GALLEON_ARM_ENDPOINT", arm.base_url.clone()),
            // The only storage account galleon may send its storage token to.
            ("GALLEON_STORAGE_ACCOUNTS", blob_endpoint.clone()),
            (
                "GALLEON_SUBSCRIPTION_ID",
                devcloud_arm::DEFAULT_SUBSCRIPTION_ID.to_owned(),
            ),
            ("GALLEON_RESOURCE_GROUP", RESOURCE_GROUP.to_owned()),
            ("GALLEON_GALLERY", GALLERY.to_owned()),
            ("GALLEON_LOCATION", HOME_REGION.to_owned()),
            ("GALLEON_TARGET_REGIONS", TARGET_REGIONS.to_owned()),
            ("GALLEON_FOLLOWUP_SECONDS", "1".to_owned()),
            ("GALLEON_BARE_VHD_SETTLE_SECONDS", "2".to_owned()),
            ("GALLEON_LOG_FORMAT", "text".to_owned()),
            // Patch Wednesday (docs/schedules.md); tests fire the timer by hand.
            ("GALLEON_BUILD_SCHEDULE", "0 0 9 9-15 * WED".to_owned()),
            ("GALLEON_LIFECYCLE_SCHEDULE", "0 30 2 * * *".to_owned()),
            (
                "GALLEON_STATE_CONTAINER_URL",
                format!("{}/galleon-state", blob_endpoint.trim_end_matches('/')),
            ),
            ("RUST_LOG", "info".to_owned()),
            ("PATH", format!("{}:{path}", options.galleon_dir.display())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        settings.extend(options.settings.clone());
        // The resource groups galleon's settings name exist, as infra would have made them in Azure.
        let location = settings
            .get("GALLEON_LOCATION")
            .cloned()
            .unwrap_or_else(|| HOME_REGION.to_owned());
        for (subscription, group) in resource_groups_named(&settings) {
            arm.arm
                .ensure_resource_group(&subscription, &group, Some(&location));
        }

        let functions_key = uuid::Uuid::new_v4().simple().to_string();
        let app = stage_app(&options.app_root, &options.state_dir.join("app"))
            .context("laying out the function app as the Functions host reads it")?;
        let loaded = devcloud_host::Host::load(&app, settings.clone())
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("loading the function app")?;
        drop(host_reservation);
        let host = loaded
            .start(devcloud_host::HostConfig {
                http_addr: addr(host_port),
                ca_cert_pem: Some(tls.ca_pem.clone()),
                receive_timeout_secs: 1,
                extra_deliveries: options
                    .extra_deliveries
                    .max(u32::from(options.deliver_everything_twice)),
                host_keys: vec![functions_key.clone()],
                ..devcloud_host::HostConfig::default()
            })
            .await
            .context("starting the Functions host")?;

        Ok(Cloud {
            tls,
            identity,
            azurite,
            arm,
            service_bus,
            event_grid,
            host,
            msi,
            entra,
            settings,
            blob_endpoint,
            functions_key,
        })
    }

    /// A client that trusts the local CA.
    pub fn client(&self) -> Result<reqwest::Client> {
        let ca = self.tls.ca_pem_bytes().context("reading the CA")?;
        Ok(reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca)?)
            .build()?)
    }

    /// Blob storage as a user with the data role would see it.
    pub fn storage(&self) -> Result<blob::Storage> {
        Ok(blob::Storage::new(
            self.client()?,
            self.blob_endpoint.clone(),
            self.identity.clone(),
        ))
    }

    /// Subscribes a webhook to galleon's public topic (the handshake runs first).
    pub async fn subscribe(&self, name: &str, endpoint: &str) -> Result<()> {
        subscribe(&self.client()?, &self.event_grid.url(), name, endpoint).await
    }

    /// Everything an outside client needs (see [`connection::Connection`]).
    pub fn connection(&self) -> connection::Connection {
        let setting = |name: &str| self.settings.get(name).cloned().unwrap_or_default();
        connection::Connection {
            arm_endpoint: self.arm.base_url.clone(),
            subscription_id: devcloud_arm::DEFAULT_SUBSCRIPTION_ID.to_owned(),
            tenant_id: self.identity.tenant_id.clone(),
            blob_endpoint: self.blob_endpoint.clone(),
            storage_account: connection::AZURITE_ACCOUNT.to_owned(),
            storage_connection_string: connection::azurite_connection_string(&self.blob_endpoint),
            identity_endpoint: format!("http://{}/msi/token", self.msi.addr()),
            identity_header: setting("IDENTITY_HEADER"),
            entra_authority: format!("https://{}", self.entra.addr()),
            ca_file: self.tls.ca_pem.clone(),
            service_bus_endpoint: self.service_bus.url(),
            service_bus_namespace: self.service_bus.addr.to_string(),
            event_grid_endpoint: self.event_grid.url(),
            event_grid_topic: EVENTS_TOPIC.to_owned(),
            event_grid_topic_endpoint: format!(
                "{}/topics/{EVENTS_TOPIC}/api/events",
                self.event_grid.url()
            ),
            functions_host: format!("http://{}", self.host.http_addr),
            functions_key: self.functions_key.clone(),
            images_container: IMAGES_CONTAINER.to_owned(),
            pid: std::process::id(),
        }
    }

    /// Where everything listens, for people.
    pub fn describe(&self) -> String {
        format!(
            "blob storage            {}  (Azurite, through the event proxy)\nResource Manager        {}\nmanaged identity        http://{}/msi/token\nEntra token endpoint    https://{}/{{tenant}}/oauth2/v2.0/token\nService Bus             {}\nEvent Grid              {}  (topic galleon-events: /topics/galleon-events/api/events)\nFunctions host          http://{}\nCA certificate          {}",
            self.blob_endpoint,
            self.arm.base_url,
            self.msi.addr(),
            self.entra.addr(),
            self.service_bus.url(),
            self.event_grid.url(),
            self.host.http_addr,
            self.tls.ca_pem.display()
        )
    }

    /// Stops everything, host first (so galleon finishes what it is doing), Azurite last.
    pub async fn stop(self) {
        self.host.shutdown().await;
        self.event_grid.shutdown().await;
        self.service_bus.shutdown().await;
        self.arm.shutdown().await;
        self.msi.shutdown().await;
        self.entra.shutdown().await;
        let mut azurite = self.azurite;
        azurite.stop();
    }
}

/// Subscribes webhook `endpoint` to galleon's public topic on the Event Grid at `event_grid` (the
/// handshake runs first), through the admin endpoint.
pub async fn subscribe(
    client: &reqwest::Client,
    event_grid: &str,
    name: &str,
    endpoint: &str,
) -> Result<()> {
    let response = client
        .post(format!("{event_grid}/_devcloud/subscriptions"))
        .json(&serde_json::json!({"name": name, "topic": EVENTS_TOPIC, "endpoint": endpoint, "eventDeliverySchema": "CloudEventSchemaV1_0"}))
        .send()
        .await
        .context("subscribing")?;
    if !response.status().is_success() {
        anyhow::bail!(
            "subscribing {endpoint} failed: {} {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

/// Removes a webhook subscription made with [`subscribe`].
pub async fn unsubscribe(client: &reqwest::Client, event_grid: &str, name: &str) -> Result<()> {
    let response = client
        .delete(format!("{event_grid}/_devcloud/subscriptions/{name}"))
        .send()
        .await
        .context("unsubscribing")?;
    if !response.status().is_success() {
        anyhow::bail!("unsubscribing {name} failed: {}", response.status());
    }
    Ok(())
}

/// The function app as the Functions host reads it: a repository keeping its functions under
/// `functions/<Name>/` is laid out in `staged` as the release package is (`scripts/package.sh`): host.json,
/// `<Name>/function.json`, and the app files the handler reads from its directory (`local.settings.json`,
/// `builds.json`); an app already in that layout (an unpacked package) is used as it is.
pub fn stage_app(app_root: &Path, staged: &Path) -> Result<PathBuf> {
    let functions = app_root.join("functions");
    if !functions.is_dir() {
        return Ok(app_root.to_path_buf());
    }
    if staged.exists() {
        std::fs::remove_dir_all(staged)
            .with_context(|| format!("clearing {}", staged.display()))?;
    }
    std::fs::create_dir_all(staged).with_context(|| format!("creating {}", staged.display()))?;
    for file in ["host.json", "local.settings.json", "builds.json"] {
        let from = app_root.join(file);
        if from.is_file() {
            std::fs::copy(&from, staged.join(file))
                .with_context(|| format!("copying {}", from.display()))?;
        }
    }
    for entry in std::fs::read_dir(&functions)
        .with_context(|| format!("reading {}", functions.display()))?
        .flatten()
    {
        let json = entry.path().join("function.json");
        if json.is_file() {
            let dir = staged.join(entry.file_name());
            std::fs::create_dir_all(&dir)?;
            std::fs::copy(&json, dir.join("function.json"))
                .with_context(|| format!("copying {}", json.display()))?;
        }
    }
    Ok(staged.to_path_buf())
}

/// The repository root: the nearest ancestor holding host.json and events/subscriptions.json.
pub fn find_app_root(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|d| d.join("host.json").is_file() && d.join("events/subscriptions.json").is_file())
        .map(Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repository_is_laid_out_as_the_host_reads_an_app_and_a_package_is_used_as_it_is() {
        let repo = tempfile::tempdir().expect("dir");
        let write = |path: &str, text: &str| {
            let p = repo.path().join(path);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("dir");
            std::fs::write(p, text).expect("write");
        };
        write("host.json", "{}");
        write("functions/Work/function.json", r#"{"bindings": []}"#);
        write("functions/README.md", "not a function");
        write("events/subscriptions.json", "{}");
        let staged = repo.path().join(".devcloud/app");
        let app = stage_app(repo.path(), &staged).expect("staged");
        assert_eq!(app, staged);
        assert!(app.join("host.json").is_file());
        assert!(app.join("Work/function.json").is_file());
        assert!(!app.join("functions").exists() && !app.join("events").exists());
        // Staged again from scratch: a function removed from the repository is gone.
        std::fs::remove_dir_all(repo.path().join("functions/Work")).expect("rm");
        write("functions/Other/function.json", r#"{"bindings": []}"#);
        let again = stage_app(repo.path(), &staged).expect("staged");
        assert!(!again.join("Work").exists() && again.join("Other/function.json").is_file());
        // An app already in the host's layout (an unpacked package) is used where it is.
        let package = tempfile::tempdir().expect("dir");
        std::fs::create_dir_all(package.path().join("Work")).expect("dir");
        assert_eq!(
            stage_app(package.path(), &staged).expect("as it is"),
            package.path()
        );
    }

    #[test]
    fn the_groups_galleons_settings_name_are_created() {
        let settings: BTreeMap<String, String> = [
            (
                "GALLEON_SUBSCRIPTION_ID",
                "11111111-2222-3333-4444-555555555555",
            ),
            ("GALLEON_RESOURCE_GROUP", "rg-own"),
            (
                "GALLEON_ALLOWED_GALLERIES",
                "22222222-2222-3333-4444-555555555555/rg-other/g, */rg-any/g,x/*/g",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let groups = resource_groups_named(&settings);
        assert_eq!(
            groups,
            [
                (
                    devcloud_arm::DEFAULT_SUBSCRIPTION_ID.to_owned(),
                    INGEST_RESOURCE_GROUP.to_owned()
                ),
                (
                    "11111111-2222-3333-4444-555555555555".to_owned(),
                    "rg-own".to_owned()
                ),
                (
                    "22222222-2222-3333-4444-555555555555".to_owned(),
                    "rg-other".to_owned()
                ),
            ]
        );
    }
}
