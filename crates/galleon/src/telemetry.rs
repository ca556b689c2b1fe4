//! Structured logging: JSON lines (or text), each routed once to where the Functions host gives it its
//! severity (see `host::logs`); the start-up identity check; and the TLS crypto provider every client
//! needs before it is built.

pub mod json;

use tracing_subscriber::{EnvFilter, layer::SubscriberExt, util::SubscriberInitExt};

use crate::{azure::Tokens, config::LogFormat, host::Route};

/// Installs the process-wide rustls crypto provider (ring). Call before building any HTTPS client.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Installs the global subscriber. `RUST_LOG` filters (default `info`). Info lines of an invocation go back
/// in its `Logs`, other info lines to stdout, warnings and errors to stderr (the host logs stderr lines
/// containing "warn" as warnings, the rest as errors).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Json => registry
            .with(json::JsonLayer::new(Route::new(true)))
            .try_init(),
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(Route::new(false)),
            )
            .try_init(),
    };
    if let Err(e) = result {
        eprintln!("galleon: logging was already initialised: {e}");
    }
}

/// Writes the Information lines still waiting for stdout (they go out in batches; see `host::logs`).
/// The runtime calls this whenever a worker runs out of work; call it before the process exits.
pub fn flush() {
    crate::host::flush_stdout();
}

/// Tries once to get a Resource Manager token and says in one line whether the managed identity works;
/// a failure is an error line naming the identity and the fix, never a crash.
pub async fn identity_check(tokens: &Tokens) {
    let audience = tokens.audiences().arm.clone();
    match tokens.probe().await {
        Ok(()) => {
            tracing::info!(identity = tokens.identity(), audience = %audience, "managed identity works: got a Resource Manager token");
        }
        Err(e) => {
            let fix = e.advice().unwrap_or(
                "Check that the function app has a managed identity (Azure Functions then sets IDENTITY_ENDPOINT and IDENTITY_HEADER) and, for a user-assigned one, that GalleonIdentity__clientId is its client id; GALLEON_ARM_AUDIENCE must be the audience of your cloud.",
            );
            tracing::error!(identity = tokens.identity(), audience = %audience, error = %e, fix, "galleon cannot get a token from its managed identity; every Azure call will fail until this is fixed");
        }
    }
}
