//! Tokens from the function app's managed identity (system-assigned, or the user-assigned one named by
//! its client id), for the audiences of the configured cloud, and the only hosts they may be sent to:
//! the configured Resource Manager, Service Bus namespace and the allow-listed storage accounts.

use std::{fmt, sync::Arc};

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_identity::{ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId};
use reqwest::Url;

use super::AzureError;
use crate::config::Config;

/// Public-cloud audiences, the defaults.
pub const ARM_RESOURCE: &str = "https://management.azure.com";
pub const STORAGE_RESOURCE: &str = "https://storage.azure.com";
pub const SERVICE_BUS_RESOURCE: &str = "https://servicebus.azure.net";

/// The token audiences (resources) of the cloud galleon runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audiences {
    pub arm: String,
    pub storage: String,
    pub service_bus: String,
}

impl Default for Audiences {
    fn default() -> Audiences {
        Audiences {
            arm: ARM_RESOURCE.to_owned(),
            storage: STORAGE_RESOURCE.to_owned(),
            service_bus: SERVICE_BUS_RESOURCE.to_owned(),
        }
    }
}

/// The ARM audience of an ARM endpoint: the sovereign clouds' own, else the public one (also for the
/// local cloud, which accepts the public audiences).
pub fn arm_audience_for(endpoint: &str) -> String {
    let host = Url::parse(endpoint)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .unwrap_or_default();
    match host.as_str() {
        "management.usgovcloudapi.net" => "https://management.usgovcloudapi.net",
        "management.chinacloudapi.cn" => "https://management.chinacloudapi.cn",
        _ => ARM_RESOURCE,
    }
    .to_owned()
}

/// The Service Bus audience of a namespace (`x.servicebus.windows.net` and the sovereign suffixes).
pub fn service_bus_audience_for(namespace: &str) -> String {
    let host = namespace
        .split("://")
        .last()
        .unwrap_or(namespace)
        .split(['/', ':'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if host.ends_with(".servicebus.usgovcloudapi.net") {
        "https://servicebus.usgovcloudapi.net".to_owned()
    } else if host.ends_with(".servicebus.chinacloudapi.cn") {
        "https://servicebus.chinacloudapi.cn".to_owned()
    } else {
        SERVICE_BUS_RESOURCE.to_owned()
    }
}

/// A storage account galleon may send tokens to: its blob endpoint (`https://acct.blob.core.windows.net`,
/// or a path-style emulator endpoint `https://127.0.0.1:10000/devstoreaccount1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageAccount {
    scheme: String,
    host: String,
    port: Option<u16>,
    /// The account's path segment for path-style endpoints, else empty.
    path: String,
}

impl StorageAccount {
    /// Reads an entry of `GALLEON_STORAGE_ACCOUNTS`: a blob endpoint URL or a bare host name.
    pub fn parse(entry: &str) -> Result<StorageAccount, String> {
        let entry = entry.trim();
        let text = if entry.contains("://") {
            entry.to_owned()
        } else {
            format!("https://{entry}")
        };
        let url =
            Url::parse(&text).map_err(|e| format!("'{entry}' is not a blob endpoint: {e}"))?;
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("'{entry}' has no host"))?;
        if url.query().is_some() {
            return Err(format!(
                "'{entry}' must be an endpoint without a query (no SAS)"
            ));
        }
        Ok(StorageAccount {
            scheme: url.scheme().to_owned(),
            host: host.to_ascii_lowercase(),
            port: url.port_or_known_default(),
            path: url.path().trim_matches('/').to_owned(),
        })
    }

    /// Whether `url` is a blob of this account.
    pub fn holds(&self, url: &Url) -> bool {
        url.scheme() == self.scheme
            && url.host_str().map(str::to_ascii_lowercase).as_deref() == Some(self.host.as_str())
            && url.port_or_known_default() == self.port
            && (self.path.is_empty()
                || url
                    .path()
                    .trim_start_matches('/')
                    .strip_prefix(self.path.as_str())
                    .is_some_and(|rest| rest.starts_with('/')))
    }
}

impl fmt::Display for StorageAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        if let Some(p) = self.port.filter(|p| *p != 443) {
            write!(f, ":{p}")?;
        }
        if !self.path.is_empty() {
            write!(f, "/{}", self.path)?;
        }
        Ok(())
    }
}

