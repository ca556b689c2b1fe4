//! The clients and settings a step acts through, and what it builds with them: its facts, its
//! follow-ups and when to look again.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};

use super::step_error::StepError;
use crate::{
    azure::{arm::Arm, blob::Blobs, bus::Bus},
    config::Config,
    events::{Announce, Cause, Check, Fact, FollowUp, Payload},
    ledger::Ledger,
};

/// The clients and settings a step acts through.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub config: Arc<Config>,
    pub arm: Arm,
    pub blobs: Blobs,
    pub bus: Bus,
    pub ledger: Ledger,
    /// Every run's facts, for status and timelines.
    pub journal: crate::journal::Journal,
    /// Galleries and definitions this instance saw exist recently.
    pub known: crate::known::Known,
    /// The pace of ARM calls per subscription, shared by the instances.
    pub pace: crate::pace::Pace,
}

/// A fact to send, now or at a given time.
#[derive(Debug, Clone)]
pub struct Emit {
    pub fact: Fact,
    pub at: Option<DateTime<Utc>>,
}

impl Emit {
    pub fn now(fact: Fact) -> Emit {
        Emit { fact, at: None }
    }
}

impl Ctx {
    pub fn instance(&self) -> &str {
        &self.config.instance
    }

    /// Builds a fact caused by `cause`.
    pub fn fact<P: Payload>(
        &self,
        cause: &Cause,
        subject: &str,
        discriminator: &str,
        data: &P,
    ) -> Result<Fact, StepError> {
        self.fact_at(
            cause,
            subject,
            discriminator,
            data,
            super::handled_at::now(),
        )
    }

    /// Builds a fact caused by `cause` at time `at`.
    pub fn fact_at<P: Payload>(
        &self,
        cause: &Cause,
        subject: &str,
        discriminator: &str,
        data: &P,
        at: DateTime<Utc>,
    ) -> Result<Fact, StepError> {
        Fact::new(self.instance(), cause, subject, discriminator, data, at)
            .map_err(StepError::unreadable)
    }

    /// When to look again: Azure's `Retry-After` if longer than galleon's own interval.
    pub fn next_look(&self, retry_after: Option<Duration>) -> DateTime<Utc> {
        let wait = retry_after
            .unwrap_or(self.config.follow_up)
            .max(self.config.follow_up.min(Duration::from_secs(1)));
        Utc::now()
            + chrono::Duration::from_std(wait).unwrap_or_else(|_| chrono::Duration::seconds(30))
    }

    /// When to look again at an operation on `resource_id` started at `started_at` (now when unknown) and
    /// expected to take `expected`: spaced by what it needs ([`crate::domain::looks`]), never before
    /// Azure's `Retry-After`, and later still while the subscription's ARM budget is low.
    pub fn look_after(
        &self,
        resource_id: &str,
        started_at: Option<DateTime<Utc>>,
        expected: Option<Duration>,
        retry_after: Option<Duration>,
    ) -> DateTime<Utc> {
        let now = Utc::now();
        let elapsed = started_at
            .and_then(|t| (now - t).to_std().ok())
            .unwrap_or_default();
        let wait = crate::domain::looks::next_look_wait(
            elapsed,
            expected,
            retry_after,
            self.config.follow_up,
        ) + self.pace.hold_for_look(&self.arm, resource_id);
        now + chrono::Duration::from_std(wait).unwrap_or_else(|_| chrono::Duration::seconds(30))
    }

    /// A follow-up: look at `check` at `at`, then announce `then`.
    #[allow(clippy::too_many_arguments)]
    pub fn follow_up(
        &self,
        cause: &Cause,
        step: &str,
        subject: &str,
        check: Check,
        then: Option<Announce>,
        attempt: u32,
        deadline: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<Emit, StepError> {
        let data = FollowUp {
            step: step.to_owned(),
            check,
            attempt,
            deadline,
            then,
        };
        let fact = self.fact(cause, subject, &format!("{step}:{attempt}"), &data)?;
        Ok(Emit { fact, at: Some(at) })
    }

    pub fn deadline_from_now(&self) -> DateTime<Utc> {
        Utc::now()
            + chrono::Duration::from_std(self.config.step_deadline)
                .unwrap_or_else(|_| chrono::Duration::hours(6))
    }
}
