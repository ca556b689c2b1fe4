//! The HTTP front of the simulator: routing, authentication, api-version checks, throttling, fault
//! injection, the request log and the `/_devcloud/` admin endpoints.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use chrono::Utc;
use devcloud_core::serve::ResetConnection;
use warp::http::{HeaderMap, Method, StatusCode};
use warp::{Filter, Reply as _};

use crate::arm::{Arm, LogEntry, Reply, Req};
use crate::error::ArmError;

/// The warp filter serving the simulator.
pub fn filter(
    arm: Arc<Arm>,
    https: bool,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection>
+ Clone
+ Send
+ Sync
+ 'static {
    let raw_query = warp::query::raw().or(warp::any().map(String::new)).unify();
    warp::method()
        .and(warp::host::optional())
        .and(warp::path::full())
        .and(raw_query)
        .and(warp::header::headers_cloned())
        .and(warp::body::bytes())
        .then(
            move |method: Method,
                  authority: Option<warp::host::Authority>,
                  path: warp::path::FullPath,
                  query: String,
                  mut headers: HeaderMap,
                  body: Bytes| {
                let arm = arm.clone();
                // HTTP/2 carries the host in :authority, not in a Host header.
                if let Some(a) = authority
                    && let Ok(v) = warp::http::HeaderValue::from_str(a.as_str())
                {
                    headers.insert("host", v);
                }
                async move {
                    let query = url::form_urlencoded::parse(query.as_bytes())
                        .map(|(k, v)| (k.into_owned(), v.into_owned()))
                        .collect();
                    let req = Req {
                        method,
                        path: path.as_str().to_string(),
                        query,
                        headers,
                        body,
                        caller: None,
                        aux_tenants: Vec::new(),
                    };
                    handle(arm, req, https).await
                }
            },
        )
}

fn to_response(reply: Reply) -> warp::reply::Response {
    let mut resp = match &reply.body {
        Some(v) => warp::reply::json(v).into_response(),
        None => warp::reply().into_response(),
    };
    *resp.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (k, v) in reply.headers {
        if let (Ok(name), Ok(value)) = (
            warp::http::HeaderName::from_bytes(k.as_bytes()),
            warp::http::HeaderValue::from_str(&v),
        ) {
            resp.headers_mut().append(name, value);
        }
    }
    resp
}

