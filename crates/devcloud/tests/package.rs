//! The release package (`scripts/package.sh`): laid out exactly as the Functions host expects it (host.json
//! at the root, one folder per function with its function.json, the executable host.json names, nothing
//! else), and the local Functions host, started from the unpacked package, runs the demo chain: a real
//! VHD to an image version ready in every region.

mod common;

use std::{collections::BTreeSet, path::Path, process::Command};

use common::*;
use serde_json::json;

/// Unpacks `zip` into `into` with each file's Unix mode, as the Functions host mounts a package; answers
/// every entry as `name mode`.
fn unpack(zip: &Path, into: &Path) -> Vec<String> {
    let script = r#"
import os, sys, zipfile
zip, into = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(zip) as z:
    for info in z.infolist():
        path = z.extract(info, into)
        mode = (info.external_attr >> 16) & 0o777
        if mode:
            os.chmod(path, mode)
        print(f"{info.filename} {mode:o}")
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(zip)
        .arg(into)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_release_package_runs_the_chain_on_the_local_host() {
    let work = tempfile::tempdir().expect("dir");
    let zip = work.path().join("galleon-package.zip");
    let built = Command::new("bash")
        .arg(repo_root().join("scripts/package.sh"))
        .arg(&zip)
        .current_dir(repo_root())
        .output()
        .expect("package.sh runs");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let app = work.path().join("app");
    let entries: BTreeSet<String> = unpack(&zip, &app).into_iter().collect();

    // Exactly: host.json, <Name>/function.json for every function, the executable (runnable).
    let mut expected: BTreeSet<String> = BTreeSet::from(["host.json 644".to_owned()]);
    for dir in std::fs::read_dir(repo_root().join("functions")).expect("functions/") {
        let dir = dir.expect("entry").path();
        if dir.join("function.json").is_file() {
            let name = dir
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            expected.insert(format!("{name}/function.json 644"));
        }
    }
    let host: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo_root().join("host.json")).expect("host.json"))
            .expect("json");
    let exe = host["customHandler"]["description"]["defaultExecutablePath"]
        .as_str()
        .expect("defaultExecutablePath");
    expected.insert(format!("{exe} 755"));
    assert!(expected.len() > 20, "{expected:?}");
    assert_eq!(
        entries, expected,
        "the package holds exactly what the host needs"
    );

    // The local cloud runs the function app from the unpacked package (routing made from the routing
    // file, as infra does in Azure).
    let s = start_configured(&[], false, |options| {
        options.app_root = app.clone();
        options.galleon_dir = app.clone();
        options.routing_file = repo_root().join("events/subscriptions.json");
    })
    .await;
    s.publish("packaged", "fixed", "8M", json!({"version": "1.0.0"}))
        .await;
    let ready = s.wait_for("io.galleon.image.ready.v1", 180).await;
    let version = s
        .arm_get(ready["data"]["versionId"].as_str().unwrap_or_default())
        .await;
    assert_eq!(
        version["properties"]["replicationStatus"]["aggregatedState"], "Completed",
        "{version:#}"
    );
    assert!(
        ready["data"]["regions"]
            .as_array()
            .is_some_and(|r| r.len() > 1),
        "{ready:#}"
    );
    // The handler the host runs is the packaged executable.
    let log = s.recent_host_log(400);
    let pid = log
        .split("started custom handler")
        .nth(1)
        .and_then(|rest| rest.split("(pid ").nth(1))
        .and_then(|rest| rest.split([',', ')']).next())
        .expect("the host says which handler it started");
    let running =
        std::fs::read_link(format!("/proc/{}/exe", pid.trim())).expect("the handler runs");
    assert_eq!(
        running.canonicalize().expect("path"),
        app.join(exe).canonicalize().expect("path"),
        "{log}"
    );
    assert_catalog_valid(&s.receiver.received.all());
    s.stop().await;
}

/// `scripts/deploy.sh` is the one command: infra without the Event Grid subscriptions, the package zip
/// deployed to the app the deployment named, then infra again (Event Grid accepts subscriptions to
/// functions only once they exist). A stand-in `az` on PATH records what it is asked; Azure itself is not
/// here.
#[test]
fn deploy_is_one_command_in_the_order_azure_needs() {
    let work = tempfile::tempdir().expect("dir");
    let bin = work.path().join("bin");
    std::fs::create_dir_all(&bin).expect("dir");
    let calls = work.path().join("az-calls.txt");
    let az = bin.join("az");
    std::fs::write(
        &az,
        format!(
            r#"#!/bin/sh
echo "$*" >> {calls}
case "$*" in
  *"--query properties.outputs"*) echo '{{"functionAppName": {{"value": "galleon-abc"}}, "storageAccountName": {{"value": "stgalleon"}}, "eventsTopicEndpoint": {{"value": "https://galleon-events.westeurope-1.eventgrid.azure.net/api/events"}}}}' ;;
esac
"#,
            calls = calls.display()
        ),
    )
    .expect("az");
    std::process::Command::new("chmod")
        .args(["+x"])
        .arg(&az)
        .status()
        .expect("chmod");
    let params = work.path().join("params.json");
    std::fs::write(
        &params,
        r#"{"parameters": {"ingestStorageAccountName": {"value": "stvhds"}}}"#,
    )
    .expect("params");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = |args: &[&str]| {
        Command::new("bash")
            .arg(repo_root().join("scripts/deploy.sh"))
            .args(args)
            .env("PATH", &path)
            .current_dir(repo_root())
            .output()
            .expect("deploy.sh runs")
    };
    let usage = run(&[]);
    assert_eq!(usage.status.code(), Some(2));
    let missing = run(&["rg-galleon", "/nonexistent/params.json"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("main.parameters.example.json"));

    let done = run(&["rg-galleon", params.to_str().unwrap_or_default()]);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let asked = std::fs::read_to_string(&calls).expect("az was called");
    let lines: Vec<&str> = asked.lines().collect();
    assert_eq!(lines.len(), 3, "{asked}");
    assert!(
        lines[0].starts_with("deployment group create -g rg-galleon -f infra/main.bicep")
            && lines[0].contains("createEventSubscriptions=false"),
        "{asked}"
    );
    assert!(
        lines[1].starts_with(
            "functionapp deployment source config-zip -g rg-galleon -n galleon-abc --src "
        ) && lines[1].contains("galleon-package.zip"),
        "{asked}"
    );
    assert!(
        lines[2].starts_with("deployment group create -g rg-galleon -f infra/main.bicep")
            && !lines[2].contains("createEventSubscriptions=false"),
        "{asked}"
    );
    assert!(String::from_utf8_lossy(&done.stderr).contains("galleon-events.westeurope-1"));
}
