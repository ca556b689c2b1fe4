//! The routing file `events/subscriptions.json`: which Service Bus subscriptions (with one
//! correlation rule per event type) and which Event Grid topics and subscriptions exist, and which
//! function consumes each. Shared by the local Service Bus, the local Event Grid and the Functions host.

use std::path::Path;

use chrono::Duration;
use serde::Deserialize;

use crate::servicebus::message::PropValue;
use crate::servicebus::{
    CorrelationFilter, EntityConfig, Filter, Rule, ServiceBusConfig, SubscriptionSpec, TopicSpec,
};

/// The whole routing file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Routing {
    #[serde(default)]
    pub service_bus: Option<ServiceBusRouting>,
    #[serde(default)]
    pub event_grid: Option<EventGridRouting>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceBusRouting {
    pub topic: String,
    /// The application property carrying the event type.
    pub type_property: String,
    #[serde(default)]
    pub subscriptions: Vec<ServiceBusSubscription>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceBusSubscription {
    pub name: String,
    /// The Functions-host function that consumes this subscription.
    #[serde(default)]
    pub function: Option<String>,
    #[serde(default)]
    pub types: Vec<String>,
    #[serde(default)]
    pub max_delivery_count: Option<u32>,
    /// ISO 8601 duration, e.g. `PT1M`.
    #[serde(default)]
    pub lock_duration: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct EventGridRouting {
    #[serde(default)]
    pub topics: Vec<EventGridTopic>,
    #[serde(default)]
    pub subscriptions: Vec<EventGridSubscription>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventGridTopic {
    pub name: String,
    /// `CloudEventSchemaV1_0` or `EventGridSchema`.
    #[serde(default = "default_schema")]
    pub input_schema: String,
    #[serde(default)]
    pub types: Vec<String>,
}

fn default_schema() -> String {
    "EventGridSchema".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventGridSubscription {
    pub name: String,
    #[serde(default)]
    pub function: Option<String>,
    /// A custom topic name, or `storage` for the blob system topic.
    pub topic: String,
    #[serde(default)]
    pub included_event_types: Vec<String>,
    #[serde(default)]
    pub subject_begins_with: String,
    #[serde(default)]
    pub subject_ends_with: String,
    #[serde(default = "default_schema")]
    pub event_delivery_schema: String,
    #[serde(default)]
    pub max_delivery_attempts: Option<u32>,
    /// A webhook URL instead of a function.
    #[serde(default)]
    pub endpoint: Option<String>,
}

/// A routing file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    #[error("cannot read the routing file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the routing file {path} is not valid")]
    Parse {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "subscription {subscription}: invalid lockDuration '{value}' (expected an ISO 8601 duration like PT1M)"
    )]
    LockDuration { subscription: String, value: String },
}

/// Parses an ISO 8601 duration of days, hours, minutes and seconds (`P1DT2H`, `PT1M`, `PT30.5S`).
pub fn parse_iso_duration(s: &str) -> Option<Duration> {
    let rest = s.trim().strip_prefix('P')?;
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) => (d, t),
        None => (rest, ""),
    };
    let mut ms: f64 = 0.0;
    let mut any = false;
    let mut eat = |part: &str, units: &[(char, f64)]| -> Option<()> {
        let mut num = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                num.push(c);
            } else {
                let factor = units.iter().find(|(u, _)| *u == c)?.1;
                ms += num.parse::<f64>().ok()? * factor;
                num.clear();
                any = true;
            }
        }
        num.is_empty().then_some(())
    };
    eat(date, &[('D', 86_400_000.0), ('W', 604_800_000.0)])?;
    eat(time, &[('H', 3_600_000.0), ('M', 60_000.0), ('S', 1000.0)])?;
    any.then(|| Duration::milliseconds(ms as i64))
}

impl Routing {
    /// Reads and parses the routing file.
    pub fn load(path: impl AsRef<Path>) -> Result<Routing, RoutingError> {
        let p = path.as_ref();
        let text = std::fs::read_to_string(p).map_err(|source| RoutingError::Read {
            path: p.display().to_string(),
            source,
        })?;
        Routing::parse(&text).map_err(|source| RoutingError::Parse {
            path: p.display().to_string(),
            source,
        })
    }

