//! A Service Bus client over the REST API (peek-lock receive, complete, abandon, renew, send),
//! authenticated with a managed-identity bearer token or a SAS key from the connection string.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::auth::{TokenSource, service_bus_sas};
use crate::encoding::{BindingData, HostValue, parse_time};

/// How to reach one namespace.
#[derive(Debug, Clone)]
pub struct Namespace {
    /// `https://host:port` (no trailing slash).
    pub base: String,
    /// `host:port`, as the SDK's FullyQualifiedNamespace.
    pub fqns: String,
    sas: Option<(String, String)>,
}

impl Namespace {
    /// Resolve a binding's `connection` from app settings: a connection string in `<conn>`
    /// (or `AzureWebJobs<conn>`), or `<conn>__fullyQualifiedNamespace` (identity-based).
    pub fn resolve(conn: &str, settings: &BTreeMap<String, String>) -> anyhow::Result<Self> {
        let cs = settings
            .get(conn)
            .or_else(|| settings.get(&format!("AzureWebJobs{conn}")));
        if let Some(cs) = cs.filter(|c| c.contains('=')) {
            let mut endpoint = None;
            let mut key_name = None;
            let mut key = None;
            for part in cs.split(';') {
                let Some((k, v)) = part.split_once('=') else {
                    continue;
                };
                match k.trim().to_ascii_lowercase().as_str() {
                    "endpoint" => endpoint = Some(v.trim().to_string()),
                    "sharedaccesskeyname" => key_name = Some(v.trim().to_string()),
                    "sharedaccesskey" => key = Some(v.trim().to_string()),
                    _ => {}
                }
            }
            let endpoint =
                endpoint.ok_or_else(|| anyhow!("connection string {conn:?} has no Endpoint"))?;
            let mut ns = Self::from_endpoint(&endpoint)?;
            if let (Some(n), Some(k)) = (key_name, key) {
                ns.sas = Some((n, k));
            }
            return Ok(ns);
        }
        let fq = settings
            .get(&format!("{conn}__fullyQualifiedNamespace"))
            .or(cs)
            .ok_or_else(|| {
                anyhow!("app setting {conn:?} / {conn}__fullyQualifiedNamespace is not set")
            })?;
        Self::from_endpoint(fq)
    }

    fn from_endpoint(endpoint: &str) -> anyhow::Result<Self> {
        let e = endpoint.trim().trim_end_matches('/');
        let (scheme, rest) = match e.split_once("://") {
            Some(("sb" | "amqps" | "https", r)) => ("https", r),
            Some(("http", r)) => ("http", r),
            Some((s, _)) => bail!("unsupported Service Bus endpoint scheme {s:?}"),
            None => ("https", e),
        };
        let host = rest.split('/').next().unwrap_or(rest);
        if host.is_empty() {
            bail!("Service Bus endpoint {endpoint:?} has no host");
        }
        Ok(Self {
            base: format!("{scheme}://{host}"),
            fqns: host.to_string(),
            sas: None,
        })
    }
}

/// A message received in peek-lock mode.
#[derive(Debug, Clone)]
pub struct ReceivedMessage {
    pub body: Bytes,
    pub broker: Map<String, Value>,
    pub content_type: Option<String>,
    pub application_properties: Map<String, Value>,
    pub message_id: String,
    pub lock_token: String,
    pub delivery_count: i64,
    pub sequence_number: i64,
    pub enqueued: Option<DateTime<Utc>>,
    pub locked_until: Option<DateTime<Utc>>,
}