/// Bearer tokens for the resources galleon calls, from one credential (cached by the credential), and
/// the rules for where they may go.
#[derive(Clone, Debug)]
pub struct Tokens {
    credential: Arc<dyn TokenCredential>,
    /// `system-assigned` or `client id <guid>`, for messages.
    identity: String,
    audiences: Audiences,
    storage_accounts: Arc<Vec<StorageAccount>>,
    /// Tokens of other tenants, when distribution targets are there.
    tenancy: Option<Arc<super::tenants::Tenancy>>,
}

impl Tokens {
    /// Tokens from `credential` for the public cloud, with no storage account allowed.
    pub fn new(credential: Arc<dyn TokenCredential>) -> Tokens {
        Tokens {
            credential,
            identity: "system-assigned".into(),
            audiences: Audiences::default(),
            storage_accounts: Arc::new(Vec::new()),
            tenancy: None,
        }
    }

    /// The function app's system-assigned managed identity, public audiences, no storage account allowed.
    pub fn managed_identity() -> Result<Tokens, AzureError> {
        Tokens::managed(None).map(Tokens::new)
    }

    /// The managed identity, audiences and storage allow-list the configuration names.
    pub fn from_config(config: &Config) -> Result<Tokens, AzureError> {
        let credential = Tokens::managed(config.identity_client_id.as_deref())?;
        let tenancy = match &config.cross_tenant {
            None => None,
            Some(plan) => {
                let http = super::http_client().map_err(|e| AzureError::Token {
                    resource: "other tenants".into(),
                    message: crate::error_chain(&e),
                })?;
                Some(Arc::new(super::tenants::Tenancy::new(
                    plan.clone(),
                    credential.clone(),
                    &config.audiences.arm,
                    http,
                )))
            }
        };
        Ok(Tokens {
            credential,
            identity: identity_name(config.identity_client_id.as_deref()),
            audiences: config.audiences.clone(),
            storage_accounts: Arc::new(config.storage_accounts.clone()),
            tenancy,
        })
    }

    /// The same tokens, reaching other tenants as `tenancy` says (tests, tools).
    pub fn with_tenancy(mut self, tenancy: super::tenants::Tenancy) -> Tokens {
        self.tenancy = Some(Arc::new(tenancy));
        self
    }

    /// The managed identity's credential itself (for the app that reaches other tenants).
    pub fn managed_credential(&self) -> Arc<dyn TokenCredential> {
        self.credential.clone()
    }

    /// `Authorization` for a Resource Manager call on `path`, and `x-ms-authorization-auxiliary` when the
    /// path's subscription is in another tenant: then the app's token of that tenant, with its token of
    /// galleon's own tenant as the auxiliary one.
    pub async fn arm_authorization(
        &self,
        path: &str,
    ) -> Result<(String, Option<String>), AzureError> {
        let arm = &self.audiences.arm;
        let foreign = self.tenancy.as_ref().and_then(|t| {
            super::budget::subscription_of(path)
                .and_then(|sub| t.tenant_of(sub))
                .map(|tenant| (t, tenant))
        });
        match foreign {
            None => Ok((self.bearer(arm).await?, None)),
            Some((t, tenant)) => Ok((
                t.bearer(tenant, arm).await?,
                Some(t.bearer(t.home_tenant(), arm).await?),
            )),
        }
    }

    /// `IDENTITY_ENDPOINT`/`IDENTITY_HEADER` in Azure Functions (and the local cloud); IMDS elsewhere. An
    /// App Service without `IDENTITY_ENDPOINT` has no managed identity at all: every token request then
    /// fails at once as a missing identity, rather than waiting on an IMDS that App Service does not have.
    fn managed(client_id: Option<&str>) -> Result<Arc<dyn TokenCredential>, AzureError> {
        if app_service_without_identity(|name| std::env::var(name).ok()) {
            return Ok(Arc::new(NoIdentity));
        }
        let options = ManagedIdentityCredentialOptions {
            user_assigned_id: client_id.map(|c| UserAssignedId::ClientId(c.to_owned())),
            ..Default::default()
        };
        let credential: Arc<dyn TokenCredential> = ManagedIdentityCredential::new(Some(options))
            .map_err(|e| AzureError::Token {
                resource: "any".into(),
                message: crate::error_chain(&e),
            })?;
        Ok(credential)
    }

    /// The same tokens with other audiences and storage accounts (tests, tools).
    pub fn with(mut self, audiences: Audiences, storage_accounts: Vec<StorageAccount>) -> Tokens {
        self.audiences = audiences;
        self.storage_accounts = Arc::new(storage_accounts);
        self
    }

    pub fn audiences(&self) -> &Audiences {
        &self.audiences
    }

