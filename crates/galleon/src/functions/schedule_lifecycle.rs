//! ScheduleLifecycle: the lifecycle timer (NCRONTAB from `GALLEON_LIFECYCLE_SCHEDULE`) asks ApplyLifecycle
//! to apply the retention policy of every image definition that has one, in the default gallery and in
//! every distribution target's, so versions age out even when nothing new is published.

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
    // The default gallery, and every distribution target's: copies age out where they were made.
    let galleries = ctx.config.galleries();
    let mut emits = Vec::new();
    for (n, (sub, rg, gallery)) in galleries.iter().enumerate() {
        let names = match definitions_with_policy(&ctx, sub, rg, gallery).await {
            Ok(names) => names,
            // The default gallery unreadable fails the run (the host logs it, the next tick retries).
            Err(e) if n == 0 => return Err(Failure::new(e)),
            // A target's gallery unreadable (its tenant's consent withdrawn, say) does not stop the rest.
            Err(e) => {
                tracing::warn!(gallery = %ids::gallery(sub, rg, gallery), error = %crate::error_chain(&e), "the lifecycle timer cannot list a target gallery's image definitions; its versions are not aged this run");
                continue;
            }
        };
        for name in names {
            let definition = ids::image_definition(sub, rg, gallery, &name);
            let root = format!("lifecycle:{}:{definition}", invocation.invocation_id);
            let cause = Cause::root(&root, Some(crate::events::new_traceparent(&root)));
            let data = LifecycleRequested {
                image_definition_id: definition,
                reason: "schedule".into(),
                requested_at: invocation.host_time.unwrap_or_else(Utc::now),
            };
            let subject = format!("galleries/{gallery}/images/{name}");
            emits.push(Emit::now(
                ctx.fact(&cause, &subject, "", &data)
                    .map_err(|e| Failure::new(format!("{e:?}")))?,
            ));
        }
    }
    tracing::info!(
        definitions = emits.len(),
        "the lifecycle timer asks for retention"
    );
    step::send(&ctx, &emits).await?;
    Ok(Output::default())
}

/// The image definitions of a gallery that a retention policy names or covers (one paged read). A
/// definition named in the policy but not made yet has nothing to age.
async fn definitions_with_policy(
    ctx: &Ctx,
    sub: &str,
    rg: &str,
    gallery: &str,
) -> Result<Vec<String>, crate::azure::AzureError> {
    let listed = ctx
        .arm
        .list(
            &format!("{}/images", ids::gallery(sub, rg, gallery)),
            arm::GALLERY_API,
            &[],
            50,
        )
        .await?;
    Ok(listed
        .iter()
        .filter_map(|d| d.get("name").and_then(Value::as_str))
        .filter(|name| ctx.config.retention.for_definition(name).is_some())
        .map(str::to_owned)
        .collect())
}
