//! Resource Manager semantics per resource type: routing, validation, create-or-update, PATCH, GET,
//! list, DELETE, long-running operations and replication, following shared/reference/arm-contract.md.

use std::sync::Arc;

use serde_json::{Value, json};
use warp::http::Method;

use crate::config::Work;
use crate::error::ArmError;
use crate::faults::OpFault;
use crate::model::{
    Kind, OpFamily, OpStatus, Operation, RegionReplica, Resource, State, Time, Verb, fmt_time,
};
use crate::names::{self, norm_region};
use crate::server::{Arm, Reply, Req, now, op_url};

/// What a request addresses.
#[derive(Debug, Clone)]
pub enum Target {
    Metadata,
    Subscription,
    OpStatus {
        family: OpFamily,
        id: String,
        monitor: bool,
    },
    ResourceGroup {
        rg: String,
    },
    Collection {
        kind: Kind,
        rg: Option<String>,
        parent: Option<String>,
    },
    Item {
        kind: Kind,
        rg: String,
        key: String,
        id: String,
        name: String,
        parent: Option<String>,
        type_path: String,
    },
    TemplateAction {
        rg: String,
        key: String,
        name: String,
        action: &'static str,
    },
    RunOutputs {
        rg: String,
        key: String,
        name: String,
        output: Option<String>,
    },
    Unknown,
}

/// A classified request: its kind (operation id), subscription and target.
#[derive(Debug, Clone)]
pub struct Route {
    pub kind: String,
    pub anonymous: bool,
    pub subscription: Option<String>,
    pub target: Target,
}

fn eq(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn prefix(kind: Kind) -> &'static str {
    match kind {
        Kind::Image => "Images",
        Kind::Gallery => "Galleries",
        Kind::Definition => "GalleryImages",
        Kind::Version => "GalleryImageVersions",
        Kind::Template => "VirtualMachineImageTemplates",
    }
}

fn item_verb(m: &Method) -> &'static str {
    match *m {
        Method::PUT => "CreateOrUpdate",
        Method::PATCH => "Update",
        Method::DELETE => "Delete",
        Method::GET => "Get",
        _ => "Unsupported",
    }
}

