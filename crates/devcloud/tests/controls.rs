//! Re-running one stage of a version on the local cloud: replication again, for a region that failed for
//! good and a region added, as a run of its own that the real `galleon` tool starts and follows.

mod common;

use common::*;
use serde_json::{Value, json};

const TEAM: &str = "11111111-2222-3333-4444-555555555555";

fn of_run<'a>(events: &'a [Value], run: &str, ty: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["correlationid"] == run && e["type"] == ty)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_is_replicated_again_to_its_failed_and_added_regions() {
    // A distribution target: the first run never reaches image.ready, so it gets no copy until the
    // version is replicated again.
    let allowed = format!(
        "{}/rg-images/golden,{TEAM}/rg-team/shared",
        devcloud_arm::DEFAULT_SUBSCRIPTION_ID
    );
    let targets = json!([{"subscriptionId": TEAM, "resourceGroup": "rg-team", "gallery": "shared", "regions": ["westeurope"]}])
        .to_string();
    let s = start(&[
        ("GALLEON_TARGET_REGIONS", "westeurope,northeurope"),
        ("GALLEON_MAX_ATTEMPTS", "2"),
        ("GALLEON_ALLOWED_GALLERIES", allowed.as_str()),
        ("GALLEON_DISTRIBUTION", targets.as_str()),
    ])
    .await;
    s.fault(json!({"kind": "GalleryImageVersions_Update", "count": 50, "action": {"type": "failRegion", "region": "northeurope", "details": "no capacity in northeurope"}})).await;
    s.publish("again", "fixed", "8M", json!({"version": "1.0.0"}))
        .await;
    let partial = s.wait_for("io.galleon.image.partially.ready.v1", 150).await;
    let first_run = partial["correlationid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let failed = s.wait_for("io.galleon.step.failed.v1", 30).await;
    assert!(
        failed["data"]["advice"]
            .as_str()
            .is_some_and(|a| a.contains("galleon rerun ubuntu-2404 1.0.0 --region")),
        "the advice names the control: {failed:#}"
    );
    // The capacity is back.
    s.clear_faults().await;

    let (host, key) = s.tool_env();
    let env = [
        ("GALLEON_URL", host.as_str()),
        ("GALLEON_FUNCTIONS_KEY", key.as_str()),
    ];
    let rerun = galleon(
        &[
            "rerun",
            "ubuntu-2404",
            "1.0.0",
            "--region",
            "northeurope",
            "--region",
            "eastus2",
            "--reason",
            "capacity is back; the US team needs it",
            "--json",
        ],
        &env,
        None,
    );
    assert_eq!(rerun.code, 0, "{}{}", rerun.stdout, rerun.stderr);
    let answer: Value = serde_json::from_str(&rerun.stdout).expect("json");
    assert_eq!(answer["replicating"], true, "{answer:#}");
    assert_eq!(answer["versionRun"], first_run.as_str());
    let run = answer["run"].as_str().unwrap_or_default().to_owned();
    assert_ne!(run, first_run, "a run of its own");
    let mut asked: Vec<String> = ["added", "again"]
        .iter()
        .flat_map(|k| answer[k].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r.as_str().map(str::to_owned))
        .collect();
    asked.sort();
    assert_eq!(asked, ["eastus2", "northeurope"], "{answer:#}");
    assert_eq!(answer["ready"], json!(["westeurope"]));

    // The run ends in an image.ready of all three regions, each new one announced once, the home region
    // not again; then the target gets the copy it never had.
    let events = ready_in(&s, &run, 2).await;
    let requested = of_run(&events, &run, "io.galleon.image.replication.requested.v1");
    assert_eq!(requested.len(), 1, "announced once: {events:#?}");
    assert_eq!(
        requested[0]["data"]["reason"],
        "capacity is back; the US team needs it"
    );
    let (copies, ready): (Vec<&Value>, Vec<&Value>) =
        of_run(&events, &run, "io.galleon.image.ready.v1")
            .into_iter()
            .partition(|e| e["data"]["distributedFrom"].is_string());
    assert_eq!(ready.len(), 1, "{events:#?}");
    assert_eq!(copies.len(), 1, "the target's copy: {events:#?}");
    assert!(
        copies[0]["data"]["versionId"]
            .as_str()
            .is_some_and(|v| v.contains(TEAM)),
        "{:#}",
        copies[0]
    );
    assert_eq!(ready[0]["data"]["replicatedAgain"], true);
    let mut regions: Vec<&str> = ready[0]["data"]["regions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str())
        .collect();
    regions.sort_unstable();
    assert_eq!(regions, ["eastus2", "northeurope", "westeurope"]);
    // The source's replicas (the copy's own are announced too, under its version id).
    let mut replicas: Vec<&str> = of_run(&events, &run, "io.galleon.image.replica.ready.v1")
        .iter()
        .filter(|e| e["data"]["versionId"] == ready[0]["data"]["versionId"])
        .filter_map(|e| e["data"]["region"]["name"].as_str())
        .collect();
    replicas.sort_unstable();
    assert_eq!(replicas, ["eastus2", "northeurope"]);
    let version = s
        .arm_get(ready[0]["data"]["versionId"].as_str().unwrap_or_default())
        .await;
    assert_eq!(
        version["properties"]["publishingProfile"]["targetRegions"]
            .as_array()
            .map(Vec::len),
        Some(3),
        "{version:#}"
    );
    assert_catalog_valid(&events);

    // The tool shows the new run ready with its three regions.
    let mut status = galleon(&["timeline", &run, "--json"], &env, None);
    for _ in 0..40 {
        if status.stdout.contains("\"ready\"") && status.stdout.contains("image.ready") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        status = galleon(&["timeline", &run, "--json"], &env, None);
    }
    let shown: Value = serde_json::from_str(&status.stdout).expect("json");
    assert_eq!(shown["state"], "ready", "{shown:#}");
    assert_eq!(shown["image"], "ubuntu-2404/1.0.0");
    assert_eq!(
        shown["regions"].as_array().map(Vec::len),
        Some(3),
        "{shown:#}"
    );

    // Asked again: every region is complete, nothing is sent.
    let before = s.receiver.received.all().len();
    let again = galleon(
        &["rerun", "ubuntu-2404", "1.0.0", "--region", "eastus2"],
        &env,
        None,
    );
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    assert!(again.stdout.contains("nothing to do"), "{}", again.stdout);
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(s.receiver.received.all().len(), before);

    // One more region: the target keeps the copy it has (no second copy, nothing failed).
    let more = galleon(
        &[
            "rerun",
            "ubuntu-2404",
            "1.0.0",
            "--region",
            "uksouth",
            "--json",
        ],
        &env,
        None,
    );
    assert_eq!(more.code, 0, "{}{}", more.stdout, more.stderr);
    let more: Value = serde_json::from_str(&more.stdout).expect("json");
    assert_eq!(more["added"], json!(["uksouth"]), "{more:#}");
    let third = more["run"].as_str().unwrap_or_default().to_owned();
    let events = ready_in(&s, &third, 1).await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let events_after = s.receiver.received.all();
    assert_eq!(
        of_run(&events_after, &third, "io.galleon.image.ready.v1").len(),
        1,
        "no second copy: {events:#?}"
    );
    assert!(
        of_run(&events_after, &third, "io.galleon.step.failed.v1").is_empty(),
        "{events_after:#?}"
    );

    // A version galleon never published, and a bad region name: refused with the cause.
    let missing = galleon(&["rerun", "ubuntu-2404", "9.9.9"], &env, None);
    assert_eq!(missing.code, 3, "{}", missing.stderr);
    let bad = galleon(
        &["rerun", "ubuntu-2404", "1.0.0", "--region", "West Europe!"],
        &env,
        None,
    );
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("regions:") && bad.stderr.contains("not an ARM region"),
        "{}",
        bad.stderr
    );
    s.stop().await;
}

/// The events once run `run` has `n` image.ready facts (or after 150 s).
async fn ready_in(s: &Scenario, run: &str, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(150);
    loop {
        let events = s.receiver.received.all();
        if of_run(&events, run, "io.galleon.image.ready.v1").len() >= n
            || std::time::Instant::now() > deadline
        {
            return events;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}
