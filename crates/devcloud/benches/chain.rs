//! Publishing-chain benchmark on the local cloud (real galleon, Azurite, ARM simulator, Service Bus, Event
//! Grid, Functions host). Prints figures, asserts nothing:
//! - for N images × R regions: ARM requests per published image, and the time from the last region
//!   finishing (the simulator's own clock) to the image-ready event reaching a subscriber, split into
//!   waiting for galleon's next look (against the looks policy's spacing) and the event's travel;
//! - for one image with 1, 2, 4 and 8 regions: time from upload to image ready, next to the slowest
//!   region's own replication time, to show the total follows the slowest region, not the region count.
//!
//! Run: `cargo build --release -p galleon && cargo bench -p devcloud --bench chain`.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use devcloud::{Cloud, Options, Ports, receiver::Receiver};
use serde_json::{Value, json};

const REGIONS: [&str; 8] = [
    "westeurope",
    "northeurope",
    "eastus2",
    "westus2",
    "eastus",
    "southcentralus",
    "japaneast",
    "australiaeast",
];
const FOLLOW_UP_SECONDS: u64 = 1;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

async fn fixed_vhd(dir: &std::path::Path) -> Vec<u8> {
    let path = dir.join("bench.vhd");
    devcloud::upload::make_fixed_vhd(&path, "8M")
        .await
        .expect("qemu-img is needed (apt-get install qemu-utils)");
    std::fs::read(&path).unwrap_or_default()
}

type Time = chrono::DateTime<chrono::Utc>;

/// When the simulator started replicating `version_id` to its first region and finished its last.
fn replication_span(cloud: &Cloud, version_id: &str) -> Option<(Time, Time)> {
    let state = cloud.arm.arm.lock();
    let resource = state.resources.get(&version_id.to_ascii_lowercase())?;
    let start = resource.regions.iter().map(|r| r.start).min()?;
    let end = resource.regions.iter().map(|r| r.end).max()?;
    Some((start, end))
}

