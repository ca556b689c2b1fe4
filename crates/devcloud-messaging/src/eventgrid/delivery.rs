//! Event Grid subscriptions at run time: routing published events through filters, the webhook
//! validation handshakes, delivery with Event Grid's retry schedule (scaled by a time factor),
//! immediate dead-lettering on 400/413, dead-lettering after the last attempt or the event TTL,
//! and the records the admin endpoint shows.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::filter::EventFilter;
use super::model::{Event, Schema, event_time, rfc3339, validation_event};

/// Where a subscription delivers.
#[derive(Debug, Clone, PartialEq)]
pub enum Destination {
    /// Any webhook URL.
    Webhook(String),
    /// A function of the local Functions host: `<host>/runtime/webhooks/eventgrid?functionName=<name>`.
    Function(String),
}

/// A subscription's settings.
#[derive(Debug, Clone)]
pub struct SubscriptionConfig {
    pub name: String,
    /// Custom topic name, `storage` for the blob system topic or `resources` for ARM resource events.
    pub topic: String,
    pub filter: EventFilter,
    pub destination: Destination,
    pub delivery_schema: Schema,
    pub max_delivery_attempts: u32,
    /// Event time-to-live (Azure default 1440 minutes), before scaling.
    pub event_ttl: Duration,
    /// `deadLetterDestination`: the blob container of the watched storage account that dead letters
    /// are written to (`None`: kept in memory only, as Azure drops them).
    pub dead_letter_container: Option<String>,
}

impl SubscriptionConfig {
    /// A subscription with Azure's defaults (30 attempts, 24 h TTL).
    pub fn new(
        name: &str,
        topic: &str,
        destination: Destination,
        delivery_schema: Schema,
    ) -> SubscriptionConfig {
        SubscriptionConfig {
            name: name.to_string(),
            topic: topic.to_string(),
            filter: EventFilter::default(),
            destination,
            delivery_schema,
            max_delivery_attempts: 30,
            event_ttl: Duration::from_secs(1440 * 60),
            dead_letter_container: None,
        }
    }
}

/// Delivery settings shared by all subscriptions.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// Multiplies every retry delay and the event TTL (1.0 = Azure's schedule; tests use ~0.001).
    pub time_factor: f64,
    /// How long a webhook may take to answer (Azure: 30 s).
    pub timeout: Duration,
    /// Base URL of the local Functions host (for `Destination::Function`).
    pub functions_host: Option<String>,
    /// Whether function destinations get the validation handshake too (the real extension answers it).
    pub validate_functions: bool,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            time_factor: 1.0,
            timeout: Duration::from_secs(30),
            functions_host: None,
            validate_functions: true,
        }
    }
}

/// Event Grid's retry schedule: 10 s, 30 s, 1 min, 5 min, 10 min, 30 min, 1 h, 3 h, 6 h, then every 12 h
/// (within the event's time to live, 24 h by default).
pub fn retry_delay(failed_attempts: u32, status: Option<u16>) -> Duration {
    const SCHEDULE: [u64; 9] = [10, 30, 60, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600];
    let idx = (failed_attempts.max(1) - 1) as usize;
    let base = SCHEDULE.get(idx).copied().unwrap_or(12 * 3600);
    let floor = match status {
        Some(401 | 403 | 404) => 300,
        Some(408) => 120,
        Some(503) => 30,
        _ => 10,
    };
    Duration::from_secs(base.max(floor))
}

/// Answers Event Grid never retries, a configuration error that retrying cannot fix: the event is
/// dead-lettered at once (or dropped). A webhook's 400, 401, 403 and 413; an Azure resource's (a
/// function) 400, 403 and 413.
pub fn is_final(destination: &Destination, status: Option<u16>) -> bool {
    match status {
        Some(400 | 403 | 413) => true,
        Some(401) => matches!(destination, Destination::Webhook(_)),
        _ => false,
    }
}

