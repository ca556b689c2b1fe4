//! The Service Bus REST API over the broker: send (single and batch), peek-lock and
//! receive-and-delete with long polling, complete/abandon/renew, bearer auth, the service's XML
//! error bodies, and the admin endpoint (`/_devcloud/...`) for inspection and dead-letter resubmission.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use bytes::Bytes;
use chrono::Utc;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, Notify};

use super::broker::{
    BrokerError, EntityConfig, EntityPath, Namespace, ReceiveMode, ReceivePath, Received,
};
use super::filter::Rule;
use super::message::{BrokerProps, NewMessage, PropValue, PropsError};
use crate::auth::{SERVICEBUS_AUDIENCE, Verifier, bearer_token};
use crate::httpserv::{self, BodyError, Req, Resp, Server};

/// A topic and its subscriptions to create at start.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub name: String,
    pub config: EntityConfig,
    pub subscriptions: Vec<SubscriptionSpec>,
}

/// A subscription to create at start.
#[derive(Debug, Clone)]
pub struct SubscriptionSpec {
    pub name: String,
    pub config: EntityConfig,
    pub rules: Vec<Rule>,
}

/// What the local namespace holds at start.
#[derive(Debug, Clone, Default)]
pub struct ServiceBusConfig {
    pub queues: Vec<(String, EntityConfig)>,
    pub topics: Vec<TopicSpec>,
    /// Create every queue and topic without duplicate detection, whatever the configuration or a
    /// later admin request asks for (as in a namespace whose entities were made without it).
    pub duplicate_detection_off: bool,
    /// The namespace's data-plane role assignments: a caller sends or receives only what its roles
    /// allow (401, as Azure answers). `None`: roles are not checked (a component test's namespace that
    /// declares none; the local cloud's always does).
    pub access: Option<crate::rbac::Access>,
}

/// Shared broker with waiting receivers.
#[derive(Clone)]
pub struct ServiceBus {
    ns: Arc<Mutex<Namespace>>,
    changed: Arc<Notify>,
    /// While on, every REST call answers 503 (`POST /_devcloud/outage`).
    pub outage: super::outage::Outage,
}

impl Default for ServiceBus {
    fn default() -> Self {
        ServiceBus::new()
    }
}

impl ServiceBus {
    pub fn new() -> ServiceBus {
        ServiceBus {
            ns: Arc::new(Mutex::new(Namespace::new())),
            changed: Arc::new(Notify::new()),
            outage: Default::default(),
        }
    }

    /// Builds the namespace described by `config`.
    pub async fn from_config(config: &ServiceBusConfig) -> Result<ServiceBus, BrokerError> {
        let sb = ServiceBus::new();
        {
            let mut ns = sb.ns.lock().await;
            ns.duplicate_detection_off = config.duplicate_detection_off;
            for (name, c) in &config.queues {
                ns.put_queue(name, c.clone())?;
            }
            for t in &config.topics {
                ns.put_topic(&t.name, t.config.clone())?;
                for s in &t.subscriptions {
                    ns.put_subscription(&t.name, &s.name, s.config.clone(), s.rules.clone())?;
                }
            }
        }
        Ok(sb)
    }

    /// Runs `f` on the namespace (for admin and tests), waking receivers afterwards.
    pub async fn with<R>(&self, f: impl FnOnce(&mut Namespace) -> R) -> R {
        let r = f(&mut *self.ns.lock().await);
        self.changed.notify_waiters();
        r
    }

    /// Receives, waiting up to `timeout` for a message (scheduled messages and lock expiries wake it).
    pub async fn receive_wait(
        &self,
        path: &ReceivePath,
        mode: ReceiveMode,
        timeout: StdDuration,
    ) -> Result<Option<Received>, BrokerError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next_due = {
                let mut ns = self.ns.lock().await;
                if let Some(r) = ns.receive(path, mode, Utc::now())? {
                    drop(ns);
                    self.changed.notify_waiters();
                    return Ok(Some(r));
                }
                ns.next_due(path)
            };
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let mut wake = deadline;
            if let Some(due) = next_due {
                let ms = (due - Utc::now()).num_milliseconds().max(0) as u64;
                // +5 ms so the wall clock has passed `due` when we look again
                wake = wake.min(now + StdDuration::from_millis(ms + 5));
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }
}