impl ReceivedMessage {
    fn broker_str(&self, key: &str) -> Option<String> {
        self.broker.get(key).and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        })
    }

    /// The trigger's binding data (ServiceBusTriggerBindingStrategy, extension 5.x).
    pub fn binding_data(&self, fqns: &str) -> BindingData {
        let mut bd = BindingData::new();
        for k in [
            "MessageReceiver",
            "MessageSession",
            "MessageActions",
            "SessionActions",
            "ReceiveActions",
        ] {
            bd.set(k, HostValue::Json(Value::Object(Map::new())));
        }
        bd.set(
            "Client",
            HostValue::Json(serde_json::json!({
                "FullyQualifiedNamespace": fqns,
                "IsClosed": false,
                "TransportType": 0,
                "Identifier": format!("{fqns}-{}", uuid::Uuid::new_v4()),
            })),
        );
        let opt_str = |v: Option<String>| v.map(HostValue::Str).unwrap_or(HostValue::Null);
        bd.set("DeliveryCount", HostValue::Int(self.delivery_count));
        bd.set(
            "DeadLetterSource",
            opt_str(self.broker_str("DeadLetterSource")),
        );
        bd.set("LockToken", HostValue::Str(self.lock_token.clone()));
        let expires = self.expires_at();
        bd.set("ExpiresAtUtc", HostValue::DateTime(expires));
        bd.set("ExpiresAt", HostValue::DateTimeOffset(expires));
        let enq = self.enqueued.unwrap_or_else(Utc::now);
        bd.set("EnqueuedTimeUtc", HostValue::DateTime(enq));
        bd.set("EnqueuedTime", HostValue::DateTimeOffset(enq));
        bd.set("MessageId", HostValue::Str(self.message_id.clone()));
        bd.set("ContentType", opt_str(self.content_type.clone()));
        bd.set("ReplyTo", opt_str(self.broker_str("ReplyTo")));
        bd.set("SequenceNumber", HostValue::Int(self.sequence_number));
        bd.set("To", opt_str(self.broker_str("To")));
        let subject = self
            .broker_str("Label")
            .or_else(|| self.broker_str("Subject"));
        bd.set("Label", opt_str(subject.clone()));
        bd.set("Subject", opt_str(subject));
        bd.set("CorrelationId", opt_str(self.broker_str("CorrelationId")));
        let props = HostValue::Json(Value::Object(self.application_properties.clone()));
        bd.set("ApplicationProperties", props.clone());
        bd.set("UserProperties", props);
        bd.set("SessionId", opt_str(self.broker_str("SessionId")));
        bd.set(
            "ReplyToSessionId",
            opt_str(self.broker_str("ReplyToSessionId")),
        );
        bd.set("PartitionKey", opt_str(self.broker_str("PartitionKey")));
        bd.set(
            "TransactionPartitionKey",
            opt_str(self.broker_str("ViaPartitionKey")),
        );
        bd
    }

    /// Enqueued time + TimeToLive, or DateTimeOffset.MaxValue when the message never expires.
    pub fn expires_at(&self) -> DateTime<Utc> {
        let max = DateTime::parse_from_rfc3339("9999-12-31T23:59:59Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|_| Utc::now());
        if let Some(t) = self
            .broker
            .get("ExpiresAtUtc")
            .and_then(Value::as_str)
            .and_then(parse_time)
        {
            return t;
        }
        match (
            self.enqueued,
            self.broker.get("TimeToLive").and_then(Value::as_f64),
        ) {
            (Some(enq), Some(ttl)) if ttl > 0.0 && ttl < 1.0e10 => {
                enq + chrono::Duration::milliseconds((ttl * 1000.0) as i64)
            }
            _ => max,
        }
    }
}

/// Headers that are part of HTTP or the REST protocol, not application properties.
fn is_protocol_header(name: &str) -> bool {
    matches!(
        name,
        "content-type"
            | "content-length"
            | "date"
            | "server"
            | "transfer-encoding"
            | "brokerproperties"
            | "location"
            | "strict-transport-security"
            | "connection"
            | "keep-alive"
            | "vary"
            | "cache-control"
            | "expires"
            | "pragma"
    ) || name.starts_with("x-ms-")
        || name.starts_with("access-control-")
}

/// HTTP/1 lower-cases header names; the properties Service Bus itself sets on a dead-lettered
/// message get back the names the SDK (and so the Functions extension) shows.
fn canonical_property_name(header: &str) -> String {
    match header {
        "deadletterreason" => "DeadLetterReason".into(),
        "deadlettererrordescription" => "DeadLetterErrorDescription".into(),
        other => other.to_string(),
    }
}

