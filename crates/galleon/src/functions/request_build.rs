//! RequestBuild: a small JSON blob in `GALLEON_BUILD_REQUEST_CONTAINER` (`{"template": "<id or name>",
//! "reason": "…", "force": false}`) requests a build, for pipelines that can only write to storage. The
//! blob is never changed or deleted; a bad request is answered with `step.failed` naming the fix.

use std::sync::Arc;

use chrono::Utc;
use serde::Deserialize;

use super::{
    build_image,
    ingest::parse_subject,
    on_event::{self, EventTry},
    step::{Ctx, Emit, StepError},
};
use crate::{
    azure::blob::redact,
    domain::builds,
    events::{BuildReason, BuildRequested, Cause},
    host::{Failure, Invocation, Output, Trigger},
};

pub const NAME: &str = "RequestBuild";
pub const TRIGGER: &str = "event";
/// Largest request blob read, in bytes.
const MAX_REQUEST_BYTES: u64 = 16 * 1024;

/// A build request as written. Schema: `events/build-request.schema.json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Request {
    #[serde(rename = "$schema", default)]
    _schema: Option<String>,
    /// The template's resource id, or its name when that is unique among the configured templates.
    pub template: String,
    /// Why, in the requester's words (carried to `build.requested` as its note).
    #[serde(default)]
    pub reason: Option<String>,
    /// Build even when nothing changed; requests always build, so this only documents the intent.
    #[serde(default)]
    pub force: bool,
}

fn invalid(message: String, fix: &str) -> StepError {
    StepError::failed("BuildRequestInvalid", message, None, fix)
}

/// The request's template, as configured; `Err` names what is wrong and how to fix it.
pub fn decide(
    text: &[u8],
    entries: &[builds::TemplateEntry],
) -> Result<(Request, String), StepError> {
    let request: Request = serde_json::from_slice(text).map_err(|e| {
        invalid(
            format!("the build request is not valid: {e}"),
            "Write the request as JSON: {\"template\": \"<template resource id or name>\", \"reason\": \"why\"} (events/build-request.schema.json).",
        )
    })?;
    let entry = builds::find(entries, &request.template).ok_or_else(|| {
        let names: Vec<&str> = entries.iter().map(builds::TemplateEntry::name).collect();
        invalid(
            format!("'{}' is not a template galleon builds", request.template),
            &format!(
                "Name one of the configured templates ({}) by its resource id or name; galleon runs only templates it is configured for (GALLEON_BUILDS_FILE, GALLEON_BUILD_TEMPLATES).",
                if names.is_empty() { "none are configured".to_owned() } else { names.join(", ") }
            ),
        )
    })?;
    let id = entry.template_id.clone();
    Ok((request, id))
}

pub async fn run(
    invocation: Invocation,
    ctx: Arc<Ctx>,
    tried: EventTry,
) -> Result<Output, Failure> {
    let Trigger::EventGrid(event) = invocation.trigger else {
        return Err(Failure::new(
            "RequestBuild is bound to an Event Grid trigger",
        ));
    };
    let url = event
        .data
        .get("url")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned();
    let subject = event.subject.clone().unwrap_or_default();
    let ours = event.event_type == "Microsoft.Storage.BlobCreated"
        && parse_subject(&subject).is_some_and(|(container, path)| {
            container == ctx.config.build_request_container
                && path.to_ascii_lowercase().ends_with(".json")
        });
    if !ours {
        tracing::info!(subject = %subject, "not a build request blob; ignored");
        return Ok(Output::default());
    }
    let cause = Cause::root(
        &event.id,
        invocation
            .traceparent
            .clone()
            .or_else(|| Some(crate::events::new_traceparent(&event.id))),
    );
    let work = async {
        ctx.blobs.check_url(&url)?;
        let (text, _) = match ctx.blobs.read_small(&url, MAX_REQUEST_BYTES).await {
            Ok(read) => read,
            Err(e) if e.is_not_found() => return Ok(Vec::new()),
            Err(e) => return Err(StepError::from(e)),
        };
        let (request, template_id) = decide(&text, &ctx.config.builds)?;
        let data = BuildRequested {
            template_id: template_id.clone(),
            reason: BuildReason::Request,
            requested_by: Some(redact(&url)),
            note: request.reason,
            force: request.force,
            requested_at: event.time.unwrap_or_else(Utc::now),
        };
        tracing::info!(template = %template_id, request = %redact(&url), "a request blob asks for a build");
        Ok(vec![Emit::now(ctx.fact(
            &cause,
            &build_image::subject(&template_id),
            "",
            &data,
        )?)])
    };
    let outcome = crate::azure::in_run(cause.correlation_id.clone(), work).await;
    on_event::finish(&ctx, NAME, &cause, &event, tried, outcome).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_names_a_configured_template() {
        let id = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.VirtualMachineImages/imageTemplates/ubuntu";
        let entries = builds::parse(Some(id), None).expect("valid");
        let ok = |text: &str| {
            decide(text.as_bytes(), &entries)
                .map(|(r, t)| (r.reason, t))
                .ok()
        };
        assert_eq!(
            ok(r#"{"template": "ubuntu", "reason": "CVE-2026-1234"}"#),
            Some((Some("CVE-2026-1234".into()), id.into()))
        );
        assert_eq!(
            ok(&format!(r#"{{"template": "{id}"}}"#)),
            Some((None, id.into()))
        );
        // (request, what the failure says)
        for (text, want) in [
            (
                r#"{"template": "windows"}"#,
                "'windows' is not a template galleon builds",
            ),
            (r#"{"tmpl": "ubuntu"}"#, "not valid"),
            ("not json", "not valid"),
        ] {
            match decide(text.as_bytes(), &entries) {
                Err(StepError::Failed(stop)) => {
                    assert_eq!(stop.error.code, "BuildRequestInvalid");
                    assert!(stop.error.message.contains(want), "{}", stop.error.message);
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }
}