/// The `lastDeliveryOutcome` word for a result.
fn outcome_word(status: Option<u16>) -> &'static str {
    match status {
        Some(200..=204) => "Succeeded",
        Some(400) => "BadRequest",
        Some(401) => "Unauthorized",
        Some(403) => "Forbidden",
        Some(404) => "NotFound",
        Some(408) => "TimedOut",
        Some(413) => "RequestEntityTooLarge",
        Some(503) => "Busy",
        Some(_) => "GenericError",
        None => "Aborted",
    }
}

/// A subscription and its run-time state.
pub struct Subscription {
    pub config: SubscriptionConfig,
    /// Handshake done (guarded so only one runs).
    validated: Mutex<bool>,
    delivered: AtomicU64,
    failed_attempts: AtomicU64,
    in_flight: AtomicU64,
    dead_letters: std::sync::Mutex<Vec<Value>>,
}

impl Subscription {
    pub fn new(config: SubscriptionConfig, validated: bool) -> Subscription {
        Subscription {
            config,
            validated: Mutex::new(validated),
            delivered: AtomicU64::new(0),
            failed_attempts: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            dead_letters: std::sync::Mutex::new(Vec::new()),
        }
    }

    pub async fn state_json(&self) -> Value {
        let dest = match &self.config.destination {
            Destination::Webhook(u) => json!({"endpointType": "WebHook", "endpointUrl": u}),
            Destination::Function(f) => json!({"endpointType": "AzureFunction", "function": f}),
        };
        let dead = self.dead_letters.lock().map(|d| d.len()).unwrap_or(0);
        json!({
            "name": self.config.name,
            "topic": self.config.topic,
            "destination": dest,
            "eventDeliverySchema": self.config.delivery_schema.arm_name(),
            "filter": self.config.filter.to_arm(),
            "maxDeliveryAttempts": self.config.max_delivery_attempts,
            "retryPolicy": {"maxDeliveryAttempts": self.config.max_delivery_attempts,
                            "eventTimeToLiveInMinutes": self.config.event_ttl.as_secs() / 60},
            "deadLetterDestination": self.config.dead_letter_container.as_ref().map(|c|
                json!({"endpointType": "StorageBlob", "properties": {"blobContainerName": c}})),
            "provisioningState": if *self.validated.lock().await { "Succeeded" } else { "AwaitingManualAction" },
            "delivered": self.delivered.load(Ordering::Relaxed),
            "failedAttempts": self.failed_attempts.load(Ordering::Relaxed),
            "inFlight": self.in_flight.load(Ordering::Relaxed),
            "deadLettered": dead,
        })
    }

    /// Removes a dead letter by event id and returns the event without the dead-letter fields.
    fn take_dead_letter(&self, id: &str) -> Option<Event> {
        let mut d = self.dead_letters.lock().ok()?;
        let i = d
            .iter()
            .position(|e| e.get("id").and_then(Value::as_str) == Some(id))?;
        let mut v = d.remove(i);
        if let Value::Object(o) = &mut v {
            for k in DEAD_LETTER_FIELDS.iter().flatten() {
                o.remove(*k);
            }
        }
        Some(Event {
            schema: self.config.delivery_schema,
            value: v,
        })
    }

    pub fn dead_letters(&self) -> Vec<Value> {
        self.dead_letters
            .lock()
            .map(|d| d.clone())
            .unwrap_or_default()
    }

    /// Marks the handshake done (the subscriber called the validation URL).
    pub async fn mark_validated(&self) {
        *self.validated.lock().await = true;
    }
}

const RECENT: usize = 1000;

/// The fields a dead letter gains (Event Grid schema, then CloudEvents' lower-case names).
const DEAD_LETTER_FIELDS: [[&str; 5]; 2] = [
    [
        "deadLetterReason",
        "deliveryAttempts",
        "lastDeliveryOutcome",
        "publishTime",
        "lastDeliveryAttemptTime",
    ],
    [
        "deadletterreason",
        "deliveryattempts",
        "lastdeliveryoutcome",
        "publishtime",
        "lastdeliveryattempttime",
    ],
];