/// A running local Service Bus.
pub struct RunningServiceBus {
    pub addr: SocketAddr,
    pub broker: ServiceBus,
    pub tls: bool,
    server: Server,
}

impl RunningServiceBus {
    /// Base URL (`https://127.0.0.1:port` or `http://…` without TLS).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    pub async fn shutdown(self) {
        self.server.shutdown().await
    }
}

/// Largest request body read (bigger requests get 413 without being read further).
const MAX_BODY: usize = 4 * 1024 * 1024;
/// Longest receive long-poll.
const MAX_RECEIVE_TIMEOUT: u64 = 230;

/// Starts the local Service Bus on `addr` (use port 0 in tests). With `tls` it serves HTTPS.
pub async fn serve(
    config: ServiceBusConfig,
    auth: Verifier,
    tls: Option<Arc<rustls::ServerConfig>>,
    addr: SocketAddr,
) -> std::io::Result<RunningServiceBus> {
    let broker = ServiceBus::from_config(&config)
        .await
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let listener = TcpListener::bind(addr).await?;
    let is_tls = tls.is_some();
    let scheme = if is_tls { "https" } else { "http" };
    let b = broker.clone();
    let access = Arc::new(config.access.clone());
    let server = httpserv::serve(listener, tls, MAX_BODY, move |req| {
        let b = b.clone();
        let auth = Caller {
            verifier: auth.clone(),
            access: access.clone(),
        };
        async move { handle(b, auth, scheme, req).await }
    })?;
    Ok(RunningServiceBus {
        addr: server.addr,
        broker,
        tls: is_tls,
        server,
    })
}

/// The service's error body: `<Error><Code>…</Code><Detail>…</Detail></Error>`.
fn error(status: StatusCode, detail: &str) -> Resp {
    let detail = xml_escape(detail);
    let tracking = uuid::Uuid::new_v4();
    let body = format!(
        "<Error><Code>{}</Code><Detail>{detail} TrackingId:{tracking}, SystemTracker:devcloud, Timestamp:{}</Detail></Error>",
        status.as_u16(),
        Utc::now().format("%Y-%m-%dT%H:%M:%S")
    );
    httpserv::response(status, "application/xml; charset=utf-8", body)
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn broker_error(e: BrokerError) -> Resp {
    let status = match &e {
        // the REST reference documents 410 Gone for a queue, topic or subscription that does not exist
        BrokerError::EntityNotFound(_) => StatusCode::GONE,
        // Send Message's documented answer to "quota exceeded or message too large"
        BrokerError::MessageTooLarge { .. } | BrokerError::PropertiesTooLarge(_) => {
            StatusCode::FORBIDDEN
        }
        BrokerError::LockLost => StatusCode::NOT_FOUND,
        BrokerError::CannotSendHere(_)
        | BrokerError::BadRequest(_)
        | BrokerError::DuplicateDetectionImmutable { .. } => StatusCode::BAD_REQUEST,
    };
    error(status, &e.to_string())
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(v) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_param(req: &Req, name: &str) -> Option<String> {
    let q = req.uri().query()?;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        k.eq_ignore_ascii_case(name).then(|| percent_decode(v))
    })
}

/// Headers that are HTTP plumbing, not application properties.
fn is_plumbing_header(name: &str) -> bool {
    const SKIP: [&str; 27] = [
        "authorization",
        "brokerproperties",
        "content-type",
        "content-length",
        "host",
        "user-agent",
        "accept",
        "accept-encoding",
        "accept-charset",
        "accept-language",
        "connection",
        "transfer-encoding",
        "expect",
        "te",
        "keep-alive",
        "upgrade",
        "date",
        "cookie",
        "origin",
        "referer",
        "cache-control",
        "pragma",
        "traceparent",
        "tracestate",
        "request-id",
        "content-encoding",
        "if-match",
    ];
    SKIP.contains(&name)
        || name.starts_with("x-ms-")
        || name.starts_with("x-forwarded-")
        || name.starts_with(':')
}