/// The last GET of `version_id` (galleon's look) the local ARM logged before `before`.
fn last_look(log: &[devcloud_arm::arm::LogEntry], version_id: &str, before: Time) -> Option<Time> {
    let id = version_id.to_ascii_lowercase();
    log.iter()
        .filter(|e| e.method == "GET" && e.path.to_ascii_lowercase().starts_with(&id))
        .filter_map(|e| chrono::DateTime::parse_from_rfc3339(&e.time).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
        .filter(|t| *t <= before)
        .max()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

async fn wait_ready(
    receiver: &Receiver,
    count: usize,
    timeout: Duration,
) -> Vec<(chrono::DateTime<chrono::Utc>, Value)> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut seen = std::collections::BTreeMap::new();
        for (at, e) in receiver.received.arrivals() {
            if e["type"] == "io.galleon.image.ready.v1" {
                seen.entry(e["id"].as_str().unwrap_or_default().to_owned())
                    .or_insert((at, e));
            }
        }
        if seen.len() >= count || Instant::now() > deadline {
            return seen.into_values().collect();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let galleon = std::env::var_os("GALLEON_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/release/galleon-handler"));
    if !galleon.is_file() {
        eprintln!(
            "build galleon first: cargo build --release -p galleon ({} is missing)",
            galleon.display()
        );
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mut options = Options::new(
        repo_root(),
        galleon.parent().map(PathBuf::from).unwrap_or_default(),
        dir.path().join("state"),
    );
    options.ports = Ports::ephemeral();
    options.arm_time_factor = 0.01;
    options.settings.insert(
        "GALLEON_FOLLOWUP_SECONDS".into(),
        FOLLOW_UP_SECONDS.to_string(),
    );
    options.settings.insert("RUST_LOG".into(), "warn".into());
    let cloud = Cloud::start(options).await.expect("local cloud");
    let receiver = Receiver::start().await.expect("receiver");
    cloud
        .subscribe("bench", &receiver.url())
        .await
        .expect("subscribe");
    let storage = cloud.storage().expect("storage");
    storage.create_container("images").await.expect("container");
    let vhd = fixed_vhd(dir.path()).await;
    println!(
        "galleon publishing-chain benchmark (ARM time factor 0.01, follow-up interval {FOLLOW_UP_SECONDS} s)"
    );

    // N images × R regions.
    let (n, r) = (6usize, 3usize);
    let kinds_before = cloud.arm.requests_by_kind();
    let before: u64 = kinds_before.values().sum();
    let started = Instant::now();
    for i in 0..n {
        let name = format!("bench-{i}");
        storage
            .upload_page_blob("images", &format!("{name}/{name}.vhd"), &vhd)
            .await
            .expect("vhd");
        let regions: Vec<Value> = REGIONS[..r].iter().map(|g| json!({"name": g})).collect();
        let manifest = json!({"vhd": format!("{name}.vhd"), "imageDefinition": name, "osType": "Linux", "hyperVGeneration": "V2", "targetRegions": regions});
        storage
            .upload_block_blob(
                "images",
                &format!("{name}/{name}.manifest.json"),
                manifest.to_string().as_bytes(),
            )
            .await
            .expect("manifest");
    }
    let ready = wait_ready(&receiver, n, Duration::from_secs(300)).await;
    let wall = started.elapsed().as_secs_f64();
    let requests: u64 = cloud.arm.requests_by_kind().values().sum::<u64>() - before;
    // The lag splits in two: waiting for galleon's next look (spaced by the looks policy: never more
    // than the follow-up interval or a quarter of the time replication has run, whichever is longer), and
    // the look's image.ready travelling through Service Bus, Announce and Event Grid to the subscriber.
    let log = cloud.arm.request_log();
    let secs = |d: chrono::Duration| d.num_milliseconds() as f64 / 1000.0;
    let (mut lags, mut waits, mut travels, mut within) = (Vec::new(), Vec::new(), Vec::new(), 0);
    for (at, e) in &ready {
        let Some(version) = e["data"]["versionId"].as_str() else {
            continue;
        };
        let Some((start, end)) = replication_span(&cloud, version) else {
            continue;
        };
        lags.push(secs(*at - end));
        if let Some(look) = last_look(&log, version, *at) {
            let wait = secs(look - end);
            let spacing = (FOLLOW_UP_SECONDS as f64).max(secs(end - start) / 4.0);
            within += usize::from(wait <= spacing);
            waits.push(wait);
            travels.push(secs(*at - look));
        }
    }
    println!(
        "{n} images × {r} regions: {} ready in {wall:.1} s; {:.1} ARM requests per published image",
        ready.len(),
        requests as f64 / n.max(1) as f64
    );
    // Where the requests went, per image: the first publish to a definition makes it (and its gallery).
    let mut by_kind: Vec<(String, f64)> = cloud
        .arm
        .requests_by_kind()
        .into_iter()
        .map(|(kind, count)| {
            let was = kinds_before.get(&kind).copied().unwrap_or(0);
            (kind, (count - was) as f64 / n.max(1) as f64)
        })
        .filter(|(_, per_image)| *per_image > 0.0)
        .collect();
    by_kind.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    println!(
        "  per image: {}",
        by_kind
            .iter()
            .map(|(kind, per_image)| format!("{kind} {per_image:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  last region finished → image-ready at the subscriber: median {:.2} s, max {:.2} s",
        median(lags.clone()),
        lags.iter().copied().fold(f64::NAN, f64::max)
    );
    println!(
        "    of which waiting for the next look: median {:.2} s, max {:.2} s; {within}/{} within max({FOLLOW_UP_SECONDS} s, a quarter of the replication time), the looks policy's spacing past the expected end (a replication that ends before galleon expected it is seen at the expected end)",
        median(waits.clone()),
        waits.iter().copied().fold(f64::NAN, f64::max),
        waits.len()
    );
    println!(
        "    of which the look's image.ready travelling to the subscriber (Service Bus, Announce, Event Grid): median {:.2} s, max {:.2} s",
        median(travels.clone()),
        travels.iter().copied().fold(f64::NAN, f64::max)
    );

    // One image, more and more regions.
    for (i, count) in [1usize, 2, 4, 8].into_iter().enumerate() {
        let name = format!("scale-{i}");
        let regions: Vec<Value> = REGIONS[..count]
            .iter()
            .map(|g| json!({"name": g}))
            .collect();
        let manifest = json!({"vhd": format!("{name}.vhd"), "imageDefinition": name, "osType": "Linux", "hyperVGeneration": "V2", "targetRegions": regions});
        let t0 = chrono::Utc::now();
        let seen_before = receiver.received.of_type("io.galleon.image.ready.v1").len();
        storage
            .upload_page_blob("images", &format!("{name}/{name}.vhd"), &vhd)
            .await
            .expect("vhd");
        storage
            .upload_block_blob(
                "images",
                &format!("{name}/{name}.manifest.json"),
                manifest.to_string().as_bytes(),
            )
            .await
            .expect("manifest");
        let ready = wait_ready(&receiver, seen_before + 1, Duration::from_secs(300)).await;
        let Some((at, event)) = ready.into_iter().find(|(_, e)| {
            e["subject"]
                .as_str()
                .is_some_and(|s| s.contains(&format!("/images/{name}/")))
        }) else {
            println!("{count} regions: no image-ready within 300 s");
            continue;
        };
        let version_id = event["data"]["versionId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let slowest = {
            let state = cloud.arm.arm.lock();
            state
                .resources
                .get(&version_id.to_ascii_lowercase())
                .map(|res| {
                    res.regions
                        .iter()
                        .map(|g| (g.end - g.start).num_milliseconds() as f64 / 1000.0)
                        .fold(0.0, f64::max)
                })
                .unwrap_or(f64::NAN)
        };
        println!(
            "{count} region(s): upload → image ready {:.1} s; slowest single region replicated in {slowest:.1} s",
            (at - t0).num_milliseconds() as f64 / 1000.0
        );
    }
    receiver.stop().await;
    cloud.stop().await;
}
