//! Serving a warp filter over HTTPS (rustls) or plain HTTP on a caller-provided `TcpListener`, with a
//! shutdown handle. warp 0.4 has no TLS of its own, so connections go through hyper-util's auto builder.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use warp::{Filter, Rejection, Reply};

/// Put this in a response's extensions to have the server drop the connection instead of answering
/// (a "crash-style" connection reset, for fault injection).
#[derive(Debug, Clone, Copy)]
pub struct ResetConnection;

#[derive(Debug, thiserror::Error)]
#[error("connection reset on purpose (fault injection)")]
struct ResetOnPurpose;

/// A running server: its bound address and a way to stop it. Dropping the handle stops it too.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl ServerHandle {
    /// The address the listener is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, closes open connections and waits until the accept loop has ended.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Serves `filter` over HTTPS with `tls` on `listener`. Must be called inside a tokio runtime.
pub fn serve_https<F>(
    filter: F,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
) -> std::io::Result<ServerHandle>
where
    F: Filter<Error = Rejection> + Clone + Send + Sync + 'static,
    F::Extract: Reply,
{
    crate::install_crypto_provider();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    spawn_loop(filter, listener, Some(acceptor))
}

/// Serves `filter` over plain HTTP on `listener`. Must be called inside a tokio runtime.
pub fn serve_http<F>(filter: F, listener: TcpListener) -> std::io::Result<ServerHandle>
where
    F: Filter<Error = Rejection> + Clone + Send + Sync + 'static,
    F::Extract: Reply,
{
    spawn_loop(filter, listener, None)
}

fn spawn_loop<F>(
    filter: F,
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
) -> std::io::Result<ServerHandle>
where
    F: Filter<Error = Rejection> + Clone + Send + Sync + 'static,
    F::Extract: Reply,
{
    let addr = listener.local_addr()?;
    let (tx, mut rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            while conns.try_join_next().is_some() {}
            let accepted = tokio::select! {
                _ = &mut rx => break,
                accepted = listener.accept() => accepted,
            };
            let (stream, _peer) = match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    tracing::debug!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let filter = filter.clone();
            let acceptor = acceptor.clone();
            conns.spawn(async move {
                match acceptor {
                    Some(acceptor) => {
                        let handshake =
                            tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream));
                        match handshake.await {
                            Ok(Ok(tls)) => serve_connection(filter, tls).await,
                            Ok(Err(err)) => tracing::debug!(error = %err, "TLS handshake failed"),
                            Err(_) => tracing::debug!("TLS handshake timed out"),
                        }
                    }
                    None => serve_connection(filter, stream).await,
                }
            });
        }
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    });
    Ok(ServerHandle {
        addr,
        shutdown: Some(tx),
        task: Some(task),
    })
}

async fn serve_connection<F, I>(filter: F, io: I)
where
    F: Filter<Error = Rejection> + Clone + Send + Sync + 'static,
    F::Extract: Reply,
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let inner = TowerToHyperService::new(warp::service(filter));
    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let fut = hyper::service::Service::call(&inner, req);
        async move {
            let resp = match fut.await {
                Ok(resp) => resp,
                Err(never) => match never {},
            };
            if resp.extensions().get::<ResetConnection>().is_some() {
                return Err(ResetOnPurpose);
            }
            Ok::<_, ResetOnPurpose>(resp)
        }
    });
    let builder = Builder::new(TokioExecutor::new());
    if let Err(err) = builder
        .serve_connection_with_upgrades(TokioIo::new(io), svc)
        .await
    {
        tracing::debug!(error = %err, "connection ended with an error");
    }
}
