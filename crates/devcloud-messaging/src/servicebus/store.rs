//! One entity's messages (a queue, or a topic's subscription): the active and dead-letter sub-queues,
//! peek-lock with expiry and renewal, scheduled messages, TTL, and duplicate detection's window.

use std::collections::{BTreeMap, HashMap, VecDeque};

use chrono::{DateTime, Duration, Utc};

use super::entity::{BrokerError, DEAD_LETTER_DESCRIPTION, DEAD_LETTER_REASON, EntityConfig};
use super::message::{Message, PropValue};

/// How a receive settles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiveMode {
    PeekLock,
    ReceiveAndDelete,
}

/// A received message (a copy) with its lock.
#[derive(Debug, Clone)]
pub struct Received {
    pub message: Message,
    pub lock: Option<(String, DateTime<Utc>)>,
}

#[derive(Debug, Clone)]
struct Locked {
    msg: Message,
    until: DateTime<Utc>,
}

/// Active messages plus their locks (the main queue or the dead-letter sub-queue).
#[derive(Debug, Default)]
pub(super) struct SubQueue {
    active: BTreeMap<i64, Message>,
    locked: HashMap<String, Locked>,
}

impl SubQueue {
    fn lock_next(
        &mut self,
        now: DateTime<Utc>,
        lock: Duration,
        mode: ReceiveMode,
    ) -> Option<Received> {
        let (_, mut msg) = self.active.pop_first()?;
        msg.delivery_count += 1;
        match mode {
            ReceiveMode::ReceiveAndDelete => Some(Received {
                message: msg,
                lock: None,
            }),
            ReceiveMode::PeekLock => {
                let token = uuid::Uuid::new_v4().to_string();
                let until = now + lock;
                self.locked.insert(
                    token.clone(),
                    Locked {
                        msg: msg.clone(),
                        until,
                    },
                );
                Some(Received {
                    message: msg,
                    lock: Some((token, until)),
                })
            }
        }
    }

    fn take_locked(
        &mut self,
        id: &str,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<Message, BrokerError> {
        match self.locked.get(token) {
            Some(l)
                if l.until > now
                    && (l.msg.message_id == id || l.msg.sequence_number.to_string() == id) => {}
            _ => return Err(BrokerError::LockLost),
        }
        self.locked
            .remove(token)
            .map(|l| l.msg)
            .ok_or(BrokerError::LockLost)
    }

    fn expired_locks(&mut self, now: DateTime<Utc>) -> Vec<Message> {
        let tokens: Vec<String> = self
            .locked
            .iter()
            .filter(|(_, l)| l.until <= now)
            .map(|(t, _)| t.clone())
            .collect();
        tokens
            .into_iter()
            .filter_map(|t| self.locked.remove(&t).map(|l| l.msg))
            .collect()
    }
}

/// Counts for inspection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub active: usize,
    pub scheduled: usize,
    pub locked: usize,
    pub dead_letter: usize,
}

/// The receiving side of a queue or subscription.
#[derive(Debug)]
pub struct Store {
    pub config: EntityConfig,
    name: String,
    scheduled: BTreeMap<(DateTime<Utc>, i64), Message>,
    main: SubQueue,
    dlq: SubQueue,
    /// Dead letters on their way to `forward_dead_letters_to` (moved by the namespace).
    forwarded: Vec<Message>,
}

impl Store {
    pub fn new(name: &str, config: EntityConfig) -> Store {
        Store {
            config,
            name: name.to_string(),
            scheduled: BTreeMap::new(),
            main: SubQueue::default(),
            dlq: SubQueue::default(),
            forwarded: Vec::new(),
        }
    }

    pub(super) fn activate(&mut self, mut msg: Message, now: DateTime<Utc>) {
        msg.enqueued_time = now;
        let ttl = match (msg.props.time_to_live, self.config.default_ttl) {
            (Some(s), Some(d)) => Some(Duration::milliseconds((s * 1000.0) as i64).min(d)),
            (Some(s), None) => Some(Duration::milliseconds((s * 1000.0) as i64)),
            (None, d) => d,
        };
        msg.expires_at = ttl.and_then(|t| now.checked_add_signed(t));
        self.main.active.insert(msg.sequence_number, msg);
    }

    /// Adds a stamped message: scheduled for later or active now.
    pub(super) fn enqueue(&mut self, msg: Message, now: DateTime<Utc>) {
        match msg.props.scheduled_enqueue_time {
            Some(at) if at > now => {
                self.scheduled.insert((at, msg.sequence_number), msg);
            }
            _ => self.activate(msg, now),
        }
    }

    /// Moves a message to the dead-letter sub-queue. As in Service Bus, the reason and description
    /// become the application properties `DeadLetterReason` and `DeadLetterErrorDescription`.
    pub(super) fn dead_letter(&mut self, mut msg: Message, reason: &str, description: String) {
        msg.app_props.insert(
            DEAD_LETTER_REASON.into(),
            PropValue::Str(reason.to_string()),
        );
        msg.app_props.insert(
            DEAD_LETTER_DESCRIPTION.into(),
            PropValue::Str(description.clone()),
        );
        msg.dead_letter_reason = Some(reason.to_string());
        msg.dead_letter_description = Some(description);
        if self.config.forward_dead_letters_to.is_some() {
            // Auto-forwarded out of the dead-letter queue: the one case Azure sets DeadLetterSource.
            msg.dead_letter_source = Some(self.name.clone());
            self.forwarded.push(msg);
        } else {
            msg.dead_letter_source = None;
            self.dlq.active.insert(msg.sequence_number, msg);
        }
    }

