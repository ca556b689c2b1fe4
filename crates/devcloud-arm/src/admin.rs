//! Admin endpoints under `/_devcloud/` (JSON, no authentication, loopback only): request counts and log,
//! operations (list, release a stalled one), fault rules, state dump and snapshot, and the platform
//! image catalogue (`GET`/`POST /_devcloud/platform-images`: publish a new base image version).

use serde_json::{Value, json};
use warp::http::Method;

use crate::arm::{Arm, Reply, Req, counts, now};
use crate::faults::FaultRule;
use crate::model::fmt_time;

pub fn handle(arm: &Arm, req: &Req) -> Reply {
    let segs: Vec<&str> = req.path.trim_matches('/').split('/').skip(1).collect();
    match (req.method.clone(), segs.as_slice()) {
        (Method::GET, ["health"]) => Reply::json(200, json!({"status": "ok"})),
        (Method::GET, ["requests"]) => {
            let mut v = counts(arm);
            let log = arm.log.lock().unwrap_or_else(|p| p.into_inner());
            let limit: usize = req.q("limit").and_then(|l| l.parse().ok()).unwrap_or(500);
            let entries: Vec<_> = log
                .entries
                .iter()
                .rev()
                .take(limit)
                .rev()
                .cloned()
                .collect();
            v["entries"] = json!(entries);
            Reply::json(200, v)
        }
        (Method::DELETE, ["requests"]) => {
            let mut log = arm.log.lock().unwrap_or_else(|p| p.into_inner());
            *log = Default::default();
            Reply::empty(204)
        }
        (Method::GET, ["operations"]) => {
            let t = now();
            let st = arm.lock();
            let ops: Vec<Value> = st
                .op_order
                .iter()
                .filter_map(|id| st.operations.get(id))
                .map(|op| {
                    json!({"id": op.id, "kind": op.kind, "resourceId": op.resource_id,
                        "status": op.status(t).as_str(), "stalled": op.stalled,
                        "startTime": fmt_time(op.start), "endTime": op.end.map(fmt_time),
                        "error": op.error.as_ref().map(|e| e.inner())})
                })
                .collect();
            let mut by_kind = serde_json::Map::new();
            for op in &ops {
                let k = op["kind"].as_str().unwrap_or("").to_string();
                let n = by_kind.get(&k).and_then(Value::as_u64).unwrap_or(0);
                by_kind.insert(k, json!(n + 1));
            }
            Reply::json(200, json!({"value": ops, "byKind": by_kind}))
        }
        (Method::POST, ["operations", id, "release"]) => {
            let t = now();
            let mut st = arm.lock();
            match st.operations.get_mut(*id) {
                Some(op) => {
                    op.stalled = false;
                    if let Some(end) = op.end
                        && end < t
                    {
                        op.end = Some(t);
                    }
                    Reply::json(200, json!({"id": id, "released": true}))
                }
                None => Reply::json(
                    404,
                    json!({"error": {"code": "NotFound", "message": "no such operation"}}),
                ),
            }
        }
        (Method::GET, ["faults"]) => {
            let rules = arm.faults.lock().unwrap_or_else(|p| p.into_inner());
            Reply::json(200, json!({"value": *rules}))
        }
        (Method::POST, ["faults"]) => match serde_json::from_slice::<FaultRule>(&req.body) {
            Ok(mut rule) => {
                if rule.id.is_empty() {
                    rule.id = uuid::Uuid::new_v4().to_string();
                }
                rule.applied = 0;
                let v = json!(rule);
                arm.faults
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(rule);
                Reply::json(201, v)
            }
            Err(e) => Reply::json(
                400,
                json!({"error": {"code": "InvalidFaultRule", "message": e.to_string()}}),
            ),
        },
        (Method::DELETE, ["faults"]) => {
            arm.faults.lock().unwrap_or_else(|p| p.into_inner()).clear();
            Reply::empty(204)
        }
        (Method::DELETE, ["faults", id]) => {
            arm.faults
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|r| r.id != *id);
            Reply::empty(204)
        }
        (Method::GET, ["platform-images"]) => {
            Reply::json(200, json!({"value": *arm.platform_images()}))
        }
        (Method::POST, ["platform-images"]) => publish_platform_image(arm, &req.body),
        (Method::GET, ["state"]) => {
            let t = now();
            let mut st = arm.lock();
            st.settle(t);
            let v: Vec<Value> = st
                .resources
                .values()
                .map(|r| st.render(r, t, true))
                .collect();
            let groups: Vec<Value> = st.resource_groups.values().map(|g| g.render()).collect();
            Reply::json(200, json!({"value": v, "resourceGroups": groups}))
        }
        (Method::POST, ["snapshot"]) => {
            let body: Value = serde_json::from_slice(&req.body).unwrap_or(json!({}));
            let path = body["path"]
                .as_str()
                .map(std::path::PathBuf::from)
                .or_else(|| arm.config.snapshot_path.clone());
            let Some(path) = path else {
                return Reply::json(
                    400,
                    json!({"error": {"code": "NoSnapshotPath", "message": "give {\"path\": ...} or configure snapshot_path"}}),
                );
            };
            match write_snapshot(arm, &path) {
                Ok(n) => Reply::json(200, json!({"path": path, "resources": n})),
                Err(e) => Reply::json(
                    500,
                    json!({"error": {"code": "SnapshotFailed", "message": format!("{e:#}")}}),
                ),
            }
        }
        _ => Reply::json(
            404,
            json!({"error": {"code": "NotFound", "message": format!("no admin endpoint {} {}", req.method, req.path)}}),
        ),
    }
}

