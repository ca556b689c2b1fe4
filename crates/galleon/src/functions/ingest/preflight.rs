//! Ingest's preflight of one VHD against its publication plan, before anything is written to Azure: a
//! page blob in the home region's storage account, a fixed VHD that reads right (footer, size, partition
//! table, boot loader), its data disks likewise, an existing image definition's immutable properties kept,
//! and not already published. Used for a manifest's VHD and for the VHD an Image Builder run leaves.

use super::{
    checks::{self, problem_reason, scheme_name, to_vhd_generation},
    reject::{Judged, blob_ref, reject},
};
use crate::{
    azure::blob::{BlobProperties, redact},
    events::{Cause, Identifier, Plan, Reason, VhdAccepted},
    functions::step::{self, Ctx, Emit, StepError},
};

/// The VHD to check, and the manifest that named it (if any: a rejection about the plan marks it).
pub struct Candidate<'a> {
    /// The subject of the facts: the manifest's blob path, or the build's.
    pub subject: &'a str,
    pub storage_account_id: &'a str,
    pub vhd_url: &'a str,
    pub vprops: &'a BlobProperties,
    pub manifest: Option<Judged<'a>>,
    pub allow_generation_mismatch: bool,
    /// The identifier the manifest states (a derived one is not compared with an existing definition's).
    pub stated_identifier: Option<&'a Identifier>,
}

/// Checks the VHD (and the plan's data disks) and accepts it with `vhd.accepted` and the run's watchdog,
/// or rejects it with `vhd.rejected`.
pub async fn check_vhd(
    ctx: &Ctx,
    cause: &Cause,
    candidate: Candidate<'_>,
    mut plan: Plan,
) -> Result<Vec<Emit>, StepError> {
    let Candidate {
        subject,
        storage_account_id,
        vhd_url,
        vprops,
        manifest,
        allow_generation_mismatch,
        stated_identifier,
    } = candidate;
    let vhd_url = vhd_url.to_owned();
    let judged_vhd = || Judged {
        subject,
        url: &vhd_url,
        props: vprops,
    };
    // A rejection about the plan marks the manifest when there is one, else the VHD.
    let judged_manifest = || match &manifest {
        Some(m) => Judged {
            subject: m.subject,
            url: m.url,
            props: m.props,
        },
        None => judged_vhd(),
    };
    // A rejection about the VHD names it; `judged` is the blob that gets the mark.
    let reject_naming_vhd =
        |judged, reason| reject(ctx, cause, judged, Some(blob_ref(&vhd_url, vprops)), reason);
    let vhd_name = vhd_url.rsplit('/').next().unwrap_or("disk.vhd").to_owned();
    if let Some(reason) = checks::blob_type_problem(&vhd_name, &vprops.blob_type) {
        return reject_naming_vhd(judged_vhd(), reason).await;
    }
    if let Some(reason) = checks::storage_region(ctx, storage_account_id, &plan.location).await? {
        return reject_naming_vhd(judged_manifest(), reason).await;
    }
    let mut expectations = vhd::Expectations::new(vhd_name);
    expectations.declared_generation = Some(to_vhd_generation(plan.hyper_v_generation));
    expectations.allow_generation_mismatch = allow_generation_mismatch;
    let os =
        match checks::inspect_os(ctx, &vhd_url, vprops, &expectations, &plan.definition).await? {
            Ok(i) => i,
            // Mark the VHD (the faulty blob); the fact's subject is the manifest that named it.
            Err(problem) => return reject_naming_vhd(judged_vhd(), problem_reason(problem)).await,
        };
    // An architecture read off the disk's boot loader is what galleon states when the manifest did not.
    if plan.definition.architecture.is_none() {
        plan.definition.architecture = checks::detected_architecture(&os);
    }
    let inspection = os.inspection;
    for note in &inspection.notes {
        tracing::info!(note = %note, "VHD inspection note");
    }
    // An existing image definition's immutable properties decide: a plan stating others is refused here,
    // before CreateImage or PublishVersion writes anything.
    if let Some(reason) = checks::definition_mismatch(ctx, &plan, stated_identifier).await? {
        return reject_naming_vhd(judged_manifest(), reason).await;
    }
    // Each data disk: complete, a page blob, a fixed VHD without an OS layout; pinned by its ETag.
    for disk in &mut plan.publishing.data_disks {
        let data_url = disk.vhd.url.clone();
        let Some(dprops) = ctx.blobs.properties(&data_url).await? else {
            let reason = Reason {
                code: "DataDiskMissing".into(),
                message: format!(
                    "the manifest names data disk LUN {} at {} but no such blob exists",
                    disk.lun,
                    redact(&data_url)
                ),
                fix: "Upload every data disk VHD first and the manifest after them (the manifest is the signal that they are complete).".into(),
            };
            return reject(ctx, cause, judged_manifest(), None, reason).await;
        };
        if dprops.copy_status.as_deref() == Some("pending") {
            return Err(StepError::Waiting(format!(
                "{} is still being copied",
                redact(&data_url)
            )));
        }
        let judged_data = Judged {
            subject,
            url: &data_url,
            props: &dprops,
        };
        let data_name = data_url.rsplit('/').next().unwrap_or("data.vhd").to_owned();
        if let Some(reason) = checks::blob_type_problem(&data_name, &dprops.blob_type) {
            return reject(
                ctx,
                cause,
                judged_data,
                Some(blob_ref(&data_url, &dprops)),
                reason,
            )
            .await;
        }
        let expect = vhd::Expectations::new(data_name);
        if let Err(problem) =
            checks::inspect_data(ctx, &data_url, &dprops, &expect, disk.lun).await?
        {
            return reject(
                ctx,
                cause,
                judged_data,
                Some(blob_ref(&data_url, &dprops)),
                problem_reason(problem),
            )
            .await;
        }
        disk.vhd = blob_ref(&data_url, &dprops);
    }
    if let Some(existing) = checks::already_published(ctx, cause, &plan).await? {
        let reason = Reason {
            code: "AlreadyPublished".into(),
            message: format!("this VHD was already published as {existing}; nothing new was made"),
            fix: "To publish it again as a new version, give the manifest a new \"version\" (or upload the VHD again).".into(),
        };
        return reject_naming_vhd(judged_manifest(), reason).await;
    }
    let data = VhdAccepted {
        vhd: blob_ref(&vhd_url, vprops),
        manifest: manifest.as_ref().map(|m| blob_ref(m.url, m.props)),
        virtual_size_bytes: inspection.virtual_size,
        partition_scheme: scheme_name(&inspection.partition_scheme).into(),
        plan,
        notes: inspection.notes.clone(),
    };
    tracing::info!(vhd = %redact(&vhd_url), version = %data.plan.version, "VHD accepted");
    let accepted = ctx.fact(cause, subject, "", &data)?;
    let watchdog = step::watchdog(ctx, &accepted)?;
    Ok(vec![Emit::now(accepted), watchdog])
}
