//! DeadLetterList: the dead letters galleon kept (`GET /api/deadletters`, function key), newest first,
//! each with Service Bus's reason, where it died, its run and whether an operator resubmitted it.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{dead_letters::Kept, runs, step::Ctx};
use crate::host::{Failure, Invocation, Output};

pub const NAME: &str = "DeadLetterList";
pub const TRIGGER: &str = "req";
/// Dead letters listed at most (they are rare; a flood of them is a fire to put out first).
const MAX: usize = 200;

/// The dead letters galleon kept, newest first.
pub async fn kept(ctx: &Ctx) -> Result<Vec<Kept>, crate::azure::AzureError> {
    let mut kept: Vec<Kept> = Vec::new();
    for name in ctx.ledger.note_names("deadletters/", MAX).await? {
        if let Some(bytes) = ctx.ledger.read_note(&name).await? {
            kept.extend(serde_json::from_slice::<Kept>(&bytes).ok());
        }
    }
    kept.sort_by_key(|k| std::cmp::Reverse(k.at));
    Ok(kept)
}

pub async fn run(_invocation: Invocation, ctx: Arc<Ctx>) -> Result<Output, Failure> {
    let kept = match kept(&ctx).await {
        Ok(k) => k,
        Err(e) => return Ok(runs::unreadable(&e)),
    };
    let listed: Vec<Value> = kept
        .into_iter()
        .map(|k| {
            // The list says what and why; the fact itself is resubmitted, not shown.
            let mut v = json!(k);
            if let Some(o) = v.as_object_mut() {
                o.remove("fact");
            }
            v
        })
        .collect();
    Ok(runs::answer(200, json!({"deadLetters": listed})))
}
