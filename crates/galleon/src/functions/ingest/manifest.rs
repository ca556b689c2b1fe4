//! The manifest path: a `*.manifest.json` written after its VHD is the commit signal. Read it, plan the
//! publication, check the VHD it names, and accept or reject.

use super::{
    Arrived,
    reject::{Judged, reject},
};
use crate::{
    azure::blob::{BlobProperties, redact},
    domain::manifest::{self, Manifest},
    events::{Cause, Reason},
    functions::step::{Ctx, Emit, StepError},
};

/// The metadata key of a manifest galleon wrote for a request: the request's root, which names its run.
pub const REQUEST_KEY: &str = "galleonrequest";

/// The cause of a manifest's run: the request's, when galleon wrote it for one, else the event's.
pub fn run_cause(event: &Cause, props: &BlobProperties) -> Cause {
    match props.metadata.get(REQUEST_KEY).filter(|r| !r.is_empty()) {
        Some(root) => Cause::root(root, event.traceparent.clone()),
        None => event.clone(),
    }
}

pub async fn from_manifest(
    ctx: &Ctx,
    cause: &Cause,
    arrived: &Arrived,
    mprops: BlobProperties,
) -> Result<Vec<Emit>, StepError> {
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
            stated_identifier: manifest.identifier.as_ref(),
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
    if let Some(reason) =
        super::checks::definition_mismatch(ctx, &plan, manifest.identifier.as_ref()).await?
    {
        return reject(ctx, cause, judged, None, reason).await;
    }
    match crate::functions::foreign_image::check(ctx, image_id, &plan).await? {
        Ok(()) => crate::functions::foreign_image::created(ctx, cause, image_id, plan),
        Err(reason) => reject(ctx, cause, judged, None, reason).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_requested_manifest_runs_in_its_requests_run() {
        let event = Cause::root("event-1", None);
        let mut props = BlobProperties {
            content_length: 10,
            e_tag: "e".into(),
            blob_type: "BlockBlob".into(),
            copy_status: None,
            created: None,
            last_modified: None,
            metadata: Default::default(),
        };
        assert_eq!(run_cause(&event, &props), event);
        props
            .metadata
            .insert(REQUEST_KEY.into(), "request:m-1".into());
        assert_eq!(
            run_cause(&event, &props).correlation_id,
            Cause::root("request:m-1", None).correlation_id
        );
        assert_ne!(
            run_cause(&event, &props).correlation_id,
            event.correlation_id
        );
    }
}
