//! When the fact being handled was first handled: the time the facts a step makes are stamped with, so
//! a redelivery after a crash sends the very same facts (same id, same content), as CloudEvents asks.

use std::{cell::Cell, future::Future};

use chrono::{DateTime, Utc};

/// The first handling's time, and how many stamps were handed out since.
struct Stamps {
    first_handled: DateTime<Utc>,
    given: Cell<u32>,
}

tokio::task_local! {
    static STAMPS: Stamps;
}

/// The time to stamp a fact with: when its cause was first handled, one microsecond later for each
/// stamp before it (facts keep the order they were made in, and a redelivery that makes the same facts
/// in the same order stamps them alike); now outside a handled fact (an HTTP request, a timer, a test).
pub fn now() -> DateTime<Utc> {
    STAMPS
        .try_with(|s| {
            let n = s.given.get();
            s.given.set(n.saturating_add(1));
            s.first_handled + chrono::Duration::microseconds(i64::from(n))
        })
        .unwrap_or_else(|_| Utc::now())
}

/// Runs `future` with facts stamped from `first_handled`.
pub async fn scope<F: Future>(first_handled: DateTime<Utc>, future: F) -> F::Output {
    let stamps = Stamps {
        first_handled,
        given: Cell::new(0),
    };
    STAMPS.scope(stamps, future).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn facts_made_while_handling_carry_the_first_handling_time_in_order() {
        let first = Utc::now() - chrono::Duration::minutes(3);
        let handle = || async {
            let a = now();
            tokio::task::yield_now().await;
            (a, now())
        };
        let once = scope(first, handle()).await;
        let again = scope(first, handle()).await;
        assert_eq!(once, again, "a redelivery stamps alike");
        assert_eq!(once.0, first);
        assert_eq!(
            once.1 - once.0,
            chrono::Duration::microseconds(1),
            "in order"
        );
        assert!(now() > first, "outside, it is now");
    }
}
