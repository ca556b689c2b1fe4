//! The operator's seat on the local cloud: the Runs control (function-key auth as the Functions host
//! checks it) read from the run journal, and the real `galleon` tool over it: status with each region's
//! replica and a rejection's advice, a run's timeline, JSON for scripts, and exit codes with cause and fix.

mod common;

use common::*;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_see_runs_their_regions_timelines_and_advice() {
    let s = start(&[("GALLEON_TARGET_REGIONS", "westeurope,northeurope")]).await;
    s.publish("good", "fixed", "8M", json!({"version": "1.0.0"}))
        .await;
    let ready = s.wait_for("io.galleon.image.ready.v1", 120).await;
    s.publish("bad", "dynamic", "8M", json!({"version": "1.0.1"}))
        .await;
    let rejected = s.wait_for("io.galleon.vhd.rejected.v1", 60).await;
    let good_run = ready["correlationid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let bad_run = rejected["correlationid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let host = s.cloud.connection().functions_host;
    let key = s.cloud.functions_key.clone();

    // The control: no key or a wrong one is 401 and nothing runs; a bad query names the field; an
    // unknown run is a 404 saying what was looked for.
    let http = reqwest::Client::new();
    let get = |path: String, key: Option<&str>| {
        let mut r = http.get(format!("{host}/api/{path}"));
        if let Some(k) = key {
            r = r.header("x-functions-key", k);
        }
        r.send()
    };
    let invocations = s.cloud.host.invocations().len();
    assert_eq!(
        get("runs".into(), None).await.expect("answer").status(),
        401
    );
    assert_eq!(
        get("runs".into(), Some("wrong"))
            .await
            .expect("answer")
            .status(),
        401
    );
    assert!(
        !s.cloud.host.invocations()[invocations..]
            .iter()
            .any(|i| i.function == "Runs"),
        "a refused request reached the function"
    );
    let bad_query = get("runs?limit=0".into(), Some(&key))
        .await
        .expect("answer");
    assert_eq!(bad_query.status(), 400);
    let body: Value = bad_query.json().await.expect("json");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("limit:")),
        "{body}"
    );
    let unknown = "00000000-1111-4222-8333-444444444444";
    let missing = get(format!("runs/{unknown}"), Some(&key))
        .await
        .expect("answer");
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.expect("json");
    assert_eq!(body["error"]["code"], "RunNotFound");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(unknown)),
        "{body}"
    );

    // The tool, pointed at the app by the environment.
    let env = [
        ("GALLEON_URL", host.as_str()),
        ("GALLEON_FUNCTIONS_KEY", key.as_str()),
    ];
    // The journal is written as each fact is sent; a subscriber may hear of the last one a moment first.
    let mut status = galleon(&["status"], &env, None);
    for _ in 0..40 {
        if status.stdout.contains(&bad_run) && status.stdout.contains(&good_run) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        status = galleon(&["status"], &env, None);
    }
    assert_eq!(status.code, 0, "{}{}", status.stdout, status.stderr);
    let good_line = status
        .stdout
        .lines()
        .position(|l| l.starts_with(&good_run))
        .unwrap_or_else(|| panic!("{good_run} listed:\n{}", status.stdout));
    let lines: Vec<&str> = status.stdout.lines().collect();
    assert!(
        lines[good_line].contains("ready") && lines[good_line].contains("ubuntu-2404/1.0.0"),
        "{}",
        status.stdout
    );
    assert!(
        lines[good_line + 1].contains("2/2 ready (westeurope ready, northeurope ready)"),
        "{}",
        status.stdout
    );
    let bad_line = lines
        .iter()
        .position(|l| l.starts_with(&bad_run))
        .unwrap_or_else(|| panic!("{bad_run} listed:\n{}", status.stdout));
    assert!(lines[bad_line].contains("rejected"), "{}", status.stdout);
    assert!(
        lines[bad_line + 2].contains("VhdIsDynamic")
            && lines[bad_line + 3].contains("advice: Convert it"),
        "{}",
        status.stdout
    );
    // Newest first.
    assert!(bad_line < good_line, "{}", status.stdout);

    let timeline = galleon(&["timeline", &good_run], &env, None);
    assert_eq!(timeline.code, 0, "{}", timeline.stderr);
    let facts: Vec<&str> = timeline
        .stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("20"))
        .filter_map(|l| l.split_whitespace().nth(4))
        .collect();
    assert_eq!(facts.first(), Some(&"vhd.accepted"), "{}", timeline.stdout);
    assert_eq!(facts.last(), Some(&"image.ready"), "{}", timeline.stdout);
    assert_eq!(
        facts
            .iter()
            .filter(|f| **f == "image.replica.ready")
            .count(),
        2,
        "{}",
        timeline.stdout
    );

    let json_status = galleon(&["status", "--json", "--limit", "1"], &env, None);
    let parsed: Value = serde_json::from_str(&json_status.stdout).expect("JSON for scripts");
    assert_eq!(parsed["runs"].as_array().map(Vec::len), Some(1));
    assert_eq!(parsed["runs"][0]["run"], bad_run.as_str());

    // A subscriber that missed the run's events gets them again, with the same ids.
    let heard = |id: &str| {
        s.receiver
            .received
            .of_type("io.galleon.image.ready.v1")
            .iter()
            .filter(|e| e["id"] == id)
            .count()
    };
    let ready_id = ready["id"].as_str().unwrap_or_default().to_owned();
    let before = heard(&ready_id);
    let again = galleon(&["reannounce", &good_run], &env, None);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.stdout.starts_with("announced 4 facts of run"),
        "published, 2 replicas, ready: {}",
        again.stdout
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while heard(&ready_id) == before && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(
        heard(&ready_id),
        before + 1,
        "image.ready announced again with its id"
    );

    // Bad input: the cause and the fix, never a stack trace, and an exit code that says which.
    let unknown_run = galleon(&["timeline", unknown], &env, None);
    assert_eq!(unknown_run.code, 3, "{}", unknown_run.stderr);
    assert!(
        unknown_run.stderr.contains(unknown) && unknown_run.stderr.contains("fix:"),
        "{}",
        unknown_run.stderr
    );
    let refused = galleon(
        &["status"],
        &[
            ("GALLEON_URL", host.as_str()),
            ("GALLEON_FUNCTIONS_KEY", "wrong"),
        ],
        None,
    );
    assert_eq!(refused.code, 4, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("GALLEON_FUNCTIONS_KEY"),
        "{}",
        refused.stderr
    );
    assert!(!refused.stderr.contains("panicked"), "{}", refused.stderr);
    let usage = galleon(&["timeline"], &env, None);
    assert_eq!(usage.code, 2, "{}", usage.stderr);

    // With no configuration at all, it finds the local cloud from its connection file.
    let dir = tempfile::tempdir().expect("dir");
    std::fs::create_dir_all(dir.path().join(".devcloud")).expect("dir");
    s.cloud
        .connection()
        .write(&dir.path().join(".devcloud"))
        .expect("connection written");
    let nested = dir.path().join("work/here");
    std::fs::create_dir_all(&nested).expect("dir");
    let local = galleon(&["timeline", &bad_run], &[], Some(&nested));
    assert_eq!(local.code, 0, "{}", local.stderr);
    assert!(local.stdout.contains("vhd.rejected"), "{}", local.stdout);
    let nowhere = tempfile::tempdir().expect("dir");
    let lost = galleon(&["status"], &[], Some(nowhere.path()));
    assert_eq!(lost.code, 6, "{}", lost.stderr);
    assert!(lost.stderr.contains("GALLEON_URL"), "{}", lost.stderr);
    s.stop().await;
}

