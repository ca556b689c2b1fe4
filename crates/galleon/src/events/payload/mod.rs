//! The `data` of each fact. Field names are camelCase on the wire; Azure resources are named by full
//! resource id, regions by their ARM names, times in RFC 3339 UTC.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

mod builds;
pub use builds::*;

/// A blob, as seen when the fact was made. `url` never carries a SAS token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlobRef {
    pub url: String,
    pub e_tag: String,
    pub content_length: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OsType {
    Linux,
    Windows,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OsState {
    Generalized,
    Specialized,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HyperVGeneration {
    V1,
    V2,
}

/// How the version is made: through a managed image, or straight from the VHD (faster, no image).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PublishFrom {
    ManagedImage,
    Vhd,
}

/// The image definition's identifier triple.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identifier {
    pub publisher: String,
    pub offer: String,
    pub sku: String,
}

/// One region the version is replicated to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetRegion {
    pub name: String,
    pub regional_replica_count: u32,
    /// Left out when neither the manifest nor the settings name one, so Azure's default applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_account_type: Option<String>,
    /// Whether `latest` in this region skips this version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_from_latest: Option<bool>,
    /// Customer-managed keys for the disks in this region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<super::features::Encryption>,
}

/// Everything needed to publish one image version, decided once at ingest and carried by every later fact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub subscription_id: String,
    pub resource_group: String,
    pub gallery: String,
    pub image_definition: String,
    pub version: String,
    /// The home region: where the image, the gallery and the first replica live.
    pub location: String,
    pub os_type: OsType,
    pub os_state: OsState,
    pub hyper_v_generation: HyperVGeneration,
    pub identifier: Identifier,
    /// Every region the version ends up in, the home region included.
    pub target_regions: Vec<TargetRegion>,
    pub publish_from: PublishFrom,
    /// Resource id of the storage account holding the VHD (needed to publish straight from it).
    pub storage_account_id: String,
    #[serde(default)]
    pub exclude_from_latest: bool,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// How the image definition is made when galleon makes it (the immutable parts must match an
    /// existing one).
    #[serde(
        default,
        skip_serializing_if = "super::features::DefinitionSpec::is_empty"
    )]
    pub definition: super::features::DefinitionSpec,
    /// How the version is published beyond its regions: end of life, replicas, replication mode,
    /// safety profile, host caching, data disks.
    #[serde(
        default,
        skip_serializing_if = "super::features::VersionSpec::is_empty"
    )]
    pub publishing: super::features::VersionSpec,
    /// The Image Builder run whose output this is, when it came from a build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildRef>,
    /// The version this is a copy of, when it is a distribution target's copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distributed_from: Option<String>,
}

/// `vhd.accepted`: a complete, valid VHD (with its manifest, if any) is ready to publish.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VhdAccepted {
    pub vhd: BlobRef,
    pub manifest: Option<BlobRef>,
    pub virtual_size_bytes: u64,
    /// `gpt-esp`, `gpt`, `mbr` or `none`.
    pub partition_scheme: String,
    pub plan: Plan,
    /// What the checks learnt or could not check (e.g. the architecture read off the boot loader, or
    /// that the disk has no readable EFI system partition).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Why an input was refused, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// A stable code, e.g. `VhdIsDynamic`, `ManifestInvalid`, `GalleryNotAllowed`.
    pub code: String,
    pub message: String,
    pub fix: String,
}

/// `vhd.rejected`: the input will not be published as it is. The blob stays where it is, marked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VhdRejected {
    /// The blob whose arrival was judged (a VHD or a manifest).
    pub blob: BlobRef,
    /// The VHD the manifest names, when known.
    pub vhd: Option<BlobRef>,
    pub reason: Reason,
    /// Whether the blob was marked with galleon's rejection metadata.
    pub marked: bool,
}

/// `image.created`: the managed image exists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageCreated {
    pub image_id: String,
    /// The VHD galleon made the image from; none when the image was made elsewhere (Packer, Image
    /// Builder), which galleon then never deletes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vhd: Option<BlobRef>,
    pub plan: Plan,
}

/// `image.version.published`: the version exists in its home region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionPublished {
    pub version_id: String,
    pub image_id: Option<String>,
    /// The VHD the version was made from; none when it came from an image made elsewhere or from a build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vhd: Option<BlobRef>,
    pub plan: Plan,
    /// How long Azure took to make the version in its home region (it predicts replication's time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home_region_seconds: Option<u64>,
}

