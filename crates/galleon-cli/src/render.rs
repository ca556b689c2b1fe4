//! What a person reads: the recent runs as a table with each region's replica, and a run's timeline.
//! Plain text, no colour codes, so it reads the same in a terminal, a log and a pipe.

use serde_json::Value;

pub fn json(body: &Value) -> String {
    serde_json::to_string_pretty(body).unwrap_or_default()
}

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// `2026-12-02T05:00:01.123Z` → `2026-12-02 05:00:01`.
fn when(text: &str) -> String {
    text.replace('T', " ").chars().take(19).collect()
}

/// Each region with its replica's state: `westeurope ready, eastus2 pending`, and how many are ready.
fn regions(run: &Value) -> String {
    let all: Vec<&Value> = run
        .get("regions")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    if all.is_empty() {
        return "-".into();
    }
    let ready = all.iter().filter(|r| s(r, "/state") == "ready").count();
    let each: Vec<String> = all
        .iter()
        .map(|r| format!("{} {}", s(r, "/name"), s(r, "/state")))
        .collect();
    format!("{ready}/{} ready ({})", all.len(), each.join(", "))
}

fn state(run: &Value) -> String {
    // camelCase from the app (`partiallyReady`) → words.
    let raw = s(run, "/state");
    let mut out = String::new();
    for c in raw.chars() {
        if c.is_ascii_uppercase() {
            out.push(' ');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn failure(run: &Value, out: &mut String) {
    let Some(f) = run.get("failure").filter(|f| f.is_object()) else {
        return;
    };
    let step = s(f, "/step");
    out.push_str(&format!(
        "    failed{}: {}: {}\n",
        if step.is_empty() {
            String::new()
        } else {
            format!(" in {step}")
        },
        s(f, "/code"),
        s(f, "/message")
    ));
    let advice = s(f, "/advice");
    if !advice.is_empty() {
        out.push_str(&format!("    advice: {advice}\n"));
    }
}

/// The recent runs, newest first.
pub fn status(body: &Value) -> String {
    let runs = body
        .get("runs")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if runs.is_empty() {
        return "no runs in the last two days\n".into();
    }
    let mut out = String::new();
    for run in &runs {
        let image = match s(run, "/image") {
            "" => s(run, "/source"),
            image => image,
        };
        out.push_str(&format!(
            "{}  {:<15}  {}  started {}\n    regions: {}\n",
            s(run, "/run"),
            state(run),
            image,
            when(s(run, "/startedAt")),
            regions(run)
        ));
        failure(run, &mut out);
    }
    out
}

/// One run's facts in order, with the seconds since its start and since the fact before.
pub fn timeline(run: &Value) -> String {
    let mut out = format!(
        "run {}  {}  {}\n",
        s(run, "/run"),
        match s(run, "/image") {
            "" => s(run, "/source"),
            image => image,
        },
        state(run)
    );
    for m in run
        .get("timeline")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let since_start = m.get("sinceStart").and_then(Value::as_f64).unwrap_or(0.0);
        let since_previous = m
            .get("sincePrevious")
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
        let note = s(m, "/note");
        let (start, previous) = (
            format!("+{since_start:.1}s"),
            format!("(+{since_previous:.1}s)"),
        );
        out.push_str(&format!(
            "  {}  {start:>9}  {previous:>10}  {:<24}{}\n",
            when(s(m, "/at")),
            s(m, "/fact"),
            if note.is_empty() {
                String::new()
            } else {
                format!("  {note}")
            }
        ));
    }
    out.push_str(&format!("  regions: {}\n", regions(run)));
    failure(run, &mut out);
    out
}

/// What a mark changed: each version marked now, and those that had it already.
/// The strings listed under `key`.
fn strings(answer: &Value, key: &str) -> Vec<String> {
    answer
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

pub fn marked(mark: &str, answer: &Value) -> String {
    let word = if mark == "bad" {
        "marked bad"
    } else {
        "pinned"
    };
    let list = |key: &str| strings(answer, key);
    let mut out = String::new();
    for id in list("marked") {
        out.push_str(&format!("{word}: {id}\n"));
    }
    for id in list("alreadyMarked") {
        out.push_str(&format!("already {word}: {id}\n"));
    }
    out
}

/// What a request to replicate a version again came to: a run that replicates, or why nothing was done.
pub fn replicated(answer: &Value) -> String {
    let version = answer
        .get("versionId")
        .and_then(Value::as_str)
        .unwrap_or("");
    let joined = |key: &str| strings(answer, key).join(", ");
    if answer.get("replicating").and_then(Value::as_bool) == Some(true) {
        let mut what = Vec::new();
        if !joined("added").is_empty() {
            what.push(format!("adding {}", joined("added")));
        }
        if !joined("again").is_empty() {
            what.push(format!("again in {}", joined("again")));
        }
        format!(
            "replicating {version}: {}\nrun {} (follow it: galleon status --watch, or galleon timeline {})\n",
            what.join("; "),
            answer.get("run").and_then(Value::as_str).unwrap_or(""),
            answer.get("run").and_then(Value::as_str).unwrap_or("")
        )
    } else if !joined("underway").is_empty() {
        format!(
            "nothing asked: replication of {version} is still under way in {}\n",
            joined("underway")
        )
    } else {
        format!(
            "nothing to do: {version} is complete in every region ({}); name regions to add with --region\n",
            joined("alreadyReplicated")
        )
    }
}

/// The kept dead letters, newest first: when, what, why, where, whose run, and if resubmitted.
pub fn dead_letters(body: &Value) -> String {
    let all = body
        .get("deadLetters")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if all.is_empty() {
        return "no dead letters\n".into();
    }
    let mut out = String::new();
    for d in &all {
        let resubmitted = match s(d, "/resubmittedAt") {
            "" => String::new(),
            at => format!("  resubmitted {}", when(at)),
        };
        out.push_str(&format!(
            "{}  {}  {}  {}{resubmitted}\n    in {} after {} deliveries, run {}\n    {}\n",
            when(s(d, "/at")),
            s(d, "/factId"),
            s(d, "/factType").trim_start_matches("io.galleon."),
            s(d, "/reason"),
            s(d, "/source"),
            d.get("deliveries").and_then(Value::as_u64).unwrap_or(0),
            s(d, "/run"),
            s(d, "/description"),
        ));
    }
    out
}

/// What a resubmission did.
pub fn resubmitted(answer: &Value) -> String {
    if answer.get("alreadyResubmitted").and_then(Value::as_bool) == Some(true) {
        format!(
            "{} was resubmitted already, at {}; nothing sent\n",
            s(answer, "/resubmitted"),
            when(s(answer, "/at"))
        )
    } else {
        format!(
            "resubmitted {} ({}) of run {}\n",
            s(answer, "/resubmitted"),
            s(answer, "/type").trim_start_matches("io.galleon."),
            s(answer, "/run")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_failed_run_shows_its_regions_and_advice() {
        let body = json!({"runs": [{"run": "r1", "state": "partiallyReady", "image": "ubuntu-2404/1.0.0",
            "startedAt": "2026-12-02T05:00:01.5Z",
            "regions": [{"name": "westeurope", "state": "ready"}, {"name": "eastus2", "state": "failed"}],
            "failure": {"step": "ReplicateVersion", "code": "ReplicationFailed", "message": "m", "advice": "Do this."}}]});
        let text = status(&body);
        assert!(text.contains("r1  partially ready"), "{text}");
        assert!(
            text.contains("1/2 ready (westeurope ready, eastus2 failed)"),
            "{text}"
        );
        assert!(
            text.contains("failed in ReplicateVersion: ReplicationFailed: m"),
            "{text}"
        );
        assert!(text.contains("advice: Do this."), "{text}");
        assert!(text.contains("started 2026-12-02 05:00:01"), "{text}");
        assert_eq!(
            status(&json!({"runs": []})),
            "no runs in the last two days\n"
        );
    }

    #[test]
    fn a_timeline_lists_facts_with_their_times() {
        let run = json!({"run": "r1", "state": "ready", "image": "u/1.0.0", "regions": [],
        "timeline": [
            {"fact": "vhd.accepted", "at": "2026-12-02T05:00:00Z", "sinceStart": 0.0, "sincePrevious": 0.0},
            {"fact": "image.replica.ready", "at": "2026-12-02T05:00:12Z", "sinceStart": 12.25, "sincePrevious": 12.25, "note": "westeurope"}
        ]});
        let text = timeline(&run);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "run r1  u/1.0.0  ready");
        assert!(lines[1].contains("vhd.accepted"), "{text}");
        assert!(
            lines[2].contains("+12.2s    (+12.2s)  image.replica.ready")
                && lines[2].ends_with("westeurope"),
            "{text}"
        );
    }
}
