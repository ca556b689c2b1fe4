//! ReplicateVersion: the version is usable at home; add every other target region in one PATCH, then
//! watch replication region by region, one GET of the version per look, the looks spaced by how long
//! replication is expected to take (from how long the home region took). Each region is announced as it completes and `image.ready` when
//! all are. A failed region is taken out and put back on its own, up to `GALLEON_MAX_ATTEMPTS` failures;
//! regions that fail for good are all reported, with the regions that are usable meanwhile.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use chrono::Utc;
use reqwest::Method;
use serde_json::{Value, json};

use super::{
    owned,
    step::{self, Ctx, Emit, StepError, StepFuture, Stop},
};
use crate::{
    azure::arm::{self, Operation, ids},
    domain::{
        looks::expected_replication,
        replication::{progress, region_key, replication_states},
    },
    events::{
        Cause, Check, ErrorDetail, Fact, FactType, FollowUp, ImagePartiallyReady, ImageReady,
        ReplicaReady, ReplicationRequested, TargetRegion, VersionPublished,
    },
};

pub const NAME: &str = "ReplicateVersion";
pub const TRIGGER: &str = "fact";
pub const HANDLES: &[FactType] = &[FactType::VersionPublished, FactType::ReplicationRequested];

pub fn step(fact: Fact, ctx: Arc<Ctx>, attempt: u32) -> StepFuture {
    Box::pin(async move { replicate(fact, &ctx, attempt).await })
}

/// The target regions as a PATCH sends them: only the property that changes, so everything else stays.
fn patch_body(regions: &[&TargetRegion]) -> Value {
    json!({"properties": {"publishingProfile": {"targetRegions": regions}}})
}

async fn replicate(fact: Fact, ctx: &Ctx, _attempt: u32) -> Result<Vec<Emit>, StepError> {
    // An operator's request replicates a version again as a publication does, from its regions complete
    // already (not announced again), and never touches a managed image (gone since the first image.ready).
    let (published, ready_regions) = match fact.fact_type() {
        Some(FactType::ReplicationRequested) => {
            let asked: ReplicationRequested = fact.data().map_err(StepError::unreadable)?;
            let mut publication = asked.publication;
            publication.image_id = None;
            (publication, Some(asked.ready_regions))
        }
        _ => (
            fact.data::<VersionPublished>()
                .map_err(StepError::unreadable)?,
            None,
        ),
    };
    let replicated_again = ready_regions.is_some();
    let plan = &published.plan;
    let mut patch = None;
    let mut patch_poll = arm::PollKind::default();
    let mut retry_after = None;
    let started_at = Utc::now();
    if plan.target_regions.len() > 1 {
        let all: Vec<&TargetRegion> = plan.target_regions.iter().collect();
        let written = ctx
            .arm
            .write(
                Method::PATCH,
                &published.version_id,
                arm::GALLERY_API,
                Some(&patch_body(&all)),
            )
            .await?;
        tracing::info!(version = %published.version_id, regions = plan.target_regions.len(), status = written.status, "added the target regions");
        if let Some((url, kind)) = written.poll() {
            patch = Some(url);
            patch_poll = kind;
        }
        retry_after = written.retry_after;
    }
    let expected = published
        .home_region_seconds
        .filter(|_| plan.target_regions.len() > 1)
        .map(|home| expected_replication(Duration::from_secs(home), plan.target_regions.len()));
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
        source_data_disks: plan
            .publishing
            .data_disks
            .iter()
            .map(|d| d.vhd.clone())
            .filter(|_| published.vhd.is_some())
            .collect(),
        // A managed image galleon made from the VHD is an intermediate; one made elsewhere is the source.
        source_image_id: published
            .image_id
            .clone()
            .filter(|_| published.vhd.is_none()),
        build: plan.build.clone(),
        distributed_from: plan.distributed_from.clone(),
        ready_at: super::handled_at::now(),
        left_behind: Vec::new(),
        replicated_again,
    };
    let check = Check::Replication {
        version_id: published.version_id.clone(),
        announced_regions: ready_regions
            .unwrap_or_default()
            .iter()
            .map(|r| region_key(r))
            .collect(),
        failures: BTreeMap::new(),
        patch,
        patch_poll,
        image_id: published.image_id.clone(),
        started_at: Some(started_at),
        expected_seconds: expected.map(|e| e.as_secs()),
    };
    let then = step::announce(&subject, &ready)?;
    // The first look near replication's expected end (the home region is complete already).
    Ok(vec![ctx.follow_up(
        &Cause::of(&fact),
        NAME,
        &subject,
        check,
        Some(then),
        1,
        ctx.deadline_from_now(),
        ctx.look_after(
            &published.version_id,
            Some(started_at),
            expected,
            retry_after,
        ),
    )?])
}

