//! The host inside the real local cloud: devcloud-core's CA and managed-identity endpoint, and
//! devcloud-messaging's Service Bus over HTTPS with bearer tokens. A topic subscription feeds a
//! function; failures are redelivered then dead-lettered by the broker; a handler crash loses
//! nothing; output messages land on a queue.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::*;
use devcloud_host::{Host, HostConfig};
use devcloud_messaging::servicebus::{
    EntityConfig, ServiceBusConfig, SubscriptionSpec, TopicSpec, serve,
};
use serde_json::{Value, json};

fn entity(max_delivery_count: u32) -> EntityConfig {
    EntityConfig {
        max_delivery_count,
        lock_duration: chrono::Duration::seconds(5),
        ..EntityConfig::default()
    }
}

/// devcloud-core's CA and managed-identity endpoint plus devcloud-messaging's Service Bus
/// (HTTPS, verifying the identity's tokens), as `devcloud up` wires them.
struct LocalCloud {
    tls: devcloud_core::Tls,
    identity: devcloud_core::Identity,
    msi: devcloud_core::ServerHandle,
    sb: devcloud_messaging::servicebus::RunningServiceBus,
}

const MSI_SECRET: &str = "identity-secret";

impl LocalCloud {
    async fn start(dir: &std::path::Path, config: ServiceBusConfig) -> Self {
        devcloud_core::install_crypto_provider();
        let tls = devcloud_core::Tls::load_or_create(&dir.join("state")).unwrap();
        let identity = devcloud_core::Identity::from_key([7u8; 32]);
        let msi_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let msi = devcloud_core::serve_http(identity.msi_filter(MSI_SECRET.into()), msi_listener)
            .unwrap();
        let verifier_identity = identity.clone();
        let verifier: devcloud_messaging::auth::Verifier =
            Arc::new(move |token: &str, audience: &str| {
                verifier_identity
                    .verify(Some(&format!("Bearer {token}")), audience)
                    .map(|claims| Some(claims.oid))
                    .map_err(|e| e.to_string())
            });
        let addr = "127.0.0.1:0".parse().unwrap();
        let sb = serve(config, verifier, Some(tls.server_config.clone()), addr)
            .await
            .unwrap();
        Self {
            tls,
            identity,
            msi,
            sb,
        }
    }

    /// App settings for an identity-based connection named `conn`.
    fn settings(&self, conn: &str) -> Value {
        json!({
            format!("{conn}__fullyQualifiedNamespace"): self.sb.addr.to_string(),
            "IDENTITY_ENDPOINT": format!("http://{}/msi/token", self.msi.addr()),
            "IDENTITY_HEADER": MSI_SECRET,
        })
    }

    async fn start_host(&self, app: &std::path::Path) -> devcloud_host::RunningHost {
        Host::load(app, BTreeMap::new())
            .unwrap()
            .start(HostConfig {
                http_addr: "127.0.0.1:0".parse().unwrap(),
                ca_cert_pem: Some(self.tls.ca_pem.clone()),
                receive_timeout_secs: 1,
                ..HostConfig::default()
            })
            .await
            .unwrap()
    }

    /// A client that trusts the local CA, and a Service Bus token for it.
    fn client(&self) -> (reqwest::Client, String) {
        let ca = std::fs::read(&self.tls.ca_pem).unwrap();
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .build()
            .unwrap();
        (client, self.identity.issue("https://servicebus.azure.net"))
    }

    async fn counts(&self) -> Value {
        self.sb
            .broker
            .with(|ns| ns.overview(chrono::Utc::now()))
            .await
    }

