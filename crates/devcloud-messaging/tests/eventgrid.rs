//! Event Grid over real sockets: publish auth and errors, webhook handshakes before delivery
//! (Event Grid schema, manual validationUrl, CloudEvents OPTIONS), delivery to a Functions-host
//! webhook from the routing file, retries and dead-lettering.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use devcloud_messaging::auth::StaticToken;
use devcloud_messaging::eventgrid::{
    self, DeliverySettings, Destination, EventFilter, EventGridConfig, RunningEventGrid, Schema,
    SubscriptionConfig, TopicConfig,
};
use devcloud_messaging::httpserv::{self, Req, Resp};
use http::StatusCode;
use serde_json::{Value, json};

const KEY: &str = "topic-key-123";
const TOKEN: &str = "eg-token";

/// A recorded request.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    uri: String,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

impl Seen {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("json body")
    }
    fn header(&self, k: &str) -> &str {
        self.headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// A webhook receiver over a real socket.
struct Receiver {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    _server: httpserv::Server,
}

impl Receiver {
    async fn start(behaviour: impl Fn(&Req) -> Resp + Send + Sync + 'static) -> Receiver {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let behaviour = Arc::new(behaviour);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let server = httpserv::serve(listener, None, 4 << 20, move |req| {
            let seen = s2.clone();
            let behaviour = behaviour.clone();
            async move {
                let Ok(req) = req else {
                    return httpserv::empty(StatusCode::BAD_REQUEST);
                };
                seen.lock().expect("lock").push(Seen {
                    method: req.method().to_string(),
                    uri: req.uri().to_string(),
                    headers: req.headers().clone(),
                    body: req.body().to_vec(),
                });
                behaviour(&req)
            }
        })
        .expect("serve");
        Receiver {
            url: format!("http://{}", server.addr),
            seen,
            _server: server,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    fn notifications(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == "POST" && s.header("aeg-event-type") == "Notification")
            .collect()
    }

    async fn wait_for(&self, what: &str, n: usize, f: impl Fn(&Seen) -> bool) -> Vec<Seen> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let got: Vec<Seen> = self.seen().into_iter().filter(|s| f(s)).collect();
            if got.len() >= n {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}: {:?}",
                self.seen()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Answers both handshakes properly and accepts notifications.
fn good_webhook(req: &Req) -> Resp {
    if req.method() == http::Method::OPTIONS {
        let origin = req
            .headers()
            .get("WebHook-Request-Origin")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let mut r = httpserv::empty(StatusCode::OK);
        if let Ok(v) = http::HeaderValue::from_str(&origin) {
            r.headers_mut().insert("WebHook-Allowed-Origin", v);
        }
        return r;
    }
    if req
        .headers()
        .get("aeg-event-type")
        .and_then(|v| v.to_str().ok())
        == Some("SubscriptionValidation")
    {
        let body: Value = serde_json::from_slice(req.body()).unwrap_or(Value::Null);
        let code = body[0]["data"]["validationCode"].clone();
        return httpserv::json(StatusCode::OK, &json!({ "validationResponse": code }));
    }
    httpserv::empty(StatusCode::OK)
}

/// Passes the handshake, then answers every delivery with `status`.
async fn failing_webhook(status: StatusCode) -> Receiver {
    Receiver::start(move |req| {
        if req.method() == http::Method::OPTIONS {
            good_webhook(req)
        } else {
            httpserv::empty(status)
        }
    })
    .await
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

fn settings(functions_host: Option<String>) -> DeliverySettings {
    DeliverySettings {
        time_factor: 0.001,
        timeout: Duration::from_secs(2),
        functions_host,
        validate_functions: true,
    }
}

async fn start(
    topics: Vec<TopicConfig>,
    subs: Vec<SubscriptionConfig>,
    functions_host: Option<String>,
) -> RunningEventGrid {
    let config = EventGridConfig {
        topics,
        subscriptions: subs,
        delivery: settings(functions_host),
        subscription_id: "sub-id".into(),
        resource_group: "rg".into(),
        ..Default::default()
    };
    eventgrid::serve(
        config,
        Arc::new(StaticToken(TOKEN.into())),
        None,
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("event grid starts")
}

fn topic(name: &str, schema: Schema) -> TopicConfig {
    TopicConfig {
        name: name.into(),
        input_schema: schema,
        key: KEY.into(),
        disable_local_auth: false,
        access: None,
    }
}

/// Sends a publish request with its content type and body.
async fn with_body(rb: reqwest::RequestBuilder, ct: &str, body: &str) -> reqwest::Response {
    rb.header("Content-Type", ct)
        .body(body.to_owned())
        .send()
        .await
        .expect("publish answers")
}

fn cloud_event(id: &str, ty: &str) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "/galleon/test", "type": ty, "subject": "images/x",
           "time": "2026-11-21T11:00:00Z", "datacontenttype": "application/json", "data": {"n": 1, "s": "ü"},
           "galleonext": "kept"})
}

