//! ScheduleBuilds: the timer (NCRONTAB from `GALLEON_BUILD_SCHEDULE`, docs/schedules.md) asks for a
//! rebuild of every template galleon builds. Each firing is its own request; BuildImage runs a template
//! once however many requests find it running.

use std::sync::Arc;

use chrono::Utc;

use super::{
    build_image,
    step::{self, Ctx, Emit},
};
use crate::{
    events::{BuildReason, BuildRequested, Cause},
    host::{Failure, Invocation, Output, Trigger},
};

pub const NAME: &str = "ScheduleBuilds";
pub const TRIGGER: &str = "timer";

pub async fn run(invocation: Invocation, ctx: Arc<Ctx>) -> Result<Output, Failure> {
    let Trigger::Timer(tick) = invocation.trigger else {
        return Err(Failure::new("ScheduleBuilds is bound to a timer trigger"));
    };
    if ctx.config.builds.is_empty() {
        tracing::info!(
            "the schedule fired, but no templates are configured (GALLEON_BUILDS_FILE, GALLEON_BUILD_TEMPLATES)"
        );
        return Ok(Output::default());
    }
    let mut emits = Vec::new();
    for entry in &ctx.config.builds {
        // A retried invocation asks again with the same fact ids, which duplicate detection drops.
        let root = format!(
            "schedule:{}:{}",
            invocation.invocation_id, entry.template_id
        );
        let traceparent = invocation
            .traceparent
            .clone()
            .or_else(|| Some(crate::events::new_traceparent(&root)));
        let cause = Cause::root(&root, traceparent);
        let data = BuildRequested {
            template_id: entry.template_id.clone(),
            reason: BuildReason::Schedule,
            requested_by: Some("timer".into()),
            note: tick
                .is_past_due
                .then(|| "the timer fired late (past due)".to_owned()),
            force: false,
            requested_at: invocation.host_time.unwrap_or_else(Utc::now),
        };
        let fact = ctx
            .fact(&cause, &build_image::subject(&entry.template_id), "", &data)
            .map_err(|e| Failure::new(format!("{e:?}")))?;
        emits.push(Emit::now(fact));
    }
    tracing::info!(
        templates = emits.len(),
        past_due = tick.is_past_due,
        "the schedule asks for rebuilds"
    );
    step::send(&ctx, &emits).await?;
    Ok(Output::default())
}
