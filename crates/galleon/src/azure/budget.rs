//! What Resource Manager's answers said is left of its budgets per subscription: every answer carries
//! `x-ms-ratelimit-remaining-subscription-reads|writes`, and a 429 says none is left. Kept in memory by
//! the ARM client; [`crate::pace`] decides from it and shares it between instances.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use reqwest::{Method, StatusCode, header::HeaderMap};

use crate::domain::pace::Seen;

/// ARM's classes of requests, each with its own token bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Reads,
    Writes,
}

impl Class {
    pub fn of(method: &Method) -> Option<Class> {
        match *method {
            Method::GET | Method::HEAD => Some(Class::Reads),
            // Deletes have a bucket of their own, which galleon hardly touches.
            Method::DELETE => None,
            _ => Some(Class::Writes),
        }
    }

    fn header(self) -> &'static str {
        match self {
            Class::Reads => "x-ms-ratelimit-remaining-subscription-reads",
            Class::Writes => "x-ms-ratelimit-remaining-subscription-writes",
        }
    }
}

/// What was left, and when ARM said so.
type Word = (f64, Instant);

/// The last word per subscription and class, and the most ever said to be left.
#[derive(Debug, Clone, Default)]
pub struct Budgets {
    last: Arc<Mutex<HashMap<(String, Class), Word>>>,
    peak: Arc<Mutex<HashMap<(String, Class), f64>>>,
}

/// The subscription a Resource Manager path is about (`/subscriptions/{id}/…`).
pub fn subscription_of(path: &str) -> Option<&str> {
    let mut parts = path.trim_start_matches('/').split('/');
    match (parts.next(), parts.next()) {
        (Some(s), Some(id)) if s.eq_ignore_ascii_case("subscriptions") && !id.is_empty() => {
            Some(id)
        }
        _ => None,
    }
}

impl Budgets {
    fn key(subscription: &str, class: Class) -> (String, Class) {
        (subscription.to_ascii_lowercase(), class)
    }

    /// Takes note of one answer to `method` on `path`.
    pub fn answered(&self, method: &Method, path: &str, status: StatusCode, headers: &HeaderMap) {
        let (Some(class), Some(subscription)) = (Class::of(method), subscription_of(path)) else {
            return;
        };
        if status == StatusCode::TOO_MANY_REQUESTS {
            // Nothing is left; but a refusal says nothing of how big the bucket is (no peak).
            self.note(subscription, class, 0.0, Duration::ZERO);
            return;
        }
        let remaining = headers
            .get(class.header())
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|n| n.is_finite() && *n >= 0.0);
        if let Some(remaining) = remaining {
            self.note(subscription, class, remaining, Duration::ZERO);
            let mut peak = self.peak.lock().unwrap_or_else(|p| p.into_inner());
            let p = peak.entry(Self::key(subscription, class)).or_insert(0.0);
            *p = p.max(remaining);
        }
    }

    /// The most ARM ever said was left for `subscription` and `class` (a bucket holds at least this
    /// plus the call that was answered).
    pub fn peak(&self, subscription: &str, class: Class) -> Option<f64> {
        let peak = self.peak.lock().unwrap_or_else(|p| p.into_inner());
        peak.get(&Self::key(subscription, class)).copied()
    }

    /// Takes note that `remaining` were left `age` ago (from an answer, or from another instance), unless
    /// a newer word is already known.
    pub fn note(&self, subscription: &str, class: Class, remaining: f64, age: Duration) {
        let at = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let entry = last
            .entry(Self::key(subscription, class))
            .or_insert((remaining, at));
        if at >= entry.1 {
            *entry = (remaining, at);
        }
    }

    /// The last word for `subscription` and `class`, with its age.
    pub fn seen(&self, subscription: &str, class: Class) -> Option<Seen> {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.get(&Self::key(subscription, class))
            .map(|(remaining, at)| Seen {
                remaining: *remaining,
                age: at.elapsed(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    const SUB: &str = "8c3e1f7a-2b4d-4e5f-9a6b-7c8d9e0f1a2b";

    fn headers(name: &'static str, value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn answers_tell_what_is_left_per_subscription_and_class() {
        let b = Budgets::default();
        let path = format!(
            "/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/galleries/g"
        );
        b.answered(
            &Method::GET,
            &path,
            StatusCode::OK,
            &headers("x-ms-ratelimit-remaining-subscription-reads", "241"),
        );
        b.answered(
            &Method::PUT,
            &path,
            StatusCode::CREATED,
            &headers("x-ms-ratelimit-remaining-subscription-writes", "17"),
        );
        assert_eq!(b.seen(SUB, Class::Reads).map(|s| s.remaining), Some(241.0));
        assert_eq!(b.peak(SUB, Class::Reads), Some(241.0));
        assert_eq!(
            b.seen(&SUB.to_uppercase(), Class::Writes)
                .map(|s| s.remaining),
            Some(17.0)
        );
        // A 429 says nothing is left, whatever its headers.
        b.answered(
            &Method::PATCH,
            &path,
            StatusCode::TOO_MANY_REQUESTS,
            &HeaderMap::new(),
        );
        assert_eq!(b.seen(SUB, Class::Writes).map(|s| s.remaining), Some(0.0));
        assert_eq!(b.peak(SUB, Class::Writes), Some(17.0));
        // A subscription only ever heard refusing has no known size.
        b.answered(
            &Method::PUT,
            "/subscriptions/refusing/resourceGroups/rg",
            StatusCode::TOO_MANY_REQUESTS,
            &headers("x-ms-ratelimit-remaining-subscription-writes", "0"),
        );
        assert_eq!(b.peak("refusing", Class::Writes), None);
        assert_eq!(
            b.seen("refusing", Class::Writes).map(|s| s.remaining),
            Some(0.0)
        );
        // No header, another subscription, a delete, a path without a subscription: nothing learnt.
        b.answered(
            &Method::GET,
            "/subscriptions/other/x",
            StatusCode::OK,
            &HeaderMap::new(),
        );
        b.answered(
            &Method::DELETE,
            &path,
            StatusCode::ACCEPTED,
            &headers("x-ms-ratelimit-remaining-subscription-deletes", "3"),
        );
        b.answered(
            &Method::GET,
            "/providers/Microsoft.Compute/operations",
            StatusCode::OK,
            &headers("x-ms-ratelimit-remaining-subscription-reads", "1"),
        );
        assert_eq!(b.seen("other", Class::Reads), None);
        assert_eq!(b.seen(SUB, Class::Reads).map(|s| s.remaining), Some(241.0));
    }

    #[test]
    fn an_older_word_does_not_replace_a_newer_one() {
        let b = Budgets::default();
        b.note(SUB, Class::Writes, 5.0, Duration::ZERO);
        b.note(SUB, Class::Writes, 150.0, Duration::from_secs(10));
        assert_eq!(b.seen(SUB, Class::Writes).map(|s| s.remaining), Some(5.0));
    }

    #[test]
    fn subscriptions_come_from_resource_paths_only() {
        assert_eq!(
            subscription_of(&format!("/subscriptions/{SUB}/resourceGroups/rg")),
            Some(SUB)
        );
        assert_eq!(subscription_of("subscriptions/abc"), Some("abc"));
        assert_eq!(subscription_of("/providers/Microsoft.Compute"), None);
        assert_eq!(subscription_of("/subscriptions/"), None);
    }
}
