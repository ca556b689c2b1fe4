//! `devcloud`: galleon's local cloud in one command (`up`, `demo`, `inspect`, `upload`, `scale`); `devcloud
//! <command> --help` says what each takes. Arguments are parsed with clap; the work is in `commands`.

mod commands;

use std::{path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand};
use devcloud::scale::Params;

/// Galleon's local cloud: Azurite, Resource Manager, a managed identity, Service Bus, Event Grid and a
/// Functions host running galleon from this repository.
#[derive(Debug, Parser)]
#[command(name = "devcloud", version)]
pub struct Cli {
    /// The galleon app directory (host.json, functions/, events/subscriptions.json). Default: the
    /// nearest one above the current directory.
    #[arg(long, global = true, value_name = "DIR")]
    pub app: Option<PathBuf>,
    /// Where the local cloud keeps its CA, identity key, Azurite's files and the connection file.
    /// Default: <app>/.devcloud
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the local cloud and keep it running until Ctrl-C. Prints the endpoints and writes what a
    /// client needs (with the identity header) to <state-dir>/connection.env and
    /// connection.json, readable by you only.
    Up(UpArgs),
    /// Start the local cloud on free ports, make a 64 MiB fixed VHD with qemu-img, upload it with a
    /// manifest and show the chain until the image is ready in every region; then stop. Exits non-zero
    /// when the chain fails or does not finish in time.
    Demo(DemoArgs),
    /// Show topics, subscriptions, queue depths, dead letters, Event Grid deliveries and recent
    /// invocations of a running `devcloud up`.
    Inspect(InspectArgs),
    /// Upload your own VHD (as a page blob, with a manifest) to a running `devcloud up` and follow it
    /// through the chain. Exits 0 on image.ready, 1 on vhd.rejected or step.failed (with the reason).
    Upload(UploadArgs),
    /// The scale run: start the local cloud on free ports with Resource Manager's throttling on at
    /// Azure's token-bucket numbers, upload many fixed VHDs with manifests over an arrival window, follow
    /// every run to its end and print the figures (last, as a markdown table, or JSON). Exits 0 only
    /// when every run reached image.ready and none failed because of throttling.
    Scale(ScaleArgs),
}

#[derive(Debug, Args)]
pub struct GalleonArg {
    /// The galleon handler the Functions host runs. Default: $GALLEON_BIN, else `galleon-handler` next to
    /// devcloud.
    #[arg(long, value_name = "FILE")]
    pub galleon: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Scales Resource Manager's simulated latencies (0.02: a 10-minute replication takes 12 s; 1: as
    /// slow as Azure).
    #[arg(long, default_value_t = 0.02, value_name = "FACTOR")]
    pub time_factor: f64,
    /// Scales Event Grid's retry schedule.
    #[arg(long, default_value_t = 0.01, value_name = "FACTOR")]
    pub grid_time_factor: f64,
    /// An app setting for galleon, over the defaults and local.settings.json (repeatable).
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = devcloud::settings::parse_assignment)]
    pub set: Vec<(String, String)>,
    /// Do not read <app>/local.settings.json.
    #[arg(long)]
    pub no_local_settings: bool,
    /// Other tenants: a JSON file `{"subscriptions": [{id, tenantId, displayName}], "apps": [{clientId,
    /// tenants, secret, federated: [{issuer, subject}]}]}` (see docs/devcloud.md, "Tenants").
    #[arg(long, value_name = "FILE")]
    pub tenants: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub ports: PortArgs,
    #[command(flatten)]
    pub galleon: GalleonArg,
}

