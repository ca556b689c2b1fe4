//! A webhook subscriber for galleon's public topic: answers Event Grid's CloudEvents handshake and keeps
//! every event it receives, in arrival order. The demo prints them; the end-to-end tests assert on them.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use serde_json::Value;
use warp::Filter;

/// An event and when it arrived.
pub type Arrival = (chrono::DateTime<chrono::Utc>, Value);

#[derive(Clone, Default)]
pub struct Received {
    events: Arc<Mutex<Vec<Arrival>>>,
}

impl Received {
    pub fn all(&self) -> Vec<Value> {
        self.arrivals().into_iter().map(|(_, e)| e).collect()
    }

    /// Every event with the time it arrived here.
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// The events after the first `seen` ones, with their arrival times (only those are copied).
    pub fn arrivals_after(&self, seen: usize) -> Vec<Arrival> {
        self.events
            .lock()
            .map(|e| e.iter().skip(seen).cloned().collect())
            .unwrap_or_default()
    }

    pub fn of_type(&self, ty: &str) -> Vec<Value> {
        self.all().into_iter().filter(|e| e["type"] == ty).collect()
    }
}

pub struct Receiver {
    pub addr: SocketAddr,
    pub received: Received,
    handle: devcloud_core::ServerHandle,
}

impl Receiver {
    pub async fn start() -> anyhow::Result<Receiver> {
        let received = Received::default();
        let store = received.clone();
        let options = warp::options()
            .and(warp::header::optional::<String>("webhook-request-origin"))
            .map(|origin: Option<String>| {
                warp::http::Response::builder()
                    .status(200)
                    .header(
                        "WebHook-Allowed-Origin",
                        origin.unwrap_or_else(|| "*".into()),
                    )
                    .header("WebHook-Allowed-Rate", "*")
                    .body(warp::hyper::body::Bytes::new())
                    .map(warp::reply::Reply::into_response)
                    .unwrap_or_else(|_| {
                        warp::reply::Reply::into_response(
                            warp::http::StatusCode::INTERNAL_SERVER_ERROR,
                        )
                    })
            });
        let post =
            warp::post()
                .and(warp::body::bytes())
                .map(move |body: warp::hyper::body::Bytes| {
                    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let events = match parsed {
                        Value::Array(items) => items,
                        Value::Null => Vec::new(),
                        one => vec![one],
                    };
                    let now = chrono::Utc::now();
                    if let Ok(mut all) = store.events.lock() {
                        all.extend(events.into_iter().map(|e| (now, e)));
                    }
                    warp::reply::Reply::into_response(warp::http::StatusCode::OK)
                });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let handle = devcloud_core::serve_http(options.or(post).unify(), listener)?;
        Ok(Receiver {
            addr,
            received,
            handle,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}/events", self.addr)
    }

    pub async fn stop(self) {
        self.handle.shutdown().await;
    }
}
