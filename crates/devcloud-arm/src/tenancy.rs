//! Subscriptions and their tenants: which tenant's tokens a subscription accepts, the auxiliary tokens
//! (`x-ms-authorization-auxiliary`) of a cross-tenant request, and ARM's linked-authorization check.
//!
//! Sources: "Authenticate requests across tenants" (learn.microsoft.com/azure/azure-resource-manager/
//! management/authenticate-multi-tenant) [doc]: up to three auxiliary tokens `Bearer <token>`, all must be
//! valid and unexpired or ARM answers 401 naming the bad token's client and tenant; a request that
//! references a resource of another tenant is processed only if an auxiliary token of that tenant is
//! there. The refusals' codes and texts are ARM's as seen in public issue threads [obs]:
//! `InvalidAuthenticationTokenTenant` (401, Azure/azure-libraries-for-java#993) and
//! `LinkedAuthorizationFailed` (403, Azure/azure-cli-extensions#7143, Azure/OpenShift#41).

use devcloud_core::{AuthError, Claims, Identity};

use crate::config::ArmConfig;
pub use crate::config::SubscriptionSeed;
use crate::error::ArmError;

/// The header carrying the auxiliary tokens.
pub const AUX_HEADER: &str = "x-ms-authorization-auxiliary";
/// ARM takes at most this many auxiliary tokens [doc].
pub const MAX_AUX_TOKENS: usize = 3;

impl ArmConfig {
    /// The tenant subscription `sub` belongs to: the configured one, else the identity's (`home`).
    pub fn tenant_of(&self, sub: &str, home: &str) -> String {
        self.subscriptions
            .iter()
            .find(|s| s.id.eq_ignore_ascii_case(sub))
            .and_then(|s| s.tenant_id.clone())
            .unwrap_or_else(|| home.to_string())
    }

    /// The display name of a configured subscription.
    pub fn subscription_name(&self, sub: &str) -> Option<String> {
        self.subscriptions
            .iter()
            .find(|s| s.id.eq_ignore_ascii_case(sub))
            .and_then(|s| s.display_name.clone())
    }
}

/// [obs] ARM's answer when the primary token's tenant is not the subscription's.
pub fn wrong_tenant(claims: &Claims, sub_tenant: &str) -> ArmError {
    ArmError::new(
        401,
        "InvalidAuthenticationTokenTenant",
        format!(
            "The access token is from the wrong issuer '{}'. It must match the tenant 'https://sts.windows.net/{sub_tenant}/' associated with this subscription. Please use the authority (URL) 'https://login.windows.net/{sub_tenant}' to get the token. Note, if the subscription is transferred to another tenant there is no impact to the services, but information about new tenant could take time to propagate (up to an hour). If you just transferred your subscription and see this error message, please try back later.",
            claims.iss
        ),
    )
}

/// Checks the auxiliary tokens of a request: at most three `Bearer` tokens, every one valid for
/// Resource Manager. Answers the tenants they stand for.
pub fn aux_tenants(identity: &Identity, header: Option<&str>) -> Result<Vec<String>, ArmError> {
    let Some(header) = header.map(str::trim).filter(|h| !h.is_empty()) else {
        return Ok(Vec::new());
    };
    let entries: Vec<&str> = header.split(',').map(str::trim).collect();
    if entries.len() > MAX_AUX_TOKENS {
        // [doc] three at most; INVENTED: ARM's answer to a fourth token is unverified (401 and the
        // code of a malformed token are assumed).
        return Err(ArmError::new(
            401,
            "InvalidAuthenticationToken",
            format!(
                "The '{AUX_HEADER}' header holds {} tokens; at most {MAX_AUX_TOKENS} are allowed.",
                entries.len()
            ),
        ));
    }
    let mut tenants = Vec::new();
    for entry in entries {
        let (scheme, token) = entry.split_once(' ').unwrap_or((entry, ""));
        let token = token.trim();
        let checked = if scheme.eq_ignore_ascii_case("bearer") {
            identity
                .verify_bare(token, "https://management.azure.com/")
                .or_else(|e| match e {
                    AuthError::Audience { .. } => {
                        identity.verify_bare(token, "https://management.core.windows.net/")
                    }
                    other => Err(other),
                })
        } else {
            // `EncryptedBearer` tokens are not simulated: refused like an unknown scheme.
            Err(AuthError::Scheme(scheme.to_string()))
        };
        match checked {
            Ok(c) => tenants.push(c.tid),
            Err(e) => {
                // [doc] 401 naming the client and tenant of the bad token; the code is the one ARM
                // gives the same failure of the primary token [assumed].
                let who = devcloud_core::identity::peek_claims(token)
                    .map(|c| format!(" (client id '{}', tenant id '{}')", c.appid, c.tid))
                    .unwrap_or_default();
                return Err(ArmError::new(
                    401,
                    e.code(),
                    format!(
                        "An auxiliary token{who} in the '{AUX_HEADER}' header is not valid: {e}"
                    ),
                ));
            }
        }
    }
    Ok(tenants)
}

/// The subscription of a resource id (`/subscriptions/{sub}/...`).
pub fn subscription_of(id: &str) -> Option<&str> {
    let mut segs = id.split('/').filter(|s| !s.is_empty());
    match (segs.next(), segs.next()) {
        (Some(s), Some(sub)) if s.eq_ignore_ascii_case("subscriptions") => Some(sub),
        _ => None,
    }
}

/// The linked-authorization check of a request that names `linked_id`: when that resource's
/// subscription belongs to another tenant than the caller's token, an auxiliary token of that tenant
/// must have come with the request, else 403 `LinkedAuthorizationFailed` [obs].
pub fn check_linked(
    config: &ArmConfig,
    home: &str,
    caller_tenant: &str,
    aux: &[String],
    linked_id: &str,
    (action, scope): (&str, &str),
) -> Result<(), ArmError> {
    let Some(linked_sub) = subscription_of(linked_id) else {
        return Ok(());
    };
    let linked_tenant = config.tenant_of(linked_sub, home);
    if linked_tenant.eq_ignore_ascii_case(caller_tenant)
        || aux.iter().any(|t| t.eq_ignore_ascii_case(&linked_tenant))
    {
        return Ok(());
    }
    Err(ArmError::new(
        403,
        "LinkedAuthorizationFailed",
        format!(
            "The client has permission to perform action '{action}' on scope '{scope}', however the current tenant '{caller_tenant}' is not authorized to access linked subscription '{linked_sub}'."
        ),
    ))
}
