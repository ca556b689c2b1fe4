//! The `data` of the build facts: a template's run asked for, started, skipped and finished, and the
//! build an image came from.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Why a build was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BuildReason {
    /// The timer (`GALLEON_BUILD_SCHEDULE`) fired.
    Schedule,
    /// An operator asked (the operator controls).
    Operator,
    /// A request blob was written to `GALLEON_BUILD_REQUEST_CONTAINER`.
    Request,
}

/// `build.requested`: an Image Builder template should run (on schedule or on request).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildRequested {
    pub template_id: String,
    pub reason: BuildReason,
    /// Who asked: `timer`, the request blob's URL, an operator's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    /// What the asker wrote about why (a request blob's `reason`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Build even when the template's source is the same as at its last successful build.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
    pub requested_at: DateTime<Utc>,
}

/// What an Image Builder template builds from, as galleon resolved it before the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildSource {
    /// `PlatformImage`, `SharedImageVersion` or `ManagedImage`, as the template says.
    pub kind: String,
    /// `publisher:offer:sku` for a platform image, else the resource id.
    pub id: String,
    /// The version the run builds from (`latest` resolved); none for a managed image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// `build.started`: Image Builder runs the template (this request started the run, or found it running).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildStarted {
    pub template_id: String,
    pub started_at: DateTime<Utc>,
    /// The `Azure-AsyncOperation` URL of the run, when this request started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_url: Option<String>,
    /// The run was already in progress: no second run was started, and this request is answered by it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub already_running: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<BuildSource>,
    /// The template's `buildTimeoutInMinutes` (240 when it says 0); past it and galleon's margin the run
    /// is cancelled.
    pub build_timeout_minutes: u32,
    /// What makes this build slow or fragile, e.g. Image Builder's own blocking distribution to many
    /// regions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    pub reason: BuildReason,
}

/// `build.skipped`: the schedule asked for a rebuild, but nothing it is built from changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildSkipped {
    pub template_id: String,
    /// Why nothing was built, in words.
    pub why: String,
    pub source: BuildSource,
    /// When the last successful build from this source finished.
    pub last_built_at: DateTime<Utc>,
}

/// One artifact of an Image Builder run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunOutput {
    pub name: String,
    pub artifact_id: Option<String>,
    pub artifact_uri: Option<String>,
    /// The `distribute` type that made it: `VHD`, `ManagedImage` or `SharedImage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// `build.finished`: the run ended (in any state).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildFinished {
    pub template_id: String,
    /// `Succeeded`, `PartiallySucceeded`, `Failed` or `Canceled`.
    pub run_state: String,
    /// Where the run was when it ended (`Customizing`, `Distributing`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_sub_state: Option<String>,
    /// Image Builder's message, verbatim.
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<u64>,
    pub run_outputs: Vec<RunOutput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<BuildSource>,
    /// Galleon cancelled the run: it ran past `buildTimeoutInMinutes` and galleon's margin.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timed_out: bool,
    /// The staging resource group, where the customization log (`packerlogs/<run>/customization.log` in
    /// its storage account) and the build VM are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staging_resource_group: Option<String>,
    /// Galleon's advice when the run did not succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advice: Option<String>,
}

impl BuildFinished {
    /// Whether the run made something the chain can publish.
    pub fn has_outputs(&self) -> bool {
        matches!(self.run_state.as_str(), "Succeeded" | "PartiallySucceeded")
            && !self.run_outputs.is_empty()
    }
}

/// The build an image came from, carried by the plan to `image.ready`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildRef {
    pub template_id: String,
    pub run_output_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_started_at: Option<DateTime<Utc>>,
}
