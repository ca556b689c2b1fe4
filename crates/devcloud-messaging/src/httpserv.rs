//! A small HTTP/1.1 + HTTP/2 server loop on hyper (optionally TLS via rustls) that hands each request,
//! with its body collected up to a limit, to an async handler. Both local services use it.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Request with its whole body.
pub type Req = Request<Bytes>;
/// Response with a complete body.
pub type Resp = Response<Full<Bytes>>;

/// Outcome of collecting a request body.
pub enum BodyError {
    TooLarge,
    Io(String),
}

/// A running server: its address and a way to stop it.
pub struct Server {
    pub addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Server {
    /// Stops accepting connections and waits for the accept loop to end.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Builds a plain response.
pub fn response(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Resp {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    resp
}

/// A JSON response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Resp {
    response(status, "application/json; charset=utf-8", value.to_string())
}

/// An empty response.
pub fn empty(status: StatusCode) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

/// Serves `handler` on `listener` until the returned server is shut down or dropped.
///
/// `max_body` is the largest body collected; larger requests reach the handler as `Err(TooLarge)`
/// (the handler chooses the service's own error shape).
pub fn serve<H, F>(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    max_body: usize,
    handler: H,
) -> std::io::Result<Server>
where
    H: Fn(Result<Req, (http::request::Parts, BodyError)>) -> F + Send + Sync + 'static,
    F: Future<Output = Resp> + Send + 'static,
{
    let handler = Arc::new(handler);
    serve_streaming(listener, tls, move |req: Request<Incoming>| {
        let handler = handler.clone();
        async move {
            let (parts, body) = req.into_parts();
            let collected = match Limited::new(body, max_body).collect().await {
                Ok(c) => Ok(Request::from_parts(parts, c.to_bytes())),
                Err(e) => {
                    let err = if e.is::<http_body_util::LengthLimitError>() {
                        BodyError::TooLarge
                    } else {
                        BodyError::Io(e.to_string())
                    };
                    Err((parts, err))
                }
            };
            handler(collected).await
        }
    })
}

/// Serves `handler` with the request body as it arrives and any response body (a proxy streams both).
pub fn serve_streaming<H, F, B>(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    handler: H,
) -> std::io::Result<Server>
where
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let addr = listener.local_addr()?;
    let (tx, mut rx) = watch::channel(false);
    let handler = Arc::new(handler);
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let task = tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = rx.changed() => break,
            };
            let (stream, _peer) = match accepted {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let handler = handler.clone();
            let acceptor = acceptor.clone();
            let mut stop = rx.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(req).await) }
                });
                let builder = auto::Builder::new(TokioExecutor::new());
                let result = match acceptor {
                    Some(acceptor) => match acceptor.accept(stream).await {
                        Ok(tls) => {
                            let conn = builder.serve_connection(TokioIo::new(tls), svc);
                            tokio::select! { r = conn => r, _ = stop.changed() => Ok(()) }
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "TLS handshake failed");
                            Ok(())
                        }
                    },
                    None => {
                        let conn = builder.serve_connection(TokioIo::new(stream), svc);
                        tokio::select! { r = conn => r, _ = stop.changed() => Ok(()) }
                    }
                };
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
            });
        }
    });
    Ok(Server {
        addr,
        shutdown: tx,
        task: Some(task),
    })
}
