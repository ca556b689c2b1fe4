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
}

impl Tokens {
    /// Tokens from `credential` for the public cloud, with no storage account allowed.
    pub fn new(credential: Arc<dyn TokenCredential>) -> Tokens {
        Tokens {
            credential,
            identity: "system-assigned".into(),
            audiences: Audiences::default(),
            storage_accounts: Arc::new(Vec::new()),
        }
    }

    /// The function app's system-assigned managed identity, public audiences, no storage account allowed.
    pub fn managed_identity() -> Result<Tokens, AzureError> {
        Tokens::managed(None).map(Tokens::new)
    }

    /// The managed identity, audiences and storage allow-list the configuration names.
    pub fn from_config(config: &Config) -> Result<Tokens, AzureError> {
        let credential = Tokens::managed(config.identity_client_id.as_deref())?;
        Ok(Tokens {
            credential,
            identity: identity_name(config.identity_client_id.as_deref()),
            audiences: config.audiences.clone(),
            storage_accounts: Arc::new(config.storage_accounts.clone()),
        })
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
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(core) = e.downcast_ref::<azure_core::Error>()
            && let azure_core::error::ErrorKind::HttpResponse { status, .. } = core.kind()
        {
            let status = u16::from(*status);
            if status == 400 || status == 404 {
                return AzureError::IdentityMissing {
                    resource: resource.to_owned(),
                    identity: identity.to_owned(),
                    message: crate::error_chain(error),
                };
            }
            break;
        }
        cause = e.source();
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
mod tests {
    use super::*;

    #[test]
    fn audiences_follow_the_cloud() {
        let cases = [
            ("https://management.azure.com", ARM_RESOURCE),
            ("https://management.azure.com/", ARM_RESOURCE),
            (
                "https://management.usgovcloudapi.net/",
                "https://management.usgovcloudapi.net",
            ),
            (
                "https://management.chinacloudapi.cn",
                "https://management.chinacloudapi.cn",
            ),
            ("https://127.0.0.1:7443", ARM_RESOURCE),
        ];
        for (endpoint, audience) in cases {
            assert_eq!(arm_audience_for(endpoint), audience, "{endpoint}");
        }
        let cases = [
            ("contoso.servicebus.windows.net", SERVICE_BUS_RESOURCE),
            (
                "contoso.servicebus.usgovcloudapi.net",
                "https://servicebus.usgovcloudapi.net",
            ),
            (
                "sb://contoso.servicebus.chinacloudapi.cn/",
                "https://servicebus.chinacloudapi.cn",
            ),
            ("127.0.0.1:7445", SERVICE_BUS_RESOURCE),
        ];
        for (namespace, audience) in cases {
            assert_eq!(service_bus_audience_for(namespace), audience, "{namespace}");
        }
    }

    #[test]
    fn storage_allow_list_matches_account_endpoints_only() {
        let hosted = StorageAccount::parse("ingest.blob.core.windows.net").expect("host");
        let emulator =
            StorageAccount::parse("https://127.0.0.1:10000/devstoreaccount1").expect("url");
        let url = |s: &str| Url::parse(s).expect("url");
        let table = [
            (
                &hosted,
                "https://ingest.blob.core.windows.net/vhds/a.vhd",
                true,
            ),
            (
                &hosted,
                "https://INGEST.blob.core.windows.net/vhds/a.vhd?sv=1",
                true,
            ),
            (
                &hosted,
                "http://ingest.blob.core.windows.net/vhds/a.vhd",
                false,
            ),
            (
                &hosted,
                "https://ingest.blob.core.windows.net:8443/vhds/a.vhd",
                false,
            ),
            (
                &hosted,
                "https://other.blob.core.windows.net/vhds/a.vhd",
                false,
            ),
            (
                &hosted,
                "https://ingest.blob.core.windows.net.evil.example/v/a.vhd",
                false,
            ),
            (
                &emulator,
                "https://127.0.0.1:10000/devstoreaccount1/vhds/a.vhd",
                true,
            ),
            (
                &emulator,
                "https://127.0.0.1:10000/devstoreaccount2/vhds/a.vhd",
                false,
            ),
            (
                &emulator,
                "https://127.0.0.1:10000/devstoreaccount1x/vhds/a.vhd",
                false,
            ),
            (
                &emulator,
                "https://127.0.0.1:10001/devstoreaccount1/vhds/a.vhd",
                false,
            ),
        ];
        for (account, blob, allowed) in table {
            assert_eq!(account.holds(&url(blob)), allowed, "{account} / {blob}");
        }
        assert!(StorageAccount::parse("https://a.blob.core.windows.net/?sv=1&sig=x").is_err());
        assert_eq!(
            emulator.to_string(),
            "https://127.0.0.1:10000/devstoreaccount1"
        );
    }

    /// A credential that must never be asked (the refusal comes before any token).
    #[derive(Debug)]
    struct Unused;

    #[async_trait::async_trait]
    impl TokenCredential for Unused {
        async fn get_token(
            &self,
            _: &[&str],
            _: Option<TokenRequestOptions<'_>>,
        ) -> azure_core::Result<AccessToken> {
            panic!("no token may be asked for")
        }
    }

    #[test]
    fn a_foreign_blob_url_is_refused_with_a_typed_error() {
        let tokens = Tokens::new(Arc::new(Unused)).with(
            Audiences::default(),
            vec![StorageAccount::parse("ingest.blob.core.windows.net").expect("host")],
        );
        let ok = Url::parse("https://ingest.blob.core.windows.net/c/x.vhd").expect("url");
        assert!(tokens.check_storage_url(&ok).is_ok());
        let foreign = Url::parse("https://evil.example/c/x.vhd?sig=secret").expect("url");
        let e = tokens.check_storage_url(&foreign).expect_err("refused");
        assert!(e.is_foreign_host() && !e.is_transient(), "{e:?}");
        assert!(!e.to_string().contains("secret"), "{e}");
        assert!(e.advice().is_some());
    }

    fn identity_endpoint_answer(status: u16) -> azure_core::Error {
        let status = azure_core::http::StatusCode::from(status);
        let inner = azure_core::Error::new(
            azure_core::error::ErrorKind::HttpResponse {
                status,
                error_code: None,
                raw_response: None,
            },
            "The requested identity has not been assigned to this resource",
        );
        // As azure_identity wraps it: a Credential error whose source is the HTTP answer.
        azure_core::Error::with_error(
            azure_core::error::ErrorKind::Credential,
            inner,
            "ManagedIdentityCredential authentication failed.",
        )
    }

    #[tokio::test]
    async fn an_app_service_without_identity_fails_for_good_at_once() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert!(app_service_without_identity(env(&[(
            "WEBSITE_INSTANCE_ID",
            "abc"
        )])));
        assert!(!app_service_without_identity(env(&[
            ("WEBSITE_INSTANCE_ID", "abc"),
            ("IDENTITY_ENDPOINT", "http://127.0.0.1:41741/msi/token"),
        ])));
        assert!(
            !app_service_without_identity(env(&[])),
            "not App Service: IMDS"
        );
        let tokens = Tokens::new(Arc::new(NoIdentity));
        let e = tokens.bearer(ARM_RESOURCE).await.expect_err("no identity");
        assert!(e.is_identity_missing() && !e.is_transient(), "{e:?}");
    }

    #[test]
    fn a_missing_identity_is_permanent_and_a_flaky_endpoint_transient() {
        let missing = token_error(
            ARM_RESOURCE,
            "client id 0000",
            &identity_endpoint_answer(400),
        );
        assert!(
            missing.is_identity_missing() && !missing.is_transient(),
            "{missing:?}"
        );
        assert!(missing.to_string().contains("client id 0000"), "{missing}");
        assert!(
            missing
                .advice()
                .is_some_and(|a| a.contains("GalleonIdentity__clientId"))
        );

        for status in [500, 503, 429] {
            let flaky = token_error(
                ARM_RESOURCE,
                "system-assigned",
                &identity_endpoint_answer(status),
            );
            assert!(flaky.is_transient(), "{status}: {flaky:?}");
        }
        let unreachable =
            azure_core::Error::with_message(azure_core::error::ErrorKind::Io, "connection refused");
        assert!(token_error(ARM_RESOURCE, "system-assigned", &unreachable).is_transient());
    }
}
