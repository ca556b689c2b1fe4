//! The Service Bus broker as plain data: queues, topics with subscriptions and rules, scheduled
//! messages, peek-lock with lock expiry and renewal, delivery counts, dead-lettering, TTL, duplicate
//! detection and size limits. Every operation takes `now`, so the logic is tested without clocks;
//! the HTTP layer (`super::rest`) adds waiting.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

pub use super::entity::{
    BrokerError, DEAD_LETTER_DESCRIPTION, DEAD_LETTER_REASON, EntityConfig,
    STANDARD_MAX_MESSAGE_SIZE,
};
use super::filter::{Filter, Rule};
use super::message::{Message, NewMessage, format_http_date};
use super::store::Dedup;
pub use super::store::{Counts, ReceiveMode, Received, Store};

/// Which entity a path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntityPath {
    Queue(String),
    Topic(String),
    Subscription(String, String),
}

/// A receive target: an entity's main queue or its dead-letter sub-queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivePath {
    pub entity: EntityPath,
    pub dead_letter: bool,
}

impl ReceivePath {
    /// Parses `{queue}`, `{topic}/subscriptions/{sub}` and either + `/$DeadLetterQueue`
    /// (names are case-insensitive and stored lower-case). A bare name is a queue or a topic,
    /// decided by the namespace.
    pub fn parse(path: &str) -> Option<ReceivePath> {
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (segs, dead_letter) = match segs.split_last() {
            Some((last, rest)) if last.eq_ignore_ascii_case("$DeadLetterQueue") => (rest, true),
            _ => (&segs[..], false),
        };
        let valid = |s: &str| !s.is_empty() && !s.starts_with('$') && !s.starts_with('_');
        let entity = match segs {
            [q] if valid(q) => EntityPath::Queue(q.to_ascii_lowercase()),
            [t, subs, s] if subs.eq_ignore_ascii_case("subscriptions") && valid(t) && valid(s) => {
                EntityPath::Subscription(t.to_ascii_lowercase(), s.to_ascii_lowercase())
            }
            _ => return None,
        };
        Some(ReceivePath {
            entity,
            dead_letter,
        })
    }

    pub fn display(&self) -> String {
        let base = match &self.entity {
            EntityPath::Queue(q) | EntityPath::Topic(q) => q.clone(),
            EntityPath::Subscription(t, s) => format!("{t}/subscriptions/{s}"),
        };
        if self.dead_letter {
            format!("{base}/$DeadLetterQueue")
        } else {
            base
        }
    }
}

#[derive(Debug)]
struct Queue {
    store: Store,
    dedup: Dedup,
}

/// A topic subscription.
#[derive(Debug)]
pub struct Subscription {
    pub rules: Vec<Rule>,
    pub store: Store,
}

impl Subscription {
    fn accepts(&self, m: &Message) -> bool {
        self.rules.iter().any(|r| r.filter.matches(m))
    }
}

#[derive(Debug)]
struct Topic {
    config: EntityConfig,
    dedup: Dedup,
    subscriptions: BTreeMap<String, Subscription>,
}

/// One recorded broker operation, for inspection.
#[derive(Debug, Clone)]
pub struct Activity {
    pub time: DateTime<Utc>,
    pub entity: String,
    pub op: &'static str,
    pub message_id: String,
    pub sequence_number: i64,
    pub detail: Option<String>,
}

const RECENT: usize = 500;

/// Outcome of a send.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SendOutcome {
    pub accepted: usize,
    pub duplicates: usize,
    /// Topic sends: how many subscription copies were made.
    pub routed: usize,
}

/// A Service Bus namespace: all queues and topics.
#[derive(Debug, Default)]
pub struct Namespace {
    /// Creates every queue and topic without duplicate detection, whatever it asks for (the local
    /// cloud's override, so tests prove idempotency as in a namespace made without it).
    pub duplicate_detection_off: bool,
    next_seq: i64,
    queues: BTreeMap<String, Queue>,
    topics: BTreeMap<String, Topic>,
    recent: VecDeque<Activity>,
}

impl Namespace {
    pub fn new() -> Namespace {
        Namespace {
            next_seq: 1,
            ..Default::default()
        }
    }

    fn record(
        &mut self,
        entity: &str,
        op: &'static str,
        m: &Message,
        detail: Option<String>,
        now: DateTime<Utc>,
    ) {
        if self.recent.len() >= RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(Activity {
            time: now,
            entity: entity.to_string(),
            op,
            message_id: m.message_id.clone(),
            sequence_number: m.sequence_number,
            detail,
        });
    }

