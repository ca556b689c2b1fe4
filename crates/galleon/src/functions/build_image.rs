//! BuildImage: a requested rebuild runs its Image Builder template, never twice at once. It reads the
//! template (is it fit to run, is a run in progress), resolves what it builds from (and, for templates
//! that rebuild only on change, skips an unchanged source), starts the run, and follows it without
//! blocking: one GET of the template per look, a cancel past its timeout, `build.finished` at its end.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::Value;

use super::step::{Ctx, Emit, StepError, StepFuture};
use crate::{
    azure::{Kind, arm},
    domain::builds::{self, LastBuild, RunStatus, Shape, Source, TemplateEntry},
    events::{
        BuildFinished, BuildReason, BuildRequested, BuildSkipped, BuildSource, BuildStarted, Cause,
        Check, Fact, FactType, FollowUp, RunOutput,
    },
};

pub const NAME: &str = "BuildImage";
pub const TRIGGER: &str = "fact";
pub const HANDLES: &[FactType] = &[FactType::BuildRequested];

/// The subject of every fact about a template: `imageTemplates/<name>`.
pub fn subject(template_id: &str) -> String {
    format!(
        "imageTemplates/{}",
        template_id.rsplit('/').next().unwrap_or(template_id)
    )
}

pub fn step(fact: Fact, ctx: Arc<Ctx>, _attempt: u32) -> StepFuture {
    Box::pin(async move { request(fact, &ctx).await })
}

fn not_configured(template: &str) -> StepError {
    StepError::failed(
        "TemplateNotConfigured",
        format!("{template} is not one of the templates galleon builds"),
        Some(template.to_owned()),
        "Add the template to the builds file (GALLEON_BUILDS_FILE) or GALLEON_BUILD_TEMPLATES and restart the function app; galleon runs only templates it is configured for.",
    )
}