/// Classifies a request by its path and method.
pub fn classify(req: &Req) -> Route {
    let segs: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
    let m = &req.method;
    let mut r = Route {
        kind: "Unknown".into(),
        anonymous: false,
        subscription: None,
        target: Target::Unknown,
    };
    if segs.len() == 2 && eq(segs[0], "metadata") && eq(segs[1], "endpoints") {
        r.kind = "Metadata_Endpoints".into();
        r.anonymous = true;
        r.target = Target::Metadata;
        return r;
    }
    if segs.len() < 2 || !eq(segs[0], "subscriptions") {
        return r;
    }
    let sub = segs[1].to_string();
    r.subscription = Some(sub.clone());
    let rest = &segs[2..];
    if rest.is_empty() {
        r.kind = "Subscriptions_Get".into();
        r.target = Target::Subscription;
        return r;
    }
    // Operation status: providers/{ns}/locations/{loc}/{capsOperations|operations}/{id}
    if rest.len() == 6 && eq(rest[0], "providers") && eq(rest[2], "locations") {
        let family = match (rest[1], rest[4]) {
            (ns, c) if eq(ns, "Microsoft.Compute") && eq(c, "capsOperations") => {
                Some(OpFamily::Caps)
            }
            (ns, c) if eq(ns, "Microsoft.Compute") && eq(c, "operations") => {
                Some(OpFamily::Compute)
            }
            (ns, c) if eq(ns, "Microsoft.VirtualMachineImages") && eq(c, "operations") => {
                Some(OpFamily::ImageBuilder)
            }
            _ => None,
        };
        if let Some(family) = family {
            r.kind = "Operations_Get".into();
            r.target = Target::OpStatus {
                family,
                id: rest[5].to_string(),
                monitor: req.q("monitor").is_some_and(|v| eq(v, "true")),
            };
        }
        return r;
    }
    // Subscription-level lists.
    if rest.len() == 3 && eq(rest[0], "providers") {
        let kind = if eq(rest[1], "Microsoft.Compute") && eq(rest[2], "images") {
            Some(Kind::Image)
        } else if eq(rest[1], "Microsoft.Compute") && eq(rest[2], "galleries") {
            Some(Kind::Gallery)
        } else if eq(rest[1], "Microsoft.VirtualMachineImages") && eq(rest[2], "imageTemplates") {
            Some(Kind::Template)
        } else {
            None
        };
        if let Some(kind) = kind {
            r.kind = format!("{}_List", prefix(kind));
            r.target = Target::Collection {
                kind,
                rg: None,
                parent: None,
            };
        }
        return r;
    }
    if !eq(rest[0], "resourceGroups") || rest.len() < 2 {
        return r;
    }
    let rg = rest[1].to_string();
    let rgid = format!("/subscriptions/{sub}/resourceGroups/{rg}");
    if rest.len() == 2 {
        r.kind = format!("ResourceGroups_{}", item_verb(m));
        r.target = Target::ResourceGroup { rg };
        return r;
    }
    if rest.len() < 5 || !eq(rest[2], "providers") {
        return r;
    }
    let ns = rest[3];
    let p = &rest[4..];
    if eq(ns, "Microsoft.Compute") {
        if eq(p[0], "images") {
            match p.len() {
                1 => {
                    r.kind = "Images_ListByResourceGroup".into();
                    r.target = Target::Collection {
                        kind: Kind::Image,
                        rg: Some(rg),
                        parent: None,
                    };
                }
                2 => {
                    let id = format!("{rgid}/providers/Microsoft.Compute/images/{}", p[1]);
                    r.kind = format!("Images_{}", item_verb(m));
                    r.target = Target::Item {
                        kind: Kind::Image,
                        key: id.to_lowercase(),
                        id,
                        name: p[1].to_string(),
                        parent: None,
                        type_path: format!("Microsoft.Compute/images/{}", p[1]),
                        rg,
                    };
                }
                _ => {}
            }
            return r;
        }
        if eq(p[0], "galleries") {
            let gid = p
                .get(1)
                .map(|g| format!("{rgid}/providers/Microsoft.Compute/galleries/{g}"));
            let shape = (
                p.len(),
                p.get(2).is_some_and(|s| eq(s, "images")),
                p.get(4).is_some_and(|s| eq(s, "versions")),
            );
            match shape {
                (1, _, _) => {
                    r.kind = "Galleries_ListByResourceGroup".into();
                    r.target = Target::Collection {
                        kind: Kind::Gallery,
                        rg: Some(rg),
                        parent: None,
                    };
                }
                (2, _, _) => {
                    let id = gid.unwrap_or_default();
                    r.kind = format!("Galleries_{}", item_verb(m));
                    r.target = Target::Item {
                        kind: Kind::Gallery,
                        key: id.to_lowercase(),
                        id,
                        name: p[1].to_string(),
                        parent: None,
                        type_path: format!("Microsoft.Compute/galleries/{}", p[1]),
                        rg,
                    };
                }
                (3, true, _) => {
                    r.kind = "GalleryImages_ListByGallery".into();
                    r.target = Target::Collection {
                        kind: Kind::Definition,
                        rg: Some(rg),
                        parent: gid.map(|g| g.to_lowercase()),
                    };
                }
                (4, true, _) => {
                    let g = gid.unwrap_or_default();
                    let id = format!("{g}/images/{}", p[3]);
                    r.kind = format!("GalleryImages_{}", item_verb(m));
                    r.target = Target::Item {
                        kind: Kind::Definition,
                        key: id.to_lowercase(),
                        id,
                        name: p[3].to_string(),
                        parent: Some(g.to_lowercase()),
                        type_path: format!("Microsoft.Compute/galleries/{}/images/{}", p[1], p[3]),
                        rg,
                    };
                }
                (5, true, true) => {
                    let d = format!("{}/images/{}", gid.unwrap_or_default(), p[3]);
                    r.kind = "GalleryImageVersions_ListByGalleryImage".into();
                    r.target = Target::Collection {
                        kind: Kind::Version,
                        rg: Some(rg),
                        parent: Some(d.to_lowercase()),
                    };
                }
                (6, true, true) => {
                    let d = format!("{}/images/{}", gid.unwrap_or_default(), p[3]);
                    let id = format!("{d}/versions/{}", p[5]);
                    r.kind = format!("GalleryImageVersions_{}", item_verb(m));
                    r.target = Target::Item {
                        kind: Kind::Version,
                        key: id.to_lowercase(),
                        id,
                        name: p[5].to_string(),
                        parent: Some(d.to_lowercase()),
                        type_path: format!(
                            "Microsoft.Compute/galleries/{}/images/{}/versions/{}",
                            p[1], p[3], p[5]
                        ),
                        rg,
                    };
                }
                _ => {}
            }
        }
        return r;
    }
    if eq(ns, "Microsoft.VirtualMachineImages") && eq(p[0], "imageTemplates") {
        let tid = p
            .get(1)
            .map(|t| format!("{rgid}/providers/Microsoft.VirtualMachineImages/imageTemplates/{t}"));
        match p.len() {
            1 => {
                r.kind = "VirtualMachineImageTemplates_ListByResourceGroup".into();
                r.target = Target::Collection {
                    kind: Kind::Template,
                    rg: Some(rg),
                    parent: None,
                };
            }
            2 => {
                let id = tid.unwrap_or_default();
                r.kind = format!("VirtualMachineImageTemplates_{}", item_verb(m));
                r.target = Target::Item {
                    kind: Kind::Template,
                    key: id.to_lowercase(),
                    id,
                    name: p[1].to_string(),
                    parent: None,
                    type_path: format!("Microsoft.VirtualMachineImages/imageTemplates/{}", p[1]),
                    rg,
                };
            }
            3 if eq(p[2], "run") || eq(p[2], "cancel") => {
                let action = if eq(p[2], "run") { "Run" } else { "Cancel" };
                r.kind = format!("VirtualMachineImageTemplates_{action}");
                r.target = Target::TemplateAction {
                    rg,
                    key: tid.unwrap_or_default().to_lowercase(),
                    name: p[1].to_string(),
                    action,
                };
            }
            3 | 4 if eq(p[2], "runOutputs") => {
                r.kind = if p.len() == 3 {
                    "VirtualMachineImageTemplates_ListRunOutputs".into()
                } else {
                    "VirtualMachineImageTemplates_GetRunOutput".into()
                };
                r.target = Target::RunOutputs {
                    rg,
                    key: tid.unwrap_or_default().to_lowercase(),
                    name: p[1].to_string(),
                    output: p.get(3).map(|s| s.to_string()),
                };
            }
            _ => {}
        }
    }
    r
}

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

fn check_api_version(
    arm: &Arm,
    req: &Req,
    kind: Option<Kind>,
    type_name: &str,
) -> Result<String, ArmError> {
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
    if !well_formed {
        return Err(ArmError::new(
            400,
            "InvalidApiVersionParameter",
            format!(
                "The api-version '{v}' is invalid. The supported versions are '{}'.",
                arm.config.api_versions.galleries.join(",")
            ),
        ));
    }
    let list = match kind {
        Some(Kind::Image) => &arm.config.api_versions.images,
        Some(Kind::Gallery | Kind::Definition | Kind::Version) => {
            &arm.config.api_versions.galleries
        }
        Some(Kind::Template) => &arm.config.api_versions.image_builder,
        None => return Ok(v.to_string()),
    };
    if list.iter().any(|a| a == v) {
        return Ok(v.to_string());
    }
    // [mem] ARM's wording when the provider has no such api-version.
    Err(ArmError::new(
        400,
        "NoRegisteredProviderFound",
        format!(
            "No registered resource provider found for location 'global' and API version '{v}' for type '{type_name}'. The supported api-versions are '{}'.",
            list.join(", ")
        ),
    ))
}

