//! What a local Image Builder run produces, per distribute type, and how it ends: a real fixed VHD
//! in Azurite of the template's disk size, a managed image with the source's OS type and
//! generation, a gallery version that is distributed (runSubState Distributing) until every region
//! has replicated; injected failures, partial success, stalls and cancel.

mod common;

use std::time::{Duration, Instant};

use common::{Env, SUB, gallery_and_definition};
use devcloud_arm::{ArmConfig, Work};
use reqwest::Method;
use serde_json::{Value, json};

const T: &str = "api-version=2024-02-01";
const G: &str = "api-version=2025-03-03";
const UBUNTU: &str = r#"{"type": "PlatformImage", "publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"}"#;

fn config() -> ArmConfig {
    let mut c = ArmConfig::fast();
    c.time_factor = 1.0;
    for w in [
        Work::GalleryCreate,
        Work::DefinitionCreate,
        Work::TemplateCreate,
        Work::TemplateCancel,
        Work::VersionHomeRegion,
    ] {
        c.latency.base_secs.insert(w, 0.05);
    }
    c.latency.base_secs.insert(Work::TemplateRun, 0.2);
    c.latency.base_secs.insert(Work::VersionReplicate, 0.3);
    c
}

fn template_path(env: &Env, name: &str) -> String {
    format!(
        "{}/providers/Microsoft.VirtualMachineImages/imageTemplates/{name}",
        env.rg_path("rg")
    )
}

async fn put_template(
    env: &Env,
    name: &str,
    source: Value,
    vm: Value,
    distribute: Value,
) -> String {
    let t = template_path(env, name);
    env.ok(
        Method::PUT,
        &format!("{t}?{T}"),
        Some(
            json!({"location": "westeurope", "identity": {"type": "None"}, "properties": {
            "source": source, "vmProfile": vm, "distribute": distribute}}),
        ),
    )
    .await;
    t
}

/// Starts a run; returns its Azure-AsyncOperation URL.
async fn start(env: &Env, t: &str) -> String {
    let run = env.call(Method::POST, &format!("{t}/run?{T}"), None).await;
    assert_eq!(run.status, 202, "{}", run.body);
    run.header("azure-asyncoperation").unwrap()
}