async fn publish(
    c: &reqwest::Client,
    eg: &RunningEventGrid,
    topic: &str,
    events: &Value,
) -> reqwest::Response {
    c.post(format!(
        "{}?api-version=2018-01-01",
        eg.topic_endpoint(topic)
    ))
    .header("aeg-sas-key", KEY)
    .header(
        "Content-Type",
        "application/cloudevents-batch+json; charset=utf-8",
    )
    .body(events.to_string())
    .send()
    .await
    .expect("publish")
}

async fn subscribe(c: &reqwest::Client, eg: &RunningEventGrid, body: Value) -> reqwest::Response {
    c.post(format!("{}/_devcloud/subscriptions", eg.url()))
        .json(&body)
        .send()
        .await
        .expect("subscribe")
}

#[tokio::test]
async fn publish_auth_and_errors_as_the_service() {
    let eg = start(
        vec![
            topic("galleon-events", Schema::CloudEvents),
            topic("grid", Schema::EventGrid),
            TopicConfig {
                disable_local_auth: true,
                ..topic("entra-only", Schema::CloudEvents)
            },
        ],
        vec![],
        None,
    )
    .await;
    let c = client();
    let url = eg.topic_endpoint("galleon-events");
    let batch = json!([cloud_event("1", "t")]).to_string();
    let ct = "application/cloudevents-batch+json; charset=utf-8";
    let r = c
        .post(&url)
        .header("Content-Type", ct)
        .body(batch.clone())
        .send()
        .await
        .expect("no auth");
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.expect("error json");
    assert_eq!(v["error"]["code"], "Unauthorized");
    assert!(v["error"]["details"][0]["message"].is_string());
    let r = c
        .post(&url)
        .header("aeg-sas-key", "wrong")
        .header("Content-Type", ct)
        .body(batch.clone())
        .send()
        .await
        .expect("bad key");
    assert_eq!(r.status(), 401);
    let r = c
        .post(&url)
        .bearer_auth("wrong")
        .header("Content-Type", ct)
        .body(batch.clone())
        .send()
        .await
        .expect("bad token");
    assert_eq!(r.status(), 401);
    let r = c
        .post(&url)
        .bearer_auth(TOKEN)
        .header("Content-Type", ct)
        .body(batch.clone())
        .send()
        .await
        .expect("token");
    assert_eq!(r.status(), 200);
    let r = c
        .post(format!("{url}?aeg-sas-key={KEY}"))
        .header("Content-Type", ct)
        .body(batch.clone())
        .send()
        .await
        .expect("key in query");
    assert_eq!(r.status(), 200);
    // A topic with disableLocalAuth (as galleon's infra makes its topic) takes only Entra ID tokens.
    let entra_only = eg.topic_endpoint("entra-only");
    for (how, rb) in [
        ("key", c.post(&entra_only).header("aeg-sas-key", KEY)),
        (
            "key in query",
            c.post(format!("{entra_only}?aeg-sas-key={KEY}")),
        ),
    ] {
        let r = with_body(rb, ct, &batch).await;
        assert_eq!(r.status(), 401, "{how}");
        let v: Value = r.json().await.expect("error json");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("disableLocalAuth")),
            "{how}: {v}"
        );
    }
    let r = with_body(c.post(&entra_only).bearer_auth(TOKEN), ct, &batch).await;
    assert_eq!(r.status(), 200, "a token publishes");
    // bad bodies
    for bad in ["{", "[]", r#"[{"specversion":"1.0","id":"1","type":"t"}]"#] {
        let r = c
            .post(&url)
            .header("aeg-sas-key", KEY)
            .header("Content-Type", ct)
            .body(bad)
            .send()
            .await
            .expect("bad");
        assert_eq!(r.status(), 400, "{bad}");
        let v: Value = r.json().await.expect("error json");
        assert_eq!(v["error"]["code"], "BadRequest");
        assert_eq!(v["error"]["details"][0]["code"], "InputJsonInvalid");
    }
    // a CloudEvents topic takes only the CloudEvents content types: plain JSON, or none, is 415
    for ct in [Some("application/json"), None] {
        let mut rb = c.post(&url).header("aeg-sas-key", KEY).body(batch.clone());
        if let Some(ct) = ct {
            rb = rb.header("Content-Type", ct);
        }
        let r = rb.send().await.expect("plain json");
        assert_eq!(r.status(), 415, "{ct:?}");
        let v: Value = r.json().await.expect("error json");
        assert_eq!(v["error"]["code"], "UnsupportedMediaType");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("application/cloudevents-batch+json")),
            "{v}"
        );
    }
    // the Event Grid schema topic takes the documented sample
    let sample = include_str!("fixtures/eventgrid.custom-topic-publish.eventgrid-schema.docs.json");
    let r = c
        .post(eg.topic_endpoint("grid"))
        .header("aeg-sas-key", KEY)
        .header("Content-Type", "application/json")
        .body(sample)
        .send()
        .await
        .expect("grid");
    assert_eq!(r.status(), 200);
    // over 1 MB
    let big = json!([{"specversion": "1.0", "id": "big", "source": "/s", "type": "t", "data": "x".repeat(1024 * 1024)}]);
    let r = c
        .post(&url)
        .header("aeg-sas-key", KEY)
        .header("Content-Type", ct)
        .body(big.to_string())
        .send()
        .await;
    if let Ok(r) = r {
        assert_eq!(r.status(), 413);
    }
    // unknown topic, wrong path
    let r = c
        .post(eg.topic_endpoint("nope"))
        .header("aeg-sas-key", KEY)
        .header("Content-Type", ct)
        .body(batch.clone())
        .send()
        .await
        .expect("404");
    assert_eq!(r.status(), 404);
    // with two topics, /api/events needs the Host to name one
    let r = c
        .post(format!("{}/api/events", eg.url()))
        .header("aeg-sas-key", KEY)
        .header("Content-Type", ct)
        .body(batch.clone())
        .send()
        .await
        .expect("no topic");
    assert_eq!(r.status(), 404);
    let r = c
        .post(format!("{}/api/events", eg.url()))
        .header(
            "Host",
            format!("galleon-events.localhost:{}", eg.addr.port()),
        )
        .header("aeg-sas-key", KEY)
        .header("Content-Type", ct)
        .body(batch)
        .send()
        .await
        .expect("host topic");
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn cloudevents_webhook_must_pass_the_options_handshake_before_receiving_events() {
    let eg = start(
        vec![topic("galleon-events", Schema::CloudEvents)],
        vec![],
        None,
    )
    .await;
    let c = client();
    // a receiver that does not allow Event Grid: the subscription is refused, nothing is delivered
    // answers OPTIONS with 200 but without WebHook-Allowed-Origin
    let refusing = Receiver::start(|_| httpserv::empty(StatusCode::OK)).await;
    let r = subscribe(
        &c,
        &eg,
        json!({"name": "refused", "topic": "galleon-events", "endpoint": format!("{}/hook", refusing.url),
               "eventDeliverySchema": "CloudEventSchemaV1_0"}),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(
        r.text()
            .await
            .expect("text")
            .contains("WebHook-Allowed-Origin")
    );
    // a good receiver: OPTIONS first, then the events, unchanged
    let good = Receiver::start(good_webhook).await;
    let r = subscribe(
        &c,
        &eg,
        json!({"name": "good", "topic": "galleon-events", "endpoint": format!("{}/hook", good.url),
               "eventDeliverySchema": "CloudEventSchemaV1_0", "includedEventTypes": ["io.galleon.image.ready.v1"]}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let first = &good.seen()[0];
    assert_eq!(first.method, "OPTIONS");
    assert_eq!(
        first.header("webhook-request-origin"),
        "eventgrid.azure.net"
    );
    let sent = json!([
        cloud_event("e1", "io.galleon.image.ready.v1"),
        cloud_event("e2", "io.galleon.other.v1")
    ]);
    assert_eq!(
        publish(&c, &eg, "galleon-events", &sent).await.status(),
        200
    );
    let got = good
        .wait_for("notification", 1, |s| s.method == "POST")
        .await;
    assert_eq!(got[0].header("aeg-event-type"), "Notification");
    assert!(
        got[0]
            .header("content-type")
            .starts_with("application/cloudevents+json")
    );
    assert_eq!(got[0].json(), sent[0], "delivered unchanged");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        good.notifications().len(),
        1,
        "the filtered-out type is not delivered"
    );
    assert!(refusing.notifications().is_empty());
    let subs: Value = c
        .get(format!("{}/_devcloud/subscriptions", eg.url()))
        .send()
        .await
        .expect("admin")
        .json()
        .await
        .expect("json");
    let names: Vec<&str> = subs
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["good"]);
}

#[tokio::test]
async fn eventgrid_schema_webhook_validation_echo_and_manual_url() {
    let eg = start(
        vec![topic("galleon-events", Schema::CloudEvents)],
        vec![],
        None,
    )
    .await;
    let c = client();
    // answers 200 without echoing the code: refused
    let silent = Receiver::start(|_| httpserv::empty(StatusCode::OK)).await;
    let r = subscribe(
        &c,
        &eg,
        json!({"name": "silent", "topic": "galleon-events", "endpoint": silent.url}),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(silent.notifications().is_empty());
    // echoes the code
    let good = Receiver::start(good_webhook).await;
    let r = subscribe(
        &c,
        &eg,
        json!({"name": "echo", "topic": "galleon-events", "endpoint": good.url}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let v = good.seen()[0].clone();
    assert_eq!(v.header("aeg-event-type"), "SubscriptionValidation");
    assert_eq!(
        v.json()[0]["eventType"],
        "Microsoft.EventGrid.SubscriptionValidationEvent"
    );
    // manual validation: the receiver GETs validationUrl (from another task) instead of echoing
    let manual_client = client();
    let manual = Receiver::start(move |req| {
        let body: Value = serde_json::from_slice(req.body()).unwrap_or(Value::Null);
        if let Some(url) = body[0]["data"]["validationUrl"].as_str() {
            let url = url.to_string();
            let c = manual_client.clone();
            tokio::spawn(async move {
                let _ = c.get(url).send().await;
            });
        }
        httpserv::empty(StatusCode::OK)
    })
    .await;
    let r = subscribe(
        &c,
        &eg,
        json!({"name": "manual", "topic": "galleon-events", "endpoint": manual.url}),
    )
    .await;
    assert_eq!(r.status(), 201);
    // events arrive converted to the Event Grid schema, in an array
    let sent = json!([cloud_event("e1", "io.galleon.image.ready.v1")]);
    assert_eq!(
        publish(&c, &eg, "galleon-events", &sent).await.status(),
        200
    );
    let got = good
        .wait_for("notification", 1, |s| {
            s.header("aeg-event-type") == "Notification"
        })
        .await;
    let arr = got[0].json();
    assert_eq!(arr[0]["id"], "e1");
    assert_eq!(arr[0]["eventType"], "io.galleon.image.ready.v1");
    assert_eq!(arr[0]["data"], sent[0]["data"]);
    assert_eq!(got[0].header("aeg-subscription-name"), "ECHO");
    manual
        .wait_for("notification", 1, |s| {
            s.header("aeg-event-type") == "Notification"
        })
        .await;
}

#[tokio::test]
async fn routing_file_subscription_delivers_to_the_functions_host_after_the_handshake() {
    let host = Receiver::start(good_webhook).await;
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../events/subscriptions.json"
    );
    let routing = devcloud_messaging::Routing::load(path).expect("routing");
    let mut config = EventGridConfig::from_routing(&routing, KEY).expect("config");
    // the routing file's function subscription on the custom topic, plus the storage one
    let mut sc = SubscriptionConfig::new(
        "announce-eg",
        "galleon-events",
        Destination::Function("Announce".into()),
        Schema::CloudEvents,
    );
    sc.filter = EventFilter::default();
    config.subscriptions.push(sc);
    config.delivery = settings(Some(host.url.clone()));
    let eg = eventgrid::serve(
        config,
        Arc::new(StaticToken(TOKEN.into())),
        None,
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("serve");
    let c = client();
    let sent = json!([cloud_event("f1", "io.galleon.image.ready.v1")]);
    // galleon's topic takes only tokens (disableLocalAuth in the routing file)
    let r = c
        .post(eg.topic_endpoint("galleon-events"))
        .bearer_auth(TOKEN)
        .header(
            "Content-Type",
            "application/cloudevents-batch+json; charset=utf-8",
        )
        .body(sent.to_string())
        .send()
        .await
        .expect("publish");
    assert_eq!(r.status(), 200);
    let got = host
        .wait_for("function delivery", 1, |s| s.method == "POST")
        .await;
    assert_eq!(
        got[0].uri,
        "/runtime/webhooks/eventgrid?functionName=Announce"
    );
    assert_eq!(got[0].header("aeg-event-type"), "Notification");
    assert_eq!(got[0].json(), sent[0]);
    assert_eq!(host.seen()[0].method, "OPTIONS", "handshake first");
}

#[tokio::test]
async fn retries_with_backoff_then_dead_letter() {
    let eg = start(
        vec![topic("galleon-events", Schema::CloudEvents)],
        vec![],
        None,
    )
    .await;
    let c = client();
    let failing = failing_webhook(StatusCode::INTERNAL_SERVER_ERROR).await;
    let rejecting = failing_webhook(StatusCode::BAD_REQUEST).await;
    // A webhook's 401 and 403 are configuration errors too: never retried (Azure's delivery-and-retry).
    let unauthorized = failing_webhook(StatusCode::UNAUTHORIZED).await;
    let forbidden = failing_webhook(StatusCode::FORBIDDEN).await;
    for (name, r, max) in [
        ("flaky", &failing, 3),
        ("rejecting", &rejecting, 5),
        ("unauthorized", &unauthorized, 5),
        ("forbidden", &forbidden, 5),
    ] {
        let body = json!({"name": name, "topic": "galleon-events", "endpoint": r.url,
                          "eventDeliverySchema": "CloudEventSchemaV1_0", "maxDeliveryAttempts": max});
        assert_eq!(subscribe(&c, &eg, body).await.status(), 201);
    }
    let sent = json!([cloud_event("d1", "io.galleon.step.failed.v1")]);
    assert_eq!(
        publish(&c, &eg, "galleon-events", &sent).await.status(),
        200
    );
    let attempts = failing
        .wait_for("3 attempts", 3, |s| s.method == "POST")
        .await;
    let counts: Vec<&str> = attempts
        .iter()
        .map(|s| s.header("aeg-delivery-count"))
        .collect();
    assert_eq!(counts, ["0", "1", "2"]);
    // dead letters appear in the admin endpoint
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let dl = loop {
        let dl: Value = c
            .get(format!("{}/_devcloud/deadletters", eg.url()))
            .send()
            .await
            .expect("admin")
            .json()
            .await
            .expect("json");
        if dl.as_array().map(Vec::len) == Some(4) {
            break dl;
        }
        assert!(tokio::time::Instant::now() < deadline, "dead letters: {dl}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let by_sub = |name: &str| {
        dl.as_array()
            .expect("array")
            .iter()
            .find(|d| d["subscription"] == name)
            .map(|d| d["event"].clone())
            .expect("dead letter")
    };
    let flaky = by_sub("flaky");
    assert_eq!(flaky["deadletterreason"], "MaxDeliveryAttemptsExceeded");
    assert_eq!(flaky["deliveryattempts"], 3);
    assert_eq!(flaky["lastdeliveryoutcome"], "GenericError");
    assert_eq!(flaky["id"], "d1");
    let rejected = by_sub("rejecting");
    assert_eq!(rejected["deliveryattempts"], 1, "400 dead-letters at once");
    assert_eq!(rejected["lastdeliveryoutcome"], "BadRequest");
    assert_eq!(rejecting.notifications().len(), 1);
    for (name, hook, outcome) in [
        ("unauthorized", &unauthorized, "Unauthorized"),
        ("forbidden", &forbidden, "Forbidden"),
    ] {
        let dead = by_sub(name);
        assert_eq!(dead["deliveryattempts"], 1, "{name}: dead-lettered at once");
        assert_eq!(dead["lastdeliveryoutcome"], outcome);
        assert_eq!(hook.notifications().len(), 1, "{name}: one POST");
    }
    let snap = devcloud_messaging::inspect::eventgrid_snapshot(&c, &eg.url(), 50)
        .await
        .expect("snapshot");
    let text = devcloud_messaging::inspect::render_eventgrid(&snap);
    assert!(
        text.contains("dead letter flaky d1 MaxDeliveryAttemptsExceeded"),
        "{text}"
    );
    let deliveries: Value = c
        .get(format!("{}/_devcloud/deliveries", eg.url()))
        .send()
        .await
        .expect("admin")
        .json()
        .await
        .expect("json");
    assert!(deliveries.as_array().expect("array").len() >= 4);
}

#[tokio::test]
async fn dead_letters_can_be_resubmitted() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let eg = start(
        vec![topic("galleon-events", Schema::CloudEvents)],
        vec![],
        None,
    )
    .await;
    let c = client();
    let healthy = Arc::new(AtomicBool::new(false));
    let h = healthy.clone();
    let hook = Receiver::start(move |req| {
        if req.method() == http::Method::OPTIONS {
            good_webhook(req)
        } else if h.load(Ordering::SeqCst) {
            httpserv::empty(StatusCode::OK)
        } else {
            httpserv::empty(StatusCode::SERVICE_UNAVAILABLE)
        }
    })
    .await;
    let body = json!({"name": "once", "topic": "galleon-events", "endpoint": hook.url,
                      "eventDeliverySchema": "CloudEventSchemaV1_0", "maxDeliveryAttempts": 1});
    assert_eq!(subscribe(&c, &eg, body).await.status(), 201);
    let sent = json!([cloud_event("r1", "io.galleon.image.ready.v1")]);
    assert_eq!(
        publish(&c, &eg, "galleon-events", &sent).await.status(),
        200
    );
    let dl_url = format!("{}/_devcloud/deadletters?subscription=once", eg.url());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let dl: Value = c
            .get(&dl_url)
            .send()
            .await
            .expect("admin")
            .json()
            .await
            .expect("json");
        if dl.as_array().map(Vec::len) == Some(1) {
            assert_eq!(dl[0]["event"]["lastdeliveryoutcome"], "Busy");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no dead letter: {dl}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    healthy.store(true, Ordering::SeqCst);
    let r = c
        .post(format!(
            "{}/_devcloud/deadletters/resubmit?subscription=once&id=r1",
            eg.url()
        ))
        .send()
        .await
        .expect("resubmit");
    assert_eq!(r.status(), 200);
    let got = hook
        .wait_for("second delivery", 2, |s| s.method == "POST")
        .await;
    assert_eq!(
        got[1].json(),
        sent[0],
        "resubmitted without the dead-letter fields"
    );
    let dl: Value = c
        .get(&dl_url)
        .send()
        .await
        .expect("admin")
        .json()
        .await
        .expect("json");
    assert_eq!(dl.as_array().map(Vec::len), Some(0));
    let r = c
        .post(format!(
            "{}/_devcloud/deadletters/resubmit?subscription=once&id=r1",
            eg.url()
        ))
        .send()
        .await
        .expect("resubmit again");
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn shutdown_ends_pending_retries() {
    let eg = start(
        vec![topic("galleon-events", Schema::CloudEvents)],
        vec![],
        None,
    )
    .await;
    let c = client();
    let failing = failing_webhook(StatusCode::INTERNAL_SERVER_ERROR).await;
    let body = json!({"name": "slow-retry", "topic": "galleon-events", "endpoint": failing.url,
                      "eventDeliverySchema": "CloudEventSchemaV1_0"});
    assert_eq!(subscribe(&c, &eg, body).await.status(), 201);
    let dispatcher = eg.dispatcher.clone();
    let sent = json!([cloud_event("s1", "t")]);
    assert_eq!(
        publish(&c, &eg, "galleon-events", &sent).await.status(),
        200
    );
    failing
        .wait_for("first attempt", 1, |s| s.method == "POST")
        .await;
    eg.shutdown().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let subs = dispatcher.subscriptions();
        let state = subs[0].state_json().await;
        if state["inFlight"] == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "retries still pending: {state}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A BlobCreated event as the storage system topic publishes it.
fn blob_event(
    ty: &str,
    container: &str,
    blob: &str,
) -> devcloud_messaging::eventgrid::model::Event {
    devcloud_messaging::eventgrid::model::Event {
        schema: Schema::EventGrid,
        value: json!({"topic": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a",
            "subject": format!("/blobServices/default/containers/{container}/blobs/{blob}"),
            "eventType": ty, "eventTime": "2026-11-21T11:00:00.0000000Z", "id": uuid::Uuid::new_v4().to_string(),
            "data": {"api": "PutBlob", "blobType": "BlockBlob", "url": format!("https://a/{container}/{blob}")},
            "dataVersion": "", "metadataVersion": "1"}),
    }
}

#[tokio::test]
async fn routing_file_ingest_subscription_gets_only_blobcreated_of_vhds_and_manifests_in_its_container()
 {
    let host = Receiver::start(good_webhook).await;
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../events/subscriptions.json"
    );
    let routing = devcloud_messaging::Routing::load(path).expect("routing");
    let mut config = EventGridConfig::from_routing(&routing, KEY).expect("config");
    let ingest = config
        .subscriptions
        .iter()
        .find(|s| s.name == "ingest-blob")
        .expect("ingest-blob subscription");
    assert_eq!(
        ingest.dead_letter_container.as_deref(),
        Some("galleon-deadletters")
    );
    assert_eq!(ingest.max_delivery_attempts, 30);
    config.delivery = settings(Some(host.url.clone()));
    let eg = eventgrid::serve(
        config,
        Arc::new(StaticToken(TOKEN.into())),
        None,
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("serve");
    let created = "Microsoft.Storage.BlobCreated";
    let events = vec![
        blob_event(created, "images", "ubuntu/u.vhd"),
        blob_event(created, "images", "ubuntu/u.manifest.json"),
        blob_event(created, "Images", "ubuntu/U.VHD"),
        blob_event(created, "images", "ubuntu/notes.txt"),
        blob_event(created, "images", "ubuntu/u.vhdx"),
        blob_event(created, "scratch", "ubuntu/u.vhd"),
        blob_event(created, "images-old", "ubuntu/u.vhd"),
        blob_event("Microsoft.Storage.BlobDeleted", "images", "ubuntu/u.vhd"),
    ];
    let routed = eg.dispatcher.publish("storage", "/t", events);
    assert_eq!(
        routed, 3,
        "only BlobCreated of .vhd/.manifest.json under images/"
    );
    let got = host
        .wait_for("3 deliveries", 3, |s| s.method == "POST")
        .await;
    let mut subjects: Vec<String> = got
        .iter()
        .map(|s| s.json()["subject"].as_str().unwrap_or("").to_string())
        .collect();
    subjects.sort();
    assert_eq!(
        subjects,
        [
            "/blobServices/default/containers/Images/blobs/ubuntu/U.VHD",
            "/blobServices/default/containers/images/blobs/ubuntu/u.manifest.json",
            "/blobServices/default/containers/images/blobs/ubuntu/u.vhd",
        ]
    );
    eg.shutdown().await;
}

#[tokio::test]
async fn admin_subscription_takes_the_arm_filter_with_advanced_filters() {
    let eg = start(
        vec![topic("galleon-events", Schema::CloudEvents)],
        vec![],
        None,
    )
    .await;
    let c = client();
    let hook = Receiver::start(good_webhook).await;
    let body = json!({"name": "ready-only", "topic": "galleon-events", "endpoint": hook.url,
        "eventDeliverySchema": "CloudEventSchemaV1_0",
        "filter": {"advancedFilters": [
            {"operatorType": "StringIn", "key": "type", "values": ["io.galleon.image.ready.v1"]},
            {"operatorType": "NumberGreaterThanOrEquals", "key": "data.n", "value": 1}]}});
    assert_eq!(subscribe(&c, &eg, body).await.status(), 201);
    let bad = json!({"name": "bad", "topic": "galleon-events", "endpoint": hook.url,
        "filter": {"advancedFilters": [{"operatorType": "StringLike", "key": "type", "values": ["x"]}]}});
    assert_eq!(subscribe(&c, &eg, bad).await.status(), 400);
    // retryPolicy and deadLetterDestination in ARM's shape, with Azure's ranges
    for (extra, status) in [
        (json!({"retryPolicy": {"maxDeliveryAttempts": 31}}), 400),
        (json!({"retryPolicy": {"eventTimeToLiveInMinutes": 0}}), 400),
        (
            json!({"deadLetterDestination": {"endpointType": "EventHub", "properties": {}}}),
            400,
        ),
        (
            json!({"retryPolicy": {"maxDeliveryAttempts": 4, "eventTimeToLiveInMinutes": 60},
                   "deadLetterDestination": {"endpointType": "StorageBlob", "properties": {"blobContainerName": "dl"}}}),
            201,
        ),
    ] {
        let mut body = json!({"name": "with-policy", "topic": "galleon-events", "endpoint": hook.url,
            "eventDeliverySchema": "CloudEventSchemaV1_0",
            "filter": {"includedEventTypes": ["nothing.matches"]}});
        body.as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
        let r = subscribe(&c, &eg, body).await;
        assert_eq!(r.status(), status, "{extra}");
        if status == 201 {
            let state: Value = r.json().await.expect("json");
            assert_eq!(state["retryPolicy"]["maxDeliveryAttempts"], 4);
            assert_eq!(state["retryPolicy"]["eventTimeToLiveInMinutes"], 60);
            assert_eq!(
                state["deadLetterDestination"]["properties"]["blobContainerName"],
                "dl"
            );
        }
    }
    let mut low = cloud_event("e3", "io.galleon.image.ready.v1");
    low["data"]["n"] = json!(0);
    let sent = json!([
        cloud_event("e1", "io.galleon.image.ready.v1"),
        cloud_event("e2", "io.galleon.step.failed.v1"),
        low
    ]);
    assert_eq!(
        publish(&c, &eg, "galleon-events", &sent).await.status(),
        200
    );
    let got = hook
        .wait_for("one delivery", 1, |s| s.method == "POST")
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let posts: Vec<Seen> = hook
        .seen()
        .into_iter()
        .filter(|s| s.method == "POST")
        .collect();
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert_eq!(got[0].json()["id"], "e1");
    eg.shutdown().await;
}
