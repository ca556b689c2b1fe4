//! The host's HTTP endpoint: HTTP triggers under the route prefix, the Event Grid extension
//! webhook (`/runtime/webhooks/eventgrid`), the admin API (`/admin/...`) and the devcloud
//! inspection API (`/_devcloud/host/...`).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::{AuthLevel, Trigger};
use crate::invocation::{self, HttpRequestData, InvocationContext};
use crate::runtime::Core;

const MAX_BODY: usize = 100 * 1024 * 1024;

type Resp = Response<Full<Bytes>>;

fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn json_resp(status: StatusCode, v: &Value) -> Resp {
    respond(
        status,
        "application/json; charset=utf-8",
        serde_json::to_vec(v).unwrap_or_default(),
    )
}

fn empty(status: StatusCode) -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

/// Serve until `stop` turns true; open connections are closed with it.
pub(crate) async fn serve(
    core: Arc<Core>,
    listener: tokio::net::TcpListener,
    mut stop: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = crate::worker::stopped(&mut stop) => break,
        };
        while conns.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                core.log.warn("host", &format!("accept failed: {e}"));
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let core = core.clone();
        conns.spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let core = core.clone();
                async move { Ok::<_, Infallible>(route(core, req, peer).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}

async fn read_body(req: Request<Incoming>) -> Result<(hyper::http::request::Parts, Bytes), Resp> {
    let (parts, body) = req.into_parts();
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => Ok((parts, b.to_bytes())),
        Err(_) => Err(empty(StatusCode::PAYLOAD_TOO_LARGE)),
    }
}

