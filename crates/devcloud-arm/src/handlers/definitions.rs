//! Microsoft.Compute/galleries/images: image definitions, their immutable fields and identifier uniqueness.

use serde_json::{Value, json};

use super::common::*;
use super::image_rules::{check_features, check_generation, same_features};
use super::route::Target;
use crate::arm::Reply;
use crate::config::Work;
use crate::error::ArmError;
use crate::model::{Kind, OpFamily};
use crate::names;

pub(crate) fn put_definition(
    ctx: &Ctx,
    target: &Target,
    body: Value,
    patch: bool,
) -> Result<Reply, ArmError> {
    let (key, id, name, parent) = target_parts(target);
    names::definition(&name)?;
    let mut st = ctx.arm.lock();
    st.settle(ctx.now);
    let parent = parent.unwrap_or_default();
    let Some(gallery) = st.resources.get(&parent).cloned() else {
        return Err(ArmError::parent_not_found(
            parent.rsplit('/').next().unwrap_or(""),
        ));
    };
    let existing = st.resources.get(&key).cloned();
    if let Some(r) = &existing {
        busy(&st, &key, ctx.now, &r.name)?;
    }
    let (loc, shown) = require_location(&body, existing.as_ref(), patch)?;
    let p = props(&body);
    let base = existing
        .as_ref()
        .map(|r| r.body["properties"].clone())
        .unwrap_or(json!({}));
    let pick = |k: &str| {
        p.get(k)
            .filter(|v| !v.is_null())
            .cloned()
            .or_else(|| base.get(k).cloned())
    };
    let os_type = pick("osType")
        .ok_or_else(|| ArmError::required("osType", "galleryImage.properties.osType"))?;
    let os_state = pick("osState")
        .ok_or_else(|| ArmError::required("osState", "galleryImage.properties.osState"))?;
    let ident = pick("identifier")
        .ok_or_else(|| ArmError::required("identifier", "galleryImage.properties.identifier"))?;
    enum_check(
        os_type.as_str(),
        &["Windows", "Linux"],
        "osType",
        "galleryImage.properties.osType",
    )?;
    enum_check(
        os_state.as_str(),
        &["Generalized", "Specialized"],
        "osState",
        "galleryImage.properties.osState",
    )?;
    let hvg = pick("hyperVGeneration").unwrap_or(json!("V1"));
    enum_check(
        hvg.as_str(),
        &["V1", "V2"],
        "hyperVGeneration",
        "galleryImage.properties.hyperVGeneration",
    )?;
    let arch = pick("architecture").unwrap_or(json!("x64"));
    enum_check(
        arch.as_str(),
        &["x64", "Arm64"],
        "architecture",
        "galleryImage.properties.architecture",
    )?;
    for (field, max) in [("publisher", 128), ("offer", 64), ("sku", 64)] {
        let v = ident[field].as_str().ok_or_else(|| {
            ArmError::required(
                field,
                &format!("galleryImage.properties.identifier.{field}"),
            )
        })?;
        names::identifier_part(field, v, max)?;
    }
    if existing.is_none()
        && count_in_region(&st, Kind::Definition, &ctx.sub, &loc)
            >= ctx.arm.config.limits.definitions_per_region
    {
        return Err(quota(
            "image definitions",
            ctx.arm.config.limits.definitions_per_region,
            &loc,
        ));
    }
    // (publisher, offer, sku) unique within the gallery.
    let lc = |v: &Value, f: &str| v[f].as_str().unwrap_or("").to_lowercase();
    let triple = (
        lc(&ident, "publisher"),
        lc(&ident, "offer"),
        lc(&ident, "sku"),
    );
    let gprefix = format!("{parent}/images/");
    for (k, r) in st
        .resources
        .range(gprefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&gprefix))
    {
        if r.kind != Kind::Definition || *k == key {
            continue;
        }
        let i = &r.body["properties"]["identifier"];
        if (lc(i, "publisher"), lc(i, "offer"), lc(i, "sku")) == triple {
            // Message and code as Azure's troubleshooting guide shows them (409 OperationNotAllowed).
            return Err(ArmError::new(
                409,
                "OperationNotAllowed",
                format!(
                    "Gallery image: {} identified by (publisher:{}, offer:{}, sku:{}) already exists. Please use a different publisher, offer, sku combination.",
                    r.name,
                    ident["publisher"].as_str().unwrap_or(""),
                    ident["offer"].as_str().unwrap_or(""),
                    ident["sku"].as_str().unwrap_or("")
                ),
            ));
        }
    }
    let mut newp = base.clone();
    if !newp.is_object() {
        newp = json!({});
    }
    if let Some(obj) = p.as_object() {
        for (k, v) in obj {
            if k == "provisioningState" || k == "allowUpdateImage" {
                continue;
            }
            if patch {
                // GalleryImageUpdate: what is left out stays as it is.
                let mut merged = newp[k].clone();
                merge_patch(&mut merged, v);
                newp[k] = merged;
            } else {
                newp[k] = v.clone();
            }
        }
    }
    newp["osType"] = os_type;
    newp["osState"] = os_state;
    newp["identifier"] =
        json!({"publisher": ident["publisher"], "offer": ident["offer"], "sku": ident["sku"]});
    newp["hyperVGeneration"] = hvg;
    newp["architecture"] = arch;
    check_features(&newp["features"])?;
    check_generation(&newp)?;
    if let Some(r) = &existing {
        for f in ["osType", "osState", "hyperVGeneration", "architecture"] {
            if r.body["properties"][f] != newp[f] {
                return Err(ArmError::property_change(&format!(
                    "galleryImage.properties.{f}"
                )));
            }
        }
        for f in ["publisher", "offer", "sku"] {
            if r.body["properties"]["identifier"][f] != newp["identifier"][f] {
                return Err(ArmError::property_change(&format!(
                    "galleryImage.properties.identifier.{f}"
                )));
            }
        }
        let allow = p["allowUpdateImage"].as_bool().unwrap_or(false);
        if !same_features(&r.body["properties"]["features"], &newp["features"]) && !allow {
            return Err(ArmError::property_change(
                "galleryImage.properties.features",
            ));
        }
    }
    let mut out = json!({"id": existing.as_ref().map(|r| r.id.clone()).unwrap_or_else(|| format!("{}/images/{name}", gallery.id)), "name": name, "type": "Microsoft.Compute/galleries/images", "location": shown, "properties": newp});
    let _ = id;
    merge_tags(&mut out, &body, existing.as_ref());
    let mut res = new_resource(Kind::Definition, target, &ctx.sub, &loc, out);
    res.id = res.body["id"].as_str().unwrap_or_default().to_string();
    Ok(commit_work(
        ctx,
        &mut st,
        res,
        (Work::DefinitionCreate, Work::DefinitionUpdate),
        OpFamily::Caps,
        true,
        true,
    ))
}
