//! `devcloud`: runs galleon's local cloud with one command.
//!
//! - `devcloud up`: start everything on the default ports and run until Ctrl-C.
//! - `devcloud demo`: start everything, make a real fixed VHD with qemu-img, upload it with a manifest,
//!   and show the chain as a live timeline until the image is ready in every region.
//! - `devcloud inspect [--port-bus N] [--port-grid N]`: show topics, subscriptions, queue depths, dead
//!   letters and recent Event Grid deliveries of a running devcloud.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use devcloud::{Cloud, Options, Ports, find_app_root, receiver::Receiver};

fn usage() -> ! {
    eprintln!("usage: devcloud up | devcloud demo | devcloud inspect");
    std::process::exit(2);
}

fn options() -> Result<Options> {
    let cwd = std::env::current_dir()?;
    let root = find_app_root(&cwd).context("run devcloud inside the galleon repository (no host.json and events/subscriptions.json above here)")?;
    let exe_dir = std::env::current_exe()?
        .parent()
        .map(PathBuf::from)
        .context("locating devcloud's own directory")?;
    if !exe_dir.join("galleon").is_file() {
        bail!(
            "no galleon executable next to devcloud in {}; build both: cargo build --release -p galleon -p devcloud",
            exe_dir.display()
        );
    }
    Ok(Options::new(root.clone(), exe_dir, root.join(".devcloud")))
}

#[tokio::main]
async fn main() {
    devcloud_core::install_crypto_provider();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DEVCLOUD_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let command = std::env::args().nth(1).unwrap_or_default();
    let result = match command.as_str() {
        "up" => up().await,
        "demo" => demo().await,
        "inspect" => inspect().await,
        _ => usage(),
    };
    if let Err(e) = result {
        eprintln!("devcloud: {e:#}");
        std::process::exit(1);
    }
}

async fn up() -> Result<()> {
    let cloud = Cloud::start(options()?).await?;
    println!(
        "galleon's local cloud is running:\n{}\n\nUpload a VHD and then its manifest to the 'images' container; Ctrl-C stops everything.",
        cloud.describe()
    );
    cloud.storage()?.create_container("images").await?;
    let _ = tokio::signal::ctrl_c().await;
    println!("stopping…");
    cloud.stop().await;
    Ok(())
}

async fn inspect() -> Result<()> {
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(
            &std::fs::read(options()?.state_dir.join("tls/ca.pem"))
                .context("no .devcloud/tls/ca.pem: is devcloud up running?")?,
        )?)
        .build()?;
    let ports = Ports::default();
    let bus = devcloud_messaging::inspect::servicebus_snapshot(
        &client,
        &format!("https://127.0.0.1:{}", ports.service_bus),
        10,
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let grid = devcloud_messaging::inspect::eventgrid_snapshot(
        &client,
        &format!("https://127.0.0.1:{}", ports.event_grid),
        20,
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("{}", devcloud_messaging::inspect::render_servicebus(&bus));
    println!("{}", devcloud_messaging::inspect::render_eventgrid(&grid));
    let host: serde_json::Value = client
        .get(format!(
            "http://127.0.0.1:{}/_devcloud/host/invocations",
            ports.host
        ))
        .send()
        .await?
        .json()
        .await?;
    println!("recent invocations:");
    for i in host.as_array().into_iter().flatten().rev().take(20) {
        println!(
            "  {} {:<18} {:<9} {:>6} ms",
            i["started"].as_str().unwrap_or(""),
            i["function"].as_str().unwrap_or(""),
            i["status"].as_str().unwrap_or(""),
            i["duration_ms"]
        );
    }
    Ok(())
}

async fn demo() -> Result<()> {
    let mut opts = options()?;
    opts.ports = Ports::ephemeral();
    let started = Instant::now();
    println!(
        "starting the local cloud (Azurite, ARM, identity, Service Bus, Event Grid, Functions host + galleon)…"
    );
    let cloud = Cloud::start(opts).await?;
    println!("{}\n", cloud.describe());
    let receiver = Receiver::start().await?;
    cloud.subscribe("demo-subscriber", &receiver.url()).await?;

    let work = cloud_dir()?;
    let vhd = work.join("ubuntu-2404.vhd");
    let status = std::process::Command::new("qemu-img")
        .args([
            "create",
            "-q",
            "-f",
            "vpc",
            "-o",
            "subformat=fixed,force_size",
        ])
        .arg(&vhd)
        .arg("64M")
        .status()
        .context("running qemu-img (apt-get install qemu-utils)")?;
    if !status.success() {
        bail!("qemu-img failed: {status}");
    }
    let storage = cloud.storage()?;
    storage.create_container("images").await?;
    println!(
        "{:>7}  uploading ubuntu-2404/ubuntu-2404.vhd (fixed VHD, 64 MiB, made by qemu-img) as a page blob",
        elapsed(started)
    );
    storage
        .upload_file_as_page_blob("images", "ubuntu-2404/ubuntu-2404.vhd", &vhd)
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
            "images",
            "ubuntu-2404/ubuntu-2404.manifest.json",
            manifest.to_string().as_bytes(),
        )
        .await?;

    let deadline = Instant::now() + Duration::from_secs(180);
    let (mut seen_invocations, mut seen_events, mut seen_messages) = (0usize, 0usize, 0usize);
    loop {
        // Facts on the Service Bus topic: what each step announced, scheduled follow-ups, dropped duplicates.
        let activity = cloud.service_bus.broker.with(|ns| ns.recent(500)).await;
        for a in activity.iter().skip(seen_messages) {
            let op = a["op"].as_str().unwrap_or_default();
            if matches!(op, "sent" | "scheduled" | "duplicate-dropped") {
                let what = a["detail"]
                    .as_str()
                    .unwrap_or("?")
                    .replace("io.galleon.", "");
                println!("{:>7}  fact {op:<17} {what}", elapsed(started));
            }
        }
        seen_messages = activity.len();
        let invocations = cloud.host.invocations();
        for i in invocations.iter().skip(seen_invocations) {
            println!(
                "{:>7}  ran {:<17} {:<9} {:>5} ms{}",
                elapsed(started),
                i.function,
                i.status,
                i.duration_ms,
                i.error
                    .as_deref()
                    .map(|e| format!("  ({e})"))
                    .unwrap_or_default()
            );
        }
        seen_invocations = invocations.len();
        let events = receiver.received.all();
        for e in events.iter().skip(seen_events) {
            println!(
                "{:>7}  ► subscriber received {}  {}",
                elapsed(started),
                e["type"].as_str().unwrap_or("?"),
                e["subject"].as_str().unwrap_or("")
            );
        }
        seen_events = events.len();
        if let Some(ready) = events
            .iter()
            .find(|e| e["type"] == "io.galleon.image.ready.v1")
        {
            println!(
                "\nimage ready: {}\nregions: {}\nARM requests by kind: {:?}",
                ready["data"]["versionId"],
                ready["data"]["regions"],
                cloud.arm.requests_by_kind()
            );
            break;
        }
        if let Some(failed) = events.iter().find(|e| {
            e["type"] == "io.galleon.step.failed.v1" || e["type"] == "io.galleon.vhd.rejected.v1"
        }) {
            println!("\nthe chain stopped: {failed:#}");
            break;
        }
        if Instant::now() > deadline {
            println!("\nno image-ready event within 180 s");
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    receiver.stop().await;
    cloud.stop().await;
    Ok(())
}

fn cloud_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("galleon-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn elapsed(since: Instant) -> String {
    format!("{:.1}s", since.elapsed().as_secs_f64())
}
