//! The manifest path: a `*.manifest.json` written after its VHD is the commit signal. Read it, plan the
//! publication, check the VHD it names, and accept or reject.

use super::{
    Arrived,
    reject::{Judged, reject},
};
use crate::{
    azure::blob::redact,
    domain::manifest::{self, Manifest},
    events::{Cause, Reason},
    functions::step::{Ctx, Emit, StepError},
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
    // The manifest is judged on its own first: a bad name or region is told whether or not its VHD is
    // there yet (the version's time is decided later, from the VHD).
    if let Err(reason) = manifest.plan(
        &ctx.config.policy,
        &arrived.storage_account_id,
        &arrived.url,
        chrono::Utc::now(),
    ) {
        return reject(ctx, cause, judged_manifest(), None, reason).await;
    }
    if let Some(image_id) = manifest.managed_image.clone() {
        return from_image(ctx, cause, arrived, &manifest, &image_id, judged_manifest()).await;
    }
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
    let created = vprops
        .created
        .or(vprops.last_modified)
        .unwrap_or_else(chrono::Utc::now);
    let plan = match manifest.plan(
        &ctx.config.policy,
        &arrived.storage_account_id,
        &arrived.url,
        created,
    ) {
        Ok(p) => p,
        Err(reason) => return reject(ctx, cause, judged_manifest(), None, reason).await,
    };
    let manifest_ref = Some(Judged {
        subject: &arrived.subject,
        url: &arrived.url,
        props: &mprops,
    });
    super::preflight::check_vhd(
        ctx,
        cause,
        super::preflight::Candidate {
            subject: &arrived.subject,
            storage_account_id: &arrived.storage_account_id,
            vhd_url: &vhd_url,
            vprops: &vprops,
            manifest: manifest_ref,
            allow_generation_mismatch: manifest.allow_generation_mismatch,
        },
        plan,
    )
    .await
}

/// A manifest naming a managed image made elsewhere (Packer): the image is checked against the plan, then
/// goes to PublishVersion; a mismatch rejects the manifest.
async fn from_image(
    ctx: &Ctx,
    cause: &Cause,
    arrived: &Arrived,
    manifest: &Manifest,
    image_id: &str,
    judged: Judged<'_>,
) -> Result<Vec<Emit>, StepError> {
    let written = judged.props.last_modified.unwrap_or_else(chrono::Utc::now);
    let mut plan = match manifest.plan(&ctx.config.policy, "", &arrived.url, written) {
        Ok(p) => p,
        Err(reason) => return reject(ctx, cause, judged, None, reason).await,
    };
    plan.publish_from = crate::events::PublishFrom::ManagedImage;
    match crate::functions::foreign_image::check(ctx, image_id, &plan).await? {
        Ok(()) => crate::functions::foreign_image::created(ctx, cause, image_id, plan),
        Err(reason) => reject(ctx, cause, judged, None, reason).await,
    }
}
