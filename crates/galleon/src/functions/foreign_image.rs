//! Managed images made elsewhere (Packer's `azure-arm` builder, Image Builder): checked against the plan
//! before any write (made, in the home region, of the OS type, state and generation stated), then handed
//! to PublishVersion as `image.created` without a VHD. Galleon never deletes them: they carry no
//! `galleon-run` tag, so nothing of galleon's cleanup counts them as its own.

use super::step::{self, Ctx, Emit, StepError};
use crate::{
    azure::arm,
    domain::builds,
    events::{Cause, ImageCreated, Plan, Reason},
};

/// Reads the image and checks it against the plan: `Ok(Err(reason))` when it will not be published.
pub async fn check(
    ctx: &Ctx,
    image_id: &str,
    plan: &Plan,
) -> Result<Result<(), Reason>, StepError> {
    let Some(found) = ctx.arm.get(image_id, arm::COMPUTE_IMAGES_API, &[]).await? else {
        return Ok(Err(Reason {
            code: "ManagedImageNotFound".into(),
            message: format!("the managed image {image_id} does not exist (or galleon may not read it)"),
            fix: "Name an existing managed image (az image list --query [].id), and grant galleon's identity Reader on its resource group.".into(),
        }));
    };
    Ok(match builds::image_problem(&found, plan) {
        Some(why) => Err(Reason {
            code: "ManagedImageMismatch".into(),
            message: why,
            fix: "State what the image is (osType, osState, hyperVGeneration) and publish in the image's region (GALLEON_LOCATION), or build the image to match.".into(),
        }),
        None => Ok(()),
    })
}

/// `image.created` for an image made elsewhere, and the run's watchdog.
pub fn created(
    ctx: &Ctx,
    cause: &Cause,
    image_id: &str,
    plan: Plan,
) -> Result<Vec<Emit>, StepError> {
    let data = ImageCreated {
        image_id: image_id.to_owned(),
        vhd: None,
        plan,
    };
    let fact = ctx.fact(cause, &super::version_subject(&data.plan), "", &data)?;
    let watchdog = step::watchdog(ctx, &fact)?;
    tracing::info!(
        image = image_id,
        "a managed image made elsewhere goes to PublishVersion"
    );
    Ok(vec![Emit::now(fact), watchdog])
}

/// Checks the image and hands it on; a mismatch ends the step (for inputs that are not blobs to mark).
pub async fn publish(
    ctx: &Ctx,
    cause: &Cause,
    image_id: &str,
    plan: Plan,
) -> Result<Vec<Emit>, StepError> {
    match check(ctx, image_id, &plan).await? {
        Ok(()) => created(ctx, cause, image_id, plan),
        Err(reason) => Err(StepError::failed(
            reason.code,
            reason.message,
            Some(image_id.to_owned()),
            reason.fix,
        )),
    }
}