fn app_props_from_headers(headers: &HeaderMap) -> std::collections::BTreeMap<String, PropValue> {
    headers
        .iter()
        .filter(|(k, _)| !is_plumbing_header(k.as_str()))
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (k.as_str().to_string(), PropValue::from_header(v)))
        })
        .collect()
}

fn parse_single(req: &Req) -> Result<NewMessage, PropsError> {
    let props = match req.headers().get("brokerproperties") {
        Some(v) => {
            BrokerProps::from_header(v.to_str().map_err(|e| PropsError::NotJson(e.to_string()))?)?
        }
        None => BrokerProps::default(),
    };
    Ok(NewMessage {
        body: req.body().clone(),
        content_type: req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        props,
        app_props: app_props_from_headers(req.headers()),
    })
}

fn parse_batch(body: &Bytes) -> Result<Vec<NewMessage>, String> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| format!("the batch body is not valid JSON: {e}"))?;
    let items = v.as_array().ok_or("the batch body must be a JSON array")?;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let obj = item
            .as_object()
            .ok_or(format!("batch item {i} is not an object"))?;
        let body = match obj.get("Body") {
            Some(Value::String(s)) => Bytes::from(s.clone()),
            None | Some(Value::Null) => Bytes::new(),
            Some(other) => Bytes::from(other.to_string()),
        };
        let props = match obj.get("BrokerProperties") {
            Some(Value::Object(o)) => {
                BrokerProps::from_json(o).map_err(|e| format!("batch item {i}: {e}"))?
            }
            None | Some(Value::Null) => BrokerProps::default(),
            Some(_) => return Err(format!("batch item {i}: BrokerProperties is not an object")),
        };
        let app_props = match obj.get("UserProperties") {
            Some(Value::Object(o)) => o
                .iter()
                .map(|(k, v)| (k.clone(), PropValue::from_json(v)))
                .collect(),
            None | Some(Value::Null) => Default::default(),
            Some(_) => return Err(format!("batch item {i}: UserProperties is not an object")),
        };
        out.push(NewMessage {
            body,
            content_type: None,
            props,
            app_props,
        });
    }
    Ok(out)
}

fn received_response(
    r: Received,
    path: &ReceivePath,
    host: &str,
    scheme: &str,
    status: StatusCode,
) -> Resp {
    let m = &r.message;
    let lock = r.lock.as_ref().map(|(t, u)| (t.as_str(), *u));
    let mut props = m.broker_properties_json(
        lock,
        if path.dead_letter {
            "Deferred"
        } else {
            "Active"
        },
    );
    // A receiver sees the dead-letter reason and description as application properties (headers
    // below), as Service Bus stores them; DeadLetterSource stays a broker property, set only on
    // messages auto-forwarded out of a dead-letter queue (forwardDeadLetteredMessagesTo).
    if let Value::Object(o) = &mut props {
        for k in ["DeadLetterReason", "DeadLetterErrorDescription"] {
            o.remove(k);
        }
    }
    let ct = m
        .content_type
        .clone()
        .unwrap_or_else(|| "application/octet-stream".into());
    let mut resp = httpserv::response(status, &ct, m.body.clone());
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&props.to_string()) {
        h.insert("brokerproperties", v);
    }
    if let Some((token, _)) = &r.lock {
        let loc = format!(
            "{scheme}://{host}/{}/messages/{}/{token}",
            path.display(),
            m.message_id
        );
        if let Ok(v) = HeaderValue::from_str(&loc) {
            h.insert(http::header::LOCATION, v);
        }
    }
    for (k, v) in &m.app_props {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(&v.to_header()),
        ) && !is_plumbing_header(name.as_str())
        {
            h.insert(name, value);
        }
    }
    resp
}

/// Who may call: the token check, then the namespace's role assignments.
struct Caller {
    verifier: Verifier,
    access: Arc<Option<crate::rbac::Access>>,
}