const TEAM: &str = "11111111-2222-3333-4444-555555555555";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_marked_bad_is_excluded_everywhere_it_went_and_announced() {
    let allowed = format!(
        "{}/rg-images/golden,{TEAM}/rg-team/shared",
        devcloud_arm::DEFAULT_SUBSCRIPTION_ID
    );
    let targets =
        json!([{"subscriptionId": TEAM, "resourceGroup": "rg-team", "gallery": "shared"}])
            .to_string();
    let s = start(&[
        ("GALLEON_TARGET_REGIONS", "westeurope"),
        ("GALLEON_ALLOWED_GALLERIES", allowed.as_str()),
        ("GALLEON_DISTRIBUTION", targets.as_str()),
    ])
    .await;
    s.publish("v1", "fixed", "8M", json!({"version": "1.0.0"}))
        .await;
    // The source and its copy.
    let ready = s.wait_for_n("io.galleon.image.ready.v1", 2, 120).await;
    assert_eq!(ready.len(), 2, "{ready:#?}");
    let ids: Vec<String> = ready
        .iter()
        .filter_map(|r| r["data"]["versionId"].as_str().map(str::to_owned))
        .collect();
    let host = s.cloud.connection().functions_host;
    let key = s.cloud.functions_key.clone();
    let env = [
        ("GALLEON_URL", host.as_str()),
        ("GALLEON_FUNCTIONS_KEY", key.as_str()),
    ];

    let bad = galleon(
        &[
            "mark-bad",
            "ubuntu-2404",
            "1.0.0",
            "--reason",
            "CVE-2026-41234",
        ],
        &env,
        None,
    );
    assert_eq!(bad.code, 0, "{}{}", bad.stdout, bad.stderr);
    for id in &ids {
        assert!(
            bad.stdout.contains(&format!("marked bad: {id}")),
            "{}",
            bad.stdout
        );
        let v = s.arm_get(id).await;
        assert_eq!(v["tags"]["galleon-bad"], "true", "{v}");
        assert!(
            v["tags"]["galleon-run"].is_string(),
            "its other tags stay: {v}"
        );
        assert_eq!(
            v["properties"]["publishingProfile"]["excludeFromLatest"], true,
            "{v}"
        );
    }
    let marked = s.wait_for("io.galleon.image.version.marked.v1", 30).await;
    assert_eq!(marked["data"]["mark"], "bad");
    assert_eq!(marked["data"]["reason"], "CVE-2026-41234");
    assert_eq!(
        marked["data"]["versions"].as_array().map(Vec::len),
        Some(2),
        "{marked}"
    );
    // It is part of the version's own run.
    assert_eq!(marked["correlationid"], ready[0]["correlationid"]);

    // Asking again changes nothing and announces nothing.
    let again = galleon(&["mark-bad", "ubuntu-2404", "1.0.0"], &env, None);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.stdout.contains("already marked bad"),
        "{}",
        again.stdout
    );

    let pin = galleon(&["pin", "ubuntu-2404", "1.0.0", "--json"], &env, None);
    assert_eq!(pin.code, 0, "{}", pin.stderr);
    let answer: Value = serde_json::from_str(&pin.stdout).expect("JSON");
    assert_eq!(
        answer["marked"].as_array().map(Vec::len),
        Some(2),
        "{answer}"
    );
    assert_eq!(s.arm_get(&ids[0]).await["tags"]["galleon-pin"], "true");
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(
        distinct(
            &s.receiver
                .received
                .of_type("io.galleon.image.version.marked.v1")
        )
        .len(),
        2,
        "one announcement per change"
    );

    // Bad input: an unknown version, a bad name, a version galleon did not publish.
    let unknown = galleon(&["mark-bad", "ubuntu-2404", "9.9.9"], &env, None);
    assert_eq!(unknown.code, 3, "{}", unknown.stderr);
    assert!(
        unknown
            .stderr
            .contains("no version 9.9.9 of image definition ubuntu-2404"),
        "{}",
        unknown.stderr
    );
    let named = galleon(&["pin", "ubuntu-2404", "latest"], &env, None);
    assert_eq!(named.code, 2, "{}", named.stderr);
    assert!(named.stderr.contains("version:"), "{}", named.stderr);
    // Someone took galleon's tags off the default gallery's version: it is not galleon's to mark.
    let source = ids
        .iter()
        .find(|id| id.contains(devcloud_arm::DEFAULT_SUBSCRIPTION_ID))
        .expect("the source");
    let patched = s
        .cloud
        .client()
        .expect("client")
        .patch(format!(
            "{}{source}?api-version=2025-03-03",
            s.cloud.arm.base_url
        ))
        .bearer_auth(s.cloud.identity.issue("https://management.azure.com"))
        .json(&json!({"tags": {"owner": "someone"}}))
        .send()
        .await
        .expect("ARM answers");
    assert!(
        patched.status().is_success(),
        "{}",
        patched.text().await.unwrap_or_default()
    );
    for _ in 0..40 {
        if s.arm_get(source).await["tags"]["galleon-run"].is_null() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let foreign = galleon(&["pin", "ubuntu-2404", "1.0.0"], &env, None);
    assert_eq!(foreign.code, 7, "{}{}", foreign.stdout, foreign.stderr);
    assert!(
        foreign.stderr.contains("NotPublishedByGalleon")
            || foreign.stderr.contains("did not publish"),
        "{}",
        foreign.stderr
    );
    assert_catalog_valid(&s.receiver.received.all());
    s.stop().await;
}