/// `image.replica.ready`: the version is usable in one more region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaReady {
    pub version_id: String,
    pub region: TargetRegion,
    /// Regions still replicating when this one finished.
    pub remaining_regions: Vec<String>,
    pub ready_at: DateTime<Utc>,
}

/// `image.ready`: the version is usable in every target region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageReady {
    pub version_id: String,
    pub image_definition_id: String,
    pub gallery_id: String,
    pub version: String,
    pub regions: Vec<TargetRegion>,
    /// The VHD the version was made from; none when it came from an image made elsewhere or a build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_vhd: Option<BlobRef>,
    /// The data disk VHDs the version was made from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_data_disks: Vec<BlobRef>,
    /// The managed image the version was made from, when it was made elsewhere (Packer, Image Builder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_image_id: Option<String>,
    /// The Image Builder run that made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildRef>,
    /// The version this is a copy of (in the default gallery), for a distribution target's copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distributed_from: Option<String>,
    pub ready_at: DateTime<Utc>,
    /// Intermediate resources (the managed image) galleon could not delete; empty when all is clean.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_behind: Vec<LeftBehind>,
    /// The end of an operator's request to replicate the version again (`image.replication.requested`):
    /// distribution targets that have their copy already keep it; the others get theirs now.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replicated_again: bool,
}

/// `image.replication.requested`: an operator asked to replicate a published version again (its failed
/// regions) or to more regions. It starts a run of its own, which ReplicateVersion takes up as it does a
/// publication and which ends in the regions' `image.replica.ready` and an `image.ready`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationRequested {
    /// The version's publication, its target regions as they will be after the request.
    #[serde(flatten)]
    pub publication: VersionPublished,
    /// Regions the version did not have.
    pub added_regions: Vec<String>,
    /// Regions whose replication had failed, replicated again.
    pub again_regions: Vec<String>,
    /// Regions complete already (not announced again).
    pub ready_regions: Vec<String>,
    /// The run that published the version.
    pub version_run: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who asked: the operator's name as the tool sent it, else `operator`.
    pub by: String,
    pub requested_at: DateTime<Utc>,
}

/// `image.distribution.requested` (internal): publish a copy of a ready version into a target gallery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DistributionRequested {
    pub source_version_id: String,
    /// The target's copy: its gallery, regions, and `distributedFrom`.
    pub plan: Plan,
    /// The target's tenant, when it is not galleon's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
}

/// `gallery.shared`: the gallery's `share` action added these groups; `sharedWith` is every group the
/// gallery shows after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GalleryShared {
    pub gallery_id: String,
    /// `Add` (direct sharing) or `EnableCommunity`.
    pub operation_type: String,
    #[serde(default)]
    pub subscriptions: Vec<String>,
    #[serde(default)]
    pub tenants: Vec<String>,
    #[serde(default)]
    pub community: bool,
    /// Every group the gallery is shared with now, as Azure shows it (`{type, ids}`).
    #[serde(default)]
    pub shared_with: Vec<serde_json::Value>,
    pub at: DateTime<Utc>,
}

/// `lifecycle.requested` (internal): apply the retention policy of an image definition now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleRequested {
    pub image_definition_id: String,
    /// `schedule` (the lifecycle timer) or `operator`.
    pub reason: String,
    pub requested_at: DateTime<Utc>,
}

/// What retention did to a version (or its source), or would do in a dry run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LifecycleStep {
    /// `excludeFromLatest` set: `latest` no longer resolves to it.
    ExcludeFromLatest,
    /// Its end-of-life date set.
    EndOfLife,
    /// Deleted, after its grace period.
    Delete,
    /// Azure protects it until its end of life (`safetyProfile.blockDeletionBeforeEndOfLife`).
    DeletionBlocked,
    /// The source VHD galleon accepted was deleted, the version being ready in every region.
    DeleteSource,
    /// The source VHD was kept: it changed since galleon accepted it.
    SourceKept,
}

/// `image.version.lifecycle`: one change the retention policy made (or, in a dry run, would make).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionLifecycle {
    pub version_id: String,
    pub image_definition_id: String,
    pub version: String,
    pub step: LifecycleStep,
    pub why: String,
    /// Nothing was changed: this is what the policy would do.
    pub dry_run: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_of_life_date: Option<DateTime<Utc>>,
    /// The source blob, for `deleteSource` and `sourceKept`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob: Option<BlobRef>,
    /// Azure's answer when it refused the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
    pub at: DateTime<Utc>,
}