async fn request(fact: Fact, ctx: &Ctx) -> Result<Vec<Emit>, StepError> {
    let asked: BuildRequested = fact.data().map_err(StepError::unreadable)?;
    let entry = builds::find(&ctx.config.builds, &asked.template_id)
        .ok_or_else(|| not_configured(&asked.template_id))?;
    let id = entry.template_id.as_str();
    let template = read_template(ctx, id).await?;
    let shape = builds::shape(&template).map_err(|why| {
        StepError::failed(
            "TemplateUnsupported",
            format!("{id}: {why}"),
            Some(id.to_owned()),
            "Fix the template (templates are immutable: delete it and create it again), then request the build again.",
        )
    })?;
    if let Some(why) = builds::publish_problem(&shape, entry) {
        return Err(StepError::failed(
            "BuildPublishMissing",
            why,
            Some(id.to_owned()),
            "Give the template's entry in the builds file a \"publish\" object (the manifest's fields: imageDefinition, osType, hyperVGeneration, targetRegions…), or distribute to a gallery image (SharedImage), then request the build again.",
        ));
    }
    let cause = Cause::of(&fact);
    let cancel_after = shape.build_timeout_minutes + entry.cancel_margin();
    // A run in progress answers the request: no second run, no failure.
    if let Some(status) = RunStatus::of(&template).filter(RunStatus::in_progress) {
        return joined(ctx, &cause, entry, &shape, &asked, &status, cancel_after).await;
    }
    let source = resolve(ctx, &shape, id).await?;
    if asked.reason == BuildReason::Schedule && !asked.force && entry.only_when_source_changed {
        let last = last_build(ctx, id).await?;
        if let (Some(why), Some(last)) = (
            builds::unchanged(&source, &shape.fingerprint, last.as_ref()),
            &last,
        ) {
            tracing::info!(template = id, why = %why, "build skipped");
            let skipped = BuildSkipped {
                template_id: id.to_owned(),
                why,
                source,
                last_built_at: last.finished_at,
            };
            return Ok(vec![Emit::now(ctx.fact(
                &cause,
                &subject(id),
                "",
                &skipped,
            )?)]);
        }
    }
    let asked_at = Utc::now();
    // Said before the run starts, so a request that finds it running leaves the watching to this one.
    note_watch(ctx, id, asked_at).await?;
    let run = match ctx
        .arm
        .write(
            Method::POST,
            &format!("{id}/run"),
            arm::IMAGE_BUILDER_API,
            None,
        )
        .await
    {
        Ok(run) => run,
        // Another request started it a moment ago: answer with that run.
        Err(e) if matches!(e.kind(), Kind::Conflict) => {
            let template = read_template(ctx, id).await?;
            return match RunStatus::of(&template).filter(RunStatus::in_progress) {
                Some(status) => {
                    joined(ctx, &cause, entry, &shape, &asked, &status, cancel_after).await
                }
                None => Err(StepError::Waiting(format!(
                    "{id} refused to run ({e}) but shows no run in progress"
                ))),
            };
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(
        template = id,
        status = run.status,
        "Image Builder run started"
    );
    let started = BuildStarted {
        template_id: id.to_owned(),
        started_at: asked_at,
        operation_url: run.operation.clone(),
        already_running: false,
        source: Some(source.clone()),
        build_timeout_minutes: shape.build_timeout_minutes,
        warnings: builds::warnings(&shape),
        reason: asked.reason,
    };
    Ok(vec![
        Emit::now(ctx.fact(&cause, &subject(id), "", &started)?),
        watch(
            ctx,
            &cause,
            id,
            run.operation,
            asked_at,
            cancel_after,
            Some(source),
        )?,
    ])
}

async fn read_template(ctx: &Ctx, id: &str) -> Result<Value, StepError> {
    let template = ctx
        .arm
        .get(id, arm::IMAGE_BUILDER_API, &[])
        .await?
        .ok_or_else(|| {
            StepError::failed(
                "TemplateNotFound",
                format!("the Image Builder template {id} does not exist"),
                Some(id.to_owned()),
                "Create the template (az image builder create), or take it out of the builds file, then request the build again.",
            )
        })?;
    let state = template
        .pointer("/properties/provisioningState")
        .and_then(Value::as_str);
    if state == Some("Failed") {
        let why = template
            .pointer("/properties/provisioningError/message")
            .and_then(Value::as_str)
            .unwrap_or("no message");
        return Err(StepError::failed(
            "TemplateFailed",
            format!("the template {id} is in provisioningState Failed: {why}"),
            Some(id.to_owned()),
            "Image Builder refused the template when it was created; fix it, delete it and create it again.",
        ));
    }
    Ok(template)
}

/// Which run of a template galleon watches: one watch per run, so its end is told once.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Watched {
    run_started_at: DateTime<Utc>,
}

fn watch_note(template_id: &str) -> String {
    last_build_note(template_id).replace(".json", ".watch.json")
}

/// Notes that galleon watches the template's run started about `at`.
async fn note_watch(ctx: &Ctx, template_id: &str, at: DateTime<Utc>) -> Result<(), StepError> {
    let body =
        serde_json::to_vec(&Watched { run_started_at: at }).map_err(StepError::unreadable)?;
    ctx.ledger
        .write_note(&watch_note(template_id), body.into())
        .await?;
    Ok(())
}

/// Whether this request must watch the run started at `start` (no other galleon request does).
async fn must_watch(ctx: &Ctx, template_id: &str, start: DateTime<Utc>) -> Result<bool, StepError> {
    let watched = ctx
        .ledger
        .read_note(&watch_note(template_id))
        .await?
        .and_then(|b| serde_json::from_slice::<Watched>(&b).ok());
    if watched.is_some_and(|w| builds::same_run(w.run_started_at, start)) {
        return Ok(false);
    }
    note_watch(ctx, template_id, start).await?;
    Ok(true)
}

/// The answer to a request that found the run in progress: `build.started` with `alreadyRunning`, and a
/// watch only when no other galleon request watches the run (one started in the portal, say).
async fn joined(
    ctx: &Ctx,
    cause: &Cause,
    entry: &TemplateEntry,
    shape: &Shape,
    asked: &BuildRequested,
    status: &RunStatus,
    cancel_after: u32,
) -> Result<Vec<Emit>, StepError> {
    let id = entry.template_id.as_str();
    let started_at = status.start.unwrap_or_else(Utc::now);
    tracing::info!(template = id, since = %started_at, "a run is in progress; answering with it");
    let started = BuildStarted {
        template_id: id.to_owned(),
        started_at,
        operation_url: None,
        already_running: true,
        source: None,
        build_timeout_minutes: shape.build_timeout_minutes,
        warnings: builds::warnings(shape),
        reason: asked.reason,
    };
    let mut emits = vec![Emit::now(ctx.fact(cause, &subject(id), "", &started)?)];
    if must_watch(ctx, id, started_at).await? {
        emits.push(watch(ctx, cause, id, None, started_at, cancel_after, None)?);
    }
    Ok(emits)
}

/// The first look at a run.
fn watch(
    ctx: &Ctx,
    cause: &Cause,
    id: &str,
    operation_url: Option<String>,
    started_at: DateTime<Utc>,
    cancel_after: u32,
    source: Option<BuildSource>,
) -> Result<Emit, StepError> {
    let check = Check::Build {
        template_id: id.to_owned(),
        operation_url,
        started_at,
        cancel_after_minutes: cancel_after,
        cancel_requested_at: None,
        source,
    };
    ctx.follow_up(
        cause,
        NAME,
        &subject(id),
        check,
        None,
        1,
        run_deadline(started_at, cancel_after),
        ctx.look_after(id, Some(started_at), None, None),
    )
}

/// A run's watch ends by then: its cancel time, and an hour for the cancel to take.
fn run_deadline(started_at: DateTime<Utc>, cancel_after: u32) -> DateTime<Utc> {
    started_at + chrono::Duration::minutes(i64::from(cancel_after) + 60)
}

/// What the template builds from, with the version a run would use now.
async fn resolve(ctx: &Ctx, shape: &Shape, template_id: &str) -> Result<BuildSource, StepError> {
    let version = match &shape.source {
        Source::Platform {
            publisher,
            offer,
            sku,
            version,
        } if version.eq_ignore_ascii_case("latest") => {
            let sub = template_id
                .trim_start_matches('/')
                .split('/')
                .nth(1)
                .unwrap_or_default();
            let path = format!(
                "/subscriptions/{sub}/providers/Microsoft.Compute/locations/{}/publishers/{publisher}/artifacttypes/vmimage/offers/{offer}/skus/{sku}/versions",
                shape.location
            );
            let all = ctx
                .arm
                .list(&path, arm::COMPUTE_IMAGES_API, &[], 20)
                .await?;
            let latest = builds::latest_version(
                all.iter()
                    .filter_map(|v| v.get("name").and_then(Value::as_str)),
            );
            Some(latest.ok_or_else(|| {
                StepError::failed(
                    "SourceImageNotFound",
                    format!("{publisher}:{offer}:{sku} has no versions in {}", shape.location),
                    Some(template_id.to_owned()),
                    "The template's platform image is not offered in its region (az vm image list --all -p <publisher> -f <offer> -s <sku> -l <region>); fix the template's source.",
                )
            })?)
        }
        Source::Platform { version, .. } => Some(version.clone()),
        Source::Gallery {
            version: Some(v), ..
        } => Some(v.clone()),
        Source::Gallery {
            definition_id,
            version: None,
        } => {
            let all = ctx
                .arm
                .list(
                    &format!("{definition_id}/versions"),
                    arm::GALLERY_API,
                    &[],
                    50,
                )
                .await?;
            builds::latest_gallery_version(&all, &shape.location)
        }
        Source::ManagedImage { .. } => None,
    };
    Ok(shape.source.resolved(version))
}

fn last_build_note(template_id: &str) -> String {
    let key = uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_URL,
        template_id.to_ascii_lowercase().as_bytes(),
    );
    format!("builds/{key}.json")
}

