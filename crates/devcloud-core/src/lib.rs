//! Shared plumbing of the local cloud: a local certificate authority, HTTPS serving, and the tokens its identity endpoint
//! and its Entra token endpoint stand-in issue.
//! Also starts Azurite (the real Blob Storage emulator) with that certificate and OAuth.

pub mod azurite;
pub mod entra;
pub mod identity;
pub mod serve;
pub mod tls;

pub use azurite::{Azurite, AzuriteError};
pub use entra::{Entra, EntraApp, EntraConfig, FederatedCredential};
pub use identity::{AuthError, Claims, Identity, IdentityError, Principal};
pub use serve::{ServerHandle, serve_http, serve_https};
pub use tls::{Tls, TlsError};

/// Installs rustls' ring crypto provider as the process default (idempotent).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
