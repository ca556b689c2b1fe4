//! `devcloud up`: the local cloud until Ctrl-C, with the app settings from local.settings.json and
//! `--set`, and the owner-only connection file for outside clients.

use std::{path::Path, process::ExitCode};

use anyhow::{Result, bail};
use devcloud::{
    Cloud, IMAGES_CONTAINER, Options,
    connection::{self, Connection},
    settings,
};

use super::{Paths, galleon_dir, ports, stop_signal};
use crate::UpArgs;

pub(super) async fn up(paths: Paths, args: UpArgs) -> Result<ExitCode> {
    let app = paths.app_root()?;
    let state = paths.state_dir()?;
    if let Ok(running) = Connection::read(&state)
        && running.pid != std::process::id()
        && Path::new(&format!("/proc/{}", running.pid)).exists()
    {
        bail!(
            "a devcloud (pid {}) already serves {}; stop it first, or pass another --state-dir",
            running.pid,
            state.display()
        );
    }
    let mut options = Options::new(app.clone(), galleon_dir(&args.galleon)?, state.clone());
    options.ports = ports(&args.ports);
    options.arm_time_factor = args.time_factor;
    options.grid_time_factor = args.grid_time_factor;
    if let Some(file) = &args.tenants {
        let t = devcloud::Tenants::read(file)?;
        options.arm.subscriptions = t.subscriptions;
        options.entra.apps = t.apps;
    }
    if !args.no_local_settings {
        let (values, skipped) = settings::local_settings(&app)?;
        if !values.is_empty() {
            println!(
                "{}: {} app setting(s) for galleon",
                settings::LOCAL_SETTINGS,
                values.len()
            );
        }
        if !skipped.is_empty() {
            println!(
                "{}: skipping {} (devcloud wires them to the local services; --set overrides)",
                settings::LOCAL_SETTINGS,
                skipped.join(", ")
            );
        }
        options.settings.extend(values);
    }
    options.settings.extend(args.set);

    let cloud = Cloud::start(options).await?;
    let result = async {
        cloud.storage()?.create_container(IMAGES_CONTAINER).await?;
        let conn = cloud.connection();
        conn.write(&state)?;
        println!(
            "galleon's local cloud is running:\n{}\n\n\
             Everything a client needs, with the identity header and the \
             storage connection string (Azure Storage Explorer, az storage):\n  {}\n  {}\n\
             (readable by you only; load with  set -a; . {}; set +a)\n\n\
             Try your own disk:  devcloud upload <file.vhd> [--definition NAME --regions a,b]\n\
             or upload a VHD and then its manifest to the '{IMAGES_CONTAINER}' container. Ctrl-C stops everything.",
            cloud.describe(),
            state.join(connection::ENV_FILE).display(),
            state.join(connection::JSON_FILE).display(),
            state.join(connection::ENV_FILE).display(),
        );
        anyhow::Ok(())
    }
    .await;
    if result.is_ok() {
        stop_signal().await;
        println!("stopping…");
    }
    Connection::remove(&state);
    cloud.stop().await;
    result.map(|()| ExitCode::SUCCESS)
}
