//! Fault injection for the local Service Bus: an outage of N seconds during which every REST call (send,
//! receive, complete, abandon, renew, schedule) answers 503 as the service does when it is unavailable.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// What the service says while it is unavailable (in its XML error body, with the tracking id).
pub const DETAIL: &str = "The service is unavailable. Please retry the operation.";

/// The outage switch, shared by every request. Cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct Outage {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    until: Option<Instant>,
    /// Outages started so far.
    outages: u64,
    /// Requests answered 503 so far.
    refused: u64,
}

impl Outage {
    /// Makes the service unavailable for `length` from now (an outage already under way is replaced).
    pub fn begin(&self, length: Duration) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.until = Some(Instant::now() + length);
        s.outages += 1;
    }

    /// Ends an outage now.
    pub fn end(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).until = None;
    }

    /// Whether a request arriving now is refused; a refused one is counted.
    pub fn refuses(&self) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let down = s.until.is_some_and(|u| Instant::now() < u);
        if down {
            s.refused += 1;
        }
        down
    }

    /// `{"active", "remainingSeconds", "outages", "refused"}` for the admin endpoint.
    pub fn status(&self) -> Value {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let left = s
            .until
            .map(|u| u.saturating_duration_since(Instant::now()))
            .unwrap_or_default();
        json!({
            "active": !left.is_zero(),
            "remainingSeconds": left.as_secs_f64(),
            "outages": s.outages,
            "refused": s.refused,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_refuses_until_it_ends_and_counts_what_it_refused() {
        let o = Outage::default();
        assert!(!o.refuses(), "no outage at first");
        o.begin(Duration::from_secs(60));
        assert!(o.refuses() && o.refuses());
        assert_eq!(o.status()["active"], true);
        o.end();
        assert!(!o.refuses());
        let status = o.status();
        assert_eq!(
            (status["outages"].clone(), status["refused"].clone()),
            (json!(1), json!(2))
        );
        o.begin(Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(5));
        assert!(!o.refuses(), "an outage ends on its own");
    }
}
