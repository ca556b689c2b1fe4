//! The chaos suite's shared parts: its sizes (reduced for CI, full from `GALLEON_CHAOS_*`), a batch of
//! VHDs published to several regions each, and the invariant checker every scenario ends with.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use super::*;

/// Regions a batch replicates to, home first (each a region the local ARM knows).
const REGIONS: [&str; 8] = [
    "westeurope",
    "northeurope",
    "eastus2",
    "eastus",
    "westus2",
    "uksouth",
    "francecentral",
    "swedencentral",
];

/// How big a chaos run is: CI's reduced sizes unless `GALLEON_CHAOS_*` says otherwise (scripts/chaos.sh).
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// VHDs per batch (`GALLEON_CHAOS_IMAGES`).
    pub images: usize,
    /// Regions each VHD replicates to (`GALLEON_CHAOS_REGIONS`, at most 8).
    pub regions: usize,
    /// Handler kills across the batch (`GALLEON_CHAOS_KILLS`).
    pub kills: usize,
    /// How long Service Bus is unavailable (`GALLEON_CHAOS_OUTAGE_SECONDS`).
    pub outage_seconds: u64,
    /// How many times Azurite is restarted (`GALLEON_CHAOS_AZURITE_RESTARTS`).
    pub azurite_restarts: usize,
}

fn env_number(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

impl Sizes {
    pub fn from_env() -> Sizes {
        let sizes = Sizes {
            images: env_number("GALLEON_CHAOS_IMAGES", 2).max(1),
            regions: env_number("GALLEON_CHAOS_REGIONS", 3).clamp(1, REGIONS.len()),
            kills: env_number("GALLEON_CHAOS_KILLS", 6).max(1),
            outage_seconds: env_number("GALLEON_CHAOS_OUTAGE_SECONDS", 15).max(1) as u64,
            azurite_restarts: env_number("GALLEON_CHAOS_AZURITE_RESTARTS", 1).max(1),
        };
        eprintln!("chaos sizes: {sizes:?}");
        sizes
    }

    /// The regions each version goes to.
    pub fn regions(&self) -> Vec<&'static str> {
        REGIONS[..self.regions].to_vec()
    }

    /// How long a batch may take to end, growing with its size.
    pub fn patience(&self) -> u64 {
        120 + 20 * (self.images * self.regions) as u64
    }
}

/// Starts the local cloud for a chaos scenario: `settings` plus the batch's regions, each message
/// delivered `1 + extra_deliveries` times, duplicate detection off.
pub async fn start_chaos(
    sizes: &Sizes,
    settings: &[(&str, &str)],
    configure: impl FnOnce(&mut devcloud::Options),
) -> Scenario {
    let regions = sizes.regions().join(",");
    let mut all: Vec<(&str, &str)> = vec![
        ("GALLEON_TARGET_REGIONS", regions.as_str()),
        ("GALLEON_LOCATION", REGIONS[0]),
    ];
    all.extend_from_slice(settings);
    start_configured(&all, false, configure).await
}

/// One VHD of a batch: its own image definition (versions are named by upload time, so a batch in one
/// definition would collide), published straight from the VHD or through a managed image, alternately.
#[derive(Debug, Clone)]
pub struct Image {
    pub definition: String,
    pub vhd_url_tail: String,
    pub through_managed_image: bool,
}

/// Uploads `n` fixed VHDs, each with its manifest, as `chaos-<i>/v<i>.vhd` for `i` from `first`.
pub async fn publish_batch(s: &Scenario, first: usize, n: usize) -> Vec<Image> {
    let work = tempfile::tempdir().expect("dir");
    let vhd = make_vhd(work.path(), "chaos.vhd", "fixed", "8M");
    let storage = s.cloud.storage().expect("storage");
    let mut batch = Vec::new();
    for i in first..first + n {
        let definition = format!("chaos-{i}");
        let through_managed_image = i % 2 == 1;
        let from = if through_managed_image {
            "managedImage"
        } else {
            "vhd"
        };
        storage
            .upload_page_blob("images", &format!("{definition}/v{i}.vhd"), &vhd)
            .await
            .expect("vhd");
        let manifest = manifest(
            &format!("v{i}.vhd"),
            // A definition's publisher/offer/sku is unique in its gallery, as Azure requires.
            json!({"imageDefinition": definition, "publishFrom": from,
                   "identifier": {"publisher": "contoso", "offer": "chaos", "sku": definition}}),
        );
        storage
            .upload_block_blob(
                "images",
                &format!("{definition}/v{i}.manifest.json"),
                &manifest,
            )
            .await
            .expect("manifest");
        batch.push(Image {
            vhd_url_tail: format!("/images/{definition}/v{i}.vhd"),
            definition,
            through_managed_image,
        });
    }
    batch
}

