//! The `devcloud` binary as a user runs it: `--help` starts nothing; `up` on free ports with a
//! local.settings.json and `--set`, writing the owner-only connection file; `inspect` with its flags;
//! `upload` of qemu-img VHDs followed to image.ready (exit 0) and to vhd.rejected (exit 1); `demo`
//! exiting non-zero on a timeout and leaving no temporary files.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_devcloud");

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

/// The galleon executable: `GALLEON_BIN` (CI points it at the release build) or the debug build.
fn galleon_bin() -> PathBuf {
    let bin = std::env::var_os("GALLEON_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/debug/galleon-handler"));
    assert!(
        bin.is_file(),
        "{} is missing: cargo build -p galleon",
        bin.display()
    );
    bin
}

/// Runs the binary to its end, killing it (and failing) after `limit`.
fn run(args: &[&str], cwd: &Path, env: &[(&str, &Path)], limit: Duration) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(cwd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("DEVCLOUD_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("devcloud runs");
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "devcloud {args:?} still running after {limit:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn help_prints_usage_and_starts_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let state = dir.path().join("state");
    let state_arg = state.to_str().expect("utf-8");
    for command in ["up", "demo", "inspect", "upload"] {
        for flag in ["--help", "-h"] {
            let out = run(
                &[command, flag, "--state-dir", state_arg],
                &repo_root(),
                &[],
                Duration::from_secs(10),
            );
            assert_eq!(
                out.status.code(),
                Some(0),
                "{command} {flag}: {}",
                text(&out)
            );
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                stdout.contains(&format!("Usage: devcloud {command}")),
                "{command} {flag}: {}",
                text(&out)
            );
            assert!(
                !state.exists(),
                "devcloud {command} {flag} started something: {} exists",
                state.display()
            );
        }
    }
    let out = run(
        &["up", "--bogus"],
        &repo_root(),
        &[],
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(!state.exists());
}

/// Copies the app (host.json, functions/, events/) into `dir`, so a test can give it a
/// local.settings.json without touching the repository.
fn copy_app(dir: &Path) {
    fn copy(from: &Path, to: &Path) {
        if from.is_dir() {
            std::fs::create_dir_all(to).expect("mkdir");
            for entry in std::fs::read_dir(from).expect("read dir") {
                let entry = entry.expect("entry");
                copy(&entry.path(), &to.join(entry.file_name()));
            }
        } else {
            std::fs::copy(from, to).expect("copy");
        }
    }
    let root = repo_root();
    std::fs::create_dir_all(dir).expect("app dir");
    for part in ["host.json", "functions", "events"] {
        copy(&root.join(part), &dir.join(part));
    }
}

fn qemu_vhd(dir: &Path, name: &str, subformat: &str, size: &str) -> PathBuf {
    let path = dir.join(name);
    let status = Command::new("qemu-img")
        .args(["create", "-q", "-f", "vpc", "-o"])
        .arg(format!("subformat={subformat},force_size"))
        .arg(&path)
        .arg(size)
        .status()
        .expect("qemu-img runs (apt-get install qemu-utils)");
    assert!(status.success(), "qemu-img failed");
    path
}

/// A running `devcloud up`, stopped with SIGINT (as Ctrl-C) when dropped.
struct Up {
    child: Child,
    stdout: std::sync::mpsc::Receiver<String>,
}

impl Up {
    fn interrupt(&mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        None
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.interrupt();
        }
    }
}

