//! Microsoft.Compute/galleries/images/versions: validation of sources and publishing profiles,
//! create-or-update and PATCH, with replication scheduled per region.

use serde_json::{Value, json};

use super::common::*;
use super::image_rules::{check_encryption, check_shallow};
use super::replication::{
    SAT_VERSION, StorageDefault, WantRegion, parse_regions, regions_json, schedule,
};
use super::route::Target;
use super::version_sources::{Sources, VhdSource, storage_sources};
use crate::arm::Reply;
use crate::config::Work;
use crate::error::ArmError;
use crate::model::{Kind, OpFamily, State, Verb, fmt_time};
use crate::names::{self, norm_region};

pub(crate) async fn put_version(
    ctx: &mut Ctx<'_>,
    target: &Target,
    body: Value,
    patch: bool,
) -> Result<Reply, ArmError> {
    let (key, id, name, parent) = target_parts(target);
    // ARM's linked-access check runs before the provider sees the request.
    check_linked_sources(ctx, &body, &id)?;
    names::version(&name)?;
    let parent = parent.unwrap_or_default();
    let vhds = {
        let mut st = ctx.arm.lock();
        st.settle(ctx.now);
        validate_version(ctx, &st, &key, &name, &parent, &body, patch)?.1
    };
    let mut size = None;
    let mut data_sizes: Vec<(usize, u64)> = Vec::new();
    if let Some(blob) = ctx.arm.blob.as_ref() {
        for v in vhds {
            let s = blob.check_vhd(&v.uri, &v.target).await?;
            match v.data_disk {
                None => size = Some(s),
                Some(i) => data_sizes.push((i, s)),
            }
        }
    }
    let mut st = ctx.arm.lock();
    st.settle(ctx.now);
    let (plan, _) = validate_version(ctx, &st, &key, &name, &parent, &body, patch)?;
    let VersionPlan {
        out,
        loc,
        want,
        src_size,
    } = plan;
    let existing = st.resources.get(&key).cloned();
    let size = size
        .or(src_size)
        .or(existing.as_ref().and_then(|r| r.vhd_size));
    let mut out = out;
    if let Some(s) = size {
        out["properties"]["storageProfile"]["osDiskImage"]["sizeInGB"] =
            json!(s.div_ceil(1 << 30).max(1));
    }
    for (i, s) in data_sizes {
        if let Some(d) = out["properties"]["storageProfile"]["dataDiskImages"].get_mut(i) {
            d["sizeInGB"] = json!(s.div_ceil(1 << 30).max(1));
        }
    }
    let regions = schedule(
        ctx.arm,
        ctx.now,
        &loc,
        &want,
        existing
            .as_ref()
            .map(|r| r.regions.as_slice())
            .unwrap_or(&[]),
        size.unwrap_or(0),
    );
    let mut res = new_resource(Kind::Version, target, &ctx.sub, &loc, out);
    res.id = res.body["id"].as_str().unwrap_or_default().to_string();
    res.vhd_size = size;
    res.regions = regions;
    let mut fail = None;
    for (norm, details) in std::mem::take(&mut ctx.fault.fail_regions) {
        if let Some(r) = res.regions.iter_mut().find(|r| r.norm == norm) {
            r.failed = Some(details.clone());
            // INVENTED code; Azure puts the reason in replicationStatus details.
            fail = Some(ArmError::invented(
                400,
                "ReplicationFailed",
                format!("Replication to region '{}' failed: {details}", r.name),
            ));
        }
    }
    if fail.is_some() && ctx.fault.error.is_none() {
        ctx.fault.error = fail;
    }
    let mut end = res.regions.iter().map(|r| r.end).max().unwrap_or(ctx.now);
    if existing.is_some() {
        end = end.max(ctx.now + ctx.work(Work::VersionUpdate, &loc, 1));
    }
    let d = end - ctx.now;
    Ok(commit(
        ctx,
        &mut st,
        res,
        OpFamily::Caps,
        Some(d),
        true,
        true,
    ))
}

