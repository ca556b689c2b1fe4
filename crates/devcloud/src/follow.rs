//! Follows one upload through the chain on a running local cloud, from the outside: the facts on the
//! Service Bus topic and the host's invocations (admin endpoints), and galleon's public events as a
//! webhook subscriber receives them. Ends at `image.ready` (success) or `vhd.rejected` / `step.failed`
//! (failure, with the reason), or at a deadline. Used by `devcloud demo` and `devcloud upload`; the
//! part that tells which events belong to a run ([`RunFilter`]) also by `devcloud scale`.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::receiver::Received;

/// How a run ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// `image.ready`: the event.
    Ready(Value),
    /// `vhd.rejected` or `step.failed`: the event.
    Failed(Value),
    /// Nothing final before the deadline.
    TimedOut(Duration),
}

impl Outcome {
    pub fn succeeded(&self) -> bool {
        matches!(self, Outcome::Ready(_))
    }

    /// What to tell the user.
    pub fn summary(&self) -> String {
        match self {
            Outcome::Ready(e) => {
                let regions: Vec<String> = e["data"]["regions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r["name"].as_str().map(str::to_owned))
                    .collect();
                format!(
                    "image ready: {}\nregions: {}",
                    e["data"]["versionId"].as_str().unwrap_or("?"),
                    regions.join(", ")
                )
            }
            Outcome::Failed(e) if e["type"] == REJECTED => {
                let r = &e["data"]["reason"];
                format!(
                    "the VHD was rejected: {}: {}\nfix: {}",
                    r["code"].as_str().unwrap_or("?"),
                    r["message"].as_str().unwrap_or("?"),
                    r["fix"].as_str().unwrap_or("-")
                )
            }
            Outcome::Failed(e) => {
                let d = &e["data"];
                format!(
                    "step {} failed after {} attempt(s): {}: {}\nadvice: {}",
                    d["step"].as_str().unwrap_or("?"),
                    d["attempts"],
                    d["error"]["code"].as_str().unwrap_or("?"),
                    d["error"]["message"].as_str().unwrap_or("?"),
                    d["advice"].as_str().unwrap_or("-")
                )
            }
            Outcome::TimedOut(after) => format!(
                "no image.ready, vhd.rejected or step.failed within {} s",
                after.as_secs()
            ),
        }
    }
}

const READY: &str = "io.galleon.image.ready.v1";
const REJECTED: &str = "io.galleon.vhd.rejected.v1";
const STEP_FAILED: &str = "io.galleon.step.failed.v1";

/// Which of galleon's public events belong to one run: those naming its uploaded blobs, those sharing
/// a correlation id with them, and recent ones about the version it makes.
#[derive(Debug, Clone)]
pub struct RunFilter {
    /// `<container>/<blob>` of the uploaded VHD and manifest: the events about them start the run.
    blobs: Vec<String>,
    /// `/images/<definition>/versions/[<version>]`: a fact about a version of the image definition,
    /// raised after the follow began, belongs to the run too (a step that fails before any fact names the
    /// blob says only the version it was making).
    version_subject: Option<String>,
    since: chrono::DateTime<chrono::Utc>,
    correlations: HashSet<String>,
}

impl RunFilter {
    /// `blobs` are `<container>/<blob>` paths of what was uploaded.
    pub fn new(blobs: Vec<String>) -> RunFilter {
        RunFilter {
            blobs,
            version_subject: None,
            since: chrono::Utc::now() - chrono::Duration::seconds(1),
            correlations: HashSet::new(),
        }
    }

    /// The run publishes a version of `definition` (and `version`, when it is known in advance).
    pub fn with_definition(mut self, definition: &str, version: Option<&str>) -> RunFilter {
        self.version_subject = Some(format!(
            "/images/{definition}/versions/{}",
            version.unwrap_or_default()
        ));
        self
    }

