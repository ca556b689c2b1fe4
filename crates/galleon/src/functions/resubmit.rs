//! Resubmit: an operator sends a dead-lettered fact again (`POST /api/deadletters/{id}/resubmit`, function
//! key), once the cause is fixed. The fact keeps its id (its message gets a new one); the functions that
//! were still handling it when it died are released in the ledger, so they take it up again, while those
//! that finished it stay done. Asking again answers what was done the first time and sends nothing.

use std::sync::Arc;

use chrono::Utc;
use serde_json::json;

use super::{
    build_image, control, create_image, dead_letters, distribute, follow_up, ingest_build,
    lifecycle, publish_version, replicate_version, runs, share_gallery, step::Ctx,
};
use crate::{
    events::{Cause, DeadLetterResubmitted, Fact},
    host::{Failure, Invocation, Output, Trigger},
};

pub const NAME: &str = "Resubmit";
pub const TRIGGER: &str = "req";

/// The functions that claim facts in the ledger (`step::on_message`).
const CLAIMING: &[&str] = &[
    create_image::NAME,
    publish_version::NAME,
    replicate_version::NAME,
    follow_up::NAME,
    build_image::NAME,
    ingest_build::NAME,
    lifecycle::NAME,
    distribute::NAME,
    share_gallery::NAME,
];

pub async fn run(invocation: Invocation, ctx: Arc<Ctx>) -> Result<Output, Failure> {
    let Trigger::Http(req) = invocation.trigger else {
        return Err(Failure::new("Resubmit is bound to an HTTP trigger"));
    };
    let id = req.params.get("id").cloned().unwrap_or_default();
    if !runs::run_id_ok(&id) {
        return Ok(runs::error(
            400,
            "InvalidFactId",
            format!("id: '{id}' is not a fact id (as `GET /api/deadletters` lists them)"),
        ));
    }
    let name = dead_letters::note_name(&id);
    let mut kept: dead_letters::Kept = match ctx.ledger.read_note(&name).await {
        Ok(Some(bytes)) => match serde_json::from_slice(&bytes) {
            Ok(k) => k,
            Err(e) => {
                return Ok(runs::error(
                    409,
                    "DeadLetterUnreadable",
                    format!(
                        "the kept dead letter {name} cannot be read ({e}); it cannot be resubmitted"
                    ),
                ));
            }
        },
        Ok(None) => {
            return Ok(runs::error(
                404,
                "DeadLetterNotFound",
                format!("no dead letter of fact '{id}'; GET /api/deadletters lists them"),
            ));
        }
        Err(e) => return Ok(runs::unreadable(&e)),
    };
    if let Some(at) = kept.resubmitted_at {
        return Ok(runs::answer(
            200,
            json!({"resubmitted": id, "at": at, "alreadyResubmitted": true, "run": kept.run}),
        ));
    }
    let fact = match Fact::from_json(&kept.fact.to_string()) {
        Ok(f) => f,
        Err(e) => {
            return Ok(runs::error(
                409,
                "NotResubmittable",
                format!("dead letter {id} is not a galleon fact ({e}); it cannot be resubmitted"),
            ));
        }
    };
    for function in CLAIMING {
        if let Err(e) = ctx.ledger.release(function, &id, false).await {
            return Ok(runs::unreadable(&e));
        }
    }
    // If it dies again, DeadLetters announces it again.
    if let Err(e) = ctx.ledger.release(dead_letters::NAME, &id, true).await {
        return Ok(runs::unreadable(&e));
    }
    let now = Utc::now();
    let message_id = format!("{id}.resubmitted.{}", now.timestamp());
    if let Err(e) = ctx.bus.send_as(&fact, None, &message_id).await {
        tracing::warn!(error = %crate::error_chain(&e), fact_id = %id, "could not resubmit a dead letter");
        return Ok(runs::error(
            503,
            e.code(),
            format!("Service Bus did not take the fact: {}", e.message()),
        ));
    }
    tracing::info!(fact_id = %id, fact_type = %kept.fact_type, run = ?kept.run, "an operator resubmitted a dead letter");
    kept.resubmitted_at = Some(now);
    let body = bytes::Bytes::from(serde_json::to_vec(&kept).unwrap_or_default());
    if let Err(e) = ctx.ledger.write_note(&name, body).await {
        tracing::warn!(error = %crate::error_chain(&e), fact_id = %id, "could not note the resubmission");
    }
    // Announced in the fact's own run (its timeline shows where it went on from).
    let root = format!("resubmit:{id}");
    let cause = Cause {
        id: root.clone(),
        correlation_id: kept
            .run
            .clone()
            .unwrap_or_else(|| Cause::root(&root, None).correlation_id),
        traceparent: invocation
            .traceparent
            .clone()
            .or_else(|| Some(crate::events::new_traceparent(&root))),
    };
    let data = DeadLetterResubmitted {
        fact_id: id.clone(),
        fact_type: kept.fact_type.clone(),
        subject: kept.subject.clone(),
        dead_letter_reason: kept.reason.clone(),
        dead_letter_source: kept.source.clone(),
        by: "operator".into(),
        resubmitted_at: now,
    };
    let subject = kept
        .subject
        .clone()
        .unwrap_or_else(|| format!("deadletters/{id}"));
    if let Err(refusal) = control::send(&ctx, ctx.fact(&cause, &subject, "", &data)).await {
        // The fact is on its way again; only its announcement failed.
        tracing::warn!(fact_id = %id, code = %refusal.code, message = %refusal.message, "could not announce a resubmission");
    }
    Ok(runs::answer(
        200,
        json!({"resubmitted": id, "at": now, "alreadyResubmitted": false, "run": kept.run, "type": kept.fact_type}),
    ))
}
