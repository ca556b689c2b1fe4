//! Microsoft.Compute/images: managed images from a VHD blob (create, tags-only PATCH).

use serde_json::{Value, json};

use super::common::*;
use super::route::Target;
use crate::arm::Reply;
use crate::config::Work;
use crate::error::ArmError;
use crate::model::{Kind, OpFamily};
use crate::names;

pub(crate) async fn put_image(
    ctx: &Ctx<'_>,
    target: &Target,
    body: Value,
    patch: bool,
) -> Result<Reply, ArmError> {
    let (key, id, name, _) = target_parts(target);
    names::image(&name)?;
    // Phase 1: validate against the state.
    let (plan, blob_uris) = {
        let mut st = ctx.arm.lock();
        st.settle(ctx.now);
        let existing = st.resources.get(&key).cloned();
        if let Some(r) = &existing {
            busy(&st, &key, ctx.now, &r.name)?;
        }
        let (loc, _) = require_location(&body, existing.as_ref(), patch)?;
        let mut out =
            json!({"id": id, "name": name, "type": "Microsoft.Compute/images", "location": loc});
        if patch {
            // Only tags may be updated [spec].
            let Some(r) = &existing else {
                unreachable_patch()?
            };
            out = r.body.clone();
            merge_tags(&mut out, &body, Some(r));
            (Some((out, loc, r.vhd_size)), Vec::new())
        } else {
            let os = &props(&body)["storageProfile"]["osDisk"];
            if props(&body)["storageProfile"].is_null() {
                return Err(ArmError::required(
                    "storageProfile",
                    "properties.storageProfile",
                ));
            }
            if os.is_null() {
                return Err(ArmError::required(
                    "osDisk",
                    "properties.storageProfile.osDisk",
                ));
            }
            let os_type = os["osType"].as_str().ok_or_else(|| {
                ArmError::required("osType", "properties.storageProfile.osDisk.osType")
            })?;
            enum_check(
                Some(os_type),
                &["Windows", "Linux"],
                "osType",
                "properties.storageProfile.osDisk.osType",
            )?;
            let os_state = os["osState"].as_str().ok_or_else(|| {
                ArmError::required("osState", "properties.storageProfile.osDisk.osState")
            })?;
            enum_check(
                Some(os_state),
                &["Generalized", "Specialized"],
                "osState",
                "properties.storageProfile.osDisk.osState",
            )?;
            let hvg = props(&body)["hyperVGeneration"].as_str().unwrap_or("V1");
            enum_check(
                Some(hvg),
                &["V1", "V2"],
                "hyperVGeneration",
                "properties.hyperVGeneration",
            )?;
            enum_check(
                os["caching"].as_str(),
                &["None", "ReadOnly", "ReadWrite"],
                "caching",
                "properties.storageProfile.osDisk.caching",
            )?;
            enum_check(
                os["storageAccountType"].as_str(),
                &[
                    "Standard_LRS",
                    "Premium_LRS",
                    "StandardSSD_LRS",
                    "Premium_ZRS",
                    "StandardSSD_ZRS",
                    "PremiumV2_LRS",
                ],
                "storageAccountType",
                "properties.storageProfile.osDisk.storageAccountType",
            )?;
            let blob = os["blobUri"].as_str().map(str::to_string);
            if blob.is_none() {
                if os["managedDisk"].is_object() || os["snapshot"].is_object() {
                    // INVENTED: devcloud models no managed disks or snapshots.
                    return Err(ArmError::invented(
                        400,
                        "DevcloudUnsupportedSource",
                        "devcloud supports managed images from a blobUri only (no managed disks or snapshots).",
                    ));
                }
                return Err(ArmError::invalid_parameter(
                    "At least one of blobUri, managedDisk or snapshot must be specified for the OS disk.",
                    "properties.storageProfile.osDisk",
                ));
            }
            // Echo the OS disk as given (other source references included), with Azure's defaults.
            let mut os_out = os.clone();
            os_out["caching"] = json!(os["caching"].as_str().unwrap_or("ReadWrite"));
            let mut data = props(&body)["storageProfile"]["dataDisks"].clone();
            if !data.is_array() {
                data = json!([]);
            }
            let mut blobs = vec![(
                blob.clone().unwrap_or_default(),
                "properties.storageProfile.osDisk.blobUri".to_string(),
                None,
            )];
            let mut luns = Vec::new();
            for (i, dd) in data.as_array().into_iter().flatten().enumerate() {
                let lun = dd["lun"].as_i64().ok_or_else(|| {
                    ArmError::required("lun", "properties.storageProfile.dataDisks.lun")
                })?;
                if luns.contains(&lun) {
                    return Err(ArmError::invalid_parameter(
                        format!("Duplicate LUN {lun} in data disks."),
                        "properties.storageProfile.dataDisks.lun",
                    ));
                }
                luns.push(lun);
                if let Some(u) = dd["blobUri"].as_str() {
                    blobs.push((
                        u.to_string(),
                        "properties.storageProfile.dataDisks.blobUri".to_string(),
                        Some(i),
                    ));
                }
            }
            out["properties"] = json!({
                "storageProfile": {"osDisk": os_out, "dataDisks": data,
                    "zoneResilient": props(&body)["storageProfile"]["zoneResilient"].as_bool().unwrap_or(false)},
                "hyperVGeneration": hvg,
            });
            merge_tags(&mut out, &body, existing.as_ref());
            if let Some(r) = &existing {
                for (path, label) in [
                    (
                        "/properties/storageProfile/osDisk/blobUri",
                        "image.properties.storageProfile.osDisk.blobUri",
                    ),
                    (
                        "/properties/storageProfile/osDisk/osType",
                        "image.properties.storageProfile.osDisk.osType",
                    ),
                    (
                        "/properties/storageProfile/osDisk/osState",
                        "image.properties.storageProfile.osDisk.osState",
                    ),
                    (
                        "/properties/hyperVGeneration",
                        "image.properties.hyperVGeneration",
                    ),
                ] {
                    if r.body.pointer(path) != out.pointer(path) {
                        return Err(ArmError::property_change(label));
                    }
                }
                (Some((out, loc, r.vhd_size)), Vec::new())
            } else {
                (Some((out, loc, None)), blobs)
            }
        }
    };
    let Some((mut out, loc, mut size)) = plan else {
        unreachable_patch()?
    };
    // Phase 2: the source blob must be a fixed VHD (checked without holding the state).
    if let Some(blob) = ctx.arm.blob.as_ref() {
        for (uri, target, data_index) in blob_uris {
            let s = blob.check_vhd(&uri, &target).await?;
            match data_index {
                None => size = Some(s),
                Some(i) => {
                    let dd = &mut out["properties"]["storageProfile"]["dataDisks"][i];
                    if dd["diskSizeGB"].is_null() {
                        dd["diskSizeGB"] = json!(s.div_ceil(1 << 30));
                    }
                }
            }
        }
    }
    if let Some(s) = size
        && out["properties"]["storageProfile"]["osDisk"]["diskSizeGB"].is_null()
        && !patch
    {
        out["properties"]["storageProfile"]["osDisk"]["diskSizeGB"] = json!(s.div_ceil(1 << 30));
    }
    // Phase 3: commit.
    let mut st = ctx.arm.lock();
    if let Some(r) = st.resources.get(&key) {
        busy(&st, &key, ctx.now, &r.name)?;
    } else if patch {
        return Err(ArmError::not_found(
            &format!("Microsoft.Compute/images/{name}"),
            "",
        ));
    }
    let mut res = new_resource(Kind::Image, target, &ctx.sub, &loc, out);
    res.vhd_size = size;
    // Compute answers image PUT/PATCH with Azure-AsyncOperation only.
    Ok(commit_work(
        ctx,
        &mut st,
        res,
        (Work::ImageCreate, Work::ImageUpdate),
        OpFamily::Compute,
        true,
        false,
    ))
}
