//! One call that starts the local Service Bus and Event Grid as `devcloud up` needs them: entities
//! and subscriptions from the routing file, the devcloud identity for bearer tokens, the devcloud
//! certificate for HTTPS, function subscriptions delivered to the local Functions host, and the blob
//! system topic over Azurite.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::Verifier;
use crate::eventgrid::{self, BlobWatchConfig, EventGridConfig, RunningEventGrid};
use crate::routing::{Routing, RoutingError};
use crate::servicebus::{self, EntityConfig, RunningServiceBus};

/// Options for [`start`].
#[derive(Clone)]
pub struct MessagingOptions {
    pub routing: Routing,
    /// Verifies bearer tokens (use [`crate::auth::identity_verifier`] with devcloud-core's identity).
    pub verifier: Verifier,
    /// Serve HTTPS with this configuration (devcloud-core's `Tls::server_config`); `None` = plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The devcloud CA (PEM), trusted by Event Grid's outgoing calls (webhooks, Azurite).
    pub ca_pem: Option<Vec<u8>>,
    pub servicebus_addr: SocketAddr,
    pub eventgrid_addr: SocketAddr,
    /// The `aeg-sas-key` of every custom topic.
    pub topic_key: String,
    /// Base URL of the local Functions host (`http://127.0.0.1:7071`).
    pub functions_host: Option<String>,
    /// The blob system topic (`None` = no Azurite watching).
    pub blob_watch: Option<BlobWatchConfig>,
    /// Scales Event Grid's retry schedule and event TTL (1.0 = Azure's).
    pub time_factor: f64,
    /// Defaults for Service Bus entities before the routing file's settings (Azure's by default:
    /// lock 1 minute, 10 deliveries, no duplicate detection).
    pub entity_defaults: EntityConfig,
    /// Forces duplicate detection off on every Service Bus queue and topic, even where the routing
    /// file declares it (as in an Azure namespace whose topic was created without it).
    pub duplicate_detection_off: bool,
    /// The object ids of the principals the routing file's role assignments name (`galleon`: the
    /// managed identity the local identity endpoint issues tokens for).
    pub principals: BTreeMap<String, String>,
}

impl MessagingOptions {
    /// Defaults of `devcloud up`: ports 7445 (Service Bus) and 7446 (Event Grid), real time.
    pub fn new(routing: Routing, verifier: Verifier, topic_key: &str) -> MessagingOptions {
        MessagingOptions {
            routing,
            verifier,
            tls: None,
            ca_pem: None,
            servicebus_addr: SocketAddr::from(([127, 0, 0, 1], 7445)),
            eventgrid_addr: SocketAddr::from(([127, 0, 0, 1], 7446)),
            topic_key: topic_key.to_string(),
            functions_host: None,
            blob_watch: None,
            time_factor: 1.0,
            entity_defaults: EntityConfig::default(),
            duplicate_detection_off: false,
            principals: BTreeMap::new(),
        }
    }
}

/// Why the messaging services did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid routing")]
    Routing(#[from] RoutingError),
    #[error("cannot start the local Service Bus on {addr}")]
    ServiceBus {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the local Event Grid")]
    EventGrid(#[from] eventgrid::server::ConfigError),
}

/// Starts both services.
pub async fn start(
    o: MessagingOptions,
) -> Result<(RunningServiceBus, RunningEventGrid), StartError> {
    let access = o.routing.role_access(&o.principals)?;
    let mut sb_config = o.routing.servicebus_config(&o.entity_defaults)?;
    sb_config.duplicate_detection_off = o.duplicate_detection_off;
    sb_config.access = access.service_bus;
    let sb = servicebus::serve(
        sb_config,
        o.verifier.clone(),
        o.tls.clone(),
        o.servicebus_addr,
    )
    .await
    .map_err(|source| StartError::ServiceBus {
        addr: o.servicebus_addr,
        source,
    })?;
    let mut eg_config = EventGridConfig::from_routing(&o.routing, &o.topic_key)?;
    for topic in &mut eg_config.topics {
        topic.access = access.topics.get(&topic.name).cloned().flatten();
    }
    eg_config.delivery.functions_host = o.functions_host.clone();
    eg_config.delivery.time_factor = o.time_factor;
    eg_config.delivery.timeout = Duration::from_secs(30);
    eg_config.blob_watch = o.blob_watch.clone();
    eg_config.ca_pem = o.ca_pem.clone();
    if let Some(w) = &o.blob_watch {
        eg_config.subscription_id = w.subscription_id.clone();
        eg_config.resource_group = w.resource_group.clone();
    }
    let eg = eventgrid::serve(eg_config, o.verifier, o.tls, o.eventgrid_addr).await?;
    Ok((sb, eg))
}
