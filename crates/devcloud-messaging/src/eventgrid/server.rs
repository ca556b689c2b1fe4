//! The Event Grid HTTP server: custom topic publish (`POST [/topics/{topic}]/api/events`) with
//! `aeg-sas-key` or bearer auth, the service's error bodies and 1 MB limits; the admin endpoint
//! (`/_devcloud/...`); and the wiring of the blob watcher and the delivery engine.
//!
//! Topic selection: `POST /topics/{name}/api/events`, or `POST /api/events` with a `Host` whose
//! first label is the topic name (`galleon-events.localhost:7446`), or `POST /api/events` when
//! there is exactly one custom topic.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::blobwatch::{self, BlobWatchConfig, RunningProxy, WatchStatus};
use super::delivery::{
    DeliverySettings, Destination, Dispatcher, Subscription, SubscriptionConfig,
};
use super::filter::{EventFilter, FilterError};
use super::model::{
    CLOUDEVENTS_CONTENT_TYPE_REQUIRED, Schema, cloudevents_content_type, parse_publish,
};
use crate::auth::{EVENTGRID_AUDIENCE, Verifier, bearer_token};
use crate::httpserv::{self, BodyError, Req, Resp, Server};
use crate::routing::Routing;

/// Largest publish request (1 MB).
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// The name of the blob storage system topic in subscriptions.
pub const STORAGE_TOPIC: &str = "storage";
/// The name of the resource events system topic (Azure Resource Manager's `Microsoft.Resources.*`
/// events, see [`super::resources`]) in subscriptions.
pub use super::resources::RESOURCES_TOPIC;

/// A custom topic.
#[derive(Debug, Clone)]
pub struct TopicConfig {
    pub name: String,
    pub input_schema: Schema,
    /// The `aeg-sas-key` access key.
    pub key: String,
    /// `disableLocalAuth`: the key and shared access signatures are refused; only Entra ID tokens publish.
    pub disable_local_auth: bool,
    /// The topic's data-plane role assignments: a token's principal publishes only with EventGrid Data
    /// Sender (401 otherwise, as Azure answers). `None`: roles are not checked (a component test's topic
    /// that declares none; galleon's always does).
    pub access: Option<crate::rbac::Access>,
}

/// Everything the local Event Grid needs.
#[derive(Clone, Default)]
pub struct EventGridConfig {
    pub topics: Vec<TopicConfig>,
    pub subscriptions: Vec<SubscriptionConfig>,
    pub delivery: DeliverySettings,
    /// The blob system topic (`None`: no Azurite watching).
    pub blob_watch: Option<BlobWatchConfig>,
    /// Extra CA (PEM) trusted for outgoing HTTPS (webhooks, Azurite): the devcloud CA.
    pub ca_pem: Option<Vec<u8>>,
    /// For custom topic resource ids.
    pub subscription_id: String,
    pub resource_group: String,
}

