//! ReplicateVersion: the version is usable at home; add every other target region in one PATCH and watch
//! replication region by region (each region is announced as it completes, `image.ready` when all are).

use std::sync::Arc;

use chrono::Utc;
use reqwest::Method;
use serde_json::json;

use super::step::{self, Ctx, Emit, StepError, StepFuture};
use crate::{
    azure::arm::{self, ids},
    events::{Cause, Check, Fact, FactType, ImageReady, VersionPublished},
};

pub const NAME: &str = "ReplicateVersion";
pub const TRIGGER: &str = "fact";
pub const HANDLES: &[FactType] = &[FactType::VersionPublished];

pub fn step(fact: Fact, ctx: Arc<Ctx>, attempt: u32) -> StepFuture {
    Box::pin(async move { replicate(fact, &ctx, attempt).await })
}

async fn replicate(fact: Fact, ctx: &Ctx, _attempt: u32) -> Result<Vec<Emit>, StepError> {
    let published: VersionPublished = fact.data().map_err(|e| StepError::Failed {
        code: "FactUnreadable".into(),
        message: e.to_string(),
        target: None,
        advice: "The fact does not match its schema; this is a galleon defect.".into(),
    })?;
    let plan = &published.plan;
    if plan.target_regions.len() > 1 {
        let body =
            json!({"properties": {"publishingProfile": {"targetRegions": plan.target_regions}}});
        let written = ctx
            .arm
            .write(
                Method::PATCH,
                &published.version_id,
                arm::GALLERY_API,
                Some(&body),
            )
            .await?;
        tracing::info!(version = %published.version_id, regions = plan.target_regions.len(), status = written.status, "added the target regions");
    }
    let subject = super::version_subject(plan);
    let ready = ImageReady {
        version_id: published.version_id.clone(),
        image_definition_id: ids::image_definition(
            &plan.subscription_id,
            &plan.resource_group,
            &plan.gallery,
            &plan.image_definition,
        ),
        gallery_id: ids::gallery(&plan.subscription_id, &plan.resource_group, &plan.gallery),
        version: plan.version.clone(),
        regions: plan.target_regions.clone(),
        source_vhd: published.vhd.clone(),
        ready_at: Utc::now(),
    };
    let check = Check::Replication {
        version_id: published.version_id.clone(),
        announced_regions: Vec::new(),
    };
    let then = step::announce(&subject, &ready)?;
    // The first look comes soon: the home region is usually complete already.
    Ok(vec![ctx.follow_up(
        &Cause::of(&fact),
        NAME,
        &subject,
        check,
        then,
        1,
        ctx.deadline_from_now(),
        ctx.next_look(None),
    )?])
}