async fn handle(
    sb: ServiceBus,
    auth: Caller,
    scheme: &'static str,
    req: Result<Req, (http::request::Parts, BodyError)>,
) -> Resp {
    let req = match req {
        Ok(r) => r,
        Err((_, BodyError::TooLarge)) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "The request body is too large.",
            );
        }
        Err((_, BodyError::Io(e))) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("The request body could not be read: {e}"),
            );
        }
    };
    let path = req.uri().path().to_string();
    if let Some(rest) = path.strip_prefix("/_devcloud/") {
        return admin(&sb, &req, rest).await;
    }
    if sb.outage.refuses() {
        return error(StatusCode::SERVICE_UNAVAILABLE, super::outage::DETAIL);
    }
    // auth first, as the service does
    let header = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let principal = match bearer_token(header) {
        None => {
            return error(
                StatusCode::UNAUTHORIZED,
                "MissingToken: The authorization header was not found or is not a Bearer token.",
            );
        }
        Some(token) => match auth.verifier.verify(token, SERVICEBUS_AUDIENCE) {
            Ok(principal) => principal,
            Err(reason) => {
                return error(
                    StatusCode::UNAUTHORIZED,
                    &format!("InvalidSignature: The token is not valid: {reason}."),
                );
            }
        },
    };
    let segs: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let Some(mi) = segs
        .iter()
        .rposition(|s| s.eq_ignore_ascii_case("messages"))
    else {
        return error(StatusCode::NOT_FOUND, "No operation at this address.");
    };
    let entity_text = segs[..mi].join("/");
    let tail = &segs[mi + 1..];
    let Some(parsed) = ReceivePath::parse(&entity_text) else {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("'{entity_text}' is not a valid entity path."),
        );
    };
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_string();
    // A valid token is not enough: the caller's roles must allow the operation on this entity.
    if let Some(access) = auth.access.as_ref() {
        let sending = req.method() == Method::POST && tail.is_empty();
        let (claim, action) = if sending {
            ("Send", crate::rbac::SERVICEBUS_SEND)
        } else {
            ("Listen", crate::rbac::SERVICEBUS_RECEIVE)
        };
        if !access.allows(principal.as_deref(), action, &entity_text) {
            return error(
                StatusCode::UNAUTHORIZED,
                &format!(
                    "Unauthorized access. '{claim}' claim(s) are required to perform this operation. Resource: 'sb://{host}/{entity_text}'. The caller ({}) has no role that allows {action} here: assign Azure Service Bus Data {} to it on the namespace or this entity.",
                    principal
                        .as_deref()
                        .unwrap_or("a token without an object id"),
                    if sending { "Sender" } else { "Receiver" }
                ),
            );
        }
    }
    let entity = sb.ns.lock().await.resolve(parsed);
    if !sb.ns.lock().await.exists(&entity.entity) {
        return error(
            StatusCode::GONE,
            &format!(
                "The messaging entity 'sb://devcloud/{}' could not be found.",
                entity.display()
            ),
        );
    }
    let method = req.method().clone();
    match (method, tail.len()) {
        (Method::POST, 0) => {
            let is_batch = req
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| {
                    ct.to_ascii_lowercase()
                        .starts_with("application/vnd.microsoft.servicebus.json")
                });
            let msgs = if is_batch {
                match parse_batch(req.body()) {
                    Ok(m) => m,
                    Err(e) => return error(StatusCode::BAD_REQUEST, &e),
                }
            } else {
                match parse_single(&req) {
                    Ok(m) => vec![m],
                    Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
                }
            };
            let result = sb.with(|ns| ns.send(&entity, msgs, Utc::now())).await;
            match result {
                Ok(_) => httpserv::empty(StatusCode::CREATED),
                Err(e) => broker_error(e),
            }
        }
        (m @ (Method::POST | Method::DELETE), 1) if tail[0].eq_ignore_ascii_case("head") => {
            let mode = if m == Method::POST {
                ReceiveMode::PeekLock
            } else {
                ReceiveMode::ReceiveAndDelete
            };
            let timeout = match query_param(&req, "timeout") {
                None => 60,
                Some(t) => match t.parse::<u64>() {
                    Ok(t) => t.min(MAX_RECEIVE_TIMEOUT),
                    Err(_) => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            "The timeout parameter is not a number of seconds.",
                        );
                    }
                },
            };
            match sb
                .receive_wait(&entity, mode, StdDuration::from_secs(timeout))
                .await
            {
                Ok(Some(r)) => {
                    let status = if mode == ReceiveMode::PeekLock {
                        StatusCode::CREATED
                    } else {
                        StatusCode::OK
                    };
                    received_response(r, &entity, &host, scheme, status)
                }
                Ok(None) => httpserv::empty(StatusCode::NO_CONTENT),
                Err(e) => broker_error(e),
            }
        }
        (m @ (Method::DELETE | Method::PUT | Method::POST), 2) => {
            let (id, token) = (tail[0].as_str(), tail[1].as_str());
            let now = Utc::now();
            let result = sb
                .with(|ns| match m {
                    Method::DELETE => ns.complete(&entity, id, token, now).map(|_| None),
                    Method::PUT => ns.abandon(&entity, id, token, now).map(|_| None),
                    _ => ns.renew(&entity, id, token, now).map(Some),
                })
                .await;
            match result {
                Ok(None) => httpserv::empty(StatusCode::OK),
                Ok(Some(until)) => {
                    let mut resp = httpserv::empty(StatusCode::OK);
                    let props = json!({"LockedUntilUtc": super::message::format_http_date(until)});
                    if let Ok(v) = HeaderValue::from_str(&props.to_string()) {
                        resp.headers_mut().insert("brokerproperties", v);
                    }
                    resp
                }
                Err(e) => broker_error(e),
            }
        }
        _ => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "The operation is not supported at this address.",
        ),
    }
}