#[test]
fn up_writes_the_connection_file_and_upload_follows_runs_to_their_end() {
    let dir = tempfile::tempdir().expect("dir");
    let app = dir.path().join("app");
    copy_app(&app);
    // As `func start` would: Values apply; the wiring settings are devcloud's and are skipped.
    std::fs::write(
        app.join("local.settings.json"),
        r#"{"IsEncrypted": false, "Values": {
            "GALLEON_TARGET_REGIONS": "westeurope,eastus",
            "GALLEON_ARM_ENDPOINT": "https://127.0.0.1:1",
            "GALLEON_FOLLOWUP_SECONDS": 1}}"#,
    )
    .expect("local settings");
    let state = dir.path().join("state");
    let galleon = galleon_bin();
    let mut child = Command::new(BIN)
        .args([
            "up",
            "--any-ports",
            "--time-factor",
            "0.005",
            "--set",
            "GALLEON_GALLERY=mine",
        ])
        .arg("--app")
        .arg(&app)
        .arg("--state-dir")
        .arg(&state)
        .arg("--galleon")
        .arg(&galleon)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("devcloud up runs");
    let (tx, rx) = std::sync::mpsc::channel();
    let out = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut up = Up { child, stdout: rx };

    // Up prints where things are, not the secrets; the files hold them, owner-only.
    let mut printed = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !printed.contains("Ctrl-C stops everything") {
        assert!(Instant::now() < deadline, "up did not come up:\n{printed}");
        if let Ok(line) = up.stdout.recv_timeout(Duration::from_millis(200)) {
            printed.push_str(&line);
            printed.push('\n');
        }
        if let Ok(Some(status)) = up.child.try_wait() {
            panic!("up exited {status}:\n{printed}");
        }
    }
    assert!(
        printed.contains("skipping GALLEON_ARM_ENDPOINT"),
        "{printed}"
    );
    let conn: Value = serde_json::from_slice(
        &std::fs::read(state.join("connection.json")).expect("connection.json"),
    )
    .expect("json");
    let env = std::fs::read_to_string(state.join("connection.env")).expect("connection.env");
    for file in ["connection.json", "connection.env"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(state.join(file))
            .expect("file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file} must be owner-only");
    }
    let header = conn["identityHeader"].as_str().expect("identity header");
    assert!(header.len() >= 16);
    assert!(!printed.contains(header), "secrets printed:\n{printed}");
    assert!(
        conn.get("eventGridTopicKey").is_none() && !env.contains("TOPIC_KEY"),
        "galleon's topic takes no key: none is handed out"
    );
    for name in [
        "IDENTITY_ENDPOINT",
        "IDENTITY_HEADER",
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE",
        "NODE_EXTRA_CA_CERTS",
        "DEVCLOUD_ARM_ENDPOINT",
        "DEVCLOUD_BLOB_ENDPOINT",
        "AZURE_STORAGE_CONNECTION_STRING",
        "DEVCLOUD_SERVICEBUS_ENDPOINT",
        "DEVCLOUD_EVENTGRID_TOPIC_ENDPOINT",
    ] {
        assert!(
            env.contains(&format!("export {name}='")),
            "{name} missing:\n{env}"
        );
    }
    assert!(env.contains(&format!("export IDENTITY_HEADER='{header}'")));
    let blob = conn["blobEndpoint"].as_str().expect("blob endpoint");
    assert!(blob.starts_with("https://127.0.0.1:") && blob.ends_with("/devstoreaccount1"));
    assert!(
        conn["storageConnectionString"]
            .as_str()
            .expect("connection string")
            .contains(&format!("BlobEndpoint={blob}/;"))
    );

    // The identity endpoint (with its header) works for an outside client that trusts the CA from the
    // file, and its token publishes to galleon's topic; a key is refused there, as in Azure.
    outside_client_checks(&conn);
    let port = |url: &str| -> String {
        url.rsplit(':')
            .next()
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_owned()
    };
    let state_arg = state.to_str().expect("utf-8");

    // A fixed VHD reaches image.ready; the settings from the file and --set took effect.
    let disks = dir.path().join("disks");
    std::fs::create_dir_all(&disks).expect("disks");
    let good = qemu_vhd(&disks, "my-disk.vhd", "fixed", "8M");
    let out = run(
        &[
            "upload",
            good.to_str().expect("utf-8"),
            "--definition",
            "team-image",
            "--version",
            "1.0.0",
            "--state-dir",
            state_arg,
            "--timeout",
            "90",
        ],
        dir.path(),
        &[],
        Duration::from_secs(120),
    );
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(
        shown.contains("as page blob images/team-image/my-disk.vhd"),
        "{shown}"
    );
    assert!(
        shown.contains("image ready: /subscriptions/")
            && shown.contains("/galleries/mine/images/team-image/versions/1.0.0"),
        "{shown}"
    );
    assert!(shown.contains("regions: westeurope, eastus"), "{shown}");
    assert!(shown.contains("ran IngestBlob"), "{shown}");
    assert!(
        !shown.contains("null ms"),
        "invocation durations missing:\n{shown}"
    );
    // 8 MiB of zeros and a 512-byte footer: only the footer's range is sent.
    assert!(shown.contains("uploaded: 512 B sent"), "{shown}");

    // A dynamic VHD is rejected: exit 1 with the reason and the fix.
    let bad = qemu_vhd(&disks, "dynamic.vhd", "dynamic", "8M");
    let out = run(
        &[
            "upload",
            bad.to_str().expect("utf-8"),
            "--state-dir",
            state_arg,
            "--timeout",
            "90",
        ],
        dir.path(),
        &[],
        Duration::from_secs(120),
    );
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("the VHD was rejected: VhdIsDynamic"),
        "{shown}"
    );
    assert!(shown.contains("qemu-img convert"), "{shown}");

    // inspect takes the ports it documents (here: those of this cloud, not the defaults).
    let out = run(
        &[
            "inspect",
            "--state-dir",
            state_arg,
            "--port-bus",
            &port(conn["serviceBusEndpoint"].as_str().expect("sb")),
            "--port-grid",
            &port(conn["eventGridEndpoint"].as_str().expect("eg")),
            "--port-host",
            &port(conn["functionsHost"].as_str().expect("host")),
            "--recent",
            "5",
        ],
        dir.path(),
        &[],
        Duration::from_secs(30),
    );
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(
        shown.contains("galleon-facts") && shown.contains("recent invocations:"),
        "{shown}"
    );
    // A wrong port is an error that names what it asked.
    let out = run(
        &["inspect", "--state-dir", state_arg, "--port-bus", "1"],
        dir.path(),
        &[],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("https://127.0.0.1:1"), "{}", text(&out));

    // Ctrl-C stops everything and takes the connection file away.
    assert_eq!(up.interrupt(), Some(0));
    assert!(!state.join("connection.json").exists());
    assert!(!state.join("connection.env").exists());
}