/// Handles a classified, authenticated request.
pub async fn dispatch(
    arm: &Arc<Arm>,
    req: &Req,
    route: &Route,
    base: &str,
    fault: OpFault,
) -> Reply {
    match dispatch_inner(arm, req, route, base, fault).await {
        Ok(r) => r,
        Err(e) => e.into(),
    }
}

async fn dispatch_inner(
    arm: &Arc<Arm>,
    req: &Req,
    route: &Route,
    base: &str,
    fault: OpFault,
) -> Result<Reply, ArmError> {
    let kind = match &route.target {
        Target::Collection { kind, .. } | Target::Item { kind, .. } => Some(*kind),
        Target::TemplateAction { .. } | Target::RunOutputs { .. } => Some(Kind::Template),
        _ => None,
    };
    let mut ctx = Ctx {
        arm,
        req,
        now: now(),
        base,
        sub: route.subscription.clone().unwrap_or_default(),
        api: String::new(),
        fault,
        kind: route.kind.clone(),
    };
    if !matches!(route.target, Target::Metadata | Target::Unknown) {
        let type_name = kind
            .map(|k| {
                k.type_name()
                    .trim_start_matches("Microsoft.Compute/")
                    .trim_start_matches("Microsoft.VirtualMachineImages/")
            })
            .unwrap_or("");
        ctx.api = check_api_version(arm, req, kind, type_name)?;
    }
    let m = req.method.clone();
    match (&route.target, m) {
        (Target::Metadata, Method::GET) => Ok(metadata(base)),
        (Target::Subscription, Method::GET) => Ok(Reply::json(
            200,
            json!({
            "id": format!("/subscriptions/{}", ctx.sub), "subscriptionId": ctx.sub,
            "tenantId": arm.identity.tenant_id, "displayName": "devcloud", "state": "Enabled"}),
        )),
        (
            Target::OpStatus {
                family,
                id,
                monitor,
            },
            Method::GET,
        ) => op_status(&ctx, *family, id, *monitor),
        (Target::ResourceGroup { rg }, m) => resource_group(&ctx, rg, &m),
        (Target::Collection { kind, rg, parent }, Method::GET) => {
            list(&ctx, *kind, rg.as_deref(), parent.as_deref())
        }
        (
            Target::Item {
                kind,
                key,
                type_path,
                rg,
                ..
            },
            Method::GET,
        ) => get(&ctx, *kind, key, type_path, rg),
        (Target::Item { .. }, Method::DELETE) => delete(&ctx, &route.target),
        (Target::Item { kind, .. }, Method::PUT | Method::PATCH) => {
            let body: Value = if req.body.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&req.body).map_err(ArmError::bad_json)?
            };
            if !body.is_object() {
                return Err(ArmError::new(
                    400,
                    "InvalidRequestContent",
                    "The request content was invalid and could not be deserialized: a JSON object is required.",
                ));
            }
            let patch = req.method == Method::PATCH;
            match kind {
                Kind::Image => put_image(&ctx, &route.target, body, patch).await,
                Kind::Gallery => put_gallery(&ctx, &route.target, body, patch),
                Kind::Definition => put_definition(&ctx, &route.target, body, patch),
                Kind::Version => put_version(&mut ctx, &route.target, body, patch).await,
                Kind::Template => put_template(&ctx, &route.target, body, patch),
            }
        }
        (Target::TemplateAction { .. }, Method::POST) => {
            crate::imagebuilder::action(&mut ctx, &route.target)
        }
        (
            Target::RunOutputs {
                key,
                name,
                output,
                rg,
            },
            Method::GET,
        ) => crate::imagebuilder::run_outputs(&ctx, key, name, rg, output.as_deref()),
        (Target::Unknown, _) => Err(ArmError::new(
            400,
            "InvalidResourceType",
            format!(
                "The resource type could not be found in the namespace for path '{}'.",
                req.path
            ),
        )),
        // INVENTED code.
        (_, m) => Err(ArmError::invented(
            405,
            "MethodNotAllowed",
            format!(
                "The requested method '{m}' is not allowed for '{}'.",
                req.path
            ),
        )),
    }
}

fn metadata(base: &str) -> Reply {
    Reply::json(
        200,
        json!({
            "name": "AzureCloud",
            "resourceManager": format!("{base}/"),
            "authentication": {"loginEndpoint": "https://login.microsoftonline.com/", "audiences": ["https://management.core.windows.net/", "https://management.azure.com/"], "tenant": "common", "identityProvider": "AAD"},
            "suffixes": {"storage": "core.windows.net", "acrLoginServer": "azurecr.io", "keyVaultDns": "vault.azure.net"},
            "portal": "https://portal.azure.com",
            "graph": "https://graph.windows.net/",
            "gallery": "https://gallery.azure.com/",
            "sqlManagement": "https://management.core.windows.net:8443/",
            "batch": "https://batch.core.windows.net/",
            "media": "https://rest.media.azure.net",
            "graphAudience": "https://graph.windows.net/",
            "microsoftGraphResourceId": "https://graph.microsoft.com/",
        }),
    )
}

fn op_status(ctx: &Ctx, family: OpFamily, id: &str, monitor: bool) -> Result<Reply, ArmError> {
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
            Verb::Delete | Verb::Action => Ok(Reply::empty(204)),
            Verb::Create | Verb::Update => match st.resources.get(&op.resource_key) {
                Some(r) => Ok(Reply::json(200, st.render(r, ctx.now, false))),
                None => Ok(Reply::empty(204)),
            },
        },
    }
}