/// The shared delivery engine.
pub struct Dispatcher {
    pub settings: DeliverySettings,
    client: reqwest::Client,
    subscriptions: std::sync::RwLock<BTreeMap<String, Arc<Subscription>>>,
    deliveries: std::sync::Mutex<VecDeque<Value>>,
    events: std::sync::Mutex<VecDeque<Value>>,
    /// Base URL of this Event Grid server (for `validationUrl`).
    pub self_url: std::sync::RwLock<String>,
    /// Pending validation codes by subscription name.
    codes: std::sync::Mutex<BTreeMap<String, String>>,
    /// Set when the server stops: pending retries end.
    closed: tokio::sync::watch::Sender<bool>,
    /// Where `deadLetterDestination` containers live (the watched storage account), once known.
    pub dead_letter_store: std::sync::OnceLock<DeadLetterStore>,
}

/// Writes dead letters to blob containers of the storage account, as Event Grid does: block blob
/// `<SUBSCRIPTION NAME IN UPPER CASE>/<year>/<month>/<day>/<hour>/<guid>.json` (UTC, no zero padding)
/// holding a JSON array of the dead-lettered events.
pub struct DeadLetterStore {
    /// The account URL (the blob endpoint clients use).
    pub account_url: String,
    pub auth: super::blobwatch::StorageAuth,
    pub client: reqwest::Client,
}

impl DeadLetterStore {
    /// The blob name of a dead letter written at `at`.
    pub fn blob_name(subscription: &str, at: DateTime<Utc>) -> String {
        use chrono::{Datelike, Timelike};
        format!(
            "{}/{}/{}/{}/{}/{}.json",
            subscription.to_uppercase(),
            at.year(),
            at.month(),
            at.day(),
            at.hour(),
            uuid::Uuid::new_v4()
        )
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.account_url.trim_end_matches('/'))
    }

    /// Creates a container if it is missing (as infra deploys it).
    pub async fn ensure_container(&self, container: &str) -> Result<(), String> {
        let url = self.url(&format!("{container}?restype=container"));
        let r = self
            .auth
            .apply(&self.client, http::Method::PUT, &url)?
            .header("Content-Length", "0")
            .send()
            .await
            .map_err(|e| format!("creating container {container}: {e}"))?;
        match r.status().as_u16() {
            201 | 409 => Ok(()),
            s => Err(format!("creating container {container}: HTTP {s}")),
        }
    }

    /// Writes one dead letter; returns the blob name.
    pub async fn write(
        &self,
        container: &str,
        subscription: &str,
        event: &Value,
    ) -> Result<String, String> {
        let name = Self::blob_name(subscription, Utc::now());
        let body = Value::Array(vec![event.clone()]).to_string();
        let r = self
            .auth
            .apply(
                &self.client,
                http::Method::PUT,
                &self.url(&format!("{container}/{name}")),
            )?
            .header("x-ms-blob-type", "BlockBlob")
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("writing dead letter {container}/{name}: {e}"))?;
        if r.status().is_success() {
            Ok(name)
        } else {
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            Err(format!(
                "writing dead letter {container}/{name}: HTTP {status}: {}",
                text.chars().take(200).collect::<String>()
            ))
        }
    }
}

fn push_bounded(q: &std::sync::Mutex<VecDeque<Value>>, v: Value) {
    if let Ok(mut q) = q.lock() {
        if q.len() >= RECENT {
            q.pop_front();
        }
        q.push_back(v);
    }
}

/// A handshake that failed (the subscription is not created / not delivered to).
#[derive(Debug, thiserror::Error)]
#[error("webhook validation handshake with {url} failed: {reason}")]
pub struct HandshakeError {
    pub url: String,
    pub reason: String,
}