    pub fn parse(text: &str) -> Result<Routing, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The Service Bus topic and subscriptions (one correlation rule per type on `typeProperty`),
    /// with `base` as the defaults for what the file leaves out.
    pub fn servicebus_config(&self, base: &EntityConfig) -> Result<ServiceBusConfig, RoutingError> {
        let mut config = ServiceBusConfig::default();
        let Some(sb) = &self.service_bus else {
            return Ok(config);
        };
        let mut subs = Vec::new();
        for s in &sb.subscriptions {
            let mut c = base.clone();
            if let Some(n) = s.max_delivery_count {
                c.max_delivery_count = n;
            }
            if let Some(ld) = &s.lock_duration {
                c.lock_duration =
                    parse_iso_duration(ld).ok_or_else(|| RoutingError::LockDuration {
                        subscription: s.name.clone(),
                        value: ld.clone(),
                    })?;
            }
            let rules = s
                .types
                .iter()
                .map(|t| {
                    let mut f = CorrelationFilter::default();
                    f.properties
                        .insert(sb.type_property.clone(), PropValue::Str(t.clone()));
                    Rule {
                        name: t.clone(),
                        filter: Filter::Correlation(f),
                    }
                })
                .collect::<Vec<_>>();
            // a subscription listing no types receives nothing (not everything)
            let rules = if rules.is_empty() {
                vec![Rule {
                    name: "$Default".into(),
                    filter: Filter::False,
                }]
            } else {
                rules
            };
            subs.push(SubscriptionSpec {
                name: s.name.clone(),
                config: c,
                rules,
            });
        }
        config.topics.push(TopicSpec {
            name: sb.topic.clone(),
            config: base.clone(),
            subscriptions: subs,
        });
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_durations() {
        assert_eq!(parse_iso_duration("PT1M"), Some(Duration::minutes(1)));
        assert_eq!(parse_iso_duration("PT30S"), Some(Duration::seconds(30)));
        assert_eq!(
            parse_iso_duration("PT0.5S"),
            Some(Duration::milliseconds(500))
        );
        assert_eq!(parse_iso_duration("P1DT2H"), Some(Duration::hours(26)));
        assert_eq!(parse_iso_duration("PT"), None);
        assert_eq!(parse_iso_duration("1M"), None);
        assert_eq!(parse_iso_duration("PT1X"), None);
        assert_eq!(parse_iso_duration("PT1"), None);
    }

    #[test]
    fn brief_example() {
        let text = r#"{ "serviceBus": { "topic": "galleon-facts", "typeProperty": "type",
          "subscriptions": [ { "name": "announce", "function": "Announce",
              "types": ["io.galleon.image.ready.v1", "io.galleon.step.failed.v1"],
              "maxDeliveryCount": 7, "lockDuration": "PT2M" } ] },
        "eventGrid": {
          "topics": [ { "name": "galleon-events", "inputSchema": "CloudEventSchemaV1_0" } ],
          "subscriptions": [ { "name": "ingest-blob", "function": "IngestBlob", "topic": "storage",
              "includedEventTypes": ["Microsoft.Storage.BlobCreated"],
              "subjectBeginsWith": "/blobServices/default/containers/", "subjectEndsWith": "",
              "eventDeliverySchema": "CloudEventSchemaV1_0", "maxDeliveryAttempts": 30 } ] } }"#;
        let r = Routing::parse(text).expect("parses");
        let c = r
            .servicebus_config(&EntityConfig::default())
            .expect("config");
        let t = &c.topics[0];
        assert_eq!(t.name, "galleon-facts");
        let s = &t.subscriptions[0];
        assert_eq!(s.config.max_delivery_count, 7);
        assert_eq!(s.config.lock_duration, Duration::minutes(2));
        assert_eq!(s.rules.len(), 2);
        let eg = r.event_grid.expect("event grid");
        assert_eq!(eg.topics[0].input_schema, "CloudEventSchemaV1_0");
        assert_eq!(eg.subscriptions[0].max_delivery_attempts, Some(30));
    }

    #[test]
    fn project_routing_file_loads() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../events/subscriptions.json"
        );
        let r = Routing::load(path).expect("events/subscriptions.json loads");
        let c = r
            .servicebus_config(&EntityConfig::default())
            .expect("config");
        assert!(!c.topics[0].subscriptions.is_empty());
        assert!(Routing::load("/nonexistent/routing.json").is_err());
    }
}
