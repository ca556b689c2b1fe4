//! The VM image versions API (`VirtualMachineImages_List` / `_Get`, ComputeRP): the versions of a
//! platform image's publisher/offer/sku in a region, from the simulator's catalogue
//! ([`crate::platform`]), with `$top` and `$orderby` as Azure takes them.

use serde_json::{Value, json};

use super::common::Ctx;
use crate::arm::Reply;
use crate::error::ArmError;
use crate::names;
use crate::platform::PlatformImage;

/// [mem] Azure's answer for a publisher/offer/sku/version it does not offer in the region.
fn not_found() -> ArmError {
    ArmError::new(404, "NotFound", "Artifact: VMImage was not found.")
}

/// The id Azure gives a platform image version (Azure capitalizes these path segments).
fn version_id(sub: &str, region: &str, img: &PlatformImage, v: &str) -> String {
    format!(
        "/Subscriptions/{sub}/Providers/Microsoft.Compute/Locations/{region}/Publishers/{}/ArtifactTypes/VMImage/Offers/{}/Skus/{}/Versions/{v}",
        img.publisher, img.offer, img.sku
    )
}

/// `GET …/versions` (a JSON array, not a `{value}` page, as the spec says) or `GET …/versions/{v}`.
pub fn get(
    ctx: &Ctx,
    location: &str,
    [publisher, offer, sku]: [&str; 3],
    version: Option<&str>,
) -> Result<Reply, ArmError> {
    let region = names::region(location, "locations/publishers")?;
    let img = ctx
        .arm
        .platform_images()
        .iter()
        .find(|i| i.is(publisher, offer, sku) && i.offered_in(&region))
        .cloned()
        .ok_or_else(not_found)?;
    let Some(v) = version else {
        return list(ctx, &region, &img);
    };
    // `latest` is not a version of the API (only of an image reference).
    let v = img
        .versions
        .iter()
        .find(|x| x.eq_ignore_ascii_case(v))
        .ok_or_else(not_found)?;
    let features = if img.hyper_v_generation == "V2" {
        json!([{"name": "SecurityType", "value": "TrustedLaunchAndConfidentialVmSupported"},
            {"name": "IsAcceleratedNetworkSupported", "value": "True"}])
    } else {
        json!([{"name": "IsAcceleratedNetworkSupported", "value": "True"}])
    };
    Ok(Reply::json(
        200,
        json!({
            "name": v,
            "location": region,
            "id": version_id(&ctx.sub, &region, &img, v),
            "properties": {
                "hyperVGeneration": img.hyper_v_generation,
                "architecture": img.architecture,
                "replicaType": "Unmanaged",
                "disallowed": {"vmDiskType": "Unmanaged"},
                "automaticOSUpgradeProperties": {"automaticOSUpgradeSupported": false},
                "imageDeprecationStatus": {"imageState": "Active"},
                "features": features,
                "osDiskImage": {"operatingSystem": img.os_type},
                "dataDiskImages": []
            }
        }),
    ))
}

fn list(ctx: &Ctx, region: &str, img: &PlatformImage) -> Result<Reply, ArmError> {
    let mut versions = img.sorted_versions();
    if let Some(order) = ctx.req.q("$orderby") {
        // [mem] the versions list orders by `name` only, ascending unless `desc`.
        let words: Vec<String> = order
            .split_whitespace()
            .map(str::to_ascii_lowercase)
            .collect();
        match words
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            ["name"] | ["name", "asc"] => {}
            ["name", "desc"] => versions.reverse(),
            _ => {
                return Err(ArmError::invalid_parameter(
                    format!(
                        "The value '{order}' of parameter '$orderby' is invalid: only 'name' and 'name desc' are supported."
                    ),
                    "$orderby",
                ));
            }
        }
    }
    if let Some(top) = ctx.req.q("$top") {
        let n: usize = top.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
            ArmError::invalid_parameter(
                format!("The value '{top}' of parameter '$top' is invalid: a positive integer is required."),
                "$top",
            )
        })?;
        versions.truncate(n);
    }
    let items: Vec<Value> = versions
        .iter()
        .map(|v| json!({"name": v, "location": region, "id": version_id(&ctx.sub, region, img, v)}))
        .collect();
    Ok(Reply::json(200, Value::Array(items)))
}
