//! ShareGallery: after an image is ready, its gallery is shared as `GALLEON_SHARING` says (direct sharing
//! with subscriptions and tenants, or a community gallery) through the gallery's `share` action, adding
//! only what the gallery does not show yet; `gallery.shared` tells what is now visible to whom.

use std::sync::Arc;

use reqwest::Method;
use serde_json::{Value, json};

use super::step::{self, Ctx, Emit, StepError, StepFuture};
use crate::{
    azure::arm::{self, ids},
    domain::sharing,
    events::{Cause, Check, Fact, FactType, GalleryShared, ImageReady},
};

pub const NAME: &str = "ShareGallery";
pub const TRIGGER: &str = "fact";
pub const HANDLES: &[FactType] = &[FactType::ImageReady];

pub fn step(fact: Fact, ctx: Arc<Ctx>, _attempt: u32) -> StepFuture {
    Box::pin(async move { share(fact, &ctx).await })
}

async fn share(fact: Fact, ctx: &Ctx) -> Result<Vec<Emit>, StepError> {
    let ready: ImageReady = fact.data().map_err(StepError::unreadable)?;
    let p = &ctx.config.policy;
    let Some(share) = ctx.config.sharing.iter().find(|s| {
        let (sub, rg, gallery) = s.gallery_parts(p);
        ids::gallery(&sub, &rg, &gallery).eq_ignore_ascii_case(&ready.gallery_id)
    }) else {
        return Ok(Vec::new());
    };
    let gallery_id = ready.gallery_id.as_str();
    let gallery = ctx
        .arm
        .get(gallery_id, arm::GALLERY_API, &[])
        .await?
        .ok_or_else(|| StepError::Waiting(format!("{gallery_id} is not there yet")))?;
    let state = gallery
        .pointer("/properties/provisioningState")
        .and_then(Value::as_str);
    if matches!(state, Some("Creating" | "Updating")) {
        return Err(StepError::Waiting(format!("{gallery_id} is being changed")));
    }
    // Direct sharing needs the gallery's permissions at Groups (a community gallery at Community).
    if let Some(profile) = sharing::profile_needed(share, &gallery) {
        ctx.arm
            .write(
                Method::PATCH,
                gallery_id,
                arm::GALLERY_API,
                Some(&json!({"properties": {"sharingProfile": profile}})),
            )
            .await?;
        return Err(StepError::Waiting(format!(
            "{gallery_id}: its sharing permissions are being set"
        )));
    }
    let Some(update) = sharing::missing(share, &gallery) else {
        return Ok(Vec::new());
    };
    let written = ctx
        .arm
        .write(
            Method::POST,
            &format!("{gallery_id}/share"),
            arm::GALLERY_API,
            Some(&update),
        )
        .await?;
    let ids_of = |ty: &str| -> Vec<String> {
        update
            .get("groups")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|g| g.get("type").and_then(Value::as_str) == Some(ty))
            .flat_map(|g| {
                g.get("ids")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    let data = GalleryShared {
        gallery_id: gallery_id.to_owned(),
        operation_type: update
            .get("operationType")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        subscriptions: ids_of("Subscriptions"),
        tenants: ids_of("AADTenants"),
        community: share.community.is_some(),
        shared_with: shared_after(&gallery, &update),
        at: chrono::Utc::now(),
    };
    let subject = format!(
        "galleries/{}",
        gallery_id.rsplit('/').next().unwrap_or(gallery_id)
    );
    let then = step::announce(&subject, &data)?;
    let (url, poll) = written.poll().unwrap_or((
        super::resource_url(ctx, gallery_id, arm::GALLERY_API),
        arm::PollKind::Resource,
    ));
    tracing::info!(gallery = gallery_id, update = %update, "sharing the gallery");
    Ok(vec![ctx.follow_up(
        &Cause::of(&fact),
        NAME,
        &subject,
        Check::Operation {
            url,
            resource_id: gallery_id.to_owned(),
            poll,
            operation: None,
            operation_poll: Default::default(),
            started_at: Some(chrono::Utc::now()),
        },
        Some(then),
        1,
        ctx.deadline_from_now(),
        ctx.next_look(written.retry_after),
    )?])
}

/// Every group the gallery is shared with once `update` is added to what it shows.
fn shared_after(gallery: &Value, update: &Value) -> Vec<Value> {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    let all = gallery
        .pointer("/properties/sharingProfile/groups")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .chain(
            update
                .get("groups")
                .and_then(Value::as_array)
                .into_iter()
                .flatten(),
        );
    for g in all {
        let ty = g
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let ids = g
            .get("ids")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_ascii_lowercase));
        match groups.iter_mut().find(|(t, _)| t.eq_ignore_ascii_case(&ty)) {
            Some((_, have)) => have.extend(ids.filter(|id| !have.contains(id)).collect::<Vec<_>>()),
            None => groups.push((ty, ids.collect())),
        }
    }
    groups
        .into_iter()
        .map(|(ty, ids)| json!({"type": ty, "ids": ids}))
        .collect()
}
