//! What every resource kind shares: the per-request context, api-version checks, operation status and
//! LRO headers, GET/list/DELETE, and helpers for request bodies and committing a resource.

use std::sync::Arc;

use serde_json::{Value, json};

use super::route::{Target, eq};
use crate::arm::{Arm, Reply, Req, now, op_url};
use crate::config::Work;
use crate::error::ArmError;
use crate::faults::OpFault;
use crate::model::{Kind, OpFamily, OpStatus, Operation, Resource, State, Time, Verb};
use crate::names::{self, norm_region};

/// Per-request context.
pub struct Ctx<'a> {
    pub arm: &'a Arc<Arm>,
    pub req: &'a Req,
    pub now: Time,
    pub base: &'a str,
    pub sub: String,
    pub api: String,
    pub fault: OpFault,
    pub kind: String,
}

/// Which api-versions a request is checked against.
pub enum ApiScope<'a> {
    /// A resource provider's type (answers `NoRegisteredProviderFound` for others).
    Provider(&'a [String], &'a str),
    /// ARM's own types (resource groups, subscriptions): answers `InvalidApiVersionParameter`.
    Arm(&'a [String]),
    /// Any well-formed api-version (operation status URLs echo the one of their request).
    Any,
}

pub(crate) fn check_api_version(arm: &Arm, req: &Req, scope: ApiScope) -> Result<String, ArmError> {
    let Some(v) = req.q("api-version") else {
        return Err(ArmError::new(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        ));
    };
    static API_VERSION: std::sync::LazyLock<Option<regex::Regex>> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"^\d{4}-\d{2}-\d{2}(-preview)?$").ok());
    let well_formed = API_VERSION.as_ref().is_some_and(|re| re.is_match(v));
    let supported = |list: &[String]| {
        let mut l: Vec<&str> = list.iter().map(String::as_str).collect();
        l.sort_unstable_by(|a, b| b.cmp(a));
        l.join(",")
    };
    let (list, type_name) = match scope {
        ApiScope::Provider(list, t) => (list, Some(t)),
        ApiScope::Arm(list) => (list, None),
        ApiScope::Any => (&arm.config.api_versions.galleries[..], None),
    };
    if !well_formed {
        return Err(ArmError::new(
            400,
            "InvalidApiVersionParameter",
            format!(
                "The api-version '{v}' is invalid. The supported versions are '{}'.",
                supported(list)
            ),
        ));
    }
    if matches!(scope, ApiScope::Any) || list.iter().any(|a| a == v) {
        return Ok(v.to_string());
    }
    match type_name {
        // [mem] ARM's wording when the provider has no such api-version.
        Some(t) => Err(ArmError::new(
            400,
            "NoRegisteredProviderFound",
            format!(
                "No registered resource provider found for location 'global' and API version '{v}' for type '{t}'. The supported api-versions are '{}'.",
                list.join(", ")
            ),
        )),
        // [mem] ARM's own types.
        None => Err(ArmError::new(
            400,
            "InvalidApiVersionParameter",
            format!(
                "The api-version '{v}' is invalid. The supported versions are '{}'.",
                supported(list)
            ),
        )),
    }
}

pub(crate) fn op_status(
    ctx: &Ctx,
    family: OpFamily,
    id: &str,
    monitor: bool,
) -> Result<Reply, ArmError> {
    let st = ctx.arm.lock();
    let Some(op) = st
        .operations
        .get(id)
        .filter(|o| o.family == family && o.subscription.eq_ignore_ascii_case(&ctx.sub))
    else {
        return Err(ArmError::new(
            404,
            "NotFound",
            format!("The operation '{id}' was not found."),
        ));
    };
    let status = op.status(ctx.now);
    let retry = retry_after(ctx, op);
    if !monitor {
        return Ok(Reply::json(200, op.status_body(ctx.now)).header("Retry-After", retry));
    }
    match status {
        OpStatus::InProgress => Ok(Reply::empty(202)
            .header(
                "Location",
                op_url(
                    ctx.base,
                    family,
                    &op.subscription,
                    &op.location,
                    &op.id,
                    &ctx.api,
                    true,
                ),
            )
            .header("Retry-After", retry)),
        OpStatus::Failed => Err(op
            .error
            .clone()
            .unwrap_or_else(|| ArmError::new(500, "InternalServerError", "failed"))),
        OpStatus::Canceled => Err(ArmError::new(
            409,
            "OperationCanceled",
            "The operation was canceled.",
        )),
        OpStatus::Succeeded => match op.verb {
            // ARM's own resource group delete ends 200 without a body.
            Verb::Delete if family == OpFamily::Resources => Ok(Reply::empty(200)),
            Verb::Action => match &op.result {
                // An action with a result (the gallery share) ends 200 with it [spec].
                Some(v) => Ok(Reply::json(200, v.clone())),
                None => Ok(Reply::empty(204)),
            },
            Verb::Delete => Ok(Reply::empty(204)),
            Verb::Create | Verb::Update => match st.resources.get(&op.resource_key) {
                Some(r) => Ok(Reply::json(200, st.render(r, ctx.now, false))),
                None => Ok(Reply::empty(204)),
            },
        },
    }
}

