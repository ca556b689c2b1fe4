//! Image Builder distribution targets: the VHD a build writes into Azurite, a managed image, and a
//! gallery image version (named by the template's versioning scheme), created as Image Builder would.

use serde_json::{Value, json};

use super::replication::{WantRegion, schedule};
use crate::arm::{Arm, now};
use crate::model::{Kind, OpFamily, Operation, Resource, Verb, fmt_time};
use crate::names;

/// Virtual size of the VHDs the simulated builds produce in tests ([`crate::ArmConfig::fast`]'s
/// `image_builder_vhd_bytes`).
pub const OUTPUT_VHD_SIZE: u64 = 4 * 1024 * 1024;
/// Container (in the Azurite account) the simulated builds write VHDs into when the template names no
/// URI: Azure writes them into a storage account in the run's staging resource group.
pub const OUTPUT_CONTAINER: &str = "imagebuilder";

pub(crate) fn split_blob_uri(arm: &Arm, uri: &str) -> Option<(String, String)> {
    let mapped = arm.blob.as_ref()?.map_uri(uri)?;
    let rest = mapped
        .strip_prefix(arm.blob.as_ref()?.endpoint())?
        .trim_start_matches('/');
    let (c, b) = rest.split_once('/')?;
    Some((c.to_string(), b.to_string()))
}

/// Writes the OS disk a build leaves: a fixed VHD of `size` bytes laid out to boot as `boot` says,
/// made with qemu-img and uploaded as a page blob.
pub(crate) async fn write_vhd(
    arm: &Arm,
    container: &str,
    name: &str,
    size: u64,
    boot: crate::osdisk::Boot<'_>,
) -> Result<String, String> {
    match &arm.blob {
        Some(blob) => {
            let disk = crate::qemu::fixed_vhd(size, &crate::osdisk::layout(size, boot)).await?;
            blob.write_page_blob(container, name, &disk)
                .await
                .map_err(|e| format!("{e}"))
        }
        None => Ok(format!(
            "https://devcloud.blob.core.windows.net/{container}/{name}"
        )),
    }
}

pub(crate) fn create_image(
    arm: &Arm,
    template: &Resource,
    d: &Value,
    vhd: &str,
    (hvg, os_type): (&str, &str),
    size: u64,
) -> Result<String, String> {
    let id = d["imageId"].as_str().unwrap_or("").to_string();
    let loc =
        names::region(d["location"].as_str().unwrap_or(""), "images").map_err(|e| e.message)?;
    let name = id.rsplit('/').next().unwrap_or("").to_string();
    let rg = id.split('/').nth(4).unwrap_or("").to_string();
    let mut body = json!({"id": id, "name": name, "type": "Microsoft.Compute/images", "location": loc,
        "properties": {"storageProfile": {"osDisk": {"osType": os_type, "osState": "Generalized", "blobUri": vhd, "caching": "ReadWrite", "diskSizeGB": gib(size)}, "dataDisks": [], "zoneResilient": false}, "hyperVGeneration": hvg}});
    if let Some(t) = d.get("artifactTags").filter(|t| t.is_object()) {
        body["tags"] = t.clone();
    }
    let mut st = arm.lock();
    if !super::resources::group_exists(&st, &template.subscription, &rg) {
        return Err(format!(
            "BadManagedImageDistribute: Resource group '{rg}' of the managed image '{id}' could not be found."
        ));
    }
    st.resources.insert(
        id.to_lowercase(),
        Resource {
            kind: Kind::Image,
            id: id.clone(),
            name,
            subscription: template.subscription.clone(),
            resource_group: rg,
            location: loc,
            body,
            last_op: None,
            regions: Vec::new(),
            vhd_size: Some(size),
            run: None,
            run_outputs: Vec::new(),
        },
    );
    drop(st);
    // Image Builder writes the image through ARM: its write raises an event as any other.
    if let Some(request) = run_request(arm, template, &id) {
        arm.events.emit(
            &arm.identity.tenant_id,
            &template.subscription,
            &id,
            (Verb::Create, crate::model::OpStatus::Succeeded),
            &request,
        );
    }
    Ok(id)
}

