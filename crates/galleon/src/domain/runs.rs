//! Where a run stands, decided from its journal alone: its image, its state, each region's replica, the
//! failure and its advice, and the timeline of its facts with the time between them. Pure; the journal
//! is read elsewhere.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

/// How a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RunState {
    /// No terminal fact yet.
    Running,
    Ready,
    PartiallyReady,
    Failed,
    Rejected,
    /// A run that had nothing to do: a build whose source had not changed, a request that needed
    /// nothing done.
    Skipped,
}

/// One region's replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ReplicaState {
    Pending,
    Ready,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Region {
    pub name: String,
    pub state: ReplicaState,
}

/// Why the run failed (or its VHD was rejected), and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub step: Option<String>,
    pub code: String,
    pub message: String,
    pub advice: Option<String>,
}

/// One fact of the timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Moment {
    /// The fact's short type (`vhd.accepted`).
    pub fact: String,
    pub id: String,
    pub at: DateTime<Utc>,
    pub subject: Option<String>,
    /// Seconds since the run's first fact, and since the one before.
    pub since_start: f64,
    pub since_previous: f64,
    /// What it says in a few words: a region, an error code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunStatus {
    pub run: String,
    pub state: RunState,
    pub started_at: Option<DateTime<Utc>>,
    pub last_at: Option<DateTime<Utc>>,
    /// `<definition>/<version>` when the run names one.
    pub image: Option<String>,
    pub version_id: Option<String>,
    /// The blob or template the run started from.
    pub source: Option<String>,
    pub regions: Vec<Region>,
    pub failure: Option<Failure>,
    pub timeline: Vec<Moment>,
}

/// `io.galleon.vhd.accepted.v1` → `vhd.accepted`.
pub fn short_type(ty: &str) -> &str {
    let ty = ty.strip_prefix("io.galleon.").unwrap_or(ty);
    ty.rsplit_once(".v")
        .filter(|(_, n)| n.chars().all(|c| c.is_ascii_digit()))
        .map_or(ty, |(name, _)| name)
}

fn text(v: &Value, pointer: &str) -> Option<String> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn region_names(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| {
            r.get("name")
                .and_then(Value::as_str)
                .or_else(|| r.as_str())
                .map(str::to_owned)
        })
        .collect()
}

fn set(regions: &mut Vec<Region>, name: &str, state: ReplicaState) {
    match regions
        .iter_mut()
        .find(|r| r.name.eq_ignore_ascii_case(name))
    {
        Some(r) => r.state = state,
        None => regions.push(Region {
            name: name.to_owned(),
            state,
        }),
    }
}

