//! The warp server the host talks to: `GET /` for readiness, `POST /{FunctionName}` for invocations.
//! Bodies arrive chunked (no Content-Length), so the size bound is enforced while reading, not by
//! `content_length_limit` (which would answer the real host 411).

use std::{
    convert::Infallible,
    net::{Ipv4Addr, SocketAddr},
    panic::AssertUnwindSafe,
    sync::Arc,
    time::Instant,
};

use bytes::{Buf, Bytes, BytesMut};
use futures::{FutureExt, Stream, StreamExt};
use serde_json::{Map, Value, json};
use tracing::Instrument;
use warp::{
    Filter, Reply,
    http::{HeaderValue, StatusCode},
};

use super::{
    App, Invocation, answer,
    envelope::{Envelope, EnvelopeError},
    logs, trigger, values,
};

/// Bounds on what one invocation may send.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body accepted, in bytes. Event Grid events are at most 1 MB and Service Bus messages
    /// at most 1 MB over HTTP (256 KB on Standard), so a few MiB is generous.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 4 * 1024 * 1024,
        }
    }
}

/// A rejected invocation: a status and a specific reason.
struct Problem {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Problem {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Problem {
            status,
            code,
            message: message.into(),
        }
    }

    fn reply(self) -> warp::reply::Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        warp::reply::with_status(warp::reply::json(&body), self.status).into_response()
    }
}

/// The whole HTTP surface, as a warp filter (handy for tests with `warp::test`).
pub fn router(
    app: Arc<App>,
    limits: Limits,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Infallible> + Clone {
    // Path first, then method: an unknown path is 404, a known path with the wrong method 405.
    let ready = warp::path::end()
        .and(warp::get())
        .map(|| warp::reply::with_status("ready", StatusCode::OK).into_response());
    let invoke = warp::path::param::<String>()
        .and(warp::path::end())
        .and(warp::post())
        .and(host_header(INVOCATION_ID))
        .and(host_header(TRACEPARENT))
        .and(warp::body::stream())
        .and_then(
            move |function: String,
                  invocation_id: Option<String>,
                  traceparent: Option<String>,
                  body| {
                let app = app.clone();
                async move {
                    let headers = HostHeaders {
                        invocation_id,
                        traceparent,
                    };
                    let response = match read_body(body, limits.max_body_bytes).await {
                        Ok(bytes) => invoke(&app, &function, headers, bytes).await,
                        Err(problem) => problem.reply(),
                    };
                    Ok::<_, Infallible>(response)
                }
            },
        );
    ready.or(invoke).unify().recover(|rejection: warp::Rejection| async move {
        let problem = if rejection.is_not_found() {
            Problem::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                "this is a Functions custom handler: POST /{FunctionName} to invoke, GET / for readiness",
            )
        } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "invocations are POST /{FunctionName}; readiness is GET /",
            )
        } else {
            Problem::new(StatusCode::BAD_REQUEST, "BadRequest", format!("{rejection:?}"))
        };
        Ok::<_, Infallible>(problem.reply())
    })
    .unify()
}

async fn read_body<S, B>(body: S, max: usize) -> Result<Bytes, Problem>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let mut body = body;
    // The host's body usually arrives as one chunk: keep it as it is (no copy); gather only when there are more.
    let mut first: Option<Bytes> = None;
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|e| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "BodyUnreadable",
                format!("the request body could not be read: {e}"),
            )
        })?;
        let held = first.as_ref().map_or(0, Bytes::len);
        if held + buf.len() + chunk.remaining() > max {
            return Err(Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "BodyTooLarge",
                format!(
                    "the invocation body exceeds {max} bytes; raise GALLEON_MAX_INVOCATION_BYTES if such invocations are legitimate"
                ),
            ));
        }
        if first.is_none() && buf.is_empty() {
            let n = chunk.remaining();
            first = Some(chunk.copy_to_bytes(n));
            continue;
        }
        if let Some(held) = first.take() {
            buf.extend_from_slice(&held);
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            let n = part.len();
            buf.extend_from_slice(part);
            chunk.advance(n);
        }
    }
    Ok(match first {
        Some(only) => only,
        None => buf.freeze(),
    })
}

const INVOCATION_ID: &str = "x-azure-functions-invocationid";
const TRACEPARENT: &str = "traceparent";

/// One request header as text; absent, or not text, is `None` (never a rejection: the invocation still runs).
fn host_header(
    name: &'static str,
) -> impl Filter<Extract = (Option<String>,), Error = Infallible> + Clone {
    warp::header::value(name)
        .map(|v: HeaderValue| v.to_str().ok().map(str::to_owned))
        .or(warp::any().map(|| None))
        .unify()
}

/// The request headers of the host's that galleon reads (only these are copied out of the request).
struct HostHeaders {
    invocation_id: Option<String>,
    traceparent: Option<String>,
}

/// The answer the host expects (`{"Outputs", "Logs", "ReturnValue"}`, as [`answer`] builds it), serialized
/// straight from the function's output.
#[derive(serde::Serialize)]
struct Answer<'a> {
    #[serde(rename = "Outputs")]
    outputs: &'a std::collections::BTreeMap<String, Value>,
    #[serde(rename = "Logs")]
    logs: &'a [String],
    #[serde(rename = "ReturnValue")]
    return_value: &'a Value,
}

static NULL: Value = Value::Null;

