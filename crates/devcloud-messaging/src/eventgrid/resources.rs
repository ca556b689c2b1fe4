//! The `resources` system topic: Azure Resource Manager's resource events (`Microsoft.Resources.
//! ResourceWriteSuccess`, …) handed in by whoever runs the local ARM, routed like the storage topic.
//!
//! In Azure each resource group (or subscription) has its own system topic; the local one takes the
//! events of every group of the subscription, and each event keeps its own group as `topic`.

use std::sync::Arc;

use serde_json::Value;

use super::delivery::Dispatcher;
use super::model::{Event, Schema};

/// The name of the resource events system topic.
pub const RESOURCES_TOPIC: &str = "resources";

/// Publishes resource events to the `resources` topic's subscriptions. Cheap to clone.
#[derive(Clone)]
pub struct ResourcePublisher {
    pub(super) dispatcher: Arc<Dispatcher>,
    /// What the validation handshake of a `resources` subscription names as the topic.
    pub(super) topic_id: String,
}

/// Why an event was not published.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("not an Event Grid schema resource event: {0}")]
pub struct NotAnEvent(pub String);

impl ResourcePublisher {
    /// The topic id subscriptions of `resources` see in their handshake: the subscription.
    pub fn topic_id(&self) -> &str {
        &self.topic_id
    }

    /// Publishes one event in the Event Grid schema (`id`, `topic`, `subject`, `eventType`,
    /// `eventTime`, `data`); answers how many subscriptions it was routed to. Delivery runs in the
    /// background (call from within the Tokio runtime).
    pub fn publish(&self, event: Value) -> Result<usize, NotAnEvent> {
        let o = event
            .as_object()
            .ok_or_else(|| NotAnEvent("not a JSON object".into()))?;
        for k in ["id", "topic", "subject", "eventType", "eventTime"] {
            if o.get(k).and_then(Value::as_str).is_none_or(str::is_empty) {
                return Err(NotAnEvent(format!("'{k}' is missing or empty")));
            }
        }
        if !o.get("data").is_some_and(Value::is_object) {
            return Err(NotAnEvent("'data' is not an object".into()));
        }
        let e = Event {
            schema: Schema::EventGrid,
            value: event,
        };
        Ok(self
            .dispatcher
            .publish(RESOURCES_TOPIC, &self.topic_id, vec![e]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eventgrid::delivery::DeliverySettings;
    use serde_json::json;

    fn publisher() -> ResourcePublisher {
        ResourcePublisher {
            dispatcher: Arc::new(Dispatcher::new(DeliverySettings::default(), {
                let _ = rustls::crypto::ring::default_provider().install_default();
                reqwest::Client::new()
            })),
            topic_id: "/subscriptions/s".into(),
        }
    }

    #[tokio::test]
    async fn refuses_what_is_not_an_event() {
        let p = publisher();
        assert!(p.publish(json!([])).is_err());
        assert!(p.publish(json!({"id": "1"})).is_err());
        let ok = json!({"id": "1", "topic": "/subscriptions/s/resourceGroups/rg", "subject": "/x",
            "eventType": "Microsoft.Resources.ResourceWriteSuccess", "eventTime": "2024-01-01T00:00:00Z",
            "data": {}});
        assert_eq!(p.publish(ok.clone()), Ok(0));
        let mut no_data = ok;
        no_data["data"] = json!("x");
        assert!(p.publish(no_data).is_err());
        let recent = p.dispatcher.recent_events(10);
        assert_eq!(recent.len(), 1);
        assert_eq!(recent[0]["topic"], RESOURCES_TOPIC);
    }
}
