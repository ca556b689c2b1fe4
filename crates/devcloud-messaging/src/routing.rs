//! The routing file `events/subscriptions.json`: which Service Bus subscriptions (with one
//! correlation rule per event type) and which Event Grid topics and subscriptions exist, and which
//! function consumes each. Shared by the local Service Bus, the local Event Grid and the Functions host.

use std::path::Path;

use chrono::Duration;
use serde::Deserialize;

pub use crate::iso::parse_iso_duration;

use std::collections::BTreeMap;

use crate::rbac::{Access, BuiltInRole, RoleAssignment};
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
    /// The topic's settings, named as the `properties` of the ARM resource
    /// `Microsoft.ServiceBus/namespaces/topics` (infra passes them through). What is left out keeps
    /// Azure's default.
    #[serde(default)]
    pub topic_properties: TopicProperties,
    #[serde(default)]
    pub subscriptions: Vec<ServiceBusSubscription>,
    /// Queues, e.g. the one every subscription forwards its dead letters to.
    #[serde(default)]
    pub queues: Vec<ServiceBusQueue>,
    /// The namespace's data-plane role assignments (as infra makes them). Left out, roles are not
    /// checked.
    #[serde(default)]
    pub role_assignments: Option<Vec<RoutingRoleAssignment>>,
}

/// A data-plane role assignment: a built-in role for a principal the local cloud knows by name.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoutingRoleAssignment {
    /// A built-in role's name or id (`Azure Service Bus Data Sender`, `EventGrid Data Sender`).
    pub role: String,
    /// Who: `galleon`, the function app's managed identity.
    pub principal: String,
    /// An entity below the namespace (`queue`, `topic/subscriptions/name`); the whole namespace or topic
    /// when left out.
    #[serde(default)]
    pub scope: Option<String>,
}

/// A queue of the routing file (ARM names for its settings).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceBusQueue {
    pub name: String,
    /// The Functions-host function that consumes this queue.
    #[serde(default)]
    pub function: Option<String>,
    #[serde(default)]
    pub max_delivery_count: Option<u32>,
    /// ISO 8601 duration, at most `PT5M`.
    #[serde(default)]
    pub lock_duration: Option<String>,
    /// `forwardDeadLetteredMessagesTo`: the queue that receives this queue's dead letters.
    #[serde(default)]
    pub forward_dead_lettered_messages_to: Option<String>,
}

/// The topic settings the local Service Bus applies (ARM names; anything else is refused, so a
/// setting is never silently ignored).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TopicProperties {
    /// Azure's default is `false`, and it cannot be changed once the topic exists.
    #[serde(default)]
    pub requires_duplicate_detection: Option<bool>,
    /// ISO 8601, 20 seconds to 7 days (Azure's default `PT10M`).
    #[serde(default)]
    pub duplicate_detection_history_time_window: Option<String>,
    /// ISO 8601; caps every message's time-to-live (Azure's default: never expires).
    #[serde(default)]
    pub default_message_time_to_live: Option<String>,
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
    /// ISO 8601 duration, e.g. `PT1M` (at most `PT5M`, as in Azure).
    #[serde(default)]
    pub lock_duration: Option<String>,
    /// ARM `deadLetteringOnMessageExpiration` (Azure's default `false`).
    #[serde(default)]
    pub dead_lettering_on_message_expiration: Option<bool>,
    /// `forwardDeadLetteredMessagesTo`: the queue that receives this subscription's dead letters.
    #[serde(default)]
    pub forward_dead_lettered_messages_to: Option<String>,
    /// ARM `defaultMessageTimeToLive`, ISO 8601 (Azure's default: never expires).
    #[serde(default)]
    pub default_message_time_to_live: Option<String>,
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
    /// `disableLocalAuth`: only Microsoft Entra ID tokens may publish; access keys and shared access
    /// signatures are refused (Azure's default: false).
    #[serde(default)]
    pub disable_local_auth: bool,
    /// The topic's data-plane role assignments (as infra makes them). Left out, roles are not checked.
    #[serde(default)]
    pub role_assignments: Option<Vec<RoutingRoleAssignment>>,
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
    /// A custom topic name, `storage` for the blob system topic, or `resources` for the resource
    /// events of the local ARM (`Microsoft.Resources.ResourceWriteSuccess`, …).
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
    /// The ARM `EventSubscriptionFilter` (`includedEventTypes`, `subjectBeginsWith`,
    /// `subjectEndsWith`, `isSubjectCaseSensitive`, `advancedFilters`…), passed to Azure as is.
    /// Replaces the flat `includedEventTypes`/`subjectBeginsWith`/`subjectEndsWith` above.
    #[serde(default)]
    pub filter: Option<serde_json::Value>,
    /// ARM `retryPolicy`.
    #[serde(default)]
    pub retry_policy: Option<RetryPolicy>,
    /// ARM `deadLetterDestination`: where undeliverable events are written.
    #[serde(default)]
    pub dead_letter_destination: Option<DeadLetterDestination>,
}

