//! Service Bus over real sockets: REST send/receive with peek-lock, scheduling, abandon until
//! dead-letter, duplicate detection, topic routing from the project's routing file, auth and errors.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use devcloud_messaging::Routing;
use devcloud_messaging::auth::StaticToken;
use devcloud_messaging::servicebus::{self, EntityConfig, RunningServiceBus, ServiceBusConfig};
use serde_json::{Value, json};

const TOKEN: &str = "test-token";

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

async fn start(config: ServiceBusConfig) -> RunningServiceBus {
    servicebus::serve(
        config,
        Arc::new(StaticToken(TOKEN.into())),
        None,
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("service bus starts")
}

fn queue(name: &str, config: EntityConfig) -> ServiceBusConfig {
    ServiceBusConfig {
        queues: vec![(name.to_string(), config)],
        ..Default::default()
    }
}

async fn send(
    c: &reqwest::Client,
    base: &str,
    entity: &str,
    body: &str,
    props: Value,
    app: &[(&str, &str)],
) -> reqwest::Response {
    let mut rb = c
        .post(format!("{base}/{entity}/messages"))
        .bearer_auth(TOKEN)
        .header("Content-Type", "application/json")
        .header("BrokerProperties", props.to_string())
        .body(body.to_string());
    for (k, v) in app {
        rb = rb.header(*k, *v);
    }
    rb.send().await.expect("send request")
}

struct Got {
    status: u16,
    props: Value,
    headers: reqwest::header::HeaderMap,
    body: String,
}

async fn receive(c: &reqwest::Client, base: &str, entity: &str, timeout: u64) -> Got {
    let r = c
        .post(format!("{base}/{entity}/messages/head?timeout={timeout}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("receive request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let props = headers
        .get("brokerproperties")
        .map(|v| serde_json::from_str(v.to_str().expect("ascii")).expect("json"))
        .unwrap_or(Value::Null);
    let body = r.text().await.expect("body");
    Got {
        status,
        props,
        headers,
        body,
    }
}

fn lock_path(g: &Got) -> (String, String) {
    (
        g.props["MessageId"]
            .as_str()
            .expect("MessageId")
            .to_string(),
        g.props["LockToken"]
            .as_str()
            .expect("LockToken")
            .to_string(),
    )
}

#[tokio::test]
async fn send_receive_complete_with_properties() {
    let sb = start(queue("orders", EntityConfig::default())).await;
    let c = client();
    let base = sb.url();
    let r = send(
        &c,
        &base,
        "orders",
        r#"{"n":1}"#,
        json!({"MessageId": "m-1", "CorrelationId": "corr", "Label": "L", "TimeToLive": 600}),
        &[
            ("type", "\"io.galleon.image.ready.v1\""),
            ("Attempt", "3"),
            ("Urgent", "true"),
            ("Region", "westeurope"),
        ],
    )
    .await;
    assert_eq!(r.status(), 201);
    let g = receive(&c, &base, "orders", 5).await;
    assert_eq!(g.status, 201);
    assert_eq!(g.body, r#"{"n":1}"#);
    assert_eq!(g.props["MessageId"], "m-1");
    assert_eq!(g.props["CorrelationId"], "corr");
    assert_eq!(g.props["Label"], "L");
    assert_eq!(g.props["DeliveryCount"], 1);
    assert!(g.props["SequenceNumber"].as_i64().is_some());
    let locked_until =
        DateTime::parse_from_rfc2822(g.props["LockedUntilUtc"].as_str().expect("LockedUntilUtc"))
            .expect("date");
    assert!(locked_until.with_timezone(&Utc) > Utc::now());
    assert!(
        g.props["EnqueuedTimeUtc"]
            .as_str()
            .expect("EnqueuedTimeUtc")
            .ends_with("GMT")
    );
    assert_eq!(g.headers["content-type"], "application/json");
    assert_eq!(g.headers["type"], "\"io.galleon.image.ready.v1\"");
    assert_eq!(g.headers["attempt"], "3");
    assert_eq!(g.headers["urgent"], "true");
    assert_eq!(g.headers["region"], "\"westeurope\"");
    let (id, token) = lock_path(&g);
    let location = g.headers["location"].to_str().expect("location");
    assert_eq!(location, format!("{base}/orders/messages/{id}/{token}"));
    // renew, then complete through the Location URL
    let r = c
        .post(location)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("renew");
    assert_eq!(r.status(), 200);
    let r = c
        .delete(location)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("complete");
    assert_eq!(r.status(), 200);
    let r = c
        .delete(location)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("complete again");
    assert_eq!(r.status(), 404);
    assert_eq!(receive(&c, &base, "orders", 0).await.status, 204);
}

#[tokio::test]
async fn scheduled_message_arrives_no_earlier_than_scheduled() {
    let sb = start(queue("later", EntityConfig::default())).await;
    let c = client();
    let base = sb.url();
    // RFC 1123 has whole seconds: schedule 2 s after the next whole second
    let now = Utc::now();
    let at = DateTime::from_timestamp(now.timestamp() + 3, 0).expect("time");
    let at_text = at.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    let r = send(
        &c,
        &base,
        "later",
        "x",
        json!({"MessageId": "s-1", "ScheduledEnqueueTimeUtc": at_text}),
        &[],
    )
    .await;
    assert_eq!(r.status(), 201);
    send(&c, &base, "later", "y", json!({"MessageId": "now-1"}), &[]).await;
    // the unscheduled one comes first
    let g = receive(&c, &base, "later", 5).await;
    assert_eq!(g.props["MessageId"], "now-1");
    let (id, token) = lock_path(&g);
    c.delete(format!("{base}/later/messages/{id}/{token}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("complete");
    assert_eq!(
        receive(&c, &base, "later", 0).await.status,
        204,
        "not visible before its time"
    );
    let stats: Value = c
        .get(format!("{base}/_devcloud/entities"))
        .send()
        .await
        .expect("admin")
        .json()
        .await
        .expect("json");
    assert_eq!(stats["queues"][0]["scheduledMessageCount"], 1);
    // a long poll started now is answered once the message is due, not before
    let g = receive(&c, &base, "later", 20).await;
    let got_at = Utc::now();
    assert_eq!(g.status, 201);
    assert_eq!(g.props["MessageId"], "s-1");
    assert!(got_at >= at, "received at {got_at}, scheduled for {at}");
    assert_eq!(g.props["ScheduledEnqueueTimeUtc"], at_text);
}

#[tokio::test]
async fn abandon_n_times_then_dead_letter_with_reason_and_resubmit() {
    let n = 4;
    let sb = start(queue(
        "work",
        EntityConfig {
            max_delivery_count: n,
            ..Default::default()
        },
    ))
    .await;
    let c = client();
    let base = sb.url();
    send(
        &c,
        &base,
        "work",
        "payload",
        json!({"MessageId": "w-1"}),
        &[],
    )
    .await;
    for i in 1..=n {
        let g = receive(&c, &base, "work", 5).await;
        assert_eq!(g.status, 201, "delivery {i}");
        assert_eq!(g.props["DeliveryCount"], i);
        let (id, token) = lock_path(&g);
        let r = c
            .put(format!("{base}/work/messages/{id}/{token}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("abandon");
        assert_eq!(r.status(), 200);
    }
    assert_eq!(
        receive(&c, &base, "work", 0).await.status,
        204,
        "no delivery after the last abandon"
    );
    let dlq: Value = c
        .get(format!("{base}/_devcloud/deadletters?entity=work"))
        .send()
        .await
        .expect("admin")
        .json()
        .await
        .expect("json");
    assert_eq!(dlq.as_array().map(Vec::len), Some(1));
    let bp = &dlq[0]["brokerProperties"];
    assert_eq!(bp["DeadLetterReason"], "MaxDeliveryCountExceeded");
    assert_eq!(bp["DeliveryCount"], n);
    let seq = bp["SequenceNumber"].as_i64().expect("seq");
    // peek-lock from the dead-letter queue shows the reason too
    let g = receive(&c, &base, "work/%24DeadLetterQueue", 5).await;
    assert_eq!(g.status, 201);
    // (as application properties, which is where Service Bus keeps them)
    assert_eq!(
        g.headers["deadletterreason"],
        "\"MaxDeliveryCountExceeded\""
    );
    assert_eq!(
        g.headers["deadlettererrordescription"],
        format!("\"Message could not be consumed after {n} delivery attempts.\"").as_str()
    );
    assert!(g.props.get("DeadLetterReason").is_none());
    assert!(g.props.get("DeadLetterSource").is_none());
    let (id, token) = lock_path(&g);
    c.put(format!(
        "{base}/work/$DeadLetterQueue/messages/{id}/{token}"
    ))
    .bearer_auth(TOKEN)
    .send()
    .await
    .expect("unlock dead letter");
    // what `devcloud inspect` shows
    let snap = devcloud_messaging::inspect::servicebus_snapshot(&c, &base, 50)
        .await
        .expect("snapshot");
    let text = devcloud_messaging::inspect::render_servicebus(&snap);
    assert!(
        text.contains(&format!("work #{seq} w-1 MaxDeliveryCountExceeded")),
        "{text}"
    );
    // resubmit through the admin endpoint
    let r = c
        .post(format!(
            "{base}/_devcloud/deadletters/resubmit?entity=work&sequenceNumber={seq}"
        ))
        .send()
        .await
        .expect("resubmit");
    assert_eq!(r.status(), 200);
    let g = receive(&c, &base, "work", 5).await;
    assert_eq!(g.props["MessageId"], "w-1");
    assert_eq!(g.props["DeliveryCount"], 1);
    assert_eq!(g.body, "payload");
}

#[tokio::test]
async fn lock_expiry_redelivers() {
    let sb = start(queue(
        "short",
        EntityConfig {
            lock_duration: chrono::Duration::seconds(1),
            ..Default::default()
        },
    ))
    .await;
    let c = client();
    let base = sb.url();
    send(&c, &base, "short", "x", json!({"MessageId": "e-1"}), &[]).await;
    let g = receive(&c, &base, "short", 5).await;
    let (id, token) = lock_path(&g);
    let started = Instant::now();
    // the long poll is woken by the lock expiry
    let g2 = receive(&c, &base, "short", 10).await;
    assert_eq!(g2.status, 201);
    assert_eq!(g2.props["DeliveryCount"], 2);
    assert!(started.elapsed() >= Duration::from_millis(500));
    let r = c
        .delete(format!("{base}/short/messages/{id}/{token}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("late complete");
    assert_eq!(r.status(), 404, "the old lock is gone");
}

#[tokio::test]
async fn duplicate_message_ids_inside_the_window_are_dropped() {
    let sb = start(queue(
        "dedup",
        EntityConfig {
            duplicate_detection_window: Some(chrono::Duration::minutes(10)),
            ..Default::default()
        },
    ))
    .await;
    let c = client();
    let base = sb.url();
    for body in ["first", "second", "third"] {
        let r = send(&c, &base, "dedup", body, json!({"MessageId": "same"}), &[]).await;
        assert_eq!(
            r.status(),
            201,
            "duplicates are accepted and dropped silently"
        );
    }
    send(
        &c,
        &base,
        "dedup",
        "other",
        json!({"MessageId": "different"}),
        &[],
    )
    .await;
    let mut bodies = Vec::new();
    loop {
        let r = c
            .delete(format!("{base}/dedup/messages/head?timeout=0"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("receive and delete");
        if r.status() == 204 {
            break;
        }
        assert_eq!(r.status(), 200);
        bodies.push(r.text().await.expect("body"));
    }
    assert_eq!(bodies, ["first", "other"]);
}

#[tokio::test]
async fn topic_filters_route_each_type_only_to_its_subscribers() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../events/subscriptions.json"
    );
    let routing = Routing::load(path).expect("routing file");
    let config = routing
        .servicebus_config(&EntityConfig::default())
        .expect("config");
    let sbr = routing.service_bus.clone().expect("serviceBus section");
    let sb = start(config).await;
    let c = client();
    let base = sb.url();
    let mut all_types: Vec<String> = sbr
        .subscriptions
        .iter()
        .flat_map(|s| s.types.clone())
        .collect();
    all_types.sort();
    all_types.dedup();
    all_types.push("io.galleon.nobody.listens.v1".into());
    for (i, t) in all_types.iter().enumerate() {
        let r = send(
            &c,
            &base,
            &sbr.topic,
            &format!("{{\"type\":\"{t}\"}}"),
            json!({"MessageId": format!("t-{i}")}),
            &[(&sbr.type_property, &format!("\"{t}\""))],
        )
        .await;
        assert_eq!(r.status(), 201);
    }
    for sub in &sbr.subscriptions {
        let mut got = Vec::new();
        loop {
            let r = c
                .delete(format!(
                    "{base}/{}/subscriptions/{}/messages/head?timeout=0",
                    sbr.topic, sub.name
                ))
                .bearer_auth(TOKEN)
                .send()
                .await
                .expect("receive");
            if r.status() == 204 {
                break;
            }
            let t = r.headers()[sbr.type_property.as_str()]
                .to_str()
                .expect("type")
                .trim_matches('"')
                .to_string();
            got.push(t);
        }
        let mut want = sub.types.clone();
        want.sort();
        got.sort();
        assert_eq!(got, want, "subscription {}", sub.name);
    }
}

#[tokio::test]
async fn batch_send() {
    let sb = start(queue("batch", EntityConfig::default())).await;
    let c = client();
    let base = sb.url();
    let body = include_str!("fixtures/servicebus.send-batch-body.public-script.json");
    let r = c
        .post(format!("{base}/batch/messages"))
        .bearer_auth(TOKEN)
        .header("Content-Type", "application/vnd.microsoft.servicebus.json")
        .body(body)
        .send()
        .await
        .expect("batch");
    assert_eq!(r.status(), 201);
    let g = receive(&c, &base, "batch", 5).await;
    assert_eq!(g.body, "Morten 1");
    assert_eq!(g.props["Label"], "L1");
    assert_eq!(g.headers["thename"], "\"1\"");
    let bad = include_str!("fixtures/servicebus.send-batch-body.docs-verbatim.INVALID-JSON.txt");
    let r = c
        .post(format!("{base}/batch/messages"))
        .bearer_auth(TOKEN)
        .header("Content-Type", "application/vnd.microsoft.servicebus.json")
        .body(bad)
        .send()
        .await
        .expect("batch");
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn errors_as_the_service() {
    let sb = start(queue("q", EntityConfig::default())).await;
    let c = client();
    let base = sb.url();
    let r = c
        .post(format!("{base}/q/messages"))
        .body("x")
        .send()
        .await
        .expect("no auth");
    assert_eq!(r.status(), 401);
    let text = r.text().await.expect("body");
    assert!(
        text.starts_with("<Error><Code>401</Code><Detail>"),
        "{text}"
    );
    let r = c
        .post(format!("{base}/q/messages"))
        .bearer_auth("wrong")
        .body("x")
        .send()
        .await
        .expect("bad token");
    assert_eq!(r.status(), 401);
    let r = send(&c, &base, "nope", "x", json!({}), &[]).await;
    assert_eq!(
        r.status(),
        410,
        "the REST reference's code for a missing entity"
    );
    assert!(r.text().await.expect("body").contains("could not be found"));
    let r = c
        .post(format!("{base}/q/messages"))
        .bearer_auth(TOKEN)
        .header("BrokerProperties", "{not json")
        .body("x")
        .send()
        .await
        .expect("bad props");
    assert_eq!(r.status(), 400);
    // Send Message documents 403 for "quota exceeded or message too large".
    let big = "x".repeat(256 * 1024 + 1);
    let r = send(&c, &base, "q", &big, json!({}), &[]).await;
    assert_eq!(r.status(), 403);
    let note = format!("\"{}\"", "x".repeat(33 * 1024));
    let r = send(
        &c,
        &base,
        "q",
        "small",
        json!({}),
        &[("note", note.as_str())],
    )
    .await;
    assert_eq!(r.status(), 403, "a property over 32 KB");
    let r = c
        .post(format!("{base}/q/messages"))
        .bearer_auth(TOKEN)
        .body(vec![b'x'; 5 * 1024 * 1024])
        .send()
        .await;
    if let Ok(r) = r {
        assert_eq!(r.status(), 413);
    }
    let r = c
        .post(format!("{base}/q/messages/head?timeout=abc"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("bad timeout");
    assert_eq!(r.status(), 400);
    let r = c
        .delete(format!("{base}/q/messages/id/not-a-lock"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("bad lock");
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_the_devcloud_ca_and_identity() {
    let state = tempfile::tempdir().expect("tempdir");
    let tls = devcloud_core::Tls::load_or_create(state.path()).expect("tls");
    let identity = devcloud_core::Identity::from_key([5u8; 32]);
    let sb = servicebus::serve(
        queue("secure", EntityConfig::default()),
        devcloud_messaging::auth::identity_verifier(identity.clone()),
        Some(tls.server_config.clone()),
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("serve");
    assert!(sb.url().starts_with("https://"));
    let c = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&tls.ca_pem_bytes().expect("ca")).expect("pem"),
        )
        .build()
        .expect("client");
    let base = sb.url();
    let good = identity.issue("https://servicebus.azure.net/");
    let wrong_audience = identity.issue("https://eventgrid.azure.net");
    let r = c
        .post(format!("{base}/secure/messages"))
        .bearer_auth(&wrong_audience)
        .body("x")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    let r = c
        .post(format!("{base}/secure/messages"))
        .bearer_auth(&good)
        .body("x")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 201);
    let r = c
        .delete(format!("{base}/secure/messages/head?timeout=5"))
        .bearer_auth(&good)
        .send()
        .await
        .expect("receive");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.expect("body"), "x");
}

#[tokio::test]
async fn admin_creates_entities_with_sql_rules() {
    let sb = start(ServiceBusConfig::default()).await;
    let c = client();
    let base = sb.url();
    let r = c
        .put(format!("{base}/_devcloud/entities/facts?kind=topic"))
        .send()
        .await
        .expect("topic");
    assert_eq!(r.status(), 200);
    let r = c
        .put(format!("{base}/_devcloud/entities/facts/subscriptions/eu"))
        .json(&json!({"maxDeliveryCount": 2, "rules": [{"name": "eu", "sqlFilter": "region IN ('westeurope', 'northeurope') AND NOT EXISTS(test)"}]}))
        .send()
        .await
        .expect("sub");
    assert_eq!(r.status(), 200);
    let r = c
        .put(format!("{base}/_devcloud/entities/facts/subscriptions/bad"))
        .json(&json!({"rules": [{"name": "x", "sqlFilter": "region = "}]}))
        .send()
        .await
        .expect("bad rule");
    assert_eq!(r.status(), 400);
    for (i, region) in ["\"westeurope\"", "\"eastus\"", "\"northeurope\""]
        .iter()
        .enumerate()
    {
        let r = send(
            &c,
            &base,
            "facts",
            region,
            json!({"MessageId": format!("r{i}")}),
            &[("region", region)],
        )
        .await;
        assert_eq!(r.status(), 201);
    }
    send(
        &c,
        &base,
        "facts",
        "t",
        json!({"MessageId": "t"}),
        &[("region", "\"westeurope\""), ("test", "true")],
    )
    .await;
    let stats: Value = c
        .get(format!("{base}/_devcloud/entities"))
        .send()
        .await
        .expect("admin")
        .json()
        .await
        .expect("json");
    let sub = &stats["topics"][0]["subscriptions"][0];
    assert_eq!(sub["name"], "eu");
    assert_eq!(sub["activeMessageCount"], 2);
    assert_eq!(sub["rules"][0]["filter"]["type"], "SqlFilter");
    let recent: Value = c
        .get(format!("{base}/_devcloud/recent"))
        .send()
        .await
        .expect("admin")
        .json()
        .await
        .expect("json");
    assert!(
        recent
            .as_array()
            .expect("array")
            .iter()
            .any(|a| a["op"] == "routed" && a["detail"] == "no subscription matched")
    );
}

/// Sends the same MessageId three times to the routing file's topic and counts what one
/// subscription receives.
async fn copies_of_one_message_id(config: ServiceBusConfig, routing: &Routing) -> usize {
    let sbr = routing.service_bus.clone().expect("serviceBus section");
    let sub = &sbr.subscriptions[0];
    let ty = sub.types[0].clone();
    let sb = start(config).await;
    let c = client();
    let base = sb.url();
    for _ in 0..3 {
        let r = send(
            &c,
            &base,
            &sbr.topic,
            "{}",
            json!({"MessageId": "same-fact"}),
            &[(&sbr.type_property, &format!("\"{ty}\""))],
        )
        .await;
        assert_eq!(r.status(), 201);
    }
    let mut n = 0;
    loop {
        let r = c
            .delete(format!(
                "{base}/{}/subscriptions/{}/messages/head?timeout=0",
                sbr.topic, sub.name
            ))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("receive");
        if r.status() == 204 {
            return n;
        }
        n += 1;
    }
}

#[tokio::test]
async fn routing_file_declares_duplicate_detection_and_the_override_turns_it_off() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../events/subscriptions.json"
    );
    let routing = Routing::load(path).expect("routing file");
    let config = routing
        .servicebus_config(&EntityConfig::default())
        .expect("config");
    assert_eq!(
        copies_of_one_message_id(config.clone(), &routing).await,
        1,
        "the facts topic is declared with duplicate detection"
    );
    let off = ServiceBusConfig {
        duplicate_detection_off: true,
        ..config
    };
    assert_eq!(
        copies_of_one_message_id(off, &routing).await,
        3,
        "with the override every copy arrives, as without duplicate detection in Azure"
    );
}

#[tokio::test]
async fn admin_update_cannot_switch_duplicate_detection() {
    let sb = start(queue("plain", EntityConfig::default())).await;
    let c = client();
    let base = sb.url();
    let r = c
        .put(format!("{base}/_devcloud/entities/plain?kind=queue"))
        .json(&json!({"requiresDuplicateDetection": true, "duplicateDetectionHistoryTimeWindow": "PT10M"}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 400);
    let text = r.text().await.expect("body");
    assert!(text.contains("requiresDuplicateDetection"), "{text}");
    let r = c
        .put(format!("{base}/_devcloud/entities/fresh?kind=topic"))
        .json(&json!({"requiresDuplicateDetection": true, "duplicateDetectionHistoryTimeWindow": "PT10M"}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 200, "a new entity can be created with it");
}

#[tokio::test]
async fn an_outage_answers_503_to_every_call_until_it_ends_and_loses_nothing() {
    let sb = start(queue("q", EntityConfig::default())).await;
    let (c, base) = (client(), sb.url());
    let sent = send(&c, &base, "q", "before", json!({"MessageId": "m1"}), &[]).await;
    assert_eq!(sent.status(), 201);
    let outage = format!("{base}/_devcloud/outage");
    let began = c
        .post(&outage)
        .json(&json!({"seconds": 60}))
        .send()
        .await
        .expect("outage");
    assert_eq!(began.status(), 200);
    let refused = send(&c, &base, "q", "during", json!({"MessageId": "m2"}), &[]).await;
    assert_eq!(refused.status(), 503);
    let body = refused.text().await.expect("body");
    assert!(
        body.starts_with("<Error><Code>503</Code><Detail>") && body.contains("TrackingId:"),
        "the service's error shape: {body}"
    );
    assert_eq!(
        receive(&c, &base, "q", 1).await.status,
        503,
        "receiving too"
    );
    let status: Value = c
        .get(&outage)
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    assert_eq!(
        (status["active"].clone(), status["refused"].clone()),
        (json!(true), json!(2))
    );
    let ended = c
        .post(&outage)
        .json(&json!({"seconds": 0}))
        .send()
        .await
        .expect("end");
    assert_eq!(ended.status(), 200);
    let got = receive(&c, &base, "q", 1).await;
    assert_eq!(
        (got.status, got.body.as_str()),
        (201, "before"),
        "what was there before the outage is still there"
    );
    let bad = c
        .post(&outage)
        .json(&json!({"seconds": "long"}))
        .send()
        .await
        .expect("bad");
    assert_eq!(bad.status(), 400);
}