/// How one VHD's run ended.
#[derive(Debug, Clone)]
pub enum Ending {
    Ready(Value),
    Failed(Value),
    Rejected(Value),
}

/// The facts of one run (its correlation id), distinct.
fn facts_of(events: &[Value], run: &Value, ty: &str) -> Vec<Value> {
    distinct(
        &events
            .iter()
            .filter(|e| e["correlationid"] == *run && e["type"] == ty)
            .cloned()
            .collect::<Vec<_>>(),
    )
}

fn vhd_url(e: &Value) -> &str {
    e["data"]["vhd"]["url"]
        .as_str()
        .or(e["data"]["blob"]["url"].as_str())
        .unwrap_or_default()
}

/// Whether a public fact is about `image`: its subject names the image's definition (a version) or its
/// blobs, or it names its VHD (`vhd.accepted` is not public: a run is known by what it announces).
fn is_about(e: &Value, image: &Image) -> bool {
    let subject = e["subject"].as_str().unwrap_or_default();
    subject.contains(&format!("/images/{}/", image.definition))
        || subject.contains(&format!("/blobs/{}/", image.definition))
        || vhd_url(e).ends_with(&image.vhd_url_tail)
}

/// Each image's run and how it ended so far (`None`: not ended). Panics on a VHD that started two runs.
fn endings(s: &Scenario, batch: &[Image]) -> Vec<(Value, Option<Ending>)> {
    let events = s.receiver.received.all();
    batch
        .iter()
        .map(|image| {
            let mine: Vec<&Value> = events.iter().filter(|e| is_about(e, image)).collect();
            let runs: std::collections::BTreeSet<String> = mine
                .iter()
                .filter_map(|e| e["correlationid"].as_str().map(str::to_owned))
                .collect();
            assert!(
                runs.len() <= 1,
                "{} started {} runs: {runs:?}",
                image.definition,
                runs.len()
            );
            let Some(run) = runs.into_iter().next().map(Value::from) else {
                return (Value::Null, None);
            };
            let ready = facts_of(&events, &run, "io.galleon.image.ready.v1");
            let failed = facts_of(&events, &run, "io.galleon.step.failed.v1");
            let rejected = facts_of(&events, &run, "io.galleon.vhd.rejected.v1");
            assert!(
                ready.len() + failed.len() + rejected.len() <= 1,
                "{} ended more than once: ready {ready:#?} failed {failed:#?} rejected {rejected:#?}",
                image.definition
            );
            let ending = match (ready.first(), failed.first(), rejected.first()) {
                (Some(r), None, None) => Some(Ending::Ready(r.clone())),
                (None, Some(f), None) => Some(Ending::Failed(f.clone())),
                (None, None, Some(r)) => Some(Ending::Rejected(r.clone())),
                (None, None, None) => None,
                _ => panic!(
                    "{} ended more than one way: ready {ready:#?} failed {failed:#?} rejected {rejected:#?}",
                    image.definition
                ),
            };
            (run, ending)
        })
        .collect()
}

/// Whether every run of the batch has ended.
pub fn all_ended(s: &Scenario, batch: &[Image]) -> bool {
    endings(s, batch).iter().all(|(_, e)| e.is_some())
}

/// How many runs of the batch have ended.
pub fn ended_count(s: &Scenario, batch: &[Image]) -> usize {
    endings(s, batch)
        .iter()
        .filter(|(_, e)| e.is_some())
        .count()
}

