//! Credentials the host uses toward Azure services: managed-identity tokens (App Service
//! protocol, api-version 2019-08-01) cached per resource, and Service Bus SAS tokens.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Where the managed-identity endpoint is (`IDENTITY_ENDPOINT` / `IDENTITY_HEADER`).
#[derive(Debug, Clone)]
pub struct IdentityEndpoint {
    pub endpoint: String,
    pub header: String,
}

/// Fetches and caches bearer tokens from the managed-identity endpoint.
pub struct TokenSource {
    http: reqwest::Client,
    identity: Option<IdentityEndpoint>,
    cache: Mutex<HashMap<String, (String, Instant)>>,
}

impl TokenSource {
    pub fn new(http: reqwest::Client, identity: Option<IdentityEndpoint>) -> Self {
        Self {
            http,
            identity,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// A bearer token for `resource` (e.g. `https://servicebus.azure.net`).
    pub async fn token(&self, resource: &str) -> anyhow::Result<String> {
        if let Ok(c) = self.cache.lock()
            && let Some((tok, until)) = c.get(resource)
            && Instant::now() < *until
        {
            return Ok(tok.clone());
        }
        let Some(id) = &self.identity else {
            bail!(
                "no managed identity: IDENTITY_ENDPOINT/IDENTITY_HEADER are not set (needed for a token for {resource})"
            );
        };
        let resp = self
            .http
            .get(&id.endpoint)
            .query(&[("resource", resource), ("api-version", "2019-08-01")])
            .header("X-IDENTITY-HEADER", &id.header)
            .send()
            .await
            .with_context(|| format!("managed identity endpoint {} unreachable", id.endpoint))?;
        let status = resp.status();
        let body: serde_json::Value = resp
            .json()
            .await
            .context("managed identity endpoint answered with invalid JSON")?;
        if !status.is_success() {
            bail!("managed identity endpoint answered {status} for {resource}");
        }
        let token = body
            .get("access_token")
            .and_then(|v| v.as_str())
            .ok_or_else(|| anyhow!("managed identity response has no access_token"))?
            .to_string();
        let expires_on = body.get("expires_on").and_then(|v| match v {
            serde_json::Value::String(s) => s.parse::<i64>().ok(),
            serde_json::Value::Number(n) => n.as_i64(),
            _ => None,
        });
        let lifetime = expires_on
            .map(|e| e - chrono::Utc::now().timestamp())
            .unwrap_or(300)
            .max(0) as u64;
        // Refresh five minutes early (or halfway for short-lived tokens).
        let keep = Duration::from_secs(lifetime.saturating_sub(300).max(lifetime / 2));
        if let Ok(mut c) = self.cache.lock() {
            c.insert(resource.to_string(), (token.clone(), Instant::now() + keep));
        }
        Ok(token)
    }
}

/// `SharedAccessSignature sr=…&sig=…&se=…&skn=…` for a Service Bus resource URI.
pub fn service_bus_sas(resource_uri: &str, key_name: &str, key: &str, expiry_unix: i64) -> String {
    let sr = url::form_urlencoded::byte_serialize(resource_uri.to_ascii_lowercase().as_bytes())
        .collect::<String>();
    let to_sign = format!("{sr}\n{expiry_unix}");
    let sig = match Hmac::<Sha256>::new_from_slice(key.as_bytes()) {
        Ok(mut mac) => {
            mac.update(to_sign.as_bytes());
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    };
    let sig = url::form_urlencoded::byte_serialize(sig.as_bytes()).collect::<String>();
    format!("SharedAccessSignature sr={sr}&sig={sig}&se={expiry_unix}&skn={key_name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sas_shape() {
        let s = service_bus_sas(
            "https://NS.servicebus.windows.net/q",
            "RootManageSharedAccessKey",
            "k",
            1700000000,
        );
        assert!(s.starts_with(
            "SharedAccessSignature sr=https%3A%2F%2Fns.servicebus.windows.net%2Fq&sig="
        ));
        assert!(s.ends_with("&se=1700000000&skn=RootManageSharedAccessKey"));
    }
}