/// Application property header values: JSON literals (`"text"`, `12`, `true`) or raw text.
fn property_value(raw: &str) -> Value {
    match serde_json::from_str::<Value>(raw) {
        Ok(v @ (Value::String(_) | Value::Number(_) | Value::Bool(_))) => v,
        _ => Value::String(raw.to_string()),
    }
}

/// A REST client for one namespace.
#[derive(Clone)]
pub struct ServiceBusClient {
    http: reqwest::Client,
    ns: Namespace,
    tokens: Arc<TokenSource>,
}

impl ServiceBusClient {
    pub fn new(http: reqwest::Client, ns: Namespace, tokens: Arc<TokenSource>) -> Self {
        Self { http, ns, tokens }
    }

    pub fn namespace(&self) -> &Namespace {
        &self.ns
    }

    async fn auth(&self, entity_url: &str) -> anyhow::Result<String> {
        match &self.ns.sas {
            Some((name, key)) => Ok(service_bus_sas(
                entity_url,
                name,
                key,
                Utc::now().timestamp() + 3600,
            )),
            None => Ok(format!(
                "Bearer {}",
                self.tokens.token("https://servicebus.azure.net").await?
            )),
        }
    }

    fn entity_url(&self, entity: &str) -> String {
        format!("{}/{}", self.ns.base, entity)
    }

    /// Peek-lock the next message; `None` when none arrived within `timeout_secs`.
    pub async fn receive(
        &self,
        entity: &str,
        timeout_secs: u64,
    ) -> anyhow::Result<Option<ReceivedMessage>> {
        let url = format!(
            "{}/messages/head?timeout={timeout_secs}",
            self.entity_url(entity)
        );
        let resp = self
            .http
            .post(&url)
            .header("Authorization", self.auth(&self.entity_url(entity)).await?)
            .header("Content-Length", "0")
            .timeout(std::time::Duration::from_secs(timeout_secs + 30))
            .send()
            .await
            .with_context(|| format!("peek-lock on {entity} failed"))?;
        let status = resp.status().as_u16();
        match status {
            204 => return Ok(None),
            200 | 201 => {}
            _ => {
                let text = resp.text().await.unwrap_or_default();
                bail!(
                    "peek-lock on {entity}: HTTP {status}: {}",
                    text.chars().take(300).collect::<String>()
                );
            }
        }
        let headers = resp.headers().clone();
        let broker: Map<String, Value> = match headers.get("BrokerProperties") {
            Some(v) => serde_json::from_slice(v.as_bytes())
                .context("BrokerProperties header is not a JSON object")?,
            None => bail!("peek-lock on {entity}: response has no BrokerProperties header"),
        };
        let mut application_properties = Map::new();
        for (name, value) in &headers {
            if is_protocol_header(name.as_str()) {
                continue;
            }
            if let Ok(v) = value.to_str() {
                application_properties
                    .insert(canonical_property_name(name.as_str()), property_value(v));
            }
        }
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp.bytes().await.context("reading message body")?;
        let s = |k: &str| broker.get(k).and_then(Value::as_str).map(str::to_string);
        let n = |k: &str| {
            broker.get(k).and_then(|v| match v {
                Value::Number(n) => n.as_i64(),
                Value::String(s) => s.parse().ok(),
                _ => None,
            })
        };
        let lock_token =
            s("LockToken").ok_or_else(|| anyhow!("BrokerProperties has no LockToken"))?;
        let message_id =
            s("MessageId").ok_or_else(|| anyhow!("BrokerProperties has no MessageId"))?;
        Ok(Some(ReceivedMessage {
            content_type,
            application_properties,
            message_id,
            lock_token,
            delivery_count: n("DeliveryCount").unwrap_or(1),
            sequence_number: n("SequenceNumber").unwrap_or(0),
            enqueued: s("EnqueuedTimeUtc").as_deref().and_then(parse_time),
            locked_until: s("LockedUntilUtc").as_deref().and_then(parse_time),
            body,
            broker,
        }))
    }

