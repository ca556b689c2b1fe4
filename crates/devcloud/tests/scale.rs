//! The reduced scale run of issue #10, as `devcloud scale` does it (the same library function): 40 fixed
//! VHDs × 5 regions uploaded over 5 s, on the local cloud with Resource Manager's token buckets scaled
//! down (×0.1: reads 25 + 2.5/s, writes 20 + 1/s) and galleon not told, so that throttling really
//! happens. Every run must reach
//! image.ready, none may fail because of throttling, and the ARM must have answered 429s (otherwise the
//! run proved nothing). It prints the figures table; it asserts no timings. Also the `devcloud scale`
//! binary itself, small: the figures table last and exit 0 when all got ready, JSON and exit 124 when
//! runs were still going at the timeout.

mod common;

use std::time::Duration;

use devcloud::{
    Options, Ports,
    scale::{self, Params},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_vhds_times_five_regions_all_get_ready_under_throttling() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut options = Options::new(
        common::repo_root(),
        common::galleon_dir(),
        dir.path().join("state"),
    );
    options.ports = Ports::ephemeral();
    let params = Params {
        vhds: 40,
        regions: 5,
        definitions: 8,
        sizes: vec![8 << 20],
        window: Duration::from_secs(5),
        time_factor: 0.01,
        throttle_scale: 0.1,
        timeout: Duration::from_secs(240),
        // Galleon is NOT told that the buckets are scaled down: it paces by Azure's default budget,
        // so it refills its estimate ten times too fast and really meets 429s, which it must ride out
        // without a failure. (docs/pace.md; budget.rs proves the pace itself with the true budget.)
        settings: vec![
            ("GALLEON_ARM_READS_BUDGET".into(), "250/25".into()),
            ("GALLEON_ARM_WRITES_BUDGET".into(), "200/10".into()),
        ],
    };
    let figures = scale::run(
        options,
        &params,
        &|line| eprintln!("{line}"),
        std::future::pending(),
    )
    .await
    .expect("the scale run runs");
    let table = figures.table();
    println!("{table}");
    assert!(
        figures.arm.throttled > 0,
        "the ARM answered no 429, so this run proved nothing about throttling:\n{table}"
    );
    assert_eq!(
        figures.throttle_failures, 0,
        "runs failed because of throttling:\n{table}"
    );
    assert_eq!(
        figures.ready, params.vhds,
        "not every run reached image.ready:\n{table}"
    );
}

/// Runs `devcloud scale` with `args` (a small run on a cloud of its own) and the galleon under test.
fn devcloud_scale(args: &[&str]) -> std::process::Output {
    let galleon = common::galleon_dir().join("galleon-handler");
    std::process::Command::new(env!("CARGO_BIN_EXE_devcloud"))
        .args([
            "scale",
            "--regions",
            "2",
            "--definitions",
            "1",
            "--window",
            "1",
        ])
        .args(["--time-factor", "0.01", "--galleon"])
        .arg(&galleon)
        .args(args)
        .current_dir(common::repo_root())
        .output()
        .expect("devcloud runs")
}

#[test]
fn the_command_ends_with_the_figures_table_and_says_how_it_went() {
    let out = devcloud_scale(&["--vhds", "3", "--timeout", "120"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    let header = lines
        .iter()
        .position(|l| *l == "| figure | value |")
        .expect("a figures table");
    assert!(
        lines[header..].iter().all(|l| l.starts_with('|')),
        "the table is the last output:\n{stdout}"
    );
    assert!(
        stdout.contains("| images ready / failed / rejected / unfinished | 3 / 0 / 0 / 0 |"),
        "{stdout}"
    );
    assert!(
        stderr.contains("uploaded 3/3"),
        "progress on stderr: {stderr}"
    );

    let out = devcloud_scale(&["--vhds", "2", "--timeout", "1", "--json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(124),
        "unfinished at the timeout: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let figures: serde_json::Value = serde_json::from_str(&stdout).expect("JSON figures");
    assert_eq!(figures["setup"]["vhds"], 2);
    assert_eq!(figures["ready"], 0, "{figures:#}");
    assert_eq!(figures["unfinished"], 2, "{figures:#}");
}
