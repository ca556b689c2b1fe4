//! Tokens of other tenants, for distribution targets there. A multi-tenant app registration trusts
//! galleon's managed identity through a federated credential, so no secret is kept anywhere: the
//! identity's token for the token-exchange audience is the app's client assertion in every tenant.
//! Resource Manager calls to a subscription of another tenant carry the app's token of that tenant, and
//! the app's token of galleon's own tenant in `x-ms-authorization-auxiliary` (where the source is).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use azure_core::{
    credentials::{TokenCredential, TokenRequestOptions},
    http::{ClientMethodOptions, ClientOptions, Transport},
};
use azure_identity::{
    ClientAssertion, ClientAssertionCredential, ClientAssertionCredentialOptions,
};

use super::AzureError;
use crate::domain::distribution::CrossTenant;

const SERVICE: &str = "Entra ID";

/// The audience of a managed identity's token used as a federated credential, per cloud (the ARM
/// audience tells which cloud).
pub fn token_exchange_audience(arm_audience: &str) -> &'static str {
    if arm_audience.contains("usgovcloudapi.net") {
        "api://AzureADTokenExchangeUSGov"
    } else if arm_audience.contains("chinacloudapi.cn") {
        "api://AzureADTokenExchangeChina"
    } else {
        "api://AzureADTokenExchange"
    }
}

/// The managed identity's token for the token-exchange audience, as the app's client assertion.
#[derive(Debug)]
struct ManagedAssertion {
    managed: Arc<dyn TokenCredential>,
    scope: String,
}

#[async_trait::async_trait]
impl ClientAssertion for ManagedAssertion {
    async fn secret(&self, _: Option<ClientMethodOptions<'_>>) -> azure_core::Result<String> {
        let token = self
            .managed
            .get_token(&[self.scope.as_str()], None::<TokenRequestOptions<'_>>)
            .await?;
        Ok(token.token.secret().to_owned())
    }
}

/// The app's credentials, one per tenant (each caches its tokens).
pub struct Tenancy {
    plan: CrossTenant,
    assertion_scope: String,
    managed: Arc<dyn TokenCredential>,
    http: reqwest::Client,
    credentials: Mutex<HashMap<String, Arc<dyn TokenCredential>>>,
}

impl std::fmt::Debug for Tenancy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenancy")
            .field("client_id", &self.plan.client_id)
            .field("home_tenant", &self.plan.home_tenant)
            .finish_non_exhaustive()
    }
}

impl Tenancy {
    /// The app of `plan`, reached with `managed`'s tokens for the token exchange of the cloud whose ARM
    /// audience is `arm_audience`. Entra is at `AZURE_AUTHORITY_HOST` (default the public cloud's).
    pub fn new(
        plan: CrossTenant,
        managed: Arc<dyn TokenCredential>,
        arm_audience: &str,
        http: reqwest::Client,
    ) -> Tenancy {
        Tenancy {
            plan,
            assertion_scope: format!("{}/.default", token_exchange_audience(arm_audience)),
            managed,
            http,
            credentials: Mutex::default(),
        }
    }

    pub fn home_tenant(&self) -> &str {
        &self.plan.home_tenant
    }

    /// The other tenant `subscription` is in, if it is a distribution target's.
    pub fn tenant_of(&self, subscription: &str) -> Option<&str> {
        self.plan.tenant_of(subscription)
    }

    fn credential(&self, tenant: &str) -> Result<Arc<dyn TokenCredential>, AzureError> {
        let mut credentials = self.credentials.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = credentials.get(tenant) {
            return Ok(c.clone());
        }
        let options = ClientAssertionCredentialOptions {
            client_options: ClientOptions {
                transport: Some(Transport::new(Arc::new(self.http.clone()))),
                ..Default::default()
            },
        };
        let credential: Arc<dyn TokenCredential> = ClientAssertionCredential::new(
            tenant.to_owned(),
            self.plan.client_id.clone(),
            ManagedAssertion {
                managed: self.managed.clone(),
                scope: self.assertion_scope.clone(),
            },
            Some(options),
        )
        .map_err(|e| AzureError::Token {
            resource: format!("tenant {tenant}"),
            message: crate::error_chain(&e),
        })?;
        credentials.insert(tenant.to_owned(), credential.clone());
        Ok(credential)
    }

    /// `Bearer <token>` of the app in `tenant` for `resource`. Entra refusing the app (no service
    /// principal in that tenant, no federated credential for galleon's identity) is permanent, with the
    /// fix; anything else is retried.
    pub async fn bearer(&self, tenant: &str, resource: &str) -> Result<String, AzureError> {
        let scope = format!("{}/.default", resource.trim_end_matches('/'));
        let token = self
            .credential(tenant)?
            .get_token(&[scope.as_str()], None)
            .await
            .map_err(|e| self.refused(tenant, &e))?;
        Ok(format!("Bearer {}", token.token.secret()))
    }

    fn refused(&self, tenant: &str, error: &azure_core::Error) -> AzureError {
        let message = crate::error_chain(error);
        match super::error::http_status(error) {
            Some(status @ (400 | 401 | 403)) => AzureError::Permanent {
                service: SERVICE,
                status,
                code: "CrossTenantTokenRefused".into(),
                message: format!(
                    "the app registration {} got no token of tenant {tenant}: {message}. The app must be multi-tenant with a service principal in that tenant (an admin there consents: az ad sp create --id {}), and have a federated credential trusting galleon's managed identity (docs/cross-tenant.md)",
                    self.plan.client_id, self.plan.client_id
                ),
                target: Some(format!("tenant {tenant}")),
                ids: Box::default(),
            },
            _ => AzureError::Token {
                resource: format!("tenant {tenant}"),
                message,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_exchange_audience_follows_the_cloud() {
        assert_eq!(
            token_exchange_audience("https://management.azure.com"),
            "api://AzureADTokenExchange"
        );
        assert_eq!(
            token_exchange_audience("https://management.usgovcloudapi.net"),
            "api://AzureADTokenExchangeUSGov"
        );
        assert_eq!(
            token_exchange_audience("https://management.chinacloudapi.cn"),
            "api://AzureADTokenExchangeChina"
        );
    }
}