    async fn settle(
        &self,
        method: reqwest::Method,
        entity: &str,
        msg: &ReceivedMessage,
        what: &str,
    ) -> anyhow::Result<reqwest::Response> {
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let url = format!(
            "{}/messages/{}/{}",
            self.entity_url(entity),
            enc(&msg.message_id),
            enc(&msg.lock_token)
        );
        let resp = self
            .http
            .request(method, &url)
            .header("Authorization", self.auth(&self.entity_url(entity)).await?)
            .header("Content-Length", "0")
            .send()
            .await
            .with_context(|| format!("{what} of message {} on {entity} failed", msg.message_id))?;
        if !resp.status().is_success() {
            bail!(
                "{what} of message {} on {entity}: HTTP {}",
                msg.message_id,
                resp.status()
            );
        }
        Ok(resp)
    }

    pub async fn complete(&self, entity: &str, msg: &ReceivedMessage) -> anyhow::Result<()> {
        self.settle(reqwest::Method::DELETE, entity, msg, "complete")
            .await
            .map(|_| ())
    }

    pub async fn abandon(&self, entity: &str, msg: &ReceivedMessage) -> anyhow::Result<()> {
        self.settle(reqwest::Method::PUT, entity, msg, "abandon")
            .await
            .map(|_| ())
    }

    /// Renew the lock; returns the new LockedUntilUtc when the server reports it.
    pub async fn renew(
        &self,
        entity: &str,
        msg: &ReceivedMessage,
    ) -> anyhow::Result<Option<DateTime<Utc>>> {
        let resp = self
            .settle(reqwest::Method::POST, entity, msg, "renew lock")
            .await?;
        let until = resp
            .headers()
            .get("BrokerProperties")
            .and_then(|v| serde_json::from_slice::<Map<String, Value>>(v.as_bytes()).ok())
            .and_then(|b| {
                b.get("LockedUntilUtc")
                    .and_then(Value::as_str)
                    .and_then(parse_time)
            });
        Ok(until)
    }

    /// Send one message (`POST /{entity}/messages`, 201).
    pub async fn send(
        &self,
        entity: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> anyhow::Result<()> {
        let url = format!("{}/messages", self.entity_url(entity));
        let resp = self
            .http
            .post(&url)
            .header("Authorization", self.auth(&self.entity_url(entity)).await?)
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .with_context(|| format!("send to {entity} failed"))?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            bail!(
                "send to {entity}: HTTP {status}: {}",
                text.chars().take(300).collect::<String>()
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn resolves_connections() {
        let ns = Namespace::resolve(
            "SB",
            &settings(&[(
                "SB",
                "Endpoint=sb://127.0.0.1:7445/;SharedAccessKeyName=root;SharedAccessKey=abc",
            )]),
        )
        .unwrap();
        assert_eq!(ns.base, "https://127.0.0.1:7445");
        assert_eq!(ns.fqns, "127.0.0.1:7445");
        assert!(ns.sas.is_some());
        let ns = Namespace::resolve(
            "SB",
            &settings(&[("SB__fullyQualifiedNamespace", "127.0.0.1:7445")]),
        )
        .unwrap();
        assert_eq!(ns.base, "https://127.0.0.1:7445");
        assert!(ns.sas.is_none());
        let ns =
            Namespace::resolve("SB", &settings(&[("SB", "Endpoint=http://localhost:1/")])).unwrap();
        assert_eq!(ns.base, "http://localhost:1");
        assert!(Namespace::resolve("SB", &settings(&[])).is_err());
    }

    #[test]
    fn property_values() {
        assert_eq!(property_value("\"High\""), Value::String("High".into()));
        assert_eq!(property_value("12"), serde_json::json!(12));
        assert_eq!(property_value("High"), Value::String("High".into()));
    }
}