/// A routing-file subscription that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("Event Grid subscription {0}: unknown schema '{1}'")]
    Schema(String, String),
    #[error("Event Grid subscription {0}: needs a function or an endpoint")]
    NoDestination(String),
    #[error("Event Grid subscription {0}")]
    Filter(String, #[source] FilterError),
    #[error("Event Grid subscription {0}: {1}")]
    Setting(String, String),
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
    #[error("the CA certificate is not valid PEM")]
    Ca(#[source] reqwest::Error),
    #[error("cannot listen")]
    Listen(#[source] std::io::Error),
    #[error("cannot start the blob proxy on {0}")]
    BlobProxy(SocketAddr, #[source] std::io::Error),
}

impl EventGridConfig {
    /// Topics and subscriptions from the routing file; every topic gets `key`.
    pub fn from_routing(routing: &Routing, key: &str) -> Result<EventGridConfig, ConfigError> {
        let mut c = EventGridConfig {
            subscription_id: "00000000-0000-0000-0000-000000000000".into(),
            resource_group: "devcloud".into(),
            ..Default::default()
        };
        let Some(eg) = &routing.event_grid else {
            return Ok(c);
        };
        for t in &eg.topics {
            c.topics.push(TopicConfig {
                name: t.name.clone(),
                input_schema: Schema::parse(&t.input_schema)
                    .ok_or_else(|| ConfigError::Schema(t.name.clone(), t.input_schema.clone()))?,
                key: key.to_string(),
                disable_local_auth: t.disable_local_auth,
                access: None,
            });
        }
        for s in &eg.subscriptions {
            let destination = match (&s.function, &s.endpoint) {
                (_, Some(url)) => Destination::Webhook(url.clone()),
                (Some(f), None) => Destination::Function(f.clone()),
                (None, None) => return Err(ConfigError::NoDestination(s.name.clone())),
            };
            let schema = Schema::parse(&s.event_delivery_schema).ok_or_else(|| {
                ConfigError::Schema(s.name.clone(), s.event_delivery_schema.clone())
            })?;
            let mut sc = SubscriptionConfig::new(&s.name, &s.topic, destination, schema);
            let flat = !s.included_event_types.is_empty()
                || !s.subject_begins_with.is_empty()
                || !s.subject_ends_with.is_empty();
            sc.filter = match &s.filter {
                Some(_) if flat => {
                    return Err(ConfigError::Setting(
                        s.name.clone(),
                        "declare the filter once: in `filter`, not also in the flat fields".into(),
                    ));
                }
                Some(f) => {
                    EventFilter::from_arm(f).map_err(|e| ConfigError::Filter(s.name.clone(), e))?
                }
                None => EventFilter {
                    included_event_types: s.included_event_types.clone(),
                    subject_begins_with: s.subject_begins_with.clone(),
                    subject_ends_with: s.subject_ends_with.clone(),
                    ..Default::default()
                },
            };
            let retry = s.retry_policy.clone().unwrap_or_default();
            if let Some(n) = retry.max_delivery_attempts.or(s.max_delivery_attempts) {
                if !(1..=30).contains(&n) {
                    return Err(ConfigError::Setting(
                        s.name.clone(),
                        format!("maxDeliveryAttempts {n} is not within 1 to 30"),
                    ));
                }
                sc.max_delivery_attempts = n;
            }
            if let Some(m) = retry.event_time_to_live_in_minutes {
                if !(1..=1440).contains(&m) {
                    return Err(ConfigError::Setting(
                        s.name.clone(),
                        format!("eventTimeToLiveInMinutes {m} is not within 1 to 1440"),
                    ));
                }
                sc.event_ttl = Duration::from_secs(u64::from(m) * 60);
            }
            if let Some(d) = &s.dead_letter_destination {
                if d.endpoint_type != "StorageBlob" {
                    return Err(ConfigError::Setting(
                        s.name.clone(),
                        format!(
                            "deadLetterDestination endpointType '{}' (only StorageBlob exists)",
                            d.endpoint_type
                        ),
                    ));
                }
                sc.dead_letter_container = Some(d.properties.blob_container_name.clone());
            }
            c.subscriptions.push(sc);
        }
        Ok(c)
    }

    /// The id of the `resources` topic in handshakes and the admin listing: the subscription.
    fn resources_topic_id(&self) -> String {
        format!("/subscriptions/{}", self.subscription_id)
    }

    fn topic_id(&self, name: &str) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.EventGrid/topics/{name}",
            self.subscription_id, self.resource_group
        )
    }
}

/// Builds the outgoing HTTP client (rustls/ring, optional extra CA).
pub fn http_client(
    ca_pem: Option<&[u8]>,
    timeout: Duration,
) -> Result<reqwest::Client, ConfigError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(timeout);
    if let Some(pem) = ca_pem {
        let cert = reqwest::Certificate::from_pem(pem).map_err(ConfigError::Ca)?;
        b = b.add_root_certificate(cert);
    }
    b.build().map_err(ConfigError::Client)
}

struct Inner {
    config: EventGridConfig,
    dispatcher: Arc<Dispatcher>,
    auth: Verifier,
    watch: Arc<WatchStatus>,
}

