//! Microsoft.Resources: resource groups.

use serde_json::{Value, json};
use warp::http::Method;

use super::common::Ctx;
use crate::arm::Reply;
use crate::error::ArmError;

pub(crate) fn resource_group(ctx: &Ctx, rg: &str, m: &Method) -> Result<Reply, ArmError> {
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
