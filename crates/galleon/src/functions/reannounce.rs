//! Reannounce: an operator announces a run's public facts again (`POST /api/runs/{run}/announce`, function
//! key), from its journal, to the public Event Grid topic: for a subscriber that was down longer than
//! Event Grid retries. The facts keep their ids, so a subscriber that had them sees the same events again.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{runs, step::Ctx};
use crate::{
    events::FactType,
    host::{Failure, Invocation, Output, Trigger},
};

pub const NAME: &str = "Reannounce";
pub const TRIGGER: &str = "req";
pub const OUTPUTS: &[&str] = &[runs::OUTPUT, super::announce::OUTPUT];

/// The public facts among a run's journal entries, in order.
pub fn public(facts: impl IntoIterator<Item = Value>) -> Vec<Value> {
    facts
        .into_iter()
        .filter(|f| {
            f.get("type")
                .and_then(Value::as_str)
                .and_then(FactType::from_cloud_event_type)
                .is_some_and(FactType::is_public)
        })
        .collect()
}

pub async fn run(invocation: Invocation, ctx: Arc<Ctx>) -> Result<Output, Failure> {
    let Trigger::Http(req) = invocation.trigger else {
        return Err(Failure::new("Reannounce is bound to an HTTP trigger"));
    };
    let run = req.params.get("run").cloned().unwrap_or_default();
    if !runs::run_id_ok(&run) {
        return Ok(runs::error(
            400,
            "InvalidRunId",
            format!("run: '{run}' is not a run id (the correlation id of a run's facts, a GUID)"),
        ));
    }
    let entries = match ctx.journal.run(&run).await {
        Ok(Some(entries)) => entries,
        Ok(None) => {
            return Ok(runs::error(
                404,
                "RunNotFound",
                format!("no run '{run}' in galleon's journal; GET /api/runs lists the recent runs"),
            ));
        }
        Err(e) => return Ok(runs::unreadable(&e)),
    };
    let facts = public(entries.into_iter().map(|e| e.fact));
    let ids: Vec<Value> = facts.iter().map(|f| f["id"].clone()).collect();
    tracing::info!(run = %run, facts = facts.len(), "announcing a run's facts again, as an operator asked");
    Ok(runs::answer(
        200,
        json!({"run": run, "announced": ids.len(), "facts": ids}),
    )
    .binding(super::announce::OUTPUT, Value::Array(facts)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_facts_are_announced_again() {
        let facts = [
            "io.galleon.vhd.accepted.v1",
            "io.galleon.image.replica.ready.v1",
            "io.galleon.operation.followup.v1",
            "io.galleon.image.ready.v1",
            "something.else",
        ]
        .map(|t| json!({"id": t, "type": t}));
        let kept: Vec<Value> = public(facts).into_iter().map(|f| f["id"].clone()).collect();
        assert_eq!(
            kept,
            [
                json!("io.galleon.image.replica.ready.v1"),
                json!("io.galleon.image.ready.v1")
            ]
        );
    }
}