    /// A message comes back from a lock (abandon or lock expiry): redelivered, or dead-lettered once
    /// it has been delivered `max_delivery_count` times.
    fn unlock(&mut self, msg: Message) {
        if msg.delivery_count >= self.config.max_delivery_count {
            let n = msg.delivery_count;
            self.dead_letter(
                msg,
                "MaxDeliveryCountExceeded",
                format!("Message could not be consumed after {n} delivery attempts."),
            );
        } else {
            self.main.active.insert(msg.sequence_number, msg);
        }
    }

    /// Applies what time has done: scheduled messages become active, expired locks are abandoned,
    /// expired messages are removed (or dead-lettered).
    pub fn maintain(&mut self, now: DateTime<Utc>) {
        while let Some(entry) = self.scheduled.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let msg = entry.remove();
            self.activate(msg, now);
        }
        for msg in self.main.expired_locks(now) {
            self.unlock(msg);
        }
        for msg in self.dlq.expired_locks(now) {
            self.dlq.active.insert(msg.sequence_number, msg);
        }
        let expired: Vec<i64> = self
            .main
            .active
            .values()
            .filter(|m| m.expires_at.is_some_and(|e| e <= now))
            .map(|m| m.sequence_number)
            .collect();
        for seq in expired {
            if let Some(msg) = self.main.active.remove(&seq)
                && self.config.dead_lettering_on_expiration
            {
                self.dead_letter(
                    msg,
                    "TTLExpiredException",
                    "The message expired and was dead lettered.".into(),
                );
            }
        }
    }

    /// The next time something changes by itself (a scheduled message is due, a lock expires).
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        let sched = self.scheduled.keys().next().map(|k| k.0);
        let locks = self
            .main
            .locked
            .values()
            .chain(self.dlq.locked.values())
            .map(|l| l.until)
            .min();
        match (sched, locks) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn receive(
        &mut self,
        dead_letter: bool,
        mode: ReceiveMode,
        now: DateTime<Utc>,
    ) -> Option<Received> {
        self.maintain(now);
        let lock = self.config.lock_duration;
        if dead_letter {
            self.dlq.lock_next(now, lock, mode)
        } else {
            self.main.lock_next(now, lock, mode)
        }
    }

    pub fn complete(
        &mut self,
        dead_letter: bool,
        id: &str,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<Message, BrokerError> {
        self.maintain(now);
        let q = if dead_letter {
            &mut self.dlq
        } else {
            &mut self.main
        };
        q.take_locked(id, token, now)
    }

    pub fn abandon(
        &mut self,
        dead_letter: bool,
        id: &str,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<(), BrokerError> {
        self.maintain(now);
        if dead_letter {
            let msg = self.dlq.take_locked(id, token, now)?;
            self.dlq.active.insert(msg.sequence_number, msg);
        } else {
            let msg = self.main.take_locked(id, token, now)?;
            self.unlock(msg);
        }
        Ok(())
    }

    pub fn renew(
        &mut self,
        dead_letter: bool,
        id: &str,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, BrokerError> {
        self.maintain(now);
        let lock = self.config.lock_duration;
        let q = if dead_letter {
            &mut self.dlq
        } else {
            &mut self.main
        };
        match q.locked.get_mut(token) {
            Some(l)
                if l.until > now
                    && (l.msg.message_id == id || l.msg.sequence_number.to_string() == id) =>
            {
                l.until = now + lock;
                Ok(l.until)
            }
            _ => Err(BrokerError::LockLost),
        }
    }

    pub fn counts(&self) -> Counts {
        Counts {
            active: self.main.active.len(),
            scheduled: self.scheduled.len(),
            locked: self.main.locked.len(),
            dead_letter: self.dlq.active.len() + self.dlq.locked.len(),
        }
    }

    /// Dead letters (not locked ones), oldest first.
    pub fn peek_dead_letters(&self, max: usize) -> Vec<Message> {
        self.dlq.active.values().take(max).cloned().collect()
    }

    /// Removes a dead letter by sequence number.
    /// Dead letters waiting to be forwarded to another entity, taken out.
    pub(super) fn take_forwarded(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.forwarded)
    }

    /// Dead letters that cannot be forwarded stay in this entity's own dead-letter sub-queue.
    pub(super) fn keep_forwarded(&mut self) {
        for mut m in std::mem::take(&mut self.forwarded) {
            m.dead_letter_source = None;
            self.dlq.active.insert(m.sequence_number, m);
        }
    }

    pub(super) fn take_dead_letter(&mut self, seq: i64) -> Option<Message> {
        self.dlq.active.remove(&seq)
    }
}

/// Duplicate detection by `MessageId` inside a window.
#[derive(Debug, Default)]
pub(super) struct Dedup {
    seen: HashMap<String, DateTime<Utc>>,
    order: VecDeque<(DateTime<Utc>, String)>,
}

impl Dedup {
    /// True when `id` was seen within `window` (the message is then dropped).
    pub(super) fn is_duplicate(&mut self, id: &str, window: Duration, now: DateTime<Utc>) -> bool {
        while let Some((t, old)) = self.order.front() {
            if *t + window > now {
                break;
            }
            if self.seen.get(old) == Some(t) {
                self.seen.remove(old);
            }
            self.order.pop_front();
        }
        if self.seen.contains_key(id) {
            return true;
        }
        self.seen.insert(id.to_string(), now);
        self.order.push_back((now, id.to_string()));
        false
    }
}
