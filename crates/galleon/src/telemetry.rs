//! Structured logging: JSON lines (or text) on stdout, the per-invocation capture that fills `Logs`, and
//! the TLS crypto provider every client needs before it is built.

use tracing_subscriber::{EnvFilter, layer::SubscriberExt, util::SubscriberInitExt};

use crate::{config::LogFormat, host::CaptureLayer};

/// Installs the process-wide rustls crypto provider (ring). Call before building any HTTPS client.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Installs the global subscriber. `RUST_LOG` filters (default `info`). Logs go to stdout: the Functions host
/// treats every stderr line as an error.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(CaptureLayer);
    let result = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stdout),
            )
            .try_init(),
        LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stdout))
            .try_init(),
    };
    if let Err(e) = result {
        eprintln!("galleon: logging was already initialised: {e}");
    }
}
