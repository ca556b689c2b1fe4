//! Test support: a function app writer for the test handler, and an in-test stub of the
//! Service Bus REST API (peek-lock, MaxDeliveryCount → dead letter) plus a managed-identity
//! endpoint, served over TLS with a throwaway certificate.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

pub const HANDLER: &str = env!("CARGO_BIN_EXE_devcloud-test-handler");

/// Write a function app whose handler is the test handler.
pub fn write_app(
    dir: &Path,
    extra_host: Value,
    functions: &[(&str, Value)],
    settings: Value,
) -> PathBuf {
    let mut host = json!({
        "version": "2.0",
        "customHandler": {"description": {"defaultExecutablePath": HANDLER, "workingDirectory": "", "arguments": []}},
        "extensionBundle": {"id": "Microsoft.Azure.Functions.ExtensionBundle", "version": "[4.*, 5.0.0)"},
    });
    if let (Value::Object(h), Value::Object(e)) = (&mut host, extra_host) {
        h.extend(e);
    }
    std::fs::write(
        dir.join("host.json"),
        serde_json::to_vec_pretty(&host).unwrap(),
    )
    .unwrap();
    let records = dir.join("records");
    std::fs::create_dir_all(&records).unwrap();
    let mut values =
        json!({"FUNCTIONS_WORKER_RUNTIME": "custom", "TEST_RECORD_DIR": records.to_str().unwrap()});
    if let (Value::Object(v), Value::Object(s)) = (&mut values, settings) {
        v.extend(s);
    }
    std::fs::write(
        dir.join("local.settings.json"),
        serde_json::to_vec_pretty(&json!({"IsEncrypted": false, "Values": values})).unwrap(),
    )
    .unwrap();
    for (name, fj) in functions {
        // The Functions host reads <Name>/function.json at the app root.
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("function.json"),
            serde_json::to_vec_pretty(fj).unwrap(),
        )
        .unwrap();
    }
    records
}

/// Every invocation the test handler recorded (`{"function","headers","body","pid"}`).
pub fn records(dir: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "json")
            && let Ok(text) = std::fs::read_to_string(&p)
            && let Ok(v) = serde_json::from_str::<Value>(&text)
        {
            out.push(v);
        }
    }
    out
}

pub fn records_for(dir: &Path, function: &str) -> Vec<Value> {
    records(dir)
        .into_iter()
        .filter(|r| r["function"] == function)
        .collect()
}

