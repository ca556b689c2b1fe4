//! What the scale run uploads: its parameters (with their defaults, the full 200 × 10 run), the VHD
//! sizes, and one planned upload per VHD (blob names, manifest, the filter that recognises its events).

use std::{path::PathBuf, time::Duration};

use anyhow::{Result, bail};
use serde_json::Value;

use super::figures::{self, Setup};
use crate::{
    IMAGES_CONTAINER, Options,
    follow::{Outcome, RunFilter},
    upload::Request,
};

const MIB: u64 = 1024 * 1024;

/// What to run.
#[derive(Debug, Clone)]
pub struct Params {
    pub vhds: usize,
    pub regions: usize,
    pub definitions: usize,
    /// VHD sizes in bytes (multiples of 1 MiB); VHD i has size i mod the count.
    pub sizes: Vec<u64>,
    /// Uploads start evenly spread over this window.
    pub window: Duration,
    pub time_factor: f64,
    /// Multiplies the ARM token buckets' sizes and refill rates (1.0 = Azure's).
    pub throttle_scale: f64,
    pub timeout: Duration,
    /// App settings for galleon.
    pub settings: Vec<(String, String)>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            vhds: 200,
            regions: 10,
            definitions: 20,
            sizes: vec![8 * MIB],
            window: Duration::from_secs(60),
            time_factor: 0.02,
            throttle_scale: 1.0,
            timeout: Duration::from_secs(1800),
            settings: Vec::new(),
        }
    }
}

/// `8M`, `64M`, `1G`, `512K`… (binary units, as qemu-img reads them) → bytes; must be a whole number
/// of MiB (galleon, like Azure, wants the virtual size a multiple of 1 MiB).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (digits, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 8M or 1G"))?;
    let shift = match unit.to_ascii_uppercase().as_str() {
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("{text:?}: give a unit, K, M, G or T (8M, 1G)")),
    };
    let bytes = n
        .checked_mul(1 << shift)
        .filter(|b| *b > 0)
        .ok_or_else(|| format!("{text:?} is out of range"))?;
    if !bytes.is_multiple_of(MIB) {
        return Err(format!("{text:?} is not a whole number of MiB"));
    }
    Ok(bytes)
}

pub(super) fn size_label(bytes: u64) -> String {
    if bytes.is_multiple_of(1 << 30) {
        format!("{}G", bytes >> 30)
    } else {
        format!("{}M", bytes / MIB)
    }
}

impl Params {
    pub(super) fn check(&self) -> Result<()> {
        let known = devcloud_arm::names::REGIONS.len();
        if self.vhds == 0 {
            bail!("--vhds must be at least 1");
        }
        if self.regions == 0 || self.regions > known {
            bail!("--regions must be 1 to {known} (the regions the local ARM knows)");
        }
        if self.definitions == 0 || self.definitions > self.vhds {
            bail!("--definitions must be 1 to the number of VHDs");
        }
        if self.sizes.is_empty() {
            bail!("--sizes names no size");
        }
        if !(self.time_factor > 0.0 && self.throttle_scale > 0.0) {
            bail!("the time factor and the throttle scale must be above 0");
        }
        Ok(())
    }

    /// Sets the local cloud up for the run: ARM time factor, throttling on at Azure's numbers times
    /// the scale, galleon's settings.
    pub fn apply(&self, options: &mut Options) {
        options.arm_time_factor = self.time_factor;
        options.arm.throttling.enabled = true;
        options.arm.throttling.scale = self.throttle_scale;
        // Galleon is told the subscription's budget, as an operator would for a subscription whose
        // limits differ from Azure's defaults (`--set` overrides).
        let t = &options.arm.throttling;
        let budget = |b: devcloud_arm::Bucket| {
            format!(
                "{}/{}",
                (b.capacity * t.scale).max(1.0),
                b.refill_per_sec * t.scale
            )
        };
        let (reads, writes) = (budget(t.reads), budget(t.writes));
        options
            .settings
            .insert("GALLEON_ARM_READS_BUDGET".into(), reads);
        options
            .settings
            .insert("GALLEON_ARM_WRITES_BUDGET".into(), writes);
        options.settings.extend(self.settings.iter().cloned());
    }

    /// The home region first, then the local ARM's other regions in its order.
    fn region_names(&self, home: &str) -> Vec<String> {
        std::iter::once(home.to_owned())
            .chain(
                devcloud_arm::names::REGIONS
                    .iter()
                    .map(|(name, _)| (*name).to_owned())
                    .filter(|name| name != home),
            )
            .take(self.regions)
            .collect()
    }

