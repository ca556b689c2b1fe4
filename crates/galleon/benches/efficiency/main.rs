//! Handler efficiency, side by side: galleon's release binary and a reference custom handler written the
//! way the Functions documentation samples are (`benches/reference/server.js`, Node's `http` module), both
//! started as the host starts a handler and driven by the same load tool ([`load`]) with the same
//! invocation: a BlobCreated Event Grid event for a blob galleon ignores (the recorded docs event, a
//! `.txt` outside the ingest containers). Per system it prints CPU time per invocation (utime+stime of
//! the server process over the measured window, divided by the answers in it), throughput and p50/p99
//! latency, then the ratios. Figures only: nothing here asserts a time.
//!
//! Run: `cargo bench -p galleon --bench efficiency` (options after `--`, see `--help`). Servers are
//! pinned to one CPU and the load tool to another with `taskset` when there are two.

mod load;

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use clap::Parser;
use serde_json::{Value, json};

/// Side-by-side handler benchmark: galleon against the Node reference handler.
#[derive(Parser, Debug)]
struct Args {
    /// Concurrent keep-alive connections (the host's maxConcurrentCalls is 16).
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Seconds of load before each measured window.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Seconds in each measured window.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Measured windows per system (systems alternate; the figures are the medians, the spread is shown).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// CPU the servers are pinned to.
    #[arg(long, default_value_t = 1)]
    server_cpu: usize,
    /// CPU the load tool is pinned to.
    #[arg(long, default_value_t = 0)]
    load_cpu: usize,
    /// Keep the load tool's thread running between answers (it polls instead of sleeping), so an answer
    /// never has to wake it: what the server's kernel time then holds is its own work, not the wake-up of
    /// an idle client (costly on a virtual machine). Same for both systems.
    #[arg(long)]
    busy_client: bool,
    /// Niceness for the servers and the load tool (e.g. -5, as root) so that other work on a shared machine
    /// disturbs the figures less; 0 leaves it.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    nice: i32,
    /// Do not pin anything.
    #[arg(long)]
    no_pin: bool,
    /// galleon executable (default: the one this bench was built with, release profile).
    #[arg(long)]
    galleon: Option<String>,
    /// Extra app setting for galleon, NAME=VALUE (repeatable), e.g. `--set RUST_LOG=warn` to see what
    /// logging costs.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    settings: Vec<String>,
    /// Node.js executable for the reference handler.
    #[arg(long, default_value = "node")]
    node: String,
    /// Directory of the recorded host payloads (shared/fixtures/functions).
    #[arg(long)]
    fixtures: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// One handler under test, running.
struct System {
    name: &'static str,
    child: Child,
    port: u16,
    /// Lines the handler wrote to stdout and stderr (the host reads both).
    lines: Arc<AtomicU64>,
}

impl Drop for System {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

fn has_taskset() -> bool {
    Command::new("taskset")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Starts `program` as the Functions host starts a custom handler: port and worker id in the environment,
/// stdout and stderr read line by line, pinned to `cpu` when given.
fn spawn(
    name: &'static str,
    program: &str,
    args: &[&str],
    env: &[(&str, &str)],
    cpu: Option<usize>,
    nice: i32,
) -> Result<System, String> {
    let port = free_port()?;
    let mut cmd = Command::new("nice");
    cmd.arg("-n").arg(nice.to_string());
    if let Some(cpu) = cpu {
        cmd.arg("taskset").arg("-c").arg(cpu.to_string());
    }
    cmd.arg(program)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env(
            "FUNCTIONS_CUSTOMHANDLER_WORKER_ID",
            "d1b3e6f0-4c2a-4f7e-9b8d-2a1c3e5f7a9b",
        )
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    let lines = Arc::new(AtomicU64::new(0));
    let out = child
        .stdout
        .take()
        .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
    let err = child
        .stderr
        .take()
        .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
    for (stream, is_err) in [(out, false), (err, true)] {
        let Some(stream) = stream else { continue };
        let lines = lines.clone();
        std::thread::spawn(move || {
            // The first few error lines are shown (galleon says once that it has no managed identity here).
            let mut shown = 0;
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                lines.fetch_add(1, Ordering::Relaxed);
                if is_err && shown < 3 {
                    shown += 1;
                    eprintln!(
                        "  [{name} stderr] {}",
                        line.chars().take(300).collect::<String>()
                    );
                }
            }
        });
    }
    let system = System {
        name,
        child,
        port,
        lines,
    };
    if !ready(port, Instant::now() + Duration::from_secs(20)) {
        return Err(format!("{name} did not answer GET / within 20 s"));
    }
    Ok(system)
}

/// The host's readiness probe: any HTTP answer to `GET /`.
fn ready(port: u16, deadline: Instant) -> bool {
    use std::io::{Read, Write};
    while Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut buf = [0u8; 5];
            if s.read_exact(&mut buf).is_ok() && &buf == b"HTTP/" {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

/// utime + stime of a process (all its threads), in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let (user, system) = cpu_ticks_split(pid);
    user + system
}

/// (utime, stime) of a process (all its threads), in clock ticks: time in its own code and time in the
/// kernel on its behalf (system calls, and the loopback TCP work they do).
fn cpu_ticks_split(pid: u32) -> (u64, u64) {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return (0, 0);
    };
    // Fields after the command name (which may hold spaces) start at field 3; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field(14), field(15))
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The invocation both handlers get: the recorded BlobCreated event (Event Grid schema) in the envelope
/// the host sends to an eventGridTrigger function (fixture request.eventGridTrigger.eventgrid-schema).
fn invocation_body(fixtures: &std::path::Path) -> Result<Vec<u8>, String> {
    let read = |name: &str| -> Result<Value, String> {
        let path = fixtures.join(name);
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    };
    let delivery = read("eventgrid.BlobCreated.eventgrid-schema.docs.json")?;
    let mut envelope = read("request.eventGridTrigger.eventgrid-schema.azfunc-test.json")?;
    let event = delivery
        .get(0)
        .cloned()
        .ok_or("the BlobCreated delivery holds no event")?;
    envelope["Metadata"]["data"] = event["data"].clone();
    envelope["Metadata"]["sys"]["MethodName"] = json!("IngestBlob");
    envelope["Data"] = json!({ "event": event });
    serde_json::to_vec(&envelope).map_err(|e| e.to_string())
}

/// One measured window of one system.
struct Figures {
    cpu_us_per_invocation: f64,
    /// The kernel's part of `cpu_us_per_invocation`.
    kernel_us_per_invocation: f64,
    throughput: f64,
    p50_ms: f64,
    p99_ms: f64,
    failed: u64,
    load_cpu_share: f64,
    lines_per_invocation: f64,
}

fn measure(
    runtime: &tokio::runtime::Runtime,
    system: &System,
    request: &Arc<load::Request>,
    args: &Args,
    tick: f64,
) -> Result<Figures, String> {
    let pid = system.child.id();
    let window = runtime.block_on(load::run(
        system.port,
        request.clone(),
        args.connections,
        Duration::from_secs_f64(args.warmup),
        Duration::from_secs_f64(args.seconds),
        args.busy_client,
        || {
            let (user_ticks, system_ticks) = cpu_ticks_split(pid);
            load::Sample {
                server_ticks: user_ticks + system_ticks,
                server_system_ticks: system_ticks,
                load_ticks: cpu_ticks(std::process::id()),
                lines: system.lines.load(Ordering::Relaxed),
            }
        },
    ))?;
    let lines = window.after.lines - window.before.lines;
    let answered = window.ok + window.failed;
    let server_s = (window.after.server_ticks - window.before.server_ticks) as f64 / tick;
    let system_s =
        (window.after.server_system_ticks - window.before.server_system_ticks) as f64 / tick;
    let load_s = (window.after.load_ticks - window.before.load_ticks) as f64 / tick;
    Ok(Figures {
        cpu_us_per_invocation: server_s * 1e6 / answered.max(1) as f64,
        kernel_us_per_invocation: system_s * 1e6 / answered.max(1) as f64,
        throughput: window.ok as f64 / window.seconds,
        p50_ms: load::percentile_ms(&window.latencies_us, 0.5),
        p99_ms: load::percentile_ms(&window.latencies_us, 0.99),
        failed: window.failed,
        load_cpu_share: load_s / window.seconds,
        lines_per_invocation: lines as f64 / answered.max(1) as f64,
    })
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Median and spread (min–max) of one figure over the rounds.
fn summary(rounds: &[Figures], pick: impl Fn(&Figures) -> f64) -> (f64, f64, f64) {
    let mut values: Vec<f64> = rounds.iter().map(pick).collect();
    let m = median(&mut values);
    (
        m,
        values.first().copied().unwrap_or(f64::NAN),
        values.last().copied().unwrap_or(f64::NAN),
    )
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("efficiency bench: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), String> {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let fixtures = args
        .fixtures
        .clone()
        .unwrap_or_else(|| manifest_dir.join("../../../shared/fixtures/functions"));
    let body = invocation_body(&fixtures)?;
    let pin = !args.no_pin
        && has_taskset()
        && std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2;
    if pin {
        // The load tool: this process, before the runtime's threads exist.
        let _ = Command::new("taskset")
            .args([
                "-a",
                "-cp",
                &args.load_cpu.to_string(),
                &std::process::id().to_string(),
            ])
            .stdout(Stdio::null())
            .status();
    }
    if args.nice != 0 {
        let _ = Command::new("renice")
            .args([
                "-n",
                &args.nice.to_string(),
                "-p",
                &std::process::id().to_string(),
            ])
            .stdout(Stdio::null())
            .status();
    }
    let server_cpu = pin.then_some(args.server_cpu);
    let galleon_bin = args
        .galleon
        .clone()
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_galleon-handler").to_owned());
    let mut galleon_env = vec![
        ("GALLEON_INSTANCE", "bench"),
        (
            "GALLEON_SUBSCRIPTION_ID",
            "8c3e1f7a-2b4d-4e5f-9a6b-7c8d9e0f1a2b",
        ),
        ("GALLEON_RESOURCE_GROUP", "rg-images"),
        ("GALLEON_GALLERY", "golden"),
        ("GALLEON_LOCATION", "westeurope"),
        (
            "ServiceBusConnection__fullyQualifiedNamespace",
            "127.0.0.1:9",
        ),
        (
            "GALLEON_STATE_CONTAINER_URL",
            "https://127.0.0.1:9/devstoreaccount1/galleon-state",
        ),
        (
            "GALLEON_STORAGE_ACCOUNTS",
            "https://ingest.blob.core.windows.net",
        ),
    ];
    for setting in &args.settings {
        let (name, value) = setting
            .split_once('=')
            .ok_or_else(|| format!("--set {setting}: expected NAME=VALUE"))?;
        galleon_env.push((name, value));
    }
    let galleon = spawn(
        "galleon",
        &galleon_bin,
        &[],
        &galleon_env,
        server_cpu,
        args.nice,
    )?;
    let script = manifest_dir.join("benches/reference/server.js");
    let script = script.to_string_lossy();
    let reference = spawn(
        "reference",
        &args.node,
        &[&script],
        &[],
        server_cpu,
        args.nice,
    )?;
    let node_version = Command::new(&args.node)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .unwrap_or_default();

    let mut builder = tokio::runtime::Builder::new_current_thread();
    if args.busy_client {
        // Look for I/O after every task turn (the busy task is always ready, so the runtime never sleeps).
        builder.event_interval(1);
    }
    let runtime = builder
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let tick = clock_ticks_per_second();
    println!(
        "handler efficiency: galleon ({galleon_bin}) vs the Node reference handler ({script}, node {})",
        node_version.trim()
    );
    println!(
        "invocation: POST /IngestBlob, BlobCreated for a .txt outside the ingest containers, {} bytes, chunked; {} keep-alive connections, {} s warm-up + {} s measured, {} rounds; {}",
        body.len(),
        args.connections,
        args.warmup,
        args.seconds,
        args.rounds,
        match server_cpu {
            Some(cpu) => format!(
                "servers pinned to CPU {cpu}, load tool to CPU {}",
                args.load_cpu
            ),
            None => "nothing pinned".to_owned(),
        }
    );
    if args.nice != 0 {
        println!("servers and load tool at niceness {}", args.nice);
    }
    if args.busy_client {
        println!("load tool: busy (polls between answers instead of sleeping)");
    }
    let mut results: Vec<(&System, Vec<Figures>)> =
        vec![(&galleon, Vec::new()), (&reference, Vec::new())];
    for round in 0..args.rounds {
        // Alternate who goes first, so drift on a shared machine falls on both.
        let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let system = results[i].0;
            let request = Arc::new(load::Request::new(system.port, "IngestBlob", &body));
            let f = measure(&runtime, system, &request, args, tick)?;
            println!(
                "  round {} {:<9} {:>7.1} µs CPU/inv (kernel {:.1})  {:>8.0} req/s  p50 {:.3} ms  p99 {:.3} ms  failed {}  load tool CPU {:.0}%  output lines/inv {:.2}",
                round + 1,
                system.name,
                f.cpu_us_per_invocation,
                f.kernel_us_per_invocation,
                f.throughput,
                f.p50_ms,
                f.p99_ms,
                f.failed,
                f.load_cpu_share * 100.0,
                f.lines_per_invocation
            );
            results[i].1.push(f);
        }
    }
    println!();
    println!(
        "| system | CPU per invocation (µs) | of which kernel (µs) | throughput (req/s) | p50 (ms) | p99 (ms) |"
    );
    println!("|---|---|---|---|---|---|");
    let mut medians = Vec::new();
    for (system, rounds) in &results {
        let cpu = summary(rounds, |f| f.cpu_us_per_invocation);
        let kernel = summary(rounds, |f| f.kernel_us_per_invocation);
        let tput = summary(rounds, |f| f.throughput);
        let p50 = summary(rounds, |f| f.p50_ms);
        let p99 = summary(rounds, |f| f.p99_ms);
        println!(
            "| {} | {:.1} ({:.1}–{:.1}) | {:.1} ({:.1}–{:.1}) | {:.0} ({:.0}–{:.0}) | {:.3} ({:.3}–{:.3}) | {:.3} ({:.3}–{:.3}) |",
            system.name,
            cpu.0,
            cpu.1,
            cpu.2,
            kernel.0,
            kernel.1,
            kernel.2,
            tput.0,
            tput.1,
            tput.2,
            p50.0,
            p50.1,
            p50.2,
            p99.0,
            p99.1,
            p99.2
        );
        medians.push((cpu.0, tput.0, p99.0, kernel.0));
    }
    let (g, r) = (medians[0], medians[1]);
    println!();
    println!("medians, with the spread (min–max over the rounds) in brackets");
    println!(
        "ratios galleon/reference: CPU per invocation {:.2} (goal ≤ 0.33), throughput {:.2}x (goal ≥ 2), p99 {:.2} (goal < 1)",
        g.0 / r.0,
        g.1 / r.1,
        g.2 / r.2
    );
    // Both handlers make the same system calls per invocation (one read of the request, one write of the
    // answer, on loopback TCP); the kernel's work for them is not the handler's to save. galleon's kernel
    // time alone, over the reference's whole CPU, is the lowest ratio galleon could reach with no code of
    // its own at all.
    println!(
        "kernel floor: galleon's kernel time alone is {:.2} of the reference's CPU per invocation (the reference's own kernel time: {:.2}); galleon's own code: {:.1} µs against the reference's {:.1} µs, ratio {:.2}",
        g.3 / r.0,
        r.3 / r.0,
        g.0 - g.3,
        r.0 - r.3,
        (g.0 - g.3) / (r.0 - r.3)
    );
    Ok(())
}