    /// Whether `event` belongs to this run (remembering its correlation id when it opens the run).
    pub fn ours(&mut self, event: &Value) -> bool {
        let correlation = event["correlationid"].as_str().unwrap_or_default();
        if !correlation.is_empty() && self.correlations.contains(correlation) {
            return true;
        }
        let d = &event["data"];
        let mentions = [
            &event["subject"],
            &d["input"]["subject"],
            &d["blob"]["url"],
            &d["vhd"]["url"],
            &d["manifest"]["url"],
            &d["sourceVhd"]["url"],
        ]
        .into_iter()
        .filter_map(Value::as_str)
        .any(|s| {
            self.blobs.iter().any(|b| {
                let (container, name) = b.split_once('/').unwrap_or(("", b));
                s.ends_with(&format!("/containers/{container}/blobs/{name}"))
                    || s.ends_with(&format!("/{container}/{name}"))
            })
        });
        let about_our_version = self.version_subject.as_deref().is_some_and(|v| {
            let recent = event["time"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .is_some_and(|t| t >= self.since);
            let subject = event["subject"].as_str().unwrap_or_default();
            recent
                && subject.starts_with("galleries/")
                && subject.contains(v)
                && (v.ends_with('/') || subject.ends_with(v) || subject.contains(&format!("{v}/")))
        });
        if mentions && !correlation.is_empty() {
            self.correlations.insert(correlation.to_owned());
        }
        mentions || about_our_version
    }

    /// Whether `event` ends the run, and how.
    pub fn ending(event: &Value) -> Option<Outcome> {
        if event["type"] == READY {
            Some(Outcome::Ready(event.clone()))
        } else if event["type"] == REJECTED || event["type"] == STEP_FAILED {
            Some(Outcome::Failed(event.clone()))
        } else {
            None
        }
    }
}

/// Watches one run.
pub struct Follower {
    client: reqwest::Client,
    service_bus: String,
    host: String,
    received: Received,
    started: Instant,
    run: RunFilter,
    seen_invocations: HashSet<String>,
    seen_activity: HashSet<String>,
    seen_events: usize,
}

impl Follower {
    /// `service_bus` and `host` are base URLs (`https://127.0.0.1:7445`, `http://127.0.0.1:7071`);
    /// `blobs` are `<container>/<blob>` paths of what was uploaded.
    pub fn new(
        client: reqwest::Client,
        service_bus: String,
        host: String,
        received: Received,
        blobs: Vec<String>,
        started: Instant,
    ) -> Follower {
        Follower {
            client,
            service_bus,
            host,
            received,
            started,
            run: RunFilter::new(blobs),
            seen_invocations: HashSet::new(),
            seen_activity: HashSet::new(),
            seen_events: 0,
        }
    }

    /// The run publishes a version of `definition` (and `version`, when it is known in advance).
    pub fn with_definition(mut self, definition: &str, version: Option<&str>) -> Follower {
        self.run = self.run.with_definition(definition, version);
        self
    }

    fn elapsed(&self) -> String {
        format!("{:.1}s", self.started.elapsed().as_secs_f64())
    }

    async fn get(&self, url: String) -> Option<Value> {
        let response = self.client.get(&url).send().await.ok()?;
        if !response.status().is_success() {
            tracing::warn!(url, status = %response.status(), "admin endpoint refused");
            return None;
        }
        response.json().await.ok()
    }

    /// Prints what happened since the last look; the outcome once the run has ended.
    pub async fn poll(&mut self) -> Option<Outcome> {
        if let Some(Value::Array(activity)) = self
            .get(format!("{}/_devcloud/recent?max=500", self.service_bus))
            .await
        {
            for a in activity {
                let op = a["op"].as_str().unwrap_or_default();
                if !matches!(op, "sent" | "scheduled" | "duplicate-dropped") {
                    continue;
                }
                let key = format!(
                    "{}|{}|{}|{}",
                    a["time"], a["entity"], a["sequenceNumber"], a["messageId"]
                );
                if self.seen_activity.insert(key) {
                    let what = a["detail"]
                        .as_str()
                        .unwrap_or("?")
                        .replace("io.galleon.", "");
                    println!("{:>7}  fact {op:<17} {what}", self.elapsed());
                }
            }
        }
        if let Some(Value::Array(invocations)) = self
            .get(format!("{}/_devcloud/host/invocations", self.host))
            .await
        {
            for i in invocations {
                let id = i["id"].as_str().unwrap_or_default().to_owned();
                if !self.seen_invocations.insert(id) {
                    continue;
                }
                println!(
                    "{:>7}  ran {:<17} {:<9} {:>5} ms{}",
                    self.elapsed(),
                    i["function"].as_str().unwrap_or("?"),
                    i["status"].as_str().unwrap_or("?"),
                    i["durationMs"],
                    i["error"]
                        .as_str()
                        .map(|e| format!("  ({e})"))
                        .unwrap_or_default()
                );
            }
        }
        let events = self.received.all();
        let mut outcome = None;
        for e in events.iter().skip(self.seen_events) {
            if !self.run.ours(e) {
                continue;
            }
            println!(
                "{:>7}  ► subscriber received {}  {}",
                self.elapsed(),
                e["type"].as_str().unwrap_or("?"),
                e["subject"].as_str().unwrap_or("")
            );
            if outcome.is_none() {
                outcome = RunFilter::ending(e);
            }
        }
        self.seen_events = events.len();
        outcome
    }

