//! The status page as a person sees it: headless Chromium (Debian's `chromium`) loads it from the local
//! Functions host with a function key, and the test reads what the browser rendered: the runs, each
//! version's regions, a rejection's advice. A phone-sized screenshot is saved under the test's output.

mod common;

use std::process::Command;

use common::*;
use serde_json::json;

fn chromium() -> Option<&'static str> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
    assert!(
        found.is_some() || std::env::var_os("CI").is_none(),
        "chromium is missing in CI: apt-get install chromium"
    );
    found
}

fn headless(browser: &str, profile: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("chromium runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_sees_runs_regions_and_a_failures_advice_in_a_browser() {
    let Some(browser) = chromium() else {
        eprintln!(
            "chromium is missing: the status page test is skipped (apt-get install chromium)"
        );
        return;
    };
    let s = start(&[("GALLEON_TARGET_REGIONS", "westeurope,northeurope")]).await;
    s.publish("good", "fixed", "8M", json!({"version": "1.0.0"}))
        .await;
    s.wait_for("io.galleon.image.ready.v1", 120).await;
    s.publish("bad", "dynamic", "8M", json!({"version": "1.0.1"}))
        .await;
    s.wait_for("io.galleon.vhd.rejected.v1", 60).await;
    let host = s.cloud.connection().functions_host;
    let page = format!("{host}/api/status?code={}", s.cloud.functions_key);
    // Without the key the host answers 401, and the page is not rendered.
    let refused = reqwest::get(format!("{host}/api/status"))
        .await
        .expect("answer");
    assert_eq!(refused.status(), 401);

    let profile = tempfile::tempdir().expect("profile");
    let mut dom = String::new();
    for _ in 0..20 {
        let out = headless(browser, profile.path(), &["--dump-dom", &page]);
        dom = String::from_utf8_lossy(&out.stdout).into_owned();
        // The journal is written as facts are sent: the rejection may be a moment behind its event.
        if dom.contains("rejected") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    for seen in [
        "2 runs in the last two days, 0 running, 1 failed",
        "ubuntu-2404/1.0.0",
        "westeurope: ready",
        "northeurope: ready",
        "VhdIsDynamic",
        "What to do: Convert it",
    ] {
        assert!(
            dom.contains(seen),
            "the page does not show {seen:?}:\n{dom}"
        );
    }
    assert!(
        dom.contains("<meta http-equiv=\"refresh\""),
        "it refreshes itself"
    );

    // What it looks like on a phone.
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let out = headless(
        browser,
        profile.path(),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=412,915",
            &page,
        ],
    );
    let png = std::fs::read(&shot).unwrap_or_else(|e| {
        panic!(
            "no screenshot at {} ({e}): {}",
            shot.display(),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 5_000,
        "a real screenshot"
    );
    eprintln!("screenshot: {}", shot.display());
    s.stop().await;
}
