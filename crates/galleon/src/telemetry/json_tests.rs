//! The JSON layer writes the lines tracing-subscriber's JSON formatter wrote (same members), each once,
//! where its severity belongs.

use std::{
    sync::Arc,
    time::{Duration, UNIX_EPOCH},
};

use serde_json::Value;
use tracing_subscriber::layer::SubscriberExt;

use super::*;
use crate::host::{Route, Sink, capture_logs};

fn logs_sink_memory() -> Sink {
    Sink::Memory(Arc::default())
}

fn logs_sink_lines(sink: &Sink) -> Vec<String> {
    match sink {
        Sink::Memory(lines) => lines.lock().map(|l| l.clone()).unwrap_or_default(),
        _ => Vec::new(),
    }
}

fn parse(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

#[test]
fn lines_have_the_fields_span_and_severity() {
    let (stdout, stderr) = (logs_sink_memory(), logs_sink_memory());
    let route = Route::to(true, stdout.clone(), stderr.clone());
    let dispatch =
        tracing::Dispatch::new(tracing_subscriber::registry().with(JsonLayer::new(route)));
    tracing::dispatcher::with_default(&dispatch, || {
        let span = tracing::info_span!(
            "invocation",
            function = "IngestBlob",
            invocation_id = %"83a33220-a921-460a-bec0-b3f043dcf1ff",
            correlation_id = tracing::field::Empty,
        );
        let _entered = span.enter();
        span.record("correlation_id", "c-1");
        tracing::info!(
            elapsed_ms = 0.25,
            count = 3u64,
            delta = -2i64,
            ok = true,
            text = "quote \" backslash \\ newline \n tab \t bell \u{7} é",
            debug = ?vec!["a"],
            "invocation succeeded"
        );
        tracing::error!(error = "throttled; a WARNING word", "invocation failed");
    });
    tracing::dispatcher::with_default(&dispatch, || tracing::warn!("outside any span"));

    let out = logs_sink_lines(&stdout);
    let err = logs_sink_lines(&stderr);
    assert_eq!(out.len(), 1, "one info line on stdout: {out:?}");
    assert_eq!(err.len(), 2, "the error and the warning on stderr: {err:?}");

    let info = parse(&out[0]);
    assert_eq!(info["level"], "INFO");
    assert_eq!(info["target"], module_path!());
    let fields = &info["fields"];
    assert_eq!(fields["message"], "invocation succeeded");
    assert_eq!(fields["elapsed_ms"], 0.25);
    assert_eq!(fields["count"], 3);
    assert_eq!(fields["delta"], -2);
    assert_eq!(fields["ok"], true);
    assert_eq!(
        fields["text"],
        "quote \" backslash \\ newline \n tab \t bell \u{7} é"
    );
    assert_eq!(fields["debug"], "[\"a\"]");
    let span = &info["span"];
    assert_eq!(span["name"], "invocation");
    assert_eq!(span["function"], "IngestBlob");
    assert_eq!(
        span["invocation_id"],
        "83a33220-a921-460a-bec0-b3f043dcf1ff"
    );
    assert_eq!(
        span["correlation_id"], "c-1",
        "recorded after the span began"
    );
    let stamp = info["timestamp"].as_str().unwrap_or_default();
    assert!(
        chrono::DateTime::parse_from_rfc3339(stamp).is_ok() && stamp.ends_with('Z'),
        "{stamp}"
    );

    let error = &err[0];
    assert!(
        !error.to_ascii_lowercase().contains("warn"),
        "an error line the host reads as Error: {error}"
    );
    let error = parse(error);
    assert_eq!(error["level"], "ERROR");
    assert_eq!(error["fields"]["error"], "throttled; a WARNING word");
    assert_eq!(
        error["span"]["invocation_id"],
        "83a33220-a921-460a-bec0-b3f043dcf1ff"
    );
    let warning = parse(&err[1]);
    assert_eq!(warning["level"], "WARN");
    assert!(warning.get("span").is_none(), "{warning}");
}

#[test]
fn records_of_the_log_crate_keep_their_own_target() {
    let (stdout, stderr) = (logs_sink_memory(), logs_sink_memory());
    let route = Route::to(true, stdout.clone(), stderr.clone());
    let dispatch =
        tracing::Dispatch::new(tracing_subscriber::registry().with(JsonLayer::new(route)));
    // What tracing-log makes of `log::warn!` in rustls.
    tracing::dispatcher::with_default(&dispatch, || {
        tracing::warn!(
            log.target = "rustls::conn",
            log.module_path = "rustls::conn",
            log.file = "src/conn.rs",
            log.line = 42u64,
            "Sending fatal alert"
        );
    });
    let err = logs_sink_lines(&stderr);
    assert_eq!(err.len(), 1, "{err:?}");
    let line = parse(&err[0]);
    assert_eq!(line["target"], "rustls::conn", "{line}");
    assert_eq!(
        line["fields"],
        serde_json::json!({"message": "Sending fatal alert"})
    );
}

#[test]
fn info_lines_inside_an_invocation_go_to_its_logs() {
    let (stdout, stderr) = (logs_sink_memory(), logs_sink_memory());
    let route = Route::to(true, stdout.clone(), stderr.clone());
    let dispatch =
        tracing::Dispatch::new(tracing_subscriber::registry().with(JsonLayer::new(route)));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let logs = tracing::dispatcher::with_default(&dispatch, || {
        runtime
            .block_on(capture_logs(async {
                tracing::info!(blob = "a.txt", "ignored");
            }))
            .1
    });
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(parse(&logs[0])["fields"]["blob"], "a.txt");
    assert!(logs_sink_lines(&stdout).is_empty());
    assert!(logs_sink_lines(&stderr).is_empty());
}

#[test]
fn timestamps_are_utc_rfc3339_with_microseconds() {
    for secs in [0u64, 951_782_400, 1_764_585_566, 4_107_542_399] {
        let at = UNIX_EPOCH + Duration::new(secs, 123_456_789);
        let mut ours = String::new();
        push_timestamp(&mut ours, at);
        let chrono: chrono::DateTime<chrono::Utc> = at.into();
        assert_eq!(
            ours,
            chrono.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
            "{secs}"
        );
    }
}

#[test]
fn strings_escape_to_the_same_text() {
    for text in [
        "",
        "plain",
        "\"quoted\"",
        "\\",
        "\u{0}\u{1f}\n\r\t",
        "multi-byte ü ✓ 🦀",
    ] {
        let mut out = String::new();
        push_json_str(&mut out, text);
        assert_eq!(parse(&out), Value::String(text.to_owned()), "{out}");
    }
}
