//! The storage profile of a gallery image version: exactly one source style (managed image,
//! another version, or VHDs per disk), the data disks' LUNs, and the VHDs to check in storage.

use serde_json::Value;

use super::image_rules::data_disk_luns;
use crate::error::ArmError;
use crate::model::{Kind, Resource, State};

/// The source of a version.
#[derive(Debug, Clone)]
pub enum VersionSource {
    Image(String),
    Vhd { uri: String },
    Version(String),
}

/// A VHD a new version is made from, to be checked in storage.
pub(crate) struct VhdSource {
    pub uri: String,
    /// The error target naming the property that holds it.
    pub target: String,
    /// `None` for the OS disk, else the index in `dataDiskImages`.
    pub data_disk: Option<usize>,
}

/// What the storage profile says, checked.
pub(crate) struct Sources {
    /// The storage profile to store (on update, the stored one overlaid with what was sent).
    pub sp: Value,
    /// The VHDs a new version is made from (empty on update and for other sources).
    pub vhds: Vec<VhdSource>,
    /// The source's size in bytes, when it is a managed image or version that knows it.
    pub src_size: Option<u64>,
    /// A managed image source's data disks.
    pub image_data: Option<Vec<Value>>,
}

/// Checks the storage profile of a version of definition `def` in region `loc`; `existing` is the
/// version being updated, if any, and `p` the request's properties.
pub(crate) fn storage_sources(
    st: &State,
    def: &Resource,
    existing: Option<&Resource>,
    p: &Value,
    loc: &str,
) -> Result<Sources, ArmError> {
    // Storage profile: required on create; on update it must not change the source.
    let sp = match (p["storageProfile"].as_object(), existing) {
        // On update, what is sent overlays the stored profile (disks keep their computed sizes).
        (Some(given), Some(r)) => {
            let mut sp = r.body["properties"]["storageProfile"].clone();
            for (k, v) in given {
                if !(k == "osDiskImage" || k == "dataDiskImages") || sp[k].is_null() {
                    sp[k] = v.clone();
                }
            }
            sp
        }
        (Some(_), None) => p["storageProfile"].clone(),
        (None, Some(r)) => r.body["properties"]["storageProfile"].clone(),
        (None, None) => {
            return Err(ArmError::required(
                "storageProfile",
                "galleryImageVersion.properties.storageProfile",
            ));
        }
    };
    data_disk_luns(&sp)?;
    if let (Some(r), Some(given)) = (existing, p["storageProfile"]["dataDiskImages"].as_array()) {
        // The data disk layout (LUNs and their sources) cannot change [doc].
        let layout = |list: &[Value]| {
            let mut l: Vec<(i64, String)> = list
                .iter()
                .map(|d| {
                    (
                        d["lun"].as_i64().unwrap_or(-1),
                        d["source"]["uri"]
                            .as_str()
                            .or(d["source"]["id"].as_str())
                            .unwrap_or("")
                            .to_lowercase(),
                    )
                })
                .collect();
            l.sort();
            l
        };
        let old = r.body["properties"]["storageProfile"]["dataDiskImages"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if layout(given) != layout(&old) {
            return Err(ArmError::property_change(
                "galleryImageVersion.properties.storageProfile.dataDiskImages",
            ));
        }
    }
    let top = sp["source"].clone();
    let os_src = sp["osDiskImage"]["source"].clone();
    let has_top =
        top["id"].is_string() || top["virtualMachineId"].is_string() || top["uri"].is_string();
    let has_disk = os_src.is_object() && (os_src["uri"].is_string() || os_src["id"].is_string());
    let data_sources: Vec<(usize, &Value)> = sp["dataDiskImages"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .filter(|(_, d)| d["source"].is_object())
        .map(|(i, d)| (i, &d["source"]))
        .collect();
    if has_top && !data_sources.is_empty() {
        return Err(ArmError::invalid_parameter(
            "The gallery artifact version source can only be specified either directly under storageProfile or within individual OS or data disks. One and only one source type (user image, snapshot, disk, virtual machine) can be provided.",
            "galleryImageVersion.properties.storageProfile",
        ));
    }
    if has_top && has_disk {
        return Err(ArmError::invalid_parameter(
            "The gallery artifact version source can only be specified either directly under storageProfile or within individual OS or data disks. One and only one source type (user image, snapshot, disk, virtual machine) can be provided.",
            "galleryImageVersion.properties.storageProfile",
        ));
    }
    if !has_top && !has_disk {
        return Err(ArmError::required(
            "source",
            "galleryImageVersion.properties.storageProfile.source",
        ));
    }
    if top["uri"].is_string() {
        return Err(ArmError::invalid_parameter(
            "The property 'galleryImageVersion.properties.storageProfile.source.uri' is not supported. Specify the VHD under osDiskImage.source.",
            "galleryImageVersion.properties.storageProfile.source.uri",
        ));
    }
    let mut vhds = Vec::new();
    let mut src_size = None;
    let mut image_data: Option<Vec<Value>> = None;
    let source = if let Some(id) = top["id"].as_str() {
        if id
            .to_lowercase()
            .contains("/microsoft.compute/virtualmachines/")
        {
            return Err(ArmError::invalid_parameter(
                format!(
                    "The gallery image version source id: '{id}' must be specified in 'galleryImageVersion.properties.storageProfile.source.virtualMachineId'."
                ),
                "galleryImageVersion.properties.storageProfile.source.id",
            ));
        }
        if id.to_lowercase().contains("/galleries/") {
            VersionSource::Version(id.to_string())
        } else {
            VersionSource::Image(id.to_string())
        }
    } else if let Some(vm) = top["virtualMachineId"].as_str() {
        return Err(ArmError::invalid_parameter(
            format!(
                "Source {vm} is not found. Please check source exists, and is in the same region as gallery image version being created."
            ),
            "galleryImageVersion.properties.storageProfile.source.virtualMachineId",
        ));
    } else if let Some(uri) = os_src["uri"].as_str() {
        if os_src["storageAccountId"].as_str().is_none() {
            return Err(ArmError::required(
                "storageAccountId",
                "galleryImageVersion.properties.storageProfile.osDiskImage.source.storageAccountId",
            ));
        }
        VersionSource::Vhd {
            uri: uri.to_string(),
        }
    } else {
        let id = os_src["id"].as_str().unwrap_or("");
        return Err(ArmError::invalid_parameter(
            format!(
                "Source {id} is not found. Please check source exists, and is in the same region as gallery image version being created."
            ),
            "galleryImageVersion.properties.storageProfile.osDiskImage.source.id",
        ));
    };
    if let Some(r) = existing {
        let old = &r.body["properties"]["storageProfile"];
        let pairs = [
            (
                old["source"]["id"].as_str().map(str::to_lowercase),
                top["id"].as_str().map(str::to_lowercase),
                "galleryImageVersion.properties.storageProfile.source.id",
            ),
            (
                old["osDiskImage"]["source"]["uri"]
                    .as_str()
                    .map(str::to_string),
                os_src["uri"].as_str().map(str::to_string),
                "galleryImageVersion.properties.storageProfile.osDiskImage.source.uri",
            ),
        ];
        for (a, b, label) in pairs {
            if a != b {
                return Err(ArmError::property_change(label));
            }
        }
    } else {
        // Source checks on create.
        let defp = &def.body["properties"];
        match &source {
            VersionSource::Image(id) => {
                let Some(img) = st
                    .resources
                    .get(&id.to_lowercase())
                    .filter(|r| r.kind == Kind::Image)
                else {
                    return Err(ArmError::invalid_parameter(
                        format!(
                            "Source {id} is not found. Please check source exists, and is in the same region as gallery image version being created."
                        ),
                        "galleryImageVersion.properties.storageProfile.source.id",
                    ));
                };
                if img.location != loc {
                    return Err(ArmError::invalid_parameter(
                        format!(
                            "Source {id} is not found. Please check source exists, and is in the same region as gallery image version being created."
                        ),
                        "galleryImageVersion.properties.storageProfile.source.id",
                    ));
                }
                let os = &img.body["properties"]["storageProfile"]["osDisk"];
                if os["osState"] != defp["osState"] {
                    return Err(ArmError::invalid_parameter(
                        format!(
                            "Cannot create Gallery Image Version from: {id} since the OS State in the parent gallery image ({}) is not {}.",
                            defp["osState"].as_str().unwrap_or(""),
                            os["osState"].as_str().unwrap_or("")
                        ),
                        "galleryImageVersion.properties.storageProfile.source.id",
                    ));
                }
                if os["osType"] != defp["osType"] {
                    return Err(ArmError::invalid_parameter(
                        format!(
                            "Cannot create Gallery Image Version from: {id} since the OS type in the parent gallery image ({}) is not {}.",
                            defp["osType"].as_str().unwrap_or(""),
                            os["osType"].as_str().unwrap_or("")
                        ),
                        "galleryImageVersion.properties.storageProfile.source.id",
                    ));
                }
                let ihvg = img.body["properties"]["hyperVGeneration"]
                    .as_str()
                    .unwrap_or("V1");
                let dhvg = defp["hyperVGeneration"].as_str().unwrap_or("V1");
                if !ihvg.eq_ignore_ascii_case(dhvg) {
                    return Err(ArmError::invalid_parameter(
                        format!(
                            "The Hyper-V generation of the source ({ihvg}) does not match the Hyper-V generation of the parent gallery image ({dhvg})."
                        ),
                        "galleryImageVersion.properties.storageProfile.source.id",
                    ));
                }
                src_size = img.vhd_size;
                image_data = Some(
                    img.body["properties"]["storageProfile"]["dataDisks"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default(),
                );
            }
            VersionSource::Version(id) => {
                let Some(v) = st
                    .resources
                    .get(&id.to_lowercase())
                    .filter(|r| r.kind == Kind::Version)
                else {
                    return Err(ArmError::invalid_parameter(
                        format!("Source was not found: {id}."),
                        "galleryImageVersion.properties.storageProfile.source.id",
                    ));
                };
                src_size = v.vhd_size;
            }
            VersionSource::Vhd { uri } => {
                vhds.push(VhdSource {
                    uri: uri.clone(),
                    target: "galleryImageVersion.properties.storageProfile.osDiskImage.source.uri"
                        .into(),
                    data_disk: None,
                });
                for (i, src) in &data_sources {
                    let target =
                        "galleryImageVersion.properties.storageProfile.dataDiskImages.source";
                    let Some(duri) = src["uri"].as_str() else {
                        return Err(ArmError::required("uri", &format!("{target}.uri")));
                    };
                    if src["storageAccountId"].as_str().is_none() {
                        return Err(ArmError::required(
                            "storageAccountId",
                            &format!("{target}.storageAccountId"),
                        ));
                    }
                    // arm-contract.md lists "OS and data disks cannot point to the same blob",
                    // but Azure's own GalleryImageVersion_Create_WithVHD example does just that, so
                    // it is not refused here.
                    vhds.push(VhdSource {
                        uri: duri.to_string(),
                        target: format!("{target}.uri"),
                        data_disk: Some(*i),
                    });
                }
            }
        }
    }
    Ok(Sources {
        sp,
        vhds,
        src_size,
        image_data,
    })
}