fn query_pairs(uri: &hyper::Uri) -> Vec<(String, String)> {
    uri.query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn query_get(uri: &hyper::Uri, key: &str) -> Option<String> {
    query_pairs(uri)
        .into_iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

async fn route(core: Arc<Core>, req: Request<Incoming>, peer: std::net::SocketAddr) -> Resp {
    let path = req.uri().path().to_string();
    let lower = path.to_ascii_lowercase();
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let method = req.method().clone();
    if lower == "/runtime/webhooks/eventgrid" {
        return event_grid_webhook(core, req).await;
    }
    if lower.starts_with("/_devcloud/host") {
        return devcloud_admin(core, &method, &segs[2..]).await;
    }
    if lower == "/admin/host/status" && method == Method::GET {
        return json_resp(
            StatusCode::OK,
            &json!({"state": "Running", "version": crate::worker::HOST_VERSION}),
        );
    }
    if segs.len() == 3
        && segs[0].eq_ignore_ascii_case("admin")
        && segs[1].eq_ignore_ascii_case("functions")
        && method == Method::POST
    {
        // The real host's "run a non-HTTP function" API: 202 and run in the background.
        let name = segs[2].to_string();
        match core.app.function(&name).map(|f| f.trigger.clone()) {
            Some(Trigger::Timer { .. }) => {
                tokio::spawn(async move {
                    let _ = core.fire_timer(&name, false).await;
                });
                return empty(StatusCode::ACCEPTED);
            }
            Some(_) => {
                return json_resp(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": "only timer functions can be run from the admin API locally"}),
                );
            }
            None => return empty(StatusCode::NOT_FOUND),
        }
    }
    if path == "/" && method == Method::GET {
        return respond(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            "devcloud Functions host is running\n",
        );
    }
    http_trigger(core, req, peer).await
}

async fn devcloud_admin(core: Arc<Core>, method: &Method, segs: &[&str]) -> Resp {
    match (method, segs) {
        (&Method::GET, ["functions"]) => {
            let list: Vec<Value> = core
                .app
                .functions
                .iter()
                .map(|f| {
                    let mut v = json!({
                        "name": f.name,
                        "trigger": f.trigger.type_name(),
                        "binding": f.trigger.binding_name(),
                        "outputs": f.outputs.iter().map(|o| o.name().to_string()).collect::<Vec<_>>(),
                    });
                    match &f.trigger {
                        Trigger::Timer { schedule_text, .. } => v["schedule"] = json!(schedule_text),
                        Trigger::ServiceBus { entity, connection, .. } => {
                            v["entity"] = json!(entity.path());
                            v["connection"] = json!(connection);
                        }
                        Trigger::Http { route, methods, .. } => {
                            v["route"] = json!(format!("/{}/{}", core.app.route_prefix, route.clone().unwrap_or_else(|| f.name.clone())));
                            v["methods"] = json!(methods);
                        }
                        Trigger::EventGrid { .. } => {
                            v["webhook"] = json!(format!("/runtime/webhooks/eventgrid?functionName={}", f.name));
                        }
                    }
                    v
                })
                .collect();
            json_resp(StatusCode::OK, &Value::Array(list))
        }
        (&Method::GET, ["invocations"]) => {
            json_resp(StatusCode::OK, &json!(core.invocations.list()))
        }
        (&Method::GET, ["logs"]) => json_resp(StatusCode::OK, &json!(core.log.lines())),
        (&Method::GET, ["status"]) => {
            let (pid, starts) = core.worker_info().await;
            json_resp(
                StatusCode::OK,
                &json!({"handlerPid": pid, "handlerStarts": starts, "functions": core.app.functions.len()}),
            )
        }
        (&Method::POST, ["functions", name, "fire"]) => match core.fire_timer(name, false).await {
            Ok(()) => json_resp(StatusCode::OK, &json!({"status": "Succeeded"})),
            Err(e) if core.app.function(name).is_none() => {
                json_resp(StatusCode::NOT_FOUND, &json!({"error": format!("{e:#}")}))
            }
            Err(e) => json_resp(
                StatusCode::OK,
                &json!({"status": "Failed", "error": format!("{e:#}")}),
            ),
        },
        _ => empty(StatusCode::NOT_FOUND),
    }
}

/// The origin the extension answers the CloudEvents abuse-protection preflight with.
fn allowed_origin(origin: Option<&str>) -> String {
    match origin {
        Some(o)
            if [
                "eventgrid.azure.net",
                "eventgrid.azure.us",
                "eventgrid.azure.cn",
            ]
            .iter()
            .any(|d| {
                o.eq_ignore_ascii_case(d) || o.to_ascii_lowercase().ends_with(&format!(".{d}"))
            }) =>
        {
            o.to_string()
        }
        _ => "eventgrid.azure.net".to_string(),
    }
}

async fn event_grid_webhook(core: Arc<Core>, req: Request<Incoming>) -> Resp {
    let function = query_get(req.uri(), "functionName");
    let f = match function.as_deref().and_then(|n| core.app.function(n)) {
        Some(f) if matches!(f.trigger, Trigger::EventGrid { .. }) => f.clone(),
        _ => {
            return json_resp(
                StatusCode::NOT_FOUND,
                &json!({"error": format!("no eventGridTrigger function named {:?}", function.unwrap_or_default())}),
            );
        }
    };
    if req.method() == Method::OPTIONS {
        let origin = req
            .headers()
            .get("WebHook-Request-Origin")
            .and_then(|v| v.to_str().ok());
        let mut r = empty(StatusCode::OK);
        if let Ok(v) = hyper::header::HeaderValue::from_str(&allowed_origin(origin)) {
            r.headers_mut().insert("WebHook-Allowed-Origin", v);
        }
        r.headers_mut().insert(
            "WebHook-Allowed-Rate",
            hyper::header::HeaderValue::from_static("*"),
        );
        return r;
    }
    if req.method() != Method::POST {
        return empty(StatusCode::METHOD_NOT_ALLOWED);
    }
    let event_type = req
        .headers()
        .get("aeg-event-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase);
    let (_, body) = match read_body(req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return json_resp(
                StatusCode::BAD_REQUEST,
                &json!({"error": format!("body is not JSON: {e}")}),
            );
        }
    };
    let events: Vec<Value> = match parsed {
        Value::Array(a) => a,
        o @ Value::Object(_) => vec![o],
        _ => {
            return json_resp(
                StatusCode::BAD_REQUEST,
                &json!({"error": "expected an event or an array of events"}),
            );
        }
    };
    let is_validation = event_type.as_deref() == Some("subscriptionvalidation")
        || events
            .first()
            .and_then(|e| e.get("eventType"))
            .and_then(Value::as_str)
            == Some("Microsoft.EventGrid.SubscriptionValidationEvent");
    if is_validation {
        let code = events
            .first()
            .and_then(|e| e.pointer("/data/validationCode"))
            .and_then(Value::as_str);
        return match code {
            Some(c) => {
                core.log.info(
                    &f.name,
                    "answered the Event Grid subscription validation handshake",
                );
                json_resp(StatusCode::OK, &json!({"validationResponse": c}))
            }
            None => json_resp(
                StatusCode::BAD_REQUEST,
                &json!({"error": "validation event without data.validationCode"}),
            ),
        };
    }
    if event_type.as_deref() == Some("unsubscribe") {
        return empty(StatusCode::ACCEPTED);
    }
    let Trigger::EventGrid { name: binding } = &f.trigger else {
        return empty(StatusCode::NOT_FOUND);
    };
    // One invocation per event, all in parallel; any failure fails the whole delivery.
    let runs = events.iter().map(|ev| {
        let core = core.clone();
        let f = f.clone();
        let binding = binding.clone();
        async move {
            let ctx = InvocationContext::new(&f.name);
            let body = invocation::event_grid(&ctx, &binding, ev);
            core.invoke(&f, &ctx, body).await
        }
    });
    let results = futures::future::join_all(runs).await;
    if results.iter().all(Result::is_ok) {
        if core.config.extra_deliveries > 0 {
            let ids: Vec<String> = events
                .iter()
                .filter_map(|e| e.get("id").and_then(Value::as_str))
                .map(str::to_owned)
                .collect();
            let extra = core.config.extra_deliveries;
            let first_time = core
                .redelivered
                .lock()
                .map(|mut seen| {
                    // Count every id (no short-circuit): each event is failed `extra` times.
                    let mut again = false;
                    for id in &ids {
                        let failed = seen.entry(id.clone()).or_insert(0);
                        if *failed < extra {
                            *failed += 1;
                            again = true;
                        }
                    }
                    again
                })
                .unwrap_or(false);
            if first_time {
                core.log.info(
                    &f.name,
                    "fault injection: answering 500 after success so Event Grid delivers again",
                );
                return json_resp(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &json!({"error": "fault injection: deliver again"}),
                );
            }
        }
        empty(StatusCode::OK)
    } else {
        json_resp(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"error": "one or more invocations failed"}),
        )
    }
}

