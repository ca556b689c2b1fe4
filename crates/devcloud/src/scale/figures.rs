//! The figures of a scale run: how the runs ended, throughput in simulated and wall time, Resource
//! Manager requests per image and 429s, upload-to-ready percentiles and the handler's footprint, as a
//! markdown table (for the README) or JSON.

use std::collections::BTreeMap;

use serde::Serialize;

use super::probe::{HandlerFigures, KindCount};

/// What was asked of the run.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Setup {
    pub vhds: usize,
    pub regions_per_image: usize,
    pub image_definitions: usize,
    pub sizes: Vec<String>,
    pub arrival_window_seconds: f64,
    pub arm_time_factor: f64,
    pub throttle_scale: f64,
    /// The buckets in force, after the scale.
    pub read_bucket: Bucket,
    pub write_bucket: Bucket,
    pub delete_bucket: Bucket,
    pub timeout_seconds: u64,
}

/// A token bucket as the local ARM applies it.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bucket {
    pub capacity: f64,
    pub refill_per_second: f64,
}

/// Resource Manager requests, from the local ARM's request log.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArmFigures {
    pub reads: u64,
    pub writes: u64,
    pub deletes: u64,
    pub total: u64,
    /// 429 answers (included in the counts above).
    pub throttled: u64,
    pub throttled_by_class: BTreeMap<String, u64>,
    /// Per image ready (`None` when none was).
    pub reads_per_image: Option<f64>,
    pub writes_per_image: Option<f64>,
    pub deletes_per_image: Option<f64>,
    pub total_per_image: Option<f64>,
    pub busiest: Vec<KindCount>,
    /// Requests the log dropped before they were counted (0 unless the log overflowed between looks).
    pub missed: u64,
}

/// p50 and p99 (nearest rank) and the maximum, in seconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(mut values: Vec<f64>) -> Option<Percentiles> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let i = (p * values.len() as f64).ceil() as usize;
            values[i.clamp(1, values.len()) - 1]
        };
        Some(Percentiles {
            p50: rank(0.50),
            p99: rank(0.99),
            max: values[values.len() - 1],
        })
    }

    pub fn scaled(self, factor: f64) -> Percentiles {
        Percentiles {
            p50: self.p50 * factor,
            p99: self.p99 * factor,
            max: self.max * factor,
        }
    }
}

/// Everything the run reports.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Figures {
    pub setup: Setup,
    /// UTC, when the uploads began.
    pub date: String,
    pub cpus: usize,
    pub ready: usize,
    /// Ended in step.failed.
    pub failed: usize,
    /// Ended in vhd.rejected.
    pub rejected: usize,
    /// No end before the timeout (or the interruption).
    pub unfinished: usize,
    /// Uploads that did not complete (the run never started).
    pub upload_errors: usize,
    /// Failure code (step.failed `error.code`, vhd.rejected `reason.code`, or `UploadFailed`) → count.
    pub failures_by_reason: BTreeMap<String, usize>,
    /// Failures caused by throttling: SubscriptionRequestsThrottled, TooManyRequests or 429 in the event.
    pub throttle_failures: usize,
    /// From the first upload to the last run's end (or the timeout).
    pub wall_seconds: f64,
    /// `wall_seconds / arm_time_factor`.
    pub simulated_seconds: f64,
    pub images_per_hour_wall: f64,
    pub images_per_hour_simulated: f64,
    /// From the manifest written (the commit signal) to image.ready at a subscriber.
    pub upload_to_ready_wall: Option<Percentiles>,
    pub upload_to_ready_simulated: Option<Percentiles>,
    pub arm: ArmFigures,
    pub handler: Option<HandlerFigures>,
    pub interrupted: bool,
}

impl Figures {
    /// Every run reached image.ready and none failed because of throttling.
    pub fn passed(&self) -> bool {
        self.ready == self.setup.vhds && self.throttle_failures == 0 && !self.interrupted
    }