/// The request Image Builder writes a distributed resource with, on behalf of the template's run
/// (`None` while resource events are off).
fn run_request(
    arm: &Arm,
    template: &Resource,
    resource_id: &str,
) -> Option<crate::events::RequestInfo> {
    if !arm.events.enabled() {
        return None;
    }
    let run = template
        .run
        .as_ref()
        .and_then(|r| arm.events.request_of(&r.op_id))
        .unwrap_or_default();
    Some(crate::events::RequestInfo::on_behalf_of(&run, resource_id))
}

/// The version a SharedImage distribution creates (`versioning` of the distributor):
/// `{scheme: Latest}` = one past the highest version, within `major` when it is set (≥ 0; -1 = unset),
/// or `{major}.0.0` when that major has none yet; `{scheme: Source}` = the source's version when it
/// is a `major.minor.patch` (otherwise as Latest).
pub(crate) fn next_version(
    st: &crate::model::State,
    def_key: &str,
    versioning: &Value,
    source_version: Option<&str>,
) -> String {
    let triple = |name: &str| {
        let v: Vec<u64> = name.split('.').filter_map(|p| p.parse().ok()).collect();
        (v.len() == 3 && name.split('.').count() == 3).then(|| (v[0], v[1], v[2]))
    };
    if versioning["scheme"]
        .as_str()
        .is_some_and(|s| s.eq_ignore_ascii_case("Source"))
        && let Some(v) = source_version.filter(|v| triple(v).is_some())
    {
        return v.to_string();
    }
    let major = versioning["major"].as_i64().filter(|m| *m >= 0);
    let prefix = format!("{def_key}/versions/");
    let max = st
        .resources
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .filter_map(|(_, r)| triple(&r.name))
        .filter(|(a, _, _)| major.is_none_or(|m| *a == m as u64))
        .max();
    match (max, major) {
        (Some((a, b, c)), _) => format!("{a}.{b}.{}", c + 1),
        (None, Some(m)) => format!("{m}.0.0"),
        (None, None) => "1.0.0".into(),
    }
}

