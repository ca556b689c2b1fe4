//! Rebuild: an operator runs an Image Builder template now (`POST /api/builds/rebuild`, function key,
//! body `{"template": "<name or resource id>", "force": false, "note": "…", "by": "…"}`), as the timer
//! would: a `build.requested` with reason `operator`, which BuildImage takes up (a run already under way
//! is joined, an unchanged source is skipped unless `force`). Only configured templates run.

use std::sync::Arc;

use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    build_image, runs,
    step::{self, Ctx, Emit},
};
use crate::{
    domain::builds,
    events::{BuildReason, BuildRequested, Cause},
    host::{Failure, Invocation, Output, Trigger},
};

pub const NAME: &str = "Rebuild";
pub const TRIGGER: &str = "req";

/// The request's body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Asked {
    template: String,
    #[serde(default)]
    force: bool,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    by: Option<String>,
}

fn asked(body: &Value) -> Result<Asked, String> {
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
    let Some(entry) = builds::find(&ctx.config.builds, &asked.template) else {
        let names: Vec<&str> = ctx.config.builds.iter().map(|e| e.name()).collect();
        return Ok(runs::error(
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
    let root = format!(
        "operator:{}:{}",
        invocation.invocation_id, entry.template_id
    );
    let cause = Cause::root(
        &root,
        invocation
            .traceparent
            .clone()
            .or_else(|| Some(crate::events::new_traceparent(&root))),
    );
    let data = BuildRequested {
        template_id: entry.template_id.clone(),
        reason: BuildReason::Operator,
        requested_by: Some(asked.by.unwrap_or_else(|| "operator".into())),
        note: asked.note,
        force: asked.force,
        requested_at: invocation.host_time.unwrap_or_else(Utc::now),
    };
    let fact = ctx
        .fact(&cause, &build_image::subject(&entry.template_id), "", &data)
        .map_err(|e| Failure::new(format!("{e:?}")))?;
    step::send(&ctx, &[Emit::now(fact)]).await?;
    tracing::info!(template = %entry.template_id, force = data.force, "an operator asked for a build");
    Ok(runs::answer(
        202,
        json!({"requested": entry.template_id, "run": cause.correlation_id, "force": data.force}),
    ))
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