    /// The figures as a markdown table.
    pub fn table(&self) -> String {
        let s = &self.setup;
        let per = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "–".into());
        let pct = |p: &Option<Percentiles>| {
            p.map(|p| {
                format!(
                    "p50 {:.1} s, p99 {:.1} s (max {:.1} s)",
                    p.p50, p.p99, p.max
                )
            })
            .unwrap_or_else(|| "–".into())
        };
        let bucket = |b: Bucket| format!("{:.0} + {:.2}/s", b.capacity, b.refill_per_second);
        let reasons = if self.failures_by_reason.is_empty() {
            "none".to_owned()
        } else {
            self.failures_by_reason
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let throttled = if self.arm.throttled_by_class.is_empty() {
            "0".to_owned()
        } else {
            format!(
                "{} ({})",
                self.arm.throttled,
                self.arm
                    .throttled_by_class
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let busiest = self
            .arm
            .busiest
            .iter()
            .map(|k| {
                if k.throttled > 0 {
                    format!("{} {} ({} 429)", k.kind, k.requests, k.throttled)
                } else {
                    format!("{} {}", k.kind, k.requests)
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        let handler = match &self.handler {
            Some(h) => (
                format!("{:.1} MiB", h.peak_rss_mib),
                format!("{:.2} s", h.cpu_seconds),
            ),
            None => ("–".into(), "–".into()),
        };
        let mut rows: Vec<(&str, String)> = vec![
            (
                "run",
                format!(
                    "{} VHDs ({}) × {} regions, {} image definitions, arrivals over {:.0} s",
                    s.vhds,
                    s.sizes.join(", "),
                    s.regions_per_image,
                    s.image_definitions,
                    s.arrival_window_seconds
                ),
            ),
            (
                "ARM throttling (per subscription, wall clock)",
                format!(
                    "scale {}: reads {}, writes {}, deletes {}",
                    s.throttle_scale,
                    bucket(s.read_bucket),
                    bucket(s.write_bucket),
                    bucket(s.delete_bucket)
                ),
            ),
            ("ARM time factor", format!("{}", s.arm_time_factor)),
            (
                "images ready / failed / rejected / unfinished",
                format!(
                    "{} / {} / {} / {}",
                    self.ready,
                    self.failed + self.upload_errors,
                    self.rejected,
                    self.unfinished
                ),
            ),
            ("failures by reason", reasons),
            (
                "throttle-caused failures",
                self.throttle_failures.to_string(),
            ),
            (
                "images per hour (simulated / wall)",
                format!(
                    "{:.0} / {:.0}",
                    self.images_per_hour_simulated, self.images_per_hour_wall
                ),
            ),
            (
                "time (simulated / wall)",
                format!(
                    "{:.0} s / {:.1} s",
                    self.simulated_seconds, self.wall_seconds
                ),
            ),
            (
                "ARM requests per image ready (reads / writes / deletes / all)",
                format!(
                    "{} / {} / {} / {}",
                    per(self.arm.reads_per_image),
                    per(self.arm.writes_per_image),
                    per(self.arm.deletes_per_image),
                    per(self.arm.total_per_image)
                ),
            ),
            (
                "ARM requests (reads / writes / deletes)",
                format!(
                    "{} / {} / {}",
                    self.arm.reads, self.arm.writes, self.arm.deletes
                ),
            ),
            ("429s answered by ARM", throttled),
            ("busiest operations", busiest),
            (
                "upload → image ready (simulated)",
                pct(&self.upload_to_ready_simulated),
            ),
            (
                "upload → image ready (wall)",
                pct(&self.upload_to_ready_wall),
            ),
            ("handler peak RSS", handler.0),
            ("handler CPU", handler.1),
            ("machine", format!("{} CPUs, {} UTC", self.cpus, self.date)),
        ];
        if self.arm.missed > 0 {
            rows.push((
                "ARM log entries missed",
                format!("{} (counts above are low)", self.arm.missed),
            ));
        }
        if self.interrupted {
            rows.push(("interrupted", "yes".into()));
        }
        let mut out = String::from("| figure | value |\n| --- | --- |\n");
        for (k, v) in rows {
            out.push_str(&format!("| {k} | {} |\n", v.replace('|', "\\|")));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let p = Percentiles::of((1..=100).map(f64::from).collect()).expect("some");
        assert_eq!((p.p50, p.p99, p.max), (50.0, 99.0, 100.0));
        let one = Percentiles::of(vec![3.0]).expect("one");
        assert_eq!((one.p50, one.p99), (3.0, 3.0));
        assert!(Percentiles::of(Vec::new()).is_none());
        assert_eq!(one.scaled(2.0).max, 6.0);
    }
}
