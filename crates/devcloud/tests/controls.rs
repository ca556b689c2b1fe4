//! Re-running one stage of a version on the local cloud: replication again, for a region that failed for
//! good and a region added, as a run of its own that the real `galleon` tool starts and follows; and the
//! same controls by request on the Service Bus queue `galleon-requests`.

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
    s.assert_role_allows_what_galleon_did().await;
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

/// Waits for `n` facts of type `ty` for which `which` holds.
async fn facts_where(
    s: &Scenario,
    ty: &str,
    n: usize,
    which: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(150);
    loop {
        let found: Vec<Value> = distinct(&s.receiver.received.of_type(ty))
            .into_iter()
            .filter(|e| which(e))
            .collect();
        if found.len() >= n || std::time::Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_on_the_queue_are_answered_by_facts() {
    let s = start(&[("GALLEON_TARGET_REGIONS", "westeurope")]).await;
    s.publish("q", "fixed", "8M", json!({"version": "1.0.0"}))
        .await;
    s.wait_for("io.galleon.image.ready.v1", 120).await;
    let queue = "galleon-requests";

    // A replica request adds a region and ends in that region's ready fact, in the run it names.
    s.send_to_queue(
        queue,
        "m-replicate",
        &json!({"kind": "replicate", "id": "pipeline-7", "by": "release-pipeline",
                "imageDefinition": "ubuntu-2404", "version": "1.0.0", "regions": ["uksouth"]})
        .to_string(),
        &[],
    )
    .await;
    let accepted = facts_where(&s, "io.galleon.request.accepted.v1", 1, |e| {
        e["data"]["requestId"] == "pipeline-7"
    })
    .await;
    assert_eq!(accepted.len(), 1, "{:#?}", s.receiver.received.all());
    let a = &accepted[0]["data"];
    assert_eq!(a["kind"], "replicate");
    assert_eq!(a["by"], "release-pipeline");
    assert_eq!(a["answer"]["added"], json!(["uksouth"]), "{a:#}");
    let run = a["run"].as_str().unwrap_or_default().to_owned();
    assert_eq!(accepted[0]["correlationid"], run.as_str());
    let replica = facts_where(&s, "io.galleon.image.replica.ready.v1", 1, |e| {
        e["correlationid"] == run.as_str()
    })
    .await;
    assert_eq!(replica.len(), 1, "{:#?}", s.receiver.received.all());
    assert_eq!(replica[0]["data"]["region"]["name"], "uksouth");
    let ready = facts_where(&s, "io.galleon.image.ready.v1", 1, |e| {
        e["correlationid"] == run.as_str()
    })
    .await;
    assert_eq!(ready.len(), 1);

    // A malformed request ends in one request.rejected naming the field; it is not retried.
    s.send_to_queue(
        queue,
        "m-bad",
        &json!({"kind": "replicate", "id": "pipeline-8", "imageDefinition": "ubuntu-2404", "version": "latest"})
            .to_string(),
        &[],
    )
    .await;
    s.send_to_queue(queue, "m-not-json", "{not json", &[]).await;
    let rejected = facts_where(&s, "io.galleon.request.rejected.v1", 2, |_| true).await;
    assert_eq!(rejected.len(), 2, "{rejected:#?}");
    let by_id = |id: &str| {
        rejected
            .iter()
            .find(|e| e["data"]["requestId"] == id)
            .unwrap_or_else(|| panic!("{id}: {rejected:#?}"))
    };
    let bad = &by_id("pipeline-8")["data"];
    assert_eq!(bad["reason"]["code"], "RequestInvalid");
    assert!(
        bad["reason"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("version:")),
        "{bad:#}"
    );
    assert_eq!(bad["kind"], "replicate");
    let not_json = &by_id("m-not-json")["data"];
    assert!(
        not_json["reason"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("body:")),
        "{not_json:#}"
    );
    // A refused request: an unknown version.
    s.send_to_queue(
        queue,
        "m-unknown",
        &json!({"kind": "markBad", "id": "pipeline-9", "imageDefinition": "ubuntu-2404", "version": "9.9.9"}).to_string(),
        &[],
    )
    .await;
    let unknown = facts_where(&s, "io.galleon.request.rejected.v1", 1, |e| {
        e["data"]["requestId"] == "pipeline-9"
    })
    .await;
    assert_eq!(unknown.len(), 1);
    assert_eq!(unknown[0]["data"]["reason"]["code"], "VersionNotFound");

    // A publish request: galleon writes the manifest next to the VHD, and the chain runs in the run it
    // names, to image.ready.
    let work = tempfile::tempdir().expect("dir");
    let storage = s.cloud.storage().expect("storage");
    let vhd = make_vhd(work.path(), "asked.vhd", "fixed", "8M");
    storage
        .upload_page_blob("images", "ubuntu-2404/asked.vhd", &vhd)
        .await
        .expect("vhd");
    let vhd_url = storage.url("images", "ubuntu-2404/asked.vhd");
    let manifest: Value =
        serde_json::from_slice(&common::manifest("unused.vhd", json!({"version": "2.0.0"})))
            .map(|mut m: Value| {
                if let Some(o) = m.as_object_mut() {
                    o.remove("vhd");
                }
                m
            })
            .expect("json");
    s.send_to_queue(
        queue,
        "m-publish",
        &json!({"kind": "publish", "id": "pipeline-10", "vhd": vhd_url, "manifest": manifest})
            .to_string(),
        &[],
    )
    .await;
    let accepted = facts_where(&s, "io.galleon.request.accepted.v1", 1, |e| {
        e["data"]["requestId"] == "pipeline-10"
    })
    .await;
    assert_eq!(accepted.len(), 1, "{:#?}", s.receiver.received.all());
    let run = accepted[0]["data"]["run"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let published = facts_where(&s, "io.galleon.image.ready.v1", 1, |e| {
        e["correlationid"] == run.as_str()
    })
    .await;
    assert_eq!(published.len(), 1, "{:#?}", s.receiver.received.all());
    assert!(
        published[0]["data"]["versionId"]
            .as_str()
            .is_some_and(|v| v.ends_with("/versions/2.0.0")),
        "{:#}",
        published[0]
    );
    let written = storage
        .download("images", "ubuntu-2404/asked.manifest.json")
        .await
        .expect("read")
        .expect("the manifest is beside the VHD");
    let written: Value = serde_json::from_slice(&written).expect("json");
    assert_eq!(written["vhd"], "asked.vhd");
    // Asked again for a VHD whose manifest is someone else's: refused, the blob untouched.
    s.send_to_queue(
        queue,
        "m-publish-again",
        &json!({"kind": "publish", "id": "pipeline-11", "vhd": storage.url("images", "ubuntu-2404/q.vhd"), "manifest": manifest})
            .to_string(),
        &[],
    )
    .await;
    let exists = facts_where(&s, "io.galleon.request.rejected.v1", 1, |e| {
        e["data"]["requestId"] == "pipeline-11"
    })
    .await;
    assert_eq!(exists.len(), 1);
    assert_eq!(exists[0]["data"]["reason"]["code"], "ManifestExists");

    // Nothing was retried into a dead letter: every request ended in exactly one answer.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let all = s.receiver.received.all();
    let answers = distinct(
        &all.iter()
            .filter(|e| {
                e["type"] == "io.galleon.request.accepted.v1"
                    || e["type"] == "io.galleon.request.rejected.v1"
            })
            .cloned()
            .collect::<Vec<_>>(),
    );
    assert_eq!(answers.len(), 6, "{answers:#?}");
    assert!(
        s.receiver
            .received
            .of_type("io.galleon.step.failed.v1")
            .is_empty(),
        "{all:#?}"
    );
    assert_catalog_valid(&all);
    s.stop().await;
}