/// Admin endpoint (local only, unauthenticated, JSON):
/// - `GET /_devcloud/entities`: queues, topics, subscriptions with active/scheduled/locked/dead-letter counts and rules
/// - `GET /_devcloud/deadletters?entity=<queue|topic/subscriptions/sub>&max=N`: peek dead letters
/// - `POST /_devcloud/deadletters/resubmit?entity=…&sequenceNumber=N`: move one back to its entity
/// - `PUT /_devcloud/entities/{queue}?kind=queue|topic` or `PUT /_devcloud/entities/{topic}/subscriptions/{sub}`:
///   create or update an entity; optional JSON body `{"maxDeliveryCount": n, "lockDurationSeconds": n,
///   "defaultMessageTimeToLiveSeconds": n, "deadLetteringOnMessageExpiration": b,
///   "requiresDuplicateDetection": b, "duplicateDetectionHistoryTimeWindow": "PT10M" (or
///   "duplicateDetectionWindowSeconds": n, 0 = off; off by default as in Azure, and 400 when an update
///   would switch it), "rules": [{"name", "sqlFilter"} | {"name", "correlationFilter": {"label", "correlationId", "messageId", "contentType", "to", "replyTo", "sessionId", "properties": {…}}}]}`
/// - `GET /_devcloud/recent?max=N`: recent operations (sent, scheduled, routed, locked, completed, abandoned, dead-lettered, duplicates)
/// - `POST /_devcloud/outage` `{"seconds": n}` (0 ends it): every REST call answers 503 for that long;
///   `GET /_devcloud/outage`: `{"active", "remainingSeconds", "outages", "refused"}`
async fn admin(sb: &ServiceBus, req: &Req, rest: &str) -> Resp {
    let now = Utc::now();
    let max = query_param(req, "max")
        .and_then(|m| m.parse::<usize>().ok())
        .unwrap_or(100);
    let entity = || -> Result<ReceivePath, Box<Resp>> {
        let e = query_param(req, "entity").ok_or_else(|| {
            Box::new(admin_error(
                StatusCode::BAD_REQUEST,
                "the entity parameter is missing",
            ))
        })?;
        ReceivePath::parse(&e)
            .filter(|p| !p.dead_letter && !matches!(p.entity, EntityPath::Topic(_)))
            .ok_or_else(|| {
                Box::new(admin_error(
                    StatusCode::BAD_REQUEST,
                    "entity must be a queue or topic/subscriptions/sub",
                ))
            })
    };
    match (req.method(), rest.trim_end_matches('/')) {
        (&Method::GET, "entities") => {
            let v = sb.with(|ns| ns.overview(now)).await;
            httpserv::json(StatusCode::OK, &v)
        }
        (&Method::GET, "outage") => httpserv::json(StatusCode::OK, &sb.outage.status()),
        (&Method::POST, "outage") => {
            let seconds = serde_json::from_slice::<Value>(req.body())
                .ok()
                .and_then(|v| v["seconds"].as_f64())
                .filter(|s| s.is_finite() && *s >= 0.0);
            match seconds {
                Some(s) if s > 0.0 => sb.outage.begin(StdDuration::from_secs_f64(s)),
                Some(_) => sb.outage.end(),
                None => {
                    return admin_error(
                        StatusCode::BAD_REQUEST,
                        "the body must be {\"seconds\": n} with n >= 0",
                    );
                }
            }
            httpserv::json(StatusCode::OK, &sb.outage.status())
        }
        (&Method::GET, "recent") => {
            let v = sb.with(|ns| ns.recent(max)).await;
            httpserv::json(StatusCode::OK, &Value::Array(v))
        }
        (&Method::GET, "deadletters") => {
            let p = match entity() {
                Ok(p) => p,
                Err(r) => return *r,
            };
            match sb.with(|ns| ns.dead_letters(&p, max, now)).await {
                Ok(msgs) => httpserv::json(
                    StatusCode::OK,
                    &Value::Array(msgs.iter().map(|m| m.admin_json()).collect()),
                ),
                Err(e) => admin_error(StatusCode::NOT_FOUND, &e.to_string()),
            }
        }
        (&Method::PUT, path) if path.starts_with("entities/") => {
            put_entity(sb, req, &path["entities/".len()..]).await
        }
        (&Method::POST, "deadletters/resubmit") => {
            let p = match entity() {
                Ok(p) => p,
                Err(r) => return *r,
            };
            let Some(seq) = query_param(req, "sequenceNumber").and_then(|s| s.parse::<i64>().ok())
            else {
                return admin_error(
                    StatusCode::BAD_REQUEST,
                    "the sequenceNumber parameter is missing or not a number",
                );
            };
            match sb.with(|ns| ns.resubmit(&p, seq, now)).await {
                Ok(new_seq) => httpserv::json(StatusCode::OK, &json!({"sequenceNumber": new_seq})),
                Err(e @ BrokerError::EntityNotFound(_)) => {
                    admin_error(StatusCode::NOT_FOUND, &e.to_string())
                }
                Err(e) => admin_error(StatusCode::BAD_REQUEST, &e.to_string()),
            }
        }
        _ => admin_error(StatusCode::NOT_FOUND, "unknown admin operation"),
    }
}