/// The sorted `DeliveryCount`s with which `function` saw the message `message_id`.
pub fn delivery_counts(dir: &Path, function: &str, message_id: &str) -> Vec<String> {
    let encoded = json!(format!("\"{message_id}\""));
    let mut counts: Vec<String> = records_for(dir, function)
        .iter()
        .filter(|r| r["body"]["Metadata"]["MessageId"] == encoded)
        .filter_map(|r| {
            r["body"]["Metadata"]["DeliveryCount"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    counts.sort();
    counts
}

/// Poll `cond` every 50 ms until it holds or `secs` pass.
pub async fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn process_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    pid != 0 && unsafe { libc::kill(pid as i32, 0) } == 0
}

// ---------------------------------------------------------------- Service Bus stub

#[derive(Debug, Clone)]
pub struct StubMessage {
    pub id: String,
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    pub delivery_count: i64,
    pub sequence: i64,
}

#[derive(Default)]
pub struct Entity {
    pub ready: VecDeque<StubMessage>,
    pub locked: HashMap<String, (StubMessage, Instant)>,
    pub dead: Vec<StubMessage>,
    pub completed: Vec<StubMessage>,
    pub max_locked: usize,
}

#[derive(Default)]
pub struct Broker {
    pub entities: HashMap<String, Entity>,
    pub seq: i64,
    pub unauthorized: usize,
}

pub struct SbStub {
    pub addr: std::net::SocketAddr,
    pub broker: Arc<Mutex<Broker>>,
    pub ca_pem: PathBuf,
    _task: tokio::task::JoinHandle<()>,
}

pub const MAX_DELIVERY: i64 = 3;
pub const TOKEN: &str = "stub-token";
pub const IDENTITY_HEADER: &str = "stub-identity-header";

impl SbStub {
    pub async fn start(dir: &Path) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let cert = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_string(),
            "localhost".to_string(),
        ])
        .unwrap();
        let ca_pem = dir.join("stub-ca.pem");
        std::fs::write(&ca_pem, cert.cert.pem()).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
        let cfg = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let broker = Arc::new(Mutex::new(Broker::default()));
        let b = broker.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let b = b.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |req| {
                        let b = b.clone();
                        async move { Ok::<_, Infallible>(handle(b, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            broker,
            ca_pem,
            _task: task,
        }
    }

    pub fn send(&self, entity: &str, body: &str) -> String {
        let mut b = self.broker.lock().unwrap();
        b.seq += 1;
        let seq = b.seq;
        let id = uuid::Uuid::new_v4().to_string();
        b.entities
            .entry(entity.to_string())
            .or_default()
            .ready
            .push_back(StubMessage {
                id: id.clone(),
                body: body.as_bytes().to_vec(),
                content_type: Some("application/json".into()),
                delivery_count: 0,
                sequence: seq,
            });
        id
    }

    pub fn with<R>(&self, entity: &str, f: impl FnOnce(&Entity) -> R) -> R {
        let mut b = self.broker.lock().unwrap();
        f(b.entities.entry(entity.to_string()).or_default())
    }

    /// App settings pointing a connection named `conn` at this stub with managed identity.
    pub fn settings(&self, conn: &str) -> Value {
        json!({
            format!("{conn}__fullyQualifiedNamespace"): self.addr.to_string(),
            "IDENTITY_ENDPOINT": format!("https://{}/msi/token", self.addr),
            "IDENTITY_HEADER": IDENTITY_HEADER,
        })
    }
}

fn resp(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

fn rfc1123(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

async fn handle(
    b: Arc<Mutex<Broker>>,
    req: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let method = req.method().clone();
    if path == "/msi/token" {
        let ok = req
            .headers()
            .get("X-IDENTITY-HEADER")
            .is_some_and(|v| v == IDENTITY_HEADER)
            && query.contains("resource=https%3A%2F%2Fservicebus.azure.net")
            && query.contains("api-version=2019-08-01");
        if !ok {
            return resp(StatusCode::BAD_REQUEST, "bad identity request");
        }
        let exp = chrono::Utc::now().timestamp() + 3600;
        return resp(
            StatusCode::OK,
            json!({"access_token": TOKEN, "expires_on": exp.to_string(), "token_type": "Bearer"})
                .to_string(),
        );
    }
    if req
        .headers()
        .get("authorization")
        .is_none_or(|v| v != format!("Bearer {TOKEN}").as_str())
    {
        b.lock().unwrap().unauthorized += 1;
        return resp(StatusCode::UNAUTHORIZED, "no token");
    }
    let ct = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let trimmed = path.trim_start_matches('/');
    let Some((entity, rest)) = trimmed.split_once("/messages") else {
        return resp(StatusCode::NOT_FOUND, "");
    };
    let entity = entity.to_string();
    let rest = rest.trim_start_matches('/').to_string();
    match (method, rest.as_str()) {
        (Method::POST, "") => {
            let mut g = b.lock().unwrap();
            g.seq += 1;
            let seq = g.seq;
            g.entities
                .entry(entity)
                .or_default()
                .ready
                .push_back(StubMessage {
                    id: uuid::Uuid::new_v4().to_string(),
                    body: body.to_vec(),
                    content_type: ct,
                    delivery_count: 0,
                    sequence: seq,
                });
            resp(StatusCode::CREATED, "")
        }
        (Method::POST, "head") => {
            let timeout: u64 = query
                .split('&')
                .find_map(|p| p.strip_prefix("timeout="))
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            let deadline = Instant::now() + Duration::from_secs(timeout);
            loop {
                {
                    let mut g = b.lock().unwrap();
                    let e = g.entities.entry(entity.clone()).or_default();
                    // Expired locks go back to the queue.
                    let expired: Vec<String> = e
                        .locked
                        .iter()
                        .filter(|(_, (_, t))| t.elapsed() > Duration::from_secs(10))
                        .map(|(k, _)| k.clone())
                        .collect();
                    for k in expired {
                        if let Some((m, _)) = e.locked.remove(&k) {
                            e.ready.push_front(m);
                        }
                    }
                    if let Some(mut m) = e.ready.pop_front() {
                        m.delivery_count += 1;
                        let lock = uuid::Uuid::new_v4().to_string();
                        let now = chrono::Utc::now();
                        let props = json!({
                            "DeliveryCount": m.delivery_count,
                            "LockToken": lock,
                            "MessageId": m.id,
                            "SequenceNumber": m.sequence,
                            "EnqueuedTimeUtc": rfc1123(now),
                            "LockedUntilUtc": rfc1123(now + chrono::Duration::seconds(10)),
                        });
                        e.locked.insert(lock, (m.clone(), Instant::now()));
                        e.max_locked = e.max_locked.max(e.locked.len());
                        let mut r = resp(StatusCode::CREATED, m.body.clone());
                        r.headers_mut()
                            .insert("BrokerProperties", props.to_string().parse().unwrap());
                        if let Some(ct) = &m.content_type {
                            r.headers_mut().insert("Content-Type", ct.parse().unwrap());
                        }
                        r.headers_mut()
                            .insert("Priority", "\"High\"".parse().unwrap());
                        return r;
                    }
                }
                if Instant::now() >= deadline {
                    return resp(StatusCode::NO_CONTENT, "");
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
        (m, lock_path) => {
            let Some((_id, lock)) = lock_path.split_once('/') else {
                return resp(StatusCode::NOT_FOUND, "");
            };
            let mut g = b.lock().unwrap();
            let e = g.entities.entry(entity).or_default();
            match m {
                Method::DELETE => match e.locked.remove(lock) {
                    Some((msg, _)) => {
                        e.completed.push(msg);
                        resp(StatusCode::OK, "")
                    }
                    None => resp(StatusCode::GONE, "lock lost"),
                },
                Method::PUT => match e.locked.remove(lock) {
                    Some((msg, _)) => {
                        if msg.delivery_count >= MAX_DELIVERY {
                            e.dead.push(msg);
                        } else {
                            e.ready.push_front(msg);
                        }
                        resp(StatusCode::OK, "")
                    }
                    None => resp(StatusCode::GONE, "lock lost"),
                },
                Method::POST => match e.locked.get_mut(lock) {
                    Some((_, t)) => {
                        *t = Instant::now();
                        let mut r = resp(StatusCode::OK, "");
                        let props = json!({"LockedUntilUtc": rfc1123(chrono::Utc::now() + chrono::Duration::seconds(10))});
                        r.headers_mut()
                            .insert("BrokerProperties", props.to_string().parse().unwrap());
                        r
                    }
                    None => resp(StatusCode::GONE, "lock lost"),
                },
                _ => resp(StatusCode::METHOD_NOT_ALLOWED, ""),
            }
        }
    }
}
