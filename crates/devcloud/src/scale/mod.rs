//! The scale run (`devcloud scale`, and the reduced CI test): many fixed VHDs uploaded with manifests
//! over an arrival window, each asking for several regions, on the local cloud with Resource Manager's
//! throttling on at Azure's token-bucket numbers; every run followed through galleon's public events
//! to image.ready, step.failed or vhd.rejected; then the figures ([`Figures`]).
//!
//! Time: the ARM's operation latencies are multiplied by the time factor, but its token buckets refill
//! in wall-clock time. Galleon's looks per simulated hour therefore rise as the factor falls, so a
//! compressed run is stricter than Azure, never kinder. Simulated time = wall time / time factor.

pub mod figures;
mod plan;
pub mod probe;

use std::{
    collections::{BTreeMap, HashMap},
    future::Future,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use figures::{ArmFigures, Setup};
pub use figures::{Figures, Percentiles};
pub use plan::{Params, parse_size};
use plan::{Run, plan, size_label};
use probe::{ArmTally, HandlerProbe};

use crate::{
    Cloud, HOME_REGION, IMAGES_CONTAINER, Options,
    follow::{Outcome, RunFilter},
    receiver::Receiver,
    upload::make_fixed_vhd,
};

/// Starts the local cloud with `options` and `params` applied, runs the scale run, stops the cloud and
/// returns the figures. `progress` gets a line every few seconds; `stop` ends the run early (Ctrl-C),
/// with the figures so far.
pub async fn run(
    mut options: Options,
    params: &Params,
    progress: &(dyn Fn(&str) + Sync),
    stop: impl Future<Output = ()>,
) -> Result<Figures> {
    params.check()?;
    params.apply(&mut options);
    let home = options
        .settings
        .get("GALLEON_LOCATION")
        .cloned()
        .unwrap_or_else(|| HOME_REGION.to_owned());
    let setup = params.setup(&options.arm.throttling);
    let work = tempfile::Builder::new()
        .prefix("galleon-scale-")
        .tempdir()
        .context("making the scale run's temporary directory")?;
    let mut files = Vec::new();
    for size in &params.sizes {
        let path = work.path().join(format!("fixed-{}.vhd", size_label(*size)));
        make_fixed_vhd(&path, &size_label(*size)).await?;
        files.push(path);
    }
    let runs = plan(params, &home, &files)?;
    progress("starting the local cloud (throttling on)…");
    let cloud = Cloud::start(options).await?;
    let result = measure(&cloud, params, setup, runs, progress, stop).await;
    cloud.stop().await;
    result
}

/// Whether a failure event says throttling caused it: Azure's throttling codes, "Too Many Requests",
/// or a 429 status, anywhere in its data except ids and URLs.
pub fn throttle_caused(event: &Value) -> bool {
    fn strings<'a>(v: &'a Value, key: &str, out: &mut Vec<&'a str>) {
        let lower = key.to_ascii_lowercase();
        if lower.ends_with("id") || lower.ends_with("url") {
            return;
        }
        match v {
            Value::String(s) => out.push(s),
            Value::Array(items) => items.iter().for_each(|i| strings(i, key, out)),
            Value::Object(map) => map.iter().for_each(|(k, i)| strings(i, k, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    strings(&event["data"], "", &mut all);
    all.iter().any(|s| {
        let lower = s.to_ascii_lowercase();
        lower.contains("subscriptionrequeststhrottled")
            || lower.contains("toomanyrequests")
            || lower.contains("too many requests")
            || s.split(|c: char| !c.is_ascii_alphanumeric())
                .any(|w| w == "429")
    }) || event["data"]["error"]["status"] == 429
}

/// The failure's code and where it happened, e.g. `SubscriptionRequestsThrottled (PublishVersion)`.
fn reason(event: &Value) -> String {
    let d = &event["data"];
    if event["type"] == "io.galleon.vhd.rejected.v1" {
        format!(
            "{} (vhd.rejected)",
            d["reason"]["code"].as_str().unwrap_or("?")
        )
    } else {
        format!(
            "{} ({})",
            d["error"]["code"].as_str().unwrap_or("?"),
            d["step"].as_str().unwrap_or("?")
        )
    }
}

async fn upload_one(
    storage: Arc<crate::blob::Storage>,
    file: PathBuf,
    vhd_blob: String,
    manifest_blob: String,
    manifest: Value,
) -> Result<chrono::DateTime<chrono::Utc>> {
    storage
        .upload_file_as_page_blob(IMAGES_CONTAINER, &vhd_blob, &file)
        .await
        .with_context(|| format!("uploading {vhd_blob}"))?;
    storage
        .upload_block_blob(
            IMAGES_CONTAINER,
            &manifest_blob,
            manifest.to_string().as_bytes(),
        )
        .await
        .with_context(|| format!("uploading {manifest_blob}"))?;
    Ok(chrono::Utc::now())
}

async fn measure(
    cloud: &Cloud,
    params: &Params,
    setup: Setup,
    mut runs: Vec<Run>,
    progress: &(dyn Fn(&str) + Sync),
    stop: impl Future<Output = ()>,
) -> Result<Figures> {
    let receiver = Receiver::start().await?;
    let result = async {
        cloud.subscribe("scale-subscriber", &receiver.url()).await?;
        let storage = Arc::new(cloud.storage()?);
        storage.create_container(IMAGES_CONTAINER).await?;
        let date = chrono::Utc::now().format("%Y-%m-%d %H:%M").to_string();
        let mut tally = ArmTally::start(&cloud.arm.arm);
        let mut handler = HandlerProbe::default();
        handler.look(cloud.host.handler_process().await.0);
        let (started, started_utc) = (Instant::now(), chrono::Utc::now());
        let spacing = params.window.as_secs_f64() / params.vhds as f64;
        let mut uploads = tokio::task::JoinSet::new();
        let limit = Arc::new(tokio::sync::Semaphore::new(16));
        for (i, r) in runs.iter().enumerate() {
            let at = tokio::time::Instant::from_std(started)
                + Duration::from_secs_f64(spacing * i as f64);
            let (storage, limit) = (storage.clone(), limit.clone());
            let job = upload_one(
                storage,
                r.file.clone(),
                r.vhd_blob.clone(),
                r.manifest_blob.clone(),
                r.manifest.clone(),
            );
            uploads.spawn(async move {
                tokio::time::sleep_until(at).await;
                let _permit = limit.acquire_owned().await;
                (i, job.await)
            });
        }
        let deadline = started + params.timeout;
        let mut correlations: HashMap<String, usize> = HashMap::new();
        let (mut seen_events, mut ticks) = (0usize, 0u64);
        let mut interrupted = false;
        tokio::pin!(stop);
        loop {
            while let Some(done) = uploads.try_join_next() {
                match done {
                    Ok((i, Ok(at))) => runs[i].written = Some(at),
                    Ok((i, Err(e))) => {
                        progress(&format!("upload {i} failed: {e:#}"));
                        runs[i].upload_error = Some(format!("{e:#}"));
                    }
                    Err(e) => bail!("an upload task failed: {e}"),
                }
            }
            tally.update(&cloud.arm.arm);
            let arrivals = receiver.received.arrivals_after(seen_events);
            seen_events += arrivals.len();
            for (at, event) in arrivals {
                attribute(&mut runs, &mut correlations, at, &event);
            }
            let over = runs
                .iter()
                .all(|r| r.ended.is_some() || r.upload_error.is_some());
            ticks += 1;
            if ticks.is_multiple_of(4) || over {
                handler.look(cloud.host.handler_process().await.0);
            }
            if ticks.is_multiple_of(20) {
                progress(&status_line(started, &runs, &tally));
            }
            if over || Instant::now() >= deadline {
                break;
            }
            tokio::select! {
                () = &mut stop => { interrupted = true; break; }
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
        uploads.abort_all();
        tally.update(&cloud.arm.arm);
        progress(&status_line(started, &runs, &tally));
        Ok(figures(
            setup,
            date,
            &runs,
            (started, started_utc),
            &tally,
            handler.figures(),
            interrupted,
        ))
    }
    .await;
    let _ = crate::unsubscribe(
        &cloud.client()?,
        &cloud.event_grid.url(),
        "scale-subscriber",
    )
    .await;
    receiver.stop().await;
    result
}

/// Gives an event to the run it belongs to (by correlation id once known, else by its blobs or version)
/// and ends that run when it is image.ready, step.failed or vhd.rejected.
fn attribute(
    runs: &mut [Run],
    correlations: &mut HashMap<String, usize>,
    at: chrono::DateTime<chrono::Utc>,
    event: &Value,
) {
    let correlation = event["correlationid"].as_str().unwrap_or_default();
    let index = match correlations.get(correlation) {
        Some(i) => Some(*i),
        None => runs.iter_mut().position(|r| r.filter.ours(event)),
    };
    let Some(i) = index else { return };
    if !correlation.is_empty() {
        correlations.insert(correlation.to_owned(), i);
    }
    let run = &mut runs[i];
    if run.ended.is_none()
        && let Some(outcome) = RunFilter::ending(event)
    {
        run.ended = Some((at, outcome));
    }
}

fn status_line(started: Instant, runs: &[Run], tally: &ArmTally) -> String {
    let uploaded = runs.iter().filter(|r| r.written.is_some()).count();
    let ready = runs
        .iter()
        .filter(|r| matches!(r.ended, Some((_, Outcome::Ready(_)))))
        .count();
    let failed = runs
        .iter()
        .filter(|r| matches!(r.ended, Some((_, Outcome::Failed(_)))) || r.upload_error.is_some())
        .count();
    format!(
        "{:>7.1}s  uploaded {uploaded}/{}  ready {ready}  failed {failed}  ARM requests {} (429: {})",
        started.elapsed().as_secs_f64(),
        runs.len(),
        tally.total(),
        tally.throttled()
    )
}

fn figures(
    setup: Setup,
    date: String,
    runs: &[Run],
    started: (Instant, chrono::DateTime<chrono::Utc>),
    tally: &ArmTally,
    handler: Option<probe::HandlerFigures>,
    interrupted: bool,
) -> Figures {
    let (mut ready, mut failed, mut rejected, mut unfinished, mut upload_errors) = (0, 0, 0, 0, 0);
    let mut failures_by_reason: BTreeMap<String, usize> = BTreeMap::new();
    let mut throttle_failures = 0;
    let mut to_ready = Vec::new();
    let mut last_end = None;
    for r in runs {
        match (&r.ended, &r.upload_error) {
            (Some((at, outcome)), _) => {
                last_end = last_end.max(Some(*at));
                match outcome {
                    Outcome::Ready(_) => {
                        ready += 1;
                        if let Some(written) = r.written {
                            to_ready.push((*at - written).num_milliseconds() as f64 / 1000.0);
                        }
                    }
                    Outcome::Failed(e) => {
                        if e["type"] == "io.galleon.vhd.rejected.v1" {
                            rejected += 1;
                        } else {
                            failed += 1;
                        }
                        *failures_by_reason.entry(reason(e)).or_default() += 1;
                        if throttle_caused(e) {
                            throttle_failures += 1;
                        }
                    }
                    Outcome::TimedOut(_) => unfinished += 1,
                }
            }
            (None, Some(_)) => {
                upload_errors += 1;
                *failures_by_reason
                    .entry("UploadFailed (devcloud)".into())
                    .or_default() += 1;
            }
            (None, None) => unfinished += 1,
        }
    }
    // From the first upload to the last end, or to now when some run never ended.
    let wall = match last_end {
        Some(end) if unfinished == 0 && upload_errors == 0 => {
            ((end - started.1).num_milliseconds() as f64 / 1000.0).max(0.001)
        }
        _ => started.0.elapsed().as_secs_f64(),
    };
    let factor = setup.arm_time_factor;
    let per_image = |n: u64| (ready > 0).then(|| n as f64 / ready as f64);
    let class = |c: &str| tally.by_class.get(c).copied().unwrap_or(0);
    let arm = ArmFigures {
        reads: class("reads"),
        writes: class("writes"),
        deletes: class("deletes"),
        total: tally.total(),
        throttled: tally.throttled(),
        throttled_by_class: tally
            .throttled_by_class
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect(),
        reads_per_image: per_image(class("reads")),
        writes_per_image: per_image(class("writes")),
        deletes_per_image: per_image(class("deletes")),
        total_per_image: per_image(tally.total()),
        busiest: tally.busiest(6),
        missed: tally.missed,
    };
    let wall_p = Percentiles::of(to_ready);
    Figures {
        setup,
        date,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        ready,
        failed,
        rejected,
        unfinished,
        upload_errors,
        failures_by_reason,
        throttle_failures,
        wall_seconds: wall,
        simulated_seconds: wall / factor,
        images_per_hour_wall: ready as f64 / wall * 3600.0,
        images_per_hour_simulated: ready as f64 / (wall / factor) * 3600.0,
        upload_to_ready_wall: wall_p,
        upload_to_ready_simulated: wall_p.map(|p| p.scaled(1.0 / factor)),
        arm,
        handler,
        interrupted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn throttle_failures_are_told_apart() {
        let throttled = json!({"type": "io.galleon.step.failed.v1", "data": {"step": "PublishVersion",
            "error": {"code": "SubscriptionRequestsThrottled", "message": "Number of 'read' requests exceeded"}}});
        let by_status = json!({"type": "io.galleon.step.failed.v1", "data": {"step": "ReplicateVersion",
            "error": {"code": "ReplicationFailed", "message": "eastus: 429 from Resource Manager"}}});
        let other = json!({"type": "io.galleon.step.failed.v1", "data": {"step": "PublishVersion",
            "error": {"code": "Conflict", "message": "no", "requestId": "429", "correlationRequestId": "a-429-b"}}});
        assert!(throttle_caused(&throttled));
        assert!(throttle_caused(&by_status));
        assert!(!throttle_caused(&other), "ids do not count");
        assert_eq!(
            reason(&throttled),
            "SubscriptionRequestsThrottled (PublishVersion)"
        );
    }

    #[test]
    fn events_go_to_their_run_and_end_it_once() {
        let params = Params {
            vhds: 2,
            definitions: 2,
            ..Params::default()
        };
        let mut runs = plan(&params, "westeurope", &[PathBuf::from("a.vhd")]).expect("plan");
        let mut correlations = HashMap::new();
        let now = chrono::Utc::now();
        let accepted = json!({"type": "io.galleon.vhd.accepted.v1", "correlationid": "c1",
            "subject": "/blobServices/default/containers/images/blobs/scale-001/vhd-0001.manifest.json"});
        let ready = json!({"type": "io.galleon.image.ready.v1", "correlationid": "c1",
            "subject": "galleries/golden/images/scale-001/versions/1.0.0"});
        let failed = json!({"type": "io.galleon.step.failed.v1", "correlationid": "c1"});
        for e in [&accepted, &ready, &failed] {
            attribute(&mut runs, &mut correlations, now, e);
        }
        assert!(runs[0].ended.is_none());
        assert!(matches!(runs[1].ended, Some((_, Outcome::Ready(_)))));
    }
}