/// The status of run `run` from its facts as sent, in order: `(sent at, fact as a CloudEvent)`.
pub fn summarize(run: &str, facts: &[(DateTime<Utc>, Value)]) -> RunStatus {
    let mut status = RunStatus {
        run: run.to_owned(),
        state: RunState::Running,
        started_at: facts.first().map(|(at, _)| *at),
        last_at: facts.last().map(|(at, _)| *at),
        image: None,
        version_id: None,
        source: None,
        regions: Vec::new(),
        failure: None,
        timeline: Vec::new(),
    };
    let mut previous = status.started_at;
    for (at, fact) in facts {
        let ty = fact.get("type").and_then(Value::as_str).unwrap_or("");
        let short = short_type(ty).to_owned();
        let data = fact.get("data").cloned().unwrap_or(Value::Null);
        let mut note = None;
        if let Some(plan) = data.get("plan") {
            if let (Some(d), Some(v)) = (text(plan, "/imageDefinition"), text(plan, "/version")) {
                status.image.get_or_insert(format!("{d}/{v}"));
            }
            if status.regions.is_empty() {
                for name in region_names(plan.get("targetRegions")) {
                    set(&mut status.regions, &name, ReplicaState::Pending);
                }
            }
        }
        if status.source.is_none() {
            status.source = text(&data, "/vhd/url")
                .or_else(|| text(&data, "/blob/url"))
                .or_else(|| text(&data, "/manifest/url"))
                .or_else(|| text(&data, "/templateId"))
                .map(|u| without_query(&u));
        }
        if let Some(id) = text(&data, "/versionId") {
            status.version_id = Some(id);
        }
        match short.as_str() {
            // A run that replicates a version again starts with the regions complete already.
            "image.replication.requested" => {
                for name in region_names(data.get("readyRegions")) {
                    set(&mut status.regions, &name, ReplicaState::Ready);
                }
                let added = region_names(data.get("addedRegions"));
                let again = region_names(data.get("againRegions"));
                note = Some(
                    [("add", added), ("again", again)]
                        .iter()
                        .filter(|(_, r)| !r.is_empty())
                        .map(|(what, r)| format!("{what} {}", r.join(", ")))
                        .collect::<Vec<_>>()
                        .join("; "),
                )
                .filter(|n| !n.is_empty());
            }
            "image.replica.ready" => {
                if let Some(name) = text(&data, "/region/name") {
                    set(&mut status.regions, &name, ReplicaState::Ready);
                    note = Some(name);
                }
            }
            "image.ready" => {
                status.state = RunState::Ready;
                for name in region_names(data.get("regions")) {
                    set(&mut status.regions, &name, ReplicaState::Ready);
                }
            }
            "image.partially.ready" => {
                status.state = RunState::PartiallyReady;
                for name in region_names(data.get("usableRegions")) {
                    set(&mut status.regions, &name, ReplicaState::Ready);
                }
                for name in region_names(data.get("failedRegions")) {
                    set(&mut status.regions, &name, ReplicaState::Failed);
                }
                note = Some(format!(
                    "failed in {}",
                    region_names(data.get("failedRegions")).join(", ")
                ));
            }
            // A request that started nothing else (every region complete, say) ends with its answer.
            "request.accepted"
                if data.get("run").is_none_or(Value::is_null)
                    && status.state == RunState::Running =>
            {
                status.state = RunState::Skipped;
            }
            "step.failed" | "vhd.rejected" | "request.rejected" => {
                let failed = short == "step.failed";
                // The first failure ends the run; a later one (a copy's) does not replace it.
                if status.failure.is_none() {
                    status.state = if failed {
                        RunState::Failed
                    } else {
                        RunState::Rejected
                    };
                    let (code, message, advice) = if failed {
                        (
                            text(&data, "/error/code"),
                            text(&data, "/error/message"),
                            text(&data, "/advice"),
                        )
                    } else {
                        (
                            text(&data, "/reason/code"),
                            text(&data, "/reason/message"),
                            text(&data, "/reason/fix"),
                        )
                    };
                    status.failure = Some(Failure {
                        step: text(&data, "/step"),
                        code: code.clone().unwrap_or_default(),
                        message: message.unwrap_or_default(),
                        advice,
                    });
                    note = code;
                }
            }
            "build.skipped" => status.state = RunState::Skipped,
            // A run that failed, was cancelled or made nothing ends with its build.finished: nothing follows it.
            "build.finished" if status.failure.is_none() => {
                let state = text(&data, "/runState").unwrap_or_default();
                let outputs = data
                    .get("runOutputs")
                    .and_then(Value::as_array)
                    .is_some_and(|o| !o.is_empty());
                let code = match state.as_str() {
                    "Succeeded" | "PartiallySucceeded" if outputs => None,
                    "Succeeded" | "PartiallySucceeded" => Some("BuildOutputMissing"),
                    "Canceled" if data.get("timedOut").and_then(Value::as_bool) == Some(true) => {
                        Some("BuildTimedOut")
                    }
                    "Canceled" => Some("BuildCanceled"),
                    _ => Some("BuildFailed"),
                };
                if let Some(code) = code {
                    status.state = RunState::Failed;
                    status.failure = Some(Failure {
                        step: Some("BuildImage".into()),
                        code: code.into(),
                        message: text(&data, "/message")
                            .unwrap_or_else(|| format!("Image Builder's run ended {state}")),
                        advice: text(&data, "/advice"),
                    });
                    note = Some(code.into());
                }
            }
            _ => {}
        }
        status.timeline.push(Moment {
            fact: short,
            id: fact
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            at: *at,
            subject: fact
                .get("subject")
                .and_then(Value::as_str)
                .map(str::to_owned),
            since_start: seconds(status.started_at, *at),
            since_previous: seconds(previous, *at),
            note,
        });
        previous = Some(*at);
    }
    status
}

