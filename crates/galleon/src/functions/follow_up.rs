//! FollowUp: the scheduled second look at something long. It checks once (an ARM operation, a version's
//! replication, a bare VHD upload, or a step to retry), then announces what the check promised, schedules
//! the next look (at `Retry-After`, until the deadline), or ends the step with `step.failed`. Never waits.

use std::{collections::BTreeSet, sync::Arc};

use chrono::Utc;
use reqwest::Method;
use serde_json::Value;

use super::step::{self, Ctx, Emit, StepError};
use crate::{
    azure::arm::{self, Operation},
    events::{
        Cause, Check, Fact, FactType, FollowUp, ImageReady, ReplicaReady, TargetRegion,
        build_untyped,
    },
    host::{Failure, Invocation, Output},
};

pub const NAME: &str = "FollowUp";
pub const TRIGGER: &str = "fact";
pub const HANDLES: &[FactType] = &[FactType::FollowUp];

/// Region names as ARM shows them ("West Europe") to ARM names ("westeurope").
pub fn region_key(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Per-region replication state from a version's `$expand=ReplicationStatus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionState {
    pub region: String,
    pub state: String,
    pub details: String,
}

pub fn replication_states(version: &Value) -> Vec<RegionState> {
    version
        .pointer("/properties/replicationStatus/summary")
        .and_then(Value::as_array)
        .map(|summary| {
            summary
                .iter()
                .map(|s| RegionState {
                    region: region_key(s.get("region").and_then(Value::as_str).unwrap_or_default()),
                    state: s
                        .get("state")
                        .and_then(Value::as_str)
                        .unwrap_or("Unknown")
                        .to_owned(),
                    details: s
                        .get("details")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// What to announce now: regions newly complete (in the order ARM lists them), whether all are done, and
/// which regions failed.
pub fn replication_progress(
    targets: &[TargetRegion],
    states: &[RegionState],
    announced: &[String],
) -> (Vec<TargetRegion>, bool, Vec<RegionState>) {
    let done: BTreeSet<&str> = states
        .iter()
        .filter(|s| s.state == "Completed")
        .map(|s| s.region.as_str())
        .collect();
    let newly: Vec<TargetRegion> = states
        .iter()
        .filter(|s| s.state == "Completed" && !announced.contains(&s.region))
        .filter_map(|s| {
            targets
                .iter()
                .find(|t| region_key(&t.name) == s.region)
                .cloned()
        })
        .collect();
    let all = targets
        .iter()
        .all(|t| done.contains(region_key(&t.name).as_str()));
    let failed = states
        .iter()
        .filter(|s| s.state == "Failed")
        .cloned()
        .collect();
    (newly, all, failed)
}

pub async fn run(invocation: Invocation, ctx: Arc<Ctx>) -> Result<Output, Failure> {
    step::on_message(
        NAME,
        |fact, ctx, _| Box::pin(async move { look(fact, ctx).await }),
        HANDLES,
        invocation,
        ctx,
    )
    .await
}

/// One look; transient trouble with the look itself schedules the same look again.
async fn look(fact: Fact, ctx: Arc<Ctx>) -> Result<Vec<Emit>, StepError> {
    let data: FollowUp = fact.data().map_err(|e| StepError::Failed {
        code: "FactUnreadable".into(),
        message: e.to_string(),
        target: None,
        advice: "The follow-up does not match its schema; this is a galleon defect.".into(),
    })?;
    if let Check::Retry { event, failures } = &data.check {
        let original = Fact::from_json(&event.to_string()).map_err(|e| StepError::Failed {
            code: "FactUnreadable".into(),
            message: e.to_string(),
            target: None,
            advice: "The fact to retry does not match its schema; this is a galleon defect.".into(),
        })?;
        let Some(run_step) = super::step_named(&data.step) else {
            return Err(StepError::Failed {
                code: "UnknownStep".into(),
                message: format!("no step named {}", data.step),
                target: None,
                advice:
                    "This follow-up was made by another galleon version; upload the manifest again."
                        .into(),
            });
        };
        return Ok(step::run(
            &data.step,
            run_step,
            original,
            ctx,
            data.attempt,
            *failures,
            Some(data.deadline),
        )
        .await);
    }
    let outcome = if Utc::now() > data.deadline {
        Err(StepError::Failed {
            code: "StepDeadlineExceeded".into(),
            message: format!("{} did not finish by {} ({} looks)", data.step, data.deadline, data.attempt),
            target: None,
            advice: "Azure took longer than GALLEON_STEP_DEADLINE_MINUTES; look at the resource in the portal, and upload the manifest again to resume (steps are idempotent).".into(),
        })
    } else {
        check_once(&fact, &data, &ctx).await
    };
    match outcome {
        Err(StepError::Transient(e)) => {
            tracing::info!(step = %data.step, attempt = data.attempt, error = %e, "look failed transiently; looking again later");
            again(&fact, &data, &ctx, data.check.clone(), e.retry_after())
        }
        // The failure belongs to the step that started the operation, not to the look.
        Err(StepError::Failed {
            code,
            message,
            target,
            advice,
        }) => {
            tracing::warn!(step = %data.step, code, message, "step failed");
            let error = crate::events::AzureError {
                code,
                message,
                target,
            };
            Ok(vec![Emit::now(step::failed_fact(
                &ctx,
                &data.step,
                &fact,
                data.attempt,
                error,
                &advice,
            )?)])
        }
        ok => ok,
    }
}

fn again(
    fact: &Fact,
    data: &FollowUp,
    ctx: &Ctx,
    check: Check,
    retry_after: Option<std::time::Duration>,
) -> Result<Vec<Emit>, StepError> {
    let at = ctx.next_look(retry_after.or(Some(ctx.config.follow_up)));
    let subject = fact.subject().unwrap_or(&data.step).to_owned();
    Ok(vec![ctx.follow_up(
        &Cause::of(fact),
        &data.step,
        &subject,
        check,
        data.then.clone(),
        data.attempt + 1,
        data.deadline,
        at,
    )?])
}

/// The fact a follow-up promised: its id derives from what was checked, so whichever look finds the
/// operation done announces the same fact.
fn promised(
    ctx: &Ctx,
    fact: &Fact,
    data: &FollowUp,
    key: &str,
    discriminator: &str,
    payload: Value,
) -> Result<Emit, StepError> {
    let ty = FactType::from_cloud_event_type(&data.then.ty).ok_or_else(|| StepError::Failed {
        code: "UnknownFactType".into(),
        message: data.then.ty.clone(),
        target: None,
        advice: "This follow-up was made by another galleon version; upload the manifest again."
            .into(),
    })?;
    let correlation_id = fact
        .correlation_id()
        .unwrap_or_else(|| fact.id().to_owned());
    // What was checked, within this run: a later run publishing the same resource gets fresh fact ids.
    let cause = Cause {
        id: format!("{key}:{correlation_id}"),
        correlation_id,
        traceparent: fact.traceparent(),
    };
    let built = build_untyped(
        ty,
        ctx.instance(),
        &cause,
        &data.then.subject,
        discriminator,
        payload,
        Utc::now(),
    )
    .map_err(|e| StepError::Failed {
        code: "FactNotBuilt".into(),
        message: e.to_string(),
        target: None,
        advice: "This is a galleon defect; report it with the follow-up.".into(),
    })?;
    Ok(Emit::now(built))
}

async fn check_once(fact: &Fact, data: &FollowUp, ctx: &Ctx) -> Result<Vec<Emit>, StepError> {
    match &data.check {
        Check::Operation {
            url,
            resource_id,
            poll,
        } => match ctx.arm.operation(url, *poll).await? {
            Operation::Running { retry_after } => {
                again(fact, data, ctx, data.check.clone(), retry_after)
            }
            Operation::Succeeded => {
                tracing::info!(resource = %resource_id, step = %data.step, "operation succeeded");
                Ok(vec![promised(
                    ctx,
                    fact,
                    data,
                    resource_id,
                    "",
                    data.then.data.clone(),
                )?])
            }
            Operation::Failed { code, message } => {
                cleanup(ctx, resource_id).await;
                Err(StepError::Failed {
                    advice: step::advice_for(&code),
                    code,
                    message,
                    target: Some(resource_id.clone()),
                })
            }
            Operation::Canceled => {
                cleanup(ctx, resource_id).await;
                Err(StepError::Failed {
                    code: "OperationCanceled".into(),
                    message: format!("the operation on {resource_id} was canceled"),
                    target: Some(resource_id.clone()),
                    advice: "Someone canceled the Azure operation; upload the manifest again to re-run the chain.".into(),
                })
            }
        },
        Check::Replication {
            version_id,
            announced_regions,
        } => {
            let version = ctx
                .arm
                .get(version_id, arm::GALLERY_API, &[("$expand", "ReplicationStatus")])
                .await?
                .ok_or_else(|| StepError::Failed {
                    code: "ResourceNotFound".into(),
                    message: format!("{version_id} disappeared while replicating"),
                    target: Some(version_id.clone()),
                    advice: "The version was deleted during replication; upload the manifest again to publish it.".into(),
                })?;
            let ready: ImageReady =
                serde_json::from_value(data.then.data.clone()).map_err(|e| StepError::Failed {
                    code: "FactUnreadable".into(),
                    message: e.to_string(),
                    target: None,
                    advice: "This is a galleon defect.".into(),
                })?;
            let states = replication_states(&version);
            let (newly, all, failed) =
                replication_progress(&ready.regions, &states, announced_regions);
            let mut announced = announced_regions.clone();
            let mut emits = Vec::new();
            for region in newly {
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
                    ready_at: Utc::now(),
                };
                let subject = format!("{}/regions/{key}", data.then.subject);
                let correlation_id = fact.correlation_id().unwrap_or_default();
                let cause = Cause {
                    id: format!("{version_id}:{correlation_id}"),
                    correlation_id,
                    traceparent: fact.traceparent(),
                };
                emits.push(Emit::now(ctx.fact(&cause, &subject, &key, &replica)?));
                tracing::info!(version = %version_id, region = %key, "replica ready");
            }
            if all {
                let mut payload = ready.clone();
                payload.ready_at = Utc::now();
                let value = serde_json::to_value(&payload).unwrap_or(Value::Null);
                emits.push(promised(ctx, fact, data, version_id, "", value)?);
                tracing::info!(version = %version_id, "image ready in every region");
                return Ok(emits);
            }
            let listed: BTreeSet<String> = states.iter().map(|s| s.region.clone()).collect();
            let missing: Vec<&TargetRegion> = ready
                .regions
                .iter()
                .filter(|t| !listed.contains(&region_key(&t.name)))
                .collect();
            if !failed.is_empty() {
                // Retry the failed regions on their own: take them out of the target regions now and put
                // them back on the next look, without touching regions that completed or still replicate.
                tracing::warn!(version = %version_id, failed = ?failed, attempt = data.attempt, "regions failed; replicating them again");
                if data.attempt >= ctx.config.max_attempts * 4 {
                    let region = &failed[0];
                    return Err(StepError::Failed {
                        code: "ReplicationFailed".into(),
                        message: format!("replication of {version_id} to {} failed: {}", region.region, region.details),
                        target: Some(region.region.clone()),
                        advice: "Replication to this region keeps failing; check the region's quota and the target storage type, then upload the manifest again.".into(),
                    });
                }
                let keep: Vec<&TargetRegion> = ready
                    .regions
                    .iter()
                    .filter(|t| !failed.iter().any(|f| f.region == region_key(&t.name)))
                    .collect();
                let body = serde_json::json!({"properties": {"publishingProfile": {"targetRegions": keep}}});
                ctx.arm
                    .write(Method::PATCH, version_id, arm::GALLERY_API, Some(&body))
                    .await?;
            } else if !missing.is_empty() && !states.is_empty() {
                tracing::info!(version = %version_id, regions = ?missing.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), "adding regions back");
                let body = serde_json::json!({"properties": {"publishingProfile": {"targetRegions": ready.regions}}});
                ctx.arm
                    .write(Method::PATCH, version_id, arm::GALLERY_API, Some(&body))
                    .await?;
            }
            let check = Check::Replication {
                version_id: version_id.clone(),
                announced_regions: announced,
            };
            emits.extend(again(fact, data, ctx, check, None)?);
            Ok(emits)
        }
        Check::VhdComplete {
            url,
            e_tag,
            first_seen,
        } => {
            let storage = data
                .then
                .data
                .pointer("/plan/storageAccountId")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let look = super::ingest_blob::BareLook {
                cause: &Cause::of(fact),
                subject: &data.then.subject,
                url,
                last_e_tag: e_tag,
                first_seen: *first_seen,
                attempt: data.attempt,
                deadline: data.deadline,
                storage_account_id: storage,
            };
            super::ingest_blob::recheck_bare_vhd(ctx, look).await
        }
        Check::Build { template_id, .. } => Err(StepError::Failed {
            code: "NotSupported".into(),
            message: format!(
                "this galleon version does not watch Image Builder runs (template {template_id})"
            ),
            target: None,
            advice: "Scheduled rebuilds arrive with a later galleon version.".into(),
        }),
        Check::Retry { .. } => Ok(Vec::new()),
    }
}

/// Removes what a failed operation left, so publishing again works: a failed gallery image version or
/// managed image blocks its name (and a failed version can be chosen as `latest`).
async fn cleanup(ctx: &Ctx, resource_id: &str) {
    let api = if resource_id.contains("/Microsoft.Compute/images/") {
        arm::COMPUTE_IMAGES_API
    } else if resource_id.contains("/versions/") {
        arm::GALLERY_API
    } else {
        return;
    };
    match ctx.arm.write(Method::DELETE, resource_id, api, None).await {
        Ok(_) => tracing::info!(
            resource = resource_id,
            "deleted what the failed operation left"
        ),
        Err(e) => {
            tracing::warn!(resource = resource_id, error = %e, "could not delete what the failed operation left")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn target(name: &str) -> TargetRegion {
        TargetRegion {
            name: name.into(),
            regional_replica_count: 1,
            storage_account_type: "Standard_LRS".into(),
        }
    }

    #[test]
    fn progress_announces_each_region_once_and_all_at_the_end() {
        let targets = [
            target("westeurope"),
            target("northeurope"),
            target("eastus2"),
        ];
        let version = json!({"properties": {"replicationStatus": {"aggregatedState": "InProgress", "summary": [
            {"region": "West Europe", "state": "Completed", "progress": 100},
            {"region": "North Europe", "state": "Replicating", "progress": 40},
            {"region": "East US 2", "state": "Completed", "progress": 100}
        ]}}});
        let states = replication_states(&version);
        let (newly, all, failed) = replication_progress(&targets, &states, &[]);
        assert_eq!(
            newly.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["westeurope", "eastus2"]
        );
        assert!(!all);
        assert!(failed.is_empty());
        let (newly, all, _) =
            replication_progress(&targets, &states, &["westeurope".into(), "eastus2".into()]);
        assert!(
            newly.is_empty(),
            "announced regions are not announced again"
        );
        assert!(!all);

        let done = json!({"properties": {"replicationStatus": {"summary": [
            {"region": "westeurope", "state": "Completed"}, {"region": "northeurope", "state": "Completed"}, {"region": "eastus2", "state": "Completed"}
        ]}}});
        let (newly, all, _) = replication_progress(
            &targets,
            &replication_states(&done),
            &["westeurope".into(), "eastus2".into()],
        );
        assert_eq!(
            newly.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["northeurope"]
        );
        assert!(all);
    }

    #[test]
    fn failed_regions_are_reported() {
        let targets = [target("westeurope"), target("northeurope")];
        let version = json!({"properties": {"replicationStatus": {"summary": [
            {"region": "westeurope", "state": "Completed"}, {"region": "northeurope", "state": "Failed", "details": "quota"}
        ]}}});
        let (_, all, failed) = replication_progress(&targets, &replication_states(&version), &[]);
        assert!(!all);
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].details, "quota");
        assert_eq!(region_key("East US 2"), "eastus2");
    }
}