/// A running local Event Grid.
pub struct RunningEventGrid {
    pub addr: SocketAddr,
    pub tls: bool,
    pub dispatcher: Arc<Dispatcher>,
    watch: Arc<WatchStatus>,
    blob_proxy: Option<RunningProxy>,
    resources_topic_id: String,
    stop: StopOnDrop,
    server: Server,
}

impl RunningEventGrid {
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The publish URL of a custom topic.
    pub fn topic_endpoint(&self, topic: &str) -> String {
        format!("{}/topics/{topic}/api/events", self.url())
    }

    /// The blob account URL clients must use (the proxy in front of Azurite that raises the blob
    /// events), e.g. `https://127.0.0.1:10000/devstoreaccount1`; `None` without blob watching.
    pub fn blob_endpoint(&self) -> Option<String> {
        self.blob_proxy.as_ref().map(|p| p.account_url.clone())
    }

    /// The publisher of the `resources` system topic (the local ARM's resource events).
    pub fn resource_publisher(&self) -> super::resources::ResourcePublisher {
        super::resources::ResourcePublisher {
            dispatcher: self.dispatcher.clone(),
            topic_id: self.resources_topic_id.clone(),
        }
    }

    /// Waits until the blob proxy serves (at most `timeout`); false if it does not (or no blob
    /// watching is configured).
    pub async fn blob_watch_ready(&self, timeout: Duration) -> bool {
        if self.blob_proxy.is_none() {
            return false;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.watch.ready.notified();
            if self.watch.is_ready.load(Ordering::SeqCst) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.watch.is_ready.load(Ordering::SeqCst);
            }
        }
    }

    pub async fn shutdown(self) {
        let _ = self.stop.0.send(true);
        self.dispatcher.close();
        if let Some(p) = self.blob_proxy {
            p.shutdown().await;
        }
        self.server.shutdown().await
    }
}

/// Stops the blob watcher and pending retries when dropped.
struct StopOnDrop(tokio::sync::watch::Sender<bool>, Arc<Dispatcher>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(true);
        self.1.close();
    }
}

/// Starts the local Event Grid on `addr` (port 0 in tests). Routing-file subscriptions are
/// validated lazily before their first delivery.
pub async fn serve(
    config: EventGridConfig,
    auth: Verifier,
    tls: Option<Arc<rustls::ServerConfig>>,
    addr: SocketAddr,
) -> Result<RunningEventGrid, ConfigError> {
    let client = http_client(
        config.ca_pem.as_deref(),
        config.delivery.timeout + Duration::from_secs(5),
    )?;
    let dispatcher = Arc::new(Dispatcher::new(config.delivery.clone(), client.clone()));
    for s in &config.subscriptions {
        dispatcher.insert(Arc::new(Subscription::new(s.clone(), false)));
    }
    let listener = TcpListener::bind(addr).await.map_err(ConfigError::Listen)?;
    let is_tls = tls.is_some();
    let local = listener.local_addr().map_err(ConfigError::Listen)?;
    if let Ok(mut u) = dispatcher.self_url.write() {
        *u = format!("{}://{local}", if is_tls { "https" } else { "http" });
    }
    let watch = Arc::new(WatchStatus::default());
    let (stop, _) = tokio::sync::watch::channel(false);
    let blob_proxy = match config.blob_watch.clone() {
        Some(w) => {
            let d = dispatcher.clone();
            let topic_id = w.topic_id();
            let listen = w.listen;
            let auth_for_store = w.auth.clone();
            let proxy_client =
                blobwatch::proxy_client(config.ca_pem.as_deref()).map_err(ConfigError::Client)?;
            let proxy =
                blobwatch::start(w, tls.clone(), proxy_client, watch.clone(), move |events| {
                    d.publish(STORAGE_TOPIC, &topic_id, events);
                })
                .await
                .map_err(|e| ConfigError::BlobProxy(listen, e))?;
            // Dead letters go through the proxy, like any writer of the account (so they raise
            // BlobCreated too, as in Azure); their containers exist as infra would deploy them.
            let store = super::delivery::DeadLetterStore {
                account_url: proxy.account_url.clone(),
                auth: auth_for_store,
                client: client.clone(),
            };
            for c in config
                .subscriptions
                .iter()
                .filter_map(|s| s.dead_letter_container.clone())
            {
                if let Err(e) = store.ensure_container(&c).await {
                    tracing::warn!(container = %c, error = %e, "dead-letter container not created");
                    if let Ok(mut le) = watch.last_error.lock() {
                        *le = Some(e);
                    }
                }
            }
            let _ = dispatcher.dead_letter_store.set(store);
            Some(proxy)
        }
        None => None,
    };
    let resources_topic_id = config.resources_topic_id();
    let inner = Arc::new(Inner {
        config,
        dispatcher: dispatcher.clone(),
        auth,
        watch: watch.clone(),
    });
    let server = httpserv::serve(listener, tls, MAX_REQUEST_BYTES, move |req| {
        let inner = inner.clone();
        async move { handle(inner, req).await }
    })
    .map_err(ConfigError::Listen)?;
    let stop = StopOnDrop(stop, dispatcher.clone());
    Ok(RunningEventGrid {
        addr: server.addr,
        tls: is_tls,
        dispatcher,
        watch,
        blob_proxy,
        resources_topic_id,
        stop,
        server,
    })
}

