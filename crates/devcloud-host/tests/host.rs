//! The host against real sockets and a real handler process (the test handler binary):
//! timers (scheduled and on demand), Service Bus peek-lock with failures, crashes, dead
//! letters and concurrency limits, the Event Grid webhook, HTTP triggers, clean shutdown.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use devcloud_host::{Host, HostConfig, RunningHost};
use serde_json::{Value, json};

fn config() -> HostConfig {
    HostConfig {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        receive_timeout_secs: 1,
        ..HostConfig::default()
    }
}

async fn start(dir: &std::path::Path, cfg: HostConfig) -> RunningHost {
    let host = Host::load(dir, BTreeMap::new()).unwrap_or_else(|e| panic!("{e}"));
    host.start(cfg).await.unwrap()
}

/// Shut down and prove the handler process is gone.
async fn stop(host: RunningHost) {
    let (pid, _) = host.handler_process().await;
    host.shutdown().await;
    assert!(
        !process_alive(pid),
        "handler pid {pid} still running after shutdown"
    );
}

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timer_fires_on_schedule_and_on_demand() {
    let d = tempfile::tempdir().unwrap();
    let rec = write_app(
        d.path(),
        json!({}),
        &[
            (
                "Every",
                json!({"bindings": [{"name": "timer", "type": "timerTrigger", "direction": "in", "schedule": "%EVERY%"}]}),
            ),
            (
                "Monthly",
                json!({"bindings": [{"name": "tick", "type": "timerTrigger", "direction": "in", "schedule": "0 0 0 1 * *", "useMonitor": true}]}),
            ),
        ],
        json!({"EVERY": "*/1 * * * * *"}),
    );
    let host = start(d.path(), config()).await;
    wait_until(20, "two scheduled runs", || {
        records_for(&rec, "Every").len() >= 2
    })
    .await;
    let every = records_for(&rec, "Every");
    let body = &every[0]["body"];
    assert_eq!(
        body["Data"]["timer"]["Schedule"],
        json!({"AdjustForDST": true})
    );
    assert_eq!(body["Data"]["timer"]["IsPastDue"], json!(false));
    assert_eq!(body["Metadata"]["sys"]["MethodName"], "Every");
    // A per-second schedule is not monitored: ScheduleStatus stays null.
    assert!(
        every
            .iter()
            .all(|r| r["body"]["Data"]["timer"]["ScheduleStatus"].is_null())
    );
    assert_eq!(every[0]["headers"]["transfer-encoding"], "chunked");
    assert!(every[0]["headers"].get("content-length").is_none());

    // On demand, through the admin endpoint, twice: the second run has a ScheduleStatus.
    assert!(records_for(&rec, "Monthly").is_empty());
    let url = format!(
        "http://{}/_devcloud/host/functions/Monthly/fire",
        host.http_addr
    );
    for _ in 0..2 {
        let r: Value = http()
            .post(&url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["status"], "Succeeded");
    }
    let monthly = records_for(&rec, "Monthly");
    assert_eq!(monthly.len(), 2);
    let statuses: Vec<&Value> = monthly
        .iter()
        .map(|r| &r["body"]["Data"]["tick"]["ScheduleStatus"])
        .collect();
    assert!(statuses.iter().any(|s| s.is_null()));
    let st = statuses
        .iter()
        .find(|s| !s.is_null())
        .expect("a ScheduleStatus on the second run");
    assert!(
        st["Next"].as_str().unwrap().ends_with("-01T00:00:00Z"),
        "{st}"
    );
    // The real host's admin API also runs it (202, in the background).
    let r = http()
        .post(format!("http://{}/admin/functions/Monthly", host.http_addr))
        .json(&json!({"input": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    wait_until(10, "admin run", || records_for(&rec, "Monthly").len() == 3).await;
    let invs: Value = http()
        .get(format!(
            "http://{}/_devcloud/host/invocations",
            host.http_addr
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        invs.as_array()
            .unwrap()
            .iter()
            .any(|i| i["function"] == "Monthly"
                && i["status"] == "Succeeded"
                && i["trigger"] == "timerTrigger")
    );
    // The handler's `Logs` land in the host log, tagged with function and invocation id.
    let admin = |p: &str| format!("http://{}/_devcloud/host/{p}", host.http_addr);
    let logs: Value = http()
        .get(admin("logs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let line = logs
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["message"] == "handled Monthly")
        .expect("handler log line");
    let source = line["source"].as_str().unwrap();
    let id = source
        .strip_prefix("Monthly [")
        .and_then(|s| s.strip_suffix(']'))
        .unwrap();
    assert!(
        invs.as_array().unwrap().iter().any(|i| i["id"] == id),
        "{source}"
    );
    // As Azure's host does, every invocation's outcome is logged with its id and duration (galleon leaves
    // its own per-invocation line at debug because of it).
    let executed = format!("Executed 'Functions.Monthly' (Succeeded, Id={id}, Duration=");
    assert!(
        logs.as_array()
            .unwrap()
            .iter()
            .any(|l| l["source"] == source
                && l["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(&executed) && m.ends_with("ms)"))),
        "no '{executed}…ms)' line in the host log"
    );
    // stdout of the handler process is captured too.
    assert!(logs.as_array().unwrap().iter().any(|l| {
        l["source"] == "handler"
            && l["message"]
                .as_str()
                .unwrap()
                .starts_with("test handler listening")
    }));
    let status: Value = http()
        .get(admin("status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["handlerStarts"], 1);
    assert_eq!(status["functions"], 2);
    let fns: Value = http()
        .get(admin("functions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(fns[1]["schedule"], "0 0 0 1 * *");
    stop(host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_bus_failures_redeliver_then_dead_letter_and_outputs_are_sent() {
    let d = tempfile::tempdir().unwrap();
    let sb = SbStub::start(d.path()).await;
    let rec = write_app(
        d.path(),
        json!({"extensions": {"serviceBus": {"maxConcurrentCalls": 2}}}),
        &[(
            "Work",
            json!({"bindings": [
                {"name": "msg", "type": "serviceBusTrigger", "direction": "in", "queueName": "jobs", "connection": "SB"},
                {"name": "out", "type": "serviceBus", "direction": "out", "queueName": "done", "connection": "SB"},
            ]}),
        )],
        sb.settings("SB"),
    );
    let cfg = HostConfig {
        ca_cert_pem: Some(sb.ca_pem.clone()),
        ..config()
    };
    let host = start(d.path(), cfg).await;
    let failing = sb.send("jobs", r#"{"fail":true}"#);
    for i in 0..4 {
        sb.send(
            "jobs",
            &json!({"n": i, "sleepMs": 300, "outputs": {"out": [{"n": i}, "second"]}}).to_string(),
        );
    }
    wait_until(30, "dead letter + completions", || {
        sb.with("jobs", |e| e.dead.len() == 1 && e.completed.len() == 4)
    })
    .await;
    // N = MaxDeliveryCount failures: delivered N times (DeliveryCount 1..N), then dead-lettered.
    assert_eq!(delivery_counts(&rec, "Work", &failing), vec!["1", "2", "3"]);
    assert_eq!(sb.with("jobs", |e| e.dead[0].id.clone()), failing);
    // Outputs: two messages per success on "done" (an object → indented JSON, a string → text).
    let done = sb.with("done", |e| {
        e.ready
            .iter()
            .map(|m| {
                (
                    String::from_utf8_lossy(&m.body).to_string(),
                    m.content_type.clone(),
                )
            })
            .collect::<Vec<_>>()
    });
    assert_eq!(done.len(), 8, "{done:?}");
    assert!(done.iter().any(|(b, _)| b == "{\n  \"n\": 0\n}"));
    assert!(done.iter().filter(|(b, _)| b == "second").count() == 4);
    assert!(
        done.iter()
            .all(|(_, ct)| ct.as_deref() == Some("text/plain"))
    );
    // maxConcurrentCalls = 2 bounds the number of messages held at once.
    let max = sb.with("jobs", |e| e.max_locked);
    assert!((1..=2).contains(&max), "max locked {max}");
    // Metadata as the Service Bus extension encodes it.
    let ok = records_for(&rec, "Work")
        .into_iter()
        .find(|r| {
            r["body"]["Metadata"]["DeliveryCount"] == "1"
                && r["body"]["Metadata"]["MessageId"] != json!(format!("\"{failing}\""))
        })
        .unwrap();
    let md = &ok["body"]["Metadata"];
    assert!(
        ok["body"]["Data"]["msg"]
            .as_str()
            .unwrap()
            .starts_with("\"{")
    );
    assert_eq!(md["ContentType"], "\"application/json\"");
    assert_eq!(md["ApplicationProperties"], json!({"priority": "High"}));
    assert_eq!(md["Client"]["FullyQualifiedNamespace"], sb.addr.to_string());
    assert!(md["EnqueuedTimeUtc"].as_str().unwrap().len() == 19);
    assert!(
        md["sleepMs"] == "\"300\"",
        "body properties leak into Metadata"
    );
    assert_eq!(sb.broker.lock().unwrap().unauthorized, 0);
    stop(host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_handler_is_restarted_and_no_message_is_lost() {
    let d = tempfile::tempdir().unwrap();
    let sb = SbStub::start(d.path()).await;
    let rec = write_app(
        d.path(),
        json!({}),
        &[(
            "Crashy",
            json!({"bindings": [{"name": "msg", "type": "serviceBusTrigger", "queueName": "work", "connection": "SB"}]}),
        )],
        sb.settings("SB"),
    );
    let cfg = HostConfig {
        ca_cert_pem: Some(sb.ca_pem.clone()),
        ..config()
    };
    let host = start(d.path(), cfg).await;
    let crash = sb.send("work", r#"{"crashOnce":"c1"}"#);
    let others: Vec<String> = (0..3)
        .map(|i| sb.send("work", &json!({"n": i}).to_string()))
        .collect();
    wait_until(30, "all messages completed", || {
        sb.with("work", |e| e.completed.len() == 4)
    })
    .await;
    let (_, starts) = host.handler_process().await;
    assert!(starts >= 2, "handler restarted ({starts} starts)");
    assert!(sb.with("work", |e| e.dead.is_empty()
        && e.ready.is_empty()
        && e.locked.is_empty()));
    let completed: Vec<String> = sb.with("work", |e| {
        e.completed.iter().map(|m| m.id.clone()).collect()
    });
    for id in others.iter().chain([&crash]) {
        assert!(completed.contains(id), "{id} completed");
    }
    // The crashing message was seen by two different processes.
    let seen: Vec<Value> = records_for(&rec, "Crashy")
        .into_iter()
        .filter(|r| r["body"]["Metadata"]["MessageId"] == json!(format!("\"{crash}\"")))
        .collect();
    assert_eq!(seen.len(), 2);
    assert_ne!(seen[0]["pid"], seen[1]["pid"]);
    assert!(
        host.logs()
            .iter()
            .any(|l| l.message.contains("Language Worker Process exited"))
    );
    stop(host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_grid_webhook_handshakes_and_delivery() {
    let d = tempfile::tempdir().unwrap();
    let rec = write_app(
        d.path(),
        json!({}),
        &[(
            "OnBlob",
            json!({"bindings": [{"name": "event", "type": "eventGridTrigger", "direction": "in"}]}),
        )],
        json!({}),
    );
    let host = start(d.path(), config()).await;
    let url = format!(
        "http://{}/runtime/webhooks/eventgrid?functionName=OnBlob",
        host.http_addr
    );
    let c = http();
    // Event Grid schema validation handshake.
    let validation: Value = serde_json::from_str(&std::fs::read_to_string("/work/shared/fixtures/functions/eventgrid.SubscriptionValidationEvent.docs.json").unwrap_or_else(|_| {
        json!([{"id": "1", "topic": "t", "subject": "", "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent", "eventTime": "2018-01-25T22:12:19.4556811Z", "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}, "dataVersion": "1"}]).to_string()
    })).unwrap();
    let r = c
        .post(&url)
        .header("aeg-event-type", "SubscriptionValidation")
        .json(&validation)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"})
    );
    // CloudEvents abuse-protection preflight.
    let r = c
        .request(reqwest::Method::OPTIONS, &url)
        .header("WebHook-Request-Origin", "eventgrid.azure.net")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["WebHook-Allowed-Origin"], "eventgrid.azure.net");
    // A batch of two Event Grid events → two invocations, 200.
    let ev = |id: &str, data: Value| json!({"id": id, "topic": "/t", "subject": "/blobServices/default/containers/c/blobs/a.vhd", "eventType": "Microsoft.Storage.BlobCreated", "eventTime": "2017-06-26T18:41:00.9584103Z", "data": data, "dataVersion": "", "metadataVersion": "1"});
    let r = c
        .post(&url)
        .header("aeg-event-type", "Notification")
        .json(&json!([
            ev("a", json!({"url": "u1"})),
            ev("b", json!({"url": "u2"}))
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got = records_for(&rec, "OnBlob");
    assert_eq!(got.len(), 2);
    let one = got
        .iter()
        .find(|r| r["body"]["Data"]["event"]["id"] == "a")
        .unwrap();
    assert_eq!(
        one["body"]["Data"]["event"]["eventTime"],
        "2017-06-26T18:41:00.9584103Z"
    );
    assert_eq!(one["body"]["Metadata"]["data"], json!({"url": "u1"}));
    // A CloudEvent whose invocation fails → 500 so that Event Grid retries.
    let ce = json!({"specversion": "1.0", "id": "c", "source": "/s", "type": "t", "data": {"fail": true}});
    let r = c
        .post(&url)
        .header("content-type", "application/cloudevents+json")
        .body(ce.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    let r = c
        .post(format!(
            "http://{}/runtime/webhooks/eventgrid?functionName=Nope",
            host.http_addr
        ))
        .json(&json!([]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    stop(host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_trigger_routes_keys_and_responses() {
    let d = tempfile::tempdir().unwrap();
    let rec = write_app(
        d.path(),
        json!({}),
        &[
            (
                "Items",
                json!({"bindings": [
                    {"name": "req", "type": "httpTrigger", "direction": "in", "route": "items/{id}", "methods": ["get", "post"], "authLevel": "function"},
                    {"name": "res", "type": "http", "direction": "out"},
                ]}),
            ),
            (
                "Open",
                json!({"bindings": [
                    {"name": "req", "type": "httpTrigger", "direction": "in", "authLevel": "anonymous"},
                    {"name": "$return", "type": "http", "direction": "out"},
                ]}),
            ),
        ],
        json!({}),
    );
    let mut cfg = config();
    cfg.function_keys.insert("Items".into(), "k1".into());
    let host = start(d.path(), cfg).await;
    let base = format!("http://{}", host.http_addr);
    let c = http();
    for (method, path, status) in [
        ("POST", "/api/items/5", 401),
        ("POST", "/api/items/5?code=wrong", 401),
        ("DELETE", "/api/items/5?code=k1", 405),
        ("GET", "/api/nothing", 404),
    ] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = c.request(m, format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), status, "{method} {path}");
    }
    let instr = json!({"outputs": {"res": {"statusCode": "201", "headers": {"x-test": "yes"}, "body": {"ok": true}}}});
    let r = c
        .post(format!("{base}/api/items/5?x=1"))
        .header("x-functions-key", "k1")
        .json(&instr)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["x-test"], "yes");
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"ok": true}));
    let rec_items = records_for(&rec, "Items");
    let req = &rec_items[0]["body"]["Data"]["req"];
    assert_eq!(req["Method"], "POST");
    assert_eq!(req["Params"], json!({"id": "5"}));
    assert_eq!(req["Query"], json!({"x": "1"}));
    assert_eq!(req["Headers"]["Content-Type"], json!(["application/json"]));
    assert_eq!(req["Url"], format!("{base}/api/items/5?x=1"));
    assert_eq!(
        serde_json::from_str::<Value>(req["Body"].as_str().unwrap()).unwrap(),
        instr
    );
    assert_eq!(rec_items[0]["body"]["Metadata"]["id"], "\"5\"");
    // $return http output and the default route (function name).
    let r = c
        .post(format!("{base}/api/open"))
        .json(&json!({"returnValue": {"body": "hi"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "hi");
    // A failing invocation is a 500.
    let r = c
        .post(format!("{base}/api/Open"))
        .json(&json!({"fail": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    stop(host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invocations_wait_for_a_slow_starting_handler() {
    let d = tempfile::tempdir().unwrap();
    let rec = write_app(
        d.path(),
        json!({}),
        &[(
            "Open",
            json!({"bindings": [{"name": "req", "type": "httpTrigger", "authLevel": "anonymous"}, {"name": "res", "type": "http", "direction": "out"}]}),
        )],
        json!({"TEST_STARTUP_DELAY_MS": "700"}),
    );
    let host = start(d.path(), config()).await;
    let r = http()
        .post(format!("http://{}/api/Open", host.http_addr))
        .json(&json!({"outputs": {"res": {"body": "late"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "late");
    assert_eq!(records_for(&rec, "Open").len(), 1);
    stop(host).await;
    // Nothing listens any more.
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// A plain HTTP endpoint that records every request (method, path, headers, body) and answers 200.
async fn recorder() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
) {
    use http_body_util::BodyExt;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let s = s.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let s = s.clone();
                        async move {
                            let headers: serde_json::Map<String, Value> = req
                                .headers()
                                .iter()
                                .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or(""))))
                                .collect();
                            let uri = req.uri().to_string();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                            s.lock()
                                .unwrap()
                                .push(json!({"uri": uri, "headers": headers, "body": body}));
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Full::new(bytes::Bytes::new()),
                            ))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_grid_output_timeouts_and_run_on_startup() {
    let (topic, published) = recorder().await;
    let d = tempfile::tempdir().unwrap();
    let rec = write_app(
        d.path(),
        json!({"functionTimeout": "00:00:01"}),
        &[
            (
                "Publish",
                json!({"bindings": [
                    {"name": "req", "type": "httpTrigger", "authLevel": "anonymous", "methods": ["post"]},
                    {"name": "res", "type": "http", "direction": "out"},
                    {"name": "events", "type": "eventGrid", "direction": "out", "topicEndpointUri": "TopicUri", "topicKeySetting": "TopicKey"},
                ]}),
            ),
            (
                "Boot",
                json!({"bindings": [{"name": "timer", "type": "timerTrigger", "schedule": "0 0 0 1 1 *", "runOnStartup": true}]}),
            ),
        ],
        json!({"TopicUri": format!("http://{topic}/api/events"), "TopicKey": "topic-key"}),
    );
    let host = start(d.path(), config()).await;
    wait_until(10, "runOnStartup", || records_for(&rec, "Boot").len() == 1).await;
    let c = http();
    let url = format!("http://{}/api/Publish", host.http_addr);
    // CloudEvents (the first element decides the schema).
    let ce = json!({"specversion": "1.0", "id": "1", "source": "/galleon", "type": "Galleon.ImageReady", "data": {"a": 1}});
    let r = c
        .post(&url)
        .json(&json!({"outputs": {"events": [ce.clone(), ce.to_string()], "res": {"body": "ok"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Event Grid schema, a single object.
    let eg = json!({"id": "2", "subject": "s", "eventType": "t", "eventTime": "2024-01-01T00:00:00Z", "dataVersion": "1", "data": {}});
    let r = c
        .post(&url)
        .json(&json!({"outputs": {"events": eg.clone(), "res": {"body": "ok"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got = published.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0]["uri"], "/api/events?api-version=2018-01-01");
    assert_eq!(got[0]["headers"]["aeg-sas-key"], "topic-key");
    assert!(
        got[0]["headers"]["content-type"]
            .as_str()
            .unwrap()
            .starts_with("application/cloudevents-batch+json")
    );
    assert_eq!(got[0]["body"], json!([ce.clone(), ce]));
    assert_eq!(got[1]["headers"]["content-type"], "application/json");
    assert_eq!(got[1]["body"], json!([eg]));
    // functionTimeout (1 s) fails a slow invocation; its outputs are not written.
    let r = c
        .post(&url)
        .json(&json!({"sleepMs": 2500, "outputs": {"events": eg, "res": {"body": "late"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(published.lock().unwrap().len(), 2);
    let invs = host.invocations();
    let failed = invs.iter().find(|i| i.status == "Failed").unwrap();
    assert!(
        failed.error.as_deref().unwrap().contains("timed out"),
        "{failed:?}"
    );
    assert_eq!(
        invs.iter()
            .filter(|i| i.function == "Publish" && i.status == "Succeeded")
            .map(|i| i.outputs)
            .collect::<Vec<_>>(),
        vec![3, 2]
    );
    stop(host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timer_retry_policy_retries_with_retry_context() {
    let d = tempfile::tempdir().unwrap();
    let rec = write_app(
        d.path(),
        json!({"retry": {"strategy": "fixedDelay", "maxRetryCount": 2, "delayInterval": "00:00:00"}}),
        &[
            (
                "Flaky",
                json!({"bindings": [{"name": "timer", "type": "timerTrigger", "schedule": "0 0 0 1 1 *"}]}),
            ),
            (
                "Steady",
                json!({"bindings": [{"name": "timer", "type": "timerTrigger", "schedule": "0 0 0 1 1 *"}],
                              "retry": {"strategy": "exponentialBackoff", "maxRetryCount": 1, "minimumInterval": "00:00:01", "maximumInterval": "00:00:02"}}),
            ),
        ],
        json!({"TEST_FAIL_FUNCTIONS": "Flaky"}),
    );
    let host = start(d.path(), config()).await;
    assert!(host.fire_timer("Flaky").await.is_err());
    let mut ctxs: Vec<Value> = records_for(&rec, "Flaky")
        .iter()
        .map(|r| r["body"]["Metadata"]["RetryContext"].clone())
        .collect();
    ctxs.sort_by_key(|c| c["RetryCount"].as_u64());
    assert_eq!(ctxs.len(), 3, "first attempt + maxRetryCount retries");
    assert_eq!(
        ctxs[0],
        json!({"RetryCount": 0, "MaxRetryCount": 2, "Exception": null})
    );
    assert_eq!(ctxs[2]["RetryCount"], 2);
    assert!(
        ctxs[2]["Exception"]["Message"]
            .as_str()
            .unwrap()
            .contains("HTTP 500")
    );
    // A succeeding function runs once; its own policy wins over host.json's.
    host.fire_timer("Steady").await.unwrap();
    let steady = records_for(&rec, "Steady");
    assert_eq!(steady.len(), 1);
    assert_eq!(
        steady[0]["body"]["Metadata"]["RetryContext"]["MaxRetryCount"],
        1
    );
    stop(host).await;
}
