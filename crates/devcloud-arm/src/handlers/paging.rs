//! Paging of lists as ARM does it: at most `page_size` items per answer and a `nextLink` (absolute,
//! with the request's query and a `$skiptoken`) while more remain, so clients' pagers are exercised.

use serde_json::{Value, json};

use super::common::Ctx;
use crate::arm::Reply;
use crate::error::ArmError;

/// Cuts a list answer (`{"value": [...]}`) to the page the request's `$skiptoken` asks for.
pub fn page(ctx: &Ctx, mut reply: Reply) -> Result<Reply, ArmError> {
    let size = ctx.arm.config.page_size;
    let Some(all) = reply
        .body
        .as_mut()
        .and_then(|b| b.get_mut("value"))
        .and_then(Value::as_array_mut)
    else {
        return Ok(reply);
    };
    let skip = match ctx.req.q("$skiptoken") {
        None => 0,
        Some(t) => t.parse::<usize>().map_err(|_| {
            ArmError::invalid_parameter(format!("The skip token '{t}' is invalid."), "$skiptoken")
        })?,
    };
    if size == 0 {
        return Ok(reply);
    }
    let total = all.len();
    let items: Vec<Value> = all.drain(..).skip(skip).take(size).collect();
    let mut body = json!({ "value": items });
    if skip + size < total {
        let query: Vec<(String, String)> = ctx
            .req
            .query
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("$skiptoken"))
            .cloned()
            .chain([("$skiptoken".to_string(), (skip + size).to_string())])
            .collect();
        let qs = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(query)
            .finish();
        body["nextLink"] = json!(format!("{}{}?{qs}", ctx.base, ctx.req.path));
    }
    reply.body = Some(body);
    Ok(reply)
}
