//! CreateImage: for plans that publish through a managed image, create the image from the accepted VHD
//! in the home region (after checking the VHD is still the one that was checked), then follow the
//! operation until `image.created`. An image of the same name that is not this run's is never used.

use std::sync::Arc;

use reqwest::Method;
use serde_json::json;

use super::{
    ingest::reject::changed_after_check,
    owned, pinned,
    step::{self, Ctx, Emit, StepError, StepFuture},
};
use crate::{
    azure::arm::{self, ids},
    domain::naming,
    events::{Cause, Check, Fact, FactType, HostCaching, ImageCreated, PublishFrom, VhdAccepted},
};

pub const NAME: &str = "CreateImage";
pub const TRIGGER: &str = "fact";
pub const HANDLES: &[FactType] = &[FactType::VhdAccepted];

pub fn step(fact: Fact, ctx: Arc<Ctx>, attempt: u32) -> StepFuture {
    Box::pin(async move { create(fact, &ctx, attempt).await })
}

async fn create(fact: Fact, ctx: &Ctx, _attempt: u32) -> Result<Vec<Emit>, StepError> {
    let accepted: VhdAccepted = fact.data().map_err(StepError::unreadable)?;
    let plan = &accepted.plan;
    if plan.publish_from != PublishFrom::ManagedImage {
        return Ok(Vec::new());
    }
    let run = fact.correlation_id().unwrap_or_default();
    let version = plan
        .version
        .parse::<naming::Version>()
        .map_err(StepError::unreadable)?;
    let name = naming::managed_image_for(&plan.image_definition, version, &run);
    let id = ids::managed_image(&plan.subscription_id, &plan.resource_group, &name);
    let subject = super::version_subject(plan);
    let data = ImageCreated {
        image_id: id.clone(),
        vhd: Some(accepted.vhd.clone()),
        plan: plan.clone(),
    };
    let cause = Cause::of(&fact);
    // A new image: when the subscription's ARM budget is low, it waits its turn.
    let hold = ctx
        .pace
        .hold_for_new_image(&ctx.arm, &plan.subscription_id)
        .await;
    if !hold.is_zero() {
        return Err(StepError::Paced(hold));
    }

    if let Some(existing) = ctx.arm.get(&id, arm::COMPUTE_IMAGES_API, &[]).await? {
        if let Err(why) = owned::ownership(&existing, &run, owned::Origin::Vhd(&accepted.vhd)) {
            return Err(owned::conflict(owned::Resource::ManagedImage, &id, &why));
        }
        match existing
            .pointer("/properties/provisioningState")
            .and_then(|v| v.as_str())
        {
            Some("Succeeded") => {
                return Ok(vec![Emit::now(ctx.fact(&cause, &subject, "", &data)?)]);
            }
            Some("Failed") => {
                // This run's failed image blocks its name: delete it and try again.
                ctx.arm
                    .write(Method::DELETE, &id, arm::COMPUTE_IMAGES_API, None)
                    .await?;
                return Err(StepError::Waiting(format!(
                    "{id} had failed; deleting it to create it again"
                )));
            }
            // Still being made by this run (a redelivered fact): fall through to the idempotent PUT, which
            // ARM answers with the operation in flight.
            _ => {}
        }
    }
    // The VHDs must still be the ones that were checked: Azure copies them now.
    let data_disks = &plan.publishing.data_disks;
    for disk in std::iter::once(&accepted.vhd).chain(data_disks.iter().map(|d| &d.vhd)) {
        if let Err(changed) = pinned::verify(ctx, disk).await? {
            return changed_after_check(ctx, &cause, disk, changed.now());
        }
    }
    let data_disks: Vec<_> = data_disks
        .iter()
        .map(|d| {
            json!({
                "lun": d.lun,
                "blobUri": d.vhd.url,
                "caching": d.host_caching.unwrap_or(HostCaching::None),
            })
        })
        .collect();
    let body = json!({
        "location": plan.location,
        "tags": owned::tags(&run, plan, owned::Origin::Vhd(&accepted.vhd)),
        "properties": {
            "hyperVGeneration": plan.hyper_v_generation,
            "storageProfile": {
                "osDisk": {
                    "osType": plan.os_type,
                    "osState": plan.os_state,
                    "blobUri": accepted.vhd.url,
                    "caching": "ReadWrite"
                },
                "dataDisks": data_disks
            }
        }
    });
    let started_at = chrono::Utc::now();
    let written = ctx
        .arm
        .write(Method::PUT, &id, arm::COMPUTE_IMAGES_API, Some(&body))
        .await?;
    tracing::info!(image = %id, status = written.status, "managed image creation started");
    let (operation, operation_poll) = written.poll().unzip();
    let first_look = ctx.look_after(&id, None, None, written.retry_after);
    let then = step::announce(&subject, &data)?;
    // Each look is one GET of the image (also the final GET); the operation is read only for Azure's
    // error if the image fails.
    let check = Check::Operation {
        url: super::resource_url(ctx, &id, arm::COMPUTE_IMAGES_API),
        resource_id: id,
        poll: arm::PollKind::Resource,
        operation,
        operation_poll: operation_poll.unwrap_or_default(),
        started_at: Some(started_at),
    };
    // Even a write that finished at once is looked at again: the final GET and the source check happen
    // in one place (the operation watch), never skipped.
    Ok(vec![ctx.follow_up(
        &cause,
        NAME,
        &subject,
        check,
        Some(then),
        1,
        ctx.deadline_from_now(),
        first_look,
    )?])
}
