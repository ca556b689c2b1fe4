//! Microsoft.Storage/storageAccounts, read-only: the Azurite account(s) as ARM shows a storage account
//! (location, kind, sku, `primaryEndpoints.blob` = Azurite's endpoint), so a client can learn where a
//! VHD's account is. Any other account answers 404 ResourceNotFound.

use serde_json::{Value, json};
use warp::http::Method;

use super::common::Ctx;
use crate::arm::Reply;
use crate::config::StorageAccount;
use crate::error::ArmError;

fn in_scope(a: &StorageAccount, sub: &str, rg: Option<&str>) -> bool {
    a.subscription
        .as_deref()
        .is_none_or(|s| s.eq_ignore_ascii_case(sub))
        && rg.is_none_or(|rg| rg.eq_ignore_ascii_case(&a.resource_group))
}

fn render(ctx: &Ctx, a: &StorageAccount) -> Value {
    let location = a
        .location
        .clone()
        .unwrap_or_else(|| ctx.arm.config.default_location.clone());
    let blob = ctx
        .arm
        .blob
        .as_ref()
        .map(|b| format!("{}/", b.endpoint().trim_end_matches('/')))
        .or_else(|| {
            ctx.arm
                .config
                .blob_endpoint
                .as_ref()
                .map(|e| format!("{}/", e.trim_end_matches('/')))
        })
        .unwrap_or_default();
    let tier = if a.sku.starts_with("Premium") {
        "Premium"
    } else {
        "Standard"
    };
    json!({
        "id": format!("/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Storage/storageAccounts/{}", ctx.sub, a.resource_group, a.name),
        "name": a.name,
        "type": "Microsoft.Storage/storageAccounts",
        "location": location,
        "kind": a.kind,
        "sku": {"name": a.sku, "tier": tier},
        "tags": {},
        "properties": {
            "provisioningState": "Succeeded",
            "primaryEndpoints": {"blob": blob},
            "primaryLocation": location,
            "statusOfPrimary": "available",
            "supportsHttpsTrafficOnly": true,
            "minimumTlsVersion": "TLS1_2",
            "allowBlobPublicAccess": false,
            "accessTier": "Hot"
        }
    })
}

/// GET of one account, or the lists (by resource group or subscription).
pub fn storage(
    ctx: &Ctx,
    rg: Option<&str>,
    name: Option<&str>,
    m: &Method,
) -> Result<Reply, ArmError> {
    if *m != Method::GET {
        return Err(ArmError::invented(
            405,
            "MethodNotAllowed",
            format!(
                "The requested method '{m}' is not allowed: devcloud serves storage accounts read-only."
            ),
        ));
    }
    let accounts = ctx.arm.config.storage_accounts();
    match name {
        None => {
            let value: Vec<Value> = accounts
                .iter()
                .filter(|a| in_scope(a, &ctx.sub, rg))
                .map(|a| render(ctx, a))
                .collect();
            Ok(Reply::json(200, json!({ "value": value })))
        }
        Some(name) => accounts
            .iter()
            .find(|a| in_scope(a, &ctx.sub, rg) && a.name.eq_ignore_ascii_case(name))
            .map(|a| Reply::json(200, render(ctx, a)))
            .ok_or_else(|| {
                ArmError::not_found(
                    &format!("Microsoft.Storage/storageAccounts/{name}"),
                    rg.unwrap_or(""),
                )
            }),
    }
}
