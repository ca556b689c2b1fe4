//! PublishVersion: make the gallery and image definition when missing, then create the image version in
//! its home region only (replication to the other regions comes next, region by region). Publishes from
//! the managed image (`image.created`) or straight from the VHD (`vhd.accepted` with `publishFrom: vhd`).

use std::sync::Arc;

use reqwest::Method;
use serde_json::{Value, json};

use super::{
    ingest::reject::changed_after_check,
    owned, pinned,
    step::{self, Ctx, Emit, StepError, StepFuture},
};
use crate::{
    azure::arm::{self, ids},
    domain::features,
    events::{
        BlobRef, Cause, Check, DistributionRequested, Fact, FactType, ImageCreated, Plan,
        PublishFrom, TargetRegion, VersionPublished, VhdAccepted,
    },
};

/// A target gallery's image definition as a copy of the source version's definition: the same OS,
/// generation, identifier, features and descriptions, so the copy is the same image.
async fn copied_definition(
    ctx: &Ctx,
    source_version: &str,
    plan: &Plan,
) -> Result<Value, StepError> {
    let source = source_version
        .rsplit_once("/versions/")
        .map_or(source_version, |(definition, _)| definition);
    let found = ctx
        .arm
        .get(source, arm::GALLERY_API, &[])
        .await?
        .ok_or_else(|| {
            StepError::failed(
                "ResourceNotFound",
                format!("the source image definition {source} is gone"),
                Some(source.to_owned()),
                "The version to distribute was deleted; publish it again.",
            )
        })?;
    let mut properties = found
        .get("properties")
        .cloned()
        .unwrap_or_else(|| json!({}));
    if let Some(p) = properties.as_object_mut() {
        p.remove("provisioningState");
        p.remove("sharingStatus");
    }
    Ok(
        json!({"location": plan.location, "tags": found.get("tags").cloned().unwrap_or_else(|| json!({})), "properties": properties}),
    )
}

pub const NAME: &str = "PublishVersion";
pub const TRIGGER: &str = "fact";
pub const HANDLES: &[FactType] = &[
    FactType::VhdAccepted,
    FactType::ImageCreated,
    FactType::DistributionRequested,
];

pub fn step(fact: Fact, ctx: Arc<Ctx>, attempt: u32) -> StepFuture {
    Box::pin(async move { publish(fact, &ctx, attempt).await })
}

fn state(resource: &Value) -> Option<&str> {
    resource
        .pointer("/properties/provisioningState")
        .and_then(Value::as_str)
}

async fn ensure(ctx: &Ctx, id: &str, body: Value, what: &str) -> Result<Value, StepError> {
    if let Some(seen) = ctx.known.get(id) {
        return Ok(seen);
    }
    if let Some(existing) = ctx.arm.get(id, arm::GALLERY_API, &[]).await? {
        return match state(&existing) {
            Some("Succeeded") | None => {
                ctx.known.put(id, &existing);
                Ok(existing)
            }
            Some("Failed") => Err(StepError::failed(
                "ProvisioningFailed",
                format!("{what} {id} is in state Failed"),
                Some(id.to_owned()),
                format!(
                    "Delete the failed {what} (or fix it in the portal), then upload the manifest again."
                ),
            )),
            Some(other) => Err(StepError::Waiting(format!("{what} {id} is {other}"))),
        };
    }
    let written = ctx
        .arm
        .write(Method::PUT, id, arm::GALLERY_API, Some(&body))
        .await?;
    tracing::info!(resource = id, "created missing {what}");
    match written.body {
        Some(b) if written.is_done() => Ok(b),
        _ => Err(StepError::Waiting(format!("{what} {id} is being created"))),
    }
}

