//! Unit tests of the broker logic (no sockets, explicit clock).

use super::broker::*;
use super::filter::{CorrelationFilter, Filter, Rule};
use super::message::{BrokerProps, NewMessage, PropValue};
use chrono::{DateTime, Duration, TimeZone, Utc};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0)
        .single()
        .expect("valid date")
}

fn msg(id: Option<&str>) -> NewMessage {
    NewMessage {
        body: bytes::Bytes::from_static(b"hello"),
        props: BrokerProps {
            message_id: id.map(str::to_string),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn typed(ty: &str) -> NewMessage {
    let mut m = msg(None);
    m.app_props.insert("type".into(), PropValue::Str(ty.into()));
    m
}

fn q(name: &str) -> ReceivePath {
    ReceivePath::parse(name).expect("path")
}

fn ns_with_queue(config: EntityConfig) -> Namespace {
    let mut ns = Namespace::new();
    ns.put_queue("orders", config).expect("new queue");
    ns
}

#[test]
fn paths() {
    assert_eq!(q("Orders").entity, EntityPath::Queue("orders".into()));
    let p = q("t/subscriptions/S/$DeadLetterQueue");
    assert_eq!(p.entity, EntityPath::Subscription("t".into(), "s".into()));
    assert!(p.dead_letter);
    assert_eq!(p.display(), "t/subscriptions/s/$DeadLetterQueue");
    assert!(ReceivePath::parse("a/b").is_none());
    assert!(ReceivePath::parse("_devcloud").is_none());
    assert!(ReceivePath::parse("").is_none());
}

#[test]
fn scheduled_message_is_invisible_until_due() {
    let mut ns = ns_with_queue(EntityConfig::default());
    let mut m = msg(Some("a"));
    m.props.scheduled_enqueue_time = Some(t0() + Duration::seconds(30));
    ns.send(&q("orders"), vec![m], t0()).expect("send");
    assert!(
        ns.receive(
            &q("orders"),
            ReceiveMode::PeekLock,
            t0() + Duration::seconds(29)
        )
        .expect("rx")
        .is_none()
    );
    assert_eq!(
        ns.next_due(&q("orders")),
        Some(t0() + Duration::seconds(30))
    );
    let r = ns
        .receive(
            &q("orders"),
            ReceiveMode::PeekLock,
            t0() + Duration::seconds(30),
        )
        .expect("rx")
        .expect("due now");
    assert_eq!(r.message.message_id, "a");
    assert_eq!(r.message.enqueued_time, t0() + Duration::seconds(30));
}

#[test]
fn abandon_until_dead_letter() {
    let config = EntityConfig {
        max_delivery_count: 3,
        ..Default::default()
    };
    let mut ns = ns_with_queue(config);
    ns.send(&q("orders"), vec![msg(Some("a"))], t0())
        .expect("send");
    for n in 1..=3u32 {
        let r = ns
            .receive(&q("orders"), ReceiveMode::PeekLock, t0())
            .expect("rx")
            .expect("message");
        assert_eq!(r.message.delivery_count, n);
        let (token, _) = r.lock.expect("locked");
        ns.abandon(&q("orders"), "a", &token, t0())
            .expect("abandon");
    }
    assert!(
        ns.receive(&q("orders"), ReceiveMode::PeekLock, t0())
            .expect("rx")
            .is_none()
    );
    let dl = ns.dead_letters(&q("orders"), 10, t0()).expect("dlq");
    assert_eq!(dl.len(), 1);
    assert_eq!(
        dl[0].dead_letter_reason.as_deref(),
        Some("MaxDeliveryCountExceeded")
    );
    assert_eq!(dl[0].delivery_count, 3);
    // the dead-letter queue is receivable and completable
    let dlq = q("orders/$DeadLetterQueue");
    let r = ns
        .receive(&dlq, ReceiveMode::PeekLock, t0())
        .expect("rx")
        .expect("dead letter");
    let (token, _) = r.lock.expect("locked");
    ns.complete(&dlq, "a", &token, t0()).expect("complete");
    assert!(
        ns.dead_letters(&q("orders"), 10, t0())
            .expect("dlq")
            .is_empty()
    );
}

#[test]
fn lock_expiry_counts_as_abandon_and_renew_extends() {
    let config = EntityConfig {
        max_delivery_count: 2,
        lock_duration: Duration::seconds(10),
        ..Default::default()
    };
    let mut ns = ns_with_queue(config);
    ns.send(&q("orders"), vec![msg(Some("a"))], t0())
        .expect("send");
    let r = ns
        .receive(&q("orders"), ReceiveMode::PeekLock, t0())
        .expect("rx")
        .expect("msg");
    let (token, until) = r.lock.expect("lock");
    assert_eq!(until, t0() + Duration::seconds(10));
    let renewed = ns
        .renew(&q("orders"), "a", &token, t0() + Duration::seconds(8))
        .expect("renew");
    assert_eq!(renewed, t0() + Duration::seconds(18));
    // still locked at +15
    assert!(
        ns.receive(
            &q("orders"),
            ReceiveMode::PeekLock,
            t0() + Duration::seconds(15)
        )
        .expect("rx")
        .is_none()
    );
    // lock lost at +18: completing fails, the message is back with DeliveryCount 2
    let r2 = ns
        .receive(
            &q("orders"),
            ReceiveMode::PeekLock,
            t0() + Duration::seconds(18),
        )
        .expect("rx")
        .expect("redelivered");
    assert_eq!(r2.message.delivery_count, 2);
    assert_eq!(
        ns.complete(&q("orders"), "a", &token, t0() + Duration::seconds(18)),
        Err(BrokerError::LockLost)
    );
    // second expiry → dead letter
    assert!(
        ns.receive(
            &q("orders"),
            ReceiveMode::PeekLock,
            t0() + Duration::seconds(40)
        )
        .expect("rx")
        .is_none()
    );
    assert_eq!(
        ns.dead_letters(&q("orders"), 10, t0() + Duration::seconds(40))
            .expect("dlq")
            .len(),
        1
    );
}

#[test]
fn complete_checks_message_id_and_token() {
    let mut ns = ns_with_queue(EntityConfig::default());
    ns.send(&q("orders"), vec![msg(Some("a"))], t0())
        .expect("send");
    let r = ns
        .receive(&q("orders"), ReceiveMode::PeekLock, t0())
        .expect("rx")
        .expect("msg");
    let (token, _) = r.lock.expect("lock");
    assert_eq!(
        ns.complete(&q("orders"), "b", &token, t0()),
        Err(BrokerError::LockLost)
    );
    assert_eq!(
        ns.complete(&q("orders"), "a", "nope", t0()),
        Err(BrokerError::LockLost)
    );
    let seq = r.message.sequence_number.to_string();
    ns.complete(&q("orders"), &seq, &token, t0())
        .expect("complete by sequence number");
    assert_eq!(
        ns.complete(&q("orders"), "a", &token, t0()),
        Err(BrokerError::LockLost)
    );
}

#[test]
fn duplicate_detection_is_off_by_default_as_in_azure() {
    let mut ns = ns_with_queue(EntityConfig::default());
    let o = ns
        .send(&q("orders"), vec![msg(Some("a")), msg(Some("a"))], t0())
        .expect("send");
    assert_eq!(o.accepted, 2, "a new entity keeps every copy");
    assert_eq!(o.duplicates, 0);
    ns.put_topic("facts", EntityConfig::default())
        .expect("new topic");
    ns.put_subscription("facts", "all", EntityConfig::default(), vec![])
        .expect("subscription");
    let o = ns
        .send(
            &ns.resolve(q("facts")),
            vec![msg(Some("x")), msg(Some("x"))],
            t0(),
        )
        .expect("send");
    assert_eq!((o.accepted, o.routed), (2, 2));
}

#[test]
fn duplicate_detection_cannot_be_switched_on_an_existing_entity() {
    let on = EntityConfig {
        duplicate_detection_window: Some(Duration::minutes(10)),
        ..Default::default()
    };
    let mut ns = ns_with_queue(EntityConfig::default());
    assert_eq!(
        ns.put_queue("orders", on.clone()),
        Err(BrokerError::DuplicateDetectionImmutable { kind: "Queue" })
    );
    ns.put_topic("facts", on.clone()).expect("created with it");
    assert_eq!(
        ns.put_topic("facts", EntityConfig::default()),
        Err(BrokerError::DuplicateDetectionImmutable { kind: "Topic" })
    );
    // other settings and the window itself may change
    let longer = EntityConfig {
        duplicate_detection_window: Some(Duration::minutes(30)),
        max_delivery_count: 3,
        ..Default::default()
    };
    ns.put_topic("facts", longer).expect("window can change");
}

#[test]
fn namespace_override_keeps_duplicate_detection_off() {
    let mut ns = Namespace::new();
    ns.duplicate_detection_off = true;
    ns.put_queue(
        "orders",
        EntityConfig {
            duplicate_detection_window: Some(Duration::minutes(10)),
            ..Default::default()
        },
    )
    .expect("queue");
    let o = ns
        .send(&q("orders"), vec![msg(Some("a")), msg(Some("a"))], t0())
        .expect("send");
    assert_eq!(o.accepted, 2);
}

#[test]
fn topic_default_ttl_caps_messages() {
    let mut ns = Namespace::new();
    ns.put_topic(
        "facts",
        EntityConfig {
            default_ttl: Some(Duration::seconds(30)),
            ..Default::default()
        },
    )
    .expect("topic");
    ns.put_subscription("facts", "all", EntityConfig::default(), vec![])
        .expect("subscription");
    ns.send(&ns.resolve(q("facts")), vec![msg(Some("a"))], t0())
        .expect("send");
    let sub = q("facts/subscriptions/all");
    assert!(
        ns.receive(
            &sub,
            ReceiveMode::ReceiveAndDelete,
            t0() + Duration::seconds(31)
        )
        .expect("receive")
        .is_none(),
        "expired after the topic's TTL"
    );
}

#[test]
fn duplicate_detection_window() {
    let config = EntityConfig {
        duplicate_detection_window: Some(Duration::minutes(10)),
        ..Default::default()
    };
    let mut ns = ns_with_queue(config);
    let o = ns
        .send(
            &q("orders"),
            vec![msg(Some("a")), msg(Some("a")), msg(Some("b"))],
            t0(),
        )
        .expect("send");
    assert_eq!(
        o,
        SendOutcome {
            accepted: 2,
            duplicates: 1,
            routed: 0
        }
    );
    let o = ns
        .send(
            &q("orders"),
            vec![msg(Some("a"))],
            t0() + Duration::minutes(9),
        )
        .expect("send");
    assert_eq!(o.duplicates, 1);
    let o = ns
        .send(
            &q("orders"),
            vec![msg(Some("a"))],
            t0() + Duration::minutes(11),
        )
        .expect("send");
    assert_eq!(o.accepted, 1);
    // messages without MessageId get distinct ids and are never duplicates
    let o = ns
        .send(&q("orders"), vec![msg(None), msg(None)], t0())
        .expect("send");
    assert_eq!(o.accepted, 2);
    // detection off
    let mut ns = ns_with_queue(EntityConfig {
        duplicate_detection_window: None,
        ..Default::default()
    });
    let o = ns
        .send(&q("orders"), vec![msg(Some("a")), msg(Some("a"))], t0())
        .expect("send");
    assert_eq!(o.accepted, 2);
}

#[test]
fn ttl_expiry() {
    let mut ns = ns_with_queue(EntityConfig::default());
    let mut m = msg(Some("a"));
    m.props.time_to_live = Some(5.0);
    ns.send(&q("orders"), vec![m], t0()).expect("send");
    assert!(
        ns.receive(
            &q("orders"),
            ReceiveMode::PeekLock,
            t0() + Duration::seconds(6)
        )
        .expect("rx")
        .is_none()
    );
    assert!(
        ns.dead_letters(&q("orders"), 10, t0())
            .expect("dlq")
            .is_empty()
    );

    let mut ns = ns_with_queue(EntityConfig {
        dead_lettering_on_expiration: true,
        default_ttl: Some(Duration::seconds(3)),
        ..Default::default()
    });
    ns.send(&q("orders"), vec![msg(Some("a"))], t0())
        .expect("send");
    assert!(
        ns.receive(
            &q("orders"),
            ReceiveMode::PeekLock,
            t0() + Duration::seconds(3)
        )
        .expect("rx")
        .is_none()
    );
    let dl = ns.dead_letters(&q("orders"), 10, t0()).expect("dlq");
    assert_eq!(
        dl[0].dead_letter_reason.as_deref(),
        Some("TTLExpiredException")
    );
}

#[test]
fn size_limit_and_errors() {
    let mut ns = ns_with_queue(EntityConfig::default());
    let mut m = msg(Some("big"));
    m.body = bytes::Bytes::from(vec![b'x'; STANDARD_MAX_MESSAGE_SIZE + 1]);
    assert!(matches!(
        ns.send(&q("orders"), vec![m], t0()),
        Err(BrokerError::MessageTooLarge { .. })
    ));
    // Application properties: each at most 32 KB, all at most 64 KB, whatever the body.
    let mut m = msg(Some("one big property"));
    m.app_props
        .insert("note".into(), PropValue::Str("x".repeat(32 * 1024)));
    assert!(matches!(
        ns.send(&q("orders"), vec![m], t0()),
        Err(BrokerError::PropertiesTooLarge(why)) if why.contains("'note'")
    ));
    let with_30k_properties = |id: &str, n: usize| {
        let mut m = msg(Some(id));
        for i in 0..n {
            m.app_props
                .insert(format!("p{i}"), PropValue::Str("x".repeat(30 * 1024)));
        }
        m
    };
    assert!(matches!(
        ns.send(&q("orders"), vec![with_30k_properties("many properties", 3)], t0()),
        Err(BrokerError::PropertiesTooLarge(why)) if why.contains("collective")
    ));
    ns.send(
        &q("orders"),
        vec![with_30k_properties("properties that fit", 2)],
        t0(),
    )
    .expect("two 30 KB properties fit");
    let mut m = msg(Some("fits"));
    m.body = bytes::Bytes::from(vec![b'x'; STANDARD_MAX_MESSAGE_SIZE - 100]);
    ns.send(&q("orders"), vec![m], t0())
        .expect("just under the limit");
    assert!(matches!(
        ns.send(&q("missing"), vec![msg(None)], t0()),
        Err(BrokerError::EntityNotFound(_))
    ));
    assert!(matches!(
        ns.send(&q("orders/$DeadLetterQueue"), vec![msg(None)], t0()),
        Err(BrokerError::CannotSendHere(_))
    ));
}

#[test]
fn receive_and_delete() {
    let mut ns = ns_with_queue(EntityConfig::default());
    ns.send(&q("orders"), vec![msg(Some("a")), msg(Some("b"))], t0())
        .expect("send");
    let r = ns
        .receive(&q("orders"), ReceiveMode::ReceiveAndDelete, t0())
        .expect("rx")
        .expect("msg");
    assert_eq!(r.message.message_id, "a");
    assert!(r.lock.is_none());
    let r = ns
        .receive(&q("orders"), ReceiveMode::ReceiveAndDelete, t0())
        .expect("rx")
        .expect("msg");
    assert_eq!(r.message.message_id, "b");
    assert!(
        ns.receive(&q("orders"), ReceiveMode::ReceiveAndDelete, t0())
            .expect("rx")
            .is_none()
    );
}

#[test]
fn topic_routes_by_type() {
    let mut ns = Namespace::new();
    ns.put_topic("facts", EntityConfig::default())
        .expect("new topic");
    let rule = |ty: &str| {
        let mut c = CorrelationFilter::default();
        c.properties
            .insert("type".into(), PropValue::Str(ty.into()));
        Rule {
            name: ty.into(),
            filter: Filter::Correlation(c),
        }
    };
    ns.put_subscription(
        "facts",
        "announce",
        EntityConfig::default(),
        vec![rule("ready"), rule("failed")],
    )
    .expect("sub");
    ns.put_subscription(
        "facts",
        "replicate",
        EntityConfig::default(),
        vec![rule("version")],
    )
    .expect("sub");
    ns.put_subscription("facts", "all", EntityConfig::default(), vec![])
        .expect("sub");
    let topic = ns.resolve(q("facts"));
    assert_eq!(topic.entity, EntityPath::Topic("facts".into()));
    let o = ns
        .send(
            &topic,
            vec![
                typed("ready"),
                typed("version"),
                typed("other"),
                typed("failed"),
            ],
            t0(),
        )
        .expect("send");
    assert_eq!(o.accepted, 4);
    assert_eq!(o.routed, 2 + 1 + 4);
    let drain = |ns: &mut Namespace, p: &str| {
        let mut types = Vec::new();
        while let Some(r) = ns
            .receive(&q(p), ReceiveMode::ReceiveAndDelete, t0())
            .expect("rx")
        {
            types.push(r.message.app_props["type"].as_text());
        }
        types
    };
    assert_eq!(
        drain(&mut ns, "facts/subscriptions/announce"),
        ["ready", "failed"]
    );
    assert_eq!(drain(&mut ns, "facts/subscriptions/replicate"), ["version"]);
    assert_eq!(drain(&mut ns, "facts/subscriptions/all").len(), 4);
}

#[test]
fn resubmit_dead_letter() {
    let mut ns = ns_with_queue(EntityConfig {
        max_delivery_count: 1,
        ..Default::default()
    });
    ns.send(&q("orders"), vec![msg(Some("a"))], t0())
        .expect("send");
    let r = ns
        .receive(&q("orders"), ReceiveMode::PeekLock, t0())
        .expect("rx")
        .expect("msg");
    ns.abandon(&q("orders"), "a", &r.lock.expect("lock").0, t0())
        .expect("abandon");
    let dl = ns.dead_letters(&q("orders"), 10, t0()).expect("dlq");
    let seq = dl[0].sequence_number;
    let new_seq = ns.resubmit(&q("orders"), seq, t0()).expect("resubmit");
    assert!(new_seq > seq);
    let r = ns
        .receive(&q("orders"), ReceiveMode::PeekLock, t0())
        .expect("rx")
        .expect("msg");
    assert_eq!(r.message.delivery_count, 1);
    assert_eq!(r.message.message_id, "a");
    assert!(r.message.dead_letter_reason.is_none());
    assert!(ns.resubmit(&q("orders"), seq, t0()).is_err());
}

#[test]
fn dead_letters_are_forwarded_where_the_entity_says_with_their_source() {
    let mut ns = Namespace::new();
    ns.put_queue("galleon-deadletters", EntityConfig::default())
        .expect("queue");
    ns.put_topic("facts", EntityConfig::default())
        .expect("topic");
    let config = EntityConfig {
        max_delivery_count: 2,
        forward_dead_letters_to: Some("galleon-deadletters".into()),
        ..Default::default()
    };
    ns.put_subscription("facts", "publish", config, Vec::new())
        .expect("subscription");
    let topic = ns.resolve(q("facts"));
    ns.send(&topic, vec![msg(Some("a"))], t0()).expect("send");
    let sub = q("facts/subscriptions/publish");
    for _ in 0..2 {
        let r = ns
            .receive(&sub, ReceiveMode::PeekLock, t0())
            .expect("rx")
            .expect("message");
        let (token, _) = r.lock.expect("locked");
        ns.abandon(&sub, "a", &token, t0()).expect("abandon");
    }
    // Not in the subscription's own dead-letter queue: forwarded.
    assert!(ns.dead_letters(&sub, 10, t0()).expect("dlq").is_empty());
    let got = ns
        .receive(&q("galleon-deadletters"), ReceiveMode::PeekLock, t0())
        .expect("rx")
        .expect("the dead letter arrived in the forwarding queue");
    assert_eq!(got.message.message_id, "a");
    assert_eq!(got.message.delivery_count, 1, "a new message there");
    assert_eq!(
        got.message.dead_letter_source.as_deref(),
        Some("facts/subscriptions/publish")
    );
    assert_eq!(
        got.message.app_props.get(DEAD_LETTER_REASON),
        Some(&PropValue::Str("MaxDeliveryCountExceeded".into()))
    );
    // Without forwarding, Azure sets no DeadLetterSource.
    let mut plain = ns_with_queue(EntityConfig {
        max_delivery_count: 1,
        ..Default::default()
    });
    plain
        .send(&q("orders"), vec![msg(Some("b"))], t0())
        .expect("send");
    let r = plain
        .receive(&q("orders"), ReceiveMode::PeekLock, t0())
        .expect("rx")
        .expect("message");
    let (token, _) = r.lock.expect("locked");
    plain
        .abandon(&q("orders"), "b", &token, t0())
        .expect("abandon");
    let dl = plain.dead_letters(&q("orders"), 10, t0()).expect("dlq");
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0].dead_letter_source, None);
}
