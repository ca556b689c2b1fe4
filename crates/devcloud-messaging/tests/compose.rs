//! `devcloud_messaging::start`: both services from the project's routing file, as `devcloud up` runs them.

use std::time::Duration;

use devcloud_messaging::auth::identity_verifier;
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
    let identity = devcloud_core::Identity::from_key([5u8; 32]);
    let mut o = MessagingOptions::new(routing.clone(), identity_verifier(identity.clone()), "key");
    // The routing file's role assignments name galleon's identity.
    o.principals
        .insert("galleon".into(), identity.object_id.clone());
    let galleon_bus = identity.issue("https://servicebus.azure.net");
    let galleon_grid = identity.issue("https://eventgrid.azure.net");
    // A valid token of a principal no role assignment names.
    let stranger = |audience: &str| {
        identity.issue_for(
            &devcloud_core::Principal {
                tenant_id: &identity.tenant_id,
                object_id: "2e9a4c1b-7d3f-4a5e-8b6c-0f1e2d3c4b5a",
                client_id: "2e9a4c1b-7d3f-4a5e-8b6c-0f1e2d3c4b5a",
            },
            audience,
            3600,
        )
    };
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
    let send = |token: String| {
        c.post(format!("{}/{}/messages", sb.url(), sbr.topic))
            .bearer_auth(token)
            .header(sbr.type_property.as_str(), format!("\"{}\"", sub.types[0]))
            .body("{}")
            .send()
    };
    let receive = |token: String| {
        c.delete(format!(
            "{}/{}/subscriptions/{}/messages/head?timeout=5",
            sb.url(),
            sbr.topic,
            sub.name
        ))
        .bearer_auth(token)
        .send()
    };
    // A principal without a data role may neither send nor receive, though its token is valid.
    let r = send(stranger("https://servicebus.azure.net"))
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    let body = r.text().await.unwrap_or_default();
    assert!(body.contains("'Send' claim(s) are required"), "{body}");
    assert!(body.contains("Azure Service Bus Data Sender"), "{body}");
    let r = send(galleon_bus.clone()).await.expect("send");
    assert_eq!(r.status(), 201);
    let r = receive(stranger("https://servicebus.azure.net"))
        .await
        .expect("receive");
    assert_eq!(r.status(), 401);
    let body = r.text().await.unwrap_or_default();
    assert!(body.contains("'Listen' claim(s) are required"), "{body}");
    let r = receive(galleon_bus).await.expect("receive");
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
    // galleon's topic refuses the key from the options (disableLocalAuth) and a token without the
    // EventGrid Data Sender role, and takes galleon's token
    for (header, value, status) in [
        ("aeg-sas-key", "key".to_owned(), 401),
        (
            "authorization",
            format!("Bearer {}", stranger("https://eventgrid.azure.net")),
            401,
        ),
        ("authorization", format!("Bearer {galleon_grid}"), 200),
    ] {
        let r = c
            .post(format!("{}/api/events", eg.url()))
            .header(header, value.as_str())
            .header("Content-Type", "application/cloudevents+json")
            .body(r#"{"specversion":"1.0","id":"1","source":"/s","type":"io.galleon.image.ready.v1"}"#)
            .send()
            .await
            .expect("publish");
        assert_eq!(
            r.status(),
            status,
            "{header}: {}",
            r.text().await.unwrap_or_default()
        );
    }
}