    /// Polls until the run ends or `timeout` passes.
    pub async fn follow(&mut self, timeout: Duration) -> Outcome {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(outcome) = self.poll().await {
                return outcome;
            }
            if Instant::now() >= deadline {
                return Outcome::TimedOut(timeout);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn follower() -> RunFilter {
        RunFilter::new(vec![
            "images/u/u.vhd".to_owned(),
            "images/u/u.manifest.json".to_owned(),
        ])
    }

    #[test]
    fn a_run_is_recognised_by_its_blobs_then_by_correlation() {
        let mut f = follower();
        let later = json!({"type": READY, "correlationid": "c1", "subject": "galleries/g/images/u/versions/1.0.0"});
        assert!(!f.ours(&later), "unknown correlation before the run opened");
        let accepted = json!({"type": "io.galleon.vhd.accepted.v1", "correlationid": "c1",
            "subject": "/blobServices/default/containers/images/blobs/u/u.manifest.json"});
        assert!(f.ours(&accepted));
        assert!(f.ours(&later));
        let other = json!({"type": READY, "correlationid": "c2",
            "subject": "/blobServices/default/containers/images/blobs/v/u.manifest.json"});
        assert!(
            !f.ours(&other),
            "same file name in another folder is another run"
        );
        let failed = json!({"type": STEP_FAILED, "correlationid": "c3", "subject": "galleries/g",
            "data": {"input": {"subject": "/blobServices/default/containers/images/blobs/u/u.manifest.json"}}});
        assert!(f.ours(&failed));
    }

    #[test]
    fn a_failure_about_our_definition_and_version_is_ours_when_recent() {
        let now = chrono::Utc::now().to_rfc3339();
        let old = (chrono::Utc::now() - chrono::Duration::minutes(5)).to_rfc3339();
        let event = |subject: &str, time: &str| json!({"type": STEP_FAILED, "correlationid": "c9", "subject": subject, "time": time});
        let mut any = follower().with_definition("u", None);
        assert!(any.ours(&event("galleries/g/images/u/versions/2026.1201.1", &now)));
        assert!(!any.ours(&event("galleries/g/images/u/versions/2026.1201.1", &old)));
        assert!(!any.ours(&event("galleries/g/images/uu/versions/1.0.0", &now)));
        let mut one = follower().with_definition("u", Some("1.0.0"));
        assert!(one.ours(&event("galleries/g/images/u/versions/1.0.0", &now)));
        assert!(one.ours(&event(
            "galleries/g/images/u/versions/1.0.0/regions/eastus",
            &now
        )));
        assert!(!one.ours(&event("galleries/g/images/u/versions/1.0.01", &now)));
        assert!(!one.ours(&event("galleries/g/images/u/versions/2.0.0", &now)));
    }

    #[test]
    fn summaries_carry_the_reason() {
        let rejected = Outcome::Failed(json!({"type": REJECTED, "data": {"reason":
            {"code": "VhdIsDynamic", "message": "u.vhd is a dynamic VHD", "fix": "qemu-img convert"}}}));
        assert!(!rejected.succeeded());
        let s = rejected.summary();
        assert!(
            s.contains("VhdIsDynamic: u.vhd is a dynamic VHD")
                && s.contains("fix: qemu-img convert"),
            "{s}"
        );
        let failed = Outcome::Failed(
            json!({"type": STEP_FAILED, "data": {"step": "PublishVersion", "attempts": 1,
            "error": {"code": "Conflict", "message": "no"}, "advice": "rename"}}),
        );
        assert!(
            failed
                .summary()
                .contains("step PublishVersion failed after 1 attempt(s): Conflict: no")
        );
        let ready = Outcome::Ready(
            json!({"data": {"versionId": "/v/1", "regions": [{"name": "a"}, {"name": "b"}]}}),
        );
        assert!(ready.succeeded());
        assert_eq!(ready.summary(), "image ready: /v/1\nregions: a, b");
    }
}
