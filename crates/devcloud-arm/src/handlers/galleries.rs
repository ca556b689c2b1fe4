//! Microsoft.Compute/galleries: create, update (merging what is left out) and the gallery quota.

use serde_json::{Value, json};

use super::common::*;
use super::route::Target;
use crate::arm::Reply;
use crate::config::Work;
use crate::error::ArmError;
use crate::model::{Kind, OpFamily};
use crate::names;

pub(crate) fn put_gallery(
    ctx: &Ctx,
    target: &Target,
    body: Value,
    patch: bool,
) -> Result<Reply, ArmError> {
    let (key, id, name, _) = target_parts(target);
    names::gallery(&name)?;
    let mut st = ctx.arm.lock();
    st.settle(ctx.now);
    let existing = st.resources.get(&key).cloned();
    if let Some(r) = &existing {
        busy(&st, &key, ctx.now, &r.name)?;
    }
    let (loc, shown) = require_location(&body, existing.as_ref(), patch)?;
    if existing.is_none()
        && count_in_region(&st, Kind::Gallery, &ctx.sub, &loc)
            >= ctx.arm.config.limits.galleries_per_region
    {
        return Err(quota(
            "galleries",
            ctx.arm.config.limits.galleries_per_region,
            &loc,
        ));
    }
    let mut out = existing.as_ref().map(|r| r.body.clone()).unwrap_or_else(|| {
        json!({"id": id, "name": name, "type": "Microsoft.Compute/galleries", "location": shown,
            "properties": {"identifier": {"uniqueName": format!("{}-{}", ctx.sub, name.to_uppercase())}}})
    });
    let p = props(&body);
    if let Some(d) = p.get("description") {
        out["properties"]["description"] = d.clone();
    }
    if let Some(perm) = p["sharingProfile"]["permissions"].as_str() {
        enum_check(
            Some(perm),
            &["Private", "Groups", "Community"],
            "permissions",
            "gallery.properties.sharingProfile.permissions",
        )?;
    }
    let before = out["properties"]["sharingProfile"].clone();
    for k in ["softDeletePolicy", "sharingProfile"] {
        if let Some(v) = p.get(k).filter(|v| !v.is_null()) {
            if patch {
                merge_patch(&mut out["properties"][k], v);
            } else {
                out["properties"][k] = v.clone();
            }
        }
    }
    keep_read_only_sharing(&mut out["properties"]["sharingProfile"], &before);
    if let Some(i) = body.get("identity") {
        out["identity"] = i.clone();
    }
    merge_tags(&mut out, &body, existing.as_ref());
    let res = new_resource(Kind::Gallery, target, &ctx.sub, &loc, out);
    Ok(commit_work(
        ctx,
        &mut st,
        res,
        (Work::GalleryCreate, Work::GalleryUpdate),
        OpFamily::Caps,
        true,
        true,
    ))
}

/// `sharingProfile.groups` and `communityGalleryInfo.{communityGalleryEnabled, publicNames}` are
/// read-only [spec]: a PUT or PATCH leaves them as the share action set them.
fn keep_read_only_sharing(profile: &mut Value, before: &Value) {
    if !profile.is_object() {
        return;
    }
    match before.get("groups") {
        Some(g) => profile["groups"] = g.clone(),
        None => {
            if let Some(o) = profile.as_object_mut() {
                o.remove("groups");
            }
        }
    }
    if let Some(info) = profile
        .get_mut("communityGalleryInfo")
        .and_then(Value::as_object_mut)
    {
        for k in ["communityGalleryEnabled", "publicNames"] {
            match before["communityGalleryInfo"].get(k) {
                Some(v) => {
                    info.insert(k.to_string(), v.clone());
                }
                None => {
                    info.remove(k);
                }
            }
        }
    }
}
