//! Configuration of the simulator: time factor, accepted api-versions, latency model, throttling and limits.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The subscription the devcloud binary prints for clients (any subscription id is accepted).
pub const DEFAULT_SUBSCRIPTION_ID: &str = "6d3f8b1e-0c4a-4d2b-9e57-1a2b3c4d5e6f";

/// Everything the simulator can be tuned with. `ArmConfig::default()` is realistic (time factor 1).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ArmConfig {
    /// Multiplies every simulated duration (0.01 makes a 10-minute replication take 6 s; 0 = instant).
    pub time_factor: f64,
    pub api_versions: ApiVersions,
    pub latency: LatencyModel,
    pub throttling: Throttling,
    pub limits: Limits,
    /// Azurite blob endpoint for the account all storage URLs map to, e.g.
    /// `https://127.0.0.1:10000/devstoreaccount1`. `None` disables source blob checks and VHD output.
    pub blob_endpoint: Option<String>,
    /// Where `POST /_devcloud/snapshot` writes and where state is loaded from at start (if present).
    pub snapshot_path: Option<PathBuf>,
    /// Seed of the jitter generator (deterministic runs); `None` = from the clock.
    pub seed: Option<u64>,
    /// Log every request at info level (method, path, status, duration).
    pub log_requests: bool,
    /// The region resources are reported in when a request names none (resource groups created at
    /// start, the storage accounts below).
    pub default_location: String,
    /// Resource groups that exist from the start, as infra would have made them in Azure. Every
    /// resource lives in one: a PUT into a group that does not exist answers 404 ResourceGroupNotFound.
    pub resource_groups: Vec<ResourceGroupSeed>,
    /// Storage accounts `Microsoft.Storage/storageAccounts/{name}` GET answers for (the Azurite
    /// account). Empty = one account named after `blob_endpoint`'s path (`devstoreaccount1`) in
    /// resource group [`DEFAULT_STORAGE_RESOURCE_GROUP`]. Any other account answers 404.
    pub storage_accounts: Vec<StorageAccount>,
    /// Long-running operations answered with only a `Location` header (no `Azure-AsyncOperation`),
    /// as many Azure providers do: operation kinds (`GalleryImageVersions_CreateOrUpdate`), resource
    /// kinds (`GalleryImageVersions`, matching every operation of that kind) or `*` for all. The
    /// admin fault action `locationOnly` does the same per request.
    pub location_only: Vec<String>,
    /// Lists answer at most this many items per page, with a `nextLink` to the rest (0 = no paging).
    /// Small by default so every client's pager is exercised; Azure's pages are larger.
    pub page_size: usize,
    /// Platform images the VM image versions API offers (and Image Builder's `PlatformImage`
    /// sources must name). `POST /_devcloud/platform-images` publishes more at run time.
    pub platform_images: Vec<crate::platform::PlatformImage>,
    /// Virtual size in bytes of every VHD an Image Builder run writes. `None` = as Azure: the
    /// template's `vmProfile.osDiskSizeGB`, or when that is 0 the source image's OS disk size (30 GiB
    /// for a Linux platform image). Tests set a few MiB.
    pub image_builder_vhd_bytes: Option<u64>,
    /// Subscriptions with their tenants. Requests to a subscription need a token of its tenant
    /// (401 `InvalidAuthenticationTokenTenant` otherwise), and a request naming a resource of a
    /// subscription in another tenant needs an auxiliary token of that tenant (see the tenancy module).
    /// A subscription not listed belongs to the devcloud identity's tenant.
    pub subscriptions: Vec<SubscriptionSeed>,
}

/// The resource group of the Azurite account when `storage_accounts` names none.
pub const DEFAULT_STORAGE_RESOURCE_GROUP: &str = "rg-ingest";

/// A storage account the simulator reports (its blob endpoint is Azurite's).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageAccount {
    /// `None` = the account is found in every subscription (its resource group must still exist).
    #[serde(default)]
    pub subscription: Option<String>,
    pub resource_group: String,
    pub name: String,
    /// `None` = the configuration's `default_location`.
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default = "default_kind")]
    pub kind: String,
    #[serde(default = "default_sku")]
    pub sku: String,
}

fn default_kind() -> String {
    "StorageV2".to_string()
}

fn default_sku() -> String {
    "Standard_LRS".to_string()
}

/// A resource group created when the simulator starts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceGroupSeed {
    /// Defaults to [`DEFAULT_SUBSCRIPTION_ID`].
    #[serde(default = "default_subscription")]
    pub subscription: String,
    pub name: String,
    /// Defaults to the configuration's `default_location`.
    #[serde(default)]
    pub location: Option<String>,
}

