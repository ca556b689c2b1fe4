//! Microsoft.Resources subscriptions: the list, one subscription and its locations, in the shapes of
//! the Resources/Subscriptions spec (2022-12-01 examples). azure-cli lists subscriptions at login and
//! validates regions against the locations.

use serde_json::{Value, json};

use super::common::Ctx;
use crate::config::DEFAULT_SUBSCRIPTION_ID;
use crate::error::ArmError;
use crate::names::{REGIONS, has_zones};

/// ARM's answer for a subscription id that is not a GUID [mem].
pub fn check_subscription_id(sub: &str) -> Result<(), ArmError> {
    if uuid::Uuid::parse_str(sub).is_ok() && sub.len() == 36 {
        return Ok(());
    }
    Err(ArmError::new(
        400,
        "InvalidSubscriptionId",
        format!("The provided subscription identifier '{sub}' is malformed or invalid."),
    ))
}

/// One subscription as `Subscriptions_Get` shows it.
pub fn subscription(ctx: &Ctx, sub: &str) -> Value {
    json!({
        "id": format!("/subscriptions/{sub}"),
        "subscriptionId": sub,
        "tenantId": ctx.arm.config.tenant_of(sub, &ctx.arm.identity.tenant_id),
        "displayName": ctx.arm.config.subscription_name(sub).unwrap_or_else(|| "devcloud".into()),
        "state": "Enabled",
        "authorizationSource": "RoleBased",
        "managedByTenants": [],
        "subscriptionPolicies": {
            "locationPlacementId": "Public_2014-09-01",
            "quotaId": "PayAsYouGo_2014-09-01",
            "spendingLimit": "Off"
        }
    })
}

/// The subscriptions the caller sees: those of its token's tenant among the default one, the
/// configured ones and every one that holds a resource group.
pub fn list(ctx: &Ctx) -> Vec<Value> {
    let mut subs: Vec<String> = vec![DEFAULT_SUBSCRIPTION_ID.to_string()];
    for s in &ctx.arm.config.subscriptions {
        if !subs.iter().any(|x| x.eq_ignore_ascii_case(&s.id)) {
            subs.push(s.id.clone());
        }
    }
    {
        let st = ctx.arm.lock();
        for g in st.resource_groups.values() {
            if !subs.iter().any(|s| s.eq_ignore_ascii_case(&g.subscription)) {
                subs.push(g.subscription.clone());
            }
        }
    }
    let home = &ctx.arm.identity.tenant_id;
    let caller = ctx.req.caller_tenant(home);
    subs.iter()
        .filter(|s| {
            ctx.arm
                .config
                .tenant_of(s, home)
                .eq_ignore_ascii_case(caller)
        })
        .map(|s| subscription(ctx, s))
        .collect()
}

/// `Subscriptions_ListLocations`: every public region the simulator knows.
pub fn locations(ctx: &Ctx) -> Vec<Value> {
    REGIONS
        .iter()
        .map(|(name, display)| {
            let mut v = json!({
                "id": format!("/subscriptions/{}/locations/{name}", ctx.sub),
                "name": name,
                "type": "Region",
                "displayName": display,
                "regionalDisplayName": display,
                "metadata": {"regionType": "Physical", "regionCategory": "Recommended"}
            });
            if has_zones(name) {
                v["availabilityZoneMappings"] = json!((1..=3)
                    .map(|z| json!({"logicalZone": z.to_string(), "physicalZone": format!("{name}-az{z}")}))
                    .collect::<Vec<_>>());
            }
            v
        })
        .collect()
}
