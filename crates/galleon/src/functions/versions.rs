//! Versions: an operator's controls over one version (an HTTP function with function-key auth,
//! `POST /api/versions/{definition}/{version}/bad|pin|replicate`). `replicate` is replicate_again's. A
//! mark (`bad`, `pin`; body `{"reason": "…"}` optional) goes
//! on the default gallery's version and on its copies in every distribution target's gallery, as the tags
//! retention reads (`galleon-bad`, `galleon-pin`); a bad version is also excluded from `latest`. Only
//! versions galleon published are marked. A change is announced as `image.version.marked`, in the
//! version's own run; asking again changes nothing and says so.

use std::{collections::BTreeMap, sync::Arc};

use reqwest::Method;
use serde_json::{Value, json};

use super::{
    control::{self, Asker, Refusal},
    owned::RUN_TAG,
    replicate_again, step,
};
use crate::{
    azure::arm::{self, ids},
    domain::{naming, retention},
    events::{Cause, Mark, VersionMarked},
    host::{Failure, Invocation, Output, Trigger},
};

pub const NAME: &str = "Versions";
pub const TRIGGER: &str = "req";
pub const OUTPUT: &str = "res";

fn answer(status: u16, body: Value) -> Output {
    Output::default().binding(
        OUTPUT,
        json!({"statusCode": status, "headers": {"Content-Type": "application/json; charset=utf-8"}, "body": body}),
    )
}

fn error(status: u16, code: &str, message: String) -> Output {
    answer(status, json!({"error": {"code": code, "message": message}}))
}

/// What an operator asked for, checked: the mark, the definition, the version, the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub mark: Mark,
    pub definition: String,
    pub version: String,
    pub reason: Option<String>,
}

/// Reads the route and body; `Err` names the field and what is wrong.
pub fn request(params: &BTreeMap<String, String>, body: &Value) -> Result<Request, String> {
    let param = |name: &str| params.get(name).map(String::as_str).unwrap_or("");
    let mark = match param("action") {
        "bad" => Mark::Bad,
        "pin" => Mark::Pin,
        other => {
            return Err(format!(
                "action: '{other}' is not 'bad', 'pin' or 'replicate'"
            ));
        }
    };
    let definition = param("definition");
    naming::image_definition(definition)
        .map_err(|e| format!("definition: '{definition}': {}", e.rule))?;
    let version = param("version");
    if version.parse::<naming::Version>().is_err() {
        return Err(format!(
            "version: '{version}' is not a gallery version (major.minor.patch)"
        ));
    }
    // The host sends a JSON body as a value, or as text; an empty body asks for no reason.
    let body = match body {
        Value::String(text) if text.trim().is_empty() => Value::Null,
        Value::String(text) => serde_json::from_str(text)
            .map_err(|e| format!("body: not JSON ({e}); send {{\"reason\": \"…\"}} or nothing"))?,
        other => other.clone(),
    };
    let reason = match body.get("reason") {
        None | Some(Value::Null) => None,
        Some(Value::String(r)) if r.chars().count() <= 500 => Some(r.clone()),
        Some(Value::String(_)) => return Err("reason: longer than 500 characters".into()),
        Some(_) => return Err("reason: must be a string".into()),
    };
    if !(body.is_null() || body.is_object()) {
        return Err("body: must be a JSON object such as {\"reason\": \"…\"}".into());
    }
    Ok(Request {
        mark,
        definition: definition.to_owned(),
        version: version.to_owned(),
        reason,
    })
}

