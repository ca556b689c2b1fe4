//! A tiny custom handler for devcloud-host's tests. It records every invocation as a JSON file
//! (`{"function","headers","body"}`) in `$TEST_RECORD_DIR`, and obeys instructions found in
//! the decoded trigger payload: `{"fail":true}` → HTTP 500, `{"crashOnce":"<marker>"}` → exit
//! the process the first time (marker file in the record dir), `{"sleepMs":n}` → wait, `{"failOnce":"<marker>"}` → HTTP 500 the first time; functions named in
//! `$TEST_FAIL_FUNCTIONS` (comma-separated) always fail;
//! `{"outputs":{...},"returnValue":…}` → returned as Outputs/ReturnValue.

use std::convert::Infallible;
use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

/// Undo the host's encoding: a string holding JSON text (possibly twice) → the JSON value.
fn decode(v: &Value) -> Value {
    let mut cur = v.clone();
    for _ in 0..2 {
        match &cur {
            Value::String(s) => match serde_json::from_str::<Value>(s) {
                Ok(inner) => cur = inner,
                Err(_) => break,
            },
            _ => break,
        }
    }
    cur
}

fn instructions(body: &Value) -> Value {
    let Some(v) = body
        .get("Data")
        .and_then(Value::as_object)
        .and_then(|d| d.values().next())
    else {
        return Value::Null;
    };
    let d = decode(v);
    // HTTP triggers: the instructions are in the request body.
    if let Some(b) = d.get("Body") {
        return decode(&json!(b.as_str().unwrap_or_default()));
    }
    // Event Grid: in the event's data.
    if let Some(data) = d.get("data") {
        return data.clone();
    }
    d
}

async fn handle(dir: PathBuf, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let function = req.uri().path().trim_start_matches('/').to_string();
    let headers: serde_json::Map<String, Value> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                json!(v.to_str().unwrap_or_default()),
            )
        })
        .collect();
    let method = req.method().clone();
    let bytes = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    if method == hyper::Method::GET && function.is_empty() {
        return Response::new(Full::new(Bytes::from_static(b"ready")));
    }
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let record =
        json!({"function": function, "headers": headers, "body": body, "pid": std::process::id()});
    // Written then renamed, so readers never see half a record.
    let name = uuid::Uuid::new_v4();
    let tmp = dir.join(format!("{name}.tmp"));
    let _ = std::fs::write(&tmp, serde_json::to_vec(&record).unwrap_or_default());
    let _ = std::fs::rename(&tmp, dir.join(format!("{name}.json")));
    let ins = instructions(&body);
    if let Some(ms) = ins.get("sleepMs").and_then(Value::as_u64) {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    if let Some(marker) = ins.get("crashOnce").and_then(Value::as_str) {
        let m = dir.join(format!("crashed-{marker}"));
        if !m.exists() {
            let _ = std::fs::write(&m, b"");
            eprintln!("test handler: crashing as asked ({marker})");
            std::process::exit(3);
        }
    }
    let fail_once = ins
        .get("failOnce")
        .and_then(Value::as_str)
        .is_some_and(|marker| {
            let m = dir.join(format!("failed-{marker}"));
            !m.exists() && std::fs::write(&m, b"").is_ok()
        });
    let fail_always = std::env::var("TEST_FAIL_FUNCTIONS")
        .is_ok_and(|list| list.split(',').any(|f| f == function));
    if fail_always || fail_once || ins.get("fail").and_then(Value::as_bool) == Some(true) {
        let mut r = Response::new(Full::new(Bytes::from_static(b"failing as asked")));
        *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
        return r;
    }
    let outputs = ins.get("outputs").cloned().unwrap_or(json!({}));
    let ret = ins.get("returnValue").cloned().unwrap_or(Value::Null);
    let out =
        json!({"Outputs": outputs, "Logs": [format!("handled {function}")], "ReturnValue": ret});
    let mut r = Response::new(Full::new(Bytes::from(out.to_string())));
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::var("FUNCTIONS_CUSTOMHANDLER_PORT")?.parse()?;
    let dir = PathBuf::from(std::env::var("TEST_RECORD_DIR")?);
    if let Ok(ms) = std::env::var("TEST_STARTUP_DELAY_MS") {
        tokio::time::sleep(std::time::Duration::from_millis(ms.parse()?)).await;
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!(
        "test handler listening on {port}, cwd {}",
        std::env::current_dir()?.display()
    );
    loop {
        let (stream, _) = listener.accept().await?;
        let dir = dir.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let dir = dir.clone();
                async move { Ok::<_, Infallible>(handle(dir, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
