//! Microsoft.VirtualMachineImages/imageTemplates: create, the PATCH-only updates Image Builder allows,
//! and template validation.

use serde_json::{Value, json};

use super::common::*;
use super::route::Target;
use crate::arm::Reply;
use crate::config::Work;
use crate::error::ArmError;
use crate::model::{Kind, OpFamily};
use crate::names;

pub(crate) fn put_template(
    ctx: &Ctx,
    target: &Target,
    body: Value,
    patch: bool,
) -> Result<Reply, ArmError> {
    let (key, id, name, _) = target_parts(target);
    names::template(&name, "imageTemplateName")?;
    let mut st = ctx.arm.lock();
    st.settle(ctx.now);
    let existing = st.resources.get(&key).cloned();
    if let Some(r) = &existing {
        busy(&st, &key, ctx.now, &r.name)?;
        if r.run.as_ref().is_some_and(|run| run.outcome.is_none()) {
            return Err(ArmError::conflict_in_progress(&r.name));
        }
    }
    let (loc, shown) = require_location(&body, existing.as_ref(), patch)?;
    let p = props(&body);
    let mut newp = existing
        .as_ref()
        .map(|r| r.body["properties"].clone())
        .unwrap_or(json!({}));
    if patch {
        // ImageTemplateUpdateParameters: identity, tags, properties.distribute, properties.vmProfile.
        // distribute is a list (replaced); vmProfile merges, as every PATCH does.
        if let Some(v) = p.get("distribute").filter(|v| !v.is_null()) {
            newp["distribute"] = v.clone();
        }
        if let Some(v) = p.get("vmProfile") {
            merge_patch(&mut newp["vmProfile"], v);
        }
    } else {
        if let Some(r) = &existing {
            // Only distribute and vmProfile may differ on a re-PUT [obs: "Update/Upgrade of image
            // templates is currently not supported"].
            for k in [
                "source",
                "customize",
                "validate",
                "buildTimeoutInMinutes",
                "stagingResourceGroup",
                "optimize",
            ] {
                // The read-only source.exactVersion a run filled in is not the user's change.
                let without_exact = |v: &Value| {
                    let mut v = v.clone();
                    if let Some(o) = v.as_object_mut() {
                        o.remove("exactVersion");
                    }
                    v
                };
                let old = &without_exact(&r.body["properties"][k]);
                let new = &without_exact(&p[k]);
                let same = old == new
                    || (new.is_null() && (old.is_null() || k == "buildTimeoutInMinutes"));
                if !same {
                    return Err(ArmError::new(409, "PropertyChangeNotAllowed", format!("Update/Upgrade of image templates is currently not supported. Changing property 'properties.{k}' is not allowed.")).with_target(&format!("properties.{k}")));
                }
            }
        }
        if let Some(o) = p.as_object() {
            for (k, v) in o {
                if !matches!(
                    k.as_str(),
                    "provisioningState"
                        | "provisioningError"
                        | "lastRunStatus"
                        | "exactStagingResourceGroup"
                ) {
                    newp[k] = v.clone();
                }
            }
        }
    }
    // Validation.
    let identity = body
        .get("identity")
        .cloned()
        .or_else(|| existing.as_ref().map(|r| r.body["identity"].clone()));
    let identity = identity
        .filter(|i| i.is_object())
        .ok_or_else(|| ArmError::required("identity", "identity"))?;
    enum_check(
        identity["type"].as_str().or(Some("")),
        &["UserAssigned", "None"],
        "identity.type",
        "identity.type",
    )?;
    let src = &newp["source"];
    if !src.is_object() {
        return Err(ArmError::required("source", "properties.source"));
    }
    enum_check(
        src["type"].as_str().or(Some("")),
        &["PlatformImage", "ManagedImage", "SharedImageVersion"],
        "source.type",
        "properties.source.type",
    )?;
    let dist = newp["distribute"].as_array().cloned().unwrap_or_default();
    if dist.is_empty() {
        return Err(ArmError::required("distribute", "properties.distribute"));
    }
    for d in &dist {
        enum_check(
            d["type"].as_str().or(Some("")),
            &["ManagedImage", "SharedImage", "VHD"],
            "distribute.type",
            "properties.distribute.type",
        )?;
        let ron = d["runOutputName"].as_str().ok_or_else(|| {
            ArmError::required("runOutputName", "properties.distribute.runOutputName")
        })?;
        names::template(ron, "runOutputName")?;
        match d["type"].as_str() {
            Some("ManagedImage")
                if d["imageId"].as_str().is_none() || d["location"].as_str().is_none() =>
            {
                return Err(ArmError::required(
                    "imageId",
                    "properties.distribute.imageId",
                ));
            }
            Some("SharedImage") if d["galleryImageId"].as_str().is_none() => {
                return Err(ArmError::required(
                    "galleryImageId",
                    "properties.distribute.galleryImageId",
                ));
            }
            _ => {}
        }
    }
    if let Some(t) = newp["buildTimeoutInMinutes"].as_i64()
        && !(0..=960).contains(&t)
    {
        return Err(ArmError::invalid_parameter(
            format!(
                "The value {t} of parameter 'buildTimeoutInMinutes' is out of range. The value must be between 0 and 960, inclusive."
            ),
            "properties.buildTimeoutInMinutes",
        ));
    }
    if newp["buildTimeoutInMinutes"].is_null() {
        newp["buildTimeoutInMinutes"] = json!(0);
    }
    if newp["vmProfile"].is_null() {
        newp["vmProfile"] = json!({"vmSize": "", "osDiskSizeGB": 0});
    }
    if newp["exactStagingResourceGroup"].is_null() {
        let rg = match target {
            Target::Item { rg, .. } => rg.clone(),
            _ => String::new(),
        };
        newp["exactStagingResourceGroup"] = json!(format!(
            "/subscriptions/{}/resourceGroups/IT_{rg}_{name}_{}",
            ctx.sub,
            uuid::Uuid::new_v4()
        ));
    }
    let mut ident_out = identity.clone();
    if let Some(map) = ident_out["userAssignedIdentities"].as_object_mut() {
        for (_, v) in map.iter_mut() {
            if v.get("principalId").is_none() {
                *v = json!({"principalId": ctx.arm.identity.object_id, "clientId": ctx.arm.identity.client_id});
            }
        }
    }
    let mut out = json!({"id": existing.as_ref().map(|r| r.id.clone()).unwrap_or(id), "name": name, "type": "Microsoft.VirtualMachineImages/imageTemplates", "location": shown, "identity": ident_out, "properties": newp});
    merge_tags(&mut out, &body, existing.as_ref());
    let res = new_resource(Kind::Template, target, &ctx.sub, &loc, out);
    let mut reply = commit_work(
        ctx,
        &mut st,
        res,
        (Work::TemplateCreate, Work::TemplateUpdate),
        OpFamily::ImageBuilder,
        true,
        false,
    );
    if patch {
        // Image Builder PATCH: 202 with Azure-AsyncOperation (final-state-via azure-async-operation).
        reply.status = 202;
        reply.body = None;
    }
    Ok(reply)
}
