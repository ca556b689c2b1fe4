//! Image Builder runs: `run` and `cancel` actions, the simulated build (phases from the latency model),
//! and distribution: a real fixed VHD written into Azurite, a managed image, or a gallery image version.

use std::sync::Arc;

use serde_json::{Value, json};

use super::common::Ctx;
pub use super::distribute::{OUTPUT_CONTAINER, OUTPUT_VHD_SIZE};
use super::distribute::{create_image, create_version, split_blob_uri, write_vhd};
use super::route::Target;
use crate::arm::{Arm, Reply, now};
use crate::config::Work;
use crate::error::ArmError;
use crate::model::{Kind, OpFamily, Resource, Run, State, Verb};
use crate::platform::PlatformImage;

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
        let faults = RunFaults {
            platform: resolve_platform(ctx.arm, &r),
            fail_regions: ctx.fault.fail_regions.clone(),
            fail_outputs: ctx.fault.fail_outputs.clone(),
        };
        tokio::spawn(run_task(
            ctx.arm.clone(),
            key.clone(),
            op.id.clone(),
            d,
            faults,
        ));
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
        // A stalled run is cancelled too: its operation ends Canceled.
        op.stalled = false;
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

/// What a run fixed when it started: its platform image source resolved (Azure resolves `latest` when
/// the build starts), and the faults injected into it (from the rules matching
/// `VirtualMachineImageTemplates_Run`).
#[derive(Debug, Default, Clone)]
pub(crate) struct RunFaults {
    /// A `PlatformImage` source: the catalogue entry and the version, or why it was not found.
    pub platform: Option<Result<(PlatformImage, String), String>>,
    /// Gallery versions the run distributes fail to replicate to these (normalized) regions.
    pub fail_regions: Vec<(String, String)>,
    /// Distribution targets (run output names) that fail, with their message.
    pub fail_outputs: Vec<(String, String)>,
}

/// Resolves a template's `PlatformImage` source against the catalogue (`None` for other sources).
fn resolve_platform(
    arm: &Arm,
    template: &Resource,
) -> Option<Result<(PlatformImage, String), String>> {
    let src = &template.body["properties"]["source"];
    if src["type"].as_str() != Some("PlatformImage") {
        return None;
    }
    let field = |k: &str| src[k].as_str().unwrap_or("").to_string();
    let (publisher, offer, sku, version) = (
        field("publisher"),
        field("offer"),
        field("sku"),
        field("version"),
    );
    let found = arm.platform_images().iter().find_map(|img| {
        (img.is(&publisher, &offer, &sku) && img.offered_in(&template.location))
            .then(|| img.version(&version).map(|v| (img.clone(), v)))
            .flatten()
    });
    // INVENTED wording; the code is Image Builder's (provisioningErrorCode BadPIRSource).
    Some(found.ok_or_else(|| {
        format!(
            "BadPIRSource: the platform image '{publisher}:{offer}:{sku}:{version}' was not found in '{}'.",
            template.location
        )
    }))
}