async fn publish(fact: Fact, ctx: &Ctx, _attempt: u32) -> Result<Vec<Emit>, StepError> {
    let (plan, vhd, image_id): (Plan, Option<BlobRef>, Option<String>) = match fact.fact_type() {
        Some(FactType::VhdAccepted) => {
            let a: VhdAccepted = fact.data().map_err(StepError::unreadable)?;
            if a.plan.publish_from != PublishFrom::Vhd {
                return Ok(Vec::new()); // CreateImage goes first; image.created brings it back here.
            }
            (a.plan, Some(a.vhd), None)
        }
        Some(FactType::DistributionRequested) => {
            let d: DistributionRequested = fact.data().map_err(StepError::unreadable)?;
            (d.plan, None, Some(d.source_version_id))
        }
        _ => {
            let c: ImageCreated = fact.data().map_err(StepError::unreadable)?;
            (c.plan, c.vhd, Some(c.image_id))
        }
    };
    // A distribution target's copy is made from the ready version in the default gallery.
    let copy_of = plan.distributed_from.clone();
    let run = fact.correlation_id().unwrap_or_default();
    let origin = owned::Origin::of(vhd.as_ref(), image_id.as_deref().unwrap_or_default());
    let (sub, rg) = (&plan.subscription_id, &plan.resource_group);
    // A new image straight from its VHD: when the subscription's ARM budget is low, it waits its turn
    // (from a managed image, the image is under way already).
    if image_id.is_none() {
        let hold = ctx.pace.hold_for_new_image(&ctx.arm, sub).await;
        if !hold.is_zero() {
            return Err(StepError::Paced(hold));
        }
    }
    let gallery_id = ids::gallery(sub, rg, &plan.gallery);
    ensure(ctx, &gallery_id, json!({"location": plan.location, "properties": {"description": "Images published by galleon"}}), "gallery").await?;

    let definition_id = ids::image_definition(sub, rg, &plan.gallery, &plan.image_definition);
    let body = match &copy_of {
        Some(source) => copied_definition(ctx, source, &plan).await?,
        None => features::definition_body(&plan),
    };
    let definition = ensure(ctx, &definition_id, body, "image definition").await?;
    // Ingest refused a mismatch already; this catches a definition changed since (or a copy's).
    let conflicts = features::definition_conflicts(&definition, &plan);
    if !conflicts.is_empty() {
        ctx.known.forget(&definition_id);
        let why = features::conflict_reason(&plan.image_definition, &conflicts);
        return Err(StepError::failed(
            "PropertyChangeNotAllowed",
            why.message,
            Some(definition_id),
            why.fix,
        ));
    }

    let version_id = ids::image_version(
        sub,
        rg,
        &plan.gallery,
        &plan.image_definition,
        &plan.version,
    );
    let subject = super::version_subject(&plan);
    let cause = Cause::of(&fact);
    let data = VersionPublished {
        version_id: version_id.clone(),
        // A copy's source is a version galleon keeps, not an intermediate image to remove.
        image_id: image_id.clone().filter(|_| copy_of.is_none()),
        vhd: vhd.clone(),
        plan: plan.clone(),
        home_region_seconds: None,
    };
    let then = step::announce(&subject, &data)?;
    // Each look is one GET of the version (also the final GET); the write's operation is read only for
    // Azure's error if the version fails.
    let watch = |operation: Option<(String, arm::PollKind)>,
                 started_at,
                 retry_after|
     -> Result<Vec<Emit>, StepError> {
        let (operation, operation_poll) = operation.unzip();
        let check = Check::Operation {
            url: super::resource_url(ctx, &version_id, arm::GALLERY_API),
            resource_id: version_id.clone(),
            poll: arm::PollKind::Resource,
            operation,
            operation_poll: operation_poll.unwrap_or_default(),
            started_at,
        };
        Ok(vec![ctx.follow_up(
            &cause,
            NAME,
            &subject,
            check,
            Some(then.clone()),
            1,
            ctx.deadline_from_now(),
            ctx.look_after(&version_id, None, None, retry_after),
        )?])
    };

    if let Some(existing) = ctx.arm.get(&version_id, arm::GALLERY_API, &[]).await? {
        if let Err(why) = owned::ownership(&existing, &run, origin) {
            return Err(owned::conflict(
                owned::Resource::ImageVersion,
                &version_id,
                &why,
            ));
        }
        return match state(&existing) {
            Some("Failed") => {
                // This run's failed version blocks re-publishing: remove it, then try again.
                ctx.arm
                    .write(Method::DELETE, &version_id, arm::GALLERY_API, None)
                    .await?;
                Err(StepError::Waiting(format!(
                    "{version_id} had failed; deleting it to publish again"
                )))
            }
            Some("Deleting") => Err(StepError::Waiting(format!("{version_id} is being deleted"))),
            // This run already started it (a redelivered fact): watch it instead of writing again.
            _ => watch(None, None, None),
        };
    }

    let home: Vec<TargetRegion> = plan
        .target_regions
        .iter()
        .filter(|r| r.name == plan.location)
        .take(1)
        .cloned()
        .collect();
    if let (None, Some(vhd)) = (&image_id, &vhd) {
        // The VHDs must still be the ones that were checked: Azure copies them now.
        for disk in std::iter::once(vhd).chain(plan.publishing.data_disks.iter().map(|d| &d.vhd)) {
            if let Err(changed) = pinned::verify(ctx, disk).await? {
                return changed_after_check(ctx, &cause, disk, changed.now());
            }
        }
    }
    let body = features::version_body(
        &plan,
        vhd.as_ref(),
        image_id.as_deref(),
        &home,
        &owned::tags(&run, &plan, origin),
    );
    let started_at = chrono::Utc::now();
    let written = match ctx
        .arm
        .write(Method::PUT, &version_id, arm::GALLERY_API, Some(&body))
        .await
    {
        Ok(w) => w,
        Err(e) => {
            // What this instance remembered of the gallery and definition may be stale: read them again.
            if e.is_not_found() || matches!(e.kind(), crate::azure::Kind::Conflict) {
                ctx.known.forget(&gallery_id);
                ctx.known.forget(&definition_id);
            }
            return Err(e.into());
        }
    };
    tracing::info!(version = %version_id, status = written.status, "image version creation started in the home region");
    watch(written.poll(), Some(started_at), written.retry_after)
}
