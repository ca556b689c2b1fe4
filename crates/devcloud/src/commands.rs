//! What each `devcloud` command does, once clap has parsed its arguments: start the cloud and publish
//! the connection file (`up`), the self-contained demo, `inspect` and `upload` against a running `up`.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use devcloud::{
    Cloud, IMAGES_CONTAINER, Options, Ports,
    blob::Storage,
    connection::{self, Connection},
    find_app_root,
    follow::{Follower, Outcome},
    receiver::Receiver,
    settings,
};

use crate::{Cli, Command, DemoArgs, GalleonArg, InspectArgs, PortArgs, UpArgs, UploadArgs};

/// Exit code when the run did not end in time (as GNU `timeout`).
const EXIT_TIMED_OUT: u8 = 124;
/// Exit code after Ctrl-C (128 + SIGINT).
const EXIT_INTERRUPTED: u8 = 130;

pub async fn run(cli: Cli) -> Result<ExitCode> {
    let paths = Paths {
        app: cli.app,
        state_dir: cli.state_dir,
    };
    match cli.command {
        Command::Up(args) => up(paths, args).await,
        Command::Demo(args) => demo(paths, args).await,
        Command::Inspect(args) => inspect(paths, args).await,
        Command::Upload(args) => upload(paths, args).await,
    }
}

struct Paths {
    app: Option<PathBuf>,
    state_dir: Option<PathBuf>,
}

impl Paths {
    fn app_root(&self) -> Result<PathBuf> {
        let start = match &self.app {
            Some(app) => {
                let root = find_app_root(app).filter(|r| r == app);
                return root.with_context(|| {
                    format!(
                        "{} is not a galleon app directory (no host.json and events/subscriptions.json)",
                        app.display()
                    )
                });
            }
            None => std::env::current_dir()?,
        };
        find_app_root(&start).context(
            "run devcloud inside the galleon repository (no host.json and events/subscriptions.json above here), or pass --app",
        )
    }

    fn state_dir(&self) -> Result<PathBuf> {
        match &self.state_dir {
            Some(dir) => Ok(dir.clone()),
            None => Ok(self.app_root()?.join(".devcloud")),
        }
    }
}

/// The directory of the galleon executable (put on the host's PATH, as host.json names `galleon`).
fn galleon_dir(arg: &GalleonArg) -> Result<PathBuf> {
    let bin = match (&arg.galleon, std::env::var_os("GALLEON_BIN")) {
        (Some(path), _) => path.clone(),
        (None, Some(path)) => PathBuf::from(path),
        (None, None) => std::env::current_exe()?
            .parent()
            .context("locating devcloud's own directory")?
            .join("galleon"),
    };
    if !bin.is_file() {
        bail!(
            "no galleon executable at {}; build it (cargo build --release -p galleon -p devcloud) or pass --galleon",
            bin.display()
        );
    }
    if bin.file_name().and_then(|n| n.to_str()) != Some("galleon") {
        bail!(
            "{}: host.json runs an executable named `galleon`",
            bin.display()
        );
    }
    let bin = bin
        .canonicalize()
        .with_context(|| format!("resolving {}", bin.display()))?;
    Ok(bin.parent().map(Path::to_path_buf).unwrap_or_default())
}

fn ports(args: &PortArgs) -> Ports {
    let base = if args.any_ports {
        Ports::ephemeral()
    } else {
        Ports::default()
    };
    Ports {
        azurite: args.azurite_port.unwrap_or(base.azurite),
        arm: args.arm_port.unwrap_or(base.arm),
        identity: args.identity_port.unwrap_or(base.identity),
        service_bus: args.service_bus_port.unwrap_or(base.service_bus),
        event_grid: args.event_grid_port.unwrap_or(base.event_grid),
        host: args.host_port.unwrap_or(base.host),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn up(paths: Paths, args: UpArgs) -> Result<ExitCode> {
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
             Everything a client needs, with the identity header, the Event Grid topic key and the \
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

fn elapsed(since: Instant) -> String {
    format!("{:.1}s", since.elapsed().as_secs_f64())
}

async fn demo(paths: Paths, args: DemoArgs) -> Result<ExitCode> {
    let app = paths.app_root()?;
    // Everything the demo makes (state, Azurite's files, the VHD) lives here and goes at the end.
    let work = tempfile::Builder::new()
        .prefix("galleon-demo-")
        .tempdir()
        .context("making the demo's temporary directory")?;
    let state = paths
        .state_dir
        .clone()
        .unwrap_or_else(|| work.path().join("state"));
    let mut options = Options::new(app, galleon_dir(&args.galleon)?, state);
    options.ports = Ports::ephemeral();
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

/// Bytes for people: 512 B, 4.0 KiB, 8.0 MiB, 30.0 GiB.
fn size(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1048576 => format!("{:.1} KiB", b / 1024.0),
        1048576..1073741824 => format!("{:.1} MiB", b / 1048576.0),
        _ => format!("{:.1} GiB", b / 1073741824.0),
    }
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

fn exit_code(outcome: &Outcome) -> ExitCode {
    match outcome {
        Outcome::Ready(_) => ExitCode::SUCCESS,
        Outcome::Failed(_) => ExitCode::FAILURE,
        Outcome::TimedOut(_) => ExitCode::from(EXIT_TIMED_OUT),
    }
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
        let status = tokio::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "vpc", "-o", "subformat=fixed,force_size"])
            .arg(&vhd)
            .arg("64M")
            .status()
            .await
            .context("running qemu-img (apt-get install qemu-utils)")?;
        if !status.success() {
            bail!("qemu-img failed: {status}");
        }
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

async fn inspect(paths: Paths, args: InspectArgs) -> Result<ExitCode> {
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

async fn upload(paths: Paths, args: UploadArgs) -> Result<ExitCode> {
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