/// The PATCH that puts `mark` on a version with tags `tags`, or `None` when it carries it already.
pub fn patch_for(
    mark: Mark,
    tags: &serde_json::Map<String, Value>,
    excluded: bool,
) -> Option<Value> {
    let tag = match mark {
        Mark::Bad => retention::BAD_TAG,
        Mark::Pin => retention::PIN_TAG,
    };
    let tagged = tags.get(tag).and_then(Value::as_str) == Some("true");
    let exclude = mark == Mark::Bad && !excluded;
    if tagged && !exclude {
        return None;
    }
    // ARM's PATCH replaces the whole tags object: send what is there, plus the mark.
    let mut all = tags.clone();
    all.insert(tag.to_owned(), json!("true"));
    let mut body = json!({"tags": all});
    if mark == Mark::Bad {
        body["properties"] = json!({"publishingProfile": {"excludeFromLatest": true}});
    }
    Some(body)
}

pub async fn run(invocation: Invocation, ctx: Arc<step::Ctx>) -> Result<Output, Failure> {
    let Trigger::Http(req) = invocation.trigger else {
        return Err(Failure::new("Versions is bound to an HTTP trigger"));
    };
    if req.params.get("action").map(String::as_str) == Some("replicate") {
        let param = |name: &str| req.params.get(name).map(String::as_str).unwrap_or("");
        let asked = match replicate_again::asked(param("definition"), param("version"), &req.body) {
            Ok(a) => a,
            Err(why) => return Ok(error(400, "InvalidRequest", why)),
        };
        let asker = Asker {
            id: invocation.invocation_id.clone(),
            traceparent: invocation.traceparent.clone(),
            by: asked.by.clone().unwrap_or_else(|| "operator".into()),
        };
        return Ok(
            match replicate_again::replicate(&ctx, &asked, &asker).await {
                Ok(body) if body["replicating"] == true => answer(202, body),
                Ok(body) => answer(200, body),
                Err(refusal) => refusal.output(),
            },
        );
    }
    let asked = match request(&req.params, &req.body) {
        Ok(r) => r,
        Err(why) => return Ok(error(400, "InvalidRequest", why)),
    };
    let asker = Asker {
        id: invocation.invocation_id.clone(),
        traceparent: invocation.traceparent.clone(),
        by: "operator".into(),
    };
    Ok(match mark(&ctx, &asked, &asker).await {
        Ok(body) => answer(200, body),
        Err(refusal) => refusal.output(),
    })
}