impl Dispatcher {
    pub fn new(settings: DeliverySettings, client: reqwest::Client) -> Dispatcher {
        Dispatcher {
            settings,
            client,
            subscriptions: Default::default(),
            deliveries: Default::default(),
            events: Default::default(),
            self_url: Default::default(),
            codes: Default::default(),
            closed: tokio::sync::watch::channel(false).0,
            dead_letter_store: std::sync::OnceLock::new(),
        }
    }

    /// Ends pending retries (called when the server stops).
    pub fn close(&self) {
        let _ = self.closed.send(true);
    }

    pub fn subscriptions(&self) -> Vec<Arc<Subscription>> {
        self.subscriptions
            .read()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn subscription(&self, name: &str) -> Option<Arc<Subscription>> {
        self.subscriptions
            .read()
            .ok()?
            .get(&name.to_ascii_lowercase())
            .cloned()
    }

    pub fn insert(&self, sub: Arc<Subscription>) {
        if let Ok(mut s) = self.subscriptions.write() {
            s.insert(sub.config.name.to_ascii_lowercase(), sub);
        }
    }

    pub fn remove(&self, name: &str) -> bool {
        self.subscriptions
            .write()
            .map(|mut s| s.remove(&name.to_ascii_lowercase()).is_some())
            .unwrap_or(false)
    }

    pub fn recent_deliveries(&self, max: usize) -> Vec<Value> {
        let q = self
            .deliveries
            .lock()
            .map(|q| q.clone())
            .unwrap_or_default();
        q.into_iter().rev().take(max).rev().collect()
    }

    pub fn recent_events(&self, max: usize) -> Vec<Value> {
        let q = self.events.lock().map(|q| q.clone()).unwrap_or_default();
        q.into_iter().rev().take(max).rev().collect()
    }

    /// The URL a destination is reached at.
    pub fn endpoint_url(&self, d: &Destination) -> Option<String> {
        match d {
            Destination::Webhook(u) => Some(u.clone()),
            Destination::Function(f) => self.settings.functions_host.as_ref().map(|h| {
                format!(
                    "{}/runtime/webhooks/eventgrid?functionName={f}",
                    h.trim_end_matches('/')
                )
            }),
        }
    }

    /// Checks a validation code sent to `validationUrl`.
    pub fn take_validation_code(&self, sub: &str, code: &str) -> bool {
        let Ok(mut codes) = self.codes.lock() else {
            return false;
        };
        if codes
            .get(&sub.to_ascii_lowercase())
            .is_some_and(|c| c == code)
        {
            codes.remove(&sub.to_ascii_lowercase());
            true
        } else {
            false
        }
    }

    /// Runs the handshake for `sub` (once; later calls return at once).
    pub async fn ensure_validated(
        &self,
        sub: &Subscription,
        topic_id: &str,
    ) -> Result<(), HandshakeError> {
        let mut done = sub.validated.lock().await;
        if *done {
            return Ok(());
        }
        let url = self
            .endpoint_url(&sub.config.destination)
            .ok_or_else(|| HandshakeError {
                url: String::new(),
                reason: "no Functions host URL is configured".into(),
            })?;
        if matches!(sub.config.destination, Destination::Function(_))
            && !self.settings.validate_functions
        {
            *done = true;
            return Ok(());
        }
        let result = match sub.config.delivery_schema {
            Schema::CloudEvents => self.handshake_cloudevents(&url).await,
            Schema::EventGrid => self.handshake_eventgrid(sub, &url, topic_id).await,
        };
        let outcome = match &result {
            Ok(()) => "Validated".to_string(),
            Err(e) => e.reason.clone(),
        };
        push_bounded(
            &self.deliveries,
            json!({"time": rfc3339(Utc::now()), "subscription": sub.config.name, "kind": "handshake",
                   "schema": sub.config.delivery_schema.arm_name(), "outcome": outcome}),
        );
        if result.is_ok() {
            *done = true;
        }
        result
    }

    async fn handshake_cloudevents(&self, url: &str) -> Result<(), HandshakeError> {
        let fail = |reason: String| HandshakeError {
            url: url.to_string(),
            reason,
        };
        let resp = self
            .client
            .request(reqwest::Method::OPTIONS, url)
            .header("WebHook-Request-Origin", "eventgrid.azure.net")
            .header("WebHook-Request-Rate", "120")
            .timeout(self.settings.timeout)
            .send()
            .await
            .map_err(|e| fail(format!("OPTIONS request failed: {e}")))?;
        if resp.status().as_u16() != 200 {
            return Err(fail(format!(
                "OPTIONS answered {} (200 expected)",
                resp.status().as_u16()
            )));
        }
        let allowed = resp
            .headers()
            .get("WebHook-Allowed-Origin")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .unwrap_or("");
        if allowed == "*" || allowed.eq_ignore_ascii_case("eventgrid.azure.net") {
            Ok(())
        } else {
            Err(fail(format!(
                "WebHook-Allowed-Origin was '{allowed}' (expected eventgrid.azure.net or *)"
            )))
        }
    }

    async fn handshake_eventgrid(
        &self,
        sub: &Subscription,
        url: &str,
        topic_id: &str,
    ) -> Result<(), HandshakeError> {
        let fail = |reason: String| HandshakeError {
            url: url.to_string(),
            reason,
        };
        let code = uuid::Uuid::new_v4().to_string().to_uppercase();
        let base = self.self_url.read().map(|u| u.clone()).unwrap_or_default();
        let validation_url = format!(
            "{base}/_devcloud/validate?subscription={}&code={code}",
            sub.config.name
        );
        if let Ok(mut codes) = self.codes.lock() {
            codes.insert(sub.config.name.to_ascii_lowercase(), code.clone());
        }
        let body = validation_event(&code, &validation_url, topic_id);
        let resp = self
            .client
            .post(url)
            .header("aeg-event-type", "SubscriptionValidation")
            .header("aeg-subscription-name", sub.config.name.to_uppercase())
            .header("aeg-metadata-version", "1")
            .header("aeg-data-version", "1")
            .header("aeg-delivery-count", "0")
            .json(&body)
            .timeout(self.settings.timeout)
            .send()
            .await
            .map_err(|e| fail(format!("validation POST failed: {e}")))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        if status != 200 {
            return Err(fail(format!(
                "validation POST answered {status} (200 expected)"
            )));
        }
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let echoed = v.get("validationResponse").and_then(Value::as_str) == Some(code.as_str());
        if echoed
            || self
                .wait_for_manual_validation(&sub.config.name, &code)
                .await
        {
            Ok(())
        } else {
            Err(fail(format!(
                "the response did not echo the validation code in validationResponse: {}",
                text.chars().take(200).collect::<String>()
            )))
        }
    }

    /// Manual validation: the subscriber may GET the `validationUrl` instead of echoing the code.
    async fn wait_for_manual_validation(&self, sub: &str, code: &str) -> bool {
        let deadline = tokio::time::Instant::now() + self.settings.timeout;
        loop {
            let pending = self
                .codes
                .lock()
                .map(|c| c.get(&sub.to_ascii_lowercase()).is_some_and(|c| c == code))
                .unwrap_or(false);
            if !pending {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Delivers a dead letter of `sub` again (attempts start from 1). False if there is no such event.
    pub fn resubmit(
        self: &Arc<Self>,
        sub: &Arc<Subscription>,
        event_id: &str,
        topic_id: &str,
    ) -> bool {
        let Some(e) = sub.take_dead_letter(event_id) else {
            return false;
        };
        let me = self.clone();
        let s = sub.clone();
        let topic_id = topic_id.to_string();
        s.in_flight.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            me.deliver(&s, e, &topic_id, Utc::now()).await;
            s.in_flight.fetch_sub(1, Ordering::Relaxed);
        });
        true
    }

    /// Routes events published to `topic` (name) to matching subscriptions; delivery runs in the background.
    pub fn publish(self: &Arc<Self>, topic: &str, topic_id: &str, events: Vec<Event>) -> usize {
        let now = Utc::now();
        let subs: Vec<Arc<Subscription>> = self
            .subscriptions()
            .into_iter()
            .filter(|s| s.config.topic.eq_ignore_ascii_case(topic))
            .collect();
        let mut routed = 0;
        for e in events {
            let targets: Vec<&Arc<Subscription>> = subs
                .iter()
                .filter(|s| s.config.filter.matches(&e))
                .collect();
            push_bounded(
                &self.events,
                json!({"time": rfc3339(now), "topic": topic, "id": e.id(), "type": e.event_type(), "subject": e.subject(),
                       "subscriptions": targets.iter().map(|s| s.config.name.clone()).collect::<Vec<_>>(), "event": e.value}),
            );
            for s in targets {
                routed += 1;
                let me = self.clone();
                let s = s.clone();
                let e = e.clone();
                let topic_id = topic_id.to_string();
                s.in_flight.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    me.deliver(&s, e, &topic_id, now).await;
                    s.in_flight.fetch_sub(1, Ordering::Relaxed);
                });
            }
        }
        routed
    }