/// Whether tmux is here; in CI (`CI=true`) it must be (.ci/run installs it).
fn tmux_available() -> bool {
    let here = std::process::Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        here || std::env::var_os("CI").is_none(),
        "tmux is missing in CI: apt-get install tmux"
    );
    here
}

fn tmux(args: &[&str]) -> String {
    let out = std::process::Command::new("tmux")
        .args(args)
        .output()
        .expect("tmux runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_view_draws_each_runs_replicas_in_a_real_terminal() {
    if !tmux_available() {
        eprintln!("tmux is missing: the live view test is skipped (apt-get install tmux)");
        return;
    }
    let s = start(&[("GALLEON_TARGET_REGIONS", "westeurope,northeurope,eastus2")]).await;
    // A first run, so the view has something to draw from its first look.
    s.publish("first", "fixed", "8M", json!({"version": "1.0.0"}))
        .await;
    let host = s.cloud.connection().functions_host;
    let key = s.cloud.functions_key.clone();
    let session = format!("galleon-watch-{}", std::process::id());
    let command = format!(
        "GALLEON_URL={host} GALLEON_FUNCTIONS_KEY={key} {} status --watch --until-done --interval 1; echo WATCH-ENDED $?; sleep 60",
        cli().display()
    );
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "160",
        "-y",
        "20",
        &command,
    ]);
    let mut screens = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let screen = tmux(&["capture-pane", "-p", "-t", &session]);
        let ended = screen.contains("WATCH-ENDED");
        screens.push(screen);
        if ended || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    tmux(&["kill-session", "-t", &session]);
    let last = screens.last().cloned().unwrap_or_default();
    assert!(
        last.contains("WATCH-ENDED 0"),
        "the view ends once nothing runs:\n{last}"
    );
    // While the run was under way the bar showed it running, then all three replicas ready.
    assert!(
        screens
            .iter()
            .any(|sc| sc.contains("running") && sc.contains("ubuntu-2404/1.0.0")),
        "no screen showed the run under way:\n{}",
        screens.join("\n----\n")
    );
    let bar = last
        .lines()
        .find(|l| l.contains("ubuntu-2404/1.0.0"))
        .unwrap_or_else(|| panic!("the run's bar:\n{last}"));
    assert!(
        bar.contains("[####################] 3/3 regions") && bar.contains("ready"),
        "{bar}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_listed_and_resubmitted_once() {
    let s = start(&[("GALLEON_TARGET_REGIONS", "westeurope")]).await;
    s.publish("dl", "fixed", "8M", json!({"version": "1.0.0"}))
        .await;
    let ready = s.wait_for("io.galleon.image.ready.v1", 120).await;
    let ready_id = ready["id"].as_str().unwrap_or_default().to_owned();
    // Service Bus dead-letters the image.ready fact in the announce subscription (say Event Grid was
    // refusing galleon's publishes for longer than the retries) and forwards it to galleon-deadletters.
    s.send_to_queue(
        "galleon-deadletters",
        &ready_id,
        &ready.to_string(),
        &[
            ("DeadLetterReason", "\"MaxDeliveryCountExceeded\""),
            (
                "DeadLetterErrorDescription",
                "\"Message could not be consumed after 10 delivery attempts.\"",
            ),
        ],
    )
    .await;
    let failed = s.wait_for("io.galleon.step.failed.v1", 60).await;
    assert_eq!(failed["data"]["input"]["id"], ready_id.as_str());

    let host = s.cloud.connection().functions_host;
    let key = s.cloud.functions_key.clone();
    let env = [
        ("GALLEON_URL", host.as_str()),
        ("GALLEON_FUNCTIONS_KEY", key.as_str()),
    ];
    let listed = galleon(&["dead-letters"], &env, None);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    let line = listed
        .stdout
        .lines()
        .find(|l| l.contains(&ready_id))
        .unwrap_or_else(|| panic!("listed:\n{}", listed.stdout));
    assert!(
        line.contains("image.ready.v1") && line.contains("MaxDeliveryCountExceeded"),
        "{line}"
    );
    assert!(
        listed.stdout.contains("after 10 delivery attempts"),
        "{}",
        listed.stdout
    );

    // The status page shows it too, with what to do.
    let page = reqwest::get(format!("{host}/api/status?code={key}"))
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(
        page.contains("<h2>Dead letters</h2>")
            && page.contains(&format!("galleon resubmit {ready_id}")),
        "{page}"
    );

    // Resubmitted: the subscriber hears image.ready again, with its id; asking again sends nothing.
    let heard = || {
        s.receiver
            .received
            .of_type("io.galleon.image.ready.v1")
            .iter()
            .filter(|e| e["id"] == ready_id.as_str())
            .count()
    };
    let before = heard();
    let again = galleon(&["resubmit", &ready_id], &env, None);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again
            .stdout
            .starts_with(&format!("resubmitted {ready_id} (image.ready.v1)")),
        "{}",
        again.stdout
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while heard() == before && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(
        heard(),
        before + 1,
        "the fact went through its subscriptions again"
    );
    let twice = galleon(&["resubmit", &ready_id], &env, None);
    assert_eq!(twice.code, 0, "{}", twice.stderr);
    assert!(
        twice.stdout.contains("was resubmitted already"),
        "{}",
        twice.stdout
    );
    let listed = galleon(&["dead-letters"], &env, None);
    assert!(
        listed.stdout.contains("resubmitted 20"),
        "{}",
        listed.stdout
    );
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(heard(), before + 1, "a second resubmit sends nothing");
    // The resubmission is announced once, in the fact's own run.
    let announced = distinct(
        &s.receiver
            .received
            .of_type("io.galleon.deadletter.resubmitted.v1"),
    );
    assert_eq!(announced.len(), 1, "{announced:#?}");
    assert_eq!(announced[0]["data"]["factId"], ready_id.as_str());
    assert_eq!(
        announced[0]["data"]["deadLetterReason"],
        "MaxDeliveryCountExceeded"
    );
    assert_eq!(announced[0]["correlationid"], ready["correlationid"]);
    assert_catalog_valid(&s.receiver.received.all());
    let unknown = galleon(
        &["resubmit", "00000000-1111-4222-8333-444444444444"],
        &env,
        None,
    );
    assert_eq!(unknown.code, 3, "{}", unknown.stderr);
    assert!(
        unknown.stderr.contains("no dead letter of fact"),
        "{}",
        unknown.stderr
    );
    s.stop().await;
}