/// One region whose replication failed for good, with Azure's details verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegionFailure {
    pub region: String,
    pub details: String,
    /// How many times the region failed (each failure was retried on its own).
    pub failures: u32,
}

/// `image.partially.ready`: replication failed for good in some regions; the version is usable in the
/// others. The run still ends in `step.failed`; this says where the version can be used meanwhile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImagePartiallyReady {
    pub version_id: String,
    pub version: String,
    /// Regions where the version is usable now.
    pub usable_regions: Vec<TargetRegion>,
    /// Every region that failed, not only the first.
    pub failed_regions: Vec<RegionFailure>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_vhd: Option<BlobRef>,
    pub at: DateTime<Utc>,
}

/// The error that ended a step: Azure's code and message verbatim (or galleon's own, for failures that are
/// not Azure's), with the ids that let Azure support find the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// `x-ms-request-id` of the Azure answer that carried the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// `x-ms-correlation-request-id` of that answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_request_id: Option<String>,
}

impl ErrorDetail {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> ErrorDetail {
        ErrorDetail {
            code: code.into(),
            message: message.into(),
            target: None,
            request_id: None,
            correlation_request_id: None,
        }
    }

    pub fn with_target(mut self, target: impl Into<String>) -> ErrorDetail {
        self.target = Some(target.into());
        self
    }
}

/// Something galleon made and could not remove after a failure: it is named so an operator can delete it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeftBehind {
    pub resource_id: String,
    pub error: ErrorDetail,
}

/// The fact that a failed step was handling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedInput {
    #[serde(rename = "type")]
    pub ty: String,
    pub id: String,
    pub subject: Option<String>,
}

/// `step.failed`: a step gave up. Nothing half-made is left behind; the advice says what to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepFailed {
    /// The function that gave up, e.g. `PublishVersion`.
    pub step: String,
    pub error: ErrorDetail,
    pub attempts: u32,
    pub advice: String,
    pub input: FailedInput,
    /// What galleon made for this run and could not delete (cleanup failed); empty when nothing is left.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_behind: Vec<LeftBehind>,
}

