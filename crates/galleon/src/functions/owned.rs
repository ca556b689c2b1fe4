//! What galleon owns. A managed image or image version is galleon's only when it carries this run's
//! `galleon-run` tag and was made from the VHD that was checked (its blob URL and ETag, also tags).
//! Anything else of the same name is never published, reused or deleted: the run fails with a conflict.

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::Value;

use super::step::{Ctx, StepError, detail_of};
use crate::{
    azure::arm,
    events::{BlobRef, ErrorDetail, LeftBehind, Plan},
};

pub const RUN_TAG: &str = crate::domain::tags::RUN;
pub const SOURCE_TAG: &str = crate::domain::tags::SOURCE;
pub const SOURCE_ETAG_TAG: &str = crate::domain::tags::SOURCE_ETAG;
const TAG_VALUE_MAX: usize = 256;

/// An ETag as a tag value: without the quotes HTTP puts around it.
pub fn etag_tag(e_tag: &str) -> String {
    e_tag.trim_matches('"').to_owned()
}

/// A blob URL as a tag value (Azure allows 256 characters; a longer URL is named by its UUIDv5).
pub fn source_tag(url: &str) -> String {
    let url = url.split('?').next().unwrap_or(url);
    if url.len() <= TAG_VALUE_MAX {
        url.to_owned()
    } else {
        format!(
            "urn:uuid:{}",
            uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, url.as_bytes())
        )
    }
}

/// What something galleon makes is made from, as its tags name it: a VHD (its URL and ETag), or an image
/// made elsewhere (its resource id; an image's content never changes under its id, so there is no ETag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin<'a> {
    Vhd(&'a BlobRef),
    Image(&'a str),
}

impl Origin<'_> {
    /// The VHD when there is one, else the image.
    pub fn of<'a>(vhd: Option<&'a BlobRef>, image_id: &'a str) -> Origin<'a> {
        vhd.map_or(Origin::Image(image_id), Origin::Vhd)
    }

    fn source(&self) -> String {
        match self {
            Origin::Vhd(vhd) => source_tag(&vhd.url),
            Origin::Image(id) => source_tag(id),
        }
    }

    fn e_tag(&self) -> String {
        match self {
            Origin::Vhd(vhd) => etag_tag(&vhd.e_tag),
            Origin::Image(_) => String::new(),
        }
    }
}

/// Tags galleon puts on what it makes: the user's, then the run that made it and what it came from.
pub fn tags(run: &str, plan: &Plan, origin: Origin<'_>) -> BTreeMap<String, String> {
    let mut tags = plan.tags.clone();
    tags.insert(RUN_TAG.into(), run.to_owned());
    tags.insert(SOURCE_TAG.into(), origin.source());
    tags.insert(SOURCE_ETAG_TAG.into(), origin.e_tag());
    tags.insert(crate::domain::tags::MANAGED.into(), "true".into());
    tags
}

/// Whether a resource is this run's, from the same source; `Err` says why not.
pub fn ownership(resource: &Value, run: &str, origin: Origin<'_>) -> Result<(), String> {
    let tag = |name: &str| {
        resource
            .pointer(&format!("/tags/{name}"))
            .and_then(Value::as_str)
    };
    match tag(RUN_TAG) {
        None => return Err("it has no galleon-run tag (galleon did not make it)".into()),
        Some(r) if r != run => {
            return Err(format!(
                "it was made by another run ({RUN_TAG}={r}, this run is {run})"
            ));
        }
        Some(_) => {}
    }
    if tag(SOURCE_TAG) != Some(origin.source().as_str()) {
        return Err(format!(
            "it was made from another source ({SOURCE_TAG}={})",
            tag(SOURCE_TAG).unwrap_or("none")
        ));
    }
    if tag(SOURCE_ETAG_TAG).unwrap_or_default() != origin.e_tag() {
        return Err(format!(
            "it was made from another content of the VHD ({SOURCE_ETAG_TAG}={}, the checked VHD has {})",
            tag(SOURCE_ETAG_TAG).unwrap_or("none"),
            origin.e_tag()
        ));
    }
    Ok(())
}

/// What a conflict is about: its code and how the advice names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    ManagedImage,
    ImageVersion,
}

impl Resource {
    fn code(self) -> &'static str {
        match self {
            Resource::ManagedImage => "ManagedImageConflict",
            Resource::ImageVersion => "ImageVersionConflict",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Resource::ManagedImage => "managed image",
            Resource::ImageVersion => "image version",
        }
    }
}

/// The failure of finding someone else's resource where this run would make its own.
pub fn conflict(what: Resource, id: &str, why: &str) -> StepError {
    StepError::failed(
        what.code(),
        format!("{id} already exists and is not this run's: {why}"),
        Some(id.to_owned()),
        format!(
            "Galleon publishes only what it made from the VHD it checked, and never touches anything else. Delete or rename the existing {} if it is not needed (or give the manifest a new version), then upload the manifest again.",
            what.name()
        ),
    )
}

/// The API version for a resource id galleon makes.
pub fn api_for(resource_id: &str) -> &'static str {
    if resource_id.contains("/Microsoft.Compute/images/") {
        arm::COMPUTE_IMAGES_API
    } else {
        arm::GALLERY_API
    }
}