    /// Creates or updates a queue (messages are kept on update). Like Azure, an update cannot turn
    /// duplicate detection on or off.
    pub fn put_queue(&mut self, name: &str, mut config: EntityConfig) -> Result<(), BrokerError> {
        if self.duplicate_detection_off {
            config.duplicate_detection_window = None;
        }
        let key = name.to_ascii_lowercase();
        match self.queues.get_mut(&key) {
            Some(q) => {
                if q.store.config.duplicate_detection_window.is_some()
                    != config.duplicate_detection_window.is_some()
                {
                    return Err(BrokerError::DuplicateDetectionImmutable { kind: "Queue" });
                }
                q.store.config = config;
            }
            None => {
                self.queues.insert(
                    key.clone(),
                    Queue {
                        store: Store::new(&key, config),
                        dedup: Dedup::default(),
                    },
                );
            }
        }
        Ok(())
    }

    /// Creates or updates a topic. Like Azure, an update cannot turn duplicate detection on or off.
    pub fn put_topic(&mut self, name: &str, mut config: EntityConfig) -> Result<(), BrokerError> {
        if self.duplicate_detection_off {
            config.duplicate_detection_window = None;
        }
        let key = name.to_ascii_lowercase();
        match self.topics.get_mut(&key) {
            Some(t) => {
                if t.config.duplicate_detection_window.is_some()
                    != config.duplicate_detection_window.is_some()
                {
                    return Err(BrokerError::DuplicateDetectionImmutable { kind: "Topic" });
                }
                t.config = config;
            }
            None => {
                self.topics.insert(
                    key,
                    Topic {
                        config,
                        dedup: Dedup::default(),
                        subscriptions: BTreeMap::new(),
                    },
                );
            }
        }
        Ok(())
    }

    /// Creates or updates a subscription; no rules means the `$Default` true filter, as in Azure.
    pub fn put_subscription(
        &mut self,
        topic: &str,
        name: &str,
        config: EntityConfig,
        rules: Vec<Rule>,
    ) -> Result<(), BrokerError> {
        let tkey = topic.to_ascii_lowercase();
        let skey = name.to_ascii_lowercase();
        let t = self
            .topics
            .get_mut(&tkey)
            .ok_or_else(|| BrokerError::EntityNotFound(topic.to_string()))?;
        let rules = if rules.is_empty() {
            vec![Rule {
                name: "$Default".into(),
                filter: Filter::True,
            }]
        } else {
            rules
        };
        match t.subscriptions.get_mut(&skey) {
            Some(s) => {
                s.store.config = config;
                s.rules = rules;
            }
            None => {
                let store = Store::new(&format!("{tkey}/subscriptions/{skey}"), config);
                t.subscriptions.insert(skey, Subscription { rules, store });
            }
        }
        Ok(())
    }

    /// Resolves a bare name: a queue first, then a topic.
    pub fn resolve(&self, p: ReceivePath) -> ReceivePath {
        match &p.entity {
            EntityPath::Queue(n) if !self.queues.contains_key(n) && self.topics.contains_key(n) => {
                ReceivePath {
                    entity: EntityPath::Topic(n.clone()),
                    dead_letter: p.dead_letter,
                }
            }
            _ => p,
        }
    }

    fn store_mut(&mut self, e: &EntityPath) -> Result<&mut Store, BrokerError> {
        match e {
            EntityPath::Queue(q) => self
                .queues
                .get_mut(q)
                .map(|q| &mut q.store)
                .ok_or_else(|| BrokerError::EntityNotFound(q.clone())),
            EntityPath::Subscription(t, s) => self
                .topics
                .get_mut(t)
                .and_then(|t| t.subscriptions.get_mut(s))
                .map(|s| &mut s.store)
                .ok_or_else(|| BrokerError::EntityNotFound(format!("{t}/subscriptions/{s}"))),
            EntityPath::Topic(t) => Err(BrokerError::BadRequest(format!(
                "cannot receive from topic '{t}': receive from one of its subscriptions"
            ))),
        }
    }

    /// Whether the entity exists.
    pub fn exists(&self, e: &EntityPath) -> bool {
        match e {
            EntityPath::Queue(q) => self.queues.contains_key(q),
            EntityPath::Topic(t) => self.topics.contains_key(t),
            EntityPath::Subscription(t, s) => self
                .topics
                .get(t)
                .is_some_and(|t| t.subscriptions.contains_key(s)),
        }
    }

