//! Image features end to end on the local cloud: real generation 2 disks (a GPT whose EFI system
//! partition is a FAT file system made by mkfs.vfat and mtools, holding BOOTX64.EFI or BOOTAA64.EFI),
//! published with Trusted Launch, a data disk and disk encryption sets, or as Arm64; the definitions and
//! versions read back through Azure's Python SDK carry exactly what was asked. Bad combinations are
//! rejected before any write, with the blob untouched.

mod common;
#[path = "../../vhd/tests/common/disks.rs"]
mod disks;

use std::path::Path;

use common::*;
use disks::{Fat, Table, disk, fat_image, pe_stub, tools_available};
use serde_json::{Value, json};

const X64: u16 = 0x8664;

/// Blobs to upload next to a manifest: (name, content).
type Files<'a> = Vec<(&'a str, &'a [u8])>;
const AA64: u16 = 0xAA64;

/// A 24 MiB generation 2 OS disk whose ESP holds `\EFI\BOOT\<loader>`.
fn os_disk(dir: &Path, name: &str, loader: &str, machine: u16) -> Vec<u8> {
    let stub = pe_stub(machine);
    let path = format!("/EFI/BOOT/{loader}");
    let fat = fat_image(
        dir,
        name,
        &Fat {
            bits: 16,
            sectors_per_cluster: 2,
            size_kib: 8192,
            dirs: &["/EFI", "/EFI/BOOT"],
            files: &[(&path, &stub)],
        },
    );
    let vhd = disk(dir, &format!("{name}.vhd"), 24, Table::GptEsp, &fat);
    std::fs::read(vhd).expect("read the disk")
}

impl Scenario {
    async fn upload(&self, folder: &str, files: &[(&str, &[u8])], manifest: Value) {
        let storage = self.cloud.storage().expect("storage");
        for (name, bytes) in files {
            storage
                .upload_page_blob("images", &format!("{folder}/{name}"), bytes)
                .await
                .expect("vhd");
        }
        storage
            .upload_block_blob(
                "images",
                &format!("{folder}/image.manifest.json"),
                manifest.to_string().as_bytes(),
            )
            .await
            .expect("manifest");
    }

    /// The definition and version as `azure-mgmt-compute` reads them (its models' `as_dict()`: the REST
    /// shape, `properties` and camelCase).
    async fn read_back(&self, definition: &str, version: &str) -> Value {
        let python = repo_root().join(".venv/bin/python");
        assert!(
            python.is_file(),
            "{} is missing: run scripts/setup.sh",
            python.display()
        );
        let out = tokio::process::Command::new(python)
            .arg("tests/python/readback/read_image.py")
            .args([devcloud::RESOURCE_GROUP, "golden", definition, version])
            .current_dir(repo_root())
            .envs(self.cloud.connection().env_lines())
            .env("AZURE_CORE_COLLECT_TELEMETRY", "no")
            .output()
            .await
            .expect("run python");
        assert!(
            out.status.success(),
            "read_image.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("read_image.py prints JSON")
    }
}

fn des(name: &str) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/rg-keys/providers/Microsoft.Compute/diskEncryptionSets/{name}",
        devcloud_arm::DEFAULT_SUBSCRIPTION_ID
    )
}

fn base(vhd: &str, definition: &str) -> Value {
    json!({
        "vhd": vhd,
        "imageDefinition": definition,
        "osType": "Linux",
        "hyperVGeneration": "V2",
        "version": "1.0.0",
        "identifier": {"publisher": "contoso", "offer": definition, "sku": "gen2"},
        "targetRegions": [{"name": "westeurope"}],
    })
}

