//! Test helpers for the Azure clients: a credential with a fixed token, and a local HTTP server that
//! answers as a test says and records what it was sent.

use std::sync::{Arc, Mutex};

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};

/// Hands out one fixed token, and remembers the scopes it was asked for.
#[derive(Debug, Default)]
pub struct FixedToken {
    pub scopes: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl TokenCredential for FixedToken {
    async fn get_token(
        &self,
        scopes: &[&str],
        _: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        if let Ok(mut s) = self.scopes.lock() {
            s.extend(scopes.iter().map(|s| (*s).to_owned()));
        }
        Ok(AccessToken::new(
            "test-token",
            azure_core::time::OffsetDateTime::now_utc() + azure_core::time::Duration::hours(1),
        ))
    }
}

/// One request as the test server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: warp::http::HeaderMap,
}

/// A canned answer: status, headers, body.
pub type Canned = (u16, Vec<(&'static str, String)>, String);

/// Serves `answer(path)` on 127.0.0.1 and records every request. Returns the base URL and the record.
pub async fn serve(
    answer: impl Fn(&str) -> Canned + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<Seen>>>) {
    use warp::Filter;
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let record = seen.clone();
    let answer = Arc::new(answer);
    let route = warp::any()
        .and(warp::method())
        .and(warp::path::full())
        .and(warp::header::headers_cloned())
        .map(
            move |method: warp::http::Method,
                  path: warp::path::FullPath,
                  headers: warp::http::HeaderMap| {
                if let Ok(mut s) = record.lock() {
                    s.push(Seen {
                        method: method.to_string(),
                        path: path.as_str().to_owned(),
                        headers,
                    });
                }
                let (status, headers, body) = answer(path.as_str());
                let mut reply = warp::http::Response::builder().status(status);
                for (k, v) in headers {
                    reply = reply.header(k, v);
                }
                reply
                    .body(body)
                    .unwrap_or_else(|_| warp::http::Response::new(String::new()))
            },
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(warp::serve(route).incoming(listener).run());
    (format!("http://{addr}"), seen)
}
