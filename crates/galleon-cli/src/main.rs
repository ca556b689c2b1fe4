//! `galleon`: the operators' tool. It reads where runs stand from a galleon app's controls (`/api/runs`),
//! on the local cloud with no configuration, or on a deployed app through `GALLEON_URL` and
//! `GALLEON_FUNCTIONS_KEY`. Human output by default, `--json` for scripts; the exit code says what
//! happened (see `ExitCode` in `client.rs`).

mod client;
mod render;

use clap::{Parser, Subcommand};

use client::{Client, Problem};

/// Where galleon's runs stand: recent runs with their regions, and a run's timeline.
#[derive(Debug, Parser)]
#[command(name = "galleon", version, about, long_about = None)]
struct Cli {
    /// The galleon app's base URL (default: $GALLEON_URL, else the local cloud's .devcloud/connection.json).
    #[arg(long, global = true, value_name = "URL")]
    url: Option<String>,
    /// Print JSON instead of text (for scripts).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Lists the recent runs: state, image, each region's replica, and a failure's advice.
    Status {
        /// At most this many runs (1 to 200).
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Shows one run's facts in order, with the time since the start and since the fact before.
    Timeline {
        /// The run (the correlation id of its facts, as `status` lists it).
        run: String,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return Problem::local(format!("cannot start: {e}"), "").exit(),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(problem) => problem.exit(),
    }
}

async fn run(cli: Cli) -> Result<(), Problem> {
    let client = Client::from_environment(cli.url.as_deref())?;
    match cli.command {
        Command::Status { limit } => {
            let body = client.get(&format!("api/runs?limit={limit}")).await?;
            if cli.json {
                println!("{}", render::json(&body));
            } else {
                print!("{}", render::status(&body));
            }
        }
        Command::Timeline { run } => {
            let body = client
                .get(&format!("api/runs/{}", client::segment(&run)))
                .await?;
            if cli.json {
                println!("{}", render::json(&body));
            } else {
                print!("{}", render::timeline(&body));
            }
        }
    }
    Ok(())
}