fn admin_error(status: StatusCode, message: &str) -> Resp {
    httpserv::json(
        status,
        &json!({"error": {"code": status.as_u16().to_string(), "message": message}}),
    )
}

fn entity_config(v: &Value) -> EntityConfig {
    let mut c = EntityConfig::default();
    let secs = |k: &str| v.get(k).and_then(Value::as_i64);
    if let Some(n) = v.get("maxDeliveryCount").and_then(Value::as_u64) {
        c.max_delivery_count = n.clamp(1, 2000) as u32;
    }
    if let Some(n) = secs("lockDurationSeconds") {
        c.lock_duration = chrono::Duration::seconds(n.clamp(1, 300));
    }
    if let Some(n) = secs("defaultMessageTimeToLiveSeconds") {
        c.default_ttl = Some(chrono::Duration::seconds(n.max(1)));
    }
    if let Some(b) = v
        .get("deadLetteringOnMessageExpiration")
        .and_then(Value::as_bool)
    {
        c.dead_lettering_on_expiration = b;
    }
    if let Some(n) = secs("duplicateDetectionWindowSeconds") {
        c.duplicate_detection_window = (n > 0).then(|| chrono::Duration::seconds(n));
    }
    if let Some(on) = v.get("requiresDuplicateDetection").and_then(Value::as_bool) {
        let window = v
            .get("duplicateDetectionHistoryTimeWindow")
            .and_then(Value::as_str)
            .and_then(crate::iso::parse_iso_duration)
            .unwrap_or(chrono::Duration::minutes(10));
        c.duplicate_detection_window = on.then_some(window);
    }
    c
}

