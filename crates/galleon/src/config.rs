//! Galleon's configuration: app settings from the environment, validated once at start-up with an error
//! that names the setting and the expected form. Every setting is listed in `local.settings.example.json`.

use crate::domain::pace::Bucket;
use std::{fmt, time::Duration};

use crate::{
    azure::{Audiences, StorageAccount, identity},
    domain::{naming, policy},
    events::PublishFrom,
};

/// How log lines are written to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (for Application Insights and log shippers).
    Json,
    /// Human-readable lines (for a terminal).
    Text,
}

/// Everything galleon reads from its app settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `FUNCTIONS_CUSTOMHANDLER_PORT`: set by the Functions host.
    pub port: u16,
    /// `GALLEON_INSTANCE`: names this deployment in every fact's `source` (`urn:galleon:<instance>`).
    pub instance: String,
    /// `GALLEON_MAX_INVOCATION_BYTES`: largest invocation body accepted.
    pub max_invocation_bytes: usize,
    /// `GALLEON_LOG_FORMAT`: `json` (default) or `text`.
    pub log_format: LogFormat,
    /// Where galleon publishes and how (the `GALLEON_*` gallery settings).
    pub policy: policy::Policy,
    /// `ServiceBusConnection__fullyQualifiedNamespace`: the namespace of the facts topic.
    pub service_bus_namespace: String,
    /// `GALLEON_FACTS_TOPIC`: the topic facts travel on (default `galleon-facts`).
    pub facts_topic: String,
    /// `GALLEON_ARM_ENDPOINT`: Resource Manager (default `https://management.azure.com`).
    pub arm_endpoint: String,
    /// `GALLEON_FOLLOWUP_SECONDS`: wait before looking at an operation again when Azure gives no `Retry-After`.
    pub follow_up: Duration,
    /// `GALLEON_STEP_DEADLINE_MINUTES`: a step that has not finished by then fails.
    pub step_deadline: Duration,
    /// `GALLEON_BARE_VHD_SETTLE_SECONDS`: a bare VHD must stay unchanged this long before it is accepted.
    pub bare_vhd_settle: Duration,
    /// `GALLEON_MAX_ATTEMPTS`: transient failures of one step are retried this many times.
    pub max_attempts: u32,
    /// `GALLEON_BARE_OS_TYPE`: the OS of bare VHDs (no manifest to say it), `Linux` (default) or `Windows`.
    pub bare_os_type: crate::events::OsType,
    /// `GALLEON_INGEST_CONTAINERS`: the blob containers galleon reads VHDs and manifests from (default
    /// `images`); blobs anywhere else are ignored, never rejected or marked.
    pub ingest_containers: Vec<String>,
    /// `GALLEON_KEEP_MANAGED_IMAGES`: keep the managed images made only as a step towards a version
    /// (default `false`: deleted once the version is ready in every region).
    pub keep_managed_images: bool,
    /// `GALLEON_RUN_DEADLINE_SECONDS`: a run that has not ended (image ready, failed or rejected) this long
    /// after its VHD was accepted is ended with `step.failed` RunDeadlineExceeded, even if nothing else
    /// arrives to end it.
    pub run_deadline: Duration,
    /// `GALLEON_KNOWN_SECONDS`: how long an instance trusts that a gallery or image definition it saw still
    /// exists (0 = always read it again).
    pub known_for: Duration,
    /// `GALLEON_ARM_READS_BUDGET` / `GALLEON_ARM_WRITES_BUDGET`: ARM's token buckets per subscription
    /// (burst/per second), which the pace keeps a reserve of. Azure's: 250/25 and 200/10.
    pub arm_reads: crate::domain::pace::Bucket,
    pub arm_writes: crate::domain::pace::Bucket,
    /// `GALLEON_STATE_CONTAINER_URL`: the blob container where galleon records which facts it has handled
    /// and how runs ended, so a fact delivered twice acts once without broker duplicate detection.
    pub state_container_url: String,
    /// `GalleonIdentity__clientId` (else `ServiceBusConnection__clientId`): the user-assigned managed identity
    /// galleon's tokens come from; `None` for the system-assigned one.
    pub identity_client_id: Option<String>,
    /// `GALLEON_ARM_AUDIENCE`, `GALLEON_STORAGE_AUDIENCE`, `GALLEON_SERVICE_BUS_AUDIENCE`: token audiences,
    /// by default those of the cloud the endpoints are in.
    pub audiences: Audiences,
    /// `GALLEON_STORAGE_ACCOUNTS`: the storage accounts galleon may read (and send tokens to); default the
    /// account of `AzureWebJobsStorage`.
    pub storage_accounts: Vec<StorageAccount>,
    /// The Image Builder templates galleon rebuilds: `GALLEON_BUILDS_FILE` (default `builds.json` in the
    /// app, when there is one) and the ids in `GALLEON_BUILD_TEMPLATES`.
    pub builds: Vec<crate::domain::builds::TemplateEntry>,
    /// `GALLEON_BUILD_REQUEST_CONTAINER`: the container where a small JSON blob requests a build (default
    /// `build-requests`).
    pub build_request_container: String,
    /// `GALLEON_RETENTION`: how long image definitions keep their versions, and whether source VHDs are
    /// deleted once published (JSON; empty: versions and sources are kept).
    pub retention: crate::domain::retention::Retention,
    /// `GALLEON_DISTRIBUTION`: galleries in other subscriptions (and tenants) every ready image is also
    /// published to (JSON list; empty: none).
    pub distribution: Vec<crate::domain::distribution::Target>,
    /// `GALLEON_CROSS_TENANT_CLIENT_ID` and `GALLEON_TENANT_ID`: how distribution targets in other tenants
    /// are reached (`None`: every target is in galleon's tenant).
    pub cross_tenant: Option<crate::domain::distribution::CrossTenant>,
    /// `GALLEON_SHARING`: galleries shared with subscriptions or tenants, or as a community gallery
    /// (JSON list; empty: none).
    pub sharing: Vec<crate::domain::sharing::Share>,
}