/// Marks the version and its copies as `asked`; answers what was marked, what was already, and the run.
pub async fn mark(ctx: &step::Ctx, asked: &Request, asker: &Asker) -> Result<Value, Refusal> {
    let p = &ctx.config.policy;
    let galleries = ctx.config.galleries();
    let mut marked = Vec::new();
    let mut already = Vec::new();
    let mut run = None;
    for (n, (sub, rg, gallery)) in galleries.iter().enumerate() {
        let id = ids::image_version(sub, rg, gallery, &asked.definition, &asked.version);
        let version = match ctx.arm.get(&id, arm::GALLERY_API, &[]).await {
            Ok(Some(v)) => v,
            // The default gallery must have it; a target may not (not distributed there).
            Ok(None) if n == 0 => {
                return Err(Refusal::new(
                    404,
                    "VersionNotFound",
                    format!(
                        "no version {} of image definition {} in gallery {gallery}",
                        asked.version, asked.definition
                    ),
                ));
            }
            Ok(None) => continue,
            Err(e) => return Err(Refusal::azure(&e, &id)),
        };
        let tags = version
            .get("tags")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let Some(version_run) = tags.get(RUN_TAG).and_then(Value::as_str) else {
            if n == 0 {
                return Err(Refusal::new(
                    409,
                    "NotPublishedByGalleon",
                    format!(
                        "{id} has no {RUN_TAG} tag: galleon did not publish it and marks only what it published; mark it yourself with az sig image-version update --set publishingProfile.excludeFromLatest=true"
                    ),
                ));
            }
            continue;
        };
        run.get_or_insert_with(|| version_run.to_owned());
        let excluded = version
            .pointer("/properties/publishingProfile/excludeFromLatest")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        match patch_for(asked.mark, &tags, excluded) {
            None => already.push(id),
            Some(body) => {
                if let Err(e) = ctx
                    .arm
                    .write(Method::PATCH, &id, arm::GALLERY_API, Some(&body))
                    .await
                {
                    return Err(Refusal::azure(&e, &id));
                }
                tracing::info!(version = %id, mark = ?asked.mark, "marked by an operator");
                marked.push(id);
            }
        }
    }
    if !marked.is_empty() {
        let data = VersionMarked {
            image_definition: asked.definition.clone(),
            version: asked.version.clone(),
            mark: asked.mark,
            reason: asked.reason.clone(),
            versions: marked.clone(),
            by: asker.by.clone(),
            at: chrono::Utc::now(),
        };
        let root = format!("mark:{:?}:{}:{}", asked.mark, marked.join(","), asker.id);
        let cause = Cause {
            id: root.clone(),
            // The mark belongs to the version's own run: its journal and timeline show it.
            correlation_id: run.clone().unwrap_or_else(|| root.clone()),
            traceparent: asker.traceparent(&root),
        };
        let subject = format!(
            "galleries/{}/images/{}/versions/{}",
            p.gallery, asked.definition, asked.version
        );
        control::send(ctx, ctx.fact(&cause, &subject, "", &data)).await?;
    }
    Ok(json!({"mark": asked.mark, "marked": marked, "alreadyMarked": already, "run": run}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(definition: &str, version: &str, mark: &str) -> BTreeMap<String, String> {
        [
            ("definition", definition),
            ("version", version),
            ("action", mark),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    #[test]
    fn requests_are_checked_with_the_field_named() {
        let ok = request(
            &params("ubuntu-2404", "1.0.0", "bad"),
            &json!({"reason": "CVE"}),
        )
        .expect("valid");
        assert_eq!(ok.mark, Mark::Bad);
        assert_eq!(ok.reason.as_deref(), Some("CVE"));
        let text = request(
            &params("u", "1.0.0", "pin"),
            &json!("{\"reason\": \"keep\"}"),
        )
        .expect("a body sent as text");
        assert_eq!(text.reason.as_deref(), Some("keep"));
        assert!(request(&params("u", "1.0.0", "pin"), &json!("")).is_ok());
        for (p, body, field) in [
            (params("u", "1.0.0", "delete"), Value::Null, "action:"),
            (
                params("bad name!", "1.0.0", "bad"),
                Value::Null,
                "definition:",
            ),
            (params("u", "latest", "bad"), Value::Null, "version:"),
            (params("u", "1.0.0", "bad"), json!({"reason": 5}), "reason:"),
            (params("u", "1.0.0", "bad"), json!("{not json"), "body:"),
            (params("u", "1.0.0", "bad"), json!([1]), "body:"),
        ] {
            let e = request(&p, &body).expect_err("refused");
            assert!(e.starts_with(field), "{e}");
        }
    }

    #[test]
    fn a_mark_keeps_the_tags_and_is_written_once() {
        let tags = json!({"galleon-run": "r1", "team": "platform"});
        let tags = tags.as_object().cloned().unwrap_or_default();
        let bad = patch_for(Mark::Bad, &tags, false).expect("a change");
        assert_eq!(bad["tags"]["team"], "platform");
        assert_eq!(bad["tags"]["galleon-bad"], "true");
        assert_eq!(
            bad["properties"]["publishingProfile"]["excludeFromLatest"],
            true
        );
        let pin = patch_for(Mark::Pin, &tags, false).expect("a change");
        assert_eq!(pin["tags"]["galleon-pin"], "true");
        assert!(
            pin.get("properties").is_none(),
            "pinning does not touch latest"
        );
        let mut marked = tags.clone();
        marked.insert("galleon-bad".into(), json!("true"));
        assert_eq!(patch_for(Mark::Bad, &marked, true), None);
        // Tagged but still in latest (someone changed it back): excluded again.
        assert!(patch_for(Mark::Bad, &marked, false).is_some());
    }
}
