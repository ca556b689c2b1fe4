//! What the end-to-end tests share: the whole local cloud with the real galleon binary, a webhook
//! subscriber on galleon's public topic, VHDs made by qemu-img, and checks against the event catalog.
#![allow(dead_code)]

pub mod builds;
pub mod chaos;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use devcloud::{Cloud, Options, Ports, receiver::Receiver};
use serde_json::{Value, json};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The directory of the galleon executable: `GALLEON_BIN`'s (CI points it at the release build) or the
/// workspace's debug build.
pub fn galleon_dir() -> PathBuf {
    let bin = std::env::var_os("GALLEON_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/debug/galleon-handler"));
    assert!(
        bin.is_file(),
        "{} is missing: cargo build -p galleon",
        bin.display()
    );
    bin.parent().map(Path::to_path_buf).unwrap_or_default()
}

pub fn qemu_img(args: &[&str]) {
    let status = std::process::Command::new("qemu-img")
        .args(args)
        .status()
        .expect("qemu-img runs (apt-get install qemu-utils)");
    assert!(status.success(), "qemu-img {args:?} failed");
}

/// A VHD made by qemu-img: `fixed` with force_size (what Azure wants) or `dynamic`.
pub fn make_vhd(dir: &Path, name: &str, subformat: &str, size: &str) -> Vec<u8> {
    let path = dir.join(name);
    let options = format!("subformat={subformat},force_size");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "vpc",
        "-o",
        &options,
        path.to_str().unwrap_or_default(),
        size,
    ]);
    std::fs::read(&path).expect("read the VHD")
}

pub struct Scenario {
    pub cloud: Cloud,
    pub receiver: Receiver,
    pub _dir: tempfile::TempDir,
}

pub async fn start(settings: &[(&str, &str)]) -> Scenario {
    start_with(settings, false).await
}

pub async fn start_with(settings: &[(&str, &str)], twice: bool) -> Scenario {
    start_configured(settings, twice, |_| {}).await
}

/// The whole local cloud with galleon, with `configure` applied to its options last.
pub async fn start_configured(
    settings: &[(&str, &str)],
    twice: bool,
    configure: impl FnOnce(&mut Options),
) -> Scenario {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut options = Options::new(repo_root(), galleon_dir(), dir.path().join("state"));
    options.deliver_everything_twice = twice;
    // As in an Azure namespace whose topic was made without duplicate detection (Azure's default, and
    // it cannot be switched on later): galleon must act once per fact on its own.
    options.service_bus_duplicate_detection_off = true;
    options.ports = Ports::ephemeral();
    options.arm_time_factor = 0.01;
    options.settings = settings
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect::<BTreeMap<_, _>>();
    configure(&mut options);
    let cloud = Cloud::start(options).await.expect("the local cloud starts");
    let receiver = Receiver::start().await.expect("receiver");
    cloud
        .subscribe("test-subscriber", &receiver.url())
        .await
        .expect("subscribed");
    cloud
        .storage()
        .expect("storage")
        .create_container("images")
        .await
        .expect("container");
    Scenario {
        cloud,
        receiver,
        _dir: dir,
    }
}

