//! `galleon`: the operators' tool. It reads where runs stand from a galleon app's controls (`/api/runs`)
//! marks versions bad or pinned and replicates them again (`/api/versions`),
//! on the local cloud with no configuration, or on a deployed app through `GALLEON_URL` and
//! `GALLEON_FUNCTIONS_KEY`. Human output by default, `--json` for scripts; the exit code says what
//! happened (see `Problem` in `client.rs`).

mod client;
mod render;
mod watch;

use clap::{Parser, Subcommand};

use client::{Client, Problem};

/// Where galleon's runs stand (recent runs with their regions, a run's timeline), and marks on versions.
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
        /// Keep the view live: a progress bar of each run's replicas, redrawn until Ctrl-C.
        #[arg(long)]
        watch: bool,
        /// Seconds between looks while watching.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=300), requires = "watch")]
        interval: u64,
        /// While watching, stop once no listed run is running.
        #[arg(long, requires = "watch")]
        until_done: bool,
    },
    /// Shows one run's facts in order, with the time since the start and since the fact before.
    Timeline {
        /// The run (the correlation id of its facts, as `status` lists it).
        run: String,
    },
    /// Announces a run's public facts again (same ids), for a subscriber that missed them.
    Reannounce {
        /// The run (as `status` lists it).
        run: String,
    },
    /// Runs an Image Builder template now, as the schedule would (it must be one galleon builds).
    Rebuild {
        /// The template's name, or its resource id.
        template: String,
        /// Build even when the template's source is the same as at its last successful build.
        #[arg(long)]
        force: bool,
        /// Why, for the build's facts.
        #[arg(long)]
        note: Option<String>,
    },
    /// Lists the dead letters galleon kept: what died where, Service Bus's reason, its run.
    DeadLetters,
    /// Sends a dead-lettered fact again once its cause is fixed (its id as `dead-letters` lists it).
    Resubmit {
        /// The fact id.
        id: String,
    },
    /// Marks a version bad, with its distributed copies: excluded from `latest` everywhere, and the first
    /// to go under retention.
    MarkBad(Target),
    /// Pins a version, with its distributed copies: retention never deletes it.
    Pin(Target),
    /// Re-runs a version's replication: its failed regions again, and regions added with --region. It
    /// starts a run of its own, which ends in each region's replica.ready and an image.ready.
    Rerun {
        #[command(flatten)]
        target: Target,
        /// A region to add (ARM name, such as uksouth); repeat for more.
        #[arg(long = "region", value_name = "REGION")]
        regions: Vec<String>,
    },
}

#[derive(Debug, clap::Args)]
struct Target {
    /// The image definition (as in the gallery).
    definition: String,
    /// The version (major.minor.patch).
    version: String,
    /// Why, for the announcement (at most 500 characters).
    #[arg(long)]
    reason: Option<String>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
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
        Command::Status {
            limit,
            watch: true,
            interval,
            until_done,
        } => {
            watch::watch(
                &client,
                limit,
                std::time::Duration::from_secs(interval),
                until_done,
            )
            .await?;
        }
        Command::Status { limit, .. } => {
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
        Command::Reannounce { run } => {
            let answer = client
                .post(
                    &format!("api/runs/{}/announce", client::segment(&run)),
                    &serde_json::json!({}),
                )
                .await?;
            if cli.json {
                println!("{}", render::json(&answer));
            } else {
                println!(
                    "announced {} facts of run {run} again",
                    answer
                        .get("announced")
                        .and_then(serde_json::Value::as_u64)
                        .unwrap_or(0)
                );
            }
        }
        Command::Rebuild {
            template,
            force,
            note,
        } => {
            let by = std::env::var("USER").unwrap_or_else(|_| "operator".into());
            let answer = client
                .post(
                    "api/builds/rebuild",
                    &serde_json::json!({"template": template, "force": force, "note": note, "by": by}),
                )
                .await?;
            if cli.json {
                println!("{}", render::json(&answer));
            } else {
                println!(
                    "build of {} requested (run {})",
                    answer
                        .get("requested")
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or(""),
                    answer
                        .get("run")
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or("")
                );
            }
        }
        Command::DeadLetters => {
            let body = client.get("api/deadletters").await?;
            if cli.json {
                println!("{}", render::json(&body));
            } else {
                print!("{}", render::dead_letters(&body));
            }
        }
        Command::Resubmit { id } => {
            let answer = client
                .post(
                    &format!("api/deadletters/{}/resubmit", client::segment(&id)),
                    &serde_json::json!({}),
                )
                .await?;
            if cli.json {
                println!("{}", render::json(&answer));
            } else {
                print!("{}", render::resubmitted(&answer));
            }
        }
        Command::MarkBad(target) => mark(&client, "bad", &target, cli.json).await?,
        Command::Pin(target) => mark(&client, "pin", &target, cli.json).await?,
        Command::Rerun { target, regions } => {
            let path = format!(
                "api/versions/{}/{}/replicate",
                client::segment(&target.definition),
                client::segment(&target.version)
            );
            let by = std::env::var("USER").unwrap_or_else(|_| "operator".into());
            let answer = client
                .post(
                    &path,
                    &serde_json::json!({"regions": regions, "reason": target.reason, "by": by}),
                )
                .await?;
            if cli.json {
                println!("{}", render::json(&answer));
            } else {
                print!("{}", render::replicated(&answer));
            }
        }
    }
    Ok(())
}

async fn mark(client: &Client, mark: &str, target: &Target, json: bool) -> Result<(), Problem> {
    let path = format!(
        "api/versions/{}/{}/{mark}",
        client::segment(&target.definition),
        client::segment(&target.version)
    );
    let body = match &target.reason {
        Some(reason) => serde_json::json!({"reason": reason}),
        None => serde_json::json!({}),
    };
    let answer = client.post(&path, &body).await?;
    if json {
        println!("{}", render::json(&answer));
    } else {
        print!("{}", render::marked(mark, &answer));
    }
    Ok(())
}