/// The service's error body.
fn error(status: StatusCode, detail_code: &str, message: &str) -> Resp {
    let code = match status {
        StatusCode::BAD_REQUEST => "BadRequest",
        StatusCode::UNAUTHORIZED => "Unauthorized",
        StatusCode::NOT_FOUND => "NotFound",
        StatusCode::PAYLOAD_TOO_LARGE => "RequestEntityTooLarge",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "UnsupportedMediaType",
        StatusCode::METHOD_NOT_ALLOWED => "MethodNotAllowed",
        _ => "InternalServerError",
    };
    let tracking = uuid::Uuid::new_v4();
    let full = format!(
        "{message} Report '{tracking}:{}' to our forums for assistance or raise a support ticket.",
        chrono::Utc::now().format("%-m/%-d/%Y %-I:%M:%S %p")
    );
    httpserv::json(
        status,
        &json!({"error": {"code": code, "message": full, "details": [{"code": detail_code, "message": full}]}}),
    )
}

fn query_param(req: &Req, name: &str) -> Option<String> {
    let q = req.uri().query()?;
    url::form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.into_owned())
}

fn pick_topic<'a>(inner: &'a Inner, req: &Req, path: &str) -> Option<&'a TopicConfig> {
    let topics = &inner.config.topics;
    if let Some(rest) = path.strip_prefix("/topics/") {
        let name = rest.strip_suffix("/api/events")?;
        return topics.iter().find(|t| t.name.eq_ignore_ascii_case(name));
    }
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let label = host.split(['.', ':']).next().unwrap_or("");
    topics
        .iter()
        .find(|t| t.name.eq_ignore_ascii_case(label))
        .or_else(|| (topics.len() == 1).then(|| &topics[0]))
}

