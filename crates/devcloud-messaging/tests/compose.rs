//! `devcloud_messaging::start`: both services from the project's routing file, as `devcloud up` runs them.

use std::sync::Arc;
use std::time::Duration;

use devcloud_messaging::auth::StaticToken;
use devcloud_messaging::{MessagingOptions, Routing, start};
use serde_json::Value;

#[tokio::test]
async fn starts_both_services_from_the_routing_file() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../events/subscriptions.json"
    );
    let routing = Routing::load(path).expect("routing");
    let mut o = MessagingOptions::new(routing.clone(), Arc::new(StaticToken("tok".into())), "key");
    o.servicebus_addr = "127.0.0.1:0".parse().expect("addr");
    o.eventgrid_addr = "127.0.0.1:0".parse().expect("addr");
    o.functions_host = Some("http://127.0.0.1:7071".into());
    let (sb, eg) = start(o).await.expect("start");
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let sbr = routing.service_bus.expect("serviceBus");
    let sub = &sbr.subscriptions[0];
    let r = c
        .post(format!("{}/{}/messages", sb.url(), sbr.topic))
        .bearer_auth("tok")
        .header(sbr.type_property.as_str(), format!("\"{}\"", sub.types[0]))
        .body("{}")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 201);
    let r = c
        .delete(format!(
            "{}/{}/subscriptions/{}/messages/head?timeout=5",
            sb.url(),
            sbr.topic,
            sub.name
        ))
        .bearer_auth("tok")
        .send()
        .await
        .expect("receive");
    assert_eq!(r.status(), 200);
    let subs: Value = c
        .get(format!("{}/_devcloud/subscriptions", eg.url()))
        .send()
        .await
        .expect("admin")
        .json()
        .await
        .expect("json");
    let ingest = subs
        .as_array()
        .expect("array")
        .iter()
        .find(|s| s["name"] == "ingest-blob")
        .expect("ingest-blob subscription");
    assert_eq!(
        ingest["endpoint"],
        "http://127.0.0.1:7071/runtime/webhooks/eventgrid?functionName=IngestBlob"
    );
    assert_eq!(ingest["eventDeliverySchema"], "CloudEventSchemaV1_0");
    let topics: Value = c
        .get(format!("{}/_devcloud/topics", eg.url()))
        .send()
        .await
        .expect("admin")
        .json()
        .await
        .expect("json");
    assert_eq!(topics[0]["name"], "galleon-events");
    assert_eq!(topics[0]["inputSchema"], "CloudEventSchemaV1_0");
    assert_eq!(topics[0]["disableLocalAuth"], true);
    // galleon's topic refuses the key from the options (disableLocalAuth) and takes a token
    for (header, value, status) in [
        ("aeg-sas-key", "key", 401),
        ("authorization", "Bearer tok", 200),
    ] {
        let r = c
            .post(format!("{}/api/events", eg.url()))
            .header(header, value)
            .header("Content-Type", "application/cloudevents+json")
            .body(r#"{"specversion":"1.0","id":"1","source":"/s","type":"io.galleon.image.ready.v1"}"#)
            .send()
            .await
            .expect("publish");
        assert_eq!(r.status(), status, "{header}");
    }
}
