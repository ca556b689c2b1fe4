//! Rebuild: an operator runs an Image Builder template now (`POST /api/builds/rebuild`, function key,
//! body `{"template": "<name or resource id>", "force": false, "note": "…", "by": "…"}`), as the timer
//! would: a `build.requested` with reason `operator`, which BuildImage takes up (a run already under way
//! is joined, an unchanged source is skipped unless `force`). Only configured templates run.

use std::sync::Arc;

use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    build_image,
    control::{self, Asker, Refusal},
    runs,
    step::Ctx,
};
use crate::{
    domain::builds,
    events::{BuildReason, BuildRequested, Cause},
    host::{Failure, Invocation, Output, Trigger},
};

pub const NAME: &str = "Rebuild";
pub const TRIGGER: &str = "req";

/// The request's body.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Asked {
    pub template: String,
    #[serde(default)]
    pub force: bool,
    #[serde(default)]
    pub note: Option<String>,
    #[serde(default)]
    pub by: Option<String>,
}

pub fn asked(body: &Value) -> Result<Asked, String> {
    let body = match body {
        Value::String(text) => serde_json::from_str::<Value>(text)
            .map_err(|e| format!("body: not JSON ({e}); send {{\"template\": \"<name>\"}}"))?,
        other => other.clone(),
    };
    serde_json::from_value(body).map_err(|e| format!("body: {e}"))
}

pub async fn run(invocation: Invocation, ctx: Arc<Ctx>) -> Result<Output, Failure> {
    let Trigger::Http(req) = invocation.trigger else {
        return Err(Failure::new("Rebuild is bound to an HTTP trigger"));
    };
    let asked = match asked(&req.body) {
        Ok(a) => a,
        Err(why) => return Ok(runs::error(400, "InvalidRequest", why)),
    };
    let asker = Asker {
        id: invocation.invocation_id.clone(),
        traceparent: invocation.traceparent.clone(),
        by: asked.by.clone().unwrap_or_else(|| "operator".into()),
    };
    Ok(match rebuild(&ctx, &asked, &asker).await {
        Ok(body) => runs::answer(202, body),
        Err(refusal) => refusal.output(),
    })
}

/// Asks for a build of the configured template `asked` names; answers the template and the build's run.
pub async fn rebuild(ctx: &Ctx, asked: &Asked, asker: &Asker) -> Result<Value, Refusal> {
    let Some(entry) = builds::find(&ctx.config.builds, &asked.template) else {
        let names: Vec<&str> = ctx.config.builds.iter().map(|e| e.name()).collect();
        return Err(Refusal::new(
            404,
            "TemplateNotConfigured",
            format!(
                "template '{}' is not one galleon builds ({}); configure it in GALLEON_BUILDS_FILE or GALLEON_BUILD_TEMPLATES",
                asked.template,
                if names.is_empty() {
                    "none are configured".to_owned()
                } else {
                    names.join(", ")
                }
            ),
        ));
    };
    let root = format!("operator:{}:{}", asker.id, entry.template_id);
    let cause = Cause::root(&root, asker.traceparent(&root));
    let data = BuildRequested {
        template_id: entry.template_id.clone(),
        reason: BuildReason::Operator,
        requested_by: Some(asker.by.clone()),
        note: asked.note.clone(),
        force: asked.force,
        requested_at: Utc::now(),
    };
    control::send(
        ctx,
        ctx.fact(&cause, &build_image::subject(&entry.template_id), "", &data),
    )
    .await?;
    tracing::info!(template = %entry.template_id, force = data.force, "an operator asked for a build");
    Ok(json!({"requested": entry.template_id, "run": cause.correlation_id, "force": data.force}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_names_its_template_and_nothing_unknown() {
        let a = asked(&json!({"template": "nightly", "force": true})).expect("valid");
        assert_eq!((a.template.as_str(), a.force), ("nightly", true));
        assert!(asked(&json!("{\"template\": \"t\"}")).is_ok());
        for bad in [
            json!({}),
            json!({"template": 5}),
            json!({"template": "t", "when": "now"}),
            json!("{x"),
        ] {
            assert!(asked(&bad).is_err_and(|e| e.starts_with("body:")), "{bad}");
        }
    }
}