/// Compares without an early exit on the first difference.
fn same_key(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

async fn handle(inner: Arc<Inner>, req: Result<Req, (http::request::Parts, BodyError)>) -> Resp {
    let req = match req {
        Ok(r) => r,
        Err((_, BodyError::TooLarge)) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                &format!("The maximum size ({MAX_REQUEST_BYTES}) has been exceeded."),
            );
        }
        Err((_, BodyError::Io(e))) => {
            return error(
                StatusCode::BAD_REQUEST,
                "InputJsonInvalid",
                &format!("The body could not be read: {e}."),
            );
        }
    };
    let path = req.uri().path().to_string();
    if let Some(rest) = path.strip_prefix("/_devcloud/") {
        return admin(&inner, &req, rest).await;
    }
    if !path.ends_with("/api/events") {
        return error(
            StatusCode::NOT_FOUND,
            "NotFound",
            "The requested resource does not exist.",
        );
    }
    if req.method() != Method::POST {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "Only POST is supported on /api/events.",
        );
    }
    let Some(topic) = pick_topic(&inner, &req, &path) else {
        return error(
            StatusCode::NOT_FOUND,
            "NotFound",
            "No topic is served at this address.",
        );
    };
    // auth: aeg-sas-key (header or query), or a bearer token for Event Grid
    let sas_key = req
        .headers()
        .get("aeg-sas-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| query_param(&req, "aeg-sas-key"));
    let authz = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let sas_token = req
        .headers()
        .get("aeg-sas-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            authz.and_then(|a| {
                let (scheme, rest) = a.trim().split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("SharedAccessSignature")
                    .then(|| rest.trim().to_string())
            })
        });
    let not_authorized = || {
        format!(
            "The request authorization key is not authorized for {}.",
            topic.name.to_uppercase()
        )
    };
    // Ok(None) for a key or signature (they carry no principal, and no role applies), Ok(Some(caller))
    // for a token.
    let authorized = if topic.disable_local_auth && (sas_key.is_some() || sas_token.is_some()) {
        // Azure's wording is not on record; the cause and the fix are.
        Err(format!(
            "Local authentication is disabled for {} (disableLocalAuth): access keys and shared access signatures are refused. Publish with a Microsoft Entra ID token for https://eventgrid.azure.net from an identity with the EventGrid Data Sender role.",
            topic.name.to_uppercase()
        ))
    } else if let Some(k) = sas_key {
        if !topic.key.is_empty() && same_key(&k, &topic.key) {
            Ok(None)
        } else {
            Err(not_authorized())
        }
    } else if let Some(t) = sas_token {
        match super::sas::verify(&t, &topic.key, chrono::Utc::now()) {
            Ok(tok) if super::sas::resource_path(&tok.resource).eq_ignore_ascii_case(&path) => {
                Ok(None)
            }
            Ok(_) => Err(format!(
                "{} The shared access signature was made for another resource.",
                not_authorized()
            )),
            Err(reason) => Err(format!("{} {reason}.", not_authorized())),
        }
    } else if let Some(token) = bearer_token(authz) {
        inner
            .auth
            .verify(token, EVENTGRID_AUDIENCE)
            .map(Some)
            .map_err(|r| format!("The bearer token is not valid: {r}."))
    } else {
        Err(
            "Request must contain one of the following authorization signature: aeg-sas-token, aeg-sas-key, or a bearer token."
                .to_string(),
        )
    };
    let caller = match authorized {
        Ok(caller) => caller,
        Err(message) => return error(StatusCode::UNAUTHORIZED, "Unauthorized", &message),
    };
    // A valid token is not enough: its principal needs EventGrid Data Sender on the topic.
    if let (Some(principal), Some(access)) = (caller, topic.access.as_ref())
        && !access.allows(principal.as_deref(), crate::rbac::EVENTGRID_SEND, "")
    {
        // Azure's wording (recorded in Azure/azure-sdk-for-net#22831), then the fix.
        return error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            &format!(
                "The principal associated with access token presented with the incoming request does not have permission to send data to {}. Assign the EventGrid Data Sender role on the topic to {}.",
                inner.config.topic_id(&topic.name),
                principal.as_deref().unwrap_or("the caller")
            ),
        );
    }
    let ct = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if topic.input_schema == Schema::CloudEvents && !cloudevents_content_type(ct) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            CLOUDEVENTS_CONTENT_TYPE_REQUIRED,
        );
    }
    let ct = ct.unwrap_or("application/json");
    let topic_id = inner.config.topic_id(&topic.name);
    let events = match parse_publish(topic.input_schema, ct, req.body(), &topic_id) {
        Ok(e) => e,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.detail_code, &e.message),
    };
    if let Some(big) = events
        .iter()
        .find(|e| e.value.to_string().len() > MAX_REQUEST_BYTES)
    {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            &format!(
                "The event {} exceeds the maximum size of {MAX_REQUEST_BYTES} bytes.",
                big.id()
            ),
        );
    }
    inner.dispatcher.publish(&topic.name, &topic_id, events);
    httpserv::empty(StatusCode::OK)
}

