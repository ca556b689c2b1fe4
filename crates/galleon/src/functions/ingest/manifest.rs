//! The manifest path: a `*.manifest.json` written after its VHD is the commit signal. Read it, plan the
//! publication, check the VHD it names, and accept or reject.

use super::{
    Arrived,
    checks::{self, problem_reason, scheme_name, to_vhd_generation},
    reject::{Judged, blob_ref, reject},
};
use crate::{
    azure::blob::redact,
    domain::manifest::{self, Manifest},
    events::{Cause, Reason, VhdAccepted},
    functions::step::{self, Ctx, Emit, StepError},
};

pub async fn from_manifest(
    ctx: &Ctx,
    cause: &Cause,
    arrived: &Arrived,
) -> Result<Vec<Emit>, StepError> {
    let Some(mprops) = ctx.blobs.properties(&arrived.url).await? else {
        tracing::info!(blob = %redact(&arrived.url), "manifest is gone; nothing to do");
        return Ok(Vec::new());
    };
    let judged_manifest = || Judged {
        subject: &arrived.subject,
        url: &arrived.url,
        props: &mprops,
    };
    if mprops.content_length > manifest::MAX_MANIFEST_BYTES {
        let reason = Reason {
            code: "ManifestTooLarge".into(),
            message: format!(
                "{} is {} bytes; a manifest is at most {} bytes",
                redact(&arrived.url),
                mprops.content_length,
                manifest::MAX_MANIFEST_BYTES
            ),
            fix: "A manifest is a small JSON file (events/manifest.schema.json); upload the VHD as .vhd and describe it in a manifest under 64 KiB.".into(),
        };
        return reject(ctx, cause, judged_manifest(), None, reason).await;
    }
    let bytes = match ctx
        .blobs
        .read_range(&arrived.url, 0, mprops.content_length, Some(&mprops.e_tag))
        .await
    {
        Ok(b) => b,
        Err(e) if e.is_not_found() => {
            tracing::info!(blob = %redact(&arrived.url), "manifest is gone; nothing to do");
            return Ok(Vec::new());
        }
        Err(e) => return Err(e.into()),
    };
    let name = arrived.path.rsplit('/').next().unwrap_or(&arrived.path);
    let manifest = match Manifest::parse(&bytes, name) {
        Ok(m) => m,
        Err(reason) => return reject(ctx, cause, judged_manifest(), None, reason).await,
    };
    let vhd_url = match manifest.vhd_url(&arrived.url) {
        Ok(u) => u,
        Err(reason) => return reject(ctx, cause, judged_manifest(), None, reason).await,
    };
    let Some(vprops) = ctx.blobs.properties(&vhd_url).await? else {
        let reason = Reason {
            code: "VhdMissing".into(),
            message: format!("the manifest names {} but no such blob exists", redact(&vhd_url)),
            fix: "Upload the VHD first and the manifest after it (the manifest is the signal that the VHD is complete).".into(),
        };
        return reject(ctx, cause, judged_manifest(), None, reason).await;
    };
    if vprops.copy_status.as_deref() == Some("pending") {
        return Err(StepError::Waiting(format!(
            "{} is still being copied",
            redact(&vhd_url)
        )));
    }
    let judged_vhd = || Judged {
        subject: &arrived.subject,
        url: &vhd_url,
        props: &vprops,
    };
    // A rejection about the VHD names it; `judged` is the blob that gets the mark.
    let reject_naming_vhd = |judged, reason| {
        reject(
            ctx,
            cause,
            judged,
            Some(blob_ref(&vhd_url, &vprops)),
            reason,
        )
    };
    let vhd_name = vhd_url.rsplit('/').next().unwrap_or("disk.vhd").to_owned();
    if let Some(reason) = checks::blob_type_problem(&vhd_name, &vprops.blob_type) {
        return reject_naming_vhd(judged_vhd(), reason).await;
    }
    let created = vprops
        .created
        .or(vprops.last_modified)
        .unwrap_or_else(chrono::Utc::now);
    let mut plan = match manifest.plan(
        &ctx.config.policy,
        &arrived.storage_account_id,
        &arrived.url,
        created,
    ) {
        Ok(p) => p,
        Err(reason) => return reject(ctx, cause, judged_manifest(), None, reason).await,
    };
    if let Some(reason) =
        checks::storage_region(ctx, &arrived.storage_account_id, &plan.location).await?
    {
        return reject_naming_vhd(judged_manifest(), reason).await;
    }
    let mut expectations = vhd::Expectations::new(vhd_name);
    expectations.declared_generation = Some(to_vhd_generation(plan.hyper_v_generation));
    expectations.allow_generation_mismatch = manifest.allow_generation_mismatch;
    let os =
        match checks::inspect_os(ctx, &vhd_url, &vprops, &expectations, &plan.definition).await? {
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
            subject: &arrived.subject,
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
        vhd: blob_ref(&vhd_url, &vprops),
        manifest: Some(blob_ref(&arrived.url, &mprops)),
        virtual_size_bytes: inspection.virtual_size,
        partition_scheme: scheme_name(&inspection.partition_scheme).into(),
        plan,
        notes: inspection.notes.clone(),
    };
    tracing::info!(vhd = %redact(&vhd_url), version = %data.plan.version, "VHD accepted");
    let accepted = ctx.fact(cause, &arrived.subject, "", &data)?;
    let watchdog = step::watchdog(ctx, &accepted)?;
    Ok(vec![Emit::now(accepted), watchdog])
}
