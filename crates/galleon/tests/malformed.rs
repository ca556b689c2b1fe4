//! Malformed invocations each get a clear, specific answer, and never crash or hang the server.

use std::sync::Arc;

use galleon::host::{self, App, Failure, Limits, Output, Trigger, TriggerKind};
use serde_json::{Value, json};

fn app() -> App {
    App::new().function(
        "Echo",
        TriggerKind::ServiceBus,
        "msg",
        &["out"],
        |inv| async move {
            let Trigger::ServiceBus(m) = inv.trigger else {
                unreachable!()
            };
            match m.body.as_str() {
                "fail" => Err(Failure::new(std::io::Error::other("ARM answered 503"))),
                "panic" => panic!("handler bug"),
                "undeclared" => Ok(Output::default().binding("elsewhere", json!(1))),
                _ => Ok(Output::default().binding("out", json!([m.body]))),
            }
        },
    )
}

async fn call(path: &str, body: &[u8]) -> (u16, Value) {
    let routes = host::router(
        Arc::new(app()),
        Limits {
            max_body_bytes: 64 * 1024,
        },
    );
    let response = warp::test::request()
        .method("POST")
        .path(path)
        .body(body)
        .reply(&routes)
        .await;
    let json = serde_json::from_slice(response.body()).unwrap_or(Value::Null);
    (response.status().as_u16(), json)
}

fn msg(body: &str) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"Data": {"msg": format!("\"{body}\"")}, "Metadata": {"DeliveryCount": "1"}}),
    )
    .unwrap_or_default()
}

async fn expect_problem(path: &str, body: &[u8], status: u16, code: &str, mentions: &str) {
    let (got, answer) = call(path, body).await;
    assert_eq!(got, status, "{path}: {answer}");
    assert_eq!(answer["error"]["code"], code, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(mentions),
        "message {message:?} should mention {mentions:?}"
    );
}

/// An invocation id that is not text (or absent) does not stop the invocation: it runs under a fresh id.
#[tokio::test]
async fn an_unreadable_invocation_id_is_replaced_not_refused() {
    let routes = host::router(Arc::new(app()), Limits::default());
    for id in [&b"\xff\xfe"[..], b"83a33220-a921-460a-bec0-b3f043dcf1ff"] {
        let header = warp::http::HeaderValue::from_bytes(id).expect("a header value");
        let response = warp::test::request()
            .method("POST")
            .path("/Echo")
            .header("x-azure-functions-invocationid", header.clone())
            .header("traceparent", header)
            .body(msg("hello"))
            .reply(&routes)
            .await;
        let answer: Value = serde_json::from_slice(response.body()).unwrap_or(Value::Null);
        assert_eq!(response.status(), 200, "{answer}");
        assert_eq!(answer["Outputs"]["out"], json!(["hello"]), "{answer}");
    }
}

#[tokio::test]
async fn not_json() {
    expect_problem("/Echo", b"{\"Data\": ", 400, "InvalidJson", "not JSON").await;
    expect_problem("/Echo", b"\xff\xfe", 400, "InvalidJson", "not JSON").await;
}

#[tokio::test]
async fn wrong_shapes() {
    expect_problem("/Echo", b"[1,2]", 400, "EnvelopeNotObject", "JSON object").await;
    expect_problem(
        "/Echo",
        br#"{"Data": [1]}"#,
        400,
        "DataNotObject",
        "keyed by binding",
    )
    .await;
    expect_problem(
        "/Echo",
        br#"{"Data": {"msg": "\"x\""}, "Metadata": 3}"#,
        400,
        "MetadataNotObject",
        "Metadata",
    )
    .await;
    expect_problem(
        "/Echo",
        br#"{"Data": {"other": "\"x\""}}"#,
        400,
        "TriggerNotDecodable",
        "Data has: other",
    )
    .await;
    expect_problem(
        "/Echo",
        br#"{"Data": {"msg": 12}}"#,
        400,
        "TriggerNotDecodable",
        "a number",
    )
    .await;
}

#[tokio::test]
async fn missing_data() {
    expect_problem(
        "/Echo",
        br#"{"Metadata": {}}"#,
        400,
        "MissingData",
        "Data.msg",
    )
    .await;
    expect_problem(
        "/Echo",
        br#"{"Data": null}"#,
        400,
        "MissingData",
        "Data.msg",
    )
    .await;
}

#[tokio::test]
async fn unknown_function_names_the_known_ones() {
    expect_problem(
        "/Nope",
        &msg("x"),
        404,
        "UnknownFunction",
        "it serves: Echo",
    )
    .await;
}

#[tokio::test]
async fn oversized_body() {
    let big = vec![b' '; 64 * 1024 + 1];
    expect_problem(
        "/Echo",
        &big,
        413,
        "BodyTooLarge",
        "GALLEON_MAX_INVOCATION_BYTES",
    )
    .await;
}

#[tokio::test]
async fn wrong_method_and_path() {
    let routes = host::router(Arc::new(app()), Limits::default());
    let get = warp::test::request()
        .method("GET")
        .path("/Echo")
        .reply(&routes)
        .await;
    assert!(
        matches!(get.status().as_u16(), 404 | 405),
        "{}",
        get.status()
    );
    let ready = warp::test::request()
        .method("GET")
        .path("/")
        .reply(&routes)
        .await;
    assert_eq!(ready.status(), 200);
    let nested = warp::test::request()
        .method("POST")
        .path("/a/b")
        .body("{}")
        .reply(&routes)
        .await;
    assert_eq!(nested.status(), 404);
}

#[tokio::test]
async fn handler_failure_is_a_5xx_with_the_cause() {
    let (status, answer) = call("/Echo", &msg("fail")).await;
    assert_eq!(status, 500);
    assert_eq!(answer["error"]["code"], "FunctionFailed");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("ARM answered 503"))
    );
}

#[tokio::test]
async fn handler_panic_is_a_5xx_and_the_server_keeps_serving() {
    let routes = host::router(Arc::new(app()), Limits::default());
    let crash = warp::test::request()
        .method("POST")
        .path("/Echo")
        .body(msg("panic"))
        .reply(&routes)
        .await;
    assert_eq!(crash.status(), 500);
    let after = warp::test::request()
        .method("POST")
        .path("/Echo")
        .body(msg("fine"))
        .reply(&routes)
        .await;
    assert_eq!(after.status(), 200);
}

#[tokio::test]
async fn undeclared_output_binding_is_refused() {
    expect_problem(
        "/Echo",
        &msg("undeclared"),
        500,
        "UndeclaredOutput",
        "elsewhere",
    )
    .await;
}
