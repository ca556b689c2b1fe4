//! The reduced scale run of issue #10, as `devcloud scale` does it (the same library function): 40 fixed
//! VHDs × 5 regions uploaded over 10 s, on the local cloud with Resource Manager's token buckets scaled
//! down (×0.25: reads 62 + 6.25/s, writes 50 + 2.5/s) so that throttling really happens. Every run must reach
//! image.ready, none may fail because of throttling, and the ARM must have answered 429s (otherwise the
//! run proved nothing). It prints the figures table; it asserts no timings.

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
        window: Duration::from_secs(10),
        time_factor: 0.01,
        throttle_scale: 0.25,
        timeout: Duration::from_secs(240),
        settings: Vec::new(),
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