fn outside_client_checks(conn: &Value) {
    devcloud_core::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let ca = std::fs::read(conn["caFile"].as_str().expect("ca")).expect("CA file");
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("pem"))
            .build()
            .expect("client");
        let identity = conn["identityEndpoint"].as_str().expect("identity");
        let query = [("api-version", "2019-08-01"), ("resource", "https://management.azure.com")];
        let answer = client
            .get(identity)
            .query(&query)
            .header("X-IDENTITY-HEADER", conn["identityHeader"].as_str().expect("header"))
            .send()
            .await
            .expect("identity answers");
        assert_eq!(answer.status(), 200);
        let token: Value = answer.json().await.expect("json");
        assert!(token["access_token"].as_str().is_some_and(|t| t.len() > 20));
        let refused = client.get(identity).query(&query).send().await.expect("answers");
        assert_eq!(refused.status(), 401);
        // The Entra stand-in answers over HTTPS: the tenant's OpenID metadata, and Entra's refusal of
        // an app registered nowhere.
        let authority = conn["entraAuthority"].as_str().expect("entraAuthority");
        let tenant = conn["tenantId"].as_str().expect("tenantId");
        let meta: Value = client
            .get(format!("{authority}/{tenant}/v2.0/.well-known/openid-configuration"))
            .send()
            .await
            .expect("metadata answers")
            .json()
            .await
            .expect("json");
        let token_url = meta["token_endpoint"].as_str().expect("token_endpoint").to_string();
        assert_eq!(token_url, format!("{authority}/{tenant}/oauth2/v2.0/token"));
        let answer = client
            .post(&token_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials&client_id=3c9a7e21-5b4d-4f6a-9e08-1d2c3b4a5f60&client_secret=x&scope=https%3A%2F%2Fmanagement.azure.com%2F.default")
            .send()
            .await
            .expect("token endpoint answers");
        assert_eq!(answer.status(), 400);
        let refused: Value = answer.json().await.expect("json");
        assert_eq!(refused["error"], "unauthorized_client", "{refused}");
        let topic = conn["eventGridTopicEndpoint"].as_str().expect("topic");
        let event = serde_json::json!([{"specversion": "1.0", "id": "cli-test-1", "source": "urn:test",
            "type": "io.galleon.test.v1", "subject": "cli", "data": {}}]);
        let eventgrid: Value = client
            .get(identity)
            .query(&[("api-version", "2019-08-01"), ("resource", "https://eventgrid.azure.net")])
            .header("X-IDENTITY-HEADER", conn["identityHeader"].as_str().expect("header"))
            .send()
            .await
            .expect("identity answers")
            .json()
            .await
            .expect("json");
        let bearer = format!("Bearer {}", eventgrid["access_token"].as_str().expect("token"));
        for (header, value, status) in [
            ("authorization", bearer.as_str(), 200),
            ("aeg-sas-key", "any-key", 401),
        ] {
            let answer = client
                .post(topic)
                .header(header, value)
                .header("content-type", "application/cloudevents-batch+json; charset=utf-8")
                .json(&event)
                .send()
                .await
                .expect("topic answers");
            assert_eq!(answer.status(), status, "{header}: {}", answer.text().await.unwrap_or_default());
        }
    });
}

#[test]
fn demo_exits_non_zero_on_timeout_and_leaves_no_temporary_files() {
    let tmp = tempfile::tempdir().expect("dir");
    let galleon = galleon_bin();
    let out = run(
        &[
            "demo",
            "--timeout",
            "1",
            "--galleon",
            galleon.to_str().expect("utf-8"),
        ],
        &repo_root(),
        &[("TMPDIR", tmp.path())],
        Duration::from_secs(90),
    );
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(124), "{shown}");
    assert!(shown.contains("within 1 s"), "{shown}");
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("tmp")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert!(
        left.is_empty(),
        "the demo left {left:?} in its temporary directory"
    );
}

#[test]
fn demo_exits_non_zero_when_the_chain_fails() {
    let tmp = tempfile::tempdir().expect("dir");
    let galleon = galleon_bin();
    let fault = r#"{"kind": "GalleryImageVersions_CreateOrUpdate", "count": 1, "action": {"type": "error",
        "status": 400, "code": "InvalidParameter", "message": "The source blob is not accessible.", "inOperation": true}}"#;
    let out = run(
        &[
            "demo",
            "--timeout",
            "90",
            "--time-factor",
            "0.005",
            "--arm-fault",
            fault,
            "--galleon",
            galleon.to_str().expect("utf-8"),
        ],
        &repo_root(),
        &[("TMPDIR", tmp.path())],
        Duration::from_secs(120),
    );
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("step PublishVersion failed")
            && shown.contains("InvalidParameter: The source blob is not accessible."),
        "{shown}"
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("tmp")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert!(
        left.is_empty(),
        "the demo left {left:?} in its temporary directory"
    );
}