/// The image definition's name, from its id.
fn ready_definition(ready: &ImageReady) -> &str {
    ready
        .image_definition_id
        .rsplit('/')
        .next()
        .unwrap_or_default()
}

/// What the version (and its managed image) were made from, as their tags name it: the VHD, else the
/// image made elsewhere, else (a build's own version) the resource itself, which galleon did not make.
fn origin_of<'a>(ready: &'a ImageReady, fallback: &'a str) -> owned::Origin<'a> {
    owned::Origin::of(
        ready.source_vhd.as_ref(),
        ready.source_image_id.as_deref().unwrap_or(fallback),
    )
}

/// One look at replication, from a follow-up.
pub async fn look(ctx: &Ctx, fact: &Fact, data: &FollowUp) -> Result<Vec<Emit>, StepError> {
    let Check::Replication {
        version_id,
        announced_regions,
        failures,
        patch,
        patch_poll,
        image_id,
        started_at,
        expected_seconds,
    } = &data.check
    else {
        return Err(StepError::unreadable("not a replication check"));
    };
    let then = data
        .then
        .as_ref()
        .ok_or_else(|| StepError::unreadable("a replication follow-up without its image.ready"))?;
    let ready: ImageReady =
        serde_json::from_value(then.data.clone()).map_err(StepError::unreadable)?;
    let expected = expected_seconds.map(Duration::from_secs);
    let again = |announced: Vec<String>,
                 failures: BTreeMap<String, u32>,
                 patch: Option<(String, arm::PollKind)>,
                 changed_now: bool,
                 retry_after|
     -> Result<Emit, StepError> {
        let (patch, patch_poll) = match patch {
            Some((url, kind)) => (Some(url), kind),
            None => (None, arm::PollKind::default()),
        };
        // A change of target regions restarts the clock; otherwise the looks keep their spacing.
        let started = if changed_now {
            Some(Utc::now())
        } else {
            *started_at
        };
        let check = Check::Replication {
            version_id: version_id.clone(),
            announced_regions: announced,
            failures,
            patch,
            patch_poll,
            image_id: image_id.clone(),
            started_at: started,
            expected_seconds: *expected_seconds,
        };
        ctx.follow_up(
            &Cause::of(fact),
            &data.step,
            fact.subject().unwrap_or(&data.step),
            check,
            data.then.clone(),
            data.attempt + 1,
            data.deadline,
            ctx.look_after(version_id, started, expected, retry_after),
        )
    };

    // One GET of the version tells every region's state; the PATCH's own operation is read only when the
    // version failed and no region explains why.
    let version = ctx
        .arm
        .get(version_id, arm::GALLERY_API, &[("$expand", "ReplicationStatus")])
        .await?
        .ok_or_else(|| {
            StepError::failed(
                "ResourceNotFound",
                format!("{version_id} disappeared while replicating"),
                Some(version_id.clone()),
                "The version was deleted during replication; upload the VHD and its manifest again to publish it.",
            )
        })?;
    let home = ready
        .regions
        .first()
        .map(|r| r.name.clone())
        .unwrap_or_default();
    let max = ctx.config.max_attempts;
    let decided = progress(
        &ready.regions,
        &home,
        &replication_states(&version),
        announced_regions,
        failures,
        max,
    );
    let run = fact.correlation_id().unwrap_or_default();
    let regions_explain =
        decided.home_failed.is_some() || !decided.retry.is_empty() || !decided.given_up.is_empty();
    let version_failed = version
        .pointer("/properties/provisioningState")
        .and_then(Value::as_str)
        .is_some_and(|s| s.eq_ignore_ascii_case("Failed"));
    if version_failed && !regions_explain {
        let error = match patch {
            Some(url) => match ctx.arm.operation(url, *patch_poll).await? {
                Operation::Failed { code, message } => ErrorDetail::new(code, message),
                Operation::Canceled => ErrorDetail::new(
                    "OperationCanceled",
                    format!("the change of {version_id}'s target regions was canceled"),
                ),
                _ => ErrorDetail::new(
                    "ProvisioningFailed",
                    format!("{version_id} is in provisioningState Failed"),
                ),
            },
            None => ErrorDetail::new(
                "ProvisioningFailed",
                format!("{version_id} is in provisioningState Failed"),
            ),
        }
        .with_target(version_id.clone());
        return Err(StepError::Failed(Box::new(Stop {
            error,
            advice: "Azure refused to change the version's target regions (its error is above, verbatim). Fix the cause (region name, quota, storage type in that region), then add the regions with az sig image-version update --add publishingProfile.targetRegions name=<region>.".into(),
            left_behind: Vec::new(),
        })));
    }

    if let Some(failed) = &decided.home_failed {
        // Azure refuses to take the source region out of a version: the version itself failed.
        let left_behind = owned::remove(ctx, version_id, &run, origin_of(&ready, version_id))
            .await
            .err()
            .into_iter()
            .collect();
        return Err(StepError::Failed(Box::new(Stop {
            error: ErrorDetail::new("ReplicationFailed", failed.details.clone())
                .with_target(failed.region.clone()),
            advice: format!(
                "The version failed in its home region {home}, so it is unusable and was deleted. Fix the cause in Azure's message, then upload the manifest again."
            ),
            left_behind,
        })));
    }

    let mut announced = announced_regions.clone();
    let mut emits = Vec::new();
    for region in &decided.newly {
        let key = region_key(&region.name);
        announced.push(key.clone());
        let remaining: Vec<String> = ready
            .regions
            .iter()
            .map(|r| region_key(&r.name))
            .filter(|r| !announced.contains(r))
            .collect();
        let replica = ReplicaReady {
            version_id: version_id.clone(),
            region: region.clone(),
            remaining_regions: remaining,
            ready_at: super::handled_at::now(),
        };
        let subject = format!("{}/regions/{key}", then.subject);
        emits.push(Emit::now(ctx.fact(
            &step::checked_cause(fact, version_id),
            &subject,
            &key,
            &replica,
        )?));
        tracing::info!(version = %version_id, region = %key, "replica ready");
    }

    if decided.all_done {
        let mut payload = ready.clone();
        payload.ready_at = super::handled_at::now();
        if let Some(image) = image_id
            && !ctx.config.keep_managed_images
            && let Err(left) = owned::remove(ctx, image, &run, origin_of(&ready, image)).await
        {
            payload.left_behind.push(left);
        }
        let value = serde_json::to_value(&payload).map_err(StepError::unreadable)?;
        emits.push(step::promised(ctx, fact, then, version_id, value)?);
        tracing::info!(version = %version_id, "image ready in every region");
        return Ok(emits);
    }

    if decided.settled_with_failures {
        // The version is usable where it replicated and is replicated again from itself, as after
        // image.ready: the intermediate managed image goes now too, or is named as left behind.
        let mut left_behind = Vec::new();
        if let Some(image) = image_id
            && !ctx.config.keep_managed_images
            && let Err(left) = owned::remove(ctx, image, &run, origin_of(&ready, image)).await
        {
            left_behind.push(left);
        }
        let usable: Vec<TargetRegion> = ready
            .regions
            .iter()
            .filter(|t| announced.contains(&region_key(&t.name)))
            .cloned()
            .collect();
        let partial = ImagePartiallyReady {
            version_id: version_id.clone(),
            version: ready.version.clone(),
            usable_regions: usable.clone(),
            failed_regions: decided.given_up.clone(),
            source_vhd: ready.source_vhd.clone(),
            at: super::handled_at::now(),
        };
        let cause = step::checked_cause(fact, version_id);
        emits.push(Emit::now(ctx.fact(&cause, &then.subject, "", &partial)?));
        let failed: Vec<String> = decided
            .given_up
            .iter()
            .map(|g| format!("{} ({} failures): {}", g.region, g.failures, g.details))
            .collect();
        let names: Vec<&str> = usable.iter().map(|r| r.name.as_str()).collect();
        let stop = Stop {
            error: ErrorDetail::new(
                "ReplicationFailed",
                format!(
                    "replication of {version_id} failed for good in {}",
                    failed.join("; ")
                ),
            )
            .with_target(version_id.clone()),
            advice: format!(
                "The version is usable in {} (see image.partially.ready). Fix the failed regions' cause (regional quota, the storage type's availability there, capacity), then replicate it again: galleon rerun {} {} --region <region> (or POST /api/versions/{}/{}/replicate).",
                names.join(", "),
                ready_definition(&ready),
                ready.version,
                ready_definition(&ready),
                ready.version
            ),
            left_behind,
        };
        emits.push(Emit::now(step::failed_fact(
            ctx,
            &data.step,
            fact,
            data.attempt,
            stop,
        )?));
        tracing::warn!(version = %version_id, failed = ?failed, "replication failed for good in some regions");
        return Ok(emits);
    }

    // Failed regions are retried on their own: out now, back in on a later look; regions that completed
    // or still replicate are untouched.
    let given_up: BTreeSet<&str> = decided.given_up.iter().map(|g| g.region.as_str()).collect();
    let change = if !decided.retry.is_empty() {
        tracing::warn!(version = %version_id, retry = ?decided.retry, failures = ?decided.failures, "regions failed; replicating them again");
        Some(
            ready
                .regions
                .iter()
                .filter(|t| {
                    let key = region_key(&t.name);
                    !decided.retry.contains(&key) && !given_up.contains(key.as_str())
                })
                .collect::<Vec<_>>(),
        )
    } else if !decided.missing.is_empty() {
        tracing::info!(version = %version_id, regions = ?decided.missing, "adding regions back");
        Some(
            ready
                .regions
                .iter()
                .filter(|t| !given_up.contains(region_key(&t.name).as_str()))
                .collect::<Vec<_>>(),
        )
    } else {
        None
    };
    let (patch, changed, retry_after) = match change {
        Some(regions) => {
            let written = ctx
                .arm
                .write(
                    Method::PATCH,
                    version_id,
                    arm::GALLERY_API,
                    Some(&patch_body(&regions)),
                )
                .await?;
            (written.poll(), true, written.retry_after)
        }
        // The last change's operation stays known for its error.
        None => (
            patch.as_ref().map(|url| (url.clone(), *patch_poll)),
            false,
            None,
        ),
    };
    emits.push(again(
        announced,
        decided.failures,
        patch,
        changed,
        retry_after,
    )?);
    Ok(emits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(name: &str) -> TargetRegion {
        TargetRegion {
            name: name.into(),
            regional_replica_count: 1,
            storage_account_type: None,
            ..TargetRegion::default()
        }
    }

    #[test]
    fn patch_leaves_out_the_storage_type_azure_should_choose() {
        let t = target("westeurope");
        let body = patch_body(&[&t]);
        assert_eq!(
            body.pointer("/properties/publishingProfile/targetRegions/0"),
            Some(&json!({"name": "westeurope", "regionalReplicaCount": 1}))
        );
    }
}