/// Waits until every run of the batch has ended, up to `seconds`; panics with what is missing.
pub async fn wait_all_ended(s: &Scenario, batch: &[Image], seconds: u64) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !all_ended(s, batch) {
        if Instant::now() > deadline {
            let open: Vec<String> = endings(s, batch)
                .iter()
                .zip(batch)
                .filter(|((_, e), _)| e.is_none())
                .map(|((run, _), i)| format!("{} (run {run})", i.definition))
                .collect();
            panic!(
                "runs not ended within {seconds} s: {open:?}\nhost log (newest first):\n{}",
                s.recent_host_log(80)
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// What the checker found, for the scenario's own assertions and its printout.
#[derive(Debug, Default)]
pub struct Outcome {
    pub ready: usize,
    pub failed: Vec<Value>,
    pub rejected: Vec<Value>,
    pub dead_letters: Vec<Value>,
}

/// An ARM list (every page) as any client reads it.
async fn arm_list(s: &Scenario, path: &str, api: &str) -> Vec<Value> {
    let mut url = format!("{}{path}?api-version={api}", s.cloud.arm.base_url);
    let mut all = Vec::new();
    for _ in 0..100 {
        let token = s.cloud.identity.issue("https://management.azure.com");
        let page = with_status(
            s.cloud
                .client()
                .expect("client")
                .get(&url)
                .bearer_auth(token)
                .send()
                .await
                .expect("ARM answers"),
        )
        .await;
        if page["_status"] == 404 {
            return all;
        }
        assert_eq!(page["_status"], 200, "listing {path}: {page:#}");
        all.extend(page["value"].as_array().cloned().unwrap_or_default());
        match page["nextLink"].as_str() {
            Some(next) => url = next.to_owned(),
            None => return all,
        }
    }
    panic!("{path} lists more than 100 pages")
}

fn group_path() -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute",
        devcloud_arm::DEFAULT_SUBSCRIPTION_ID,
        devcloud::RESOURCE_GROUP
    )
}

/// The invariants every chaos scenario ends with, once every run has ended (`wait_all_ended`):
/// each VHD made one run that ended one explained way; no definition holds a second version, and a ready
/// run's version is the one it announced, `Completed` everywhere; no managed image is left once its run
/// has ended, unless its ending names it as left behind; every dead letter galleon kept has Service
/// Bus's reason and ended its run in `step.failed`; nothing is left unsettled in Service Bus.
pub async fn check_invariants(s: &Scenario, batch: &[Image]) -> Outcome {
    // Faults the scenario set must not fail the checker's own reads.
    s.clear_faults().await;
    let mut outcome = Outcome::default();
    let endings = endings(s, batch);
    for ((run, ending), image) in endings.iter().zip(batch) {
        let ending = ending
            .clone()
            .unwrap_or_else(|| panic!("{} (run {run}) has not ended", image.definition));
        let versions = arm_list(
            s,
            &format!(
                "{}/galleries/{}/images/{}/versions",
                group_path(),
                devcloud::GALLERY,
                image.definition
            ),
            "2025-03-03",
        )
        .await;
        let names: Vec<&str> = versions.iter().filter_map(|v| v["name"].as_str()).collect();
        assert!(
            versions.len() <= 1,
            "{} holds more than one version: {names:?}",
            image.definition
        );
        let named = match &ending {
            Ending::Ready(e) | Ending::Failed(e) | Ending::Rejected(e) => left_behind(e),
        };
        match ending {
            Ending::Ready(ready) => {
                outcome.ready += 1;
                let id = ready["data"]["versionId"].as_str().unwrap_or_default();
                assert!(
                    versions.len() == 1
                        && versions[0]["id"]
                            .as_str()
                            .is_some_and(|v| v.eq_ignore_ascii_case(id)),
                    "{}: image.ready names {id}, ARM lists {names:?}",
                    image.definition
                );
                let version = s.arm_get(id).await;
                assert_eq!(
                    version["properties"]["replicationStatus"]["aggregatedState"], "Completed",
                    "{}: {version:#}",
                    image.definition
                );
                let regions = ready["data"]["regions"].as_array().map(Vec::len);
                assert!(
                    regions.is_some_and(|n| n >= 1),
                    "{}: image.ready names its regions: {ready:#}",
                    image.definition
                );
            }
            Ending::Failed(failed) => {
                let d = &failed["data"];
                assert!(
                    d["step"].as_str().is_some_and(|x| !x.is_empty())
                        && d["error"]["code"].as_str().is_some_and(|x| !x.is_empty())
                        && d["error"]["message"]
                            .as_str()
                            .is_some_and(|x| !x.is_empty()),
                    "{}: a step.failed must say where and why: {failed:#}",
                    image.definition
                );
                outcome.failed.push(failed);
            }
            Ending::Rejected(rejected) => {
                assert!(
                    rejected["data"]["reason"]["code"]
                        .as_str()
                        .is_some_and(|x| !x.is_empty()),
                    "{}: a rejection must say why: {rejected:#}",
                    image.definition
                );
                outcome.rejected.push(rejected);
            }
        }
        assert_no_managed_image_left(s, image, &named).await;
    }
    outcome.dead_letters = dead_letters(s).await;
    for letter in &outcome.dead_letters {
        assert!(
            letter["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "a dead letter without its reason: {letter:#}"
        );
        if let Some(run) = letter["run"].as_str() {
            assert!(
                outcome.failed.iter().any(|f| f["correlationid"] == run),
                "the dead letter {letter:#} did not end its run in step.failed"
            );
        }
    }
    assert_service_bus_settled(s).await;
    assert_catalog_valid(&s.receiver.received.all());
    outcome
}

/// The resources a run's ending names as left behind (`leftBehind[].resourceId`).
fn left_behind(ending: &Value) -> Vec<String> {
    ending["data"]["leftBehind"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["resourceId"].as_str().map(str::to_ascii_lowercase))
        .collect()
}

/// Once a run has ended, the managed image it made on the way is gone (the delete may take a moment to
/// land), unless its ending names it as left behind.
async fn assert_no_managed_image_left(s: &Scenario, image: &Image, named: &[String]) {
    let prefix = format!("{}-", image.definition);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left: Vec<String> = arm_list(s, &format!("{}/images", group_path()), "2025-04-01")
            .await
            .iter()
            .filter(|i| i["name"].as_str().is_some_and(|n| n.starts_with(&prefix)))
            .filter_map(|i| i["id"].as_str().map(str::to_owned))
            .filter(|id| !named.contains(&id.to_ascii_lowercase()))
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{}: managed images left behind once its run ended: {left:?}",
            image.definition
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The dead letters galleon kept (`GET /api/deadletters`).
async fn dead_letters(s: &Scenario) -> Vec<Value> {
    let (url, key) = s.tool_env();
    let answer: Value = s
        .cloud
        .client()
        .expect("client")
        .get(format!("{url}/api/deadletters"))
        .header("x-functions-key", key)
        .send()
        .await
        .expect("the dead-letter list answers")
        .json()
        .await
        .expect("JSON");
    answer
        .get("deadLetters")
        .or(answer.get("value"))
        .and_then(Value::as_array)
        .cloned()
        .or_else(|| answer.as_array().cloned())
        .unwrap_or_default()
}

/// No message is still waiting or locked in any queue or subscription, and none sits in a dead-letter
/// queue galleon does not take (each forwards to `galleon-deadletters`, which galleon takes): nothing
/// lost between the cracks. Scheduled looks may remain (they find their run ended and stop).
async fn assert_service_bus_settled(s: &Scenario) {
    // A message whose settle call failed (Service Bus was down) stays locked until its lock expires (the
    // subscriptions' lockDuration, 60 s, as in Azure) and is then delivered again: wait longer than that.
    let deadline = Instant::now() + Duration::from_secs(100);
    loop {
        let overview: Value = s
            .cloud
            .client()
            .expect("client")
            .get(format!("{}/_devcloud/entities", s.cloud.service_bus.url()))
            .send()
            .await
            .expect("Service Bus admin answers")
            .json()
            .await
            .expect("JSON");
        let mut stores: Vec<Value> = overview["queues"].as_array().cloned().unwrap_or_default();
        for topic in overview["topics"].as_array().into_iter().flatten() {
            stores.extend(
                topic["subscriptions"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            );
        }
        let unsettled: Vec<String> = stores
            .iter()
            .filter(|e| {
                e["activeMessageCount"].as_u64().unwrap_or(0) > 0
                    || e["lockedMessageCount"].as_u64().unwrap_or(0) > 0
                    || e["deadLetterMessageCount"].as_u64().unwrap_or(0) > 0
            })
            .map(|e| e.to_string())
            .collect();
        if unsettled.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "messages left unsettled in Service Bus: {unsettled:#?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The fault rules set on the local ARM, with how often each applied.
pub async fn fault_rules(s: &Scenario) -> Vec<Value> {
    let answer: Value = s
        .cloud
        .client()
        .expect("client")
        .get(format!("{}/_devcloud/faults", s.cloud.arm.base_url))
        .send()
        .await
        .expect("faults listed")
        .json()
        .await
        .expect("JSON");
    answer["value"].as_array().cloned().unwrap_or_default()
}

/// Prints how the batch ended, for the run's log.
pub fn print_outcome(
    scenario: &str,
    batch: &[Image],
    outcome: &Outcome,
    chaos: &BTreeMap<&str, String>,
) {
    let managed = batch.iter().filter(|i| i.through_managed_image).count();
    eprintln!(
        "CHAOS {scenario}: {} VHDs ({managed} through a managed image): {} ready, {} step.failed, {} rejected, {} dead letters; {}",
        batch.len(),
        outcome.ready,
        outcome.failed.len(),
        outcome.rejected.len(),
        outcome.dead_letters.len(),
        chaos
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for f in &outcome.failed {
        eprintln!(
            "  step.failed {}: {} {}: {}",
            f["subject"],
            f["data"]["step"],
            f["data"]["error"]["code"],
            f["data"]["error"]["message"]
        );
    }
    for d in &outcome.dead_letters {
        eprintln!(
            "  dead letter: {} {} ({})",
            d["factType"], d["reason"], d["description"]
        );
    }
}