/// `Retry-After` for polling an operation: the remaining time in whole seconds, at least 1 (Python's
/// azure-core treats 0 as "use the 30 s default") and at most 30.
pub(crate) fn retry_after(_ctx: &Ctx, op: &Operation) -> String {
    let secs = op.remaining_secs(now()).clamp(1.0, 30.0).ceil() as u64;
    secs.to_string()
}

pub(crate) fn list(
    ctx: &Ctx,
    kind: Kind,
    rg: Option<&str>,
    parent: Option<&str>,
) -> Result<Reply, ArmError> {
    let mut st = ctx.arm.lock();
    st.settle(ctx.now);
    if let Some(p) = parent
        && !st.resources.contains_key(p)
    {
        let name = p
            .rsplit("/galleries/")
            .next()
            .unwrap_or(p)
            .replace("/images/", "/");
        return Err(ArmError::parent_not_found(&name));
    }
    let sub_prefix = format!("/subscriptions/{}/", ctx.sub.to_lowercase());
    let rg_prefix =
        rg.map(|rg| format!("/subscriptions/{}/resourcegroups/{}/", ctx.sub, rg).to_lowercase());
    let expand = ctx
        .req
        .q("$expand")
        .is_some_and(|e| eq(e, "ReplicationStatus"));
    let value: Vec<Value> = st
        .resources
        .iter()
        .filter(|(k, r)| {
            r.kind == kind
                && k.starts_with(&sub_prefix)
                && rg_prefix.as_ref().is_none_or(|p| k.starts_with(p))
                && parent.is_none_or(|p| {
                    k.rsplit_once('/')
                        .and_then(|(a, _)| a.rsplit_once('/'))
                        .is_some_and(|(a, _)| a == p)
                })
        })
        .map(|(_, r)| st.render(r, ctx.now, expand))
        .collect();
    Ok(Reply::json(200, json!({"value": value})))
}

pub(crate) fn get(
    ctx: &Ctx,
    _kind: Kind,
    key: &str,
    type_path: &str,
    rg: &str,
) -> Result<Reply, ArmError> {
    let mut st = ctx.arm.lock();
    st.settle(ctx.now);
    let Some(r) = st.resources.get(key) else {
        return Err(ArmError::not_found(type_path, rg));
    };
    let expand = ctx
        .req
        .q("$expand")
        .is_some_and(|e| eq(e, "ReplicationStatus"));
    Ok(Reply::json(200, st.render(r, ctx.now, expand)))
}