    async fn attempt(
        &self,
        sub: &Subscription,
        url: &str,
        payload: &Value,
        attempt: u32,
        data_version: &str,
    ) -> Option<u16> {
        let (ct, body) = match sub.config.delivery_schema {
            Schema::CloudEvents => (
                "application/cloudevents+json; charset=utf-8",
                payload.to_string(),
            ),
            Schema::EventGrid => (
                "application/json",
                Value::Array(vec![payload.clone()]).to_string(),
            ),
        };
        let mut rb = self
            .client
            .post(url)
            .header("Content-Type", ct)
            .header("aeg-event-type", "Notification")
            .header("aeg-subscription-name", sub.config.name.to_uppercase())
            .header("aeg-delivery-count", (attempt - 1).to_string())
            .header("aeg-metadata-version", "1")
            .timeout(self.settings.timeout)
            .body(body);
        if sub.config.delivery_schema == Schema::EventGrid {
            rb = rb.header("aeg-data-version", data_version);
        }
        match rb.send().await {
            Ok(r) => Some(r.status().as_u16()),
            Err(e) if e.is_timeout() => Some(408),
            Err(e) => {
                tracing::debug!(subscription = %sub.config.name, error = %e, "event delivery failed");
                None
            }
        }
    }

    fn scaled(&self, d: Duration) -> Duration {
        d.mul_f64(self.settings.time_factor.max(0.0))
    }

