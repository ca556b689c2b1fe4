//! `devcloud upload`: a user's VHD as a page blob with its manifest, to a running `devcloud up` found
//! through its connection file, then the run followed to its end.

use std::{
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use devcloud::{blob::Storage, connection::Connection, follow::Follower, receiver::Receiver};

use super::{EXIT_INTERRUPTED, Paths, elapsed, exit_code, size, stop_signal};
use crate::UploadArgs;

pub(super) async fn upload(paths: Paths, args: UploadArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let state = paths.state_dir()?;
    let conn = Connection::read(&state)?;
    let length = std::fs::metadata(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?
        .len();
    if !length.is_multiple_of(512) {
        bail!(
            "{} is {length} bytes, not a whole number of 512-byte pages, so it cannot be a page blob (nor a fixed VHD): \
             convert it with  qemu-img convert -O vpc -o subformat=fixed,force_size <in> <out.vhd>",
            args.file.display()
        );
    }
    let request = devcloud::upload::Request {
        file_name: args
            .file
            .file_name()
            .and_then(|n| n.to_str())
            .context("the file has no name")?
            .to_owned(),
        definition: args.definition,
        os_type: args.os_type,
        generation: args.generation,
        regions: args.regions,
        version: args.version,
        gallery: args.gallery,
        identifier: args.identifier,
        publish_from: args.publish_from,
    };
    let plan = request.plan()?;
    let client = conn.client()?;
    let token = conn
        .token(&client, "https://storage.azure.com")
        .await
        .context("getting a storage token from the local cloud (is devcloud up running?)")?;
    let storage = Storage::with_token(client.clone(), conn.blob_endpoint.clone(), token);
    let container = &conn.images_container;

    // Subscribe before uploading, so no event of this run is missed.
    let receiver = Receiver::start().await?;
    let subscription = format!(
        "devcloud-upload-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let subscribed = devcloud::subscribe(
        &client,
        &conn.event_grid_endpoint,
        &subscription,
        &receiver.url(),
    )
    .await;
    let result = async {
        subscribed?;
        storage.create_container(container).await?;
        println!(
            "{:>7}  uploading {} ({}) as page blob {container}/{}",
            elapsed(started),
            args.file.display(),
            size(length),
            plan.vhd_blob
        );
        let mut next_report = 0.25;
        let sent = storage
            .upload_file_as_page_blob_with_progress(
                container,
                &plan.vhd_blob,
                &args.file,
                |done, all| {
                    let part = done as f64 / all.max(1) as f64;
                    if part >= next_report && done < all {
                        println!("{:>7}  … {:.0} %", elapsed(started), part * 100.0);
                        next_report += 0.25;
                    }
                },
            )
            .await?;
        println!(
            "{:>7}  uploaded: {} sent, all-zero ranges skipped",
            elapsed(started),
            size(sent)
        );
        println!(
            "{:>7}  uploading manifest {container}/{} (the commit signal): {}",
            elapsed(started),
            plan.manifest_blob,
            plan.manifest
        );
        storage
            .upload_block_blob(
                container,
                &plan.manifest_blob,
                plan.manifest.to_string().as_bytes(),
            )
            .await?;
        let mut follower = Follower::new(
            client.clone(),
            conn.service_bus_endpoint.clone(),
            conn.functions_host.clone(),
            receiver.received.clone(),
            vec![
                format!("{container}/{}", plan.vhd_blob),
                format!("{container}/{}", plan.manifest_blob),
            ],
            started,
        )
        .with_definition(&plan.definition, plan.manifest["version"].as_str());
        anyhow::Ok(tokio::select! {
            outcome = follower.follow(Duration::from_secs(args.timeout)) => Some(outcome),
            () = stop_signal() => None,
        })
    }
    .await;
    if let Err(e) = devcloud::unsubscribe(&client, &conn.event_grid_endpoint, &subscription).await {
        tracing::warn!("{e:#}");
    }
    receiver.stop().await;
    match result? {
        None => {
            println!("\ninterrupted (the run goes on in the local cloud)");
            Ok(ExitCode::from(EXIT_INTERRUPTED))
        }
        Some(outcome) => {
            println!("\n{}", outcome.summary());
            Ok(exit_code(&outcome))
        }
    }
}