fn merged(mut a: Value, b: Value) -> Value {
    if let (Some(a), Some(b)) = (a.as_object_mut(), b.as_object()) {
        a.extend(b.clone());
    }
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_launch_with_a_data_disk_and_encryption_and_arm64_publish_as_asked() {
    if !tools_available("trusted_launch_with_a_data_disk_and_encryption_and_arm64_publish_as_asked")
    {
        return;
    }
    let work = tempfile::tempdir().expect("dir");
    let s = start(&[("GALLEON_TARGET_REGIONS", "westeurope")]).await;

    // Trusted Launch x64, one data disk, a disk encryption set for each disk.
    let os = os_disk(work.path(), "tl", "BOOTX64.EFI", X64);
    let data = make_vhd(work.path(), "data0.vhd", "fixed", "8M");
    let manifest = merged(
        base("os.vhd", "ubuntu-tl"),
        json!({
            "architecture": "x64",
            "securityType": "TrustedLaunch",
            "diskControllerTypes": ["SCSI", "NVMe"],
            "acceleratedNetworking": true,
            "definition": {
                "description": "Ubuntu 24.04, Trusted Launch",
                "eula": "https://contoso.example/eula",
                "recommended": {"vCPUs": {"min": 2, "max": 16}, "memory": {"min": 4, "max": 64}},
                "endOfLifeDate": "2030-01-01T00:00:00Z",
            },
            "endOfLifeDate": "2029-06-30T00:00:00Z",
            "safetyProfile": {"allowDeletionOfReplicatedLocations": false},
            "dataDisks": [{"vhd": "data0.vhd", "lun": 0}],
            "targetRegions": [{
                "name": "westeurope",
                "excludeFromLatest": true,
                "encryption": {
                    "osDiskImage": {"diskEncryptionSetId": des("des-os")},
                    "dataDiskImages": [{"lun": 0, "diskEncryptionSetId": des("des-data")}],
                },
            }],
        }),
    );
    s.upload(
        "ubuntu-tl",
        &[("os.vhd", &os), ("data0.vhd", &data)],
        manifest,
    )
    .await;
    s.wait_for("io.galleon.image.ready.v1", 180).await;
    let got = s.read_back("ubuntu-tl", "1.0.0").await;
    let d = &got["definition"]["properties"];
    assert_eq!(d["architecture"], "x64", "{d:#}");
    assert_eq!(d["hyperVGeneration"], "V2");
    let features: Vec<(String, String)> = d["features"]
        .as_array()
        .map(|f| {
            f.iter()
                .map(|x| {
                    (
                        x["name"].as_str().unwrap_or("").to_owned(),
                        x["value"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        features,
        [
            ("SecurityType".to_owned(), "TrustedLaunch".to_owned()),
            ("DiskControllerTypes".to_owned(), "SCSI, NVMe".to_owned()),
            (
                "IsAcceleratedNetworkSupported".to_owned(),
                "True".to_owned()
            ),
        ],
        "{d:#}"
    );
    assert_eq!(d["description"], "Ubuntu 24.04, Trusted Launch");
    assert_eq!(d["eula"], "https://contoso.example/eula");
    assert_eq!(d["recommended"]["vCPUs"]["max"], 16, "{d:#}");
    assert_eq!(d["recommended"]["memory"]["min"], 4);
    assert!(
        d["endOfLifeDate"]
            .as_str()
            .is_some_and(|t| t.starts_with("2030-01-01")),
        "{d:#}"
    );
    let v = &got["version"]["properties"];
    let profile = &v["publishingProfile"];
    assert!(
        profile["endOfLifeDate"]
            .as_str()
            .is_some_and(|t| t.starts_with("2029-06-30")),
        "{v:#}"
    );
    let region = &profile["targetRegions"][0];
    assert_eq!(region["excludeFromLatest"], true, "{v:#}");
    assert_eq!(
        region["encryption"]["osDiskImage"]["diskEncryptionSetId"],
        des("des-os").as_str()
    );
    assert_eq!(region["encryption"]["dataDiskImages"][0]["lun"], 0);
    assert_eq!(
        region["encryption"]["dataDiskImages"][0]["diskEncryptionSetId"],
        des("des-data").as_str()
    );
    let storage = &v["storageProfile"];
    assert_eq!(storage["dataDiskImages"][0]["lun"], 0, "{v:#}");
    assert!(
        storage["dataDiskImages"][0]["source"]["uri"]
            .as_str()
            .is_some_and(|u| u.ends_with("/ubuntu-tl/data0.vhd")),
        "{v:#}"
    );
    assert_eq!(storage["osDiskImage"]["hostCaching"], "ReadOnly");
    assert_eq!(
        v["safetyProfile"]["allowDeletionOfReplicatedLocations"],
        false
    );

    // Arm64, read off the disk: the manifest states no architecture.
    let arm = os_disk(work.path(), "arm", "BOOTAA64.EFI", AA64);
    s.upload(
        "ubuntu-arm",
        &[("os.vhd", &arm)],
        base("os.vhd", "ubuntu-arm"),
    )
    .await;
    s.wait_for_n("io.galleon.image.ready.v1", 2, 180).await;
    let got = s.read_back("ubuntu-arm", "1.0.0").await;
    assert_eq!(
        got["definition"]["properties"]["architecture"], "Arm64",
        "{got:#}"
    );
    assert!(
        got["definition"]["properties"]
            .get("features")
            .is_none_or(Value::is_null),
        "no features were asked for: {got:#}"
    );
    // The data disk and the OS disks were published only through their manifests, never as bare VHDs.
    let versions: Vec<String> = s
        .cloud
        .arm
        .request_log()
        .into_iter()
        .filter(|e| e.method == "PUT" && e.path.contains("/versions/"))
        .map(|e| e.path)
        .collect();
    assert_eq!(versions.len(), 2, "{versions:#?}");
    s.stop().await;
}

/// Each bad combination is one `vhd.rejected` naming its cause, before any Azure write; the VHD stays as
/// it was (marked with metadata only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_feature_combinations_are_rejected_before_any_write() {
    if !tools_available("bad_feature_combinations_are_rejected_before_any_write") {
        return;
    }
    let work = tempfile::tempdir().expect("dir");
    let s = start(&[("GALLEON_TARGET_REGIONS", "westeurope,northeurope")]).await;
    let arm = os_disk(work.path(), "arm", "BOOTAA64.EFI", AA64);
    let gen1 = make_vhd(work.path(), "gen1.vhd", "fixed", "8M");
    let data = make_vhd(work.path(), "data.vhd", "fixed", "8M");
    let dynamic = make_vhd(work.path(), "dyn.vhd", "dynamic", "8M");
    // (folder, its blobs, what the manifest adds, the expected rejection code)
    let cases: Vec<(&str, Files, Value, &str)> = vec![
        (
            "arm-declared-x64",
            vec![("os.vhd", &arm)],
            json!({"architecture": "x64"}),
            "ArchitectureMismatch",
        ),
        (
            "tl-on-v1",
            vec![("os.vhd", &gen1)],
            json!({"hyperVGeneration": "V1", "securityType": "TrustedLaunch"}),
            "SecurityTypeNeedsGeneration2",
        ),
        (
            "arm64-on-v1",
            vec![("os.vhd", &gen1)],
            json!({"hyperVGeneration": "V1", "architecture": "Arm64"}),
            "Arm64NeedsGeneration2",
        ),
        (
            "shallow-many",
            vec![("os.vhd", &arm)],
            json!({"replicationMode": "Shallow", "targetRegions": [{"name": "westeurope"}, {"name": "northeurope"}]}),
            "ShallowReplicationOneRegion",
        ),
        (
            "duplicate-lun",
            vec![("os.vhd", &arm), ("d.vhd", &data)],
            json!({"dataDisks": [{"vhd": "d.vhd", "lun": 1}, {"vhd": "d.vhd", "lun": 1}]}),
            "DataDiskLunDuplicate",
        ),
        (
            "dynamic-data-disk",
            vec![("os.vhd", &arm), ("dyn.vhd", &dynamic)],
            json!({"dataDisks": [{"vhd": "dyn.vhd", "lun": 0}]}),
            "VhdIsDynamic",
        ),
        (
            "unknown-feature",
            vec![("os.vhd", &arm)],
            json!({"securityType": "SuperSecure"}),
            "ManifestInvalid",
        ),
        (
            "eol-in-past",
            vec![("os.vhd", &arm)],
            json!({"endOfLifeDate": "2020-01-01T00:00:00Z"}),
            "EndOfLifeInPast",
        ),
        // Tags Azure would refuse on the version (the local ARM refuses them as Azure does).
        (
            "tag-name-with-slash",
            vec![("os.vhd", &arm)],
            json!({"tags": {"k8s.io/role": "golden"}}),
            "TagsInvalid",
        ),
        (
            "too-many-tags",
            vec![("os.vhd", &arm)],
            json!({"tags": (0..45).map(|i| (format!("t{i}"), json!("v"))).collect::<serde_json::Map<_, _>>()}),
            "TagsInvalid",
        ),
        (
            "long-definition-tag",
            vec![("os.vhd", &arm)],
            json!({"definition": {"tags": {"notes": "n".repeat(300)}}}),
            "TagsInvalid",
        ),
    ];
    for (folder, files, extra, _) in &cases {
        let manifest = merged(base("os.vhd", folder), extra.clone());
        s.upload(folder, files, manifest).await;
    }
    let rejected = s
        .wait_for_n("io.galleon.vhd.rejected.v1", cases.len(), 180)
        .await;
    let storage = s.cloud.storage().expect("storage");
    for (folder, files, _, code) in &cases {
        let found = rejected.iter().find(|e| {
            e["subject"]
                .as_str()
                .is_some_and(|s| s.contains(&format!("/{folder}/")))
        });
        let Some(e) = found else {
            panic!("no vhd.rejected for {folder}: {rejected:#?}");
        };
        assert_eq!(e["data"]["reason"]["code"], *code, "{folder}: {e:#}");
        assert!(
            !e["data"]["reason"]["fix"].as_str().unwrap_or("").is_empty(),
            "{folder}: a rejection names its fix"
        );
        for (name, bytes) in files {
            let now = storage
                .download("images", &format!("{folder}/{name}"))
                .await
                .expect("read back");
            assert!(
                now.as_deref() == Some(*bytes),
                "{folder}/{name} was changed or deleted by the rejection"
            );
        }
    }
    // Past the bare-VHD settle time (2 s here): a VHD whose folder holds a manifest that could not be read
    // (the unknown feature) waits for that manifest; it is not published bare meanwhile.
    tokio::time::sleep(std::time::Duration::from_secs(8)).await;
    let writes: Vec<String> = s
        .cloud
        .arm
        .request_log()
        .into_iter()
        .filter(|e| e.method != "GET")
        .map(|e| format!("{} {}", e.method, e.path))
        .collect();
    assert!(
        writes.is_empty(),
        "no ARM write for rejected input: {writes:#?}"
    );
    s.stop().await;
}

/// An image definition that exists keeps its immutable properties: a manifest stating another
/// architecture and another identifier is one `vhd.rejected` naming both (with both values and the
/// fix), before any ARM write, even publishing from a managed image (whose image CreateImage would make
/// first); the VHD stays as it was. The same disk for a new definition is accepted, with a note that its
/// architecture could not be checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_definition_is_not_contradicted_before_any_write() {
    let work = tempfile::tempdir().expect("dir");
    let s = start(&[("GALLEON_TARGET_REGIONS", "westeurope")]).await;
    let gallery = format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/galleries/{}",
        devcloud_arm::DEFAULT_SUBSCRIPTION_ID,
        devcloud::RESOURCE_GROUP,
        devcloud::GALLERY
    );
    let definition = format!("{gallery}/images/ubuntu-arm");
    let made = s
        .arm_put(
            &gallery,
            "2025-03-03",
            &json!({"location": "westeurope", "properties": {}}),
        )
        .await;
    assert!(made["_status"] == 200 || made["_status"] == 201, "{made}");
    let made = s
        .arm_put(
            &definition,
            "2025-03-03",
            &json!({"location": "westeurope", "properties": {"osType": "Linux", "osState": "Generalized",
                "hyperVGeneration": "V2", "architecture": "Arm64",
                "identifier": {"publisher": "contoso", "offer": "ubuntu-arm", "sku": "arm64"}}}),
        )
        .await;
    assert!(made["_status"] == 200 || made["_status"] == 201, "{made}");
    let before = s.cloud.arm.request_log().len();

    let disk = make_vhd(work.path(), "os.vhd", "fixed", "8M");
    let manifest = merged(
        base("os.vhd", "ubuntu-arm"),
        json!({"architecture": "x64", "publishFrom": "managedImage",
               "identifier": {"publisher": "contoso", "offer": "ubuntu-arm", "sku": "x64"}}),
    );
    s.upload("ubuntu-arm", &[("os.vhd", &disk)], manifest).await;
    let rejected = s.wait_for("io.galleon.vhd.rejected.v1", 120).await;
    let reason = &rejected["data"]["reason"];
    assert_eq!(reason["code"], "ImageDefinitionMismatch", "{rejected:#}");
    let message = reason["message"].as_str().unwrap_or_default();
    for part in [
        "architecture is Arm64 there, the manifest states x64",
        "identifier is contoso/ubuntu-arm/arm64 there, the manifest states contoso/ubuntu-arm/x64",
    ] {
        assert!(message.contains(part), "{part}: {message}");
    }
    let fix = reason["fix"].as_str().unwrap_or_default();
    assert!(
        fix.contains("new image definition name") && fix.contains("architecture Arm64"),
        "{fix}"
    );
    // Give a wrongly accepted VHD time to reach CreateImage (vhd.accepted is internal: subscribers do
    // not get it, so the writes and failures tell).
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let failed = s.receiver.received.of_type("io.galleon.step.failed.v1");
    assert!(failed.is_empty(), "{failed:#?}");
    let writes: Vec<String> = s
        .cloud
        .arm
        .request_log()
        .into_iter()
        .skip(before)
        .filter(|e| e.method != "GET")
        .map(|e| format!("{} {}", e.method, e.path))
        .collect();
    assert!(writes.is_empty(), "no ARM write: {writes:#?}");
    let now = s
        .cloud
        .storage()
        .expect("storage")
        .download("images", "ubuntu-arm/os.vhd")
        .await
        .expect("read back");
    assert!(now.as_deref() == Some(&disk[..]), "the VHD was changed");
    let kept = s.arm_get(&definition).await;
    assert_eq!(kept["properties"]["architecture"], "Arm64", "{kept:#}");

    // The same disk (no partition table, so no EFI System Partition to read a boot loader from) for a
    // new definition: accepted as declared, and vhd.accepted says the architecture was not checked.
    let manifest = merged(base("os.vhd", "blank-x64"), json!({"architecture": "x64"}));
    s.upload("blank-x64", &[("os.vhd", &disk)], manifest).await;
    let ready = s.wait_for_n("io.galleon.image.ready.v1", 1, 120).await;
    let Some(run) = ready.first().and_then(|e| e["correlationid"].as_str()) else {
        panic!(
            "blank-x64 did not get ready: {:#?}",
            s.receiver.received.all()
        );
    };
    // vhd.accepted is internal: the run's journal holds it.
    let journal = s
        .cloud
        .storage()
        .expect("storage")
        .download("galleon-state", &format!("journal/{run}.jsonl"))
        .await
        .expect("read the journal")
        .expect("the run has a journal");
    let accepted: Value = String::from_utf8_lossy(&journal)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|l| l["fact"].clone())
        .find(|f| f["type"] == "io.galleon.vhd.accepted.v1")
        .unwrap_or_else(|| panic!("no vhd.accepted in the journal of {run}"));
    let notes: Vec<&str> = accepted["data"]["notes"]
        .as_array()
        .map(|n| n.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(
        notes.iter().any(|n| n.contains(
            "Architecture x64 accepted as declared; could not check it: the disk has no EFI System Partition"
        )),
        "{notes:#?}"
    );
    s.stop().await;
}