/// Decodes the envelope for `function`, runs it and builds the host's answer.
async fn invoke(
    app: &App,
    function: &str,
    headers: HostHeaders,
    body: Bytes,
) -> warp::reply::Response {
    let Some(spec) = app.get(function) else {
        let known: Vec<&str> = app.functions().map(|f| f.name.as_str()).collect();
        return Problem::new(
            StatusCode::NOT_FOUND,
            "UnknownFunction",
            format!(
                "no function named '{function}' in this handler (it serves: {}); check the folder name under functions/",
                known.join(", ")
            ),
        )
        .reply();
    };
    let envelope = match Envelope::parse(&body) {
        Ok(envelope) => envelope,
        Err(EnvelopeError::InvalidJson(e)) => {
            return Problem::new(
                StatusCode::BAD_REQUEST,
                "InvalidJson",
                format!("the invocation body is not JSON ({e}); the host sends {{\"Data\":…,\"Metadata\":…}}"),
            )
            .reply();
        }
        Err(EnvelopeError::NotObject) => {
            return Problem::new(
                StatusCode::BAD_REQUEST,
                "EnvelopeNotObject",
                "the invocation body must be a JSON object with 'Data' and 'Metadata'",
            )
            .reply();
        }
    };
    let data = match envelope.data {
        Value::Object(d) => d,
        Value::Null => {
            return Problem::new(
                StatusCode::BAD_REQUEST,
                "MissingData",
                format!(
                    "the invocation has no 'Data'; expected the trigger value under Data.{}",
                    spec.trigger_binding
                ),
            )
            .reply();
        }
        _ => {
            return Problem::new(
                StatusCode::BAD_REQUEST,
                "DataNotObject",
                "'Data' must be an object keyed by binding name",
            )
            .reply();
        }
    };
    let metadata = match envelope.metadata {
        Value::Object(m) => m,
        Value::Null => Map::new(),
        _ => {
            return Problem::new(
                StatusCode::BAD_REQUEST,
                "MetadataNotObject",
                "'Metadata' must be an object",
            )
            .reply();
        }
    };
    let trigger = match trigger::decode_owned(spec.trigger, &spec.trigger_binding, data, &metadata)
    {
        Ok(t) => t,
        Err(e) => {
            return Problem::new(
                StatusCode::BAD_REQUEST,
                "TriggerNotDecodable",
                format!(
                    "{e} (function '{function}' is bound to a {})",
                    spec.trigger.binding_type()
                ),
            )
            .reply();
        }
    };
    let sys = metadata.get("sys").and_then(Value::as_object);
    let invocation = Invocation {
        function: spec.name.clone(),
        invocation_id: headers
            .invocation_id
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        traceparent: headers.traceparent,
        trigger,
        host_time: sys
            .and_then(|s| s.get("UtcNow"))
            .and_then(values::timestamp),
        retry_count: metadata
            .get("RetryContext")
            .and_then(|r| r.get("RetryCount"))
            .and_then(values::integer)
            .and_then(|n| u32::try_from(n).ok()),
    };

    let span = tracing::info_span!(
        "invocation",
        function = %spec.name,
        invocation_id = %invocation.invocation_id,
        correlation_id = tracing::field::Empty,
    );
    let started = Instant::now();
    let run = AssertUnwindSafe(spec.call(invocation)).catch_unwind();
    let (result, logs) = logs::capture(run.instrument(span.clone())).await;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let _entered = span.enter();
    match result {
        Ok(Ok(output)) => {
            if let Some(undeclared) = output.bindings.keys().find(|k| !spec.outputs.contains(k)) {
                tracing::error!(binding = %undeclared, "function returned an output binding it does not declare");
                logs::to_stdout(&logs);
                return Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "UndeclaredOutput",
                    format!("function '{function}' returned output binding '{undeclared}', which its function.json does not declare"),
                )
                .reply();
            }
            // Debug, not Information: the host itself logs every invocation's outcome, id and duration
            // ("Executed 'Functions.X' (Succeeded, Id=…, Duration=…ms)"); a second line saying the same
            // cost 1-2 µs of the ~18 µs of CPU per invocation (`cargo bench -p galleon --bench efficiency`).
            tracing::debug!(elapsed_ms, "invocation succeeded");
            warp::reply::json(&Answer {
                outputs: &output.bindings,
                logs: &logs,
                return_value: output.return_value.as_ref().unwrap_or(&NULL),
            })
            .into_response()
        }
        Ok(Err(failure)) => {
            tracing::error!(elapsed_ms, error = %failure.chain(), "invocation failed; the host will retry");
            // The host ignores the Logs of a failed invocation: its lines go to stdout instead.
            logs::to_stdout(&logs);
            let mut body = answer(&Default::default(), logs);
            body["error"] = json!({"code": "FunctionFailed", "message": failure.chain()});
            warp::reply::with_status(warp::reply::json(&body), StatusCode::INTERNAL_SERVER_ERROR)
                .into_response()
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            tracing::error!(elapsed_ms, panic = %what, "function panicked; the host will retry");
            logs::to_stdout(&logs);
            Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "FunctionPanicked", what).reply()
        }
    }
}

/// A running handler server.
pub struct Server {
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Binds 127.0.0.1:`port` (0 for any free port) and starts serving `app`.
    pub async fn start(app: App, limits: Limits, port: u16) -> std::io::Result<Server> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let routes = router(Arc::new(app), limits);
        let task = tokio::spawn(
            warp::serve(routes)
                .incoming(listener)
                .graceful(async {
                    let _ = rx.await;
                })
                .run(),
        );
        Ok(Server {
            addr,
            shutdown: Some(tx),
            task,
        })
    }

    /// Stops accepting, lets in-flight invocations finish, and returns.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Serves until the process receives Ctrl-C or SIGTERM, then shuts down gracefully.
    pub async fn run_until_signal(self) {
        wait_for_signal().await;
        tracing::info!("shutting down: finishing in-flight invocations");
        self.stop().await;
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