    /// Sends messages (a batch is all-or-nothing on size) to a queue or topic.
    pub fn send(
        &mut self,
        target: &ReceivePath,
        msgs: Vec<NewMessage>,
        now: DateTime<Utc>,
    ) -> Result<SendOutcome, BrokerError> {
        if target.dead_letter {
            return Err(BrokerError::CannotSendHere(target.display()));
        }
        let config = match &target.entity {
            EntityPath::Queue(q) => self
                .queues
                .get(q)
                .map(|q| q.store.config.clone())
                .ok_or_else(|| BrokerError::EntityNotFound(q.clone()))?,
            EntityPath::Topic(t) => self
                .topics
                .get(t)
                .map(|t| t.config.clone())
                .ok_or_else(|| BrokerError::EntityNotFound(t.clone()))?,
            EntityPath::Subscription(..) => {
                return Err(BrokerError::CannotSendHere(target.display()));
            }
        };
        if let Some(why) = msgs.iter().find_map(NewMessage::properties_too_large) {
            return Err(BrokerError::PropertiesTooLarge(why));
        }
        let total: usize = msgs.iter().map(NewMessage::size).sum();
        if let Some(big) = msgs.iter().find(|m| m.size() > config.max_message_size) {
            return Err(BrokerError::MessageTooLarge {
                size: big.size(),
                max: config.max_message_size,
            });
        }
        if total > config.max_message_size {
            return Err(BrokerError::MessageTooLarge {
                size: total,
                max: config.max_message_size,
            });
        }
        let mut out = SendOutcome::default();
        let name = target.display();
        for mut m in msgs {
            // A topic's defaultMessageTimeToLive caps each message's TTL (a queue's is applied by its store).
            if let (EntityPath::Topic(_), Some(cap)) = (&target.entity, config.default_ttl) {
                let cap = cap.num_milliseconds() as f64 / 1000.0;
                m.props.time_to_live = Some(m.props.time_to_live.map_or(cap, |t| t.min(cap)));
            }
            if let (Some(id), Some(window)) =
                (&m.props.message_id, config.duplicate_detection_window)
            {
                let dedup = match &target.entity {
                    EntityPath::Queue(q) => self.queues.get_mut(q).map(|q| &mut q.dedup),
                    EntityPath::Topic(t) => self.topics.get_mut(t).map(|t| &mut t.dedup),
                    EntityPath::Subscription(..) => None,
                };
                if dedup.is_some_and(|d| d.is_duplicate(id, window, now)) {
                    out.duplicates += 1;
                    let ghost = self.stamp(m.clone(), now);
                    let label = ghost.props.label.clone();
                    self.record(&name, "duplicate-dropped", &ghost, label, now);
                    continue;
                }
            }
            let msg = self.stamp(m, now);
            out.accepted += 1;
            let op = if msg.props.scheduled_enqueue_time.is_some_and(|t| t > now) {
                "scheduled"
            } else {
                "sent"
            };
            // The label says what the message is (galleon puts the fact type there), for the timeline.
            let label = match (op, msg.props.scheduled_enqueue_time) {
                ("scheduled", Some(at)) => Some(format!(
                    "{} at {}",
                    msg.props.label.clone().unwrap_or_default(),
                    at.to_rfc3339()
                )),
                _ => msg.props.label.clone(),
            };
            self.record(&name, op, &msg, label, now);
            match &target.entity {
                EntityPath::Queue(q) => {
                    if let Some(q) = self.queues.get_mut(q) {
                        q.store.enqueue(msg, now);
                    }
                }
                EntityPath::Topic(t) => {
                    let mut routed = Vec::new();
                    if let Some(t) = self.topics.get_mut(t) {
                        for (sname, sub) in t.subscriptions.iter_mut() {
                            if sub.accepts(&msg) {
                                sub.store.enqueue(msg.clone(), now);
                                routed.push(sname.clone());
                            }
                        }
                    }
                    out.routed += routed.len();
                    let detail = if routed.is_empty() {
                        "no subscription matched".to_string()
                    } else {
                        format!("routed to {}", routed.join(", "))
                    };
                    self.record(&name, "routed", &msg, Some(detail), now);
                }
                EntityPath::Subscription(..) => {}
            }
        }
        Ok(out)
    }