impl ResourceGroupSeed {
    /// A group of this name in the default subscription and location.
    pub fn new(name: &str) -> Self {
        Self {
            subscription: DEFAULT_SUBSCRIPTION_ID.to_string(),
            name: name.to_string(),
            location: None,
        }
    }
}

fn default_subscription() -> String {
    DEFAULT_SUBSCRIPTION_ID.to_string()
}

impl Default for ArmConfig {
    fn default() -> Self {
        Self {
            time_factor: 1.0,
            api_versions: ApiVersions::default(),
            latency: LatencyModel::default(),
            throttling: Throttling::default(),
            limits: Limits::default(),
            blob_endpoint: None,
            snapshot_path: None,
            seed: None,
            log_requests: true,
            default_location: "westeurope".to_string(),
            resource_groups: Vec::new(),
            storage_accounts: Vec::new(),
            location_only: Vec::new(),
            page_size: 3,
            platform_images: crate::platform::default_catalogue(),
            image_builder_vhd_bytes: None,
            subscriptions: Vec::new(),
        }
    }
}

/// api-versions accepted per resource provider area. Others get `NoRegisteredProviderFound`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ApiVersions {
    /// `Microsoft.Compute/images`.
    pub images: Vec<String>,
    /// `Microsoft.Compute/galleries/**`.
    pub galleries: Vec<String>,
    /// `Microsoft.VirtualMachineImages/imageTemplates`.
    pub image_builder: Vec<String>,
    /// `Microsoft.Resources` resource groups and ARM's own operation results.
    pub resources: Vec<String>,
    /// `Microsoft.Resources` subscriptions and locations.
    pub subscriptions: Vec<String>,
    /// `Microsoft.Storage/storageAccounts`.
    pub storage: Vec<String>,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

impl Default for ApiVersions {
    fn default() -> Self {
        Self {
            // The folders of the published REST specs (azure-rest-api-specs): images in ComputeRP
            // (Microsoft.Compute/Compute/stable/*, images since 2016-04-30-preview).
            images: strings(&[
                "2016-04-30-preview",
                "2017-03-30",
                "2017-12-01",
                "2018-04-01",
                "2018-06-01",
                "2018-10-01",
                "2019-03-01",
                "2019-07-01",
                "2019-12-01",
                "2020-06-01",
                "2020-12-01",
                "2021-03-01",
                "2021-04-01",
                "2021-07-01",
                "2021-11-01",
                "2022-03-01",
                "2022-08-01",
                "2022-11-01",
                "2023-03-01",
                "2023-07-01",
                "2023-09-01",
                "2024-03-01",
                "2024-07-01",
                "2024-11-01",
                "2025-04-01",
                "2025-11-01",
                "2026-03-01",
                "2026-04-01",
            ]),
            // GalleryRP (gallery.json, then GalleryRP.json).
            galleries: strings(&[
                "2018-06-01",
                "2019-03-01",
                "2019-07-01",
                "2019-12-01",
                "2020-09-30",
                "2021-07-01",
                "2021-10-01",
                "2022-01-03",
                "2022-03-03",
                "2022-08-03",
                "2023-07-03",
                "2024-03-03",
                "2025-03-03",
                "2025-12-03",
                "2026-03-03",
            ]),
            // Microsoft.VirtualMachineImages/ImageBuilder/{preview,stable}.
            image_builder: strings(&[
                "2018-02-01-preview",
                "2019-02-01-preview",
                "2019-05-01-preview",
                "2020-02-14",
                "2021-10-01",
                "2022-02-14",
                "2022-07-01",
                "2023-07-01",
                "2024-02-01",
                "2025-10-01",
            ]),
            // specification/resources/resource-manager/Microsoft.Resources/resources/readme.md
            resources: strings(&[
                "2015-11-01",
                "2016-02-01",
                "2016-07-01",
                "2016-09-01",
                "2017-05-10",
                "2018-02-01",
                "2018-05-01",
                "2019-03-01",
                "2019-05-01",
                "2019-05-10",
                "2019-07-01",
                "2019-08-01",
                "2019-10-01",
                "2020-06-01",
                "2020-08-01",
                "2020-10-01",
                "2021-01-01",
                "2021-04-01",
                "2022-09-01",
                "2023-07-01",
                "2024-03-01",
                "2024-07-01",
                "2024-11-01",
                "2025-03-01",
                "2025-04-01",
            ]),
            // specification/resources/resource-manager/Microsoft.Resources/subscriptions/stable
            subscriptions: strings(&[
                "2015-11-01",
                "2016-06-01",
                "2018-06-01",
                "2019-06-01",
                "2019-11-01",
                "2020-01-01",
                "2021-01-01",
                "2022-12-01",
            ]),
            // specification/storage/resource-manager/readme.md (package tags)
            storage: strings(&[
                "2015-05-01-preview",
                "2015-06-15",
                "2016-01-01",
                "2016-05-01",
                "2016-12-01",
                "2017-06-01",
                "2017-10-01",
                "2018-02-01",
                "2018-03-01-preview",
                "2018-07-01",
                "2018-11-01",
                "2019-04-01",
                "2019-06-01",
                "2020-08-01-preview",
                "2021-01-01",
                "2021-02-01",
                "2021-04-01",
                "2021-06-01",
                "2021-08-01",
                "2021-09-01",
                "2022-05-01",
                "2022-09-01",
                "2023-01-01",
                "2023-04-01",
                "2023-05-01",
                "2024-01-01",
                "2025-01-01",
                "2025-06-01",
                "2025-08-01",
                "2026-04-01",
                "2026-06-01",
                "2026-09-01",
            ]),
        }
    }
}