fn admin_error(status: StatusCode, message: &str) -> Resp {
    httpserv::json(
        status,
        &json!({"error": {"code": status.as_u16().to_string(), "message": message}}),
    )
}

/// Admin endpoint (local only, JSON):
/// - `GET /_devcloud/topics`: custom topics and the storage and resources system topics
/// - `GET /_devcloud/subscriptions`: subscriptions with state and counters
/// - `POST /_devcloud/subscriptions`: add a webhook subscription (body: `name`, `topic`, `endpoint`
///   or `function`, `filter` (ARM `EventSubscriptionFilter`, with `advancedFilters`) or the flat
///   `includedEventTypes`, `subjectBeginsWith`, `subjectEndsWith`; `eventDeliverySchema`,
///   `retryPolicy` (or `maxDeliveryAttempts`, `eventTimeToLiveInMinutes`), `deadLetterDestination`
///   (a container of the watched account, created if missing)); the handshake runs first: 201, or 400
///   when it fails
/// - `DELETE /_devcloud/subscriptions/{name}`
/// - `GET /_devcloud/deadletters?subscription=NAME`: dead-lettered events
/// - `POST /_devcloud/deadletters/resubmit?subscription=NAME&id=EVENT_ID`: deliver a dead letter again
/// - `GET /_devcloud/deliveries?max=N`: recent handshakes and delivery attempts
/// - `GET /_devcloud/events?max=N`: recent published events (custom, blob and resource)
/// - `GET /_devcloud/blobwatch`: the blob proxy's state (requests seen, events raised, last error)
/// - `GET /_devcloud/validate?subscription=NAME&code=CODE`: the `validationUrl` of the handshake
async fn admin(inner: &Inner, req: &Req, rest: &str) -> Resp {
    let d = &inner.dispatcher;
    let max = query_param(req, "max")
        .and_then(|m| m.parse::<usize>().ok())
        .unwrap_or(100);
    let rest = rest.trim_end_matches('/');
    match (req.method(), rest) {
        (&Method::GET, "topics") => {
            let mut topics: Vec<Value> = inner
                .config
                .topics
                .iter()
                .map(|t| {
                    json!({"name": t.name, "inputSchema": t.input_schema.arm_name(),
                           "disableLocalAuth": t.disable_local_auth, "endpoint": format!("/topics/{}/api/events", t.name), "id": inner.config.topic_id(&t.name)})
                })
                .collect();
            if let Some(w) = &inner.config.blob_watch {
                topics.push(json!({"name": STORAGE_TOPIC, "type": "Microsoft.Storage.StorageAccounts", "source": w.topic_id(),
                                   "upstream": w.account_url}));
            }
            topics.push(
                json!({"name": RESOURCES_TOPIC, "type": "Microsoft.Resources.Subscriptions",
                               "source": inner.config.resources_topic_id()}),
            );
            httpserv::json(StatusCode::OK, &Value::Array(topics))
        }
        (&Method::GET, "subscriptions") => {
            let mut out = Vec::new();
            for s in d.subscriptions() {
                let mut v = s.state_json().await;
                v["endpoint"] = json!(d.endpoint_url(&s.config.destination));
                out.push(v);
            }
            httpserv::json(StatusCode::OK, &Value::Array(out))
        }
        (&Method::POST, "subscriptions") => add_subscription(inner, req).await,
        (&Method::DELETE, r) if r.starts_with("subscriptions/") => {
            let name = &r["subscriptions/".len()..];
            if d.remove(name) {
                httpserv::empty(StatusCode::OK)
            } else {
                admin_error(StatusCode::NOT_FOUND, "no such subscription")
            }
        }
        (&Method::GET, "deadletters") => {
            let subs: Vec<Arc<Subscription>> = match query_param(req, "subscription") {
                Some(n) => match d.subscription(&n) {
                    Some(s) => vec![s],
                    None => return admin_error(StatusCode::NOT_FOUND, "no such subscription"),
                },
                None => d.subscriptions(),
            };
            let out: Vec<Value> = subs
                .iter()
                .flat_map(|s| {
                    s.dead_letters()
                        .into_iter()
                        .map(|e| json!({"subscription": s.config.name, "event": e}))
                })
                .collect();
            httpserv::json(StatusCode::OK, &Value::Array(out))
        }
        (&Method::POST, "deadletters/resubmit") => {
            let (Some(name), Some(id)) = (query_param(req, "subscription"), query_param(req, "id"))
            else {
                return admin_error(StatusCode::BAD_REQUEST, "subscription and id are required");
            };
            let Some(sub) = d.subscription(&name) else {
                return admin_error(StatusCode::NOT_FOUND, "no such subscription");
            };
            let topic_id = subscription_topic_id(inner, &sub.config.topic);
            if d.resubmit(&sub, &id, &topic_id) {
                httpserv::json(StatusCode::OK, &json!({"resubmitted": id}))
            } else {
                admin_error(StatusCode::NOT_FOUND, "no dead letter with that id")
            }
        }
        (&Method::GET, "deliveries") => {
            httpserv::json(StatusCode::OK, &Value::Array(d.recent_deliveries(max)))
        }
        (&Method::GET, "events") => {
            httpserv::json(StatusCode::OK, &Value::Array(d.recent_events(max)))
        }
        (&Method::GET, "blobwatch") => {
            let w = &inner.watch;
            let last_error = w.last_error.lock().ok().and_then(|e| e.clone());
            httpserv::json(
                StatusCode::OK,
                &json!({"enabled": inner.config.blob_watch.is_some(), "ready": w.is_ready.load(Ordering::SeqCst),
                        "upstream": inner.config.blob_watch.as_ref().map(|b| b.account_url.clone()),
                        "requests": w.requests.load(Ordering::Relaxed), "events": w.events.load(Ordering::Relaxed),
                        "lastError": last_error}),
            )
        }
        (&Method::GET, "validate") => {
            let (Some(sub), Some(code)) =
                (query_param(req, "subscription"), query_param(req, "code"))
            else {
                return admin_error(
                    StatusCode::BAD_REQUEST,
                    "subscription and code are required",
                );
            };
            if d.take_validation_code(&sub, &code) {
                httpserv::response(
                    StatusCode::OK,
                    "text/plain; charset=utf-8",
                    "Webhook successfully validated as a subscription endpoint.",
                )
            } else {
                admin_error(
                    StatusCode::BAD_REQUEST,
                    "unknown or already used validation code",
                )
            }
        }
        _ => admin_error(StatusCode::NOT_FOUND, "unknown admin operation"),
    }
}