    fn stamp(&mut self, m: NewMessage, now: DateTime<Utc>) -> Message {
        let seq = self.next_seq;
        self.next_seq += 1;
        Message {
            message_id: m
                .props
                .message_id
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()),
            body: m.body,
            content_type: m.content_type,
            props: m.props,
            app_props: m.app_props,
            sequence_number: seq,
            enqueued_time: now,
            delivery_count: 0,
            expires_at: None,
            dead_letter_reason: None,
            dead_letter_description: None,
            dead_letter_source: None,
        }
    }

    /// Moves every entity's forwarded dead letters to their destination queues, as new messages there
    /// (a new sequence number, delivery count 0), keeping their properties and `DeadLetterSource`.
    fn forward_dead_letters(&mut self, now: DateTime<Utc>) {
        let queues: std::collections::BTreeSet<String> = self.queues.keys().cloned().collect();
        let mut moving: Vec<(String, Message)> = Vec::new();
        let stores = self.queues.values_mut().map(|q| &mut q.store).chain(
            self.topics
                .values_mut()
                .flat_map(|t| t.subscriptions.values_mut().map(|s| &mut s.store)),
        );
        for store in stores {
            store.maintain(now);
            match store.config.forward_dead_letters_to.clone() {
                Some(to) if queues.contains(&to.to_ascii_lowercase()) => {
                    moving.extend(store.take_forwarded().into_iter().map(|m| (to.clone(), m)));
                }
                // No such destination (Azure refuses to set one up): the dead letters stay here.
                _ => store.keep_forwarded(),
            }
        }
        for (to, mut msg) in moving {
            let seq = self.next_seq;
            self.next_seq += 1;
            msg.sequence_number = seq;
            msg.delivery_count = 0;
            let source = msg.dead_letter_source.clone().unwrap_or_default();
            self.record(
                &source,
                "dead-letter-forwarded",
                &msg,
                Some(format!("to {to}")),
                now,
            );
            if let Some(q) = self.queues.get_mut(&to.to_ascii_lowercase()) {
                q.store.activate(msg, now);
            }
        }
    }

    pub fn receive(
        &mut self,
        p: &ReceivePath,
        mode: ReceiveMode,
        now: DateTime<Utc>,
    ) -> Result<Option<Received>, BrokerError> {
        self.forward_dead_letters(now);
        let name = p.display();
        let got = self.store_mut(&p.entity)?.receive(p.dead_letter, mode, now);
        if let Some(r) = &got {
            let op = match mode {
                ReceiveMode::PeekLock => "locked",
                ReceiveMode::ReceiveAndDelete => "received-and-deleted",
            };
            let detail = Some(format!("DeliveryCount={}", r.message.delivery_count));
            self.record(&name, op, &r.message.clone(), detail, now);
        }
        Ok(got)
    }

    pub fn complete(
        &mut self,
        p: &ReceivePath,
        id: &str,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<(), BrokerError> {
        let m = self
            .store_mut(&p.entity)?
            .complete(p.dead_letter, id, token, now)?;
        self.record(&p.display(), "completed", &m, None, now);
        Ok(())
    }

    pub fn abandon(
        &mut self,
        p: &ReceivePath,
        id: &str,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<(), BrokerError> {
        let store = self.store_mut(&p.entity)?;
        let before = store.counts().dead_letter;
        store.abandon(p.dead_letter, id, token, now)?;
        let dead = store.counts().dead_letter > before;
        let stub = Message {
            message_id: id.to_string(),
            body: Default::default(),
            content_type: None,
            props: Default::default(),
            app_props: Default::default(),
            sequence_number: id.parse().unwrap_or(0),
            enqueued_time: now,
            delivery_count: 0,
            expires_at: None,
            dead_letter_reason: None,
            dead_letter_description: None,
            dead_letter_source: None,
        };
        let op = if dead {
            "abandoned-dead-lettered"
        } else {
            "abandoned"
        };
        self.record(&p.display(), op, &stub, None, now);
        Ok(())
    }

    pub fn renew(
        &mut self,
        p: &ReceivePath,
        id: &str,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, BrokerError> {
        self.store_mut(&p.entity)?
            .renew(p.dead_letter, id, token, now)
    }

    /// Moves a dead letter back to its entity as a new message (new sequence number, DeliveryCount 0).
    pub fn resubmit(
        &mut self,
        p: &ReceivePath,
        seq: i64,
        now: DateTime<Utc>,
    ) -> Result<i64, BrokerError> {
        let store = self.store_mut(&p.entity)?;
        store.maintain(now);
        let mut msg = store.take_dead_letter(seq).ok_or_else(|| {
            BrokerError::BadRequest(format!("no dead letter with sequence number {seq}"))
        })?;
        let new_seq = self.next_seq;
        self.next_seq += 1;
        msg.sequence_number = new_seq;
        msg.delivery_count = 0;
        msg.dead_letter_reason = None;
        msg.dead_letter_description = None;
        msg.dead_letter_source = None;
        msg.app_props.remove(DEAD_LETTER_REASON);
        msg.app_props.remove(DEAD_LETTER_DESCRIPTION);
        msg.props.scheduled_enqueue_time = None;
        self.record(
            &p.display(),
            "resubmitted",
            &msg,
            Some(format!("was {seq}")),
            now,
        );
        self.store_mut(&p.entity)?.activate(msg, now);
        Ok(new_seq)
    }

    /// Peeks dead letters of a queue or subscription.
    pub fn dead_letters(
        &mut self,
        p: &ReceivePath,
        max: usize,
        now: DateTime<Utc>,
    ) -> Result<Vec<Message>, BrokerError> {
        let store = self.store_mut(&p.entity)?;
        store.maintain(now);
        Ok(store.peek_dead_letters(max))
    }

    /// Earliest time at which the entity changes by itself.
    pub fn next_due(&mut self, p: &ReceivePath) -> Option<DateTime<Utc>> {
        self.store_mut(&p.entity).ok().and_then(|s| s.next_due())
    }

    /// All entities with counts, as JSON for the admin endpoint.
    pub fn overview(&mut self, now: DateTime<Utc>) -> Value {
        let mut queues = Vec::new();
        for (name, q) in self.queues.iter_mut() {
            queues.push(store_json(name, &mut q.store, now));
        }
        let mut topics = Vec::new();
        for (tname, t) in self.topics.iter_mut() {
            let mut subs = Vec::new();
            for (sname, s) in t.subscriptions.iter_mut() {
                let mut v = store_json(sname, &mut s.store, now);
                v["rules"] = Value::Array(s.rules.iter().map(rule_json).collect());
                subs.push(v);
            }
            topics.push(json!({"name": tname, "subscriptions": subs,
                "requiresDuplicateDetection": t.config.duplicate_detection_window.is_some(),
                "duplicateDetectionHistoryTimeWindowSeconds": t.config.duplicate_detection_window.map(|w| w.num_seconds())}));
        }
        json!({"queues": queues, "topics": topics})
    }

    /// Recent operations, newest last.
    pub fn recent(&self, max: usize) -> Vec<Value> {
        let skip = self.recent.len().saturating_sub(max);
        self.recent
            .iter()
            .skip(skip)
            .map(|a| {
                json!({"time": a.time.to_rfc3339(), "entity": a.entity, "op": a.op,
                       "messageId": a.message_id, "sequenceNumber": a.sequence_number, "detail": a.detail})
            })
            .collect()
    }
}

/// A queue or subscription with its counts and settings.
fn store_json(name: &str, store: &mut Store, now: DateTime<Utc>) -> Value {
    store.maintain(now);
    let c = store.counts();
    json!({"name": name, "activeMessageCount": c.active, "scheduledMessageCount": c.scheduled,
           "lockedMessageCount": c.locked, "deadLetterMessageCount": c.dead_letter,
           "maxDeliveryCount": store.config.max_delivery_count,
           "lockDurationSeconds": store.config.lock_duration.num_seconds(),
           "requiresDuplicateDetection": store.config.duplicate_detection_window.is_some(),
           "deadLetteringOnMessageExpiration": store.config.dead_lettering_on_expiration,
           "defaultMessageTimeToLiveSeconds": store.config.default_ttl.map(|t| t.num_seconds())})
}

fn rule_json(r: &Rule) -> Value {
    let filter = match &r.filter {
        Filter::True => json!({"type": "TrueFilter"}),
        Filter::False => json!({"type": "FalseFilter"}),
        Filter::Sql { text, .. } => json!({"type": "SqlFilter", "sqlExpression": text}),
        Filter::Correlation(c) => {
            let props: serde_json::Map<String, Value> = c
                .properties
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect();
            json!({"type": "CorrelationFilter", "label": c.label, "correlationId": c.correlation_id,
                   "messageId": c.message_id, "contentType": c.content_type, "to": c.to,
                   "replyTo": c.reply_to, "sessionId": c.session_id, "properties": props})
        }
    };
    json!({"name": r.name, "filter": filter})
}

/// For logging dates the way the REST API shows them.
pub fn http_date(d: DateTime<Utc>) -> String {
    format_http_date(d)
}
