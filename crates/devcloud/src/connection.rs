//! What an outside client needs to reach a running `devcloud up` (endpoints, the identity header, the CA,
//! a storage connection string), written owner-only to the state directory as
//! `connection.json` (read back by `devcloud upload` and `inspect`) and `connection.env` (for a shell).

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// Azurite's account name (fixed by Azurite).
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
/// Azurite's well-known development account key, published in Azurite's README (not a secret: it only
/// opens the local emulator). Storage Explorer and `az storage` use it through the connection string.
pub const AZURITE_WELL_KNOWN_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The file names in the state directory.
pub const JSON_FILE: &str = "connection.json";
pub const ENV_FILE: &str = "connection.env";

/// The Shared Key connection string for Azurite's blob endpoint (`https://127.0.0.1:<port>/devstoreaccount1`).
pub fn azurite_connection_string(blob_endpoint: &str) -> String {
    format!(
        "DefaultEndpointsProtocol=https;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_WELL_KNOWN_KEY};BlobEndpoint={}/;",
        blob_endpoint.trim_end_matches('/')
    )
}

/// Everything a client outside the devcloud process needs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    /// Resource Manager base URL.
    pub arm_endpoint: String,
    pub subscription_id: String,
    pub tenant_id: String,
    /// `https://127.0.0.1:<port>/devstoreaccount1`
    pub blob_endpoint: String,
    pub storage_account: String,
    /// Shared Key connection string (Azure Storage Explorer, `az storage --connection-string`).
    pub storage_connection_string: String,
    /// App Service managed identity (api-version 2019-08-01): `IDENTITY_ENDPOINT`.
    pub identity_endpoint: String,
    /// `IDENTITY_HEADER`: the secret sent as `X-IDENTITY-HEADER`.
    pub identity_header: String,
    /// The Microsoft Entra stand-in (`https://127.0.0.1:<port>`): `POST /{tenant}/oauth2/v2.0/token`
    /// gives apps registered in several tenants a token of each (`AZURE_AUTHORITY_HOST`).
    #[serde(default)]
    pub entra_authority: String,
    /// The local CA every HTTPS endpoint chains to.
    pub ca_file: PathBuf,
    /// Service Bus REST endpoint and the namespace name galleon is given.
    pub service_bus_endpoint: String,
    pub service_bus_namespace: String,
    /// Event Grid base URL and galleon's public topic. The topic takes only Entra ID tokens
    /// (`disableLocalAuth`, as infra deploys it): no access key is handed out.
    pub event_grid_endpoint: String,
    pub event_grid_topic: String,
    pub event_grid_topic_endpoint: String,
    /// The Functions host (admin under `/_devcloud/host/`).
    pub functions_host: String,
    /// Its host key, for the `authLevel: function` endpoints (`/api/runs`; the `galleon` tool).
    #[serde(default)]
    pub functions_key: String,
    /// The container `devcloud up` watches for uploads.
    pub images_container: String,
    /// The process serving all this.
    pub pid: u32,
}

impl Connection {
    /// `export NAME='value'` lines for a POSIX shell (`. .devcloud/connection.env`).
    pub fn env_lines(&self) -> Vec<(&'static str, String)> {
        let ca = self.ca_file.display().to_string();
        vec![
            ("DEVCLOUD_ARM_ENDPOINT", self.arm_endpoint.clone()),
            ("AZURE_SUBSCRIPTION_ID", self.subscription_id.clone()),
            ("AZURE_TENANT_ID", self.tenant_id.clone()),
            ("DEVCLOUD_BLOB_ENDPOINT", self.blob_endpoint.clone()),
            ("AZURE_STORAGE_ACCOUNT", self.storage_account.clone()),
            (
                "AZURE_STORAGE_CONNECTION_STRING",
                self.storage_connection_string.clone(),
            ),
            ("IDENTITY_ENDPOINT", self.identity_endpoint.clone()),
            ("IDENTITY_HEADER", self.identity_header.clone()),
            ("AZURE_AUTHORITY_HOST", self.entra_authority.clone()),
            ("SSL_CERT_FILE", ca.clone()),
            ("REQUESTS_CA_BUNDLE", ca.clone()),
            ("NODE_EXTRA_CA_CERTS", ca),
            (
                "DEVCLOUD_SERVICEBUS_ENDPOINT",
                self.service_bus_endpoint.clone(),
            ),
            (
                "DEVCLOUD_SERVICEBUS_NAMESPACE",
                self.service_bus_namespace.clone(),
            ),
            (
                "DEVCLOUD_EVENTGRID_ENDPOINT",
                self.event_grid_endpoint.clone(),
            ),
            (
                "DEVCLOUD_EVENTGRID_TOPIC_ENDPOINT",
                self.event_grid_topic_endpoint.clone(),
            ),
            ("DEVCLOUD_FUNCTIONS_HOST", self.functions_host.clone()),
            // What the `galleon` tool reads to reach a deployed app; here, the local one.
            ("GALLEON_URL", self.functions_host.clone()),
            ("GALLEON_FUNCTIONS_KEY", self.functions_key.clone()),
        ]
    }