/// Polls the template until its run ends; returns lastRunStatus and every runSubState seen.
async fn wait_end(env: &Env, t: &str) -> (Value, Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut subs: Vec<String> = Vec::new();
    loop {
        let tpl = env.ok(Method::GET, &format!("{t}?{T}"), None).await.body;
        let s = tpl["properties"]["lastRunStatus"].clone();
        if s["runState"] != "Running" {
            return (s, subs);
        }
        if let Some(sub) = s["runSubState"].as_str()
            && subs.last().is_none_or(|l| l != sub)
        {
            subs.push(sub.to_string());
        }
        assert!(Instant::now() < deadline, "the run did not end: {s}");
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

async fn outputs(env: &Env, t: &str) -> Vec<Value> {
    env.ok(Method::GET, &format!("{t}/runOutputs?{T}"), None)
        .await
        .body["value"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn a_vhd_output_is_a_real_fixed_vhd_of_the_templates_disk_size() {
    let mut c = config();
    // As Azure: the size comes from the template, not from a test override.
    c.image_builder_vhd_bytes = None;
    let env = Env::start(true, c).await;
    let src: Value = serde_json::from_str(UBUNTU).unwrap();
    let t = put_template(
        &env,
        "vhd",
        src,
        json!({"osDiskSizeGB": 1}),
        json!([{"type": "VHD", "runOutputName": "disk", "artifactTags": {"k": "v"}}]),
    )
    .await;
    let op = start(&env, &t).await;
    let (status, _) = wait_end(&env, &t).await;
    assert_eq!(status["runState"], "Succeeded", "{status}");
    assert!(status["endTime"].is_string() && status["startTime"].is_string());
    assert_eq!(env.wait_async(&op).await["status"], "Succeeded");
    let outs = outputs(&env, &t).await;
    assert_eq!(outs.len(), 1);
    assert_eq!(outs[0]["name"], "disk");
    assert_eq!(
        outs[0]["type"],
        "Microsoft.VirtualMachineImages/imageTemplates/runOutputs"
    );
    assert!(outs[0]["properties"]["artifactId"].is_null());
    let uri = outs[0]["properties"]["artifactUri"].as_str().unwrap();
    assert!(uri.contains("/imagebuilder/"), "{uri}");
    // The single run output GET answers the same.
    let one = env
        .ok(Method::GET, &format!("{t}/runOutputs/disk?{T}"), None)
        .await
        .body;
    assert_eq!(one, outs[0]);
    // In Azurite: a page blob of 1 GiB + the 512-byte footer, with a correct fixed VHD footer.
    let token = env.identity.issue("https://storage.azure.com");
    let head = env
        .client
        .head(uri)
        .bearer_auth(&token)
        .header("x-ms-version", "2025-01-05")
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["x-ms-blob-type"], "PageBlob");
    let len: u64 = head.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(len, (1 << 30) + 512);
    let footer = env
        .client
        .get(uri)
        .bearer_auth(&token)
        .header("x-ms-version", "2025-01-05")
        .header("x-ms-range", format!("bytes={}-{}", len - 512, len - 1))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&footer[..8], b"conectix");
    let be32 = |o: usize| u32::from_be_bytes(footer[o..o + 4].try_into().unwrap());
    let be64 = |o: usize| u64::from_be_bytes(footer[o..o + 8].try_into().unwrap());
    assert_eq!(be32(60), 2, "disk type fixed");
    assert_eq!(be64(40), 1 << 30, "original size");
    assert_eq!(be64(48), 1 << 30, "current size");
    let sum: u32 = footer
        .iter()
        .enumerate()
        .filter(|(i, _)| !(64..68).contains(i))
        .map(|(_, b)| *b as u32)
        .sum();
    assert_eq!(be32(64), !sum, "footer checksum");
    assert_eq!(&footer[28..32], b"qem2", "made by qemu-img with force_size");
    // The disk is laid out as a generation 2 build of Ubuntu leaves it: a protective MBR, a GPT, and
    // an EFI System Partition at 1 MiB holding \EFI\BOOT\BOOTX64.EFI.
    let read = |from: u64, to: u64| {
        let (client, token, uri) = (env.client.clone(), token.clone(), uri.to_string());
        async move {
            client
                .get(&uri)
                .bearer_auth(&token)
                .header("x-ms-version", "2025-01-05")
                .header("x-ms-range", format!("bytes={from}-{to}"))
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
        }
    };
    let head = read(0, 1023).await;
    assert_eq!((head[450], head[510], head[511]), (0xEE, 0x55, 0xAA));
    assert_eq!(&head[512..520], b"EFI PART");
    let esp = read(1 << 20, (1 << 20) + 511).await;
    assert_eq!(&esp[54..62], b"FAT12   ");
    // The loader is the fourth data cluster's file: a PE for x64 (machine 0x8664).
    let loader_at = (1 << 20) + (1 + 2 * 6 + 32 + 2) * 512;
    let pe = read(loader_at, loader_at + 511).await;
    assert_eq!(&pe[..2], b"MZ");
    assert_eq!(&pe[0x40..0x46], b"PE\0\0\x64\x86");
    // qemu-img reads the downloaded blob as a fixed VHD (vpc) of the template's disk size.
    let local = download_page_blob(&env, uri, &token, len).await;
    let info = std::process::Command::new("qemu-img")
        .args(["info", "-f", "vpc", "--output=json"])
        .arg(local.path())
        .output()
        .expect("qemu-img runs");
    assert!(
        info.status.success(),
        "{}",
        String::from_utf8_lossy(&info.stderr)
    );
    let info: Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["format"], "vpc", "{info}");
    assert_eq!(info["virtual-size"], 1u64 << 30, "{info}");
}

/// Downloads the page blob at `uri` (`len` bytes) into a sparse temporary file: only its valid page
/// ranges are read, the rest stays a hole (zeros), as the blob reads.
async fn download_page_blob(
    env: &Env,
    uri: &str,
    token: &str,
    len: u64,
) -> tempfile::NamedTempFile {
    use std::io::{Seek, SeekFrom, Write};
    let list = env
        .client
        .get(format!("{uri}?comp=pagelist"))
        .bearer_auth(token)
        .header("x-ms-version", "2025-01-05")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let ranges = regex::Regex::new(r"<Start>(\d+)</Start><End>(\d+)</End>").unwrap();
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.as_file().set_len(len).unwrap();
    let mut seen = 0;
    for c in ranges.captures_iter(&list) {
        let (from, to): (u64, u64) = (c[1].parse().unwrap(), c[2].parse().unwrap());
        let bytes = env
            .client
            .get(uri)
            .bearer_auth(token)
            .header("x-ms-version", "2025-01-05")
            .header("x-ms-range", format!("bytes={from}-{to}"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(bytes.len() as u64, to - from + 1);
        file.seek(SeekFrom::Start(from)).unwrap();
        file.write_all(&bytes).unwrap();
        seen += 1;
    }
    assert!(seen > 0, "no page ranges: {list}");
    file.flush().unwrap();
    file
}

#[tokio::test]
async fn managed_image_and_gallery_version_outputs_and_distribution_waits_for_every_region() {
    let mut c = config();
    // The second region takes much longer than the build.
    c.latency.base_secs.insert(Work::VersionReplicate, 1.5);
    let env = Env::start(false, c).await;
    let d = gallery_and_definition(&env).await;
    let def_id = env.ok(Method::GET, &format!("{d}?{G}"), None).await.body["id"]
        .as_str()
        .unwrap()
        .to_string();
    let img =
        format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/images/win");
    let t = put_template(
        &env,
        "both",
        json!({"type": "PlatformImage", "publisher": "MicrosoftWindowsServer", "offer": "WindowsServer", "sku": "2022-datacenter-azure-edition", "version": "latest"}),
        json!({"vmSize": "Standard_D2ds_v5", "osDiskSizeGB": 0}),
        json!([
            {"type": "ManagedImage", "imageId": img, "location": "westeurope", "runOutputName": "image"},
            {"type": "SharedImage", "galleryImageId": def_id, "runOutputName": "gallery",
             "targetRegions": [{"name": "westeurope"}, {"name": "eastus2", "replicaCount": 2}]}]),
    )
    .await;
    start(&env, &t).await;
    // While the gallery version is still replicating to eastus2, the run is Distributing.
    let deadline = Instant::now() + Duration::from_secs(10);
    let version_id = loop {
        let st = env.ok(Method::GET, &format!("{t}?{T}"), None).await.body;
        let state = &st["properties"]["lastRunStatus"];
        assert_eq!(
            state["runState"], "Running",
            "ended before eastus2 replicated: {state}"
        );
        let versions = env
            .ok(Method::GET, &format!("{d}/versions?{G}"), None)
            .await
            .body;
        if let Some(v) = versions["value"].as_array().and_then(|a| a.first()) {
            assert_eq!(state["runSubState"], "Distributing", "{state}");
            break v["id"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(40)).await;
    };
    let v = env
        .ok(
            Method::GET,
            &format!("{version_id}?$expand=ReplicationStatus&{G}"),
            None,
        )
        .await
        .body;
    assert_eq!(
        v["properties"]["replicationStatus"]["aggregatedState"],
        "InProgress"
    );
    let (status, subs) = wait_end(&env, &t).await;
    assert_eq!(status["runState"], "Succeeded", "{status}");
    assert_eq!(subs.last().map(String::as_str), Some("Distributing"));
    // The sub-states seen come in Image Builder's order.
    let order = [
        "Queued",
        "Building",
        "Customizing",
        "Validating",
        "Optimizing",
        "Distributing",
    ];
    let at: Vec<usize> = subs
        .iter()
        .map(|s| {
            order
                .iter()
                .position(|o| o == s)
                .expect("a known runSubState")
        })
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{subs:?}");
    let v = env
        .ok(
            Method::GET,
            &format!("{version_id}?$expand=ReplicationStatus&{G}"),
            None,
        )
        .await
        .body;
    assert_eq!(
        v["properties"]["replicationStatus"]["aggregatedState"], "Completed",
        "{v}"
    );
    assert_eq!(v["properties"]["provisioningState"], "Succeeded");
    let regions: Vec<&str> = v["properties"]["publishingProfile"]["targetRegions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(regions, ["westeurope", "eastus2"]);
    // Windows Server's OS disk is 127 GiB when the template says 0.
    assert_eq!(
        v["properties"]["storageProfile"]["osDiskImage"]["sizeInGB"], 1,
        "fast() writes 4 MiB disks"
    );
    // The managed image carries the platform image's OS type and generation.
    let image = env
        .ok(Method::GET, &format!("{img}?api-version=2025-04-01"), None)
        .await
        .body;
    assert_eq!(
        image["properties"]["storageProfile"]["osDisk"]["osType"],
        "Windows"
    );
    assert_eq!(image["properties"]["hyperVGeneration"], "V2");
    assert_eq!(image["properties"]["provisioningState"], "Succeeded");
    // The run outputs name each artifact.
    let mut outs = outputs(&env, &t).await;
    outs.sort_by_key(|o| o["name"].as_str().unwrap().to_string());
    assert_eq!(outs[0]["name"], "gallery");
    assert_eq!(
        outs[0]["properties"]["artifactId"]
            .as_str()
            .unwrap()
            .to_lowercase(),
        version_id.to_lowercase()
    );
    assert_eq!(outs[1]["name"], "image");
    assert_eq!(outs[1]["properties"]["artifactId"], img);
    assert_eq!(outs[1]["properties"]["provisioningState"], "Succeeded");
    let tpl = env.ok(Method::GET, &format!("{t}?{T}"), None).await.body;
    assert_eq!(
        tpl["properties"]["source"]["exactVersion"],
        "20348.2849.241106"
    );
}

#[tokio::test]
async fn the_disk_size_follows_the_source_when_the_template_says_0() {
    let mut c = config();
    c.image_builder_vhd_bytes = None;
    let env = Env::start(false, c).await;
    let img =
        format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/images/big");
    let t = put_template(
        &env,
        "win",
        json!({"type": "PlatformImage", "publisher": "MicrosoftWindowsServer", "offer": "WindowsServer", "sku": "2022-datacenter-azure-edition", "version": "20348.2762.241009"}),
        json!({"osDiskSizeGB": 0}),
        json!([{"type": "ManagedImage", "imageId": img, "location": "westeurope", "runOutputName": "image"}]),
    )
    .await;
    start(&env, &t).await;
    let (status, _) = wait_end(&env, &t).await;
    assert_eq!(status["runState"], "Succeeded", "{status}");
    let image = env
        .ok(Method::GET, &format!("{img}?api-version=2025-04-01"), None)
        .await
        .body;
    assert_eq!(
        image["properties"]["storageProfile"]["osDisk"]["diskSizeGB"],
        127
    );
    let tpl = env.ok(Method::GET, &format!("{t}?{T}"), None).await.body;
    assert_eq!(
        tpl["properties"]["source"]["exactVersion"],
        "20348.2762.241009"
    );
}

#[tokio::test]
async fn injected_failures_partial_success_stalls_and_cancel() {
    let env = Env::start(false, config()).await;
    let d = gallery_and_definition(&env).await;
    let def_id = env.ok(Method::GET, &format!("{d}?{G}"), None).await.body["id"]
        .as_str()
        .unwrap()
        .to_string();
    let src: Value = serde_json::from_str(UBUNTU).unwrap();
    let t = put_template(
        &env,
        "f",
        src.clone(),
        json!({}),
        json!([
            {"type": "VHD", "runOutputName": "one"},
            {"type": "VHD", "runOutputName": "two"}]),
    )
    .await;
    let rule = |action: Value| json!({"kind": "VirtualMachineImageTemplates_Run", "count": 1, "action": action});

    // One distribution target fails: PartiallySucceeded, with the failure in the message.
    env.admin(
        Method::POST,
        "faults",
        Some(rule(json!({"type": "failDistribute", "runOutputName": "two", "message": "Storage quota exceeded."}))),
    )
    .await;
    let op = start(&env, &t).await;
    let (status, _) = wait_end(&env, &t).await;
    assert_eq!(status["runState"], "PartiallySucceeded", "{status}");
    assert!(
        status["message"].as_str().unwrap().contains("'two'")
            && status["message"]
                .as_str()
                .unwrap()
                .contains("Storage quota exceeded."),
        "{status}"
    );
    let outs = outputs(&env, &t).await;
    assert_eq!(outs.len(), 1);
    assert_eq!(outs[0]["name"], "one");
    assert_eq!(env.wait_async(&op).await["status"], "Succeeded");

    // The whole build fails: Failed, the message verbatim, the operation Failed.
    env.admin(
        Method::POST,
        "faults",
        Some(rule(
            json!({"type": "error", "status": 400, "code": "ImageBuildFailed", "inOperation": true,
            "message": "Customizer 'setup' failed: exit status 1."}),
        )),
    )
    .await;
    let op = start(&env, &t).await;
    let (status, _) = wait_end(&env, &t).await;
    assert_eq!(status["runState"], "Failed", "{status}");
    assert_eq!(
        status["message"],
        "Customizer 'setup' failed: exit status 1."
    );
    let done = env.wait_async(&op).await;
    assert_eq!(done["status"], "Failed");
    assert!(outputs(&env, &t).await.is_empty());

    // A gallery version that fails to replicate to one region: the run partially succeeds.
    let t2 = put_template(
        &env,
        "g",
        src.clone(),
        json!({}),
        json!([
            {"type": "VHD", "runOutputName": "vhd"},
            {"type": "SharedImage", "galleryImageId": def_id, "runOutputName": "gallery",
             "targetRegions": [{"name": "westeurope"}, {"name": "eastus2"}]}]),
    )
    .await;
    env.admin(
        Method::POST,
        "faults",
        Some(rule(
            json!({"type": "failRegion", "region": "East US 2", "details": "Disk copy timed out."}),
        )),
    )
    .await;
    start(&env, &t2).await;
    let (status, _) = wait_end(&env, &t2).await;
    assert_eq!(status["runState"], "PartiallySucceeded", "{status}");
    let msg = status["message"].as_str().unwrap();
    assert!(
        msg.contains("'gallery'") && msg.contains("Disk copy timed out."),
        "{msg}"
    );
    let outs = outputs(&env, &t2).await;
    assert_eq!(outs.len(), 1);
    assert_eq!(outs[0]["name"], "vhd");

    // A stalled run stays Running (Distributing) until cancelled; then Canceled.
    env.admin(Method::POST, "faults", Some(rule(json!({"type": "stall"}))))
        .await;
    let op = start(&env, &t).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let st = env.ok(Method::GET, &format!("{t}?{T}"), None).await.body;
    assert_eq!(st["properties"]["lastRunStatus"]["runState"], "Running");
    assert_eq!(
        st["properties"]["lastRunStatus"]["runSubState"],
        "Distributing"
    );
    let busy = env.call(Method::POST, &format!("{t}/run?{T}"), None).await;
    assert_eq!(busy.status, 409);
    let cancel = env
        .call(Method::POST, &format!("{t}/cancel?{T}"), None)
        .await;
    assert_eq!(cancel.status, 202);
    env.wait_async(&cancel.header("azure-asyncoperation").unwrap())
        .await;
    let (status, _) = wait_end(&env, &t).await;
    assert_eq!(status["runState"], "Canceled", "{status}");
    assert_eq!(env.wait_async(&op).await["status"], "Canceled");

    // A platform image that does not exist fails the run.
    let t3 = put_template(
        &env,
        "nosuch",
        json!({"type": "PlatformImage", "publisher": "Canonical", "offer": "ubuntu-99_04-lts", "sku": "server", "version": "latest"}),
        json!({}),
        json!([{"type": "VHD", "runOutputName": "vhd"}]),
    )
    .await;
    start(&env, &t3).await;
    let (status, _) = wait_end(&env, &t3).await;
    assert_eq!(status["runState"], "Failed");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .starts_with("BadPIRSource"),
        "{status}"
    );
}
