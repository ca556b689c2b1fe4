//! CreateImage: for plans that publish through a managed image, create the image from the accepted VHD
//! in the home region, then follow the operation until `image.created`.

use std::sync::Arc;

use reqwest::Method;
use serde_json::json;

use super::step::{self, Ctx, Emit, StepError, StepFuture};
use crate::{
    azure::arm::{self, ids},
    domain::naming,
    events::{Cause, Check, Fact, FactType, ImageCreated, PublishFrom, VhdAccepted},
};

pub const NAME: &str = "CreateImage";
pub const TRIGGER: &str = "fact";
pub const HANDLES: &[FactType] = &[FactType::VhdAccepted];

pub fn step(fact: Fact, ctx: Arc<Ctx>, attempt: u32) -> StepFuture {
    Box::pin(async move { create(fact, &ctx, attempt).await })
}

async fn create(fact: Fact, ctx: &Ctx, _attempt: u32) -> Result<Vec<Emit>, StepError> {
    let accepted: VhdAccepted = fact.data().map_err(|e| StepError::Failed {
        code: "FactUnreadable".into(),
        message: e.to_string(),
        target: None,
        advice: "The vhd.accepted fact does not match its schema; this is a galleon defect.".into(),
    })?;
    let plan = &accepted.plan;
    if plan.publish_from != PublishFrom::ManagedImage {
        return Ok(Vec::new());
    }
    let version = plan
        .version
        .parse::<naming::Version>()
        .map_err(|e| StepError::Failed {
            code: "VersionInvalid".into(),
            message: e.to_string(),
            target: None,
            advice: "The plan carries an invalid version; this is a galleon defect.".into(),
        })?;
    let name = naming::managed_image_for(&plan.image_definition, version);
    let id = ids::managed_image(&plan.subscription_id, &plan.resource_group, &name);
    let subject = super::version_subject(plan);
    let data = ImageCreated {
        image_id: id.clone(),
        vhd: accepted.vhd.clone(),
        plan: plan.clone(),
    };
    let cause = Cause::of(&fact);

    if let Some(existing) = ctx.arm.get(&id, arm::COMPUTE_IMAGES_API, &[]).await? {
        match existing
            .pointer("/properties/provisioningState")
            .and_then(|v| v.as_str())
        {
            Some("Succeeded") => {
                return Ok(vec![Emit::now(ctx.fact(&cause, &subject, "", &data)?)]);
            }
            Some("Failed") => {
                // A failed image blocks nothing but its own name: delete it and try again.
                ctx.arm
                    .write(Method::DELETE, &id, arm::COMPUTE_IMAGES_API, None)
                    .await?;
                return Err(StepError::Transient(crate::azure::AzureError::transient(
                    "ARM",
                    "FailedImageDeleted",
                    format!("{id} had failed; deleted it to create it again"),
                )));
            }
            _ => {}
        }
    }
    let body = json!({
        "location": plan.location,
        "tags": super::tags(&fact, plan),
        "properties": {
            "hyperVGeneration": plan.hyper_v_generation,
            "storageProfile": {
                "osDisk": {
                    "osType": plan.os_type,
                    "osState": plan.os_state,
                    "blobUri": accepted.vhd.url,
                    "storageAccountType": "Standard_LRS",
                    "caching": "ReadWrite"
                },
                "dataDisks": [],
                "zoneResilient": false
            }
        }
    });
    let written = ctx
        .arm
        .write(Method::PUT, &id, arm::COMPUTE_IMAGES_API, Some(&body))
        .await?;
    tracing::info!(image = %id, status = written.status, "managed image creation started");
    if written.is_done() {
        return Ok(vec![Emit::now(ctx.fact(&cause, &subject, "", &data)?)]);
    }
    let (url, poll) = written.poll().unwrap_or_else(|| {
        (
            super::resource_url(ctx, &id, arm::COMPUTE_IMAGES_API),
            arm::PollKind::Resource,
        )
    });
    let then = step::announce(&subject, &data)?;
    let check = Check::Operation {
        url,
        resource_id: id,
        poll,
    };
    Ok(vec![ctx.follow_up(
        &cause,
        NAME,
        &subject,
        check,
        then,
        1,
        ctx.deadline_from_now(),
        ctx.next_look(written.retry_after),
    )?])
}