/// A platform image version released at run time: `{publisher, offer, sku, version}` adds the
/// version (the new `latest` when it is the highest); an unknown publisher/offer/sku is added with
/// the optional `osType`, `hyperVGeneration`, `architecture`, `osDiskSizeGb`, `locations`.
fn publish_platform_image(arm: &Arm, body: &[u8]) -> Reply {
    #[derive(serde::Deserialize)]
    struct Release {
        version: String,
        #[serde(flatten)]
        image: crate::platform::PlatformImage,
    }
    let bad = |m: String| {
        Reply::json(
            400,
            json!({"error": {"code": "InvalidPlatformImage", "message": m}}),
        )
    };
    let mut v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return bad(e.to_string()),
    };
    if v.get("versions").is_none() {
        v["versions"] = json!([]);
    }
    let rel: Release = match serde_json::from_value(v) {
        Ok(r) => r,
        Err(e) => return bad(e.to_string()),
    };
    let parts = crate::platform::version_key(&rel.version);
    if parts.len() != 3 || rel.version.split('.').any(|p| p.parse::<u64>().is_err()) {
        return bad(format!(
            "version {:?} is not Major.Minor.Build",
            rel.version
        ));
    }
    let mut images = arm.platform_images();
    let img = &rel.image;
    let entry = match images
        .iter_mut()
        .position(|i| i.is(&img.publisher, &img.offer, &img.sku))
    {
        Some(i) => &mut images[i],
        None => {
            images.push(img.clone());
            let last = images.len() - 1;
            &mut images[last]
        }
    };
    if !entry.versions.iter().any(|v| v == &rel.version) {
        entry.versions.push(rel.version.clone());
    }
    Reply::json(201, json!({"image": entry, "latest": entry.latest()}))
}

/// Writes the state as JSON; returns the number of resources.
pub fn write_snapshot(arm: &Arm, path: &std::path::Path) -> anyhow::Result<usize> {
    use anyhow::Context;
    let text = {
        let mut st = arm.lock();
        st.settle(now());
        serde_json::to_string_pretty(&*st).context("serializing state")?
    };
    let n = arm.lock().resources.len();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(n)
}