#[derive(Debug, Args)]
pub struct PortArgs {
    /// Every service on a free port (the connection file says which); single --*-port flags still win.
    #[arg(long)]
    pub any_ports: bool,
    /// Azurite blob storage [default: 10000]
    #[arg(long, value_name = "PORT")]
    pub azurite_port: Option<u16>,
    /// Resource Manager [default: 7443]
    #[arg(long, value_name = "PORT")]
    pub arm_port: Option<u16>,
    /// The managed-identity endpoint [default: 7444]
    #[arg(long, value_name = "PORT")]
    pub identity_port: Option<u16>,
    /// Service Bus [default: 7445]
    #[arg(long, value_name = "PORT")]
    pub service_bus_port: Option<u16>,
    /// Event Grid [default: 7446]
    #[arg(long, value_name = "PORT")]
    pub event_grid_port: Option<u16>,
    /// The Functions host [default: 7071]
    #[arg(long, value_name = "PORT")]
    pub host_port: Option<u16>,
    /// The Microsoft Entra token endpoint stand-in [default: 7447]
    #[arg(long, value_name = "PORT")]
    pub entra_port: Option<u16>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Give up (and exit non-zero) when the image is not ready after this many seconds.
    #[arg(long, default_value_t = 180, value_name = "SECONDS")]
    pub timeout: u64,
    /// Scales Resource Manager's simulated latencies.
    #[arg(long, default_value_t = 0.02, value_name = "FACTOR")]
    pub time_factor: f64,
    /// A fault rule for the local Resource Manager (JSON, as POST /_devcloud/faults takes it), set
    /// before the upload, to see how a failure is reported (repeatable). For example:
    /// '{"kind":"GalleryImageVersions_CreateOrUpdate","count":1,"action":{"type":"error","status":400,
    /// "code":"InvalidParameter","message":"The source blob is not accessible.","inOperation":true}}'
    #[arg(long, value_name = "JSON", value_parser = parse_json)]
    pub arm_fault: Vec<serde_json::Value>,
    #[command(flatten)]
    pub galleon: GalleonArg,
}

fn parse_json(text: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Service Bus port on 127.0.0.1. Default: from the connection file of `devcloud up`, else 7445.
    #[arg(long, value_name = "PORT")]
    pub port_bus: Option<u16>,
    /// Event Grid port on 127.0.0.1. Default: from the connection file, else 7446.
    #[arg(long, value_name = "PORT")]
    pub port_grid: Option<u16>,
    /// Functions host port on 127.0.0.1. Default: from the connection file, else 7071.
    #[arg(long, value_name = "PORT")]
    pub port_host: Option<u16>,
    /// How many recent operations, deliveries and invocations to show.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub recent: usize,
}

#[derive(Debug, Args)]
pub struct UploadArgs {
    /// The VHD (fixed, virtual size a multiple of 1 MiB; galleon checks it and says what to fix).
    #[arg(value_name = "FILE.vhd")]
    pub file: PathBuf,
    /// The gallery image definition. Default: from the file name.
    #[arg(long, value_name = "NAME")]
    pub definition: Option<String>,
    #[arg(long, default_value = "Linux", value_parser = ["Linux", "Windows"])]
    pub os_type: String,
    /// Hyper-V generation (checked against the partition table).
    #[arg(long, default_value = "V2", value_parser = ["V1", "V2"])]
    pub generation: String,
    /// Target regions: name[=replicas[:storageAccountType]], comma-separated or repeated. Default:
    /// galleon's GALLEON_TARGET_REGIONS.
    #[arg(long, value_name = "REGIONS")]
    pub regions: Vec<String>,
    /// The image version (Major.Minor.Patch). Default: from the upload time.
    #[arg(long, value_name = "X.Y.Z")]
    pub version: Option<String>,
    /// The gallery. Default: galleon's GALLEON_GALLERY.
    #[arg(long, value_name = "NAME")]
    pub gallery: Option<String>,
    /// Identifier for a new image definition: PUBLISHER/OFFER/SKU.
    #[arg(long, value_name = "PUBLISHER/OFFER/SKU", value_parser = parse_identifier)]
    pub identifier: Option<(String, String, String)>,
    /// Publish straight from the VHD or through a managed image.
    #[arg(long, value_parser = ["vhd", "managedImage"])]
    pub publish_from: Option<String>,
    /// Stop following (and exit non-zero) after this many seconds.
    #[arg(long, default_value_t = 1800, value_name = "SECONDS")]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// How many VHDs (runs).
    #[arg(long, default_value_t = Params::default().vhds, value_name = "N")]
    pub vhds: usize,
    /// Target regions per image: the home region, then the next ones the local ARM knows.
    #[arg(long, default_value_t = Params::default().regions, value_name = "N")]
    pub regions: usize,
    /// Image definitions the VHDs are spread over (VHD i publishes to definition i mod N).
    #[arg(long, default_value_t = Params::default().definitions, value_name = "N")]
    pub definitions: usize,
    /// VHD sizes, each made once with qemu-img as a fixed VHD; VHD i has size i mod the count.
    #[arg(long, value_delimiter = ',', default_value = "8M", value_name = "SIZE,…", value_parser = devcloud::scale::parse_size)]
    pub sizes: Vec<u64>,
    /// The uploads start evenly spread over this many seconds.
    #[arg(long, default_value_t = Params::default().window.as_secs_f64(), value_name = "SECONDS")]
    pub window: f64,
    /// Scales Resource Manager's simulated latencies (its throttling buckets refill in wall-clock
    /// time regardless, so a smaller factor is stricter than Azure).
    #[arg(long, default_value_t = Params::default().time_factor, value_name = "FACTOR")]
    pub time_factor: f64,
    /// Multiplies the token buckets' sizes and refill rates (1.0 = Azure's: reads 250 + 25/s, writes
    /// 200 + 10/s, deletes 200 + 10/s per subscription).
    #[arg(long, default_value_t = Params::default().throttle_scale, value_name = "SCALE")]
    pub throttle_scale: f64,
    /// Stop following after this many seconds; runs without an end count as unfinished.
    #[arg(long, default_value_t = Params::default().timeout.as_secs(), value_name = "SECONDS")]
    pub timeout: u64,
    /// An app setting for galleon (repeatable).
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = devcloud::settings::parse_assignment)]
    pub set: Vec<(String, String)>,
    /// Print the figures as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub galleon: GalleonArg,
}