/// `Retry-After` for polling an operation: the remaining time, capped at 30 s, in whole seconds.
/// With a small time factor this is 0, and SDKs fall back to their own polling interval.
fn retry_after(_ctx: &Ctx, op: &Operation) -> String {
    let secs = op.remaining_secs(now()).min(30.0).floor() as u64;
    secs.to_string()
}

fn resource_group(ctx: &Ctx, rg: &str, m: &Method) -> Result<Reply, ArmError> {
    let id = format!("/subscriptions/{}/resourceGroups/{rg}", ctx.sub);
    let body = |loc: &str| json!({"id": id, "name": rg, "type": "Microsoft.Resources/resourceGroups", "location": loc, "properties": {"provisioningState": "Succeeded"}});
    match *m {
        Method::GET | Method::HEAD => Ok(Reply::json(200, body("westeurope"))),
        Method::PUT => {
            let v: Value = serde_json::from_slice(&ctx.req.body).unwrap_or(json!({}));
            let loc = v["location"].as_str().unwrap_or("westeurope").to_string();
            Ok(Reply::json(201, body(&loc)))
        }
        Method::DELETE => {
            let prefix = format!("{}/", id.to_lowercase());
            let mut st = ctx.arm.lock();
            st.resources.retain(|k, _| !k.starts_with(&prefix));
            Ok(Reply::empty(200))
        }
        _ => Err(ArmError::new(
            405,
            "MethodNotAllowed",
            "Method not allowed on resource groups.",
        )),
    }
}