    pub(super) fn setup(&self, throttling: &devcloud_arm::Throttling) -> Setup {
        // As the local ARM applies them (at least one token).
        let bucket = |b: devcloud_arm::Bucket| figures::Bucket {
            capacity: (b.capacity * throttling.scale).max(1.0),
            refill_per_second: b.refill_per_sec * throttling.scale,
        };
        Setup {
            vhds: self.vhds,
            regions_per_image: self.regions,
            image_definitions: self.definitions,
            sizes: self.sizes.iter().map(|s| size_label(*s)).collect(),
            arrival_window_seconds: self.window.as_secs_f64(),
            arm_time_factor: self.time_factor,
            throttle_scale: throttling.scale,
            read_bucket: bucket(throttling.reads),
            write_bucket: bucket(throttling.writes),
            delete_bucket: bucket(throttling.deletes),
            timeout_seconds: self.timeout.as_secs(),
        }
    }
}

/// One upload and how its run ended.
pub(super) struct Run {
    pub(super) vhd_blob: String,
    pub(super) manifest_blob: String,
    pub(super) manifest: Value,
    pub(super) file: PathBuf,
    pub(super) filter: RunFilter,
    pub(super) written: Option<chrono::DateTime<chrono::Utc>>,
    pub(super) ended: Option<(chrono::DateTime<chrono::Utc>, Outcome)>,
    pub(super) upload_error: Option<String>,
}

/// The uploads: VHD i goes to definition i mod D, with version 1.0.(i div D), the first `regions`
/// regions, under its own blob names.
pub(super) fn plan(params: &Params, home: &str, files: &[PathBuf]) -> Result<Vec<Run>> {
    let regions = params.region_names(home).join(",");
    (0..params.vhds)
        .map(|i| {
            let definition = format!("scale-{:03}", i % params.definitions);
            let request = Request {
                file_name: format!("vhd-{i:04}.vhd"),
                definition: Some(definition.clone()),
                os_type: "Linux".to_owned(),
                generation: "V2".to_owned(),
                regions: vec![regions.clone()],
                version: Some(format!("1.0.{}", i / params.definitions)),
                gallery: None,
                identifier: Some(("devcloud".to_owned(), "scale".to_owned(), definition)),
                publish_from: None,
            };
            let plan = request.plan()?;
            let filter = RunFilter::new(vec![
                format!("{IMAGES_CONTAINER}/{}", plan.vhd_blob),
                format!("{IMAGES_CONTAINER}/{}", plan.manifest_blob),
            ])
            .with_definition(&plan.definition, plan.manifest["version"].as_str());
            Ok(Run {
                vhd_blob: plan.vhd_blob,
                manifest_blob: plan.manifest_blob,
                manifest: plan.manifest,
                file: files[i % files.len()].clone(),
                filter,
                written: None,
                ended: None,
                upload_error: None,
            })
        })
        .collect()
}
#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes_are_whole_mebibytes() {
        assert_eq!(parse_size("8M"), Ok(8 * MIB));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("2048K"), Ok(2 * MIB));
        assert!(parse_size("8").is_err(), "no unit");
        assert!(parse_size("100K").is_err(), "not whole MiB");
        assert!(parse_size("0M").is_err());
        assert!(parse_size("eightM").is_err());
        assert_eq!(size_label(64 * MIB), "64M");
        assert_eq!(size_label(2 << 30), "2G");
    }

    #[test]
    fn the_plan_spreads_definitions_versions_sizes_and_regions() {
        let params = Params {
            vhds: 5,
            regions: 3,
            definitions: 2,
            ..Params::default()
        };
        let files = [PathBuf::from("a.vhd"), PathBuf::from("b.vhd")];
        let runs = plan(&params, "northeurope", &files).expect("plan");
        assert_eq!(runs.len(), 5);
        assert_eq!(runs[3].vhd_blob, "scale-001/vhd-0003.vhd");
        assert_eq!(runs[3].manifest["version"], "1.0.1");
        assert_eq!(runs[3].file, files[1]);
        assert_eq!(
            runs[0].manifest["targetRegions"],
            json!([{"name": "northeurope"}, {"name": "eastus"}, {"name": "eastus2"}])
        );
        let names: std::collections::HashSet<_> = runs.iter().map(|r| &r.vhd_blob).collect();
        assert_eq!(names.len(), 5, "every VHD under its own name");
    }
}