/// Kinds of simulated work with a duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Work {
    ImageCreate,
    ImageUpdate,
    ImageDelete,
    GalleryCreate,
    GalleryUpdate,
    GalleryDelete,
    DefinitionCreate,
    DefinitionUpdate,
    DefinitionDelete,
    /// First copy of a version in its home region (from the source).
    VersionHomeRegion,
    /// Replication of a version to one more region.
    VersionReplicate,
    VersionUpdate,
    VersionDelete,
    TemplateCreate,
    TemplateUpdate,
    TemplateDelete,
    TemplateRun,
    TemplateCancel,
    ResourceGroupDelete,
}

/// Durations per kind of work (seconds at time factor 1), per-region multipliers and jitter.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LatencyModel {
    pub base_secs: HashMap<Work, f64>,
    /// Multiplier per normalized region name (e.g. `australiaeast`: 1.5). Missing = 1.0.
    pub region_multiplier: HashMap<String, f64>,
    /// Relative jitter: each duration is multiplied by a uniform factor in `[1-j, 1+j]`.
    pub jitter: f64,
    /// Extra time per additional replica in a region (relative: 0.1 = +10% per replica).
    pub per_replica: f64,
    /// Extra seconds per GiB of the disk, for work that copies it (a version's home region and each
    /// replica): big images take longer, as in Azure.
    pub per_gib_secs: HashMap<Work, f64>,
    /// Extra time per region replicated at once beyond the first (relative: 0.02 = +2% per region):
    /// the regions share the source's bandwidth.
    pub per_parallel_region: f64,
}

impl Default for LatencyModel {
    fn default() -> Self {
        use Work::*;
        let base_secs = [
            (ImageCreate, 45.0),
            (ImageUpdate, 5.0),
            (ImageDelete, 20.0),
            (GalleryCreate, 10.0),
            (GalleryUpdate, 5.0),
            (GalleryDelete, 10.0),
            (DefinitionCreate, 8.0),
            (DefinitionUpdate, 5.0),
            (DefinitionDelete, 8.0),
            (VersionHomeRegion, 240.0),
            (VersionReplicate, 420.0),
            (VersionUpdate, 10.0),
            (VersionDelete, 60.0),
            (TemplateCreate, 15.0),
            (TemplateUpdate, 10.0),
            (TemplateDelete, 30.0),
            (TemplateRun, 900.0),
            (TemplateCancel, 60.0),
            (ResourceGroupDelete, 30.0),
        ]
        .into_iter()
        .collect();
        let region_multiplier = [
            ("australiaeast", 1.6),
            ("australiasoutheast", 1.6),
            ("brazilsouth", 1.5),
            ("southafricanorth", 1.5),
            ("japaneast", 1.4),
            ("japanwest", 1.4),
            ("eastasia", 1.4),
            ("southeastasia", 1.4),
            ("centralindia", 1.3),
            ("koreacentral", 1.4),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Self {
            base_secs,
            region_multiplier,
            jitter: 0.2,
            per_replica: 0.1,
            per_gib_secs: [(VersionHomeRegion, 6.0), (VersionReplicate, 15.0)]
                .into_iter()
                .collect(),
            per_parallel_region: 0.02,
        }
    }
}

/// ARM token buckets per subscription (reads, writes, deletes), numbers from arm-contract.md §4.3.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Throttling {
    pub enabled: bool,
    /// Multiplies bucket sizes and refill rates (0.1 = ten times stricter).
    pub scale: f64,
    pub reads: Bucket,
    pub writes: Bucket,
    pub deletes: Bucket,
}

/// A token bucket: capacity and refill per second.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Bucket {
    pub capacity: f64,
    pub refill_per_sec: f64,
}