async fn last_build(ctx: &Ctx, template_id: &str) -> Result<Option<LastBuild>, StepError> {
    let note = ctx.ledger.read_note(&last_build_note(template_id)).await?;
    Ok(note.and_then(|b| serde_json::from_slice(&b).ok()))
}

/// One look at a run, from a follow-up: look again, cancel it when overdue, or tell how it ended.
pub async fn look(ctx: &Ctx, fact: &Fact, data: &FollowUp) -> Result<Vec<Emit>, StepError> {
    let Check::Build {
        template_id,
        operation_url,
        started_at,
        cancel_after_minutes,
        cancel_requested_at,
        source,
    } = &data.check
    else {
        return Err(StepError::unreadable("not a build check"));
    };
    let template = read_template(ctx, template_id).await?;
    let again = |cancel_requested_at: Option<DateTime<Utc>>| -> Result<Vec<Emit>, StepError> {
        let check = Check::Build {
            template_id: template_id.clone(),
            operation_url: operation_url.clone(),
            started_at: *started_at,
            cancel_after_minutes: *cancel_after_minutes,
            cancel_requested_at,
            source: source.clone(),
        };
        Ok(vec![ctx.follow_up(
            &Cause::of(fact),
            &data.step,
            &subject(template_id),
            check,
            None,
            data.attempt + 1,
            data.deadline,
            ctx.look_after(template_id, Some(*started_at), None, None),
        )?])
    };
    let status = match RunStatus::of(&template) {
        // Image Builder shows the run a moment after it accepted it; a status from before this run is
        // the last run's.
        Some(s)
            if s.start
                .is_none_or(|t| t + chrono::Duration::minutes(2) >= *started_at) =>
        {
            s
        }
        _ => return again(*cancel_requested_at),
    };
    if status.in_progress() {
        let now = Utc::now();
        if cancel_requested_at.is_none() && builds::overdue(*started_at, *cancel_after_minutes, now)
        {
            tracing::warn!(template = %template_id, since = %started_at, "the run is past its timeout and galleon's margin; cancelling it");
            match ctx
                .arm
                .write(
                    Method::POST,
                    &format!("{template_id}/cancel"),
                    arm::IMAGE_BUILDER_API,
                    None,
                )
                .await
            {
                Ok(_) => {}
                // Ended or being cancelled meanwhile: the next look tells.
                Err(e) if matches!(e.kind(), Kind::Conflict) => {}
                Err(e) => return Err(e.into()),
            }
            return again(Some(now));
        }
        return again(*cancel_requested_at);
    }
    finished(
        ctx,
        fact,
        template_id,
        &template,
        status,
        source,
        cancel_requested_at.is_some(),
    )
    .await
}

