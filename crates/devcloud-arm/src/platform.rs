//! Platform (Marketplace) images: the catalogue the VM image versions API answers from
//! (`…/publishers/{p}/artifacttypes/vmimage/offers/{o}/skus/{s}/versions`), seeded from
//! [`crate::ArmConfig`]'s `platform_images` and extended at run time through
//! `POST /_devcloud/platform-images` (a new base image release).

use serde::{Deserialize, Serialize};

/// One publisher/offer/sku and its versions.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PlatformImage {
    pub publisher: String,
    pub offer: String,
    pub sku: String,
    /// `Major.Minor.Build` versions, in any order (the API answers them sorted).
    pub versions: Vec<String>,
    /// `Linux` or `Windows`.
    #[serde(default = "linux")]
    pub os_type: String,
    /// `V1` or `V2`.
    #[serde(default = "v2")]
    pub hyper_v_generation: String,
    /// `x64` or `Arm64`.
    #[serde(default = "x64")]
    pub architecture: String,
    /// Size of the image's OS disk (what a build from it has when the template's `osDiskSizeGB` is 0).
    #[serde(default = "default_disk_gb")]
    pub os_disk_size_gb: u64,
    /// Regions it is offered in; empty = every region.
    #[serde(default)]
    pub locations: Vec<String>,
}

fn linux() -> String {
    "Linux".into()
}
fn v2() -> String {
    "V2".into()
}
fn x64() -> String {
    "x64".into()
}
fn default_disk_gb() -> u64 {
    30
}

impl PlatformImage {
    fn new(publisher: &str, offer: &str, sku: &str, versions: &[&str], os: &str, gb: u64) -> Self {
        Self {
            publisher: publisher.into(),
            offer: offer.into(),
            sku: sku.into(),
            versions: versions.iter().map(|v| v.to_string()).collect(),
            os_type: os.into(),
            hyper_v_generation: "V2".into(),
            architecture: "x64".into(),
            os_disk_size_gb: gb,
            locations: Vec::new(),
        }
    }

    /// Whether this entry is `publisher/offer/sku` (case-insensitively, as Azure matches them).
    pub fn is(&self, publisher: &str, offer: &str, sku: &str) -> bool {
        self.publisher.eq_ignore_ascii_case(publisher)
            && self.offer.eq_ignore_ascii_case(offer)
            && self.sku.eq_ignore_ascii_case(sku)
    }

    /// Whether it is offered in the (normalized) region.
    pub fn offered_in(&self, region: &str) -> bool {
        self.locations.is_empty()
            || self
                .locations
                .iter()
                .any(|l| crate::names::norm_region(l) == region)
    }

    /// The versions, oldest first (compared part by part as numbers, as Azure orders them).
    pub fn sorted_versions(&self) -> Vec<String> {
        let mut v = self.versions.clone();
        v.sort_by_key(|s| version_key(s));
        v.dedup();
        v
    }

    /// The newest version (what `latest` resolves to).
    pub fn latest(&self) -> Option<String> {
        self.sorted_versions().pop()
    }

    /// The version named (case-insensitively; `latest` = the newest).
    pub fn version(&self, v: &str) -> Option<String> {
        if v.eq_ignore_ascii_case("latest") {
            return self.latest();
        }
        self.versions
            .iter()
            .find(|x| x.eq_ignore_ascii_case(v))
            .cloned()
    }
}

/// Sort key of a `Major.Minor.Build` version: its numeric parts (a non-number sorts first).
pub fn version_key(v: &str) -> Vec<u64> {
    v.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

/// The images a fresh simulator offers: the usual Image Builder sources.
pub fn default_catalogue() -> Vec<PlatformImage> {
    vec![
        PlatformImage::new(
            "Canonical",
            "ubuntu-24_04-lts",
            "server",
            &["24.04.202409120", "24.04.202410020", "24.04.202411030"],
            "Linux",
            30,
        ),
        PlatformImage::new(
            "Canonical",
            "0001-com-ubuntu-server-jammy",
            "22_04-lts-gen2",
            &["22.04.202410020", "22.04.202411010"],
            "Linux",
            30,
        ),
        PlatformImage::new(
            "MicrosoftWindowsServer",
            "WindowsServer",
            "2022-datacenter-azure-edition",
            &[
                "20348.2700.240905",
                "20348.2762.241009",
                "20348.2849.241106",
            ],
            "Windows",
            127,
        ),
    ]
}