/// A setting that is missing or malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub setting: &'static str,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "app setting {}: {}", self.setting, self.problem)
    }
}

impl std::error::Error for ConfigError {}

/// A setting naming one of Azure's enum values (as the manifest names them).
fn named<T: serde::de::DeserializeOwned>(
    setting: &'static str,
    value: &str,
    allowed: &str,
) -> Result<T, ConfigError> {
    serde_json::from_value(serde_json::Value::String(value.trim().to_owned()))
        .map_err(|_| err(setting, format!("'{value}' must be one of {allowed}")))
}

fn err(setting: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        problem: problem.into(),
    }
}

impl Config {
    /// Every gallery galleon publishes to, as (subscription, resource group, gallery): the default one
    /// first, then each distribution target's.
    pub fn galleries(&self) -> Vec<(String, String, String)> {
        let p = &self.policy;
        std::iter::once((
            p.subscription_id.clone(),
            p.resource_group.clone(),
            p.gallery.clone(),
        ))
        .chain(self.distribution.iter().map(|t| {
            (
                t.subscription_id.clone(),
                t.resource_group.clone(),
                t.gallery.clone(),
            )
        }))
        .collect()
    }

    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (the environment, or a table in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };

        let port = match get("FUNCTIONS_CUSTOMHANDLER_PORT") {
            None => {
                return Err(err(
                    "FUNCTIONS_CUSTOMHANDLER_PORT",
                    "is not set; the Functions host sets it when it starts galleon (to run galleon by hand, set it to a free port such as 7072)",
                ));
            }
            Some(v) => v.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
                err(
                    "FUNCTIONS_CUSTOMHANDLER_PORT",
                    format!("'{v}' is not a TCP port (1-65535)"),
                )
            })?,
        };

        let instance = get("GALLEON_INSTANCE")
            .or_else(|| get("WEBSITE_SITE_NAME"))
            .unwrap_or_else(|| "local".to_owned());
        if instance.len() > 64
            || !instance
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(err(
                "GALLEON_INSTANCE",
                format!(
                    "'{instance}' must be 1-64 letters, digits, '.', '_' or '-' (it becomes urn:galleon:<instance>)"
                ),
            ));
        }

        let max_invocation_bytes = match get("GALLEON_MAX_INVOCATION_BYTES") {
            None => 4 * 1024 * 1024,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (64 * 1024..=256 * 1024 * 1024).contains(n))
                .ok_or_else(|| {
                    err(
                        "GALLEON_MAX_INVOCATION_BYTES",
                        format!("'{v}' must be a byte count from 65536 to 268435456"),
                    )
                })?,
        };

        let log_format = match get("GALLEON_LOG_FORMAT").as_deref() {
            None | Some("json") => LogFormat::Json,
            Some("text") => LogFormat::Text,
            Some(other) => {
                return Err(err(
                    "GALLEON_LOG_FORMAT",
                    format!("'{other}' must be 'json' or 'text'"),
                ));
            }
        };

        let required = |name: &'static str, what: &str| {
            get(name).ok_or_else(|| err(name, format!("is not set; it names {what}")))
        };
        let subscription_id = required(
            "GALLEON_SUBSCRIPTION_ID",
            "the subscription of the gallery galleon publishes to (a GUID)",
        )?;
        if uuid::Uuid::parse_str(&subscription_id).is_err() {
            return Err(err(
                "GALLEON_SUBSCRIPTION_ID",
                format!("'{subscription_id}' is not a GUID"),
            ));
        }
        let resource_group = required(
            "GALLEON_RESOURCE_GROUP",
            "the resource group of the gallery",
        )?;
        let gallery = required("GALLEON_GALLERY", "the default Azure Compute Gallery")?;
        naming::gallery(&gallery).map_err(|e| err("GALLEON_GALLERY", e.to_string()))?;
        let location = required(
            "GALLEON_LOCATION",
            "the home region (ARM name, e.g. westeurope)",
        )?
        .to_ascii_lowercase();
        if !policy::region_name_ok(&location) {
            return Err(err(
                "GALLEON_LOCATION",
                format!("'{location}' is not an ARM region name like westeurope"),
            ));
        }
        let target_regions = match get("GALLEON_TARGET_REGIONS") {
            None => policy::parse_regions(&location),
            Some(v) => policy::parse_regions(&v),
        }
        .map_err(|m| {
            err(
                "GALLEON_TARGET_REGIONS",
                format!("{m}; expected e.g. westeurope=2:Standard_ZRS,northeurope,eastus2"),
            )
        })?;
        let publish_from = match get("GALLEON_PUBLISH_FROM").as_deref() {
            None | Some("vhd") => PublishFrom::Vhd,
            Some("managedImage") => PublishFrom::ManagedImage,
            Some(other) => {
                return Err(err(
                    "GALLEON_PUBLISH_FROM",
                    format!("'{other}' must be 'vhd' or 'managedImage'"),
                ));
            }
        };
        let allowed = match get("GALLEON_ALLOWED_GALLERIES") {
            None => vec![policy::GalleryScope {
                subscription: subscription_id.clone(),
                resource_group: resource_group.clone(),
                gallery: gallery.clone(),
            }],
            Some(v) => v
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(policy::GalleryScope::parse)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|m| err("GALLEON_ALLOWED_GALLERIES", m))?,
        };
        let bucket = |name: &'static str, default: Bucket| -> Result<Bucket, ConfigError> {
            match get(name) {
                None => Ok(default),
                Some(v) => Bucket::parse(&v).map_err(|m| {
                    err(
                        name,
                        format!(
                            "{m}; Azure's budgets per subscription are reads 250/25, writes 200/10"
                        ),
                    )
                }),
            }
        };
        let number = |name: &'static str,
                      default: u64,
                      range: std::ops::RangeInclusive<u64>|
         -> Result<u64, ConfigError> {
            match get(name) {
                None => Ok(default),
                Some(v) => v
                    .parse::<u64>()
                    .ok()
                    .filter(|n| range.contains(n))
                    .ok_or_else(|| {
                        err(
                            name,
                            format!(
                                "'{v}' must be a whole number from {} to {}",
                                range.start(),
                                range.end()
                            ),
                        )
                    }),
            }
        };
        let service_bus_namespace = required(
            "ServiceBusConnection__fullyQualifiedNamespace",
            "the Service Bus namespace of the facts topic (e.g. contoso.servicebus.windows.net)",
        )?;
        let ingest_containers: Vec<String> = get("GALLEON_INGEST_CONTAINERS")
            .unwrap_or_else(|| "images".to_owned())
            .split(',')
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty())
            .collect();
        if let Some(bad) = ingest_containers
            .iter()
            .find(|c| !policy::container_name_ok(c))
        {
            return Err(err(
                "GALLEON_INGEST_CONTAINERS",
                format!(
                    "'{bad}' is not a blob container name (3-63 lower-case letters, digits and single hyphens)"
                ),
            ));
        }
        if ingest_containers.is_empty() {
            return Err(err(
                "GALLEON_INGEST_CONTAINERS",
                "names no container; list the containers VHDs are uploaded to, e.g. images",
            ));
        }
        let keep_managed_images = match get("GALLEON_KEEP_MANAGED_IMAGES").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(err(
                    "GALLEON_KEEP_MANAGED_IMAGES",
                    format!("'{other}' must be 'true' or 'false'"),
                ));
            }
        };
        let state_container_url = match get("GALLEON_STATE_CONTAINER_URL") {
            Some(v) => v,
            None => match get("AzureWebJobsStorage__blobServiceUri") {
                Some(service) => format!("{}/galleon-state", service.trim_end_matches('/')),
                None => {
                    return Err(err(
                        "GALLEON_STATE_CONTAINER_URL",
                        "is not set (nor AzureWebJobsStorage__blobServiceUri to default it from); it names the blob container where galleon records handled facts, e.g. https://<account>.blob.core.windows.net/galleon-state",
                    ));
                }
            },
        };
        match url::Url::parse(&state_container_url) {
            Ok(u) if u.scheme() == "https" && u.query().is_none() => {}
            _ => {
                return Err(err(
                    "GALLEON_STATE_CONTAINER_URL",
                    format!(
                        "'{}' must be an https URL of a blob container, without a SAS token (galleon uses its managed identity)",
                        state_container_url.split('?').next().unwrap_or_default()
                    ),
                ));
            }
        }
        let arm_endpoint = get("GALLEON_ARM_ENDPOINT")
            .unwrap_or_else(|| "https://management.azure.com".to_owned());
        let identity_client_id = match get("GalleonIdentity__clientId")
            .map(|v| ("GalleonIdentity__clientId", v))
            .or_else(|| {
                get("ServiceBusConnection__clientId").map(|v| ("ServiceBusConnection__clientId", v))
            }) {
            None => None,
            Some((setting, v)) => {
                if uuid::Uuid::parse_str(&v).is_err() {
                    return Err(err(
                        setting,
                        format!(
                            "'{v}' is not a GUID (the client id of a user-assigned managed identity)"
                        ),
                    ));
                }
                Some(v)
            }
        };
        let audience = |name: &'static str, default: String| -> Result<String, ConfigError> {
            match get(name) {
                None => Ok(default),
                Some(v) => match url::Url::parse(&v) {
                    Ok(u) if u.scheme() == "https" && u.query().is_none() => {
                        Ok(v.trim_end_matches('/').to_owned())
                    }
                    _ => Err(err(
                        name,
                        format!(
                            "'{v}' must be an https resource URI such as https://management.usgovcloudapi.net"
                        ),
                    )),
                },
            }
        };
        let audiences = Audiences {
            arm: audience(
                "GALLEON_ARM_AUDIENCE",
                identity::arm_audience_for(&arm_endpoint),
            )?,
            storage: audience(
                "GALLEON_STORAGE_AUDIENCE",
                identity::STORAGE_RESOURCE.to_owned(),
            )?,
            service_bus: audience(
                "GALLEON_SERVICE_BUS_AUDIENCE",
                identity::service_bus_audience_for(&service_bus_namespace),
            )?,
        };
        let storage_accounts = match get("GALLEON_STORAGE_ACCOUNTS") {
            Some(v) => v
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(StorageAccount::parse)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|m| err("GALLEON_STORAGE_ACCOUNTS", m))?,
            None => host_storage_account(&get)
                .map(|e| StorageAccount::parse(&e))
                .transpose()
                .map_err(|m| err("GALLEON_STORAGE_ACCOUNTS", m))?
                .into_iter()
                .collect(),
        };
        if storage_accounts.is_empty() {
            return Err(err(
                "GALLEON_STORAGE_ACCOUNTS",
                "is not set, and AzureWebJobsStorage names no storage account over https; it lists the blob endpoints galleon reads VHDs from (e.g. https://ingest.blob.core.windows.net), comma-separated",
            ));
        }
        // Galleon's own state account is configured on purpose: its tokens may go there too.
        let mut storage_accounts = storage_accounts;
        let state_account = state_container_url
            .trim_end_matches('/')
            .rsplit_once('/')
            .map(|(account, _container)| account.to_owned())
            .unwrap_or_default();
        let state_account = StorageAccount::parse(&state_account)
            .map_err(|m| err("GALLEON_STATE_CONTAINER_URL", m))?;
        let state_container_parsed = url::Url::parse(&state_container_url)
            .map_err(|e| err("GALLEON_STATE_CONTAINER_URL", e.to_string()))?;
        if !storage_accounts
            .iter()
            .any(|a| a.holds(&state_container_parsed))
        {
            storage_accounts.push(state_account);
        }
        let optional_number = |name: &'static str, range: std::ops::RangeInclusive<u64>| {
            get(name)
                .map(|_| number(name, *range.start(), range.clone()))
                .transpose()
        };
        let features = policy::FeatureDefaults {
            architecture: get("GALLEON_ARCHITECTURE")
                .map(|v| named("GALLEON_ARCHITECTURE", &v, "x64, Arm64"))
                .transpose()?,
            security_type: get("GALLEON_SECURITY_TYPE")
                .map(|v| named("GALLEON_SECURITY_TYPE", &v, "Standard, TrustedLaunch, TrustedLaunchSupported, ConfidentialVM, ConfidentialVmSupported, TrustedLaunchAndConfidentialVmSupported"))
                .transpose()?,
            disk_controller_types: match get("GALLEON_DISK_CONTROLLER_TYPES") {
                None => Vec::new(),
                Some(v) => v
                    .split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| named("GALLEON_DISK_CONTROLLER_TYPES", s.trim(), "SCSI, NVMe"))
                    .collect::<Result<_, _>>()?,
            },
            replica_count: optional_number("GALLEON_REPLICA_COUNT", 1..=100)?.map(|n| n as u32),
            version_lifetime_days: optional_number("GALLEON_VERSION_LIFETIME_DAYS", 1..=36_500)?
                .map(|n| n as u32),
        };
        let mut config = Config {
            port,
            instance,
            max_invocation_bytes,
            log_format,
            policy: policy::Policy {
                subscription_id,
                resource_group,
                gallery,
                location: location.clone(),
                target_regions,
                publish_from,
                publisher: get("GALLEON_PUBLISHER").unwrap_or_else(|| "galleon".to_owned()),
                allowed,
                features,
            },
            service_bus_namespace,
            facts_topic: get("GALLEON_FACTS_TOPIC").unwrap_or_else(|| "galleon-facts".to_owned()),
            arm_endpoint,
            follow_up: Duration::from_secs(number("GALLEON_FOLLOWUP_SECONDS", 30, 1..=3600)?),
            step_deadline: Duration::from_secs(
                60 * number("GALLEON_STEP_DEADLINE_MINUTES", 360, 1..=10_080)?,
            ),
            bare_vhd_settle: Duration::from_secs(number(
                "GALLEON_BARE_VHD_SETTLE_SECONDS",
                60,
                0..=86_400,
            )?),
            max_attempts: number("GALLEON_MAX_ATTEMPTS", 8, 1..=100)? as u32,
            bare_os_type: match get("GALLEON_BARE_OS_TYPE").as_deref() {
                None | Some("Linux") => crate::events::OsType::Linux,
                Some("Windows") => crate::events::OsType::Windows,
                Some(other) => {
                    return Err(err(
                        "GALLEON_BARE_OS_TYPE",
                        format!("'{other}' must be 'Linux' or 'Windows'"),
                    ));
                }
            },
            ingest_containers,
            keep_managed_images,
            run_deadline: Duration::from_secs(number(
                "GALLEON_RUN_DEADLINE_SECONDS",
                86_400,
                5..=2_592_000,
            )?),
            known_for: Duration::from_secs(number("GALLEON_KNOWN_SECONDS", 600, 0..=86_400)?),
            arm_reads: bucket("GALLEON_ARM_READS_BUDGET", Bucket::AZURE_READS)?,
            arm_writes: bucket("GALLEON_ARM_WRITES_BUDGET", Bucket::AZURE_WRITES)?,
            state_container_url: state_container_url.trim_end_matches('/').to_owned(),
            identity_client_id,
            audiences,
            storage_accounts,
            builds: builds(&get)?,
            build_request_container: get("GALLEON_BUILD_REQUEST_CONTAINER")
                .unwrap_or_else(|| "build-requests".to_owned()),
            retention: match get("GALLEON_RETENTION") {
                None => Default::default(),
                Some(text) => crate::domain::retention::Retention::parse(&text)
                    .map_err(|m| err("GALLEON_RETENTION", m))?,
            },
            distribution: Vec::new(),
            cross_tenant: None,
            sharing: Vec::new(),
        };
        if let Some(text) = get("GALLEON_DISTRIBUTION") {
            config.distribution = crate::domain::distribution::parse(&text, &config.policy)
                .map_err(|m| err("GALLEON_DISTRIBUTION", m))?;
        }
        config.cross_tenant = crate::domain::distribution::cross_tenant(
            &config.distribution,
            get("GALLEON_CROSS_TENANT_CLIENT_ID").as_deref(),
            get("GALLEON_TENANT_ID").as_deref(),
        )
        .map_err(|(setting, m)| err(setting, m))?;
        if let Some(text) = get("GALLEON_SHARING") {
            config.sharing = crate::domain::sharing::parse(&text, &config.policy)
                .map_err(|m| err("GALLEON_SHARING", m))?;
        }
        Ok(config)
    }
}

