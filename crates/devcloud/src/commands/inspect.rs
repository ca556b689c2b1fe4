//! `devcloud inspect`: topics, subscriptions, queue depths, dead letters, deliveries and invocations of
//! a running `devcloud up`, at the ports its connection file (or the flags, or the defaults) say.

use std::process::ExitCode;

use anyhow::{Context, Result};
use devcloud::{Ports, connection::Connection};

use super::Paths;
use crate::InspectArgs;

pub(super) async fn inspect(paths: Paths, args: InspectArgs) -> Result<ExitCode> {
    let state = paths.state_dir()?;
    let conn = Connection::read(&state).ok();
    let ca = match &conn {
        Some(c) => c.ca_file.clone(),
        None => state.join("tls/ca.pem"),
    };
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(
            &std::fs::read(&ca)
                .with_context(|| format!("no {}: is devcloud up running?", ca.display()))?,
        )?)
        .build()?;
    let defaults = Ports::default();
    let pick = |flag: Option<u16>, from_file: Option<&String>, default: u16, scheme: &str| match (
        flag, from_file,
    ) {
        (Some(port), _) => format!("{scheme}://127.0.0.1:{port}"),
        (None, Some(url)) => url.trim_end_matches('/').to_owned(),
        (None, None) => format!("{scheme}://127.0.0.1:{default}"),
    };
    let bus = pick(
        args.port_bus,
        conn.as_ref().map(|c| &c.service_bus_endpoint),
        defaults.service_bus,
        "https",
    );
    let grid = pick(
        args.port_grid,
        conn.as_ref().map(|c| &c.event_grid_endpoint),
        defaults.event_grid,
        "https",
    );
    let host = pick(
        args.port_host,
        conn.as_ref().map(|c| &c.functions_host),
        defaults.host,
        "http",
    );
    let bus_view = devcloud_messaging::inspect::servicebus_snapshot(&client, &bus, args.recent)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("asking Service Bus at {bus}"))?;
    let grid_view = devcloud_messaging::inspect::eventgrid_snapshot(&client, &grid, args.recent)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("asking Event Grid at {grid}"))?;
    println!(
        "{}",
        devcloud_messaging::inspect::render_servicebus(&bus_view)
    );
    println!(
        "{}",
        devcloud_messaging::inspect::render_eventgrid(&grid_view)
    );
    let invocations: serde_json::Value = client
        .get(format!("{host}/_devcloud/host/invocations"))
        .send()
        .await
        .with_context(|| format!("asking the Functions host at {host}"))?
        .json()
        .await?;
    println!("recent invocations:");
    for i in invocations
        .as_array()
        .into_iter()
        .flatten()
        .rev()
        .take(args.recent)
    {
        println!(
            "  {} {:<18} {:<9} {:>6} ms",
            i["started"].as_str().unwrap_or(""),
            i["function"].as_str().unwrap_or(""),
            i["status"].as_str().unwrap_or(""),
            i["durationMs"]
        );
    }
    Ok(ExitCode::SUCCESS)
}