impl Ctx<'_> {
    /// Creates an operation with this request's injected faults, stores it and points the resource at it.
    pub fn start_op(
        &self,
        st: &mut State,
        family: OpFamily,
        key: &str,
        verb: Verb,
        duration: Option<chrono::Duration>,
    ) -> Operation {
        let (location, resource_id) = st
            .resources
            .get(key)
            .map(|r| (r.location.clone(), r.id.clone()))
            .or_else(|| {
                st.resource_groups
                    .get(key)
                    .map(|g| (norm_region(&g.location), g.id.clone()))
            })
            .unwrap_or_else(|| ("westeurope".into(), key.to_string()));
        let mut op = Operation {
            id: uuid::Uuid::new_v4().to_string(),
            family,
            subscription: self.sub.clone(),
            location,
            resource_key: key.to_string(),
            resource_id,
            verb,
            kind: self.kind.clone(),
            start: self.now,
            end: duration.map(|d| self.now + d),
            stalled: self.fault.stall,
            error: self.fault.error.clone(),
            canceled: false,
            result: None,
        };
        if let Some(e) = op.error.as_mut() {
            // In an operation, the HTTP status of the error is what Location polling answers.
            if e.status < 400 {
                e.status = 400;
            }
        }
        if let Some(r) = st.resources.get_mut(key) {
            r.last_op = Some(op.id.clone());
        }
        st.add_op(op.clone());
        if self.arm.events.enabled() {
            let request = crate::events::RequestInfo::from_request(self.req, self.base);
            self.arm.events.track(&op, &op.resource_id, request);
        }
        op
    }

    /// Raises the resource event of a write that succeeded at once (no operation).
    pub fn written(&self, resource_id: &str, verb: Verb) {
        if self.arm.events.enabled() {
            let request = crate::events::RequestInfo::from_request(self.req, self.base);
            self.arm.events.emit(
                &self.arm.identity.tenant_id,
                &self.sub,
                resource_id,
                (verb, OpStatus::Succeeded),
                &request,
            );
        }
    }

    pub fn work(&self, work: Work, region: &str, replicas: i64) -> chrono::Duration {
        self.arm
            .jitter(self.arm.config.nominal(work, region, replicas))
    }

    /// LRO headers: `Azure-AsyncOperation`, `Location` (monitor) and `Retry-After`, as selected, or
    /// only `Location` when the configuration or a fault rule asks for Location-only operations.
    pub fn lro(&self, mut reply: Reply, op: &Operation, async_op: bool, location: bool) -> Reply {
        let location_only =
            self.fault.location_only || self.arm.config.is_location_only(&self.kind);
        let (async_op, location) = if location_only {
            (false, true)
        } else {
            (async_op, location)
        };
        if async_op {
            reply = reply.header(
                "Azure-AsyncOperation",
                op_url(
                    self.base,
                    op.family,
                    &op.subscription,
                    &op.location,
                    &op.id,
                    &self.api,
                    false,
                ),
            );
        }
        if location {
            reply = reply.header(
                "Location",
                op_url(
                    self.base,
                    op.family,
                    &op.subscription,
                    &op.location,
                    &op.id,
                    &self.api,
                    true,
                ),
            );
        }
        reply.header("Retry-After", retry_after(self, op))
    }
}

pub(crate) fn props(body: &Value) -> &Value {
    &body["properties"]
}

pub(crate) fn require_location(
    body: &Value,
    existing: Option<&Resource>,
    patch: bool,
) -> Result<(String, String), ArmError> {
    if let Some(r) = existing {
        let given = body["location"].as_str();
        if let Some(g) = given
            && norm_region(g) != r.location
        {
            return Err(ArmError::new(
                409,
                "InvalidResourceLocation",
                format!(
                    "The resource '{}' already exists in location '{}' in resource group '{}'. A resource with the same name cannot be created in location '{}'. Please select a new resource name.",
                    r.name,
                    r.location,
                    r.resource_group,
                    norm_region(g)
                ),
            ));
        }
        let shown = r.body["location"]
            .as_str()
            .unwrap_or(&r.location)
            .to_string();
        return Ok((r.location.clone(), shown));
    }
    if patch {
        return Err(ArmError::new(
            404,
            "ResourceNotFound",
            "The resource to update was not found.",
        ));
    }
    match body["location"].as_str() {
        Some(l) if !l.is_empty() => Ok((names::region(l, "location")?, l.to_string())),
        _ => Err(ArmError::new(
            400,
            "LocationRequired",
            "The location property is required for this definition.",
        )),
    }
}

pub(crate) fn merge_tags(out: &mut Value, body: &Value, existing: Option<&Resource>) {
    if let Some(t) = body.get("tags").filter(|t| t.is_object()) {
        out["tags"] = t.clone();
    } else if let Some(t) = existing.and_then(|r| r.body.get("tags")) {
        out["tags"] = t.clone();
    }
}

pub(crate) fn enum_check(
    v: Option<&str>,
    allowed: &[&str],
    param: &str,
    target: &str,
) -> Result<(), ArmError> {
    if let Some(v) = v
        && !allowed.iter().any(|a| a.eq_ignore_ascii_case(v))
    {
        return Err(ArmError::invalid_parameter(
            format!(
                "The value '{v}' of parameter '{param}' is not allowed. Allowed values are '{}'.",
                allowed.join("', '")
            ),
            target,
        ));
    }
    Ok(())
}