/// The resource ids a version's storage profile names: a source in a subscription of another tenant
/// needs an auxiliary token of that tenant ([`crate::tenancy::check_linked`]).
fn check_linked_sources(ctx: &Ctx, body: &Value, version_id: &str) -> Result<(), ArmError> {
    let sp = &body["properties"]["storageProfile"];
    let mut ids: Vec<&str> = vec![
        &sp["source"]["id"],
        &sp["osDiskImage"]["source"]["id"],
        &sp["osDiskImage"]["source"]["storageAccountId"],
    ]
    .into_iter()
    .filter_map(Value::as_str)
    .collect();
    for d in sp["dataDiskImages"].as_array().into_iter().flatten() {
        ids.extend(
            [&d["source"]["id"], &d["source"]["storageAccountId"]]
                .into_iter()
                .filter_map(Value::as_str),
        );
    }
    let home = &ctx.arm.identity.tenant_id;
    for linked in ids {
        crate::tenancy::check_linked(
            &ctx.arm.config,
            home,
            ctx.req.caller_tenant(home),
            &ctx.req.aux_tenants,
            linked,
            (
                "Microsoft.Compute/galleries/images/versions/write",
                version_id,
            ),
        )?;
    }
    Ok(())
}

pub(crate) struct VersionPlan {
    out: Value,
    loc: String,
    want: Vec<WantRegion>,
    src_size: Option<u64>,
}