/// CI saw `status --watch` fail with 503 ConditionNotMet: the journal was read in two steps (its
/// properties, then its bytes pinned to that ETag), and a fact appended between them failed the read.
/// Here a writer appends to a run's journal without pause while the Runs control reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_read_while_it_grows_answers_every_time() {
    let s = start(&[("GALLEON_TARGET_REGIONS", "westeurope")]).await;
    s.publish("growing", "dynamic", "8M", json!({"version": "1.0.0"}))
        .await;
    let rejected = s.wait_for("io.galleon.vhd.rejected.v1", 60).await;
    let run = rejected["correlationid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let storage = s.cloud.storage().expect("storage");
    let name = format!("journal/{run}.jsonl");
    // The journal is written as each fact is sent; a subscriber may hear of it a moment first.
    let mut journal = None;
    for _ in 0..40 {
        journal = storage
            .download("galleon-state", &name)
            .await
            .expect("read");
        if journal.as_ref().is_some_and(|j| j.contains(&b'\n')) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let journal = journal.expect("the run has a journal");
    // A line already there: written again, it is read once, so the answer stays the same run.
    let line: Vec<u8> = journal
        .split_inclusive(|b| *b == b'\n')
        .next()
        .expect("a first line")
        .to_vec();
    let appends = 400;
    let writer = tokio::spawn(async move {
        for _ in 0..appends {
            storage
                .append_block("galleon-state", &name, &line)
                .await
                .expect("append");
        }
    });
    let host = s.cloud.connection().functions_host;
    let key = s.cloud.functions_key.clone();
    let http = reqwest::Client::new();
    let (mut reads, mut failed) = (0, Vec::new());
    while !writer.is_finished() {
        let r = http
            .get(format!("{host}/api/runs/{run}"))
            .header("x-functions-key", &key)
            .send()
            .await
            .expect("answer");
        reads += 1;
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        if status != 200 || body["run"] != run.as_str() {
            failed.push(format!("{status} {body}"));
        }
    }
    writer.await.expect("writer");
    println!("{reads} reads during {appends} appends");
    assert!(reads >= 5, "too few reads overlapped the appends: {reads}");
    assert!(
        failed.is_empty(),
        "{} of {reads} reads failed: {:?}",
        failed.len(),
        failed.first()
    );
    s.stop().await;
}

/// Many runs start at once on a busy day: each is in the day's index, so `GET /api/runs` lists every
/// one (the index takes each run's line at its end, with no race to lose).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_that_start_together_are_all_listed() {
    let s = start(&[("GALLEON_TARGET_REGIONS", "westeurope")]).await;
    let n = 12;
    let stems: Vec<String> = (0..n).map(|i| format!("burst{i}")).collect();
    futures::future::join_all(stems.iter().enumerate().map(|(i, stem)| {
        s.publish(
            stem,
            "dynamic",
            "8M",
            json!({"version": format!("1.0.{i}")}),
        )
    }))
    .await;
    let rejected = s.wait_for_n("io.galleon.vhd.rejected.v1", n, 120).await;
    let runs: std::collections::BTreeSet<String> = distinct(&rejected)
        .iter()
        .filter_map(|e| e["correlationid"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(runs.len(), n, "{rejected:#?}");
    let (host, key) = s.tool_env();
    let http = reqwest::Client::new();
    let mut listed = std::collections::BTreeSet::new();
    for _ in 0..60 {
        let body: Value = http
            .get(format!("{host}/api/runs?limit=100"))
            .header("x-functions-key", &key)
            .send()
            .await
            .expect("answer")
            .json()
            .await
            .expect("json");
        listed = body["runs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["run"].as_str().map(str::to_owned))
            .collect();
        if runs.is_subset(&listed) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let missing: Vec<&String> = runs.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "runs missing from the list: {missing:?}"
    );
    s.stop().await;
}