    async fn shutdown(self) {
        self.sb.shutdown().await;
        self.msi.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_runs_against_the_local_service_bus_and_identity() {
    let d = tempfile::tempdir().unwrap();
    let config = ServiceBusConfig {
        queues: vec![("done".into(), entity(10))],
        topics: vec![TopicSpec {
            name: "facts".into(),
            config: entity(10),
            subscriptions: vec![SubscriptionSpec {
                name: "host".into(),
                config: entity(3),
                rules: vec![],
            }],
        }],
        ..Default::default()
    };
    let cloud = LocalCloud::start(d.path(), config).await;

    let rec = write_app(
        d.path(),
        json!({"extensions": {"serviceBus": {"maxConcurrentCalls": 4}}}),
        &[(
            "OnFact",
            json!({"bindings": [
                {"name": "fact", "type": "serviceBusTrigger", "direction": "in", "topicName": "facts", "subscriptionName": "host", "connection": "ServiceBusConnection"},
                {"name": "out", "type": "serviceBus", "direction": "out", "queueName": "done", "connection": "ServiceBusConnection"},
            ]}),
        )],
        cloud.settings("ServiceBusConnection"),
    );
    let running = cloud.start_host(d.path()).await;

    // Publish like any client: REST send with a bearer token and an application property.
    let (client, token) = cloud.client();
    let sb = &cloud.sb;
    let send = |body: Value, id: &str| {
        client
            .post(format!("{}/facts/messages", sb.url()))
            .bearer_auth(&token)
            .header("Content-Type", "application/json")
            .header(
                "BrokerProperties",
                json!({"MessageId": id, "Label": "fact"}).to_string(),
            )
            .header("Origin-Stage", "\"ingest\"")
            .body(body.to_string())
            .send()
    };
    // The crash first, alone: invocations in flight when a handler dies fail too (and are
    // redelivered), which would blur the delivery counts checked below.
    let r = send(json!({"kind": "crash", "crashOnce": "x"}), "m-crash")
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    wait_until(30, "the crashed message to be handled again", || {
        running
            .invocations()
            .iter()
            .any(|i| i.status == "Succeeded")
    })
    .await;
    for (body, id) in [
        (
            json!({"kind": "ok", "outputs": {"out": {"kind": "next"}}}),
            "m-ok",
        ),
        (json!({"kind": "bad", "fail": true}), "m-fail"),
    ] {
        let r = send(body, id).await.unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    }

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    loop {
        let o = cloud.counts().await;
        let sub = &o["topics"][0]["subscriptions"][0];
        let done = o["queues"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["name"] == "done")
            .unwrap();
        if sub["activeMessageCount"] == 0
            && sub["lockedMessageCount"] == 0
            && sub["deadLetterMessageCount"] == 1
            && done["activeMessageCount"] == 1
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "broker state: {o}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The failing message was delivered MaxDeliveryCount (3) times before the dead letter.
    assert_eq!(
        delivery_counts(&rec, "OnFact", "m-fail"),
        vec!["1", "2", "3"]
    );
    let all = records_for(&rec, "OnFact");
    // The crash was survived: two deliveries, two processes.
    let crash: Vec<&Value> = all
        .iter()
        .filter(|r| r["body"]["Metadata"]["MessageId"] == "\"m-crash\"")
        .collect();
    assert_eq!(crash.len(), 2);
    assert_ne!(crash[0]["pid"], crash[1]["pid"]);
    // Metadata from the real broker's BrokerProperties and property headers.
    let ok = all
        .iter()
        .find(|r| r["body"]["Metadata"]["MessageId"] == "\"m-ok\"")
        .unwrap();
    let md = &ok["body"]["Metadata"];
    assert_eq!(md["Label"], "\"fact\"");
    assert_eq!(md["Subject"], "\"fact\"");
    assert_eq!(md["DeliveryCount"], "1");
    assert_eq!(md["kind"], "\"ok\"");
    assert_eq!(md["ContentType"], "\"application/json\"");
    assert_eq!(md["ApplicationProperties"]["origin-stage"], "ingest");
    assert_eq!(md["Client"]["FullyQualifiedNamespace"], sb.addr.to_string());
    assert_eq!(md["ExpiresAtUtc"].as_str().unwrap().len(), 19);
    let decoded: String =
        serde_json::from_str(ok["body"]["Data"]["fact"].as_str().unwrap()).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&decoded).unwrap()["kind"],
        "ok"
    );

    let (pid, _) = running.handler_process().await;
    running.shutdown().await;
    assert!(!process_alive(pid));
    cloud.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_are_renewed_while_a_slow_invocation_runs() {
    let d = tempfile::tempdir().unwrap();
    // A one-second lock and a handler that takes three seconds.
    let lock = EntityConfig {
        lock_duration: chrono::Duration::seconds(1),
        ..entity(5)
    };
    let config = ServiceBusConfig {
        queues: vec![("slow".into(), lock)],
        ..Default::default()
    };
    let cloud = LocalCloud::start(d.path(), config).await;
    let rec = write_app(
        d.path(),
        json!({}),
        &[(
            "Slow",
            json!({"bindings": [{"name": "m", "type": "serviceBusTrigger", "queueName": "slow", "connection": "SB"}]}),
        )],
        cloud.settings("SB"),
    );
    let running = cloud.start_host(d.path()).await;
    let (client, token) = cloud.client();
    let r = client
        .post(format!("{}/slow/messages", cloud.sb.url()))
        .bearer_auth(token)
        .body(json!({"sleepMs": 3000}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let o = cloud.counts().await;
        let q = &o["queues"][0];
        if q["activeMessageCount"] == 0
            && q["lockedMessageCount"] == 0
            && !records_for(&rec, "Slow").is_empty()
        {
            assert_eq!(q["deadLetterMessageCount"], 0, "{o}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "broker state: {o}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Delivered once: the lock never lapsed, so the message was not handed out again.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(records_for(&rec, "Slow").len(), 1);
    assert!(
        running
            .logs()
            .iter()
            .all(|l| !l.message.contains("settling message")),
        "completion succeeded"
    );
    running.shutdown().await;
    cloud.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_grid_delivers_to_the_host_webhook_with_retries() {
    use devcloud_messaging::eventgrid::delivery::{
        DeliverySettings, Destination, Dispatcher, Subscription, SubscriptionConfig,
    };
    use devcloud_messaging::eventgrid::model::{Event, Schema};
    devcloud_core::install_crypto_provider();
    let d = tempfile::tempdir().unwrap();
    let rec = write_app(
        d.path(),
        json!({}),
        &[
            (
                "OnEvent",
                json!({"bindings": [{"name": "event", "type": "eventGridTrigger", "direction": "in"}]}),
            ),
            (
                "OnCloud",
                json!({"bindings": [{"name": "event", "type": "eventGridTrigger", "direction": "in"}]}),
            ),
        ],
        json!({}),
    );
    let running = Host::load(d.path(), BTreeMap::new())
        .unwrap()
        .start(HostConfig {
            http_addr: "127.0.0.1:0".parse().unwrap(),
            ..HostConfig::default()
        })
        .await
        .unwrap();
    let settings = DeliverySettings {
        time_factor: 0.001,
        functions_host: Some(format!("http://{}", running.http_addr)),
        ..DeliverySettings::default()
    };
    let dispatcher = Arc::new(Dispatcher::new(settings, reqwest::Client::new()));
    dispatcher.insert(Arc::new(Subscription::new(
        SubscriptionConfig::new(
            "to-host",
            "images",
            Destination::Function("OnEvent".into()),
            Schema::EventGrid,
        ),
        false,
    )));
    dispatcher.insert(Arc::new(Subscription::new(
        SubscriptionConfig::new(
            "to-host-ce",
            "images",
            Destination::Function("OnCloud".into()),
            Schema::CloudEvents,
        ),
        false,
    )));
    let ev = |id: &str, data: Value| Event {
        schema: Schema::EventGrid,
        value: json!({"id": id, "eventType": "Galleon.ImageReady", "subject": "images/1", "eventTime": "2024-01-01T00:00:00.0000000Z", "dataVersion": "1", "data": data, "topic": "/t", "metadataVersion": "1"}),
    };
    let routed = dispatcher.publish(
        "images",
        "/t",
        vec![
            ev("e1", json!({"failOnce": "e1"})),
            ev("e2", json!({"n": 2})),
        ],
    );
    assert_eq!(routed, 4);
    wait_until(30, "deliveries to both functions", || {
        let r = records(&rec);
        let seen = |f: &str, id: &str| {
            r.iter()
                .filter(|x| x["function"] == f && x["body"]["Data"]["event"]["id"] == id)
                .count()
        };
        // One of the two deliveries of e1 fails once (a shared marker) and is retried.
        seen("OnEvent", "e1") + seen("OnCloud", "e1") >= 3
            && seen("OnEvent", "e1") >= 1
            && seen("OnEvent", "e2") >= 1
            && seen("OnCloud", "e2") >= 1
            && seen("OnCloud", "e1") >= 1
    })
    .await;
    // The CloudEvents subscription delivered CloudEvents; Metadata.data carries the event data.
    let ce = records_for(&rec, "OnCloud")
        .into_iter()
        .find(|r| r["body"]["Data"]["event"]["id"] == "e2")
        .unwrap();
    assert_eq!(ce["body"]["Data"]["event"]["specversion"], "1.0");
    assert_eq!(ce["body"]["Metadata"]["data"], json!({"n": 2}));
    // The failed first attempt was retried (HTTP 500 from the webhook) and then succeeded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let eg = dispatcher
            .subscription("to-host")
            .unwrap()
            .state_json()
            .await;
        let ce = dispatcher
            .subscription("to-host-ce")
            .unwrap()
            .state_json()
            .await;
        let st = json!([eg, ce]);
        if eg["delivered"] == 2 && ce["delivered"] == 2 {
            for s in [&eg, &ce] {
                assert_eq!(s["deadLettered"], 0, "{st}");
                assert_eq!(
                    s["provisioningState"], "Succeeded",
                    "validated through the host's handshake"
                );
            }
            let failed =
                eg["failedAttempts"].as_u64().unwrap() + ce["failedAttempts"].as_u64().unwrap();
            assert!(failed >= 1, "{st}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{st}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    running.shutdown().await;
}

/// A function bound to a subscription's dead-letter queue (`subscriptionName: "<sub>/$DeadLetterQueue"`,
/// as Azure Functions allows) receives what the broker dead-lettered after maxDeliveryCount failed
/// deliveries, with Azure's reason and description among the application properties.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_queue_trigger_gets_the_dead_lettered_message_with_azures_reason() {
    let d = tempfile::tempdir().unwrap();
    let config = ServiceBusConfig {
        topics: vec![TopicSpec {
            name: "facts".into(),
            config: entity(10),
            subscriptions: vec![SubscriptionSpec {
                name: "work".into(),
                config: entity(2),
                rules: vec![],
            }],
        }],
        ..Default::default()
    };
    let cloud = LocalCloud::start(d.path(), config).await;
    let mut settings = cloud.settings("ServiceBusConnection");
    settings["TEST_FAIL_FUNCTIONS"] = json!("Work");
    let rec = write_app(
        d.path(),
        json!({}),
        &[
            (
                "Work",
                json!({"bindings": [{"name": "fact", "type": "serviceBusTrigger", "direction": "in", "topicName": "facts", "subscriptionName": "work", "connection": "ServiceBusConnection"}]}),
            ),
            (
                "WorkDeadLetters",
                json!({"bindings": [{"name": "dead", "type": "serviceBusTrigger", "direction": "in", "topicName": "facts", "subscriptionName": "work/$DeadLetterQueue", "connection": "ServiceBusConnection"}]}),
            ),
        ],
        settings,
    );
    let running = cloud.start_host(d.path()).await;
    let (client, token) = cloud.client();
    let r = client
        .post(format!("{}/facts/messages", cloud.sb.url()))
        .bearer_auth(&token)
        .header("Content-Type", "application/json")
        .header(
            "BrokerProperties",
            json!({"MessageId": "m-poison", "Label": "fact"}).to_string(),
        )
        .header("Origin-Stage", "\"ingest\"")
        .body(json!({"kind": "poison"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    wait_until(30, "the dead letter to reach its function", || {
        running
            .invocations()
            .iter()
            .any(|i| i.function == "WorkDeadLetters" && i.status == "Succeeded")
    })
    .await;
    assert_eq!(delivery_counts(&rec, "Work", "m-poison"), vec!["1", "2"]);
    let dead = records_for(&rec, "WorkDeadLetters");
    assert_eq!(dead.len(), 1, "one invocation for one dead letter");
    let md = &dead[0]["body"]["Metadata"];
    assert_eq!(md["MessageId"], "\"m-poison\"");
    assert_eq!(md["Label"], "\"fact\"");
    let props = &md["ApplicationProperties"];
    assert_eq!(props["DeadLetterReason"], "MaxDeliveryCountExceeded");
    assert_eq!(
        props["DeadLetterErrorDescription"],
        "Message could not be consumed after 2 delivery attempts."
    );
    assert_eq!(
        props["origin-stage"], "ingest",
        "the sender's properties stay"
    );
    assert_eq!(md["UserProperties"], *props);
    // Only set on messages auto-forwarded out of a dead-letter queue, so absent here, as in Azure.
    assert!(md.get("DeadLetterSource").is_none(), "{md}");
    let body: String =
        serde_json::from_str(dead[0]["body"]["Data"]["dead"].as_str().unwrap()).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["kind"],
        "poison"
    );
    // Completed from the dead-letter queue once the function succeeded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let o = cloud.counts().await;
        let sub = &o["topics"][0]["subscriptions"][0];
        if sub["deadLetterMessageCount"] == 0 && sub["activeMessageCount"] == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "broker state: {o}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    running.shutdown().await;
    cloud.shutdown().await;
}
