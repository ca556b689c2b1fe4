//! Resource Manager semantics per resource kind, following shared/reference/arm-contract.md: this
//! module dispatches a classified request to the module of its kind.

pub mod common;
pub mod definitions;
pub mod deletes;
pub mod distribute;
pub mod galleries;
pub mod image_rules;
pub mod imagebuilder;
pub mod images;
pub mod paging;
pub mod platform_images;
pub mod replication;
pub mod resources;
pub mod route;
pub mod sharing;
pub mod storage;
pub mod subscriptions;
pub mod templates;
pub mod version_sources;
pub mod versions;

use std::sync::Arc;

use serde_json::{Value, json};
use warp::http::Method;

pub use common::{ApiScope, Ctx};
pub use route::{Route, Target, classify};

use crate::arm::{Arm, Reply, Req, now};
use crate::error::ArmError;
use crate::faults::OpFault;
use crate::model::Kind;

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
        Target::GalleryShare { .. } => Some(Kind::Gallery),
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
    let versions = &arm.config.api_versions;
    let scope = match (&route.target, kind) {
        (Target::Metadata | Target::Unknown, _) => None,
        (Target::ResourceGroup { .. } | Target::ResourceGroups, _) => {
            Some(ApiScope::Arm(&versions.resources))
        }
        (Target::Subscriptions | Target::Subscription | Target::Locations, _) => {
            Some(ApiScope::Arm(&versions.subscriptions))
        }
        (Target::NotSimulated { .. }, _) => {
            Some(ApiScope::Provider(&versions.images, "virtualMachines"))
        }
        (Target::PlatformImageVersions { .. }, _) => {
            Some(ApiScope::Provider(&versions.images, "locations/publishers"))
        }
        (Target::StorageAccount { .. }, _) => {
            Some(ApiScope::Provider(&versions.storage, "storageAccounts"))
        }
        (_, Some(k)) => {
            let list = match k {
                Kind::Image => &versions.images,
                Kind::Gallery | Kind::Definition | Kind::Version => &versions.galleries,
                Kind::Template => &versions.image_builder,
            };
            let type_name = k
                .type_name()
                .trim_start_matches("Microsoft.Compute/")
                .trim_start_matches("Microsoft.VirtualMachineImages/");
            Some(ApiScope::Provider(list, type_name))
        }
        (_, None) => Some(ApiScope::Any),
    };
    if let Some(scope) = scope {
        ctx.api = common::check_api_version(arm, req, scope)?;
    }
    if route.subscription.is_some() {
        subscriptions::check_subscription_id(&ctx.sub)?;
    }
    if let Some(rg) = route.target.resource_group() {
        resources::require_group(&ctx, rg)?;
    }
    let pageable = req.method == Method::GET
        && matches!(
            route.target,
            Target::Collection { .. }
                | Target::ResourceGroups
                | Target::Subscriptions
                | Target::RunOutputs { output: None, .. }
        );
    let reply = route_request(&mut ctx, route).await?;
    if pageable {
        return paging::page(&ctx, reply);
    }
    Ok(reply)
}

async fn route_request(ctx: &mut Ctx<'_>, route: &Route) -> Result<Reply, ArmError> {
    let (req, base) = (ctx.req, ctx.base);
    let m = req.method.clone();
    match (&route.target, m) {
        (Target::Metadata, Method::GET) => Ok(metadata(base)),
        (Target::Subscriptions, Method::GET) => {
            Ok(Reply::json(200, json!({"value": subscriptions::list(ctx)})))
        }
        (Target::Subscription, Method::GET) => {
            Ok(Reply::json(200, subscriptions::subscription(ctx, &ctx.sub)))
        }
        (Target::Locations, Method::GET) => Ok(Reply::json(
            200,
            json!({"value": subscriptions::locations(ctx)}),
        )),
        (
            Target::OpStatus {
                family,
                id,
                monitor,
            },
            Method::GET,
        ) => common::op_status(ctx, *family, id, *monitor),
        (Target::ResourceGroup { rg }, m) => resources::resource_group(ctx, rg, &m),
        (
            Target::NotSimulated {
                rg,
                type_path,
                name,
            },
            m,
        ) => not_simulated(rg.as_deref(), type_path, name.is_some(), &m),
        (
            Target::PlatformImageVersions {
                location,
                publisher,
                offer,
                sku,
                version,
            },
            Method::GET,
        ) => platform_images::get(
            ctx,
            location,
            [publisher.as_str(), offer.as_str(), sku.as_str()],
            version.as_deref(),
        ),
        (Target::StorageAccount { rg, name }, m) => {
            storage::storage(ctx, rg.as_deref(), name.as_deref(), &m)
        }
        (Target::ResourceGroups, Method::GET) => Ok(Reply::json(
            200,
            json!({"value": resources::list_groups(ctx)?}),
        )),
        (Target::Collection { kind, rg, parent }, Method::GET) => {
            common::list(ctx, *kind, rg.as_deref(), parent.as_deref())
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
        ) => common::get(ctx, *kind, key, type_path, rg),
        (Target::Item { .. }, Method::DELETE) => deletes::delete(ctx, &route.target),
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
            crate::tags::check(&body)?;
            let patch = req.method == Method::PATCH;
            match kind {
                Kind::Image => images::put_image(ctx, &route.target, body, patch).await,
                Kind::Gallery => galleries::put_gallery(ctx, &route.target, body, patch),
                Kind::Definition => definitions::put_definition(ctx, &route.target, body, patch),
                Kind::Version => versions::put_version(ctx, &route.target, body, patch).await,
                Kind::Template => templates::put_template(ctx, &route.target, body, patch),
            }
        }
        (Target::TemplateAction { .. }, Method::POST) => imagebuilder::action(ctx, &route.target),
        (Target::GalleryShare { .. }, Method::POST) => sharing::share(ctx, &route.target),
        (
            Target::RunOutputs {
                key,
                name,
                output,
                rg,
            },
            Method::GET,
        ) => imagebuilder::run_outputs(ctx, key, name, rg, output.as_deref()),
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

/// A Compute type Azure has but devcloud does not simulate: as in an Azure subscription without any,
/// GET of an item is 404 ResourceNotFound, a list is empty and DELETE finds nothing (204). Creating
/// one is refused with an invented code, since devcloud cannot stand in for it.
fn not_simulated(
    rg: Option<&str>,
    type_path: &str,
    item: bool,
    m: &Method,
) -> Result<Reply, ArmError> {
    match (*m == Method::GET, *m == Method::DELETE, item) {
        (true, _, false) => Ok(Reply::json(200, json!({"value": []}))),
        (true, _, true) => Err(ArmError::not_found(type_path, rg.unwrap_or(""))),
        (_, true, true) => Ok(Reply::empty(204)),
        _ => Err(ArmError::invented(
            400,
            "DevcloudUnsupportedResourceType",
            format!("devcloud does not simulate '{type_path}'."),
        )),
    }
}