    async fn deliver(
        &self,
        sub: &Subscription,
        event: Event,
        topic_id: &str,
        published: DateTime<Utc>,
    ) {
        let payload = event.to_schema(sub.config.delivery_schema);
        let data_version = event
            .value
            .get("dataVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let ttl_deadline = tokio::time::Instant::now() + self.scaled(sub.config.event_ttl);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let started = Utc::now();
            let (status, note) = match self.ensure_validated(sub, topic_id).await {
                Err(e) => (None, Some(e.reason)),
                Ok(()) => match self.endpoint_url(&sub.config.destination) {
                    None => (
                        None,
                        Some("no Functions host URL is configured".to_string()),
                    ),
                    Some(url) => (
                        self.attempt(sub, &url, &payload, attempt, &data_version)
                            .await,
                        None,
                    ),
                },
            };
            let ok = matches!(status, Some(200..=204));
            push_bounded(
                &self.deliveries,
                json!({"time": rfc3339(started), "subscription": sub.config.name, "kind": "delivery",
                       "eventId": event.id(), "eventType": event.event_type(), "attempt": attempt,
                       "status": status, "outcome": outcome_word(status), "note": note}),
            );
            if ok {
                sub.delivered.fetch_add(1, Ordering::Relaxed);
                return;
            }
            sub.failed_attempts.fetch_add(1, Ordering::Relaxed);
            let reason = if is_final(&sub.config.destination, status) {
                Some("DeliveryFailed")
            } else if attempt >= sub.config.max_delivery_attempts {
                Some("MaxDeliveryAttemptsExceeded")
            } else {
                None
            };
            let delay = self.scaled(retry_delay(attempt, status));
            let reason = reason.or_else(|| {
                (tokio::time::Instant::now() + delay > ttl_deadline).then_some("TimeToLiveExceeded")
            });
            if let Some(reason) = reason {
                self.dead_letter(sub, &payload, reason, attempt, status, published, started)
                    .await;
                return;
            }
            let mut closed = self.closed.subscribe();
            if *closed.borrow() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = closed.changed() => return,
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn dead_letter(
        &self,
        sub: &Subscription,
        payload: &Value,
        reason: &str,
        attempts: u32,
        status: Option<u16>,
        published: DateTime<Utc>,
        last: DateTime<Utc>,
    ) {
        let mut v = payload.clone();
        if let Value::Object(o) = &mut v {
            let names = match sub.config.delivery_schema {
                Schema::EventGrid => DEAD_LETTER_FIELDS[0],
                Schema::CloudEvents => DEAD_LETTER_FIELDS[1],
            };
            o.insert(names[0].into(), json!(reason));
            o.insert(names[1].into(), json!(attempts));
            o.insert(names[2].into(), json!(outcome_word(status)));
            o.insert(names[3].into(), json!(event_time(published)));
            o.insert(names[4].into(), json!(event_time(last)));
        }
        tracing::info!(subscription = %sub.config.name, reason, attempts, "event dead-lettered");
        if let Ok(mut d) = sub.dead_letters.lock() {
            d.push(v.clone());
        }
        if let (Some(container), Some(store)) = (
            &sub.config.dead_letter_container,
            self.dead_letter_store.get(),
        ) {
            let outcome = match store.write(container, &sub.config.name, &v).await {
                Ok(name) => format!("written to {container}/{name}"),
                Err(e) => {
                    tracing::warn!(subscription = %sub.config.name, error = %e, "dead letter not written");
                    e
                }
            };
            push_bounded(
                &self.deliveries,
                json!({"time": rfc3339(Utc::now()), "subscription": sub.config.name, "kind": "deadletter",
                       "eventId": v.get("id"), "outcome": outcome}),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule() {
        assert_eq!(retry_delay(1, Some(500)), Duration::from_secs(10));
        assert_eq!(retry_delay(2, None), Duration::from_secs(30));
        assert_eq!(retry_delay(3, Some(500)), Duration::from_secs(60));
        assert_eq!(retry_delay(1, Some(404)), Duration::from_secs(300));
        assert_eq!(retry_delay(1, Some(408)), Duration::from_secs(120));
        assert_eq!(retry_delay(1, Some(503)), Duration::from_secs(30));
        assert_eq!(retry_delay(7, Some(500)), Duration::from_secs(3600));
        assert_eq!(retry_delay(8, Some(500)), Duration::from_secs(3 * 3600));
        assert_eq!(retry_delay(9, Some(500)), Duration::from_secs(6 * 3600));
        assert_eq!(retry_delay(10, Some(500)), Duration::from_secs(12 * 3600));
        assert_eq!(retry_delay(20, Some(500)), Duration::from_secs(12 * 3600));
    }

    #[test]
    fn answers_never_retried() {
        let hook = Destination::Webhook("https://example.com/hook".into());
        let function = Destination::Function("Announce".into());
        for (destination, status, is) in [
            (&hook, Some(400), true),
            (&hook, Some(401), true),
            (&hook, Some(403), true),
            (&hook, Some(413), true),
            (&hook, Some(404), false),
            (&hook, Some(429), false),
            (&hook, Some(500), false),
            (&hook, None, false),
            (&function, Some(400), true),
            (&function, Some(401), false),
            (&function, Some(403), true),
            (&function, Some(413), true),
            (&function, Some(503), false),
        ] {
            assert_eq!(
                is_final(destination, status),
                is,
                "{destination:?} {status:?}"
            );
        }
    }
}
