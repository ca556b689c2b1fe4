//! What this instance has recently seen exist in Azure (galleries, image definitions, storage accounts), kept for a
//! bounded time so every publish does not re-read what rarely changes. Forgotten on expiry, and by the
//! caller when Azure says the resource is gone or conflicts. Functions keep no other state.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;

/// Resources seen to exist, by ARM id (case-insensitive, as ARM ids are).
#[derive(Debug, Clone)]
pub struct Known {
    ttl: Duration,
    seen: Arc<Mutex<HashMap<String, (Instant, Value)>>>,
}

impl Known {
    /// `ttl` zero keeps nothing.
    pub fn new(ttl: Duration) -> Known {
        Known {
            ttl,
            seen: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn key(id: &str) -> String {
        id.to_ascii_lowercase()
    }

    /// The resource as last seen, if that was less than the time to keep ago.
    pub fn get(&self, id: &str) -> Option<Value> {
        self.get_at(id, Instant::now())
    }

    fn get_at(&self, id: &str, now: Instant) -> Option<Value> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        match seen.get(&Self::key(id)) {
            Some((at, value)) if now.duration_since(*at) < self.ttl => Some(value.clone()),
            Some(_) => {
                seen.remove(&Self::key(id));
                None
            }
            None => None,
        }
    }

    /// Remembers that `id` exists as `value`.
    pub fn put(&self, id: &str, value: &Value) {
        if self.ttl.is_zero() {
            return;
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.insert(Self::key(id), (Instant::now(), value.clone()));
    }

    /// Forgets `id` (Azure said it is gone, or conflicts with what was remembered).
    pub fn forget(&self, id: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.remove(&Self::key(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kept_for_a_bounded_time_and_forgotten_on_demand() {
        let known = Known::new(Duration::from_secs(60));
        let id = "/subscriptions/s/resourceGroups/R/providers/Microsoft.Compute/galleries/G";
        assert_eq!(known.get(id), None);
        known.put(id, &json!({"name": "G"}));
        assert_eq!(
            known.get(&id.to_ascii_lowercase()),
            Some(json!({"name": "G"})),
            "ARM ids compare case-insensitively"
        );
        let later = Instant::now() + Duration::from_secs(61);
        assert_eq!(known.get_at(id, later), None, "expired");
        known.put(id, &json!({"name": "G"}));
        known.forget(id);
        assert_eq!(known.get(id), None);
        let off = Known::new(Duration::ZERO);
        off.put(id, &json!({}));
        assert_eq!(off.get(id), None, "a zero time keeps nothing");
    }
}