/// The key of the version a `SharedImageVersion` source names: itself, or for `/versions/latest` (as
/// Azure, evaluated when the build takes place) the highest version of the definition that is made
/// and not excluded from latest, for the whole version or in the template's region.
fn source_version_key(st: &State, id: &str, location: &str) -> Result<String, String> {
    let lower = id.to_lowercase();
    let Some(def) = lower.strip_suffix("/versions/latest") else {
        return Ok(lower);
    };
    let t = now();
    let prefix = format!("{def}/versions/");
    let region = location.replace(' ', "").to_lowercase();
    let excluded = |r: &Resource| {
        let pp = &r.body["properties"]["publishingProfile"];
        pp["excludeFromLatest"].as_bool() == Some(true)
            || pp["targetRegions"].as_array().is_some_and(|regions| {
                regions.iter().any(|g| {
                    g["name"]
                        .as_str()
                        .unwrap_or("")
                        .replace(' ', "")
                        .to_lowercase()
                        == region
                        && g["excludeFromLatest"].as_bool() == Some(true)
                })
            })
    };
    let order =
        |name: &str| -> Vec<u64> { name.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    st.resources
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .filter(|(_, r)| r.kind == Kind::Version && st.provisioning_state(r, t) == "Succeeded")
        .filter(|(_, r)| !excluded(r))
        .max_by(|(_, a), (_, b)| order(&a.name).cmp(&order(&b.name)))
        .map(|(k, _)| k.clone())
        // INVENTED wording; the code is Image Builder's.
        .ok_or_else(|| {
            format!(
                "BadSharedImageVersionSource: the gallery image '{}' has no version to build from as 'latest' (none is made and included in latest).",
                id.get(..def.len()).unwrap_or(def)
            )
        })
}

async fn run_task(
    arm: Arc<Arm>,
    key: String,
    op_id: String,
    d: chrono::Duration,
    faults: RunFaults,
) {
    tokio::time::sleep(d.to_std().unwrap_or_default()).await;
    // A stalled run waits for release (or its cancel).
    loop {
        let (stalled, canceled) = arm
            .lock()
            .operations
            .get(&op_id)
            .map_or((false, true), |o| (o.stalled, o.canceled));
        if canceled {
            return;
        }
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
    let (mut outputs, mut failures, exact) = match injected {
        Some(e) => (Vec::new(), vec![e.message], None),
        None => build(&arm, &template, &faults).await,
    };
    // The run is not done while a gallery version it distributed is still being created.
    wait_for_versions(&arm, &mut outputs, &mut failures).await;
    let t = now();
    let mut st = arm.lock();
    if let (Some(exact), Some(r)) = (exact, st.resources.get_mut(&key)) {
        // The source version the build really used (a `latest` resolved) [spec: exactVersion, read-only].
        r.body["properties"]["source"]["exactVersion"] = json!(exact);
    }
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

/// Waits until the gallery versions among the run outputs are no longer being created; one that
/// failed becomes a distribution failure.
async fn wait_for_versions(arm: &Arm, outputs: &mut Vec<Value>, failures: &mut Vec<String>) {
    let versions: Vec<String> = outputs
        .iter()
        .filter_map(|o| o["properties"]["artifactId"].as_str())
        .map(str::to_lowercase)
        .filter(|id| id.contains("/galleries/") && id.contains("/versions/"))
        .collect();
    loop {
        let pending = {
            let st = arm.lock();
            let t = now();
            versions.iter().any(|k| st.running_op(k, t).is_some())
        };
        if !pending {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let st = arm.lock();
    let t = now();
    outputs.retain(|o| {
        let id = o["properties"]["artifactId"]
            .as_str()
            .unwrap_or("")
            .to_lowercase();
        let failed = st
            .resources
            .get(&id)
            .is_some_and(|r| r.kind == Kind::Version && st.provisioning_state(r, t) == "Failed");
        if failed {
            let why: Vec<String> = st
                .resources
                .get(&id)
                .map(|r| {
                    r.regions
                        .iter()
                        .filter_map(|g| g.failed.as_ref().map(|d| format!("{}: {d}", g.name)))
                        .collect()
                })
                .unwrap_or_default();
            failures.push(format!(
                "Distribution '{}' failed: the gallery image version '{id}' failed to replicate ({}).",
                o["name"].as_str().unwrap_or(""),
                why.join("; ")
            ));
        }
        !failed
    });
}

/// Runs the distribution of a template; returns run outputs, failure messages and the source's
/// exact version.
async fn build(
    arm: &Arc<Arm>,
    template: &Resource,
    faults: &RunFaults,
) -> (Vec<Value>, Vec<String>, Option<String>) {
    let p = &template.body["properties"];
    let mut outputs = Vec::new();
    let mut failures = Vec::new();
    // Source checks.
    let src = &p["source"];
    let mut hvg = "V1".to_string();
    let mut os_type = "Linux".to_string();
    let mut architecture = "x64".to_string();
    // The source's OS disk size, what the output has when the template's osDiskSizeGB is 0.
    let mut source_gb = 30u64;
    let mut exact = None;
    if let Some(resolved) = &faults.platform {
        match resolved {
            Ok((img, v)) => {
                hvg = img.hyper_v_generation.clone();
                os_type = img.os_type.clone();
                architecture = img.architecture.clone();
                source_gb = img.os_disk_size_gb;
                exact = Some(v.clone());
            }
            Err(message) => return (Vec::new(), vec![message.clone()], None),
        }
    }
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
                        if let Some(gb) =
                            img.body["properties"]["storageProfile"]["osDisk"]["diskSizeGB"]
                                .as_u64()
                        {
                            source_gb = gb;
                        }
                    }
                    None => {
                        return (
                            Vec::new(),
                            vec![format!(
                                "BadManagedImageSource: the source managed image '{id}' was not found."
                            )],
                            None,
                        );
                    }
                }
            }
            Some("SharedImageVersion") => {
                let id = src["imageVersionId"].as_str().unwrap_or("");
                let lower = match source_version_key(&st, id, &template.location) {
                    Ok(key) => key,
                    Err(message) => return (Vec::new(), vec![message], None),
                };
                if let Some(v) = st.resources.get(&lower).filter(|v| v.kind == Kind::Version) {
                    let disk = &v.body["properties"]["storageProfile"]["osDiskImage"];
                    source_gb = disk["sizeInGB"].as_u64().unwrap_or(source_gb);
                    // The exact ARM resource id of the version used [spec: exactVersion].
                    exact = Some(v.id.clone());
                    if let Some(def) = lower
                        .rsplit_once("/versions/")
                        .and_then(|(d, _)| st.resources.get(d))
                    {
                        let dp = &def.body["properties"];
                        os_type = dp["osType"].as_str().unwrap_or("Linux").to_string();
                        hvg = dp["hyperVGeneration"].as_str().unwrap_or("V1").to_string();
                        architecture = dp["architecture"].as_str().unwrap_or("x64").to_string();
                    }
                } else {
                    return (
                        Vec::new(),
                        vec![format!(
                            "BadSharedImageVersionSource: the source image version '{id}' was not found."
                        )],
                        None,
                    );
                }
            }
            _ => {}
        }
    }
    // As Azure: the output disk is the template's osDiskSizeGB, else the source's size.
    let gb = p["vmProfile"]["osDiskSizeGB"]
        .as_u64()
        .filter(|g| *g > 0)
        .unwrap_or(source_gb);
    let size = arm.config.image_builder_vhd_bytes.unwrap_or(gb << 30);
    let boot = crate::osdisk::Boot {
        generation: &hvg,
        architecture: &architecture,
        os_type: &os_type,
    };
    // The source's version name (exactVersion is a gallery version's whole id).
    let source_version = exact
        .as_deref()
        .map(|e| e.rsplit('/').next().unwrap_or(e).to_string());
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
        if let Some((_, message)) = faults
            .fail_outputs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(&ron))
        {
            failures.push(format!("Distribution '{ron}' failed: {message}"));
            continue;
        }
        let result = match d["type"].as_str() {
            Some("VHD") => {
                let (container, name) = d["uri"]
                    .as_str()
                    .and_then(|u| split_blob_uri(arm, u))
                    .unwrap_or_else(|| (OUTPUT_CONTAINER.to_string(), blob_name.clone()));
                write_vhd(arm, &container, &name, size, boot)
                    .await
                    .map(|uri| (None, Some(uri)))
            }
            Some("ManagedImage") => {
                match write_vhd(arm, OUTPUT_CONTAINER, &blob_name, size, boot).await {
                    Ok(uri) => create_image(arm, template, d, &uri, (&hvg, &os_type), size)
                        .map(|id| (Some(id), None)),
                    Err(e) => Err(e),
                }
            }
            Some("SharedImage") => {
                match write_vhd(arm, OUTPUT_CONTAINER, &blob_name, size, boot).await {
                    Ok(uri) => create_version(
                        arm,
                        template,
                        d,
                        &uri,
                        (source_version.as_deref(), size),
                        &faults.fail_regions,
                    )
                    .map(|id| (Some(id), None)),
                    Err(e) => Err(e),
                }
            }
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
    (outputs, failures, exact)
}
