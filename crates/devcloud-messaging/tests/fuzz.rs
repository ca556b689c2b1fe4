//! Fuzzing the local Service Bus's SQL filter parser (rules' `sqlExpression`): filters as users and the
//! tests write them, changed. The parser never panics, a filter it takes evaluates on a message, and its
//! three-valued logic holds: `NOT (e)` parses whenever `e` does and is its negation (UNKNOWN stays UNKNOWN).
//!
//! `GALLEON_FUZZ_SECONDS` per target (3 s by default; `scripts/fuzz.sh` runs each for 60 s).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use bytes::Bytes;
use devcloud_messaging::servicebus::filter::parse_sql;
use devcloud_messaging::servicebus::message::{BrokerProps, Message, PropValue};
use fuzzing::{fuzz, text_from};

fn message() -> Message {
    let mut app_props = BTreeMap::new();
    app_props.insert(
        "type".into(),
        PropValue::Str("io.galleon.image.ready.v1".into()),
    );
    app_props.insert("region".into(), PropValue::Str("westeurope".into()));
    app_props.insert("priority".into(), PropValue::Int(3));
    app_props.insert("urgent".into(), PropValue::Bool(true));
    Message {
        body: Bytes::from_static(b"{}"),
        content_type: Some("application/json".into()),
        props: BrokerProps {
            label: Some("L1".into()),
            correlation_id: Some("c1".into()),
            ..Default::default()
        },
        app_props,
        message_id: "m1".into(),
        sequence_number: 7,
        enqueued_time: chrono::Utc::now(),
        delivery_count: 1,
        expires_at: None,
        dead_letter_reason: None,
        dead_letter_description: None,
        dead_letter_source: None,
    }
}

const SEEDS: &[&str] = &[
    "type = 'io.galleon.image.ready.v1'",
    "user.type = 'io.galleon.image.ready.v1'",
    "[type] = 'io.galleon.image.ready.v1'",
    "type <> 'x'",
    "type != 'io.galleon.image.ready.v1'",
    "type IN ('a', 'io.galleon.image.ready.v1')",
    "type NOT IN ('a','b')",
    "region = 'westeurope' AND type = 'io.galleon.image.ready.v1'",
    "region = 'eastus' OR type = 'io.galleon.image.ready.v1'",
    "NOT (region = 'westeurope' OR region = 'eastus')",
    "EXISTS(region)",
    "NOT EXISTS(missing)",
    "missing IS NULL",
    "region IS NOT NULL",
    "priority > 2 AND priority <= 3",
    "priority = '3'",
    "urgent = TRUE",
    "sys.Label = 'L1'",
    "sys.CorrelationId = 'c1' AND sys.MessageId = 'm1'",
    "sys.ContentType = 'application/json'",
    "1=1",
    "TRUE",
    "region = 'it''s'",
    "type LIKE 'io.galleon.%'",
    "-2.5 < priority",
];

#[test]
fn fuzz_service_bus_sql_filter_parser() {
    let m = message();
    let (parsed, refused) = (AtomicU64::new(0), AtomicU64::new(0));
    let ran = fuzz(
        "Service Bus SQL filter parser",
        text_from(SEEDS.iter().map(|s| s.to_string()).collect()),
        |text| {
            let Ok(expr) = parse_sql(&text) else {
                refused.fetch_add(1, Relaxed);
                return Ok(());
            };
            parsed.fetch_add(1, Relaxed);
            let value = expr.eval(&m);
            let negated = parse_sql(&format!("NOT ({text})"))
                .map_err(|e| format!("{text:?} parses but NOT ({text}) does not: {e}"))?;
            let not_value = negated.eval(&m);
            if not_value != value.map(|v| !v) {
                return Err(format!(
                    "{text:?} is {value:?} but its NOT is {not_value:?}"
                ));
            }
            Ok(())
        },
    );
    let (p, r) = (parsed.load(Relaxed), refused.load(Relaxed));
    println!("fuzz target Service Bus SQL filter parser: {p} parsed, {r} refused");
    assert!(
        ran.cases > 0 && p > 0 && r > 0,
        "{p} parsed and {r} refused"
    );
}

/// Most seed filters parse and some are true of the message: the target reaches evaluation.
#[test]
fn the_seed_filters_parse_and_evaluate() {
    let m = message();
    let parsed: Vec<_> = SEEDS.iter().filter_map(|s| parse_sql(s).ok()).collect();
    assert!(
        parsed.len() + 2 >= SEEDS.len(),
        "{} of {} parse",
        parsed.len(),
        SEEDS.len()
    );
    assert!(parsed.iter().any(|e| e.eval(&m) == Some(true)));
    assert!(parsed.iter().any(|e| e.eval(&m) == Some(false)));
}
