//! Image Builder runs: `run` and `cancel` actions, the simulated build (phases from the latency model),
//! and distribution: a real fixed VHD written into Azurite, a managed image, or a gallery image version.

use std::sync::Arc;

use serde_json::{Value, json};

use super::common::Ctx;
use super::replication::{WantRegion, schedule};
use super::route::Target;
use crate::arm::{Arm, Reply, now};
use crate::config::Work;
use crate::error::ArmError;
use crate::model::{Kind, OpFamily, Operation, Resource, Run, Verb, fmt_time};
use crate::names;

/// Virtual size of the VHDs the simulated builds produce.
pub const OUTPUT_VHD_SIZE: u64 = 4 * 1024 * 1024;
/// Container the simulated builds write VHDs into when the template names no URI.
pub const OUTPUT_CONTAINER: &str = "imagebuilder";

pub fn action(ctx: &mut Ctx, target: &Target) -> Result<Reply, ArmError> {
    let Target::TemplateAction {
        rg,
        key,
        name,
        action,
    } = target
    else {
        return Err(ArmError::new(400, "InvalidRequest", "not an action"));
    };
    let mut st = ctx.arm.lock();
    st.settle(ctx.now);
    let Some(r) = st.resources.get(key).cloned() else {
        return Err(ArmError::not_found(
            &format!("Microsoft.VirtualMachineImages/imageTemplates/{name}"),
            rg,
        ));
    };
    if let Some(op) = st.running_op(key, ctx.now)
        && op.verb != Verb::Action
    {
        return Err(ArmError::conflict_in_progress(&r.name));
    }
    let running = r.run.as_ref().is_some_and(|run| run.outcome.is_none());
    let last_op = r.last_op.clone();
    if *action == "Run" {
        if running {
            return Err(ArmError::conflict_in_progress(&r.name));
        }
        let d = ctx.work(Work::TemplateRun, &r.location, 1);
        let op = ctx.start_op(&mut st, OpFamily::ImageBuilder, key, Verb::Action, None);
        if let Some(res) = st.resources.get_mut(key) {
            // The template itself stays Succeeded while it runs.
            res.last_op = last_op;
            res.run = Some(Run {
                op_id: op.id.clone(),
                start: ctx.now,
                planned_end: ctx.now + d,
                cancel_requested: None,
                outcome: None,
            });
            res.run_outputs.clear();
        }
        tokio::spawn(run_task(ctx.arm.clone(), key.clone(), op.id.clone(), d));
        return Ok(ctx.lro(Reply::empty(202), &op, true, false));
    }
    // Cancel.
    if !running {
        // INVENTED code: cancelling a template that is not running.
        return Err(ArmError::invented(
            409,
            "ImageTemplateNotRunning",
            format!("Image template '{name}' has no run in progress to cancel."),
        ));
    }
    let d = ctx.work(Work::TemplateCancel, &r.location, 1);
    let end = ctx.now + d;
    let op = ctx.start_op(&mut st, OpFamily::ImageBuilder, key, Verb::Action, Some(d));
    let mut run_op = None;
    if let Some(res) = st.resources.get_mut(key) {
        res.last_op = last_op;
        if let Some(run) = res.run.as_mut() {
            run.cancel_requested = Some(ctx.now);
            run.outcome = Some((
                "Canceled".into(),
                "The build was canceled by the user.".into(),
                end,
            ));
            run_op = Some(run.op_id.clone());
        }
    }
    if let Some(op) = run_op.and_then(|id| st.operations.get_mut(&id)) {
        op.end = Some(end);
        op.canceled = true;
    }
    Ok(ctx.lro(Reply::empty(202), &op, true, false))
}

