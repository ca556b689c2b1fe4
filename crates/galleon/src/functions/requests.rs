//! Requests: the operator's controls by Service Bus queue (`galleon-requests`), for pipelines and teams
//! that would rather drop a message than call HTTP. A request is a small JSON body
//! (events/request.schema.json): `replicate`, `rebuild`, `publish`, `markBad` or `pin`, carried out by the
//! same code as the HTTP controls. It is answered by facts: `request.accepted` (in the run it started or
//! touched) and then the usual chain, or `request.rejected` with the cause and the fix. A malformed or
//! refused request is rejected at once, never retried into a dead letter; only trouble worth another try
//! (Azure or storage busy) is left to Service Bus's redelivery, and a request that dies there is
//! announced by DeadLetters.

use std::{collections::BTreeMap, sync::Arc};

use chrono::Utc;
use serde_json::{Map, Value, json};

use super::{
    control::{self, Asker, Refusal},
    publish_request, rebuild, replicate_again,
    step::Ctx,
    versions,
};
use crate::{
    events::{Cause, Reason, RequestAccepted, RequestRejected},
    host::{Failure, Invocation, Output, Trigger},
};

pub const NAME: &str = "Requests";
pub const TRIGGER: &str = "request";
/// Requests are small; anything larger is refused unread.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// What a request asks, checked by the control that carries it out.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Replicate(replicate_again::Asked),
    Rebuild(rebuild::Asked),
    Publish(publish_request::Asked),
    Mark(versions::Request),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub id: String,
    pub kind: String,
    pub by: String,
    pub action: Action,
}

/// Why a request could not be read: what could be read of it, and the field at fault.
#[derive(Debug, Clone, PartialEq)]
pub struct Unreadable {
    pub id: Option<String>,
    pub kind: Option<String>,
    pub by: Option<String>,
    pub why: String,
}

/// The fields each kind takes, besides `kind`, `id` and `by`.
fn fields_of(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "replicate" => &["imageDefinition", "version", "regions", "reason"],
        "rebuild" => &["template", "force", "note"],
        "publish" => &["vhd", "manifest"],
        "markBad" | "pin" => &["imageDefinition", "version", "reason"],
        _ => return None,
    })
}

fn text(body: &Map<String, Value>, field: &str, max: usize) -> Result<Option<String>, String> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(t)) if !t.is_empty() && t.chars().count() <= max => Ok(Some(t.clone())),
        Some(_) => Err(format!(
            "{field}: must be a string of 1 to {max} characters"
        )),
    }
}

/// Reads a request body (`Err`: what could be read, and what is wrong, field first). Pure.
pub fn parse(body: &str) -> Result<Request, Unreadable> {
    let mut unreadable = Unreadable {
        id: None,
        kind: None,
        by: None,
        why: String::new(),
    };
    let fail = |mut u: Unreadable, why: String| {
        u.why = why;
        Err(u)
    };
    if body.len() > MAX_REQUEST_BYTES {
        return fail(
            unreadable,
            format!(
                "body: {} bytes; a request is at most {MAX_REQUEST_BYTES}",
                body.len()
            ),
        );
    }
    let object = match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(o)) => o,
        Ok(_) => return fail(unreadable, "body: must be a JSON object with a kind".into()),
        Err(e) => return fail(unreadable, format!("body: not JSON ({e})")),
    };
    let id = text(&object, "id", 100);
    let by = text(&object, "by", 100);
    unreadable.id = id.clone().ok().flatten();
    unreadable.by = by.clone().ok().flatten();
    let kind = match object.get("kind").and_then(Value::as_str) {
        Some(k) if fields_of(k).is_some() => k.to_owned(),
        _ => {
            return fail(
                unreadable,
                "kind: must be one of replicate, rebuild, publish, markBad, pin".into(),
            );
        }
    };
    unreadable.kind = Some(kind.clone());
    let (id, by) = match (id, by) {
        (Ok(id), Ok(by)) => (id, by),
        (Err(why), _) | (_, Err(why)) => return fail(unreadable, why),
    };
    let allowed = fields_of(&kind).unwrap_or_default();
    if let Some(unknown) = object
        .keys()
        .find(|k| !["kind", "id", "by"].contains(&k.as_str()) && !allowed.contains(&k.as_str()))
    {
        return fail(
            unreadable,
            format!(
                "{unknown}: not a field of a {kind} request (it takes {})",
                allowed.join(", ")
            ),
        );
    }
    let field = |name: &str| object.get(name).cloned().unwrap_or(Value::Null);
    let required = |name: &str| match object.get(name).and_then(Value::as_str) {
        Some(v) if !v.is_empty() => Ok(v.to_owned()),
        _ => Err(format!("{name}: required, a string")),
    };
    let action = match kind.as_str() {
        "replicate" => required("imageDefinition")
            .and_then(|d| Ok((d, required("version")?)))
            .and_then(|(d, v)| {
                replicate_again::asked(
                    &d,
                    &v,
                    &json!({"regions": field("regions"), "reason": field("reason")}),
                )
            })
            .map(Action::Replicate),
        "rebuild" => required("template")
            .and_then(|_| {
                let mut asked = Map::new();
                for name in ["template", "force", "note"] {
                    if let Some(v) = object.get(name).filter(|v| !v.is_null()) {
                        asked.insert(name.into(), v.clone());
                    }
                }
                rebuild::asked(&Value::Object(asked)).map(|mut a| {
                    a.by.clone_from(&by);
                    a
                })
            })
            .map(Action::Rebuild),
        "publish" => required("vhd").and_then(|vhd| match object.get("manifest") {
            Some(m @ Value::Object(_)) => Ok(Action::Publish(publish_request::Asked {
                vhd,
                manifest: m.clone(),
            })),
            _ => Err("manifest: required, a JSON object (events/manifest.schema.json)".into()),
        }),
        _ => required("imageDefinition")
            .and_then(|d| Ok((d, required("version")?)))
            .and_then(|(d, v)| {
                let action = if kind == "markBad" { "bad" } else { "pin" };
                let params = BTreeMap::from([
                    ("action".to_owned(), action.to_owned()),
                    ("definition".to_owned(), d),
                    ("version".to_owned(), v),
                ]);
                versions::request(&params, &json!({"reason": field("reason")}))
            })
            .map(Action::Mark),
    };
    match action {
        Ok(action) => Ok(Request {
            id: id.unwrap_or_default(),
            kind,
            by: by.unwrap_or_else(|| "requests queue".into()),
            action,
        }),
        Err(why) => fail(unreadable, why),
    }
}

