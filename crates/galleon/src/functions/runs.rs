//! Runs: where runs stand, for operators and the `galleon` tool, read from the run journal alone (an
//! HTTP function with function-key auth). `GET /api/runs` lists the recent runs with their state and
//! regions; `GET /api/runs/{run}` adds the run's timeline and its failure's advice.

use std::sync::Arc;

use serde_json::{Value, json};

use super::step::Ctx;
use crate::{
    domain::runs::{self, RunStatus},
    host::{Failure, Invocation, Output, Trigger},
};

pub const NAME: &str = "Runs";
pub const TRIGGER: &str = "req";
pub const OUTPUT: &str = "res";
/// Runs listed by default, and at most.
const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 200;
/// Days of the index read for the list.
const DAYS: u32 = 2;

/// An HTTP answer as the `http` output binding takes it.
pub(super) fn answer(status: u16, body: Value) -> Output {
    Output::default().binding(
        OUTPUT,
        json!({"statusCode": status, "headers": {"Content-Type": "application/json; charset=utf-8"}, "body": body}),
    )
}

pub(super) fn error(status: u16, code: &str, message: String) -> Output {
    answer(status, json!({"error": {"code": code, "message": message}}))
}

/// A run id as it may appear in a URL: a correlation id (a GUID), nothing that makes a path.
pub(super) fn run_id_ok(run: &str) -> bool {
    !run.is_empty()
        && run.len() <= 100
        && run.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// `limit` of the query: 1 to 200 (default 20).
fn limit_of(query: Option<&str>) -> Result<usize, String> {
    match query {
        None => Ok(DEFAULT_LIMIT),
        Some(text) => text
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| format!("limit: '{text}' is not a number from 1 to {MAX_LIMIT}")),
    }
}

pub async fn run(invocation: Invocation, ctx: Arc<Ctx>) -> Result<Output, Failure> {
    let Trigger::Http(req) = invocation.trigger else {
        return Err(Failure::new("Runs is bound to an HTTP trigger"));
    };
    match req.params.get("run").filter(|r| !r.is_empty()) {
        Some(run) => Ok(one(&ctx, run).await),
        None => match limit_of(req.query.get("limit").map(String::as_str)) {
            Ok(limit) => Ok(recent(&ctx, limit).await),
            Err(why) => Ok(error(400, "InvalidQuery", why)),
        },
    }
}

async fn status_of(ctx: &Ctx, run: &str) -> Result<Option<RunStatus>, crate::azure::AzureError> {
    Ok(ctx.journal.run(run).await?.map(|entries| {
        let facts: Vec<_> = entries.into_iter().map(|e| (e.sent_at, e.fact)).collect();
        runs::summarize(run, &facts)
    }))
}

pub(super) fn unreadable(e: &crate::azure::AzureError) -> Output {
    tracing::warn!(error = %crate::error_chain(e), "could not read the run journal");
    error(503, "JournalUnreadable", why_unreadable(e))
}

/// Why galleon's state container could not be read, and the fix: a refusal names the role it needs,
/// anything else is worth another try.
pub(super) fn why_unreadable(e: &crate::azure::AzureError) -> String {
    let code = e.code();
    if code.starts_with("Authorization") || code == "Forbidden" {
        format!(
            "galleon's state container refused galleon's identity ({code}); give it Storage Blob Data Contributor on the container"
        )
    } else {
        format!("galleon's state container could not be read ({code}); try again in a moment")
    }
}

async fn one(ctx: &Ctx, run: &str) -> Output {
    if !run_id_ok(run) {
        return error(
            400,
            "InvalidRunId",
            format!("run: '{run}' is not a run id (the correlation id of a run's facts, a GUID)"),
        );
    }
    match status_of(ctx, run).await {
        Ok(Some(status)) => answer(200, json!(status)),
        Ok(None) => error(
            404,
            "RunNotFound",
            format!("no run '{run}' in galleon's journal; GET /api/runs lists the recent runs"),
        ),
        Err(e) => unreadable(&e),
    }
}

/// Where the runs of the last days stand, newest first, at most `limit`, without their timelines.
pub async fn recent_statuses(
    ctx: &Ctx,
    limit: usize,
) -> Result<Vec<RunStatus>, crate::azure::AzureError> {
    let mut listed = Vec::new();
    for s in ctx.journal.recent(DAYS).await?.into_iter().take(limit) {
        if let Some(mut status) = status_of(ctx, &s.run).await? {
            // The list shows where each run stands; its timeline is one GET away.
            status.timeline.clear();
            listed.push(status);
        }
    }
    Ok(listed)
}

async fn recent(ctx: &Ctx, limit: usize) -> Output {
    match recent_statuses(ctx, limit).await {
        Ok(listed) => answer(200, json!({"runs": listed})),
        Err(e) => unreadable(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::azure::AzureError;

    #[test]
    fn only_a_refusal_asks_for_a_role() {
        for (code, role) in [
            ("AuthorizationPermissionMismatch", true),
            ("AuthorizationFailure", true),
            ("ConditionNotMet", false),
            ("ServerBusy", false),
        ] {
            let why = why_unreadable(&AzureError::transient("Blob Storage", code, "x"));
            assert_eq!(why.contains("Storage Blob Data Contributor"), role, "{why}");
            assert!(why.contains(code), "{why}");
        }
    }

    #[test]
    fn queries_and_ids_are_checked_with_the_field_named() {
        assert_eq!(limit_of(None), Ok(20));
        assert_eq!(limit_of(Some("5")), Ok(5));
        for bad in ["0", "201", "ten", "-1"] {
            assert!(
                limit_of(Some(bad)).is_err_and(|e| e.starts_with("limit:")),
                "{bad}"
            );
        }
        assert!(run_id_ok("629cc102-bfd2-59f4-ab3a-567c6271ff9a"));
        for bad in ["", "../x", "a/b", "a b"] {
            assert!(!run_id_ok(bad), "{bad}");
        }
    }
}