fn parse_identifier(text: &str) -> Result<(String, String, String), String> {
    match text.split('/').collect::<Vec<_>>().as_slice() {
        [p, o, s] if !p.is_empty() && !o.is_empty() && !s.is_empty() => {
            Ok(((*p).to_owned(), (*o).to_owned(), (*s).to_owned()))
        }
        _ => Err(format!("expected PUBLISHER/OFFER/SKU, got {text:?}")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    devcloud_core::install_crypto_provider();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DEVCLOUD_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("devcloud: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("devcloud: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn up_takes_ports_factor_and_settings() {
        let cli = Cli::try_parse_from([
            "devcloud",
            "up",
            "--any-ports",
            "--arm-port",
            "9443",
            "--time-factor",
            "0.5",
            "--set",
            "GALLEON_GALLERY=mine",
            "--set",
            "A=b=c",
        ])
        .expect("parses");
        let Command::Up(up) = cli.command else {
            panic!("not up")
        };
        assert!(up.ports.any_ports);
        assert_eq!(up.ports.arm_port, Some(9443));
        assert_eq!(up.time_factor, 0.5);
        assert_eq!(
            up.set,
            [
                ("GALLEON_GALLERY".into(), "mine".into()),
                ("A".into(), "b=c".into())
            ]
        );
        assert!(Cli::try_parse_from(["devcloud", "up", "--set", "novalue"]).is_err());
    }

    #[test]
    fn scale_defaults_to_the_full_run_and_checks_sizes() {
        let cli = Cli::try_parse_from(["devcloud", "scale"]).expect("parses");
        let Command::Scale(s) = cli.command else {
            panic!("not scale")
        };
        assert_eq!((s.vhds, s.regions, s.throttle_scale), (200, 10, 1.0));
        assert_eq!(s.window, 60.0);
        assert_eq!(s.sizes, [8 << 20]);
        let cli = Cli::try_parse_from(["devcloud", "scale", "--sizes", "8M,64M", "--json"])
            .expect("parses");
        let Command::Scale(s) = cli.command else {
            panic!("not scale")
        };
        assert_eq!(s.sizes, [8 << 20, 64 << 20]);
        assert!(s.json);
        assert!(Cli::try_parse_from(["devcloud", "scale", "--sizes", "100K"]).is_err());
    }

    #[test]
    fn upload_checks_its_choices() {
        let cli = Cli::try_parse_from([
            "devcloud",
            "upload",
            "d.vhd",
            "--generation",
            "V1",
            "--identifier",
            "p/o/s",
            "--regions",
            "a,b=2",
            "--version",
            "1.0.0",
        ])
        .expect("parses");
        let Command::Upload(u) = cli.command else {
            panic!("not upload")
        };
        assert_eq!(u.identifier, Some(("p".into(), "o".into(), "s".into())));
        assert_eq!(u.version.as_deref(), Some("1.0.0"));
        assert!(
            Cli::try_parse_from(["devcloud", "upload", "d.vhd", "--generation", "V3"]).is_err()
        );
        assert!(
            Cli::try_parse_from(["devcloud", "upload", "d.vhd", "--identifier", "p/o"]).is_err()
        );
        assert!(Cli::try_parse_from(["devcloud", "upload"]).is_err());
    }
}
