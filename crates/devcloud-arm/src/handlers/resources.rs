//! Microsoft.Resources: resource groups (create, get, check existence, list, update tags, delete with
//! everything in them) and the rule that every resource lives in an existing group.

use serde_json::{Value, json};
use warp::http::Method;

use super::common::Ctx;
use crate::arm::{Arm, Reply};
use crate::config::Work;
use crate::error::ArmError;
use crate::model::{OpFamily, ResourceGroup, State, Verb};
use crate::names;

/// ARM's answer for a group that does not exist [obs].
pub fn group_not_found(rg: &str) -> ArmError {
    ArmError::new(
        404,
        "ResourceGroupNotFound",
        format!("Resource group '{rg}' could not be found."),
    )
}

/// ARM's answer for a write into a group that is being deleted [mem].
fn group_being_deleted(rg: &str) -> ArmError {
    ArmError::new(
        409,
        "ResourceGroupBeingDeleted",
        format!(
            "The resource group '{rg}' is in deprovisioning state and cannot perform this operation."
        ),
    )
}

/// Every request inside a resource group needs the group: 404 ResourceGroupNotFound when it does not
/// exist, and 409 ResourceGroupBeingDeleted for a write while it is being deleted.
pub fn require_group(ctx: &Ctx, rg: &str) -> Result<(), ArmError> {
    let mut st = ctx.arm.lock();
    st.settle(ctx.now);
    let Some(g) = st.resource_groups.get(&ResourceGroup::key(&ctx.sub, rg)) else {
        return Err(group_not_found(rg));
    };
    let write = !matches!(ctx.req.method, Method::GET | Method::HEAD);
    if write && g.deleting.is_some() {
        return Err(group_being_deleted(&g.name));
    }
    Ok(())
}

/// Whether a group exists (and is not being deleted): for resources created outside a request
/// (Image Builder distribution).
pub fn group_exists(st: &State, sub: &str, rg: &str) -> bool {
    st.resource_groups
        .get(&ResourceGroup::key(sub, rg))
        .is_some_and(|g| g.deleting.is_none())
}

impl Arm {
    /// Creates a resource group unless it exists, as infra would before galleon runs in Azure.
    /// `location` `None` = the configuration's default location.
    pub fn ensure_resource_group(&self, sub: &str, name: &str, location: Option<&str>) {
        let mut st = self.lock();
        let key = ResourceGroup::key(sub, name);
        if st.resource_groups.contains_key(&key) {
            return;
        }
        let location = location
            .unwrap_or(&self.config.default_location)
            .to_string();
        st.resource_groups.insert(
            key,
            ResourceGroup {
                id: format!("/subscriptions/{sub}/resourceGroups/{name}"),
                name: name.to_string(),
                subscription: sub.to_string(),
                location,
                tags: None,
                managed_by: None,
                deleting: None,
            },
        );
    }
}

/// `GET /subscriptions/{sub}/resourcegroups`.
pub fn list_groups(ctx: &Ctx) -> Result<Vec<Value>, ArmError> {
    let mut st = ctx.arm.lock();
    st.settle(ctx.now);
    let prefix = format!("/subscriptions/{}/", ctx.sub.to_lowercase());
    Ok(st
        .resource_groups
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|(_, g)| g.render())
        .collect())
}