/// ARM `retryPolicy` of an event subscription.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryPolicy {
    /// 1 to 30 (Azure's default 30).
    #[serde(default)]
    pub max_delivery_attempts: Option<u32>,
    /// 1 to 1440 (Azure's default 1440).
    #[serde(default)]
    pub event_time_to_live_in_minutes: Option<u32>,
}

/// ARM `deadLetterDestination` (only `StorageBlob` exists).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeadLetterDestination {
    /// `StorageBlob`.
    pub endpoint_type: String,
    pub properties: StorageBlobDeadLetter,
}

/// The container dead letters are written to; `resourceId` (the storage account) is filled in by
/// infra, the local cloud uses its Azurite account.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StorageBlobDeadLetter {
    #[serde(default)]
    pub resource_id: Option<String>,
    pub blob_container_name: String,
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
    #[error("{entity}: invalid {property} '{value}' ({expected})")]
    Setting {
        entity: String,
        property: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("{entity}: role assignment: {message}")]
    RoleAssignment { entity: String, message: String },
}

/// The role assignments the routing file declares, resolved: per namespace and per topic, `None` where
/// it declares none.
#[derive(Debug, Clone, Default)]
pub struct RoleAccess {
    pub service_bus: Option<Access>,
    pub topics: BTreeMap<String, Option<Access>>,
}