/// The resource id events of `topic` carry (`storage` = the watched storage account, `resources` =
/// the subscription).
fn subscription_topic_id(inner: &Inner, topic: &str) -> String {
    if topic.eq_ignore_ascii_case(RESOURCES_TOPIC) {
        inner.config.resources_topic_id()
    } else if topic.eq_ignore_ascii_case(STORAGE_TOPIC) {
        inner
            .config
            .blob_watch
            .as_ref()
            .map(|w| w.topic_id())
            .unwrap_or_default()
    } else {
        inner.config.topic_id(topic)
    }
}

async fn add_subscription(inner: &Inner, req: &Req) -> Resp {
    let v: Value = match serde_json::from_slice(req.body()) {
        Ok(v) => v,
        Err(e) => {
            return admin_error(
                StatusCode::BAD_REQUEST,
                &format!("the body is not JSON: {e}"),
            );
        }
    };
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let (Some(name), Some(topic)) = (s("name"), s("topic")) else {
        return admin_error(StatusCode::BAD_REQUEST, "name and topic are required");
    };
    let known_topic = topic.eq_ignore_ascii_case(STORAGE_TOPIC)
        || topic.eq_ignore_ascii_case(RESOURCES_TOPIC)
        || inner
            .config
            .topics
            .iter()
            .any(|t| t.name.eq_ignore_ascii_case(&topic));
    if !known_topic {
        return admin_error(StatusCode::NOT_FOUND, &format!("no topic named {topic}"));
    }
    let destination = match (s("endpoint"), s("function")) {
        (Some(u), _) => Destination::Webhook(u),
        (None, Some(f)) => Destination::Function(f),
        (None, None) => {
            return admin_error(
                StatusCode::BAD_REQUEST,
                "endpoint (webhook URL) or function is required",
            );
        }
    };
    let schema_text = s("eventDeliverySchema").unwrap_or_else(|| "EventGridSchema".into());
    let Some(schema) = Schema::parse(&schema_text) else {
        return admin_error(
            StatusCode::BAD_REQUEST,
            &format!("unknown eventDeliverySchema {schema_text}"),
        );
    };
    let mut config = SubscriptionConfig::new(&name, &topic, destination, schema);
    config.filter = match v.get("filter") {
        Some(f) => match EventFilter::from_arm(f) {
            Ok(f) => f,
            Err(e) => return admin_error(StatusCode::BAD_REQUEST, &e.to_string()),
        },
        None => EventFilter {
            included_event_types: v
                .get("includedEventTypes")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            subject_begins_with: s("subjectBeginsWith").unwrap_or_default(),
            subject_ends_with: s("subjectEndsWith").unwrap_or_default(),
            case_sensitive: v
                .get("isSubjectCaseSensitive")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            ..Default::default()
        },
    };
    // ARM's retryPolicy (or its two fields at the top level), refused outside Azure's ranges
    let retry = v.get("retryPolicy").unwrap_or(&v);
    if let Some(n) = retry.get("maxDeliveryAttempts") {
        match n.as_u64().filter(|n| (1..=30).contains(n)) {
            Some(n) => config.max_delivery_attempts = n as u32,
            None => {
                return admin_error(
                    StatusCode::BAD_REQUEST,
                    &format!("maxDeliveryAttempts {n} is not within 1 to 30"),
                );
            }
        }
    }
    if let Some(m) = retry.get("eventTimeToLiveInMinutes") {
        match m.as_u64().filter(|m| (1..=1440).contains(m)) {
            Some(m) => config.event_ttl = Duration::from_secs(m * 60),
            None => {
                return admin_error(
                    StatusCode::BAD_REQUEST,
                    &format!("eventTimeToLiveInMinutes {m} is not within 1 to 1440"),
                );
            }
        }
    }
    if let Some(d) = v.get("deadLetterDestination") {
        let container = d
            .get("properties")
            .and_then(|p| p.get("blobContainerName"))
            .and_then(Value::as_str);
        match (d.get("endpointType").and_then(Value::as_str), container) {
            (Some("StorageBlob"), Some(c)) if !c.is_empty() => {
                config.dead_letter_container = Some(c.to_string());
            }
            _ => {
                return admin_error(
                    StatusCode::BAD_REQUEST,
                    "deadLetterDestination must be {\"endpointType\": \"StorageBlob\", \"properties\": {\"blobContainerName\": …}}",
                );
            }
        }
    }
    let topic_id = subscription_topic_id(inner, &topic);
    let sub = Arc::new(Subscription::new(config, false));
    if let Err(e) = inner.dispatcher.ensure_validated(&sub, &topic_id).await {
        return admin_error(StatusCode::BAD_REQUEST, &e.to_string());
    }
    if let (Some(c), Some(store)) = (
        &sub.config.dead_letter_container,
        inner.dispatcher.dead_letter_store.get(),
    ) && let Err(e) = store.ensure_container(c).await
    {
        return admin_error(StatusCode::BAD_REQUEST, &e);
    }
    inner.dispatcher.insert(sub.clone());
    let state = sub.state_json().await;
    httpserv::json(StatusCode::CREATED, &state)
}
