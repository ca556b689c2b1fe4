//! StatusPage: one HTML page for people (an HTTP function with function-key auth, `GET /api/status?code=…`):
//! the recent runs, each version's regions with their replica's state, failures with their advice (from
//! the run journal), and the dead letters galleon kept. It refreshes itself, fetches nothing from anywhere (no script, no font, no CDN:
//! its Content-Security-Policy forbids it), and reads on a phone.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use html_escape::encode_text as text;
use serde_json::json;

use super::{dead_letter_list, dead_letters::Kept, runs, step::Ctx};
use crate::{
    domain::runs::{ReplicaState, RunState, RunStatus},
    host::{Failure, Invocation, Output},
};

pub const NAME: &str = "StatusPage";
pub const TRIGGER: &str = "req";
pub const OUTPUT: &str = "res";
/// Seconds between the page's own refreshes.
const REFRESH: u32 = 15;
const RUNS: usize = 50;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0 auto;max-width:60rem;padding:1rem;line-height:1.4;color:#1b1f24}\
h1{font-size:1.4rem;margin:0}.when{color:#57606a;font-size:.9rem}\
article{border:1px solid #d0d7de;border-radius:6px;padding:.6rem .8rem;margin:.6rem 0}\
h2{font-size:1.1rem;margin:1.2rem 0 .4rem}h3{font-size:1rem;margin:0;overflow-wrap:anywhere}\
.meta{color:#57606a;font-size:.85rem;margin:.2rem 0;overflow-wrap:anywhere}\
.state{font-size:.8rem;padding:.1rem .45rem;border-radius:1rem;background:#eaeef2;margin-left:.4rem}\
.ready .state{background:#dafbe1}.failed .state,.rejected .state{background:#ffebe9}.partiallyReady .state{background:#fff8c5}\
ul.regions{list-style:none;padding:0;margin:.3rem 0;display:flex;flex-wrap:wrap;gap:.3rem}\
ul.regions li{font-size:.85rem;padding:.1rem .5rem;border-radius:4px;background:#eaeef2}\
ul.regions li.ready{background:#dafbe1}ul.regions li.failed{background:#ffebe9}\
.failure{background:#fff5f5;border-left:3px solid #cf222e;padding:.3rem .6rem;margin-top:.4rem;overflow-wrap:anywhere}";

fn state_word(state: RunState) -> &'static str {
    match state {
        RunState::Running => "running",
        RunState::Ready => "ready",
        RunState::PartiallyReady => "partially ready",
        RunState::Failed => "failed",
        RunState::Rejected => "rejected",
        RunState::Skipped => "skipped",
    }
}

fn state_class(state: RunState) -> &'static str {
    match state {
        RunState::PartiallyReady => "partiallyReady",
        other => state_word(other),
    }
}

fn replica_word(state: ReplicaState) -> &'static str {
    match state {
        ReplicaState::Pending => "pending",
        ReplicaState::Ready => "ready",
        ReplicaState::Failed => "failed",
    }
}

fn when(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "-".into(),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

fn article(run: &RunStatus) -> String {
    let title = run
        .image
        .as_deref()
        .or(run.source.as_deref())
        .unwrap_or("a run");
    let mut html = format!(
        "<article class=\"run {}\"><h3>{}<span class=\"state\">{}</span></h3>\
         <p class=\"meta\">run <code>{}</code> · started {} · last fact {}</p>",
        state_class(run.state),
        text(title),
        state_word(run.state),
        text(&run.run),
        when(run.started_at),
        when(run.last_at),
    );
    // The source is the title when the run names no image yet.
    if let (Some(source), Some(_)) = (&run.source, &run.image) {
        html.push_str(&format!("<p class=\"meta\">from {}</p>", text(source)));
    }
    if !run.regions.is_empty() {
        html.push_str("<ul class=\"regions\">");
        for r in &run.regions {
            html.push_str(&format!(
                "<li class=\"{0}\">{1}: {0}</li>",
                replica_word(r.state),
                text(&r.name)
            ));
        }
        html.push_str("</ul>");
    }
    if let Some(f) = &run.failure {
        html.push_str(&format!(
            "<div class=\"failure\"><p><strong>{}</strong>{}: {}</p>",
            text(&f.code),
            f.step
                .as_deref()
                .map(|s| format!(" in {}", text(s)))
                .unwrap_or_default(),
            text(&f.message)
        ));
        if let Some(advice) = &f.advice {
            html.push_str(&format!(
                "<p class=\"advice\">What to do: {}</p>",
                text(advice)
            ));
        }
        html.push_str("</div>");
    }
    html.push_str("</article>");
    html
}

/// The dead letters, each with what died where and why, and whether it was resubmitted.
fn dead_letters(kept: &[Kept]) -> String {
    if kept.is_empty() {
        return String::new();
    }
    let mut html = String::from("<h2>Dead letters</h2>");
    for k in kept {
        let resubmitted = k
            .resubmitted_at
            .map(|at| format!(" · resubmitted {}", when(Some(at))))
            .unwrap_or_default();
        html.push_str(&format!(
            "<article class=\"run failed\"><h3>{}<span class=\"state\">{}</span></h3>\
             <p class=\"meta\">fact <code>{}</code> · run <code>{}</code> · {} · in {} after {} deliveries{resubmitted}</p>\
             <div class=\"failure\"><p>{}</p><p class=\"advice\">What to do: fix the cause, then <code>galleon resubmit {}</code>.</p></div></article>",
            text(k.fact_type.trim_start_matches("io.galleon.")),
            text(&k.reason),
            text(&k.fact_id),
            text(k.run.as_deref().unwrap_or("-")),
            when(Some(k.at)),
            text(&k.source),
            k.deliveries,
            text(&k.description),
            text(&k.fact_id),
        ));
    }
    html
}

/// The whole page for `runs` and the dead letters `kept` as of `now`.
pub fn render(runs: &[RunStatus], kept: &[Kept], now: DateTime<Utc>) -> String {
    let failed: Vec<&RunStatus> = runs.iter().filter(|r| r.failure.is_some()).collect();
    let running = runs.iter().filter(|r| r.state == RunState::Running).count();
    let mut html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH}\"><title>galleon: runs</title>\
         <style>{STYLE}</style></head><body><h1>galleon</h1>\
         <p class=\"when\">{} runs in the last two days, {running} running, {} failed · as of {} · refreshes every {REFRESH} s</p>",
        runs.len(),
        failed.len(),
        when(Some(now)),
    );
    if !failed.is_empty() {
        html.push_str("<h2>Failures</h2>");
        for run in &failed {
            html.push_str(&article(run));
        }
    }
    html.push_str(&dead_letters(kept));
    html.push_str("<h2>Recent runs</h2>");
    if runs.is_empty() {
        html.push_str("<p>No runs in the last two days.</p>");
    }
    for run in runs {
        html.push_str(&article(run));
    }
    html.push_str("</body></html>");
    html
}

pub async fn run(_invocation: Invocation, ctx: Arc<Ctx>) -> Result<Output, Failure> {
    let read = async {
        Ok::<_, crate::azure::AzureError>((
            runs::recent_statuses(&ctx, RUNS).await?,
            dead_letter_list::kept(&ctx).await?,
        ))
    };
    let (status, body) = match read.await {
        Ok((listed, kept)) => (200, render(&listed, &kept, Utc::now())),
        Err(e) => {
            tracing::warn!(error = %crate::error_chain(&e), "could not read the run journal for the status page");
            (
                503,
                format!(
                    "<!doctype html><title>galleon</title><p>{}.</p>",
                    text(&runs::why_unreadable(&e))
                ),
            )
        }
    };
    Ok(Output::default().binding(
        OUTPUT,
        json!({"statusCode": status, "headers": {
            "Content-Type": "text/html; charset=utf-8",
            "Cache-Control": "no-store",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
            "X-Content-Type-Options": "nosniff"
        }, "body": body}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::runs::{Failure as RunFailure, Region};

    fn run(state: RunState) -> RunStatus {
        RunStatus {
            run: "r1".into(),
            state,
            started_at: DateTime::from_timestamp(1_796_000_000, 0),
            last_at: DateTime::from_timestamp(1_796_000_090, 0),
            image: Some("ubuntu-2404/1.0.0".into()),
            version_id: None,
            source: Some("https://a.blob.core.windows.net/images/u.vhd".into()),
            regions: vec![
                Region {
                    name: "westeurope".into(),
                    state: ReplicaState::Ready,
                },
                Region {
                    name: "eastus2".into(),
                    state: ReplicaState::Pending,
                },
            ],
            failure: None,
            timeline: Vec::new(),
        }
    }

    #[test]
    fn the_page_shows_runs_regions_and_advice_and_escapes_what_it_shows() {
        let mut failed = run(RunState::Failed);
        failed.run = "r2".into();
        failed.failure = Some(RunFailure {
            step: Some("PublishVersion".into()),
            code: "AuthorizationFailed".into(),
            message: "<script>alert(1)</script>".into(),
            advice: Some("Grant Contributor & try again.".into()),
        });
        let dead = Kept {
            fact_id: "f-1".into(),
            fact_type: "io.galleon.image.ready.v1".into(),
            subject: None,
            run: Some("r3".into()),
            reason: "MaxDeliveryCountExceeded".into(),
            description: "could not be consumed after 10 delivery attempts".into(),
            source: "galleon-facts/subscriptions/announce".into(),
            deliveries: 10,
            at: Utc::now(),
            resubmitted_at: None,
            fact: serde_json::Value::Null,
        };
        let html = render(&[run(RunState::Running), failed], &[dead], Utc::now());
        assert!(html.contains("<h2>Dead letters</h2>"));
        assert!(
            html.contains("image.ready.v1<span class=\"state\">MaxDeliveryCountExceeded</span>")
        );
        assert!(html.contains("in galleon-facts/subscriptions/announce after 10 deliveries"));
        assert!(html.contains("galleon resubmit f-1"));
        assert!(html.contains("2 runs in the last two days, 1 running, 1 failed"));
        assert!(html.contains("<li class=\"ready\">westeurope: ready</li>"));
        assert!(html.contains("<li class=\"pending\">eastus2: pending</li>"));
        assert!(html.contains("What to do: Grant Contributor &amp; try again."));
        assert!(!html.contains("<script>"), "escaped");
        assert!(html.contains("<meta http-equiv=\"refresh\""));
        assert!(
            !html.contains("http://") && !html.contains("src="),
            "nothing fetched"
        );
        let empty = render(&[], &[], Utc::now());
        assert!(empty.contains("No runs in the last two days."));
        assert!(
            !empty.contains("Dead letters"),
            "no section without dead letters"
        );
    }
}