/// Deletes `resource_id` if this run owns it (made from `origin`, or a managed image named with the run's
/// mark); leaves anything else alone. Returns what could not be deleted, so the failure fact names it.
pub async fn remove(
    ctx: &Ctx,
    resource_id: &str,
    run: &str,
    origin: Origin<'_>,
) -> Result<(), LeftBehind> {
    let api = api_for(resource_id);
    let left = |error: ErrorDetail| LeftBehind {
        resource_id: resource_id.to_owned(),
        error,
    };
    // A managed image named with this run's mark is the run's own (CreateImage made it from the checked
    // VHD): it goes without a read first. Anything else is read, and deleted only when its tags say so.
    if !crate::domain::naming::is_runs_image(resource_id, run) {
        let resource = match ctx.arm.get(resource_id, api, &[]).await {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(()),
            Err(e) => return Err(left(detail_of(&e))),
        };
        if let Err(why) = ownership(&resource, run, origin) {
            tracing::info!(resource = resource_id, why = %why, "not this run's; left alone");
            return Ok(());
        }
    }
    // A run can end while Azure still makes its image (a follow-up dead-lettered, say): Azure refuses to
    // delete a resource another operation holds (409), so the delete waits for that operation, bounded.
    let started = std::time::Instant::now();
    loop {
        match ctx.arm.write(Method::DELETE, resource_id, api, None).await {
            Err(e) if e.is_not_found() => return Ok(()),
            Ok(_) => {
                tracing::info!(
                    resource = resource_id,
                    "deleted what this run made and no longer needs"
                );
                return Ok(());
            }
            Err(e) if e.is_conflict_in_progress() && started.elapsed() < BUSY_WAIT => {
                let wait = e
                    .retry_after()
                    .unwrap_or(BUSY_LOOK)
                    .min(BUSY_WAIT.saturating_sub(started.elapsed()));
                tracing::info!(resource = resource_id, wait_s = wait.as_secs_f64(), error = %e, "another operation still runs on what this run made; deleting it once that has finished");
                tokio::time::sleep(wait).await;
            }
            Err(e) => {
                tracing::warn!(resource = resource_id, error = %e, "could not delete what this run made");
                return Err(left(detail_of(&e)));
            }
        }
    }
}

/// How long a delete waits for an operation still running on the resource (Azure makes a managed image
/// from a VHD in about a minute); past it, the resource is named in `leftBehind`.
const BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(150);
/// Between two tries of such a delete, unless Azure says `Retry-After`.
const BUSY_LOOK: std::time::Duration = std::time::Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vhd() -> BlobRef {
        BlobRef {
            url: "https://acct.blob.core.windows.net/images/u/disk.vhd".into(),
            e_tag: "\"0x8DD1\"".into(),
            content_length: 1024,
        }
    }

    #[test]
    fn only_this_runs_resources_from_the_checked_vhd_are_owned() {
        let v = vhd();
        let v = Origin::Vhd(&v);
        let url = "https://acct.blob.core.windows.net/images/u/disk.vhd";
        let mine = json!({"tags": {"galleon-run": "run-1", "galleon-source": url, "galleon-source-etag": "0x8DD1"}});
        assert_eq!(ownership(&mine, "run-1", v), Ok(()));
        let by_hand = json!({"tags": {}});
        assert!(ownership(&by_hand, "run-1", v).is_err_and(|w| w.contains("no galleon-run")));
        let earlier = json!({"tags": {"galleon-run": "run-0", "galleon-source": url, "galleon-source-etag": "0x8DD1"}});
        assert!(ownership(&earlier, "run-1", v).is_err_and(|w| w.contains("another run")));
        let other_blob = json!({"tags": {"galleon-run": "run-1", "galleon-source": "https://x/y.vhd", "galleon-source-etag": "0x8DD1"}});
        assert!(ownership(&other_blob, "run-1", v).is_err_and(|w| w.contains("another source")));
        let rewritten = json!({"tags": {"galleon-run": "run-1", "galleon-source": url, "galleon-source-etag": "0x8DD2"}});
        assert!(ownership(&rewritten, "run-1", v).is_err_and(|w| w.contains("another content")));
    }

    #[test]
    fn tag_values_fit_azure() {
        let long = format!("https://a.blob.core.windows.net/c/{}.vhd", "x".repeat(300));
        assert!(source_tag(&long).len() <= TAG_VALUE_MAX);
        assert_eq!(source_tag(&long), source_tag(&long), "stable");
        assert_eq!(
            source_tag("https://a/c/d.vhd?sv=1&sig=secret"),
            "https://a/c/d.vhd",
            "never a SAS token in a tag"
        );
        assert_eq!(etag_tag("\"0x8DD1\""), "0x8DD1");
    }
}

#[cfg(test)]
mod origin_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_image_made_elsewhere_is_never_galleons() {
        let image =
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/images/packer-1";
        let origin = Origin::Image(image);
        // What galleon makes from the image is tagged with the image's id and no ETag, and is this run's.
        let made = json!({"tags": {"galleon-run": "run-1", "galleon-source": image, "galleon-source-etag": ""}});
        assert_eq!(ownership(&made, "run-1", origin), Ok(()));
        assert_eq!(origin.source(), image);
        // The image itself (Packer's, no galleon tags) is not.
        let packer = json!({"tags": {"galleon-definition": "ubuntu"}});
        assert!(ownership(&packer, "run-1", origin).is_err_and(|w| w.contains("no galleon-run")));
        // A version galleon made from a VHD is not one made from this image.
        let from_vhd = json!({"tags": {"galleon-run": "run-1", "galleon-source": "https://a/c/d.vhd", "galleon-source-etag": "0x1"}});
        assert!(ownership(&from_vhd, "run-1", origin).is_err_and(|w| w.contains("another source")));
    }
}
