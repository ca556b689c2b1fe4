//! The custom-handler executable the Azure Functions host starts: reads its settings, binds
//! 127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT and serves galleon's functions until told to stop.

use galleon::{
    config::Config,
    functions,
    host::{Limits, Server},
    telemetry,
};

/// mimalloc: less CPU per invocation than the system allocator (`cargo bench -p galleon --bench
/// efficiency -- --galleon <binary>` compares builds).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // One worker per CPU the process may use; with a single CPU (a Consumption plan instance, or a pinned
    // process) the current-thread scheduler does the same work without the cross-thread machinery. A
    // worker about to sleep first writes the log lines waiting for stdout, so they go out in batches yet
    // never wait on an idle handler.
    let single_cpu = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let mut builder = if single_cpu {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = builder
        .enable_all()
        .on_thread_park(telemetry::flush)
        .build();
    let code = match runtime {
        Ok(runtime) => runtime.block_on(serve()),
        Err(e) => {
            eprintln!("galleon: cannot start the async runtime: {e}");
            1
        }
    };
    telemetry::flush();
    std::process::exit(code);
}

/// Runs the handler until a signal; the exit code.
async fn serve() -> i32 {
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("galleon: cannot start: {e}");
            return 2;
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
            return 2;
        }
    };
    let probe = tokens.clone();
    let ctx = match functions::context(config, tokens) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("galleon: cannot start: {e}");
            return 2;
        }
    };
    let app = functions::app(ctx);
    let server = match Server::start(app, limits, port).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(port, error = %e, "cannot listen");
            eprintln!("galleon: cannot listen on 127.0.0.1:{port}: {e}");
            return 1;
        }
    };
    tracing::info!(addr = %server.addr, instance = %log_instance, "galleon is serving");
    // One token at start, in the background: a missing identity is said once, clearly, at start-up, and
    // the host keeps running (the steps report it again as failures with the same advice).
    tokio::spawn(async move { telemetry::identity_check(&probe).await });
    server.run_until_signal().await;
    0
}