/// Resolves declared assignments; `principals` maps the names the file uses to object ids.
fn resolve_assignments(
    entity: &str,
    declared: &Option<Vec<RoutingRoleAssignment>>,
    principals: &BTreeMap<String, String>,
) -> Result<Option<Access>, RoutingError> {
    let Some(declared) = declared else {
        return Ok(None);
    };
    let mut access = Access::default();
    for a in declared {
        let fail = |message: String| RoutingError::RoleAssignment {
            entity: entity.to_owned(),
            message,
        };
        let role = BuiltInRole::parse(&a.role).ok_or_else(|| {
            fail(format!(
                "'{}' is not a built-in data role of Service Bus or Event Grid ({})",
                a.role,
                BuiltInRole::ALL.map(BuiltInRole::name).join(", ")
            ))
        })?;
        let principal_id = principals.get(&a.principal).ok_or_else(|| {
            fail(format!(
                "no principal named '{}' in the local cloud (known: {})",
                a.principal,
                principals.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        access.assignments.push(RoleAssignment {
            principal_id: principal_id.clone(),
            role,
            scope: a.scope.clone().unwrap_or_default(),
        });
    }
    Ok(Some(access))
}

/// Parses an ISO 8601 setting that must lie within `[min, max]`.
fn duration_setting(
    entity: &str,
    property: &'static str,
    value: &str,
    min: Duration,
    max: Duration,
    expected: &'static str,
) -> Result<Duration, RoutingError> {
    parse_iso_duration(value)
        .filter(|d| *d >= min && *d <= max)
        .ok_or_else(|| RoutingError::Setting {
            entity: entity.to_string(),
            property,
            value: value.to_string(),
            expected,
        })
}

/// Longest TTL Azure accepts (TimeSpan.MaxValue, which means "never expires").
fn max_ttl() -> Duration {
    Duration::days(10_675_199)
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

    /// The data-plane role assignments the file declares, with `principals` naming the object ids of
    /// the principals it names (`galleon`: the local managed identity).
    pub fn role_access(
        &self,
        principals: &BTreeMap<String, String>,
    ) -> Result<RoleAccess, RoutingError> {
        let mut access = RoleAccess::default();
        if let Some(sb) = &self.service_bus {
            access.service_bus =
                resolve_assignments("Service Bus namespace", &sb.role_assignments, principals)?;
        }
        for t in self.event_grid.iter().flat_map(|eg| &eg.topics) {
            let entity = format!("Event Grid topic {}", t.name);
            access.topics.insert(
                t.name.clone(),
                resolve_assignments(&entity, &t.role_assignments, principals)?,
            );
        }
        Ok(access)
    }

    /// The Service Bus topic and subscriptions (one correlation rule per type on `typeProperty`),
    /// with `base` (Azure's defaults: [`EntityConfig::default`]) for what the file leaves out.
    pub fn servicebus_config(&self, base: &EntityConfig) -> Result<ServiceBusConfig, RoutingError> {
        let mut config = ServiceBusConfig::default();
        let Some(sb) = &self.service_bus else {
            return Ok(config);
        };
        let mut topic = base.clone();
        let tp = &sb.topic_properties;
        let entity = format!("topic {}", sb.topic);
        if let Some(on) = tp.requires_duplicate_detection {
            let window = match &tp.duplicate_detection_history_time_window {
                Some(w) => duration_setting(
                    &entity,
                    "duplicateDetectionHistoryTimeWindow",
                    w,
                    Duration::seconds(20),
                    Duration::days(7),
                    "an ISO 8601 duration from PT20S to P7D",
                )?,
                None => Duration::minutes(10),
            };
            topic.duplicate_detection_window = on.then_some(window);
        }
        if let Some(ttl) = &tp.default_message_time_to_live {
            topic.default_ttl = Some(duration_setting(
                &entity,
                "defaultMessageTimeToLive",
                ttl,
                Duration::seconds(1),
                max_ttl(),
                "an ISO 8601 duration of at least PT1S",
            )?);
        }
        let mut subs = Vec::new();
        for s in &sb.subscriptions {
            // subscriptions have no duplicate detection of their own
            let mut c = EntityConfig {
                duplicate_detection_window: None,
                ..base.clone()
            };
            let entity = format!("subscription {}", s.name);
            if let Some(n) = s.max_delivery_count {
                if n == 0 {
                    return Err(RoutingError::Setting {
                        entity,
                        property: "maxDeliveryCount",
                        value: n.to_string(),
                        expected: "at least 1",
                    });
                }
                c.max_delivery_count = n;
            }
            if let Some(ld) = &s.lock_duration {
                c.lock_duration = parse_iso_duration(ld)
                    .filter(|d| *d > Duration::zero() && *d <= Duration::minutes(5))
                    .ok_or_else(|| RoutingError::LockDuration {
                        subscription: s.name.clone(),
                        value: ld.clone(),
                    })?;
            }
            if let Some(b) = s.dead_lettering_on_message_expiration {
                c.dead_lettering_on_expiration = b;
            }
            if let Some(to) = &s.forward_dead_lettered_messages_to {
                // Azure refuses to forward to an entity that does not exist.
                if !sb.queues.iter().any(|q| q.name.eq_ignore_ascii_case(to)) {
                    return Err(RoutingError::Setting {
                        entity,
                        property: "forwardDeadLetteredMessagesTo",
                        value: to.clone(),
                        expected: "a queue declared under serviceBus.queues",
                    });
                }
                c.forward_dead_letters_to = Some(to.clone());
            }
            if let Some(ttl) = &s.default_message_time_to_live {
                c.default_ttl = Some(duration_setting(
                    &entity,
                    "defaultMessageTimeToLive",
                    ttl,
                    Duration::seconds(1),
                    max_ttl(),
                    "an ISO 8601 duration of at least PT1S",
                )?);
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
            config: topic,
            subscriptions: subs,
        });
        for q in &sb.queues {
            let mut c = EntityConfig {
                duplicate_detection_window: None,
                ..base.clone()
            };
            if let Some(n) = q.max_delivery_count.filter(|n| *n > 0) {
                c.max_delivery_count = n;
            }
            if let Some(ld) = &q.lock_duration {
                c.lock_duration = parse_iso_duration(ld)
                    .filter(|d| *d > Duration::zero() && *d <= Duration::minutes(5))
                    .ok_or_else(|| RoutingError::LockDuration {
                        subscription: q.name.clone(),
                        value: ld.clone(),
                    })?;
            }
            if let Some(to) = &q.forward_dead_lettered_messages_to {
                // Azure refuses to forward to an entity that does not exist, or to the queue itself.
                if to.eq_ignore_ascii_case(&q.name)
                    || !sb
                        .queues
                        .iter()
                        .any(|other| other.name.eq_ignore_ascii_case(to))
                {
                    return Err(RoutingError::Setting {
                        entity: format!("queue {}", q.name),
                        property: "forwardDeadLetteredMessagesTo",
                        value: to.clone(),
                        expected: "another queue declared under serviceBus.queues",
                    });
                }
                c.forward_dead_letters_to = Some(to.clone());
            }
            config.queues.push((q.name.clone(), c));
        }
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
        // the facts topic declares duplicate detection (infra creates it so); Azure's default is off
        assert_eq!(
            c.topics[0].config.duplicate_detection_window,
            Some(Duration::minutes(10))
        );
        for s in &c.topics[0].subscriptions {
            assert_eq!(s.config.duplicate_detection_window, None);
        }
        assert!(Routing::load("/nonexistent/routing.json").is_err());
    }

    #[test]
    fn dead_letters_forward_only_to_a_declared_queue() {
        let base = EntityConfig::default();
        let ok = Routing::parse(
            r#"{"serviceBus": {"topic": "t", "typeProperty": "type",
                "subscriptions": [{"name": "s", "types": ["x"], "forwardDeadLetteredMessagesTo": "dlq"}],
                "queues": [{"name": "dlq", "function": "DeadLetters", "maxDeliveryCount": 5}]}}"#,
        )
        .expect("parses")
        .servicebus_config(&base)
        .expect("valid");
        assert_eq!(ok.queues.len(), 1);
        assert_eq!(ok.queues[0].1.max_delivery_count, 5);
        assert_eq!(
            ok.topics[0].subscriptions[0]
                .config
                .forward_dead_letters_to
                .as_deref(),
            Some("dlq")
        );
        let missing = Routing::parse(
            r#"{"serviceBus": {"topic": "t", "typeProperty": "type",
                "subscriptions": [{"name": "s", "types": ["x"], "forwardDeadLetteredMessagesTo": "nowhere"}]}}"#,
        )
        .expect("parses")
        .servicebus_config(&base);
        assert!(
            missing
                .as_ref()
                .is_err_and(|e| e.to_string().contains("forwardDeadLetteredMessagesTo")),
            "{missing:?}"
        );
        // A queue forwards its dead letters to another declared queue, never to itself or nowhere.
        let queue = |to: &str| {
            Routing::parse(&format!(
                r#"{{"serviceBus": {{"topic": "t", "typeProperty": "type",
                    "queues": [{{"name": "dlq"}}, {{"name": "requests", "forwardDeadLetteredMessagesTo": "{to}"}}]}}}}"#
            ))
            .expect("parses")
            .servicebus_config(&base)
        };
        let forwarded = queue("dlq").expect("valid");
        assert_eq!(
            forwarded.queues[1].1.forward_dead_letters_to.as_deref(),
            Some("dlq")
        );
        for bad in ["requests", "nowhere"] {
            assert!(
                queue(bad).is_err_and(|e| e.to_string().contains("forwardDeadLetteredMessagesTo")),
                "{bad}"
            );
        }
    }

    #[test]
    fn entity_settings_use_arm_names_and_azure_defaults() {
        let bare = r#"{ "serviceBus": { "topic": "t", "typeProperty": "type",
            "subscriptions": [ { "name": "s", "types": ["a"] } ] } }"#;
        let c = Routing::parse(bare)
            .expect("parses")
            .servicebus_config(&EntityConfig::default())
            .expect("config");
        assert_eq!(c.topics[0].config.duplicate_detection_window, None);
        assert_eq!(c.topics[0].config.default_ttl, None);
        let s = &c.topics[0].subscriptions[0].config;
        assert_eq!(
            (s.max_delivery_count, s.lock_duration),
            (10, Duration::minutes(1))
        );
        assert!(!s.dead_lettering_on_expiration);

        let full = r#"{ "serviceBus": { "topic": "t", "typeProperty": "type",
            "topicProperties": { "requiresDuplicateDetection": true,
                "duplicateDetectionHistoryTimeWindow": "PT1H", "defaultMessageTimeToLive": "P1D" },
            "subscriptions": [ { "name": "s", "types": ["a"], "maxDeliveryCount": 3,
                "lockDuration": "PT30S", "deadLetteringOnMessageExpiration": true,
                "defaultMessageTimeToLive": "PT2H" } ] } }"#;
        let c = Routing::parse(full)
            .expect("parses")
            .servicebus_config(&EntityConfig::default())
            .expect("config");
        let t = &c.topics[0].config;
        assert_eq!(t.duplicate_detection_window, Some(Duration::hours(1)));
        assert_eq!(t.default_ttl, Some(Duration::days(1)));
        let s = &c.topics[0].subscriptions[0].config;
        assert_eq!(s.max_delivery_count, 3);
        assert_eq!(s.lock_duration, Duration::seconds(30));
        assert!(s.dead_lettering_on_expiration);
        assert_eq!(s.default_ttl, Some(Duration::hours(2)));

        // Azure's limits and names are enforced
        for bad in [
            r#""topicProperties": {"requiresDuplicateDetection": true, "duplicateDetectionHistoryTimeWindow": "PT5S"}"#,
            r#""topicProperties": {"requiresDuplicateDetection": true, "duplicateDetectionHistoryTimeWindow": "P8D"}"#,
        ] {
            let text =
                format!(r#"{{ "serviceBus": {{ "topic": "t", "typeProperty": "type", {bad} }} }}"#);
            let r = Routing::parse(&text).expect("parses");
            assert!(
                r.servicebus_config(&EntityConfig::default()).is_err(),
                "{bad}"
            );
        }
        let typo = r#"{ "serviceBus": { "topic": "t", "typeProperty": "type",
            "topicProperties": { "requiresDuplicateDetecton": true } } }"#;
        assert!(
            Routing::parse(typo).is_err(),
            "an unknown topic property is refused"
        );
        let long_lock = r#"{ "serviceBus": { "topic": "t", "typeProperty": "type",
            "subscriptions": [ { "name": "s", "lockDuration": "PT6M" } ] } }"#;
        assert!(
            Routing::parse(long_lock)
                .expect("parses")
                .servicebus_config(&EntityConfig::default())
                .is_err()
        );
    }

    #[test]
    fn role_assignments_resolve_to_principals_and_built_in_roles() {
        let text = r#"{ "serviceBus": { "topic": "t", "typeProperty": "type",
            "roleAssignments": [ { "role": "Azure Service Bus Data Sender", "principal": "galleon" },
                                 { "role": "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0", "principal": "galleon", "scope": "t/subscriptions/s" } ] },
          "eventGrid": { "topics": [ { "name": "open" },
                                     { "name": "closed", "roleAssignments": [] } ] } }"#;
        let routing = Routing::parse(text).expect("parses");
        let principals = BTreeMap::from([("galleon".to_owned(), "oid-1".to_owned())]);
        let access = routing.role_access(&principals).expect("resolves");
        let bus = access.service_bus.expect("declared");
        assert_eq!(
            bus.assignments,
            vec![
                RoleAssignment {
                    principal_id: "oid-1".into(),
                    role: BuiltInRole::ServiceBusDataSender,
                    scope: String::new(),
                },
                RoleAssignment {
                    principal_id: "oid-1".into(),
                    role: BuiltInRole::ServiceBusDataReceiver,
                    scope: "t/subscriptions/s".into(),
                },
            ]
        );
        // Left out: not checked; declared empty: nobody may publish.
        assert_eq!(access.topics["open"], None);
        assert_eq!(access.topics["closed"], Some(Access::default()));
        // An unknown role or principal is refused, naming what exists.
        for (bad, names) in [
            (
                r#"{ "role": "Owner", "principal": "galleon" }"#,
                "EventGrid Data Sender",
            ),
            (
                r#"{ "role": "EventGrid Data Sender", "principal": "someone" }"#,
                "known: galleon",
            ),
        ] {
            let text = format!(
                r#"{{ "eventGrid": {{ "topics": [ {{ "name": "x", "roleAssignments": [ {bad} ] }} ] }} }}"#
            );
            let err = Routing::parse(&text)
                .expect("parses")
                .role_access(&principals)
                .expect_err(bad)
                .to_string();
            assert!(err.contains(names) && err.contains("topic x"), "{err}");
        }
    }
}