pub(crate) fn create_version(
    arm: &Arm,
    template: &Resource,
    d: &Value,
    vhd: &str,
    (source_version, size): (Option<&str>, u64),
    fail_regions: &[(String, String)],
) -> Result<String, String> {
    let gid = d["galleryImageId"].as_str().unwrap_or("").to_string();
    let t = now();
    let mut st = arm.lock();
    st.settle(t);
    let lower = gid.to_lowercase();
    let (def_key, explicit) = match lower.rsplit_once("/versions/") {
        Some((def, v)) => (
            def.to_string(),
            Some(gid[gid.len() - v.len()..].to_string()),
        ),
        None => (lower.clone(), None),
    };
    let Some(def) = st
        .resources
        .get(&def_key)
        .filter(|r| r.kind == Kind::Definition)
        .cloned()
    else {
        return Err(format!(
            "BadSharedImageDistribute: the gallery image '{gid}' was not found."
        ));
    };
    let vname =
        explicit.unwrap_or_else(|| next_version(&st, &def_key, &d["versioning"], source_version));
    let vid = format!("{}/versions/{vname}", def.id);
    if st.resources.contains_key(&vid.to_lowercase()) {
        return Err(format!(
            "BadSharedImageDistribute: the image version '{vid}' already exists."
        ));
    }
    let mut want = Vec::new();
    let regions = d["targetRegions"].as_array().cloned().unwrap_or_default();
    for r in &regions {
        let name = r["name"].as_str().unwrap_or("");
        let norm = names::region(name, "galleries/images/versions").map_err(|e| e.message)?;
        want.push(WantRegion {
            name: name.to_string(),
            norm,
            replicas: r["replicaCount"].as_i64().unwrap_or(1),
            sat: r["storageAccountType"]
                .as_str()
                .unwrap_or("Standard_LRS")
                .to_string(),
        });
    }
    for r in d["replicationRegions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        if let Some(name) = r.as_str() {
            let norm = names::region(name, "galleries/images/versions").map_err(|e| e.message)?;
            want.push(WantRegion {
                name: name.to_string(),
                norm,
                replicas: 1,
                sat: "Standard_LRS".into(),
            });
        }
    }
    if !want.iter().any(|w| w.norm == def.location) {
        want.insert(
            0,
            WantRegion {
                name: def.body["location"]
                    .as_str()
                    .unwrap_or(&def.location)
                    .to_string(),
                norm: def.location.clone(),
                replicas: 1,
                sat: "Standard_LRS".into(),
            },
        );
    }
    let mut sched = schedule(arm, t, &def.location, &want, &[], size);
    // Injected replication failures (a `failRegion` rule on the run).
    let mut error = None;
    for (norm, details) in fail_regions {
        if let Some(r) = sched.iter_mut().find(|r| &r.norm == norm) {
            r.failed = Some(details.clone());
            // INVENTED code, as for a version PUT; Azure puts the reason in replicationStatus.
            error = Some(crate::error::ArmError::invented(
                400,
                "ReplicationFailed",
                format!("Replication to region '{}' failed: {details}", r.name),
            ));
        }
    }
    let end = sched.iter().map(|r| r.end).max().unwrap_or(t);
    let target_regions: Vec<Value> = want.iter().map(|w| json!({"name": w.name, "regionalReplicaCount": w.replicas, "storageAccountType": w.sat, "excludeFromLatest": false})).collect();
    let rg = def.resource_group.clone();
    let mut body = json!({"id": vid, "name": vname, "type": "Microsoft.Compute/galleries/images/versions",
    "location": def.body["location"].clone(),
    "properties": {
        "publishingProfile": {"targetRegions": target_regions, "replicaCount": 1, "excludeFromLatest": d["excludeFromLatest"].as_bool().unwrap_or(false),
            "publishedDate": fmt_time(t), "storageAccountType": "Standard_LRS"},
        "storageProfile": {"osDiskImage": {"hostCaching": "ReadOnly", "sizeInGB": gib(size), "source": {"uri": vhd,
            "storageAccountId": format!("/subscriptions/{}/resourceGroups/{rg}/providers/Microsoft.Storage/storageAccounts/devstoreaccount1", template.subscription)}}},
        "safetyProfile": {"allowDeletionOfReplicatedLocations": true, "reportedForPolicyViolation": false}
    }});
    if let Some(tags) = d.get("artifactTags").filter(|t| t.is_object()) {
        body["tags"] = tags.clone();
    }
    let key = vid.to_lowercase();
    let op = Operation {
        id: uuid::Uuid::new_v4().to_string(),
        family: OpFamily::Caps,
        subscription: template.subscription.clone(),
        location: def.location.clone(),
        resource_key: key.clone(),
        resource_id: vid.clone(),
        verb: Verb::Create,
        kind: "ImageBuilder_Distribute".into(),
        start: t,
        end: Some(end),
        stalled: false,
        error,
        canceled: false,
        result: None,
    };
    st.resources.insert(
        key,
        Resource {
            kind: Kind::Version,
            id: vid.clone(),
            name: vname,
            subscription: template.subscription.clone(),
            resource_group: rg,
            location: def.location.clone(),
            body,
            last_op: Some(op.id.clone()),
            regions: sched,
            vhd_size: Some(size),
            run: None,
            run_outputs: Vec::new(),
        },
    );
    if let Some(request) = run_request(arm, template, &vid) {
        arm.events.track(&op, &vid, request);
    }
    st.add_op(op);
    Ok(vid)
}

/// A size in whole GiB, rounded up (as Azure reports disk sizes).
fn gib(size: u64) -> u64 {
    size.div_ceil(1 << 30)
}