/// The fix for a refusal of this status (the message names the cause, and often the fix too).
fn fix_for(refusal: &Refusal) -> String {
    match refusal.status {
        400 => "Fix the field named and send the request again (events/request.schema.json describes every kind).".into(),
        403 => "Galleon is not configured for that resource; see the message.".into(),
        404 => "Check the name against what exists (galleon status, the gallery, the configured templates) and send the request again.".into(),
        _ => "The message says what stands in the way; clear it and send the request again.".into(),
    }
}

/// Carries out `request` with the control of its kind.
async fn carry_out(ctx: &Ctx, request: &Request, asker: &Asker) -> Result<Value, Refusal> {
    match &request.action {
        Action::Replicate(asked) => replicate_again::replicate(ctx, asked, asker).await,
        Action::Rebuild(asked) => rebuild::rebuild(ctx, asked, asker).await,
        Action::Publish(asked) => publish_request::publish(ctx, asked, &asker.id).await,
        Action::Mark(asked) => versions::mark(ctx, asked, asker).await,
    }
}

pub async fn run(invocation: Invocation, ctx: Arc<Ctx>) -> Result<Output, Failure> {
    let Trigger::ServiceBus(message) = invocation.trigger else {
        return Err(Failure::new(format!(
            "{NAME} is bound to a Service Bus trigger"
        )));
    };
    let message_id = message
        .message_id
        .clone()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| format!("sequence-{}", message.sequence_number.unwrap_or(0)));
    // Every fact of the request derives from its message, so a redelivery makes the same ones.
    let root = format!("request:{message_id}");
    let traceparent = invocation.traceparent.clone();
    let rejected = |request_id: String, kind, by, reason: Reason| {
        tracing::warn!(request = %request_id, code = %reason.code, message = %reason.message, "request rejected");
        let data = RequestRejected {
            request_id: request_id.clone(),
            kind,
            by,
            reason,
            rejected_at: Utc::now(),
        };
        ctx.fact(
            &Cause::root(&root, traceparent.clone()),
            &format!("requests/{request_id}"),
            "",
            &data,
        )
    };
    let request = match parse(&message.body) {
        Ok(r) => r,
        Err(u) => {
            let reason = Reason {
                code: "RequestInvalid".into(),
                message: u.why,
                fix: "Fix the field named and send the request again (events/request.schema.json describes every kind).".into(),
            };
            let id = u.id.unwrap_or_else(|| message_id.clone());
            control::send(&ctx, rejected(id, u.kind, u.by, reason))
                .await
                .map_err(|r| Failure::new(r.message))?;
            return Ok(Output::default());
        }
    };
    let request_id = if request.id.is_empty() {
        message_id.clone()
    } else {
        request.id.clone()
    };
    let asker = Asker {
        id: root.clone(),
        traceparent: traceparent.clone(),
        by: request.by.clone(),
    };
    match carry_out(&ctx, &request, &asker).await {
        Ok(answer) => {
            let run = answer.get("run").and_then(Value::as_str).map(str::to_owned);
            let cause = Cause {
                id: root.clone(),
                correlation_id: run
                    .clone()
                    .unwrap_or_else(|| Cause::root(&root, None).correlation_id),
                traceparent: asker.traceparent(&root),
            };
            let data = RequestAccepted {
                request_id: request_id.clone(),
                kind: request.kind.clone(),
                by: request.by.clone(),
                run,
                answer,
                accepted_at: Utc::now(),
            };
            tracing::info!(request = %request_id, kind = %request.kind, "request accepted");
            control::send(
                &ctx,
                ctx.fact(&cause, &format!("requests/{request_id}"), "", &data),
            )
            .await
            .map_err(|r| Failure::new(r.message))?;
            Ok(Output::default())
        }
        // Busy or unreachable: Service Bus delivers the request again (the same facts, deduplicated).
        Err(refusal) if refusal.status == 503 => Err(Failure::new(format!(
            "{}: {}",
            refusal.code, refusal.message
        ))),
        Err(refusal) => {
            let reason = Reason {
                fix: fix_for(&refusal),
                code: refusal.code,
                message: refusal.message,
            };
            control::send(
                &ctx,
                rejected(request_id, Some(request.kind), Some(request.by), reason),
            )
            .await
            .map_err(|r| Failure::new(r.message))?;
            Ok(Output::default())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_is_read_by_its_control() {
        let replicate = parse(
            r#"{"kind": "replicate", "id": "pipeline-42", "by": "ci", "imageDefinition": "ubuntu-2404", "version": "1.0.0", "regions": ["uksouth"]}"#,
        )
        .expect("valid");
        assert_eq!(replicate.id, "pipeline-42");
        assert_eq!(replicate.by, "ci");
        let Action::Replicate(asked) = replicate.action else {
            panic!("a replication");
        };
        assert_eq!(asked.regions, vec!["uksouth".to_owned()]);
        let rebuild =
            parse(r#"{"kind": "rebuild", "template": "nightly", "force": true}"#).expect("valid");
        assert_eq!(rebuild.by, "requests queue");
        assert!(
            matches!(rebuild.action, Action::Rebuild(ref a) if a.force && a.template == "nightly")
        );
        let publish = parse(
            r#"{"kind": "publish", "vhd": "https://a.blob.core.windows.net/images/d.vhd", "manifest": {"imageDefinition": "u"}}"#,
        )
        .expect("valid: the manifest is judged when written");
        assert!(matches!(publish.action, Action::Publish(_)));
        let pin =
            parse(r#"{"kind": "pin", "imageDefinition": "u", "version": "1.0.0"}"#).expect("valid");
        assert!(matches!(pin.action, Action::Mark(ref r) if r.mark == crate::events::Mark::Pin));
    }

    #[test]
    fn a_malformed_request_names_the_field_and_keeps_what_it_could_read() {
        for (body, field, kind) in [
            ("{not json", "body:", None),
            ("[1]", "body:", None),
            (r#"{"kind": "delete"}"#, "kind:", None),
            (r#"{"id": "r1"}"#, "kind:", None),
            (
                r#"{"kind": "replicate", "version": "1.0.0"}"#,
                "imageDefinition:",
                Some("replicate"),
            ),
            (
                r#"{"kind": "replicate", "imageDefinition": "u", "version": "latest"}"#,
                "version:",
                Some("replicate"),
            ),
            (
                r#"{"kind": "replicate", "imageDefinition": "u", "version": "1.0.0", "regions": ["x-y!"]}"#,
                "regions:",
                Some("replicate"),
            ),
            (
                r#"{"kind": "replicate", "imageDefinition": "u", "version": "1.0.0", "template": "t"}"#,
                "template:",
                Some("replicate"),
            ),
            (r#"{"kind": "rebuild"}"#, "template:", Some("rebuild")),
            (
                r#"{"kind": "rebuild", "template": "t", "force": "yes"}"#,
                "body:",
                Some("rebuild"),
            ),
            (
                r#"{"kind": "publish", "vhd": "https://a/images/d.vhd"}"#,
                "manifest:",
                Some("publish"),
            ),
            (
                r#"{"kind": "markBad", "imageDefinition": "u", "version": "1.0.0", "reason": 5}"#,
                "reason:",
                Some("markBad"),
            ),
            (
                r#"{"kind": "pin", "id": 7, "imageDefinition": "u", "version": "1.0.0"}"#,
                "id:",
                Some("pin"),
            ),
        ] {
            let u = parse(body).expect_err(body);
            assert!(u.why.starts_with(field), "{body}: {}", u.why);
            assert_eq!(u.kind.as_deref(), kind, "{body}");
        }
        let u = parse(r#"{"kind": "rebuild", "id": "r-9", "by": "jo"}"#).expect_err("no template");
        assert_eq!(
            (u.id.as_deref(), u.by.as_deref()),
            (Some("r-9"), Some("jo"))
        );
        assert!(parse(&" ".repeat(MAX_REQUEST_BYTES + 1)).is_err());
    }
}