pub(crate) fn count_in_region(st: &State, kind: Kind, sub: &str, loc: &str) -> usize {
    let p = format!("/subscriptions/{}/", sub.to_lowercase());
    st.resources
        .iter()
        .filter(|(k, r)| r.kind == kind && r.location == loc && k.starts_with(&p))
        .count()
}

pub(crate) fn quota(kind_name: &str, limit: usize, loc: &str) -> ArmError {
    // INVENTED: Azure's code for the gallery quotas was not found.
    ArmError::invented(
        409,
        "GalleryQuotaExceeded",
        format!(
            "The limit of {limit} {kind_name} per subscription in region '{loc}' has been reached."
        ),
    )
}

pub(crate) fn busy(st: &State, key: &str, now: Time, name: &str) -> Result<(), ArmError> {
    if st.running_op(key, now).is_some() {
        return Err(ArmError::conflict_in_progress(name));
    }
    Ok(())
}

pub(crate) fn new_resource(
    kind: Kind,
    target: &Target,
    sub: &str,
    location: &str,
    body: Value,
) -> Resource {
    let (id, name, rg) = match target {
        Target::Item { id, name, rg, .. } => (id.clone(), name.clone(), rg.clone()),
        _ => (String::new(), String::new(), String::new()),
    };
    Resource {
        kind,
        id,
        name,
        subscription: sub.to_string(),
        resource_group: rg,
        location: location.to_string(),
        body,
        last_op: None,
        regions: Vec::new(),
        vhd_size: None,
        run: None,
        run_outputs: Vec::new(),
    }
}

pub(crate) fn target_parts(target: &Target) -> (String, String, String, Option<String>) {
    match target {
        Target::Item {
            key,
            id,
            name,
            parent,
            ..
        } => (key.clone(), id.clone(), name.clone(), parent.clone()),
        _ => Default::default(),
    }
}

/// Stores a (new or updated) resource and starts its operation; answers 201/200 with the body.
pub(crate) fn commit(
    ctx: &Ctx,
    st: &mut State,
    mut res: Resource,
    family: OpFamily,
    duration: Option<chrono::Duration>,
    async_op: bool,
    location: bool,
) -> Reply {
    let key = res.id.to_lowercase();
    let existed = st.resources.contains_key(&key);
    if let Some(old) = st.resources.get(&key) {
        res.last_op = old.last_op.clone();
        res.run = old.run.clone();
        res.run_outputs = old.run_outputs.clone();
        if res.vhd_size.is_none() {
            res.vhd_size = old.vhd_size;
        }
    }
    st.resources.insert(key.clone(), res);
    let verb = if existed { Verb::Update } else { Verb::Create };
    let op = ctx.start_op(st, family, &key, verb, duration);
    let status = if existed { 200 } else { 201 };
    let body = st
        .resources
        .get(&key)
        .map(|r| st.render(r, ctx.now, false))
        .unwrap_or(Value::Null);
    ctx.lro(Reply::json(status, body), &op, async_op, location)
}

/// [`commit`] with the duration of creating or updating, depending on whether the resource exists.
pub(crate) fn commit_work(
    ctx: &Ctx,
    st: &mut State,
    res: Resource,
    (create, update): (Work, Work),
    family: OpFamily,
    async_op: bool,
    location: bool,
) -> Reply {
    let work = if st.resources.contains_key(&res.id.to_lowercase()) {
        update
    } else {
        create
    };
    let d = ctx.work(work, &res.location, 1);
    commit(ctx, st, res, family, Some(d), async_op, location)
}

pub(crate) fn unreachable_patch<T>() -> Result<T, ArmError> {
    Err(ArmError::new(
        500,
        "InternalServerError",
        "internal inconsistency",
    ))
}

/// Merges a PATCH body into what is stored, as Azure's update operations do: objects merge key by
/// key (recursively), anything else (arrays included) replaces, and a `null` leaves the stored value
/// as it is.
pub(crate) fn merge_patch(base: &mut Value, patch: &Value) {
    match (base.as_object_mut(), patch.as_object()) {
        (Some(b), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    continue;
                }
                match b.get_mut(k) {
                    Some(bv) if bv.is_object() && v.is_object() => merge_patch(bv, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        _ if !patch.is_null() => *base = patch.clone(),
        _ => {}
    }
}