pub(crate) fn validate_version(
    ctx: &Ctx,
    st: &State,
    key: &str,
    name: &str,
    parent: &str,
    body: &Value,
    patch: bool,
) -> Result<(VersionPlan, Vec<VhdSource>), ArmError> {
    let Some(def) = st.resources.get(parent) else {
        let g = parent
            .rsplit_once("/images/")
            .map(|(g, i)| format!("{}/{i}", g.rsplit('/').next().unwrap_or("")))
            .unwrap_or_default();
        return Err(ArmError::parent_not_found(&g));
    };
    let existing = st.resources.get(key);
    let (loc, shown) = require_location(body, existing, patch)?;
    let p = props(body);
    let base = existing
        .map(|r| r.body["properties"].clone())
        .unwrap_or(json!({}));
    let Sources {
        sp,
        vhds,
        src_size,
        image_data,
    } = storage_sources(st, def, existing, p, &loc)?;
    // Publishing profile.
    // A PATCH (GalleryImageVersionUpdate) merges: what is left out stays as it is.
    let pp_in = match (p["publishingProfile"].is_object(), patch) {
        (true, true) => {
            let mut merged = base["publishingProfile"].clone();
            merge_patch(&mut merged, &p["publishingProfile"]);
            merged
        }
        (true, false) => p["publishingProfile"].clone(),
        (false, _) => base["publishingProfile"].clone(),
    };
    let default_count = pp_in["replicaCount"].as_i64().unwrap_or(1);
    // Storage type: storageAccountType, or storageAccountStrategy (not both); without either, from
    // api-version 2025-03-03 on the spec's default is PreferStandard_ZRS [spec], before it Standard_LRS.
    // What the request says; otherwise what was chosen when the version was made.
    let req_pp = &p["publishingProfile"];
    let given_sat = req_pp["storageAccountType"].as_str();
    let strategy = req_pp["storageAccountStrategy"].as_str();
    let old_pp = &base["publishingProfile"];
    if let Some(sat) = given_sat {
        enum_check(
            Some(sat),
            SAT_VERSION,
            "storageAccountType",
            "galleryImageVersion.properties.publishingProfile.storageAccountType",
        )?;
    }
    enum_check(
        strategy,
        &["PreferStandard_ZRS", "DefaultStandard_LRS"],
        "storageAccountStrategy",
        "galleryImageVersion.properties.publishingProfile.storageAccountStrategy",
    )?;
    let storage = match (given_sat, strategy) {
        (Some(_), Some(_)) => {
            return Err(ArmError::invalid_parameter(
                "storageAccountStrategy cannot be specified along with storageAccountType.",
                "galleryImageVersion.properties.publishingProfile.storageAccountStrategy",
            ));
        }
        (Some(t), None) => StorageDefault::Type(t.to_string()),
        (None, Some(s)) if s.eq_ignore_ascii_case("DefaultStandard_LRS") => StorageDefault::Lrs,
        (None, Some(_)) => StorageDefault::PreferZrs,
        (None, None) => match (
            old_pp["storageAccountStrategy"].as_str(),
            old_pp["storageAccountType"].as_str(),
        ) {
            (Some(s), _) if s.eq_ignore_ascii_case("DefaultStandard_LRS") => StorageDefault::Lrs,
            (Some(_), _) => StorageDefault::PreferZrs,
            (None, Some(t)) => StorageDefault::Type(t.to_string()),
            (None, None) if ctx.api.as_str() >= "2025-03-03" => StorageDefault::PreferZrs,
            (None, None) => StorageDefault::Type("Standard_LRS".into()),
        },
    };
    let want = parse_regions(
        &pp_in,
        &shown,
        &loc,
        default_count,
        &storage,
        &base["publishingProfile"]["targetRegions"],
    )?;
    let mode = pp_in["replicationMode"]
        .as_str()
        .or(base["publishingProfile"]["replicationMode"].as_str());
    check_shallow(mode, &want, &loc)?;
    let total: i64 = want.iter().map(|w| w.replicas).sum();
    if total > ctx.arm.config.limits.replicas_per_version {
        return Err(ArmError::invalid_parameter(
            format!(
                "The total number of replicas ({total}) exceeds the limit of {} replicas per image version.",
                ctx.arm.config.limits.replicas_per_version
            ),
            "galleryImageVersion.properties.publishingProfile.targetRegions",
        ));
    }
    enum_check(
        pp_in["replicationMode"].as_str(),
        &["Full", "Shallow"],
        "replicationMode",
        "galleryImageVersion.properties.publishingProfile.replicationMode",
    )?;
    if let Some(eol) = pp_in["endOfLifeDate"].as_str() {
        let past = chrono::DateTime::parse_from_rfc3339(eol)
            .map(|d| d < ctx.now)
            .unwrap_or(false);
        if past && existing.is_none() {
            return Err(ArmError::invalid_parameter(
                "EndOfLifeDate must be set to a future date.",
                "galleryImageVersion.properties.publishingProfile.endOfLifeDate",
            ));
        }
    }
    let safety = match (p["safetyProfile"].is_object(), patch) {
        (true, true) => {
            let mut merged = base["safetyProfile"].clone();
            merge_patch(&mut merged, &p["safetyProfile"]);
            merged
        }
        (true, false) => p["safetyProfile"].clone(),
        (false, _) => base["safetyProfile"].clone(),
    };
    if let Some(r) = existing {
        let oldpp = &r.body["properties"]["publishingProfile"];
        for t in oldpp["targetRegions"].as_array().into_iter().flatten() {
            let n = t["name"].as_str().map(norm_region).unwrap_or_default();
            match want.iter().find(|w| w.norm == n) {
                Some(w) => {
                    if t["storageAccountType"].as_str() != Some(w.sat.as_str()) {
                        return Err(ArmError::property_change(
                            "galleryImageVersion.properties.publishingProfile.targetRegions.storageAccountType",
                        ));
                    }
                }
                None => {
                    let allowed = safety["allowDeletionOfReplicatedLocations"]
                        .as_bool()
                        .unwrap_or(true);
                    if !allowed {
                        return Err(ArmError::invalid_parameter(
                            format!(
                                "Deleting replicated location '{}' is not allowed because safetyProfile.allowDeletionOfReplicatedLocations is false.",
                                t["name"].as_str().unwrap_or("")
                            ),
                            "galleryImageVersion.properties.publishingProfile.targetRegions",
                        ));
                    }
                }
            }
        }
        for f in [
            "storageAccountType",
            "replicationMode",
            "storageAccountStrategy",
        ] {
            if !pp_in[f].is_null() && !oldpp[f].is_null() && pp_in[f] != oldpp[f] {
                return Err(ArmError::property_change(&format!(
                    "galleryImageVersion.properties.publishingProfile.{f}"
                )));
            }
        }
        if let Some(op) = st.running_op(key, ctx.now)
            && op.verb == Verb::Delete
        {
            return Err(ArmError::conflict_in_progress(&r.name));
        }
    } else if count_in_region(st, Kind::Version, &ctx.sub, &loc)
        >= ctx.arm.config.limits.versions_per_region
    {
        return Err(quota(
            "image versions",
            ctx.arm.config.limits.versions_per_region,
            &loc,
        ));
    }
    let mut pp = if existing.is_some() {
        base["publishingProfile"].clone()
    } else {
        json!({})
    };
    if let Some(o) = pp_in.as_object() {
        for (k, v) in o {
            pp[k] = v.clone();
        }
    }
    pp["targetRegions"] = regions_json(
        &want,
        &pp_in["targetRegions"],
        &base["publishingProfile"]["targetRegions"],
    );
    pp["replicaCount"] = json!(default_count);
    match &storage {
        StorageDefault::Type(t) => {
            pp["storageAccountType"] = json!(t);
            if let Some(o) = pp.as_object_mut() {
                o.remove("storageAccountStrategy");
            }
        }
        StorageDefault::PreferZrs | StorageDefault::Lrs => {
            let s = if storage == StorageDefault::Lrs {
                "DefaultStandard_LRS"
            } else {
                "PreferStandard_ZRS"
            };
            pp["storageAccountStrategy"] = json!(s);
            // The type the strategy chose for the version's own region (the recorded 2025-03-03
            // examples show it beside the regions' types).
            pp["storageAccountType"] = json!(storage.for_region(&loc));
        }
    }
    if pp["excludeFromLatest"].is_null() {
        pp["excludeFromLatest"] = json!(false);
    }
    if pp["publishedDate"].is_null() {
        pp["publishedDate"] = json!(fmt_time(ctx.now));
    }
    let mut sp_out = sp.clone();
    if !sp_out["osDiskImage"].is_object() {
        sp_out["osDiskImage"] = json!({});
    }
    if sp_out["osDiskImage"]["hostCaching"].is_null() {
        sp_out["osDiskImage"]["hostCaching"] = json!("ReadOnly");
    }
    if let Some(list) = sp_out["dataDiskImages"].as_array_mut() {
        for d in list {
            if d["hostCaching"].is_null() {
                d["hostCaching"] = json!("None");
            }
        }
    }
    if let Some(disks) = image_data {
        // A managed-image source: the version's disks are the image's.
        sp_out["dataDiskImages"] = Value::Array(
            disks
                .iter()
                .map(|d| {
                    json!({
            "lun": d["lun"], "sizeInGB": d["diskSizeGB"].as_u64().unwrap_or(1).max(1),
            "hostCaching": d["caching"].as_str().unwrap_or("None")})
                })
                .collect(),
        );
    }
    check_encryption(&pp["targetRegions"])?;
    if let Some(size) = existing
        .and_then(|r| r.body["properties"]["storageProfile"]["osDiskImage"]["sizeInGB"].as_u64())
    {
        sp_out["osDiskImage"]["sizeInGB"] = json!(size);
    }
    let mut newp = json!({"publishingProfile": pp, "storageProfile": sp_out});
    let mut safety_out = safety.clone();
    if !safety_out.is_object() {
        safety_out = json!({});
    }
    if safety_out["allowDeletionOfReplicatedLocations"].is_null() {
        safety_out["allowDeletionOfReplicatedLocations"] = json!(true);
    }
    safety_out["reportedForPolicyViolation"] = json!(false);
    newp["safetyProfile"] = safety_out;
    for k in ["securityProfile"] {
        if let Some(v) = p.get(k).or_else(|| base.get(k)) {
            newp[k] = v.clone();
        }
    }
    let id = existing
        .map(|r| r.id.clone())
        .unwrap_or_else(|| format!("{}/versions/{name}", def.id));
    let mut out = json!({"id": id, "name": name, "type": "Microsoft.Compute/galleries/images/versions", "location": shown, "properties": newp});
    merge_tags(&mut out, body, existing);
    Ok((
        VersionPlan {
            out,
            loc,
            want,
            src_size,
        },
        vhds,
    ))
}