/// `/subscriptions/{sub}/resourcegroups/{rg}` with PUT, GET, HEAD, PATCH or DELETE.
pub fn resource_group(ctx: &Ctx, rg: &str, m: &Method) -> Result<Reply, ArmError> {
    let key = ResourceGroup::key(&ctx.sub, rg);
    let mut st = ctx.arm.lock();
    st.settle(ctx.now);
    match *m {
        Method::HEAD => Ok(Reply::empty(if st.resource_groups.contains_key(&key) {
            204
        } else {
            404
        })),
        Method::GET => st
            .resource_groups
            .get(&key)
            .map(|g| Reply::json(200, g.render()))
            .ok_or_else(|| group_not_found(rg)),
        Method::PUT => {
            let body = parse_body(ctx)?;
            names::resource_group(rg)?;
            let location = body["location"]
                .as_str()
                .filter(|l| !l.is_empty())
                .ok_or_else(|| {
                    ArmError::new(
                        400,
                        "LocationRequired",
                        "The location property is required for this definition.",
                    )
                })?;
            let norm = names::region(location, "resourceGroups")?;
            let tags = body.get("tags").filter(|t| t.is_object()).cloned();
            let managed_by = body["managedBy"].as_str().map(str::to_string);
            if let Some(g) = st.resource_groups.get_mut(&key) {
                if g.deleting.is_some() {
                    return Err(group_being_deleted(&g.name));
                }
                if names::norm_region(&g.location) != norm {
                    // [mem] ARM's answer when a group is re-created in another region.
                    return Err(ArmError::new(
                        409,
                        "InvalidResourceGroupLocation",
                        format!(
                            "Invalid resource group location '{location}'. The Resource group already exists in location '{}'.",
                            g.location
                        ),
                    ));
                }
                g.tags = tags;
                g.managed_by = managed_by;
                ctx.written(&g.id, Verb::Update);
                return Ok(Reply::json(200, g.render()));
            }
            let g = ResourceGroup {
                id: format!("/subscriptions/{}/resourceGroups/{rg}", ctx.sub),
                name: rg.to_string(),
                subscription: ctx.sub.clone(),
                location: location.to_string(),
                tags,
                managed_by,
                deleting: None,
            };
            let reply = Reply::json(201, g.render());
            ctx.written(&g.id, Verb::Create);
            st.resource_groups.insert(key, g);
            Ok(reply)
        }
        Method::PATCH => {
            let body = parse_body(ctx)?;
            let g = st
                .resource_groups
                .get_mut(&key)
                .ok_or_else(|| group_not_found(rg))?;
            if let Some(t) = body.get("tags").filter(|t| t.is_object()) {
                g.tags = Some(t.clone());
            }
            if let Some(m) = body["managedBy"].as_str() {
                g.managed_by = Some(m.to_string());
            }
            ctx.written(&g.id, Verb::Update);
            Ok(Reply::json(200, g.render()))
        }
        Method::DELETE => delete_group(ctx, &mut st, &key, rg),
        _ => Err(ArmError::invented(
            405,
            "MethodNotAllowed",
            format!("The requested method '{m}' is not allowed for resource groups."),
        )),
    }
}

fn parse_body(ctx: &Ctx) -> Result<Value, ArmError> {
    let v: Value = if ctx.req.body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&ctx.req.body).map_err(ArmError::bad_json)?
    };
    if !v.is_object() {
        return Err(ArmError::new(
            400,
            "InvalidRequestContent",
            "The request content was invalid and could not be deserialized: a JSON object is required.",
        ));
    }
    Ok(v)
}

/// DELETE: 202 + Location (ARM's operation results); the group and everything in it go when the
/// operation ends. Deleting again while it runs answers the same way; a missing group is 404.
fn delete_group(ctx: &Ctx, st: &mut State, key: &str, rg: &str) -> Result<Reply, ArmError> {
    let Some(g) = st.resource_groups.get(key).cloned() else {
        return Err(group_not_found(rg));
    };
    let running = g
        .deleting
        .as_ref()
        .and_then(|id| st.operations.get(id))
        .cloned();
    let op = match running {
        Some(op) => op,
        None => {
            let prefix = format!("{key}/");
            let inside = st
                .resources
                .range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .count() as i64;
            let region = names::norm_region(&g.location);
            let d = ctx.work(Work::ResourceGroupDelete, &region, inside.max(1));
            let op = ctx.start_op(st, OpFamily::Resources, key, Verb::Delete, Some(d));
            if let Some(g) = st.resource_groups.get_mut(key) {
                g.deleting = Some(op.id.clone());
            }
            op
        }
    };
    Ok(ctx.lro(Reply::empty(202), &op, false, true))
}
