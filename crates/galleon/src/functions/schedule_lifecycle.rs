//! ScheduleLifecycle: the lifecycle timer (NCRONTAB from `GALLEON_LIFECYCLE_SCHEDULE`) asks ApplyLifecycle
//! to apply the retention policy of every image definition in the default gallery that has one, so
//! versions age out even when nothing new is published.

use std::sync::Arc;

use chrono::Utc;
use serde_json::Value;

use super::step::{self, Ctx, Emit};
use crate::{
    azure::arm::{self, ids},
    events::{Cause, LifecycleRequested},
    host::{Failure, Invocation, Output, Trigger},
};

pub const NAME: &str = "ScheduleLifecycle";
pub const TRIGGER: &str = "timer";

pub async fn run(invocation: Invocation, ctx: Arc<Ctx>) -> Result<Output, Failure> {
    let Trigger::Timer(_) = invocation.trigger else {
        return Err(Failure::new(
            "ScheduleLifecycle is bound to a timer trigger",
        ));
    };
    let retention = &ctx.config.retention;
    if retention.is_empty() {
        tracing::info!("the lifecycle timer fired, but GALLEON_RETENTION names no policy");
        return Ok(Output::default());
    }
    let p = &ctx.config.policy;
    let gallery = ids::gallery(&p.subscription_id, &p.resource_group, &p.gallery);
    let mut names: Vec<String> = retention.definitions.keys().cloned().collect();
    if retention.default.is_some() {
        // Every definition of the default gallery (one paged read).
        let listed = ctx
            .arm
            .list(&format!("{gallery}/images"), arm::GALLERY_API, &[], 50)
            .await
            .map_err(Failure::new)?;
        for name in listed
            .iter()
            .filter_map(|d| d.get("name").and_then(Value::as_str))
        {
            if !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                names.push(name.to_owned());
            }
        }
    }
    let mut emits = Vec::new();
    for name in names {
        let definition =
            ids::image_definition(&p.subscription_id, &p.resource_group, &p.gallery, &name);
        let root = format!("lifecycle:{}:{definition}", invocation.invocation_id);
        let cause = Cause::root(&root, Some(crate::events::new_traceparent(&root)));
        let data = LifecycleRequested {
            image_definition_id: definition,
            reason: "schedule".into(),
            requested_at: invocation.host_time.unwrap_or_else(Utc::now),
        };
        let subject = format!("galleries/{}/images/{name}", p.gallery);
        emits.push(Emit::now(
            ctx.fact(&cause, &subject, "", &data)
                .map_err(|e| Failure::new(format!("{e:?}")))?,
        ));
    }
    tracing::info!(
        definitions = emits.len(),
        "the lifecycle timer asks for retention"
    );
    step::send(&ctx, &emits).await?;
    Ok(Output::default())
}
