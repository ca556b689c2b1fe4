//! Inspection for `devcloud inspect`: fetches the admin endpoints of the local Service Bus and Event
//! Grid and renders them as text (entities with counts, dead letters, subscriptions, recent deliveries).

use serde_json::Value;

/// A failed admin call.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("cannot reach {url}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
}

async fn get(client: &reqwest::Client, url: String) -> Result<Value, InspectError> {
    let resp = client
        .get(&url)
        .send()
        .await
        .map_err(|source| InspectError::Http {
            url: url.clone(),
            source,
        })?;
    resp.json()
        .await
        .map_err(|source| InspectError::Http { url, source })
}

/// Everything the Service Bus admin endpoint shows: `{entities, recent, deadLetters: {entity: [...]}}`.
pub async fn servicebus_snapshot(
    client: &reqwest::Client,
    base: &str,
    recent: usize,
) -> Result<Value, InspectError> {
    let base = base.trim_end_matches('/');
    let entities = get(client, format!("{base}/_devcloud/entities")).await?;
    let recent = get(client, format!("{base}/_devcloud/recent?max={recent}")).await?;
    let mut dead = serde_json::Map::new();
    let mut paths = Vec::new();
    for q in entities["queues"].as_array().into_iter().flatten() {
        if q["deadLetterMessageCount"].as_u64().unwrap_or(0) > 0 {
            paths.push(q["name"].as_str().unwrap_or("").to_string());
        }
    }
    for t in entities["topics"].as_array().into_iter().flatten() {
        for s in t["subscriptions"].as_array().into_iter().flatten() {
            if s["deadLetterMessageCount"].as_u64().unwrap_or(0) > 0 {
                paths.push(format!(
                    "{}/subscriptions/{}",
                    t["name"].as_str().unwrap_or(""),
                    s["name"].as_str().unwrap_or("")
                ));
            }
        }
    }
    for p in paths {
        let v = get(client, format!("{base}/_devcloud/deadletters?entity={p}")).await?;
        dead.insert(p, v);
    }
    Ok(serde_json::json!({"entities": entities, "recent": recent, "deadLetters": dead}))
}

/// Everything the Event Grid admin endpoint shows.
pub async fn eventgrid_snapshot(
    client: &reqwest::Client,
    base: &str,
    recent: usize,
) -> Result<Value, InspectError> {
    let base = base.trim_end_matches('/');
    Ok(serde_json::json!({
        "topics": get(client, format!("{base}/_devcloud/topics")).await?,
        "subscriptions": get(client, format!("{base}/_devcloud/subscriptions")).await?,
        "deliveries": get(client, format!("{base}/_devcloud/deliveries?max={recent}")).await?,
        "events": get(client, format!("{base}/_devcloud/events?max={recent}")).await?,
        "deadLetters": get(client, format!("{base}/_devcloud/deadletters")).await?,
        "blobWatch": get(client, format!("{base}/_devcloud/blobwatch")).await?,
    }))
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn counts(v: &Value) -> String {
    format!(
        "active {:>4}  scheduled {:>4}  locked {:>4}  dead-letter {:>4}",
        s(&v["activeMessageCount"]),
        s(&v["scheduledMessageCount"]),
        s(&v["lockedMessageCount"]),
        s(&v["deadLetterMessageCount"])
    )
}

/// Renders a Service Bus snapshot.
pub fn render_servicebus(snap: &Value) -> String {
    let mut out = String::from("Service Bus\n");
    for q in snap["entities"]["queues"].as_array().into_iter().flatten() {
        out.push_str(&format!("  queue {:<30} {}\n", s(&q["name"]), counts(q)));
    }
    for t in snap["entities"]["topics"].as_array().into_iter().flatten() {
        out.push_str(&format!("  topic {}\n", s(&t["name"])));
        for sub in t["subscriptions"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "    subscription {:<22} {}\n",
                s(&sub["name"]),
                counts(sub)
            ));
        }
    }
    if let Some(dead) = snap["deadLetters"].as_object()
        && !dead.is_empty()
    {
        out.push_str("  dead letters\n");
        for (entity, msgs) in dead {
            for m in msgs.as_array().into_iter().flatten() {
                let bp = &m["brokerProperties"];
                out.push_str(&format!(
                    "    {entity} #{} {} {}: {}\n",
                    s(&bp["SequenceNumber"]),
                    s(&bp["MessageId"]),
                    s(&bp["DeadLetterReason"]),
                    s(&bp["DeadLetterErrorDescription"])
                ));
            }
        }
    }
    out.push_str("  recent\n");
    for a in snap["recent"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "    {} {:<24} {:<40} {} {}\n",
            s(&a["time"]),
            s(&a["op"]),
            s(&a["entity"]),
            s(&a["messageId"]),
            if a["detail"].is_null() {
                String::new()
            } else {
                s(&a["detail"])
            }
        ));
    }
    out
}