    /// Which identity the tokens come from, for messages.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// A credential for SDK clients that ask for their own (public) scope: it asks for `audience` instead.
    pub fn credential_for(&self, audience: &str) -> Arc<dyn TokenCredential> {
        Arc::new(FixedAudience {
            inner: self.credential.clone(),
            scope: format!("{}/.default", audience.trim_end_matches('/')),
        })
    }

    /// The storage credential (the configured storage audience).
    pub fn credential(&self) -> Arc<dyn TokenCredential> {
        self.credential_for(&self.audiences.storage)
    }

    /// Refuses a blob URL outside the allow-listed storage accounts.
    pub fn check_storage_url(&self, url: &Url) -> Result<(), AzureError> {
        if self.storage_accounts.iter().any(|a| a.holds(url)) {
            return Ok(());
        }
        let allowed: Vec<String> = self
            .storage_accounts
            .iter()
            .map(|a| a.to_string())
            .collect();
        Err(AzureError::ForeignHost {
            service: "Blob Storage",
            url: without_query(url),
            reason: if allowed.is_empty() {
                "no storage account is allowed (GALLEON_STORAGE_ACCOUNTS is empty)".to_owned()
            } else {
                format!(
                    "not a blob of an allowed storage account ({})",
                    allowed.join(", ")
                )
            },
        })
    }

    pub async fn bearer(&self, resource: &str) -> Result<String, AzureError> {
        let scope = format!("{}/.default", resource.trim_end_matches('/'));
        let token = self
            .credential
            .get_token(&[scope.as_str()], None)
            .await
            .map_err(|e| token_error(resource, &self.identity, &e))?;
        Ok(format!("Bearer {}", token.token.secret()))
    }

    /// Tries once to get an ARM token, for the start-up check.
    pub async fn probe(&self) -> Result<(), AzureError> {
        self.bearer(&self.audiences.arm).await.map(|_| ())
    }
}

pub(crate) fn identity_name(client_id: Option<&str>) -> String {
    match client_id {
        Some(id) => format!("client id {id}"),
        None => "system-assigned".to_owned(),
    }
}

fn without_query(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

/// Sorts a credential failure: the identity endpoint answering 400/404 (App Service: "No User Assigned or
/// Delegated Managed Identity found", IMDS: "Identity not found"; azure_identity: "The requested identity
/// has not been assigned to this resource") means the identity is not there, for good; anything else (no
/// answer, 5xx, 429) is transient.
pub(crate) fn token_error(resource: &str, identity: &str, error: &azure_core::Error) -> AzureError {
    if matches!(super::error::http_status(error), Some(400 | 404)) {
        return AzureError::IdentityMissing {
            resource: resource.to_owned(),
            identity: identity.to_owned(),
            message: crate::error_chain(error),
        };
    }
    AzureError::Token {
        resource: resource.to_owned(),
        message: crate::error_chain(error),
    }
}

/// Whether galleon runs in App Service (Azure Functions) with no managed identity enabled: App Service sets
/// `WEBSITE_INSTANCE_ID` always, and `IDENTITY_ENDPOINT` only when the app has an identity.
pub(crate) fn app_service_without_identity(env: impl Fn(&str) -> Option<String>) -> bool {
    env("WEBSITE_INSTANCE_ID").is_some() && env("IDENTITY_ENDPOINT").is_none()
}

/// The credential of an app without a managed identity: fails as the identity endpoint would, 400.
#[derive(Debug)]
struct NoIdentity;

#[async_trait::async_trait]
impl TokenCredential for NoIdentity {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let message =
            "the function app has no managed identity (App Service did not set IDENTITY_ENDPOINT)";
        Err(azure_core::Error::with_error(
            azure_core::error::ErrorKind::Credential,
            azure_core::Error::new(
                azure_core::error::ErrorKind::HttpResponse {
                    status: azure_core::http::StatusCode::BadRequest,
                    error_code: None,
                    raw_response: None,
                },
                message,
            ),
            message,
        ))
    }
}

/// A credential that always asks for one scope, whatever the client asks for (the Storage SDK asks for the
/// public `https://storage.azure.com/.default`).
#[derive(Debug)]
struct FixedAudience {
    inner: Arc<dyn TokenCredential>,
    scope: String,
}

#[async_trait::async_trait]
impl TokenCredential for FixedAudience {
    async fn get_token(
        &self,
        _scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        self.inner.get_token(&[self.scope.as_str()], options).await
    }
}

#[cfg(test)]
#[path = "identity_tests.rs"]
mod tests;