impl Default for Throttling {
    fn default() -> Self {
        Self {
            enabled: true,
            scale: 1.0,
            reads: Bucket {
                capacity: 250.0,
                refill_per_sec: 25.0,
            },
            writes: Bucket {
                capacity: 200.0,
                refill_per_sec: 10.0,
            },
            deletes: Bucket {
                capacity: 200.0,
                refill_per_sec: 10.0,
            },
        }
    }
}

/// Gallery limits per subscription and region (arm-contract.md §5).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    pub galleries_per_region: usize,
    pub definitions_per_region: usize,
    pub versions_per_region: usize,
    pub replicas_per_version: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            galleries_per_region: 100,
            definitions_per_region: 1000,
            versions_per_region: 10000,
            replicas_per_version: 100,
        }
    }
}

impl ArmConfig {
    /// Whether operations of `kind` (e.g. `Galleries_Delete`) answer with `Location` only.
    pub fn is_location_only(&self, kind: &str) -> bool {
        let resource = kind.split('_').next().unwrap_or(kind);
        self.location_only
            .iter()
            .any(|k| k == "*" || k.eq_ignore_ascii_case(kind) || k.eq_ignore_ascii_case(resource))
    }

    /// The storage accounts served: the configured ones, or the Azurite account of `blob_endpoint`.
    pub fn storage_accounts(&self) -> Vec<StorageAccount> {
        if !self.storage_accounts.is_empty() {
            return self.storage_accounts.clone();
        }
        let Some(name) = self
            .blob_endpoint
            .as_deref()
            .and_then(|e| url::Url::parse(e).ok())
            .and_then(|u| {
                u.path_segments()
                    .and_then(|mut s| s.next().map(str::to_string))
            })
            .filter(|n| !n.is_empty())
        else {
            return Vec::new();
        };
        vec![StorageAccount {
            subscription: None,
            resource_group: DEFAULT_STORAGE_RESOURCE_GROUP.to_string(),
            name,
            location: None,
            kind: default_kind(),
            sku: default_sku(),
        }]
    }

    /// A configuration for tests: everything 1000 times faster, no jitter, deterministic.
    pub fn fast() -> Self {
        let mut c = Self {
            time_factor: 0.001,
            seed: Some(7),
            log_requests: false,
            image_builder_vhd_bytes: Some(4 * 1024 * 1024),
            ..Self::default()
        };
        c.latency.jitter = 0.0;
        c
    }

    /// Simulated duration of `work` in `region`, with `replicas` replicas, before jitter.
    pub fn nominal(&self, work: Work, region: &str, replicas: i64) -> Duration {
        self.nominal_copy(work, region, replicas, 0, 1)
    }

    /// Simulated duration of `work` that copies a disk of `size` bytes, alongside `parallel` regions
    /// replicating at once, before jitter.
    pub fn nominal_copy(
        &self,
        work: Work,
        region: &str,
        replicas: i64,
        size: u64,
        parallel: usize,
    ) -> Duration {
        let gib = size as f64 / (1u64 << 30) as f64;
        let per_gib = self.latency.per_gib_secs.get(&work).copied().unwrap_or(0.0);
        let shared = 1.0 + self.latency.per_parallel_region * parallel.saturating_sub(1) as f64;
        let base =
            (self.latency.base_secs.get(&work).copied().unwrap_or(10.0) + per_gib * gib) * shared;
        let mult = self
            .latency
            .region_multiplier
            .get(region)
            .copied()
            .unwrap_or(1.0);
        let reps = 1.0 + self.latency.per_replica * (replicas.max(1) - 1) as f64;
        let secs = (base * mult * reps * self.time_factor).max(0.0);
        Duration::from_secs_f64(if secs.is_finite() { secs } else { 0.0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_take_longer_for_bigger_disks_and_more_regions_at_once() {
        let c = ArmConfig::default();
        let secs = |work, size: u64, parallel| {
            c.nominal_copy(work, "westeurope", 1, size, parallel)
                .as_secs_f64()
        };
        let gib = 1u64 << 30;
        assert_eq!(secs(Work::VersionHomeRegion, 0, 1), 240.0);
        assert_eq!(
            secs(Work::VersionHomeRegion, 30 * gib, 1),
            240.0 + 6.0 * 30.0
        );
        assert_eq!(
            secs(Work::VersionReplicate, 30 * gib, 1),
            420.0 + 15.0 * 30.0
        );
        assert!(
            secs(Work::VersionReplicate, 30 * gib, 9) > secs(Work::VersionReplicate, 30 * gib, 1)
        );
        // Work that copies no disk is unchanged.
        assert_eq!(
            c.nominal(Work::GalleryCreate, "westeurope", 1)
                .as_secs_f64(),
            10.0
        );
    }
}

/// A subscription the simulator knows, with the tenant it belongs to.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionSeed {
    pub id: String,
    /// `None` = the devcloud identity's tenant.
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
}