/// The run ended: `build.finished`, and for a successful run, what it was built from is remembered.
async fn finished(
    ctx: &Ctx,
    fact: &Fact,
    template_id: &str,
    template: &Value,
    status: RunStatus,
    source: &Option<BuildSource>,
    cancel_requested: bool,
) -> Result<Vec<Emit>, StepError> {
    let outputs = ctx
        .arm
        .list(
            &format!("{template_id}/runOutputs"),
            arm::IMAGE_BUILDER_API,
            &[],
            20,
        )
        .await?;
    let shape = builds::shape(template).ok();
    let kind_of = |name: &str| {
        shape.as_ref().and_then(|s| {
            s.distributions
                .iter()
                .find(|d| d.run_output_name == name)
                .map(|d| d.kind.clone())
        })
    };
    let run_outputs: Vec<RunOutput> = outputs
        .iter()
        .filter(|o| {
            o.pointer("/properties/provisioningState")
                .and_then(Value::as_str)
                .is_none_or(|s| s == "Succeeded")
        })
        .map(|o| {
            let name = o
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let prop = |k: &str| {
                o.pointer(&format!("/properties/{k}"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            RunOutput {
                kind: kind_of(&name),
                artifact_id: prop("artifactId"),
                artifact_uri: prop("artifactUri")
                    .map(|u| u.split('?').next().unwrap_or(&u).to_owned()),
                name,
            }
        })
        .collect();
    let staging = template
        .pointer("/properties/exactStagingResourceGroup")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let timed_out = cancel_requested && status.state == "Canceled";
    let finished_at = status.end.unwrap_or_else(Utc::now);
    // A source Image Builder resolved itself (exactVersion) is what the run really used: a platform
    // image's version, or a gallery version's whole id (its last segment is the version).
    let source = source.clone().map(|mut s| {
        if let Some(exact) = template
            .pointer("/properties/source/exactVersion")
            .and_then(Value::as_str)
            .filter(|_| s.kind != "ManagedImage")
        {
            s.version = Some(builds::exact_version_name(exact).to_owned());
        }
        s
    });
    let data = BuildFinished {
        template_id: template_id.to_owned(),
        run_state: status.state.clone(),
        run_sub_state: status.sub_state.clone(),
        message: status.message.clone(),
        started_at: status.start,
        finished_at,
        duration_seconds: status
            .start
            .and_then(|s| (finished_at - s).to_std().ok())
            .map(|d| d.as_secs()),
        advice: builds::advice(&status.state, timed_out, staging.as_deref()),
        run_outputs,
        source: source.clone(),
        timed_out,
        staging_resource_group: staging,
    };
    tracing::info!(template = template_id, run_state = %data.run_state, outputs = data.run_outputs.len(), "Image Builder run ended");
    if data.run_state == "Succeeded"
        && let (Some(source), Some(shape)) = (source, shape)
    {
        let last = LastBuild {
            source,
            fingerprint: shape.fingerprint,
            finished_at,
        };
        let body = serde_json::to_vec(&last).map_err(StepError::unreadable)?;
        ctx.ledger
            .write_note(&last_build_note(template_id), body.into())
            .await?;
    }
    // One fact id per run, whichever look tells it.
    let run_key = format!(
        "build-run:{}:{}",
        template_id.to_ascii_lowercase(),
        status
            .start
            .map(|t| t.timestamp_millis())
            .unwrap_or_default()
    );
    let cause = Cause {
        id: run_key,
        correlation_id: fact
            .correlation_id()
            .unwrap_or_else(|| fact.id().to_owned()),
        traceparent: fact.traceparent(),
    };
    Ok(vec![Emit::now(ctx.fact(
        &cause,
        &subject(template_id),
        "",
        &data,
    )?)])
}