/// A URL without its query (a SAS signature never shows).
fn without_query(url: &str) -> String {
    url.split(['?', '#']).next().unwrap_or_default().to_owned()
}

fn seconds(from: Option<DateTime<Utc>>, to: DateTime<Utc>) -> f64 {
    from.map_or(0.0, |f| (to - f).num_milliseconds() as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_796_000_000 + s, 0).unwrap_or_default()
    }

    fn fact(ty: &str, data: Value) -> Value {
        json!({"id": format!("id-{ty}"), "type": format!("io.galleon.{ty}.v1"), "subject": "images/u.vhd", "data": data})
    }

    fn accepted() -> Value {
        fact(
            "vhd.accepted",
            json!({"vhd": {"url": "https://a.blob.core.windows.net/images/u.vhd?sig=secret"},
                "plan": {"imageDefinition": "ubuntu-2404", "version": "1.0.0",
                    "targetRegions": [{"name": "westeurope"}, {"name": "northeurope"}]}}),
        )
    }

    /// (facts, state, regions, failure code)
    type Case = (
        Vec<Value>,
        RunState,
        Vec<(&'static str, ReplicaState)>,
        Option<&'static str>,
    );

    #[test]
    fn a_run_is_read_from_its_facts() {
        // (facts, state, regions, failure code)
        let replica = |r: &str| {
            fact(
                "image.replica.ready",
                json!({"versionId": "/v/1.0.0", "region": {"name": r}}),
            )
        };
        let table: Vec<Case> = vec![
            (
                vec![accepted()],
                RunState::Running,
                vec![
                    ("westeurope", ReplicaState::Pending),
                    ("northeurope", ReplicaState::Pending),
                ],
                None,
            ),
            (
                vec![accepted(), replica("westeurope")],
                RunState::Running,
                vec![
                    ("westeurope", ReplicaState::Ready),
                    ("northeurope", ReplicaState::Pending),
                ],
                None,
            ),
            (
                vec![
                    accepted(),
                    replica("westeurope"),
                    fact(
                        "image.ready",
                        json!({"versionId": "/v/1.0.0", "regions": [{"name": "westeurope"}, {"name": "northeurope"}]}),
                    ),
                ],
                RunState::Ready,
                vec![
                    ("westeurope", ReplicaState::Ready),
                    ("northeurope", ReplicaState::Ready),
                ],
                None,
            ),
            (
                vec![
                    accepted(),
                    fact(
                        "image.partially.ready",
                        json!({"usableRegions": [{"name": "westeurope"}], "failedRegions": [{"name": "northeurope"}]}),
                    ),
                ],
                RunState::PartiallyReady,
                vec![
                    ("westeurope", ReplicaState::Ready),
                    ("northeurope", ReplicaState::Failed),
                ],
                None,
            ),
            (
                vec![
                    accepted(),
                    fact(
                        "step.failed",
                        json!({"step": "PublishVersion", "error": {"code": "AuthorizationFailed", "message": "no"}, "advice": "Grant the role."}),
                    ),
                ],
                RunState::Failed,
                vec![
                    ("westeurope", ReplicaState::Pending),
                    ("northeurope", ReplicaState::Pending),
                ],
                Some("AuthorizationFailed"),
            ),
            // A run that replicates a version again: its complete regions are ready from the start.
            (
                vec![
                    fact(
                        "image.replication.requested",
                        json!({"versionId": "/v/1.0.0", "plan": {"imageDefinition": "ubuntu-2404", "version": "1.0.0",
                            "targetRegions": [{"name": "westeurope"}, {"name": "northeurope"}, {"name": "uksouth"}]},
                            "readyRegions": ["westeurope"], "againRegions": ["northeurope"], "addedRegions": ["uksouth"]}),
                    ),
                    replica("uksouth"),
                ],
                RunState::Running,
                vec![
                    ("westeurope", ReplicaState::Ready),
                    ("northeurope", ReplicaState::Pending),
                    ("uksouth", ReplicaState::Ready),
                ],
                None,
            ),
            // A request that was refused, and one that needed nothing done, end there.
            (
                vec![fact(
                    "request.rejected",
                    json!({"requestId": "r-1", "reason": {"code": "RequestInvalid", "message": "version: latest", "fix": "fix it"}}),
                )],
                RunState::Rejected,
                vec![],
                Some("RequestInvalid"),
            ),
            (
                vec![fact(
                    "request.accepted",
                    json!({"requestId": "r-2", "kind": "replicate", "answer": {"replicating": false}}),
                )],
                RunState::Skipped,
                vec![],
                None,
            ),
            // A build that failed, ran out of time or made nothing ends with build.finished.
            (
                vec![fact(
                    "build.finished",
                    json!({"templateId": "t", "runState": "Failed", "message": "customizer failed", "runOutputs": []}),
                )],
                RunState::Failed,
                vec![],
                Some("BuildFailed"),
            ),
            (
                vec![fact(
                    "build.finished",
                    json!({"templateId": "t", "runState": "Canceled", "timedOut": true, "runOutputs": []}),
                )],
                RunState::Failed,
                vec![],
                Some("BuildTimedOut"),
            ),
            (
                vec![fact(
                    "build.finished",
                    json!({"templateId": "t", "runState": "Succeeded", "runOutputs": []}),
                )],
                RunState::Failed,
                vec![],
                Some("BuildOutputMissing"),
            ),
            // One with outputs goes on into the chain.
            (
                vec![fact(
                    "build.finished",
                    json!({"templateId": "t", "runState": "Succeeded", "runOutputs": [{"name": "vhd", "kind": "VHD"}]}),
                )],
                RunState::Running,
                vec![],
                None,
            ),
            (
                vec![fact(
                    "vhd.rejected",
                    json!({"blob": {"url": "https://a.blob.core.windows.net/images/u.qcow2"}, "reason": {"code": "NotAVhd", "message": "qcow2", "fix": "convert it"}}),
                )],
                RunState::Rejected,
                vec![],
                Some("NotAVhd"),
            ),
        ];
        for (facts, state, regions, code) in table {
            let timed: Vec<(DateTime<Utc>, Value)> = facts
                .into_iter()
                .enumerate()
                .map(|(n, f)| (at(n as i64 * 30), f))
                .collect();
            let s = summarize("run-1", &timed);
            assert_eq!(s.state, state, "{timed:?}");
            let got: Vec<(&str, ReplicaState)> = s
                .regions
                .iter()
                .map(|r| (r.name.as_str(), r.state))
                .collect();
            assert_eq!(got, regions, "{timed:?}");
            assert_eq!(s.failure.as_ref().map(|f| f.code.as_str()), code);
            assert_eq!(s.timeline.len(), timed.len());
        }
    }

    #[test]
    fn the_timeline_tells_the_time_between_facts_and_hides_signatures() {
        let facts = vec![
            (at(0), accepted()),
            (
                at(90),
                fact(
                    "step.failed",
                    json!({"step": "PublishVersion", "error": {"code": "Conflict", "message": "m"}, "advice": "Do this."}),
                ),
            ),
        ];
        let s = summarize("run-1", &facts);
        assert_eq!(s.image.as_deref(), Some("ubuntu-2404/1.0.0"));
        assert_eq!(s.timeline[1].since_start, 90.0);
        assert_eq!(s.timeline[1].since_previous, 90.0);
        assert_eq!(s.timeline[1].fact, "step.failed");
        assert_eq!(s.timeline[1].note.as_deref(), Some("Conflict"));
        let failure = s.failure.expect("failure");
        assert_eq!(failure.advice.as_deref(), Some("Do this."));
        assert_eq!(failure.step.as_deref(), Some("PublishVersion"));
        let source = s.source.expect("source");
        assert!(!source.contains("secret"), "{source}");
        assert_eq!(
            short_type("io.galleon.image.replica.ready.v1"),
            "image.replica.ready"
        );
        assert_eq!(short_type("other"), "other");
    }
}