pub fn run_outputs(
    ctx: &Ctx,
    key: &str,
    name: &str,
    rg: &str,
    output: Option<&str>,
) -> Result<Reply, ArmError> {
    let mut st = ctx.arm.lock();
    st.settle(ctx.now);
    let Some(r) = st.resources.get(key) else {
        return Err(ArmError::not_found(
            &format!("Microsoft.VirtualMachineImages/imageTemplates/{name}"),
            rg,
        ));
    };
    match output {
        None => Ok(Reply::json(200, json!({"value": r.run_outputs}))),
        Some(o) => r
            .run_outputs
            .iter()
            .find(|v| {
                v["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(o))
            })
            .map(|v| Reply::json(200, v.clone()))
            .ok_or_else(|| {
                ArmError::not_found(
                    &format!("Microsoft.VirtualMachineImages/imageTemplates/{name}/runOutputs/{o}"),
                    rg,
                )
            }),
    }
}

async fn run_task(arm: Arc<Arm>, key: String, op_id: String, d: chrono::Duration) {
    tokio::time::sleep(d.to_std().unwrap_or_default()).await;
    // A stalled run waits for release.
    loop {
        let stalled = arm.lock().operations.get(&op_id).is_some_and(|o| o.stalled);
        if !stalled {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let snapshot = {
        let st = arm.lock();
        let Some(r) = st.resources.get(&key) else {
            return;
        };
        let Some(run) = &r.run else { return };
        if run.op_id != op_id || run.outcome.is_some() {
            return;
        }
        let injected = st.operations.get(&op_id).and_then(|o| o.error.clone());
        (r.clone(), injected)
    };
    let (template, injected) = snapshot;
    let (outputs, failures) = match injected {
        Some(e) => (Vec::new(), vec![e.message]),
        None => build(&arm, &template).await,
    };
    let t = now();
    let mut st = arm.lock();
    let state = if failures.is_empty() {
        "Succeeded"
    } else if outputs.is_empty() {
        "Failed"
    } else {
        "PartiallySucceeded"
    };
    let message = failures.join(" ");
    if let Some(r) = st.resources.get_mut(&key)
        && let Some(run) = r.run.as_mut()
        && run.op_id == op_id
        && run.outcome.is_none()
    {
        run.outcome = Some((state.to_string(), message.clone(), t));
        r.run_outputs = outputs;
    }
    if let Some(op) = st.operations.get_mut(&op_id)
        && !op.canceled
    {
        op.end = Some(t);
        if state == "Failed" && op.error.is_none() {
            // INVENTED code; the message is what lastRunStatus shows.
            op.error = Some(ArmError::invented(400, "ImageBuildFailed", message));
        }
    }
}

/// Runs the distribution of a template; returns run outputs and failure messages.
async fn build(arm: &Arc<Arm>, template: &Resource) -> (Vec<Value>, Vec<String>) {
    let p = &template.body["properties"];
    let mut outputs = Vec::new();
    let mut failures = Vec::new();
    // Source checks.
    let src = &p["source"];
    let mut hvg = "V1".to_string();
    let mut os_type = "Linux".to_string();
    {
        let st = arm.lock();
        match src["type"].as_str() {
            Some("ManagedImage") => {
                let id = src["imageId"].as_str().unwrap_or("");
                match st.resources.get(&id.to_lowercase()) {
                    Some(img) => {
                        hvg = img.body["properties"]["hyperVGeneration"]
                            .as_str()
                            .unwrap_or("V1")
                            .to_string();
                        os_type = img.body["properties"]["storageProfile"]["osDisk"]["osType"]
                            .as_str()
                            .unwrap_or("Linux")
                            .to_string();
                    }
                    None => {
                        return (
                            Vec::new(),
                            vec![format!(
                                "BadManagedImageSource: the source managed image '{id}' was not found."
                            )],
                        );
                    }
                }
            }
            Some("SharedImageVersion") => {
                let id = src["imageVersionId"].as_str().unwrap_or("");
                if !st.resources.contains_key(&id.to_lowercase()) {
                    return (
                        Vec::new(),
                        vec![format!(
                            "BadSharedImageVersionSource: the source image version '{id}' was not found."
                        )],
                    );
                }
            }
            _ => {}
        }
    }
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    for (i, d) in p["distribute"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let ron = d["runOutputName"].as_str().unwrap_or("output").to_string();
        let blob_name = format!("{}-{}-{i}.vhd", template.name, &run_id[..8]);
        let result = match d["type"].as_str() {
            Some("VHD") => {
                let (container, name) = d["uri"]
                    .as_str()
                    .and_then(|u| split_blob_uri(arm, u))
                    .unwrap_or_else(|| (OUTPUT_CONTAINER.to_string(), blob_name.clone()));
                write_vhd(arm, &container, &name)
                    .await
                    .map(|uri| (None, Some(uri)))
            }
            Some("ManagedImage") => match write_vhd(arm, OUTPUT_CONTAINER, &blob_name).await {
                Ok(uri) => {
                    create_image(arm, template, d, &uri, &hvg, &os_type).map(|id| (Some(id), None))
                }
                Err(e) => Err(e),
            },
            Some("SharedImage") => match write_vhd(arm, OUTPUT_CONTAINER, &blob_name).await {
                Ok(uri) => create_version(arm, template, d, &uri).map(|id| (Some(id), None)),
                Err(e) => Err(e),
            },
            other => Err(format!(
                "BadDistributeType: unsupported distribute type {other:?}."
            )),
        };
        match result {
            Ok((artifact_id, artifact_uri)) => {
                let mut props = json!({"provisioningState": "Succeeded"});
                if let Some(a) = artifact_id {
                    props["artifactId"] = json!(a);
                }
                if let Some(u) = artifact_uri {
                    props["artifactUri"] = json!(u);
                }
                outputs.push(json!({
                    "id": format!("{}/runOutputs/{ron}", template.id),
                    "name": ron,
                    "type": "Microsoft.VirtualMachineImages/imageTemplates/runOutputs",
                    "properties": props,
                }));
            }
            Err(e) => failures.push(format!("Distribution '{ron}' failed: {e}")),
        }
    }
    (outputs, failures)
}

fn split_blob_uri(arm: &Arm, uri: &str) -> Option<(String, String)> {
    let mapped = arm.blob.as_ref()?.map_uri(uri)?;
    let rest = mapped
        .strip_prefix(arm.blob.as_ref()?.endpoint())?
        .trim_start_matches('/');
    let (c, b) = rest.split_once('/')?;
    Some((c.to_string(), b.to_string()))
}

async fn write_vhd(arm: &Arm, container: &str, name: &str) -> Result<String, String> {
    match &arm.blob {
        Some(blob) => blob
            .write_fixed_vhd(container, name, OUTPUT_VHD_SIZE)
            .await
            .map_err(|e| format!("{e}")),
        None => Ok(format!(
            "https://devcloud.blob.core.windows.net/{container}/{name}"
        )),
    }
}

fn create_image(
    arm: &Arm,
    template: &Resource,
    d: &Value,
    vhd: &str,
    hvg: &str,
    os_type: &str,
) -> Result<String, String> {
    let id = d["imageId"].as_str().unwrap_or("").to_string();
    let loc =
        names::region(d["location"].as_str().unwrap_or(""), "images").map_err(|e| e.message)?;
    let name = id.rsplit('/').next().unwrap_or("").to_string();
    let rg = id.split('/').nth(4).unwrap_or("").to_string();
    let mut body = json!({"id": id, "name": name, "type": "Microsoft.Compute/images", "location": loc,
        "properties": {"storageProfile": {"osDisk": {"osType": os_type, "osState": "Generalized", "blobUri": vhd, "caching": "ReadWrite", "diskSizeGB": 1}, "dataDisks": [], "zoneResilient": false}, "hyperVGeneration": hvg}});
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
            vhd_size: Some(OUTPUT_VHD_SIZE),
            run: None,
            run_outputs: Vec::new(),
        },
    );
    Ok(id)
}

fn next_version(st: &crate::model::State, def_key: &str) -> String {
    let prefix = format!("{def_key}/versions/");
    let max = st
        .resources
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .filter_map(|(_, r)| {
            let v: Vec<u64> = r.name.split('.').filter_map(|p| p.parse().ok()).collect();
            (v.len() == 3).then(|| (v[0], v[1], v[2]))
        })
        .max();
    match max {
        Some((a, b, c)) => format!("{a}.{b}.{}", c + 1),
        None => "1.0.0".into(),
    }
}

fn create_version(arm: &Arm, template: &Resource, d: &Value, vhd: &str) -> Result<String, String> {
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
    let vname = explicit.unwrap_or_else(|| next_version(&st, &def_key));
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
    let sched = schedule(arm, t, &def.location, &want, &[]);
    let end = sched.iter().map(|r| r.end).max().unwrap_or(t);
    let target_regions: Vec<Value> = want.iter().map(|w| json!({"name": w.name, "regionalReplicaCount": w.replicas, "storageAccountType": w.sat, "excludeFromLatest": false})).collect();
    let rg = def.resource_group.clone();
    let mut body = json!({"id": vid, "name": vname, "type": "Microsoft.Compute/galleries/images/versions",
    "location": def.body["location"].clone(),
    "properties": {
        "publishingProfile": {"targetRegions": target_regions, "replicaCount": 1, "excludeFromLatest": d["excludeFromLatest"].as_bool().unwrap_or(false),
            "publishedDate": fmt_time(t), "storageAccountType": "Standard_LRS"},
        "storageProfile": {"osDiskImage": {"hostCaching": "ReadOnly", "sizeInGB": 1, "source": {"uri": vhd,
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
        error: None,
        canceled: false,
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
            vhd_size: Some(OUTPUT_VHD_SIZE),
            run: None,
            run_outputs: Vec::new(),
        },
    );
    st.add_op(op);
    Ok(vid)
}