/// Renders an Event Grid snapshot.
pub fn render_eventgrid(snap: &Value) -> String {
    let mut out = String::from("Event Grid\n");
    for t in snap["topics"].as_array().into_iter().flatten() {
        // custom topics: the publish path; storage: the watched account; resources: the source
        let extra = ["endpoint", "upstream", "source"]
            .iter()
            .map(|k| &t[*k])
            .find(|v| !v.is_null())
            .map(s)
            .unwrap_or_default();
        out.push_str(&format!("  topic {:<24} {}\n", s(&t["name"]), extra));
    }
    let w = &snap["blobWatch"];
    if w["enabled"] == Value::Bool(true) {
        out.push_str(&format!(
            "  blob proxy: ready {} requests {} events {} last error {}\n",
            s(&w["ready"]),
            s(&w["requests"]),
            s(&w["events"]),
            s(&w["lastError"])
        ));
    }
    for sub in snap["subscriptions"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  subscription {:<20} topic {:<16} {:<22} delivered {} failed attempts {} in flight {} dead-lettered {} -> {}\n",
            s(&sub["name"]),
            s(&sub["topic"]),
            s(&sub["provisioningState"]),
            s(&sub["delivered"]),
            s(&sub["failedAttempts"]),
            s(&sub["inFlight"]),
            s(&sub["deadLettered"]),
            s(&sub["endpoint"])
        ));
    }
    out.push_str("  recent events\n");
    for e in snap["events"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "    {} {:<16} {:<36} {} -> {}\n",
            s(&e["time"]),
            s(&e["topic"]),
            s(&e["type"]),
            s(&e["subject"]),
            s(&e["subscriptions"])
        ));
    }
    out.push_str("  recent deliveries\n");
    for d in snap["deliveries"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "    {} {:<20} {:<9} attempt {} {} {} {}\n",
            s(&d["time"]),
            s(&d["subscription"]),
            s(&d["kind"]),
            s(&d["attempt"]),
            s(&d["outcome"]),
            s(&d["eventId"]),
            if d["note"].is_null() {
                String::new()
            } else {
                s(&d["note"])
            }
        ));
    }
    for d in snap["deadLetters"].as_array().into_iter().flatten() {
        let e = &d["event"];
        let reason = if e["deadLetterReason"].is_null() {
            &e["deadletterreason"]
        } else {
            &e["deadLetterReason"]
        };
        out.push_str(&format!(
            "  dead letter {} {} {}\n",
            s(&d["subscription"]),
            s(&e["id"]),
            s(reason)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders() {
        let sb = json!({
            "entities": {"queues": [{"name": "q", "activeMessageCount": 1, "scheduledMessageCount": 0, "lockedMessageCount": 0, "deadLetterMessageCount": 1}],
                         "topics": [{"name": "facts", "subscriptions": [{"name": "announce", "activeMessageCount": 2, "scheduledMessageCount": 1, "lockedMessageCount": 0, "deadLetterMessageCount": 0}]}]},
            "recent": [{"time": "t", "op": "sent", "entity": "q", "messageId": "m", "detail": null}],
            "deadLetters": {"q": [{"brokerProperties": {"SequenceNumber": 3, "MessageId": "m", "DeadLetterReason": "MaxDeliveryCountExceeded", "DeadLetterErrorDescription": "d"}}]}
        });
        let text = render_servicebus(&sb);
        assert!(text.contains("queue q"));
        assert!(text.contains("subscription announce"));
        assert!(text.contains("#3 m MaxDeliveryCountExceeded"));
        let eg = json!({"topics": [{"name": "galleon-events", "endpoint": "/topics/galleon-events/api/events"}],
                        "subscriptions": [{"name": "ingest-blob", "topic": "storage", "provisioningState": "Succeeded", "delivered": 1}],
                        "events": [], "deliveries": [{"time": "t", "subscription": "ingest-blob", "kind": "delivery", "attempt": 1, "outcome": "Succeeded", "eventId": "e"}],
                        "deadLetters": [{"subscription": "s", "event": {"id": "x", "deadletterreason": "MaxDeliveryAttemptsExceeded"}}],
                        "blobWatch": {"enabled": true, "ready": true, "requests": 3, "events": 1, "lastError": null}});
        let text = render_eventgrid(&eg);
        assert!(text.contains("topic galleon-events"));
        assert!(text.contains("subscription ingest-blob"));
        assert!(text.contains("dead letter s x MaxDeliveryAttemptsExceeded"));
        assert!(text.contains("blob proxy: ready true requests 3 events 1"));
    }
}
