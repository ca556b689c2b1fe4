//! Distribute: once a version is ready in every region, a copy goes to every target gallery in other
//! subscriptions (`GALLEON_DISTRIBUTION`), made from the version itself. Each target is its own
//! `image.distribution.requested`, published and replicated on its own with its own facts, so one
//! target's failure never touches another's.

use std::sync::Arc;

use serde_json::{Value, json};

use super::step::{Ctx, Emit, StepError, StepFuture};
use crate::{
    azure::arm,
    domain::distribution,
    events::{Cause, DistributionRequested, Fact, FactType, ImageReady, Plan},
};

pub const NAME: &str = "Distribute";
pub const TRIGGER: &str = "fact";
pub const HANDLES: &[FactType] = &[FactType::ImageReady];

pub fn step(fact: Fact, ctx: Arc<Ctx>, _attempt: u32) -> StepFuture {
    Box::pin(async move { distribute(fact, &ctx).await })
}

/// The ready version's plan, as its image definition and the ready fact tell it.
fn source_plan(ready: &ImageReady, definition: &Value) -> Result<Plan, StepError> {
    let parts: Vec<&str> = ready
        .version_id
        .trim_start_matches('/')
        .split('/')
        .collect();
    let part = |n: usize| parts.get(n).copied().unwrap_or_default();
    let props = definition
        .get("properties")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let plan = json!({
        "subscriptionId": part(1), "resourceGroup": part(3), "gallery": part(7), "imageDefinition": part(9),
        "version": ready.version,
        "location": ready.regions.first().map(|r| r.name.clone()).unwrap_or_default(),
        "osType": props.get("osType"), "osState": props.get("osState"),
        "hyperVGeneration": props.get("hyperVGeneration").cloned().unwrap_or_else(|| json!("V1")),
        "identifier": props.get("identifier"),
        "targetRegions": ready.regions,
        "publishFrom": "managedImage",
        "storageAccountId": "",
    });
    serde_json::from_value(plan)
        .map_err(|e| StepError::unreadable(format!("the source definition: {e}")))
}

async fn distribute(fact: Fact, ctx: &Ctx) -> Result<Vec<Emit>, StepError> {
    let ready: ImageReady = fact.data().map_err(StepError::unreadable)?;
    // A copy is not distributed again; only what the default gallery publishes is.
    if ready.distributed_from.is_some() || ctx.config.distribution.is_empty() {
        return Ok(Vec::new());
    }
    let definition = ctx
        .arm
        .get(&ready.image_definition_id, arm::GALLERY_API, &[])
        .await?
        .ok_or_else(|| {
            StepError::failed(
                "ResourceNotFound",
                format!("{} is gone", ready.image_definition_id),
                Some(ready.image_definition_id.clone()),
                "The image definition was deleted after its version was ready; publish again.",
            )
        })?;
    let source = source_plan(&ready, &definition)?;
    let mut emits = Vec::new();
    for target in &ctx.config.distribution {
        let plan = distribution::target_plan(&source, target, &ready.version_id);
        // An operator's replication of the version again ends in an image.ready too: a target that has
        // its copy already (from the first image.ready) keeps it; one that has none (the first run ended
        // partially ready) gets it now.
        if ready.replicated_again {
            let copy = arm::ids::image_version(
                &plan.subscription_id,
                &plan.resource_group,
                &plan.gallery,
                &plan.image_definition,
                &plan.version,
            );
            if ctx.arm.get(&copy, arm::GALLERY_API, &[]).await?.is_some() {
                continue;
            }
        }
        let data = DistributionRequested {
            source_version_id: ready.version_id.clone(),
            plan,
            tenant_id: target.tenant_id.clone(),
        };
        let cause = Cause {
            id: format!("{}:{}", fact.id(), target.name()),
            correlation_id: fact
                .correlation_id()
                .unwrap_or_else(|| fact.id().to_owned()),
            traceparent: fact.traceparent(),
        };
        tracing::info!(version = %ready.version_id, target = %target.name(), "distributing a copy");
        emits.push(Emit::now(ctx.fact(
            &cause,
            &super::version_subject(&data.plan),
            "",
            &data,
        )?));
    }
    Ok(emits)
}
