//! Simulator throughput, printed: GETs per second and gallery create+poll cycles per second over HTTPS,
//! with throttling off and a time factor of 0 (so only the simulator's own cost is measured).
//! Run: `cargo bench -p devcloud-arm --bench throughput` (optional args: seconds, concurrency).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use devcloud_arm::ArmConfig;
use devcloud_core::{Identity, Tls};

const API: &str = "api-version=2025-03-03";

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let secs: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(3.0);
    let conc: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(16);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(Duration::from_secs_f64(secs), conc))
}

async fn run(dur: Duration, conc: usize) -> anyhow::Result<()> {
    devcloud_core::install_crypto_provider();
    let dir = tempfile::tempdir()?;
    let tls = Tls::load_or_create(dir.path())?;
    let identity = Identity::load_or_create(dir.path())?;
    let mut config = ArmConfig::fast();
    config.time_factor = 0.0;
    config.throttling.enabled = false;
    config.limits.galleries_per_region = usize::MAX;
    config
        .resource_groups
        .push(devcloud_arm::ResourceGroupSeed {
            subscription: "00000000-0000-0000-0000-000000000001".into(),
            name: "bench".into(),
            location: None,
        });
    let arm =
        devcloud_arm::serve(config, identity.clone(), Some(&tls), "127.0.0.1:0".parse()?).await?;
    let ca = reqwest::Certificate::from_pem(&tls.ca_pem_bytes()?)?;
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .pool_max_idle_per_host(conc)
        .build()?;
    let token = Arc::new(identity.issue("https://management.azure.com"));
    let base = format!(
        "{}/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/bench/providers/Microsoft.Compute/galleries",
        arm.base_url
    );
    // One gallery to GET.
    let r = client
        .put(format!("{base}/target?{API}"))
        .bearer_auth(&*token)
        .json(&serde_json::json!({"location": "westeurope"}))
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "setup PUT answered {}", r.status());

    // GETs.
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (client, token, count, url) = (
            client.clone(),
            token.clone(),
            count.clone(),
            format!("{base}/target?{API}"),
        );
        tasks.push(tokio::spawn(async move {
            while start.elapsed() < dur {
                if let Ok(r) = client.get(&url).bearer_auth(&*token).send().await
                    && r.status() == 200
                    && r.bytes().await.is_ok()
                {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let gets = count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();

    // Create + poll cycles: PUT a new gallery, poll its Azure-AsyncOperation until Succeeded, final GET.
    let cycles = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..conc {
        let (client, token, cycles, base) =
            (client.clone(), token.clone(), cycles.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while start.elapsed() < dur {
                i += 1;
                let url = format!("{base}/g{w}_{i}?{API}");
                let Ok(r) = client
                    .put(&url)
                    .bearer_auth(&*token)
                    .json(&serde_json::json!({"location": "westeurope"}))
                    .send()
                    .await
                else {
                    continue;
                };
                let Some(op) = r
                    .headers()
                    .get("azure-asyncoperation")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
                else {
                    continue;
                };
                loop {
                    let Ok(s) = client.get(&op).bearer_auth(&*token).send().await else {
                        break;
                    };
                    let Ok(v) = s.json::<serde_json::Value>().await else {
                        break;
                    };
                    if v["status"] != "InProgress" {
                        break;
                    }
                }
                if client
                    .get(&url)
                    .bearer_auth(&*token)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200)
                {
                    cycles.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let cps = cycles.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
    println!(
        "devcloud-arm throughput over HTTPS, {conc} concurrent clients, {:.1} s each:",
        dur.as_secs_f64()
    );
    println!("  GET resource:             {gets:>8.0} requests/s");
    println!("  create + poll + GET cycle: {cps:>7.0} cycles/s (3+ requests each)");
    arm.shutdown().await;
    Ok(())
}