fn list(ctx: &Ctx, kind: Kind, rg: Option<&str>, parent: Option<&str>) -> Result<Reply, ArmError> {
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

fn get(ctx: &Ctx, _kind: Kind, key: &str, type_path: &str, rg: &str) -> Result<Reply, ArmError> {
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
        op
    }

    pub fn work(&self, work: Work, region: &str, replicas: i64) -> chrono::Duration {
        self.arm
            .jitter(self.arm.config.nominal(work, region, replicas))
    }

    /// LRO headers: `Azure-AsyncOperation`, `Location` (monitor) and `Retry-After`, as selected.
    pub fn lro(&self, mut reply: Reply, op: &Operation, async_op: bool, location: bool) -> Reply {
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

fn delete(ctx: &Ctx, target: &Target) -> Result<Reply, ArmError> {
    let Target::Item { kind, key, .. } = target else {
        return Err(ArmError::new(400, "InvalidRequest", "not deletable"));
    };
    let kind = *kind;
    let mut st = ctx.arm.lock();
    st.settle(ctx.now);
    let Some(r) = st.resources.get(key) else {
        return Ok(Reply::empty(204));
    };
    if st.has_children(key) {
        return Err(ArmError::nested_exist());
    }
    if kind != Kind::Version
        && let Some(op) = st.running_op(key, ctx.now)
    {
        if op.verb == Verb::Delete {
            // Deleting again while a delete runs: answer like the first time.
            let op = op.clone();
            return Ok(ctx.lro(Reply::empty(202), &op, kind != Kind::Template, true));
        }
        return Err(ArmError::conflict_in_progress(&r.name));
    }
    if kind == Kind::Version
        && let Some(eol) =
            r.body["properties"]["safetyProfile"]["blockDeletionBeforeEndOfLife"].as_bool()
    {
        let eol_date = r.body["properties"]["publishingProfile"]["endOfLifeDate"]
            .as_str()
            .and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok());
        if eol && eol_date.is_some_and(|d| d > ctx.now) {
            return Err(ArmError::new(
                409,
                "OperationNotAllowed",
                "The gallery image version cannot be deleted before its end of life date because safetyProfile.blockDeletionBeforeEndOfLife is true.",
            ));
        }
    }
    let loc = r.location.clone();
    let (family, work) = match kind {
        Kind::Image => (OpFamily::Compute, Work::ImageDelete),
        Kind::Gallery => (OpFamily::Caps, Work::GalleryDelete),
        Kind::Definition => (OpFamily::Caps, Work::DefinitionDelete),
        Kind::Version => (OpFamily::Caps, Work::VersionDelete),
        Kind::Template => (OpFamily::ImageBuilder, Work::TemplateDelete),
    };
    let d = ctx.work(work, &loc, 1);
    let op = ctx.start_op(&mut st, family, key, Verb::Delete, Some(d));
    Ok(match kind {
        // Image Builder delete: 202 + Location only (final-state-via location).
        Kind::Template => ctx.lro(Reply::empty(202), &op, false, true),
        _ => ctx.lro(Reply::empty(202), &op, true, true),
    })
}

// ---------------------------------------------------------------------------------------------
// helpers for bodies

fn props(body: &Value) -> &Value {
    &body["properties"]
}

fn require_location(
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

fn merge_tags(out: &mut Value, body: &Value, existing: Option<&Resource>) {
    if let Some(t) = body.get("tags").filter(|t| t.is_object()) {
        out["tags"] = t.clone();
    } else if let Some(t) = existing.and_then(|r| r.body.get("tags")) {
        out["tags"] = t.clone();
    }
}

fn enum_check(
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

fn count_in_region(st: &State, kind: Kind, sub: &str, loc: &str) -> usize {
    let p = format!("/subscriptions/{}/", sub.to_lowercase());
    st.resources
        .iter()
        .filter(|(k, r)| r.kind == kind && r.location == loc && k.starts_with(&p))
        .count()
}

fn quota(kind_name: &str, limit: usize, loc: &str) -> ArmError {
    // INVENTED: Azure's code for the gallery quotas was not found.
    ArmError::invented(
        409,
        "GalleryQuotaExceeded",
        format!(
            "The limit of {limit} {kind_name} per subscription in region '{loc}' has been reached."
        ),
    )
}

fn busy(st: &State, key: &str, now: Time, name: &str) -> Result<(), ArmError> {
    if st.running_op(key, now).is_some() {
        return Err(ArmError::conflict_in_progress(name));
    }
    Ok(())
}

fn new_resource(kind: Kind, target: &Target, sub: &str, location: &str, body: Value) -> Resource {
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

fn target_parts(target: &Target) -> (String, String, String, Option<String>) {
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
fn commit(
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
fn commit_work(
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

// ---------------------------------------------------------------------------------------------
// Microsoft.Compute/images

async fn put_image(
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

fn unreachable_patch<T>() -> Result<T, ArmError> {
    Err(ArmError::new(
        500,
        "InternalServerError",
        "internal inconsistency",
    ))
}

// ---------------------------------------------------------------------------------------------
// Microsoft.Compute/galleries

fn put_gallery(ctx: &Ctx, target: &Target, body: Value, patch: bool) -> Result<Reply, ArmError> {
    let (key, id, name, _) = target_parts(target);
    names::gallery(&name)?;
    let mut st = ctx.arm.lock();
    st.settle(ctx.now);
    let existing = st.resources.get(&key).cloned();
    if let Some(r) = &existing {
        busy(&st, &key, ctx.now, &r.name)?;
    }
    let (loc, shown) = require_location(&body, existing.as_ref(), patch)?;
    if existing.is_none()
        && count_in_region(&st, Kind::Gallery, &ctx.sub, &loc)
            >= ctx.arm.config.limits.galleries_per_region
    {
        return Err(quota(
            "galleries",
            ctx.arm.config.limits.galleries_per_region,
            &loc,
        ));
    }
    let mut out = existing.as_ref().map(|r| r.body.clone()).unwrap_or_else(|| {
        json!({"id": id, "name": name, "type": "Microsoft.Compute/galleries", "location": shown,
            "properties": {"identifier": {"uniqueName": format!("{}-{}", ctx.sub, name.to_uppercase())}}})
    });
    let p = props(&body);
    if let Some(d) = p.get("description") {
        out["properties"]["description"] = d.clone();
    }
    for k in ["softDeletePolicy", "sharingProfile"] {
        if let Some(v) = p.get(k) {
            out["properties"][k] = v.clone();
        }
    }
    if let Some(i) = body.get("identity") {
        out["identity"] = i.clone();
    }
    merge_tags(&mut out, &body, existing.as_ref());
    let res = new_resource(Kind::Gallery, target, &ctx.sub, &loc, out);
    Ok(commit_work(
        ctx,
        &mut st,
        res,
        (Work::GalleryCreate, Work::GalleryUpdate),
        OpFamily::Caps,
        true,
        true,
    ))
}

// ---------------------------------------------------------------------------------------------
// Microsoft.Compute/galleries/images

fn put_definition(ctx: &Ctx, target: &Target, body: Value, patch: bool) -> Result<Reply, ArmError> {
    let (key, id, name, parent) = target_parts(target);
    names::definition(&name)?;
    let mut st = ctx.arm.lock();
    st.settle(ctx.now);
    let parent = parent.unwrap_or_default();
    let Some(gallery) = st.resources.get(&parent).cloned() else {
        return Err(ArmError::parent_not_found(
            parent.rsplit('/').next().unwrap_or(""),
        ));
    };
    let existing = st.resources.get(&key).cloned();
    if let Some(r) = &existing {
        busy(&st, &key, ctx.now, &r.name)?;
    }
    let (loc, shown) = require_location(&body, existing.as_ref(), patch)?;
    let p = props(&body);
    let base = existing
        .as_ref()
        .map(|r| r.body["properties"].clone())
        .unwrap_or(json!({}));
    let pick = |k: &str| {
        p.get(k)
            .filter(|v| !v.is_null())
            .cloned()
            .or_else(|| base.get(k).cloned())
    };
    let os_type = pick("osType")
        .ok_or_else(|| ArmError::required("osType", "galleryImage.properties.osType"))?;
    let os_state = pick("osState")
        .ok_or_else(|| ArmError::required("osState", "galleryImage.properties.osState"))?;
    let ident = pick("identifier")
        .ok_or_else(|| ArmError::required("identifier", "galleryImage.properties.identifier"))?;
    enum_check(
        os_type.as_str(),
        &["Windows", "Linux"],
        "osType",
        "galleryImage.properties.osType",
    )?;
    enum_check(
        os_state.as_str(),
        &["Generalized", "Specialized"],
        "osState",
        "galleryImage.properties.osState",
    )?;
    let hvg = pick("hyperVGeneration").unwrap_or(json!("V1"));
    enum_check(
        hvg.as_str(),
        &["V1", "V2"],
        "hyperVGeneration",
        "galleryImage.properties.hyperVGeneration",
    )?;
    let arch = pick("architecture").unwrap_or(json!("x64"));
    enum_check(
        arch.as_str(),
        &["x64", "Arm64"],
        "architecture",
        "galleryImage.properties.architecture",
    )?;
    for (field, max) in [("publisher", 128), ("offer", 64), ("sku", 64)] {
        let v = ident[field].as_str().ok_or_else(|| {
            ArmError::required(
                field,
                &format!("galleryImage.properties.identifier.{field}"),
            )
        })?;
        names::identifier_part(field, v, max)?;
    }
    if existing.is_none()
        && count_in_region(&st, Kind::Definition, &ctx.sub, &loc)
            >= ctx.arm.config.limits.definitions_per_region
    {
        return Err(quota(
            "image definitions",
            ctx.arm.config.limits.definitions_per_region,
            &loc,
        ));
    }
    // (publisher, offer, sku) unique within the gallery.
    let lc = |v: &Value, f: &str| v[f].as_str().unwrap_or("").to_lowercase();
    let triple = (
        lc(&ident, "publisher"),
        lc(&ident, "offer"),
        lc(&ident, "sku"),
    );
    let gprefix = format!("{parent}/images/");
    for (k, r) in st
        .resources
        .range(gprefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&gprefix))
    {
        if r.kind != Kind::Definition || *k == key {
            continue;
        }
        let i = &r.body["properties"]["identifier"];
        if (lc(i, "publisher"), lc(i, "offer"), lc(i, "sku")) == triple {
            // Message [doc]; INVENTED code.
            return Err(ArmError::invented(
                409,
                "GalleryImageIdentifierAlreadyExists",
                format!(
                    "Gallery image: {} identified by (publisher:{}, offer:{}, sku:{}) already exists. Please use a different publisher, offer, sku combination.",
                    r.name,
                    ident["publisher"].as_str().unwrap_or(""),
                    ident["offer"].as_str().unwrap_or(""),
                    ident["sku"].as_str().unwrap_or("")
                ),
            ));
        }
    }
    let mut newp = base.clone();
    if !newp.is_object() {
        newp = json!({});
    }
    if let Some(obj) = p.as_object() {
        for (k, v) in obj {
            if k != "provisioningState" && k != "allowUpdateImage" {
                newp[k] = v.clone();
            }
        }
    }
    newp["osType"] = os_type;
    newp["osState"] = os_state;
    newp["identifier"] =
        json!({"publisher": ident["publisher"], "offer": ident["offer"], "sku": ident["sku"]});
    newp["hyperVGeneration"] = hvg;
    newp["architecture"] = arch;
    if let Some(r) = &existing {
        for f in ["osType", "osState", "hyperVGeneration", "architecture"] {
            if r.body["properties"][f] != newp[f] {
                return Err(ArmError::property_change(&format!(
                    "galleryImage.properties.{f}"
                )));
            }
        }
        for f in ["publisher", "offer", "sku"] {
            if r.body["properties"]["identifier"][f] != newp["identifier"][f] {
                return Err(ArmError::property_change(&format!(
                    "galleryImage.properties.identifier.{f}"
                )));
            }
        }
        let allow = p["allowUpdateImage"].as_bool().unwrap_or(false);
        if r.body["properties"]["features"] != newp["features"] && !allow {
            return Err(ArmError::property_change(
                "galleryImage.properties.features",
            ));
        }
    }
    let mut out = json!({"id": existing.as_ref().map(|r| r.id.clone()).unwrap_or_else(|| format!("{}/images/{name}", gallery.id)), "name": name, "type": "Microsoft.Compute/galleries/images", "location": shown, "properties": newp});
    let _ = id;
    merge_tags(&mut out, &body, existing.as_ref());
    let mut res = new_resource(Kind::Definition, target, &ctx.sub, &loc, out);
    res.id = res.body["id"].as_str().unwrap_or_default().to_string();
    Ok(commit_work(
        ctx,
        &mut st,
        res,
        (Work::DefinitionCreate, Work::DefinitionUpdate),
        OpFamily::Caps,
        true,
        true,
    ))
}

// ---------------------------------------------------------------------------------------------
// Microsoft.Compute/galleries/images/versions

/// The source of a version.
#[derive(Debug, Clone)]
pub enum VersionSource {
    Image(String),
    Vhd { uri: String },
    Version(String),
}

/// A requested target region.
#[derive(Debug, Clone)]
pub struct WantRegion {
    pub name: String,
    pub norm: String,
    pub replicas: i64,
    pub sat: String,
}

/// Decides when each region finishes. Regions already scheduled keep their schedule; new ones start
/// after the home region's copy (or now, if that is already done).
///
/// The version's PUT (and each PATCH) completes when **all** its regions have replicated, as
/// arm-contract.md §2.4 believes Azure does; galleon's readiness rule covers either behaviour.
pub fn schedule(
    arm: &Arm,
    now: Time,
    home: &str,
    want: &[WantRegion],
    existing: &[RegionReplica],
) -> Vec<RegionReplica> {
    let home_end = existing.iter().find(|r| r.norm == home).map(|r| r.end);
    let mut out = Vec::new();
    let home_want = want.iter().find(|w| w.norm == home);
    let home_end = home_end.unwrap_or_else(|| {
        let reps = home_want.map(|w| w.replicas).unwrap_or(1);
        now + arm.jitter(arm.config.nominal(Work::VersionHomeRegion, home, reps))
    });
    for w in want {
        if let Some(e) = existing.iter().find(|r| r.norm == w.norm) {
            out.push(RegionReplica {
                name: w.name.clone(),
                ..e.clone()
            });
            continue;
        }
        let (start, end) = if w.norm == home {
            (now, home_end)
        } else {
            let start = home_end.max(now);
            let mut d = arm
                .config
                .nominal(Work::VersionReplicate, &w.norm, w.replicas);
            if w.sat.contains("ZRS") {
                d = d.mul_f64(1.2);
            }
            (start, start + arm.jitter(d))
        };
        out.push(RegionReplica {
            name: w.name.clone(),
            norm: w.norm.clone(),
            start,
            end,
            failed: None,
        });
    }
    out
}

const SAT_VERSION: &[&str] = &[
    "Standard_LRS",
    "Standard_ZRS",
    "Premium_LRS",
    "PremiumV2_LRS",
];

fn parse_regions(
    pp: &Value,
    location_shown: &str,
    location: &str,
    default_count: i64,
) -> Result<Vec<WantRegion>, ArmError> {
    let default_sat = pp["storageAccountType"].as_str().unwrap_or("Standard_LRS");
    let mut want = Vec::new();
    match pp["targetRegions"].as_array() {
        Some(list) if !list.is_empty() => {
            for t in list {
                let name = t["name"].as_str().ok_or_else(|| {
                    ArmError::required(
                        "name",
                        "galleryImageVersion.properties.publishingProfile.targetRegions.name",
                    )
                })?;
                let norm = names::region(name, "galleries/images/versions")?;
                if want.iter().any(|w: &WantRegion| w.norm == norm) {
                    return Err(ArmError::invalid_parameter(
                        "Duplicate regions are not allowed in target publishing regions.",
                        "galleryImageVersion.properties.publishingProfile.targetRegions",
                    ));
                }
                let replicas = t["regionalReplicaCount"].as_i64().unwrap_or(default_count);
                if !(1..=100).contains(&replicas) {
                    return Err(ArmError::invalid_parameter(
                        format!(
                            "The value {replicas} of parameter 'regionalReplicaCount' is out of range. The value must be between 1 and 100, inclusive."
                        ),
                        "galleryImageVersion.properties.publishingProfile.targetRegions.regionalReplicaCount",
                    ));
                }
                let sat = t["storageAccountType"].as_str().unwrap_or(default_sat);
                enum_check(
                    Some(sat),
                    SAT_VERSION,
                    "storageAccountType",
                    "galleryImageVersion.properties.publishingProfile.targetRegions.storageAccountType",
                )?;
                want.push(WantRegion {
                    name: name.to_string(),
                    norm,
                    replicas,
                    sat: sat.to_string(),
                });
            }
        }
        _ => want.push(WantRegion {
            name: location_shown.to_string(),
            norm: location.to_string(),
            replicas: default_count,
            sat: default_sat.to_string(),
        }),
    }
    if !want.iter().any(|w| w.norm == location) {
        return Err(ArmError::invalid_parameter(
            format!(
                "Gallery image version publishing profile regions '{}' must contain the location of image version '{location_shown}'.",
                want.iter()
                    .map(|w| w.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "galleryImageVersion.properties.publishingProfile.targetRegions",
        ));
    }
    Ok(want)
}

fn regions_json(want: &[WantRegion], given: &Value, old: &Value) -> Value {
    let given = given.as_array().cloned().unwrap_or_default();
    let old = old.as_array().cloned().unwrap_or_default();
    let find = |list: &[Value], norm: &str| {
        list.iter()
            .find(|g| g["name"].as_str().map(norm_region).as_deref() == Some(norm))
            .cloned()
    };
    Value::Array(
        want.iter()
            .map(|w| {
                // Fields of an existing region (encryption cannot be removed) overlaid with what was sent.
                let mut t = find(&old, &w.norm).unwrap_or(json!({}));
                if let Some(Value::Object(g)) = find(&given, &w.norm) {
                    for (k, v) in g {
                        t[k] = v;
                    }
                }
                t["name"] = json!(w.name);
                t["regionalReplicaCount"] = json!(w.replicas);
                t["storageAccountType"] = json!(w.sat);
                if t["excludeFromLatest"].is_null() {
                    t["excludeFromLatest"] = json!(false);
                }
                t
            })
            .collect(),
    )
}

async fn put_version(
    ctx: &mut Ctx<'_>,
    target: &Target,
    body: Value,
    patch: bool,
) -> Result<Reply, ArmError> {
    let (key, _id, name, parent) = target_parts(target);
    names::version(&name)?;
    let parent = parent.unwrap_or_default();
    let vhd = {
        let mut st = ctx.arm.lock();
        st.settle(ctx.now);
        validate_version(ctx, &st, &key, &name, &parent, &body, patch)?.1
    };
    let mut size = None;
    if let (Some(uri), Some(blob)) = (vhd, ctx.arm.blob.as_ref()) {
        size = Some(
            blob.check_vhd(
                &uri,
                "galleryImageVersion.properties.storageProfile.osDiskImage.source.uri",
            )
            .await?,
        );
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
    let regions = schedule(
        ctx.arm,
        ctx.now,
        &loc,
        &want,
        existing
            .as_ref()
            .map(|r| r.regions.as_slice())
            .unwrap_or(&[]),
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

struct VersionPlan {
    out: Value,
    loc: String,
    want: Vec<WantRegion>,
    src_size: Option<u64>,
}

fn validate_version(
    ctx: &Ctx,
    st: &State,
    key: &str,
    name: &str,
    parent: &str,
    body: &Value,
    patch: bool,
) -> Result<(VersionPlan, Option<String>), ArmError> {
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
    let top = sp["source"].clone();
    let os_src = sp["osDiskImage"]["source"].clone();
    let has_top =
        top["id"].is_string() || top["virtualMachineId"].is_string() || top["uri"].is_string();
    let has_disk = os_src.is_object() && (os_src["uri"].is_string() || os_src["id"].is_string());
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
    let mut vhd = None;
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
            VersionSource::Vhd { uri } => vhd = Some(uri.clone()),
        }
    }
    // Publishing profile.
    let pp_in = if p["publishingProfile"].is_object() {
        p["publishingProfile"].clone()
    } else {
        base["publishingProfile"].clone()
    };
    let default_count = pp_in["replicaCount"].as_i64().unwrap_or(1);
    let want = parse_regions(&pp_in, &shown, &loc, default_count)?;
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
    let sat = pp_in["storageAccountType"]
        .as_str()
        .unwrap_or("Standard_LRS");
    enum_check(
        Some(sat),
        SAT_VERSION,
        "storageAccountType",
        "galleryImageVersion.properties.publishingProfile.storageAccountType",
    )?;
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
    let safety = if p["safetyProfile"].is_object() {
        p["safetyProfile"].clone()
    } else {
        base["safetyProfile"].clone()
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
    pp["storageAccountType"] = json!(sat);
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
        vhd,
    ))
}

// ---------------------------------------------------------------------------------------------
// Microsoft.VirtualMachineImages/imageTemplates

fn put_template(ctx: &Ctx, target: &Target, body: Value, patch: bool) -> Result<Reply, ArmError> {
    let (key, id, name, _) = target_parts(target);
    names::template(&name, "imageTemplateName")?;
    let mut st = ctx.arm.lock();
    st.settle(ctx.now);
    let existing = st.resources.get(&key).cloned();
    if let Some(r) = &existing {
        busy(&st, &key, ctx.now, &r.name)?;
        if r.run.as_ref().is_some_and(|run| run.outcome.is_none()) {
            return Err(ArmError::conflict_in_progress(&r.name));
        }
    }
    let (loc, shown) = require_location(&body, existing.as_ref(), patch)?;
    let p = props(&body);
    let mut newp = existing
        .as_ref()
        .map(|r| r.body["properties"].clone())
        .unwrap_or(json!({}));
    if patch {
        // ImageTemplateUpdateParameters: identity, tags, properties.distribute, properties.vmProfile.
        for k in ["distribute", "vmProfile"] {
            if let Some(v) = p.get(k) {
                newp[k] = v.clone();
            }
        }
    } else {
        if let Some(r) = &existing {
            // Only distribute and vmProfile may differ on a re-PUT [obs: "Update/Upgrade of image
            // templates is currently not supported"].
            for k in [
                "source",
                "customize",
                "validate",
                "buildTimeoutInMinutes",
                "stagingResourceGroup",
                "optimize",
            ] {
                let old = &r.body["properties"][k];
                let new = &p[k];
                let same = old == new
                    || (new.is_null() && (old.is_null() || k == "buildTimeoutInMinutes"));
                if !same {
                    return Err(ArmError::new(409, "PropertyChangeNotAllowed", format!("Update/Upgrade of image templates is currently not supported. Changing property 'properties.{k}' is not allowed.")).with_target(&format!("properties.{k}")));
                }
            }
        }
        if let Some(o) = p.as_object() {
            for (k, v) in o {
                if !matches!(
                    k.as_str(),
                    "provisioningState"
                        | "provisioningError"
                        | "lastRunStatus"
                        | "exactStagingResourceGroup"
                ) {
                    newp[k] = v.clone();
                }
            }
        }
    }
    // Validation.
    let identity = body
        .get("identity")
        .cloned()
        .or_else(|| existing.as_ref().map(|r| r.body["identity"].clone()));
    let identity = identity
        .filter(|i| i.is_object())
        .ok_or_else(|| ArmError::required("identity", "identity"))?;
    enum_check(
        identity["type"].as_str().or(Some("")),
        &["UserAssigned", "None"],
        "identity.type",
        "identity.type",
    )?;
    let src = &newp["source"];
    if !src.is_object() {
        return Err(ArmError::required("source", "properties.source"));
    }
    enum_check(
        src["type"].as_str().or(Some("")),
        &["PlatformImage", "ManagedImage", "SharedImageVersion"],
        "source.type",
        "properties.source.type",
    )?;
    let dist = newp["distribute"].as_array().cloned().unwrap_or_default();
    if dist.is_empty() {
        return Err(ArmError::required("distribute", "properties.distribute"));
    }
    for d in &dist {
        enum_check(
            d["type"].as_str().or(Some("")),
            &["ManagedImage", "SharedImage", "VHD"],
            "distribute.type",
            "properties.distribute.type",
        )?;
        let ron = d["runOutputName"].as_str().ok_or_else(|| {
            ArmError::required("runOutputName", "properties.distribute.runOutputName")
        })?;
        names::template(ron, "runOutputName")?;
        match d["type"].as_str() {
            Some("ManagedImage")
                if d["imageId"].as_str().is_none() || d["location"].as_str().is_none() =>
            {
                return Err(ArmError::required(
                    "imageId",
                    "properties.distribute.imageId",
                ));
            }
            Some("SharedImage") if d["galleryImageId"].as_str().is_none() => {
                return Err(ArmError::required(
                    "galleryImageId",
                    "properties.distribute.galleryImageId",
                ));
            }
            _ => {}
        }
    }
    if let Some(t) = newp["buildTimeoutInMinutes"].as_i64()
        && !(0..=960).contains(&t)
    {
        return Err(ArmError::invalid_parameter(
            format!(
                "The value {t} of parameter 'buildTimeoutInMinutes' is out of range. The value must be between 0 and 960, inclusive."
            ),
            "properties.buildTimeoutInMinutes",
        ));
    }
    if newp["buildTimeoutInMinutes"].is_null() {
        newp["buildTimeoutInMinutes"] = json!(0);
    }
    if newp["vmProfile"].is_null() {
        newp["vmProfile"] = json!({"vmSize": "", "osDiskSizeGB": 0});
    }
    if newp["exactStagingResourceGroup"].is_null() {
        let rg = match target {
            Target::Item { rg, .. } => rg.clone(),
            _ => String::new(),
        };
        newp["exactStagingResourceGroup"] = json!(format!(
            "/subscriptions/{}/resourceGroups/IT_{rg}_{name}_{}",
            ctx.sub,
            uuid::Uuid::new_v4()
        ));
    }
    let mut ident_out = identity.clone();
    if let Some(map) = ident_out["userAssignedIdentities"].as_object_mut() {
        for (_, v) in map.iter_mut() {
            if v.get("principalId").is_none() {
                *v = json!({"principalId": ctx.arm.identity.object_id, "clientId": ctx.arm.identity.client_id});
            }
        }
    }
    let mut out = json!({"id": existing.as_ref().map(|r| r.id.clone()).unwrap_or(id), "name": name, "type": "Microsoft.VirtualMachineImages/imageTemplates", "location": shown, "identity": ident_out, "properties": newp});
    merge_tags(&mut out, &body, existing.as_ref());
    let res = new_resource(Kind::Template, target, &ctx.sub, &loc, out);
    let mut reply = commit_work(
        ctx,
        &mut st,
        res,
        (Work::TemplateCreate, Work::TemplateUpdate),
        OpFamily::ImageBuilder,
        true,
        false,
    );
    if patch {
        // Image Builder PATCH: 202 with Azure-AsyncOperation (final-state-via azure-async-operation).
        reply.status = 202;
        reply.body = None;
    }
    Ok(reply)
}