/// The templates galleon rebuilds, each `publish` checked as a manifest is.
fn builds(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<Vec<crate::domain::builds::TemplateEntry>, ConfigError> {
    let (setting, path) = match get("GALLEON_BUILDS_FILE") {
        Some(p) => ("GALLEON_BUILDS_FILE", Some(std::path::PathBuf::from(p))),
        None => {
            let default = std::path::PathBuf::from("builds.json");
            ("GALLEON_BUILDS_FILE", default.exists().then_some(default))
        }
    };
    let text = match &path {
        Some(p) => Some(std::fs::read_to_string(p).map_err(|e| {
            err(
                setting,
                format!("cannot read the builds file {}: {e}", p.display()),
            )
        })?),
        None => None,
    };
    let name = path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    // A problem is named by the setting it came from (either, when both are set).
    let templates = get("GALLEON_BUILD_TEMPLATES");
    let setting = match (path.is_some(), templates.is_some()) {
        (true, true) => concat!("GALLEON_BUILDS_FILE", " or ", "GALLEON_BUILD_TEMPLATES"),
        (false, true) => "GALLEON_BUILD_TEMPLATES",
        _ => setting,
    };
    let entries = crate::domain::builds::parse(
        templates.as_deref(),
        text.as_deref().map(|t| (name.as_str(), t)),
    )
    .map_err(|m| err(setting, m))?;
    for entry in &entries {
        if let Err(reason) = crate::domain::builds::check_publish(entry) {
            return Err(err(
                setting,
                format!(
                    "template {}: publish: {} ({})",
                    entry.template_id, reason.message, reason.fix
                ),
            ));
        }
    }
    Ok(entries)
}

/// The blob endpoint of the host's own storage account, from `AzureWebJobsStorage__blobServiceUri`,
/// `AzureWebJobsStorage__accountName`, or the `AzureWebJobsStorage` connection string (`BlobEndpoint`, or
/// `AccountName` and `EndpointSuffix`). The development storage (plain http) is not one: tokens need https.
fn host_storage_account(get: &impl Fn(&str) -> Option<String>) -> Option<String> {
    if let Some(uri) = get("AzureWebJobsStorage__blobServiceUri") {
        return Some(uri);
    }
    if let Some(name) = get("AzureWebJobsStorage__accountName") {
        return Some(format!("https://{name}.blob.core.windows.net"));
    }
    let connection = get("AzureWebJobsStorage")?;
    let part = |key: &str| {
        connection.split(';').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case(key)
                .then(|| v.trim().to_owned())
        })
    };
    if let Some(endpoint) = part("BlobEndpoint") {
        return endpoint.starts_with("https://").then_some(endpoint);
    }
    let name = part("AccountName")?;
    let suffix = part("EndpointSuffix").unwrap_or_else(|| "core.windows.net".to_owned());
    Some(format!("https://{name}.blob.{suffix}"))
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "config_plan_tests.rs"]
mod plan_tests;