impl Scenario {
    /// Waits until an event of `ty` arrives (or a failure fact does, which ends the wait early).
    pub async fn wait_for(&self, ty: &str, seconds: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            if let Some(e) = self.receiver.received.of_type(ty).into_iter().next() {
                return e;
            }
            let failures: Vec<Value> = ["io.galleon.step.failed.v1", "io.galleon.vhd.rejected.v1"]
                .iter()
                .filter(|t| **t != ty)
                .flat_map(|t| self.receiver.received.of_type(t))
                .collect();
            assert!(
                failures.is_empty(),
                "waiting for {ty}, got failures: {failures:#?}"
            );
            if Instant::now() > deadline {
                panic!(
                    "no {ty} within {seconds} s; received {:#?}\nhost log (newest first):\n{}",
                    self.receiver.received.all(),
                    self.recent_host_log(60)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The host's newest log lines, newest first, for a failure message.
    pub fn recent_host_log(&self, lines: usize) -> String {
        let log: Vec<String> = self
            .cloud
            .host
            .logs()
            .iter()
            .rev()
            .take(lines)
            .map(|l| format!("{l:?}"))
            .collect();
        log.join("\n")
    }

    /// Waits until `n` distinct facts of `ty` arrived (failures of other kinds do not end the wait);
    /// returns what arrived, and prints the host's log when the time ran out.
    pub async fn wait_for_n(&self, ty: &str, n: usize, seconds: u64) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            let got = distinct(&self.receiver.received.of_type(ty));
            if got.len() >= n {
                return got;
            }
            if Instant::now() > deadline {
                eprintln!("host log (newest first):\n{}", self.recent_host_log(80));
                return got;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until `id` answers 404. Deleting is a long-running operation in Azure: a resource galleon
    /// deleted is still there (deleting) for a while after the fact that follows the DELETE.
    pub async fn wait_gone(&self, id: &str, why: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let answer = self.arm_get(id).await;
            if answer["_status"] == 404 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{why}: {id} is still there: {answer:#}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// GETs a resource as any ARM client would, retrying the throttling some tests inject.
    pub async fn arm_get(&self, id: &str) -> Value {
        for _ in 0..20 {
            let answer = self.arm_get_once(id).await;
            if answer["_status"] != 429 && answer["_status"] != 503 {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        self.arm_get_once(id).await
    }

    pub async fn arm_get_once(&self, id: &str) -> Value {
        let api = if id.contains("/Microsoft.Compute/images/") {
            "2025-04-01"
        } else {
            "2025-03-03"
        };
        let token = self.cloud.identity.issue("https://management.azure.com");
        let client = self.cloud.client().expect("client");
        let response = client
            .get(format!("{}{id}?api-version={api}", self.cloud.arm.base_url))
            .query(
                &[("$expand", "ReplicationStatus")]
                    .into_iter()
                    .filter(|_| api == "2025-03-03")
                    .collect::<Vec<_>>(),
            )
            .bearer_auth(token)
            .send()
            .await
            .expect("ARM answers");
        with_status(response).await
    }

    /// PUTs a resource as any ARM client would (a resource made by hand, for instance).
    pub async fn arm_put(&self, id: &str, api: &str, body: &Value) -> Value {
        let token = self.cloud.identity.issue("https://management.azure.com");
        let response = self
            .cloud
            .client()
            .expect("client")
            .put(format!("{}{id}?api-version={api}", self.cloud.arm.base_url))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("ARM answers");
        with_status(response).await
    }

    /// Uploads a fixed 8 MiB VHD made by qemu-img as `<name>` in the container `elsewhere`, outside the
    /// ingest containers (so galleon does not publish it); its URL.
    pub async fn upload_vhd_elsewhere(&self, name: &str) -> String {
        let work = tempfile::tempdir().expect("dir");
        let storage = self.cloud.storage().expect("storage");
        let vhd = make_vhd(work.path(), "disk.vhd", "fixed", "8M");
        // Made once per scenario; a second time it is already there.
        let _ = storage.create_container("elsewhere").await;
        storage
            .upload_page_blob("elsewhere", name, &vhd)
            .await
            .expect("vhd");
        storage.url("elsewhere", name)
    }

    /// Uploads a VHD (`fixed` or `dynamic`) of `size` made by qemu-img as `ubuntu-2404/<stem>.vhd`, then
    /// its manifest.
    pub async fn publish(&self, stem: &str, subformat: &str, size: &str, extra: Value) {
        let work = tempfile::tempdir().expect("dir");
        let storage = self.cloud.storage().expect("storage");
        let vhd = make_vhd(work.path(), &format!("{stem}.vhd"), subformat, size);
        storage
            .upload_page_blob("images", &format!("ubuntu-2404/{stem}.vhd"), &vhd)
            .await
            .expect("vhd");
        let manifest = manifest(&format!("{stem}.vhd"), extra);
        storage
            .upload_block_blob(
                "images",
                &format!("ubuntu-2404/{stem}.manifest.json"),
                &manifest,
            )
            .await
            .expect("manifest");
    }

    pub async fn fault(&self, rule: Value) {
        let response = self
            .cloud
            .client()
            .expect("client")
            .post(format!("{}/_devcloud/faults", self.cloud.arm.base_url))
            .json(&rule)
            .send()
            .await
            .expect("fault set");
        assert!(
            response.status().is_success(),
            "fault rule refused: {}",
            response.text().await.unwrap_or_default()
        );
    }

    /// Sends `body` to Service Bus queue `queue` as message `message_id`, with broker headers `headers`
    /// (a dead letter's `DeadLetterReason`, say), as the REST API takes them.
    pub async fn send_to_queue(
        &self,
        queue: &str,
        message_id: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) {
        let token = self.cloud.identity.issue("https://servicebus.azure.net");
        let mut request = self
            .cloud
            .client()
            .expect("client")
            .post(format!("{}/{queue}/messages", self.cloud.service_bus.url()))
            .bearer_auth(token)
            .header(
                "BrokerProperties",
                json!({"MessageId": message_id}).to_string(),
            )
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let sent = request.body(body.to_owned()).send().await.expect("send");
        assert!(
            sent.status().is_success(),
            "{}",
            sent.text().await.unwrap_or_default()
        );
    }

    /// Takes every fault rule away: Azure is healthy again.
    pub async fn clear_faults(&self) {
        let response = self
            .cloud
            .client()
            .expect("client")
            .delete(format!("{}/_devcloud/faults", self.cloud.arm.base_url))
            .send()
            .await
            .expect("faults cleared");
        assert!(response.status().is_success(), "{}", response.status());
    }

    pub async fn stop(self) {
        self.receiver.stop().await;
        self.cloud.stop().await;
    }
}

/// An ARM answer's JSON body, with its HTTP status as `_status`.
pub async fn with_status(response: reqwest::Response) -> Value {
    let status = response.status().as_u16();
    let mut body: Value = response.json().await.unwrap_or(Value::Null);
    body["_status"] = status.into();
    body
}

pub fn validator(name: &str) -> jsonschema::Validator {
    let text = std::fs::read_to_string(repo_root().join("events").join(name)).expect("schema");
    jsonschema::options()
        .should_validate_formats(true)
        .build(&serde_json::from_str(&text).expect("json"))
        .expect("schema compiles")
}

/// Every event a subscriber received validates against the catalog.
pub fn assert_catalog_valid(events: &[Value]) {
    let envelope = validator("envelope.schema.json");
    for e in events {
        let ty = e["type"].as_str().unwrap_or_default();
        let name = ty.strip_prefix("io.galleon.").unwrap_or(ty);
        let data = validator(&format!("{name}.schema.json"));
        let errors: Vec<String> = envelope
            .iter_errors(e)
            .chain(data.iter_errors(&e["data"]))
            .map(|x| format!("{x} at {}", x.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{ty} does not validate: {errors:?}\n{e:#}"
        );
    }
}

pub fn manifest(vhd: &str, extra: Value) -> Vec<u8> {
    let mut m = json!({"vhd": vhd, "imageDefinition": "ubuntu-2404", "osType": "Linux", "hyperVGeneration": "V2",
                       "identifier": {"publisher": "contoso", "offer": "ubuntu", "sku": "24_04-lts-gen2"}});
    if let (Some(m), Some(extra)) = (m.as_object_mut(), extra.as_object()) {
        m.extend(extra.clone());
    }
    m.to_string().into_bytes()
}

/// The names of a fact's `regions`, in order.
pub fn region_names(data: &Value) -> Vec<&str> {
    data["regions"]
        .as_array()
        .expect("regions")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect()
}

/// Distinct facts of a type (a subscriber dedupes on the CloudEvents id, which galleon derives from the cause).
pub fn distinct(events: &[Value]) -> Vec<Value> {
    let mut seen = std::collections::BTreeMap::new();
    for e in events {
        let id = e["id"].as_str().unwrap_or_default().to_owned();
        if let Some(first) = seen.get(&id) {
            assert_eq!(first, e, "two events with one id must be the same event");
        } else {
            seen.insert(id, e.clone());
        }
    }
    seen.into_values().collect()
}

/// The `galleon` tool: `GALLEON_CLI`, or the workspace's debug build.
pub fn cli() -> PathBuf {
    let bin = std::env::var_os("GALLEON_CLI")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/debug/galleon"));
    assert!(
        bin.is_file(),
        "{} is missing: cargo build -p galleon-cli",
        bin.display()
    );
    bin
}

/// What a run of the tool printed and how it ended.
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the `galleon` tool with `args` and `env` only (no GALLEON_* from the test's own environment),
/// in `dir` when given.
pub fn galleon(args: &[&str], env: &[(&str, &str)], dir: Option<&std::path::Path>) -> Ran {
    let mut command = std::process::Command::new(cli());
    command
        .args(args)
        .env_remove("GALLEON_URL")
        .env_remove("GALLEON_FUNCTIONS_KEY")
        .envs(env.iter().copied());
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let out = command.output().expect("galleon runs");
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

impl Scenario {
    /// The environment the `galleon` tool reaches this local cloud's app with.
    pub fn tool_env(&self) -> (String, String) {
        (
            self.cloud.connection().functions_host,
            self.cloud.functions_key.clone(),
        )
    }
}

/// The Azure RBAC action an ARM request needs: `GET …/galleries/g/images/d` →
/// `Microsoft.Compute/galleries/images/read`, `POST …/galleries/g/share` →
/// `Microsoft.Compute/galleries/share/action`. `None` for what is not an ARM resource path.
pub fn rbac_action(method: &str, path: &str) -> Option<String> {
    let path = path.split('?').next().unwrap_or_default();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    if !segs.first()?.eq_ignore_ascii_case("subscriptions") || segs.len() < 2 {
        return None;
    }
    let rest = &segs[2..];
    let (namespace, pairs): (String, Vec<&str>) = match rest
        .iter()
        .position(|s| s.eq_ignore_ascii_case("providers"))
    {
        Some(i) => ((*rest.get(i + 1)?).to_owned(), rest[i + 2..].to_vec()),
        None => {
            // The subscription or a resource group itself.
            let mut pairs = vec!["subscriptions"];
            pairs.extend(rest.iter().step_by(2));
            ("Microsoft.Resources".to_owned(), pairs)
        }
    };
    let mut types = Vec::new();
    let mut action = None;
    let mut i = 0;
    while i < pairs.len() {
        if i + 1 < pairs.len() || method != "POST" {
            types.push(pairs[i]);
        } else {
            action = Some(pairs[i]);
        }
        i += if namespace == "Microsoft.Resources" {
            1
        } else {
            2
        };
    }
    let verb = match (method, action) {
        (_, Some(a)) => format!("{a}/action"),
        ("GET" | "HEAD", _) => "read".into(),
        ("PUT" | "PATCH", _) => "write".into(),
        ("DELETE", _) => "delete".into(),
        (other, None) => other.to_ascii_lowercase(),
    };
    Some(format!("{namespace}/{}/{verb}", types.join("/")))
}

/// Whether a role's `action` (wildcards `*`, case-insensitive, as Azure matches them) allows `needed`.
pub fn action_allows(action: &str, needed: &str) -> bool {
    let (p, s): (Vec<char>, Vec<char>) = (
        action.to_ascii_lowercase().chars().collect(),
        needed.to_ascii_lowercase().chars().collect(),
    );
    // Classic wildcard matching: `star` remembers the last `*` and how much of `s` it has taken.
    let (mut i, mut j, mut star, mut taken) = (0, 0, None, 0);
    while j < s.len() {
        if i < p.len() && p[i] != '*' && p[i] == s[j] {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            taken = j;
            i += 1;
        } else if let Some(at) = star {
            i = at + 1;
            taken += 1;
            j = taken;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == '*')
}

impl Scenario {
    /// Every ARM call galleon made in this scenario (its user agent `galleon/…`; the tests' own setup
    /// calls are not galleon's) is allowed by the custom roles infra gives it: `galleon-compute`
    /// (`infra/galleon-compute-role.json`) and the roles `infra/modules/subscription.bicep` defines (the
    /// ingest account's read, platform image versions). Least privilege that still works.
    pub async fn assert_role_allows_what_galleon_did(&self) {
        let role: Value = serde_json::from_slice(
            &std::fs::read(repo_root().join("infra/galleon-compute-role.json"))
                .expect("infra/galleon-compute-role.json"),
        )
        .expect("JSON");
        let actions: Vec<String> = role["actions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect();
        let quoted = regex::Regex::new(r"'(Microsoft\.[A-Za-z]+/[^']+)'").expect("regex");
        let roles = std::fs::read_to_string(repo_root().join("infra/modules/subscription.bicep"))
            .expect("infra/modules/subscription.bicep");
        let mut actions = actions;
        actions.extend(quoted.captures_iter(&roles).map(|c| c[1].to_owned()));
        let log: Value = self
            .cloud
            .client()
            .expect("client")
            .get(format!(
                "{}/_devcloud/requests?limit=100000",
                self.cloud.arm.base_url
            ))
            .send()
            .await
            .expect("request log")
            .json()
            .await
            .expect("json");
        let mut needed = std::collections::BTreeSet::new();
        for entry in log["entries"].as_array().into_iter().flatten() {
            if !entry["userAgent"]
                .as_str()
                .is_some_and(|ua| ua.starts_with("galleon/"))
            {
                continue;
            }
            let (method, path) = (
                entry["method"].as_str().unwrap_or_default(),
                entry["path"].as_str().unwrap_or_default(),
            );
            if let Some(action) = rbac_action(method, path) {
                needed.insert(action);
            }
        }
        assert!(!needed.is_empty(), "galleon made no ARM call: {log}");
        let denied: Vec<&String> = needed
            .iter()
            .filter(|n| !actions.iter().any(|a| action_allows(a, n)))
            .collect();
        assert!(
            denied.is_empty(),
            "infra/galleon-compute-role.json lacks {denied:?} (galleon needed {needed:?})"
        );
    }
}
