//! `POST …/galleries/{g}/share` (GallerySharingProfile_Update): direct sharing with subscriptions and
//! tenants, community sharing, and the gallery's `sharingProfile`/`sharingStatus` as GET shows them.
//!
//! Sources: the GalleryRP spec 2025-03-03 (`SharingUpdate`, `SharingProfile`, `SharingStatus`,
//! example Gallery_AddToSharingProfile: 202 + Location, body the SharingUpdate) [spec]; "Share a gallery
//! with all users in a subscription or tenant" (learn.microsoft.com/azure/virtual-machines/
//! share-gallery-direct) [doc]: the gallery must have `sharingProfile.permissions` = `Groups`, at most 30
//! subscriptions and 5 tenants; "Share images using a community gallery" [doc]: permissions
//! `Community` with publisher URI, contact, EULA and public name prefix, then `EnableCommunity`.
//! The refusals' codes are Compute's `InvalidParameter`/`OperationNotAllowed`; their texts are
//! devcloud's (Azure's wording was not found).

use serde_json::{Value, json};

use super::common::*;
use super::route::Target;
use crate::arm::Reply;
use crate::config::Work;
use crate::error::ArmError;
use crate::model::{OpFamily, OpStatus, State, Time, Verb};

/// [doc] Direct sharing limits (preview): subscriptions and tenants per gallery.
pub const MAX_SHARED_SUBSCRIPTIONS: usize = 30;
pub const MAX_SHARED_TENANTS: usize = 5;

const OPS: &[&str] = &["Add", "Remove", "Reset", "EnableCommunity"];
const GROUP_TYPES: &[&str] = &["Subscriptions", "AADTenants"];

fn canon<'a>(v: &str, allowed: &[&'a str]) -> Option<&'a str> {
    allowed.iter().copied().find(|a| a.eq_ignore_ascii_case(v))
}

/// The groups of a SharingUpdate, checked: known types, GUID ids.
fn parse_groups(body: &Value) -> Result<Vec<(&'static str, Vec<String>)>, ArmError> {
    let mut out: Vec<(&'static str, Vec<String>)> = Vec::new();
    let Some(groups) = body.get("groups").filter(|g| !g.is_null()) else {
        return Ok(out);
    };
    let Some(groups) = groups.as_array() else {
        return Err(ArmError::invalid_parameter(
            "The value of parameter 'groups' must be an array.",
            "sharingUpdate.groups",
        ));
    };
    for g in groups {
        let t = g["type"].as_str().unwrap_or_default();
        enum_check(Some(t), GROUP_TYPES, "type", "sharingUpdate.groups.type")?;
        if t.is_empty() {
            return Err(ArmError::required("type", "sharingUpdate.groups.type"));
        }
        let t = canon(t, GROUP_TYPES).unwrap_or("Subscriptions");
        let mut ids = Vec::new();
        for id in g["ids"].as_array().into_iter().flatten() {
            let s = id.as_str().unwrap_or_default();
            if uuid::Uuid::parse_str(s).is_err() || s.len() != 36 {
                let what = if t == "Subscriptions" {
                    "subscription"
                } else {
                    "tenant"
                };
                return Err(ArmError::invalid_parameter(
                    format!("The {what} id '{s}' is not a valid GUID."),
                    "sharingUpdate.groups.ids",
                ));
            }
            ids.push(s.to_lowercase());
        }
        match out.iter_mut().find(|(k, _)| *k == t) {
            Some((_, v)) => v.extend(ids),
            None => out.push((t, ids)),
        }
    }
    Ok(out)
}

fn stored_groups(profile: &Value) -> Vec<(&'static str, Vec<String>)> {
    GROUP_TYPES
        .iter()
        .map(|t| {
            let ids = profile["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|g| {
                    g["type"]
                        .as_str()
                        .is_some_and(|x| x.eq_ignore_ascii_case(t))
                })
                .flat_map(|g| g["ids"].as_array().cloned().unwrap_or_default())
                .filter_map(|v| v.as_str().map(str::to_lowercase))
                .collect();
            (*t, ids)
        })
        .collect()
}

