//! `devcloud scale`: the scale run on a local cloud of its own (free ports, a temporary directory), with
//! progress on stderr and the figures last on stdout, as a markdown table or JSON.

use std::{process::ExitCode, time::Duration};

use anyhow::{Context, Result};
use devcloud::scale::Params;

use super::{EXIT_INTERRUPTED, EXIT_TIMED_OUT, Paths, private_cloud, stop_signal};
use crate::ScaleArgs;

pub(super) async fn scale(paths: Paths, args: ScaleArgs) -> Result<ExitCode> {
    let (work, options) = private_cloud(&paths, &args.galleon, "galleon-scale-")?;
    let params = Params {
        vhds: args.vhds,
        regions: args.regions,
        definitions: args.definitions,
        sizes: args.sizes,
        window: Duration::try_from_secs_f64(args.window)
            .context("--window must be a number of seconds, 0 or more")?,
        time_factor: args.time_factor,
        throttle_scale: args.throttle_scale,
        timeout: Duration::from_secs(args.timeout),
        settings: args.set,
    };
    let figures =
        devcloud::scale::run(options, &params, &|line| eprintln!("{line}"), stop_signal()).await;
    let removed = work.close();
    let figures = figures?;
    removed.context("removing the scale run's temporary directory")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    } else {
        println!("\n{}", figures.table());
    }
    Ok(if figures.interrupted {
        ExitCode::from(EXIT_INTERRUPTED)
    } else if figures.passed() {
        ExitCode::SUCCESS
    } else if figures.unfinished > 0 && figures.ready + figures.unfinished == figures.setup.vhds {
        ExitCode::from(EXIT_TIMED_OUT)
    } else {
        ExitCode::FAILURE
    })
}
