//! The custom-handler executable the Azure Functions host starts: reads its settings, binds
//! 127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT and serves galleon's functions until told to stop.

use galleon::{
    config::Config,
    functions,
    host::{Limits, Server},
    telemetry,
};

#[tokio::main]
async fn main() {
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("galleon: cannot start: {e}");
            std::process::exit(2);
        }
    };
    telemetry::install_crypto_provider();
    telemetry::init(config.log_format);
    let limits = Limits {
        max_body_bytes: config.max_invocation_bytes,
    };
    let (port, log_instance) = (config.port, config.instance.clone());
    let tokens = match galleon::azure::Tokens::from_config(&config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("galleon: cannot start: {e}");
            std::process::exit(2);
        }
    };
    let probe = tokens.clone();
    let ctx = match functions::context(config, tokens) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("galleon: cannot start: {e}");
            std::process::exit(2);
        }
    };
    let app = functions::app(ctx);
    let server = match Server::start(app, limits, port).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(port, error = %e, "cannot listen");
            eprintln!("galleon: cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    tracing::info!(addr = %server.addr, instance = %log_instance, "galleon is serving");
    // One token at start, in the background: a missing identity is said once, clearly, at start-up, and
    // the host keeps running (the steps report it again as failures with the same advice).
    tokio::spawn(async move { telemetry::identity_check(&probe).await });
    server.run_until_signal().await;
}