fn groups_json(groups: &[(&'static str, Vec<String>)]) -> Value {
    json!(
        groups
            .iter()
            .filter(|(_, ids)| !ids.is_empty())
            .map(|(t, ids)| json!({"type": t, "ids": ids}))
            .collect::<Vec<_>>()
    )
}

fn not_allowed(message: String) -> ArmError {
    // [mem] Compute's code for an operation the resource's state does not allow.
    ArmError::new(409, "OperationNotAllowed", message)
}

/// Handles the share action on a gallery.
pub(crate) fn share(ctx: &Ctx, target: &Target) -> Result<Reply, ArmError> {
    let Target::GalleryShare { rg, key, name } = target else {
        return unreachable_patch();
    };
    let body: Value = if ctx.req.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&ctx.req.body).map_err(ArmError::bad_json)?
    };
    if !body.is_object() {
        return Err(ArmError::new(
            400,
            "InvalidRequestContent",
            "The request content was invalid and could not be deserialized: a JSON object is required.",
        ));
    }
    let op_type = body["operationType"].as_str().unwrap_or_default();
    if op_type.is_empty() {
        return Err(ArmError::required(
            "operationType",
            "sharingUpdate.operationType",
        ));
    }
    enum_check(
        Some(op_type),
        OPS,
        "operationType",
        "sharingUpdate.operationType",
    )?;
    let op_type = canon(op_type, OPS).unwrap_or("Add");
    let given = parse_groups(&body)?;

    let mut st = ctx.arm.lock();
    st.settle(ctx.now);
    let Some(gallery) = st.resources.get(key).cloned() else {
        return Err(ArmError::not_found(
            &format!("Microsoft.Compute/galleries/{name}"),
            rg,
        ));
    };
    busy(&st, key, ctx.now, &gallery.name)?;
    if sharing_in_progress(&st, &gallery.body, ctx.now) {
        return Err(ArmError::conflict_in_progress(&gallery.name));
    }
    let mut profile = gallery.body["properties"]["sharingProfile"].clone();
    if !profile.is_object() {
        profile = json!({"permissions": "Private"});
    }
    let permissions = profile["permissions"]
        .as_str()
        .unwrap_or("Private")
        .to_string();
    let mut groups = stored_groups(&profile);
    match op_type {
        "Add" | "Remove" => {
            if !permissions.eq_ignore_ascii_case("Groups") {
                return Err(not_allowed(format!(
                    "Gallery '{name}' can be shared with subscriptions and tenants only when its sharingProfile.permissions is 'Groups' (it is '{permissions}')."
                )));
            }
            if given.iter().all(|(_, ids)| ids.is_empty()) {
                return Err(ArmError::required("groups", "sharingUpdate.groups"));
            }
            for (t, ids) in &given {
                let Some((_, have)) = groups.iter_mut().find(|(k, _)| k == t) else {
                    continue;
                };
                for id in ids {
                    let at = have.iter().position(|h| h == id);
                    match (op_type, at) {
                        ("Add", None) => have.push(id.clone()),
                        ("Remove", Some(i)) => {
                            have.remove(i);
                        }
                        _ => {}
                    }
                }
            }
            let count = |t: &str| {
                groups
                    .iter()
                    .find(|(k, _)| *k == t)
                    .map_or(0, |(_, v)| v.len())
            };
            for (t, limit) in [
                ("Subscriptions", MAX_SHARED_SUBSCRIPTIONS),
                ("AADTenants", MAX_SHARED_TENANTS),
            ] {
                if count(t) > limit {
                    return Err(ArmError::invalid_parameter(
                        format!(
                            "A gallery can be shared with at most {limit} {}; this update would share it with {}.",
                            if t == "Subscriptions" {
                                "subscriptions"
                            } else {
                                "tenants"
                            },
                            count(t)
                        ),
                        "sharingUpdate.groups.ids",
                    ));
                }
            }
            profile["groups"] = groups_json(&groups);
        }
        "Reset" => {
            // Reset stops every sharing: the groups are emptied and community sharing is disabled
            // [doc: `az sig share reset`]; the permissions stay as they are.
            profile["groups"] = json!([]);
            if profile["communityGalleryInfo"].is_object() {
                profile["communityGalleryInfo"]["communityGalleryEnabled"] = json!(false);
                if let Some(o) = profile["communityGalleryInfo"].as_object_mut() {
                    o.remove("publicNames");
                }
            }
        }
        _ => {
            // EnableCommunity.
            if !permissions.eq_ignore_ascii_case("Community") {
                return Err(not_allowed(format!(
                    "Gallery '{name}' can be shared with the community only when its sharingProfile.permissions is 'Community' (it is '{permissions}')."
                )));
            }
            let info = &profile["communityGalleryInfo"];
            for field in [
                "publisherUri",
                "publisherContact",
                "eula",
                "publicNamePrefix",
            ] {
                if info[field].as_str().is_none_or(str::is_empty) {
                    return Err(ArmError::required(
                        field,
                        &format!("gallery.properties.sharingProfile.communityGalleryInfo.{field}"),
                    ));
                }
            }
            let prefix = info["publicNamePrefix"].as_str().unwrap_or_default();
            let public = format!("{prefix}-{}", uuid::Uuid::new_v4());
            profile["communityGalleryInfo"]["communityGalleryEnabled"] = json!(true);
            profile["communityGalleryInfo"]["publicNames"] = json!([public]);
        }
    }
    let echo = {
        let mut e = json!({"operationType": op_type});
        if body.get("groups").is_some_and(|g| !g.is_null()) {
            e["groups"] = json!(
                given
                    .iter()
                    .map(|(t, ids)| json!({"type": t, "ids": ids}))
                    .collect::<Vec<_>>()
            );
        }
        e
    };
    let d = ctx.work(Work::GalleryUpdate, &gallery.location, 1);
    let last_op = gallery.last_op.clone();
    let mut op = ctx.start_op(&mut st, OpFamily::Caps, key, Verb::Action, Some(d));
    op.result = Some(echo.clone());
    if let Some(o) = st.operations.get_mut(&op.id) {
        o.result = Some(echo.clone());
    }
    if let Some(r) = st.resources.get_mut(key) {
        // The gallery itself stays Succeeded; sharingStatus tells the progress.
        r.last_op = last_op;
        r.body["properties"]["sharingProfile"] = profile;
        r.body["properties"]["sharingStatus"] = json!({"operation": op.id});
    }
    Ok(ctx.lro(Reply::json(202, echo), &op, true, true))
}

fn sharing_in_progress(st: &State, body: &Value, now: Time) -> bool {
    body["properties"]["sharingStatus"]["operation"]
        .as_str()
        .and_then(|id| st.operations.get(id))
        .is_some_and(|op| op.status(now) == OpStatus::InProgress)
}
