//! One pace of Resource Manager calls per subscription, shared by every instance. Each instance learns
//! what is left of ARM's token buckets from every answer (`crate::azure::budget`); when the budget runs
//! low it writes what it saw to a small note in the state container (`pace/<subscription>.json`), and an
//! instance that has not heard from ARM lately reads that note before starting a new image. New images
//! then wait their turn (rescheduled, spread over the wait) while images under way go on, and the looks
//! of those under way are pushed further out. docs/pace.md says why it is built this way.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    azure::{
        arm::Arm,
        budget::{Class, subscription_of},
    },
    domain::pace::{Bucket, Priority, Seen, as_seen, hold_off, spread},
    ledger::Ledger,
};

/// An instance's word older than this is refreshed from the shared note before a new image starts.
const STALE: Duration = Duration::from_secs(2);
/// The shared note is written at most this often per instance and subscription.
const WRITE_EVERY: Duration = Duration::from_secs(1);
/// ARM calls a new image spends early (version check, PUT, first look; PATCH): what its hold reserves.
const NEW_IMAGE_READS: f64 = 3.0;
const NEW_IMAGE_WRITES: f64 = 2.0;

/// The shared note: what an instance last heard ARM say was left, per class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Note {
    pub reads: Option<Word>,
    pub writes: Option<Word>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Word {
    pub remaining: f64,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Pace {
    reads: Bucket,
    writes: Bucket,
    ledger: Ledger,
    /// When this instance last read / wrote the shared note, per subscription.
    read_at: Arc<Mutex<HashMap<String, Instant>>>,
    written_at: Arc<Mutex<HashMap<String, Instant>>>,
}

fn due(map: &Mutex<HashMap<String, Instant>>, subscription: &str, every: Duration) -> bool {
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    let key = subscription.to_ascii_lowercase();
    match map.get(&key) {
        Some(at) if at.elapsed() < every => false,
        _ => {
            map.insert(key, Instant::now());
            true
        }
    }
}

fn note_name(subscription: &str) -> String {
    let safe: String = subscription
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(64)
        .collect();
    format!("pace/{}.json", safe.to_ascii_lowercase())
}

impl Pace {
    pub fn new(reads: Bucket, writes: Bucket, ledger: Ledger) -> Pace {
        Pace {
            reads,
            writes,
            ledger,
            read_at: Arc::default(),
            written_at: Arc::default(),
        }
    }

    fn hold(
        &self,
        arm: &Arm,
        subscription: &str,
        reads: f64,
        writes: f64,
        who: Priority,
    ) -> Duration {
        let b = &arm.budgets;
        let hold = |bucket, class, cost| {
            hold_off(
                as_seen(bucket, b.peak(subscription, class)),
                b.seen(subscription, class),
                cost,
                who,
            )
        };
        hold(self.reads, Class::Reads, reads).max(hold(self.writes, Class::Writes, writes))
    }

    /// How long a look or step of an image under way on `resource_id` should wait beyond its own time.
    pub fn hold_for_look(&self, arm: &Arm, resource_id: &str) -> Duration {
        match subscription_of(resource_id) {
            Some(sub) => self.hold(arm, sub, 1.0, 0.0, Priority::UnderWay),
            None => Duration::ZERO,
        }
    }

    /// How long a new image in `subscription` waits before its first write: zero while the budget has
    /// room; otherwise its turn, spread over the wait so the waiting images do not return at once.
    pub async fn hold_for_new_image(&self, arm: &Arm, subscription: &str) -> Duration {
        let fresh = |class| {
            arm.budgets
                .seen(subscription, class)
                .is_some_and(|s: Seen| s.age < STALE)
        };
        if !(fresh(Class::Reads) && fresh(Class::Writes)) && due(&self.read_at, subscription, STALE)
        {
            self.read_shared(arm, subscription).await;
        }
        let hold = self.hold(
            arm,
            subscription,
            NEW_IMAGE_READS,
            NEW_IMAGE_WRITES,
            Priority::NewImage,
        );
        if hold.is_zero() {
            return hold;
        }
        self.write_shared(arm, subscription).await;
        // A random place in the wait (a v4 UUID is 122 random bits).
        let place = (uuid::Uuid::new_v4().as_u128() >> 75) as f64 / (1u64 << 53) as f64;
        spread(hold, place)
    }

    async fn read_shared(&self, arm: &Arm, subscription: &str) {
        let note = match self.ledger.read_note(&note_name(subscription)).await {
            Ok(Some(bytes)) => serde_json::from_slice::<Note>(&bytes).ok(),
            Ok(None) => None,
            Err(e) => {
                tracing::debug!(error = %e, "could not read the shared pace note; going by this instance's own");
                None
            }
        };
        let Some(note) = note else { return };
        let now = Utc::now();
        for (class, word) in [(Class::Reads, note.reads), (Class::Writes, note.writes)] {
            if let Some(w) = word {
                let age = (now - w.at).to_std().unwrap_or_default();
                arm.budgets.note(subscription, class, w.remaining, age);
            }
        }
    }

    async fn write_shared(&self, arm: &Arm, subscription: &str) {
        if !due(&self.written_at, subscription, WRITE_EVERY) {
            return;
        }
        let now = Utc::now();
        let word = |class| {
            arm.budgets.seen(subscription, class).map(|s: Seen| Word {
                remaining: s.remaining,
                at: now - chrono::Duration::from_std(s.age).unwrap_or_default(),
            })
        };
        let note = Note {
            reads: word(Class::Reads),
            writes: word(Class::Writes),
        };
        let body = Bytes::from(serde_json::to_vec(&note).unwrap_or_default());
        if let Err(e) = self.ledger.write_note(&note_name(subscription), body).await {
            tracing::debug!(error = %e, "could not share the pace; other instances learn it from ARM");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn note_names_are_safe_paths() {
        assert_eq!(
            note_name("8C3E1F7A-2b4d-4e5f-9a6b-7c8d9e0f1a2b"),
            "pace/8c3e1f7a-2b4d-4e5f-9a6b-7c8d9e0f1a2b.json"
        );
        assert_eq!(note_name("../../x"), "pace/x.json");
    }

    #[test]
    fn the_note_is_read_and_written_at_most_so_often() {
        let map = Mutex::new(HashMap::new());
        assert!(due(&map, "a", Duration::from_secs(60)));
        assert!(!due(&map, "A", Duration::from_secs(60)));
        assert!(due(&map, "b", Duration::from_secs(60)));
        assert!(due(&map, "a", Duration::ZERO));
    }
}
