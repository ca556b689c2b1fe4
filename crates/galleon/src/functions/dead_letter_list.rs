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

pub async fn run(_invocation: Invocation, ctx: Arc<Ctx>) -> Result<Output, Failure> {
    let names = match ctx.ledger.note_names("deadletters/", MAX).await {
        Ok(n) => n,
        Err(e) => return Ok(runs::unreadable(&e)),
    };
    let mut kept: Vec<Kept> = Vec::new();
    for name in names {
        match ctx.ledger.read_note(&name).await {
            Ok(Some(bytes)) => kept.extend(serde_json::from_slice::<Kept>(&bytes).ok()),
            Ok(None) => {}
            Err(e) => return Ok(runs::unreadable(&e)),
        }
    }
    kept.sort_by_key(|k| std::cmp::Reverse(k.at));
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