async fn handle(arm: Arc<Arm>, mut req: Req, https: bool) -> warp::reply::Response {
    let started = Instant::now();
    let host = req
        .headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_string();
    let base = format!("{}://{host}", if https { "https" } else { "http" });
    let path = req.path.clone();
    let method = req.method.to_string();

    if path.starts_with("/_devcloud/") || path == "/_devcloud" {
        let reply = crate::admin::handle(&arm, &req);
        return to_response(reply);
    }

    let route = crate::handlers::classify(&req);
    let kind = route.kind.clone();
    let request_id = uuid::Uuid::new_v4().to_string();
    let correlation = req
        .headers
        .get("x-ms-correlation-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| request_id.clone());
    // The handlers (and the resource events) see the correlation id ARM answers with.
    if let Ok(v) = warp::http::HeaderValue::from_str(&correlation) {
        req.headers.insert("x-ms-correlation-request-id", v);
    }
    let client_request_id = req
        .headers
        .get("x-ms-client-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);

    let mut reset = false;
    let mut reply = 'reply: {
        if route.anonymous {
            break 'reply crate::handlers::dispatch(&arm, &req, &route, &base, Default::default())
                .await;
        }
        let auth = req
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let verified = arm
            .identity
            .verify(auth, "https://management.azure.com/")
            .or_else(|e| match e {
                devcloud_core::AuthError::Audience { .. } => arm
                    .identity
                    .verify(auth, "https://management.core.windows.net/"),
                other => Err(other),
            });
        let claims = match verified {
            Ok(c) => c,
            Err(e) => {
                let err = ArmError::new(401, e.code(), e.to_string());
                let challenge = format!(
                    "Bearer authorization_uri=\"https://login.windows.net/{}\", error=\"invalid_token\", error_description=\"{}\"",
                    arm.identity.tenant_id,
                    e.code()
                );
                break 'reply Reply::from(err).header("WWW-Authenticate", challenge);
            }
        };
        // The subscription's tenant must be the token's [obs].
        if let Some(sub) = route.subscription.as_deref() {
            let tenant = arm.config.tenant_of(sub, &arm.identity.tenant_id);
            if !tenant.eq_ignore_ascii_case(&claims.tid) {
                break 'reply Reply::from(crate::tenancy::wrong_tenant(&claims, &tenant));
            }
        }
        let aux_header = req
            .headers
            .get(crate::tenancy::AUX_HEADER)
            .and_then(|v| v.to_str().ok());
        match crate::tenancy::aux_tenants(&arm.identity, aux_header) {
            Ok(t) => req.aux_tenants = t,
            Err(e) => break 'reply Reply::from(e),
        }
        req.caller = Some(claims);
        // Throttling (ARM token buckets per subscription and class of request).
        let class = match req.method {
            Method::GET | Method::HEAD => "reads",
            Method::DELETE => "deletes",
            _ => "writes",
        };
        let sub = route.subscription.clone().unwrap_or_default();
        let mut rl_header = None;
        if arm.config.throttling.enabled {
            let (ok, remaining, wait) = arm.take_token(&sub, class);
            if !ok {
                let e = ArmError::new(
                    429,
                    "SubscriptionRequestsThrottled",
                    format!(
                        "Number of '{}' requests for subscription '{sub}' actor '{}' exceeded. Please try again after '{wait}' seconds after additional tokens are available. Refer to https://aka.ms/arm-throttling",
                        class.trim_end_matches('s'),
                        arm.identity.object_id
                    ),
                );
                break 'reply Reply::from(e)
                    .header("Retry-After", wait.to_string())
                    .header(
                        &format!("x-ms-ratelimit-remaining-subscription-{class}"),
                        "0",
                    );
            }
            rl_header = Some((
                format!("x-ms-ratelimit-remaining-subscription-{class}"),
                format!("{remaining}"),
            ));
        }
        let applied = arm.apply_faults(&kind);
        if applied.latency_ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(applied.latency_ms)).await;
        }
        if applied.reset {
            reset = true;
            break 'reply Reply::empty(500);
        }
        let mut reply = if let Some(err) = applied.error.clone() {
            let mut r = Reply::from(err);
            if let Some(s) = applied.retry_after {
                // Never less than 1: clients read 0 as "use your default".
                r = r.header("Retry-After", s.max(1).to_string());
            }
            r
        } else {
            crate::handlers::dispatch(&arm, &req, &route, &base, applied.op).await
        };
        if applied.answer_latency_ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(applied.answer_latency_ms)).await;
        }
        if let Some((k, v)) = rl_header {
            reply = reply.header(&k, v.clone());
            reply = reply.header(&k.replace("subscription", "global"), v);
        }
        reply
    };
    reply = reply
        .header("x-ms-request-id", request_id)
        .header("x-ms-correlation-request-id", correlation);
    if let Some(c) = client_request_id {
        reply = reply.header("x-ms-client-request-id", c);
    }
    if reply.status == 200 || reply.status == 201 || reply.status == 202 {
        reply = reply.header("Cache-Control", "no-cache");
    }
    let status = reply.status;
    arm.record(LogEntry {
        time: crate::model::fmt_time(Utc::now()),
        method,
        path,
        kind,
        status: if reset { 0 } else { status },
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        caller_tenant: req.caller.as_ref().map(|c| c.tid.clone()),
        auxiliary_tenants: req.aux_tenants.clone(),
        user_agent: req
            .headers
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    });
    let mut resp = to_response(reply);
    if reset {
        resp.extensions_mut().insert(ResetConnection);
    }
    resp
}