/// Match `template` (`items/{id}`, `{*rest}`, `{id?}`, `{id:int}`) against path segments.
fn match_route(template: &str, segs: &[&str]) -> Option<Vec<(String, String)>> {
    let parts: Vec<&str> = template.split('/').filter(|s| !s.is_empty()).collect();
    let mut params = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        if let Some(inner) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            let catch_all = inner.starts_with('*');
            let inner = inner.trim_start_matches('*');
            let optional = inner.ends_with('?');
            let inner = inner.trim_end_matches('?');
            let (name, constraint) = inner.split_once(':').unwrap_or((inner, ""));
            if catch_all {
                params.push((
                    name.to_string(),
                    segs.get(i..).map(|s| s.join("/")).unwrap_or_default(),
                ));
                return Some(params);
            }
            match segs.get(i) {
                Some(v) => {
                    if constraint.starts_with("int") && v.parse::<i64>().is_err() {
                        return None;
                    }
                    params.push((name.to_string(), v.to_string()));
                }
                None if optional => {}
                None => return None,
            }
        } else if !segs.get(i).is_some_and(|s| s.eq_ignore_ascii_case(part)) {
            return None;
        }
    }
    (segs.len() <= parts.len()).then_some(params)
}

/// Header names as the host would see them (hyper lowercases them): `Content-Type` style.
fn title_case(name: &str) -> String {
    name.split('-')
        .map(|p| {
            let mut c = p.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

async fn http_trigger(
    core: Arc<Core>,
    req: Request<Incoming>,
    _peer: std::net::SocketAddr,
) -> Resp {
    let path = req.uri().path().to_string();
    let segs: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let prefix: Vec<&str> = core
        .app
        .route_prefix
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    if segs.len() < prefix.len()
        || !segs
            .iter()
            .zip(&prefix)
            .all(|(a, b)| a.eq_ignore_ascii_case(b))
    {
        return empty(StatusCode::NOT_FOUND);
    }
    let rest: Vec<&str> = segs[prefix.len()..].iter().map(String::as_str).collect();
    let mut method_mismatch = false;
    let mut found = None;
    for f in &core.app.functions {
        let Trigger::Http { route, methods, .. } = &f.trigger else {
            continue;
        };
        let template = route.clone().unwrap_or_else(|| f.name.clone());
        if let Some(params) = match_route(&template, &rest) {
            if !methods.is_empty() && !methods.iter().any(|m| m == req.method().as_str()) {
                method_mismatch = true;
                continue;
            }
            found = Some((f.clone(), params));
            break;
        }
    }
    let Some((f, params)) = found else {
        return empty(if method_mismatch {
            StatusCode::METHOD_NOT_ALLOWED
        } else {
            StatusCode::NOT_FOUND
        });
    };
    let Trigger::Http {
        name: binding,
        auth_level,
        ..
    } = &f.trigger
    else {
        return empty(StatusCode::NOT_FOUND);
    };
    let key = query_get(req.uri(), "code").or_else(|| {
        req.headers()
            .get("x-functions-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    });
    if !authorized(&core, &f.name, auth_level, key.as_deref()) {
        return empty(StatusCode::UNAUTHORIZED);
    }
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| core.config.http_addr.to_string());
    let url = format!(
        "http://{host}{}",
        req.uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let query = query_pairs(req.uri());
    let method = req.method().as_str().to_string();
    let (parts, body) = match read_body(req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (title_case(k.as_str()), v.to_string()))
        })
        .collect();
    let data = HttpRequestData {
        url,
        method,
        query,
        headers,
        params,
        body: body.to_vec(),
    };
    let ctx = InvocationContext::new(&f.name);
    let inv = invocation::http(&ctx, binding, &data);
    match core.invoke(&f, &ctx, inv).await {
        Ok(outcome) => match outcome.http_response {
            Some(v) => http_response(&v),
            None => empty(StatusCode::NO_CONTENT),
        },
        Err(_) => empty(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

fn authorized(core: &Core, function: &str, level: &AuthLevel, key: Option<&str>) -> bool {
    let cfg = &core.config;
    let is_master = key.is_some() && cfg.master_key.as_deref() == key;
    match level {
        AuthLevel::Anonymous => true,
        AuthLevel::Admin => is_master,
        AuthLevel::Function => {
            let Some(key) = key else { return false };
            is_master
                || cfg.host_keys.iter().any(|k| k == key)
                || cfg
                    .function_keys
                    .iter()
                    .any(|(f, k)| f.eq_ignore_ascii_case(function) && k == key)
        }
    }
}

/// An `http` output value → the HTTP response (`statusCode`, `headers`, `body`).
pub(crate) fn http_response(v: &Value) -> Resp {
    let Value::Object(o) = v else {
        return empty(StatusCode::INTERNAL_SERVER_ERROR);
    };
    let get = |name: &str| {
        o.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    };
    let status = match get("statusCode").or_else(|| get("status")) {
        Some(Value::Number(n)) => n.as_u64().map(|n| n as u16),
        Some(Value::String(s)) => s.trim().parse::<u16>().ok(),
        _ => Some(200),
    };
    let Some(status) = status.and_then(|s| StatusCode::from_u16(s).ok()) else {
        return empty(StatusCode::INTERNAL_SERVER_ERROR);
    };
    let mut headers = BTreeMap::new();
    if let Some(Value::Object(h)) = get("headers") {
        for (k, v) in h {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            headers.insert(k.clone(), text);
        }
    }
    let (body, default_ct) = match get("body") {
        None | Some(Value::Null) => (Bytes::new(), None),
        Some(Value::String(s)) => (Bytes::from(s.clone()), Some("text/plain; charset=utf-8")),
        Some(other) => (
            Bytes::from(serde_json::to_vec(other).unwrap_or_default()),
            Some("application/json; charset=utf-8"),
        ),
    };
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    for (k, v) in &headers {
        if let (Ok(n), Ok(v)) = (
            hyper::header::HeaderName::from_bytes(k.as_bytes()),
            hyper::header::HeaderValue::from_str(v),
        ) {
            r.headers_mut().insert(n, v);
        }
    }
    if let Some(ct) = default_ct
        && !r.headers().contains_key(hyper::header::CONTENT_TYPE)
    {
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(ct),
        );
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            match_route("items/{id}", &["items", "5"]),
            Some(vec![("id".into(), "5".into())])
        );
        assert_eq!(match_route("items/{id:int}", &["items", "x"]), None);
        assert_eq!(match_route("items/{id?}", &["items"]), Some(vec![]));
        assert_eq!(match_route("Items", &["items"]), Some(vec![]));
        assert_eq!(match_route("items", &["items", "extra"]), None);
        assert_eq!(
            match_route("files/{*path}", &["files", "a", "b"]),
            Some(vec![("path".into(), "a/b".into())])
        );
    }

    #[test]
    fn origins_and_headers() {
        assert_eq!(
            allowed_origin(Some("eventgrid.azure.net")),
            "eventgrid.azure.net"
        );
        assert_eq!(allowed_origin(Some("evil.example")), "eventgrid.azure.net");
        assert_eq!(title_case("x-arr-log-id"), "X-Arr-Log-Id");
        assert_eq!(title_case("content-type"), "Content-Type");
    }
}