/// What a follow-up checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Check {
    /// Poll an ARM long-running operation (`Azure-AsyncOperation` or `Location` URL, or the resource).
    #[serde(rename_all = "camelCase")]
    Operation {
        url: String,
        resource_id: String,
        /// Which kind of URL `url` is (it decides what a finished answer looks like).
        #[serde(default)]
        poll: crate::azure::arm::PollKind,
        /// When `url` is the resource itself: the write's own operation URL, read only when the resource
        /// shows `Failed`, for Azure's error.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        operation: Option<String>,
        /// Which kind of URL `operation` is.
        #[serde(default)]
        operation_poll: crate::azure::arm::PollKind,
        /// When the write was sent: the looks are spaced by how long the operation has run.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        started_at: Option<DateTime<Utc>>,
    },
    /// Watch a version's per-region replication (`$expand=ReplicationStatus`).
    #[serde(rename_all = "camelCase")]
    Replication {
        version_id: String,
        announced_regions: Vec<String>,
        /// Failures so far, per region (each counts towards `GALLEON_MAX_ATTEMPTS`; looks do not).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        failures: BTreeMap<String, u32>,
        /// The `Azure-AsyncOperation` (or `Location`) URL of the last target-region PATCH, until it ends.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        patch: Option<String>,
        /// Which kind of URL `patch` is.
        #[serde(default)]
        patch_poll: crate::azure::arm::PollKind,
        /// The managed image the version was made from, deleted once every region is ready (unless
        /// `GALLEON_KEEP_MANAGED_IMAGES`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        image_id: Option<String>,
        /// When the target regions were added: the looks are spaced from here.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        started_at: Option<DateTime<Utc>>,
        /// How long replication is expected to take, from how long the home region took.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expected_seconds: Option<u64>,
    },
    /// Re-check that a bare VHD upload is complete and unchanged (or that the VHD a manifest names has
    /// finished copying).
    #[serde(rename_all = "camelCase")]
    VhdComplete {
        url: String,
        e_tag: String,
        /// When the blob was first seen; the wait is bounded from here.
        first_seen: DateTime<Utc>,
        /// The storage account the BlobCreated event came from.
        #[serde(default)]
        storage_account_id: String,
    },
    /// Watch an Image Builder run: one GET of the template per look (`lastRunStatus`).
    #[serde(rename_all = "camelCase")]
    Build {
        template_id: String,
        /// The run's `Azure-AsyncOperation` URL, when galleon started it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        operation_url: Option<String>,
        /// The run's `lastRunStatus.startTime` (or when galleon asked for it).
        started_at: DateTime<Utc>,
        /// Past `started_at` + this, galleon cancels the run (`buildTimeoutInMinutes` + margin).
        cancel_after_minutes: u32,
        /// When galleon asked Image Builder to cancel the run.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cancel_requested_at: Option<DateTime<Utc>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<BuildSource>,
    },
    /// The watchdog of a run: at its deadline, end the run with `step.failed` unless it has ended.
    #[serde(rename_all = "camelCase")]
    RunDeadline { accepted_at: DateTime<Utc> },
    /// Run the step again on this fact (a CloudEvent) after a transient failure, or while waiting for
    /// something Azure is still making. `failures` counts the transient failures so far (waits do not).
    Retry {
        event: serde_json::Value,
        #[serde(default)]
        failures: u32,
        /// Throttled answers (429) so far: they lengthen the wait but never use up the failure budget.
        #[serde(default, skip_serializing_if = "is_zero")]
        throttles: u32,
    },
    /// Run the function Event Grid triggered (`step`) again on this event, as it was delivered, after
    /// trouble a later try can get past; counted like [`Check::Retry`].
    #[serde(rename_all = "camelCase")]
    RetryEvent {
        event: serde_json::Value,
        #[serde(default)]
        failures: u32,
        #[serde(default, skip_serializing_if = "is_zero")]
        throttles: u32,
    },
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The fact to announce once a check succeeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Announce {
    #[serde(rename = "type")]
    pub ty: String,
    pub subject: String,
    pub data: serde_json::Value,
}

/// `operation.followup` (internal): check on a long operation at the scheduled time, then announce.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FollowUp {
    /// The step that started the operation.
    pub step: String,
    pub check: Check,
    /// 1 for the first check.
    pub attempt: u32,
    /// After this the step fails with `StepDeadlineExceeded`.
    pub deadline: DateTime<Utc>,
    /// The fact to announce when the check succeeds (checks that build their own facts have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub then: Option<Announce>,
}

/// Which mark an operator put on a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Mark {
    /// Bad: excluded from `latest` everywhere it was published, and the first to go under retention.
    Bad,
    /// Pinned: retention never touches it.
    Pin,
}

/// `image.version.marked`: an operator marked a version (and its distributed copies) bad or pinned it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionMarked {
    pub image_definition: String,
    pub version: String,
    pub mark: Mark,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Every version id that carries the mark now because of this request (the default gallery's and
    /// the copies in the distribution targets' galleries).
    pub versions: Vec<String>,
    /// Who asked: `operator` (the Versions control).
    pub by: String,
    pub at: DateTime<Utc>,
}

/// `request.accepted`: a request from the `galleon-requests` queue was taken up; the usual facts follow in
/// `run` (a replication's or a build's new run, a publication's, or the marked version's own).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestAccepted {
    /// The requester's `id`, else the message's id.
    pub request_id: String,
    /// `replicate`, `rebuild`, `publish`, `markBad`, `pin`.
    pub kind: String,
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// What the control answered (as its HTTP form answers): what was done, or why nothing was needed.
    pub answer: Value,
    pub accepted_at: DateTime<Utc>,
}

/// `request.rejected`: a request from the `galleon-requests` queue will not be carried out as it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRejected {
    /// The requester's `id` when it could be read, else the message's id.
    pub request_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    pub reason: Reason,
    pub rejected_at: DateTime<Utc>,
}

/// `deadletter.resubmitted`: an operator sent a dead-lettered fact again once its cause was fixed; it is
/// part of the fact's own run, whose facts go on from there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterResubmitted {
    pub fact_id: String,
    pub fact_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Service Bus's reason for the dead letter, and the entity it died in.
    pub dead_letter_reason: String,
    pub dead_letter_source: String,
    pub by: String,
    pub resubmitted_at: DateTime<Utc>,
}
