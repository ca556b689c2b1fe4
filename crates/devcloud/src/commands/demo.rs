//! `devcloud demo`: everything on free ports in a temporary directory, a 64 MiB VHD through the chain,
//! the timeline, then a clean stop; the exit code says how the run ended.

use std::{
    path::Path,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use devcloud::{
    Cloud, IMAGES_CONTAINER,
    follow::{Follower, Outcome},
    receiver::Receiver,
};

use super::{EXIT_INTERRUPTED, Paths, elapsed, exit_code, private_cloud, stop_signal};
use crate::DemoArgs;

pub(super) async fn demo(paths: Paths, args: DemoArgs) -> Result<ExitCode> {
    // Everything the demo makes (state, Azurite's files, the VHD) lives here and goes at the end.
    let (work, mut options) = private_cloud(&paths, &args.galleon, "galleon-demo-")?;
    options.arm_time_factor = args.time_factor;
    let started = Instant::now();
    println!(
        "starting the local cloud (Azurite, ARM, identity, Service Bus, Event Grid, Functions host + galleon)…"
    );
    let cloud = Cloud::start(options).await?;
    println!("{}\n", cloud.describe());
    if let Err(e) = inject_faults(&cloud, &args.arm_fault).await {
        cloud.stop().await;
        return Err(e);
    }
    let outcome = tokio::select! {
        outcome = demo_run(&cloud, work.path(), started, Duration::from_secs(args.timeout)) => Some(outcome),
        () = stop_signal() => None,
    };
    cloud.stop().await;
    let removed = work.close();
    let code = match outcome {
        None => {
            println!("\ninterrupted");
            ExitCode::from(EXIT_INTERRUPTED)
        }
        Some(Err(e)) => return Err(e),
        Some(Ok(outcome)) => {
            println!("\n{}", outcome.summary());
            exit_code(&outcome)
        }
    };
    removed.context("removing the demo's temporary directory")?;
    Ok(code)
}

/// Sets fault rules on the local Resource Manager (its admin endpoint).
async fn inject_faults(cloud: &Cloud, rules: &[serde_json::Value]) -> Result<()> {
    for rule in rules {
        let response = cloud
            .client()?
            .post(format!("{}/_devcloud/faults", cloud.arm.base_url))
            .json(rule)
            .send()
            .await
            .context("setting an ARM fault")?;
        if !response.status().is_success() {
            bail!(
                "the ARM refused fault {rule}: {} {}",
                response.status(),
                response.text().await.unwrap_or_default()
            );
        }
        println!("ARM fault set: {rule}");
    }
    Ok(())
}

async fn demo_run(
    cloud: &Cloud,
    work: &Path,
    started: Instant,
    timeout: Duration,
) -> Result<Outcome> {
    let receiver = Receiver::start().await?;
    let result = async {
        cloud.subscribe("demo-subscriber", &receiver.url()).await?;
        let vhd = work.join("ubuntu-2404.vhd");
        devcloud::upload::make_fixed_vhd(&vhd, "64M").await?;
        let storage = cloud.storage()?;
        storage.create_container(IMAGES_CONTAINER).await?;
        println!(
            "{:>7}  uploading ubuntu-2404/ubuntu-2404.vhd (fixed VHD, 64 MiB, made by qemu-img) as a page blob",
            elapsed(started)
        );
        storage
            .upload_file_as_page_blob(IMAGES_CONTAINER, "ubuntu-2404/ubuntu-2404.vhd", &vhd)
            .await?;
        let manifest = serde_json::json!({
            "vhd": "ubuntu-2404.vhd", "imageDefinition": "ubuntu-2404", "osType": "Linux", "hyperVGeneration": "V2",
            "identifier": {"publisher": "contoso", "offer": "ubuntu", "sku": "24_04-lts-gen2"},
            "tags": {"build": "demo"}
        });
        println!(
            "{:>7}  uploading ubuntu-2404/ubuntu-2404.manifest.json (the commit signal)",
            elapsed(started)
        );
        storage
            .upload_block_blob(
                IMAGES_CONTAINER,
                "ubuntu-2404/ubuntu-2404.manifest.json",
                manifest.to_string().as_bytes(),
            )
            .await?;
        let mut follower = Follower::new(
            cloud.client()?,
            cloud.service_bus.url(),
            format!("http://{}", cloud.host.http_addr),
            receiver.received.clone(),
            vec![
                format!("{IMAGES_CONTAINER}/ubuntu-2404/ubuntu-2404.vhd"),
                format!("{IMAGES_CONTAINER}/ubuntu-2404/ubuntu-2404.manifest.json"),
            ],
            started,
        )
        .with_definition("ubuntu-2404", None);
        let outcome = follower.follow(timeout).await;
        if outcome.succeeded() {
            println!("ARM requests by kind: {:?}", cloud.arm.requests_by_kind());
        }
        Ok(outcome)
    }
    .await;
    receiver.stop().await;
    result
}
