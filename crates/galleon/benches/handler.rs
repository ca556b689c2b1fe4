//! Handler benchmark: cold start (exec → first successful answer), idle RSS, and invocation throughput and
//! p50/p99 latency for a pure decode-decide-encode invocation (Announce) on loopback. Prints figures;
//! targets from the foundation issue are shown beside them, never asserted.
//!
//! Run: `cargo bench -p galleon --bench handler` (uses the release-profile binary).

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::json;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(7072)
}

fn spawn(port: u16) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_galleon-handler"))
        .env_clear()
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("RUST_LOG", "warn")
        .env(
            "GALLEON_SUBSCRIPTION_ID",
            "8c3e1f7a-2b4d-4e5f-9a6b-7c8d9e0f1a2b",
        )
        .env("GALLEON_RESOURCE_GROUP", "rg-images")
        .env("GALLEON_GALLERY", "golden")
        .env("GALLEON_LOCATION", "westeurope")
        .env(
            "ServiceBusConnection__fullyQualifiedNamespace",
            "127.0.0.1:9",
        )
        .env(
            "GALLEON_STATE_CONTAINER_URL",
            "https://127.0.0.1:9/devstoreaccount1/galleon-state",
        )
        .env(
            "GALLEON_STORAGE_ACCOUNTS",
            "https://ingest.blob.core.windows.net",
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("galleon starts")
}

fn ready_blocking(port: u16, deadline: Instant) -> bool {
    use std::io::{Read, Write};
    while Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut buf = [0u8; 12];
            if s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.1 200") {
                return true;
            }
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    false
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn invocation_body() -> Vec<u8> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../events/image.ready.v1.example.json");
    let fact = std::fs::read_to_string(path).expect("example fact");
    serde_json::to_vec(&json!({
        "Data": {"fact": serde_json::to_string(&fact).unwrap_or_default()},
        "Metadata": {"DeliveryCount": "1", "MessageId": "\"m-1\"", "ApplicationProperties": {"type": "io.galleon.image.ready.v1"},
                     "sys": {"MethodName": "Announce", "UtcNow": "2026-11-21T10:43:09.64Z", "RandGuid": "35e6e68c-5583-436c-a277-5aec2b416ba8"}}
    }))
    .unwrap_or_default()
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    println!(
        "galleon handler benchmark ({})",
        env!("CARGO_BIN_EXE_galleon-handler")
    );

    // Cold start.
    let mut starts = Vec::new();
    for _ in 0..30 {
        let port = free_port();
        let t0 = Instant::now();
        let mut child = spawn(port);
        let ok = ready_blocking(port, t0 + Duration::from_secs(10));
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        let _ = child.kill();
        let _ = child.wait();
        if ok {
            starts.push(ms);
        }
    }
    starts.sort_by(f64::total_cmp);
    println!(
        "cold start, exec → first 200 (n={}): min {:.1} ms, median {:.1} ms, max {:.1} ms   [target: median < 20 ms]",
        starts.len(),
        starts.first().copied().unwrap_or(f64::NAN),
        percentile(&starts, 0.5),
        starts.last().copied().unwrap_or(f64::NAN)
    );

    // Idle RSS, then load.
    let port = free_port();
    let mut child = spawn(port);
    if !ready_blocking(port, Instant::now() + Duration::from_secs(10)) {
        eprintln!("galleon did not start");
        let _ = child.kill();
        let _ = child.wait();
        return;
    }
    std::thread::sleep(Duration::from_secs(1));
    let idle = rss_kib(child.id());
    println!(
        "idle RSS after start: {}   [target: < 12 MiB]",
        idle.map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
            .unwrap_or_else(|| "n/a".into())
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let body = invocation_body();
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .expect("client");
        let url = format!("http://127.0.0.1:{port}/Announce");
        // Warm up.
        for _ in 0..200 {
            let _ = client.post(&url).body(body.clone()).send().await;
        }
        for rate in [2000u64, 4000] {
            let total = rate * 5;
            let interval = Duration::from_nanos(1_000_000_000 / rate);
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Option<f64>>();
            let started = Instant::now();
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            for _ in 0..total {
                ticker.tick().await;
                let (client, url, body, tx) = (client.clone(), url.clone(), body.clone(), tx.clone());
                tokio::spawn(async move {
                    let t = Instant::now();
                    let ok = matches!(client.post(&url).body(body).send().await, Ok(r) if r.status().is_success());
                    let _ = tx.send(ok.then(|| t.elapsed().as_secs_f64() * 1000.0));
                });
            }
            drop(tx);
            let mut lat = Vec::new();
            let mut failed = 0;
            while let Some(r) = rx.recv().await {
                match r {
                    Some(ms) => lat.push(ms),
                    None => failed += 1,
                }
            }
            let wall = started.elapsed().as_secs_f64();
            lat.sort_by(f64::total_cmp);
            println!(
                "open loop {rate}/s for 5 s: {} ok, {failed} failed, achieved {:.0}/s, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms{}",
                lat.len(),
                lat.len() as f64 / wall,
                percentile(&lat, 0.5),
                percentile(&lat, 0.99),
                lat.last().copied().unwrap_or(f64::NAN),
                if rate == 2000 { "   [target: p99 < 1 ms at 2,000/s]" } else { "" }
            );
        }
    });
    let loaded = rss_kib(child.id());
    println!(
        "RSS after load: {}",
        loaded
            .map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
            .unwrap_or_else(|| "n/a".into())
    );
    let _ = child.kill();
    let _ = child.wait();
}