    fn env_file(&self) -> String {
        let mut out = String::from(
            "# galleon's local cloud (devcloud up): load with  set -a; . ./.devcloud/connection.env; set +a\n\
             # Holds the identity header and the functions key: keep it to yourself (mode 0600).\n",
        );
        for (name, value) in self.env_lines() {
            out.push_str(&format!(
                "export {name}='{}'\n",
                value.replace('\'', r"'\''")
            ));
        }
        out
    }

    /// Writes `connection.json` and `connection.env` into `dir`, readable by the owner only.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self)?;
        write_private(&dir.join(JSON_FILE), &json)?;
        write_private(&dir.join(ENV_FILE), self.env_file().as_bytes())
    }

    /// Reads `connection.json` from `dir`.
    pub fn read(dir: &Path) -> Result<Connection> {
        let path = dir.join(JSON_FILE);
        let text = std::fs::read(&path).with_context(|| {
            format!(
                "reading {} (is `devcloud up` running with this state directory?)",
                path.display()
            )
        })?;
        serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Removes the files (when the cloud stops, so no client finds stale endpoints).
    pub fn remove(dir: &Path) {
        let _ = std::fs::remove_file(dir.join(JSON_FILE));
        let _ = std::fs::remove_file(dir.join(ENV_FILE));
    }

    /// A client that trusts the local CA.
    pub fn client(&self) -> Result<reqwest::Client> {
        let ca = std::fs::read(&self.ca_file)
            .with_context(|| format!("reading the CA {}", self.ca_file.display()))?;
        Ok(reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca)?)
            .build()?)
    }

    /// A token for `resource` from the managed-identity endpoint, as any App Service client gets one.
    pub async fn token(&self, client: &reqwest::Client, resource: &str) -> Result<String> {
        let response = client
            .get(&self.identity_endpoint)
            .query(&[("api-version", "2019-08-01"), ("resource", resource)])
            .header("X-IDENTITY-HEADER", &self.identity_header)
            .send()
            .await
            .with_context(|| format!("asking {} for a token", self.identity_endpoint))?;
        let status = response.status();
        let body: serde_json::Value = response
            .json()
            .await
            .context("reading the identity endpoint's answer")?;
        match body["access_token"].as_str() {
            Some(token) if status.is_success() => Ok(token.to_owned()),
            _ => anyhow::bail!("the identity endpoint answered {status}: {body}"),
        }
    }
}

/// Writes `bytes` to `path` with mode 0600 (created so, and tightened if it already existed), through a
/// temporary file and a rename so a reader never sees half a file.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Connection {
        Connection {
            arm_endpoint: "https://127.0.0.1:7443".into(),
            subscription_id: "sub".into(),
            tenant_id: "tenant".into(),
            blob_endpoint: "https://127.0.0.1:10000/devstoreaccount1".into(),
            storage_account: AZURITE_ACCOUNT.into(),
            storage_connection_string: azurite_connection_string(
                "https://127.0.0.1:10000/devstoreaccount1",
            ),
            identity_endpoint: "http://127.0.0.1:7444/msi/token".into(),
            identity_header: "it's-secret".into(),
            entra_authority: "https://127.0.0.1:7447".into(),
            ca_file: "/tmp/ca.pem".into(),
            service_bus_endpoint: "https://127.0.0.1:7445".into(),
            service_bus_namespace: "127.0.0.1:7445".into(),
            event_grid_endpoint: "https://127.0.0.1:7446".into(),
            event_grid_topic: "galleon-events".into(),
            event_grid_topic_endpoint: "https://127.0.0.1:7446/topics/galleon-events/api/events"
                .into(),
            functions_host: "http://127.0.0.1:7071".into(),
            functions_key: "host-key".into(),
            images_container: "images".into(),
            pid: 1,
        }
    }

    #[test]
    fn files_are_owner_only_and_read_back() {
        let dir = tempfile::tempdir().expect("dir");
        let c = sample();
        c.write(dir.path()).expect("written");
        #[cfg(unix)]
        for name in [JSON_FILE, ENV_FILE] {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(name))
                .expect("exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
        assert_eq!(Connection::read(dir.path()).expect("read"), c);
        let env = std::fs::read_to_string(dir.path().join(ENV_FILE)).expect("env");
        assert!(
            env.contains("export IDENTITY_HEADER='it'\\''s-secret'\n"),
            "{env}"
        );
        assert!(env.contains(
            "export AZURE_STORAGE_CONNECTION_STRING='DefaultEndpointsProtocol=https;AccountName=devstoreaccount1;"
        ));
        Connection::remove(dir.path());
        assert!(Connection::read(dir.path()).is_err());
    }
}