fn parse_rules(v: &Value) -> Result<Vec<Rule>, String> {
    use super::filter::{CorrelationFilter, Filter};
    let Some(rules) = v.get("rules") else {
        return Ok(Vec::new());
    };
    let rules = rules.as_array().ok_or("rules must be an array")?;
    let mut out = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let name = r
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("rule{i}"));
        let filter = if let Some(sql) = r.get("sqlFilter").and_then(Value::as_str) {
            Filter::sql(sql).map_err(|e| format!("rule {name}: {e}"))?
        } else if let Some(c) = r.get("correlationFilter") {
            let s = |k: &str| c.get(k).and_then(Value::as_str).map(str::to_string);
            Filter::Correlation(CorrelationFilter {
                correlation_id: s("correlationId"),
                message_id: s("messageId"),
                to: s("to"),
                reply_to: s("replyTo"),
                label: s("label"),
                session_id: s("sessionId"),
                reply_to_session_id: s("replyToSessionId"),
                content_type: s("contentType"),
                properties: c
                    .get("properties")
                    .and_then(Value::as_object)
                    .map(|o| {
                        o.iter()
                            .map(|(k, v)| (k.clone(), PropValue::from_json(v)))
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        } else {
            return Err(format!("rule {name}: needs sqlFilter or correlationFilter"));
        };
        out.push(Rule { name, filter });
    }
    Ok(out)
}

async fn put_entity(sb: &ServiceBus, req: &Req, path: &str) -> Resp {
    let body: Value = if req.body().is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(req.body()) {
            Ok(v) => v,
            Err(e) => {
                return admin_error(
                    StatusCode::BAD_REQUEST,
                    &format!("the body is not JSON: {e}"),
                );
            }
        }
    };
    let config = entity_config(&body);
    let Some(p) = ReceivePath::parse(path).filter(|p| !p.dead_letter) else {
        return admin_error(StatusCode::BAD_REQUEST, "not an entity path");
    };
    let result = match &p.entity {
        EntityPath::Queue(name) | EntityPath::Topic(name) => {
            let kind = query_param(req, "kind").unwrap_or_else(|| "queue".into());
            match kind.as_str() {
                "queue" => sb.with(|ns| ns.put_queue(name, config)).await,
                "topic" => sb.with(|ns| ns.put_topic(name, config)).await,
                _ => return admin_error(StatusCode::BAD_REQUEST, "kind must be queue or topic"),
            }
        }
        EntityPath::Subscription(t, s) => {
            let rules = match parse_rules(&body) {
                Ok(r) => r,
                Err(e) => return admin_error(StatusCode::BAD_REQUEST, &e),
            };
            sb.with(|ns| ns.put_subscription(t, s, config, rules)).await
        }
    };
    match result {
        Ok(()) => httpserv::json(StatusCode::OK, &json!({"entity": p.display()})),
        Err(e @ BrokerError::EntityNotFound(_)) => {
            admin_error(StatusCode::NOT_FOUND, &e.to_string())
        }
        Err(e) => admin_error(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("%24DeadLetterQueue"), "$DeadLetterQueue");
        assert_eq!(percent_decode("a%2Fb%41"), "a/bA");
        assert_eq!(percent_decode("%a\u{e9}x"), "%a\u{e9}x");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%C3%A9"), "\u{e9}");
    }

    #[test]
    fn plumbing_headers_are_not_properties() {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer x"));
        h.insert("x-ms-version", HeaderValue::from_static("1"));
        h.insert("type", HeaderValue::from_static("\"t\""));
        let props = app_props_from_headers(&h);
        assert_eq!(props.len(), 1);
        assert_eq!(props["type"], PropValue::Str("t".into()));
    }
}
