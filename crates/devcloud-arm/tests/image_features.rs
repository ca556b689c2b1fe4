//! Image features on gallery definitions and versions, as strict as Azure: feature values,
//! generation V2 for Trusted Launch / confidential VMs / Arm64, immutable architecture and
//! features, shallow replication only in the source region, disk encryption set ids, data disk
//! LUNs; and the descriptive properties come back as sent.

mod common;

use common::{Env, SUB};
use devcloud_arm::ArmConfig;
use reqwest::Method;
use serde_json::{Value, json};

const G: &str = "api-version=2025-03-03";

async fn env_with_gallery() -> (Env, String) {
    let env = Env::start(false, ArmConfig::fast()).await;
    let g = format!(
        "{}/providers/Microsoft.Compute/galleries/gal",
        env.rg_path("rg")
    );
    env.ok(
        Method::PUT,
        &format!("{g}?{G}"),
        Some(json!({"location": "westeurope"})),
    )
    .await;
    (env, g)
}

fn definition(sku: &str, extra: Value) -> Value {
    let mut p = json!({"osType": "Linux", "osState": "Generalized",
        "identifier": {"publisher": "p", "offer": "o", "sku": sku}});
    for (k, v) in extra.as_object().into_iter().flatten() {
        p[k] = v.clone();
    }
    json!({"location": "westeurope", "properties": p})
}

fn tl() -> Value {
    json!([{"name": "SecurityType", "value": "TrustedLaunch"}])
}

#[tokio::test]
async fn trusted_launch_confidential_vm_and_arm64_need_generation_2() {
    let (env, g) = env_with_gallery().await;
    let cases = [
        (
            "tl-v1",
            json!({"hyperVGeneration": "V1", "features": tl()}),
            "'TrustedLaunch'",
        ),
        // Without hyperVGeneration the definition is V1 (Azure's default).
        ("tl-default", json!({"features": tl()}), "'TrustedLaunch'"),
        (
            "cvm-v1",
            json!({"hyperVGeneration": "V1", "features": [{"name": "SecurityType", "value": "ConfidentialVmSupported"}]}),
            "'ConfidentialVmSupported'",
        ),
        (
            "arm-v1",
            json!({"hyperVGeneration": "V1", "architecture": "Arm64"}),
            "'Arm64'",
        ),
        ("arm-default", json!({"architecture": "Arm64"}), "'Arm64'"),
    ];
    for (name, extra, words) in cases {
        let r = env
            .call(
                Method::PUT,
                &format!("{g}/images/{name}?{G}"),
                Some(definition(name, extra)),
            )
            .await;
        r.expect(400, "InvalidParameter");
        r.expect_message(words);
        r.expect_message("generation V2");
        assert_eq!(
            r.body["error"]["target"], "galleryImage.properties.hyperVGeneration",
            "{name}"
        );
    }
    for (name, extra) in [
        ("tl-v2", json!({"hyperVGeneration": "V2", "features": tl()})),
        (
            "cvm-v2",
            json!({"hyperVGeneration": "V2", "features": [{"name": "SecurityType", "value": "ConfidentialVM"}]}),
        ),
        (
            "arm-v2",
            json!({"hyperVGeneration": "V2", "architecture": "Arm64", "features": tl()}),
        ),
        (
            "x64-v1",
            json!({"hyperVGeneration": "V1", "architecture": "x64"}),
        ),
    ] {
        env.ok(
            Method::PUT,
            &format!("{g}/images/{name}?{G}"),
            Some(definition(name, extra)),
        )
        .await;
    }
}

#[tokio::test]
async fn feature_values_are_checked() {
    let (env, g) = env_with_gallery().await;
    let bad = [
        (
            json!([{"name": "SecurityType", "value": "TrustedLaunchV2"}]),
            "'TrustedLaunchV2'",
        ),
        (
            json!([{"name": "DiskControllerTypes", "value": "SCSI, IDE"}]),
            "'IDE'",
        ),
        (
            json!([{"name": "DiskControllerTypes", "value": "NVMe, NVMe"}]),
            "repeats",
        ),
        (
            json!([{"name": "IsAcceleratedNetworkSupported", "value": "Yes"}]),
            "'Yes'",
        ),
        (
            json!([{"name": "IsHibernateSupported", "value": "1"}]),
            "'1'",
        ),
        (
            json!([{"name": "SecurityType", "value": "TrustedLaunch"}, {"name": "securitytype", "value": "ConfidentialVM"}]),
            "more than once",
        ),
        (json!([{"name": "SecurityType"}]), "value"),
        (json!({"SecurityType": "TrustedLaunch"}), "list"),
    ];
    for (i, (features, words)) in bad.into_iter().enumerate() {
        let r = env
            .call(
                Method::PUT,
                &format!("{g}/images/bad{i}?{G}"),
                Some(definition(
                    &format!("bad{i}"),
                    json!({"hyperVGeneration": "V2", "features": features}),
                )),
            )
            .await;
        r.expect(400, "InvalidParameter");
        r.expect_message(words);
    }
    let good = json!([
        {"name": "SecurityType", "value": "TrustedLaunchAndConfidentialVmSupported"},
        {"name": "DiskControllerTypes", "value": "SCSI, NVMe"},
        {"name": "IsAcceleratedNetworkSupported", "value": "True"},
        {"name": "IsHibernateSupported", "value": "false"}
    ]);
    let r = env
        .ok(
            Method::PUT,
            &format!("{g}/images/good?{G}"),
            Some(definition(
                "good",
                json!({"hyperVGeneration": "V2", "features": good}),
            )),
        )
        .await;
    assert_eq!(r.body["properties"]["features"], good);
}

#[tokio::test]
async fn architecture_and_features_cannot_change_and_descriptive_properties_are_echoed() {
    let (env, g) = env_with_gallery().await;
    let d = format!("{g}/images/arm?{G}");
    let features = json!([
        {"name": "SecurityType", "value": "TrustedLaunch"},
        {"name": "DiskControllerTypes", "value": "SCSI, NVMe"}
    ]);
    let described = json!({
        "hyperVGeneration": "V2", "architecture": "Arm64", "features": features,
        "description": "Ubuntu for Arm", "eula": "https://example.com/eula",
        "privacyStatementUri": "https://example.com/privacy",
        "releaseNoteUri": "https://example.com/notes",
        "endOfLifeDate": "2030-01-01T00:00:00+00:00",
        "recommended": {"vCPUs": {"min": 2, "max": 16}, "memory": {"min": 4, "max": 64}},
        "disallowed": {"diskTypes": ["Standard_LRS"]},
        "purchasePlan": {"name": "plan", "publisher": "pub", "product": "prod"}
    });
    env.ok(Method::PUT, &d, Some(definition("arm", described.clone())))
        .await;
    let got = env.ok(Method::GET, &d, None).await.body;
    for (k, v) in described.as_object().into_iter().flatten() {
        assert_eq!(&got["properties"][k], v, "{k}");
    }

    let mut x64 = described.clone();
    x64["architecture"] = json!("x64");
    let r = env
        .call(Method::PUT, &d, Some(definition("arm", x64)))
        .await;
    r.expect(409, "PropertyChangeNotAllowed");
    r.expect_message("galleryImage.properties.architecture");

    let mut other = described.clone();
    other["features"] = json!([{"name": "SecurityType", "value": "TrustedLaunchSupported"}]);
    let r = env
        .call(Method::PUT, &d, Some(definition("arm", other.clone())))
        .await;
    r.expect(409, "PropertyChangeNotAllowed");
    r.expect_message("galleryImage.properties.features");
    let r = env
        .call(
            Method::PATCH,
            &d,
            Some(json!({"properties": {"features": [{"name": "IsHibernateSupported", "value": "True"}]}})),
        )
        .await;
    r.expect(409, "PropertyChangeNotAllowed");

    // The same features in another order are no change; a mutable property is.
    let mut reordered = described.clone();
    reordered["features"] = json!([
        {"name": "DiskControllerTypes", "value": "SCSI, NVMe"},
        {"name": "SecurityType", "value": "TrustedLaunch"}
    ]);
    reordered["description"] = json!("changed");
    reordered["endOfLifeDate"] = json!("2031-01-01T00:00:00+00:00");
    env.ok(Method::PUT, &d, Some(definition("arm", reordered)))
        .await;
    let got = env.ok(Method::GET, &d, None).await.body;
    assert_eq!(got["properties"]["description"], "changed");
    assert_eq!(
        got["properties"]["endOfLifeDate"],
        "2031-01-01T00:00:00+00:00"
    );

    // Azure's documented way to change features: allowUpdateImage (GalleryImage_UpdateFeatures).
    other["allowUpdateImage"] = json!(true);
    env.ok(Method::PUT, &d, Some(definition("arm", other)))
        .await;
    let got = env.ok(Method::GET, &d, None).await.body;
    assert_eq!(
        got["properties"]["features"][0]["value"],
        "TrustedLaunchSupported"
    );
    assert!(got["properties"]["allowUpdateImage"].is_null());
}

const ACCOUNT: &str = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct";

fn des(name: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/diskEncryptionSets/{name}"
    )
}

fn vhd_version(regions: Value, mode: Option<&str>, data: Value) -> Value {
    let mut pp = json!({"targetRegions": regions, "endOfLifeDate": "2030-06-01T00:00:00+00:00"});
    if let Some(m) = mode {
        pp["replicationMode"] = json!(m);
    }
    json!({"location": "westeurope", "properties": {
    "publishingProfile": pp,
    "storageProfile": {
        "osDiskImage": {"source": {"uri": "https://acct.blob.core.windows.net/vhds/os.vhd", "storageAccountId": ACCOUNT}},
        "dataDiskImages": data
    }}})
}

fn data_disk(lun: i64, blob: &str) -> Value {
    json!({"lun": lun, "source": {"uri": format!("https://acct.blob.core.windows.net/vhds/{blob}"), "storageAccountId": ACCOUNT}})
}

async fn definition_v2(env: &Env, g: &str) -> String {
    let d = format!("{g}/images/def");
    env.ok(
        Method::PUT,
        &format!("{d}?{G}"),
        Some(definition(
            "def",
            json!({"hyperVGeneration": "V2", "features": tl()}),
        )),
    )
    .await;
    d
}

#[tokio::test]
async fn shallow_replication_only_in_the_source_region() {
    let (env, g) = env_with_gallery().await;
    let d = definition_v2(&env, &g).await;
    let two = json!([{"name": "westeurope"}, {"name": "northeurope"}]);
    let r = env
        .call(
            Method::PUT,
            &format!("{d}/versions/1.0.0?{G}"),
            Some(vhd_version(two.clone(), Some("Shallow"), json!([]))),
        )
        .await;
    r.expect(400, "InvalidParameter");
    r.expect_message("'Shallow'");
    r.expect_message("northeurope");
    let other = json!([{"name": "North Europe"}]);
    let r = env
        .call(
            Method::PUT,
            &format!("{d}/versions/1.0.1?{G}"),
            Some(vhd_version(other, Some("shallow"), json!([]))),
        )
        .await;
    r.expect(400, "InvalidParameter");
    let v = env
        .ok(
            Method::PUT,
            &format!("{d}/versions/1.0.2?{G}"),
            Some(vhd_version(
                json!([{"name": "West Europe"}]),
                Some("Shallow"),
                json!([]),
            )),
        )
        .await;
    assert_eq!(
        v.body["properties"]["publishingProfile"]["replicationMode"],
        "Shallow"
    );
    assert_eq!(
        v.body["properties"]["publishingProfile"]["endOfLifeDate"],
        "2030-06-01T00:00:00+00:00"
    );
    // Adding a region to a shallow version later is refused the same way.
    let r = env
        .call(
            Method::PATCH,
            &format!("{d}/versions/1.0.2?{G}"),
            Some(json!({"properties": {"publishingProfile": {"targetRegions": two.clone()}}})),
        )
        .await;
    r.expect(400, "InvalidParameter");
    r.expect_message("'Shallow'");
    env.ok(
        Method::PUT,
        &format!("{d}/versions/1.0.3?{G}"),
        Some(vhd_version(two, Some("Full"), json!([]))),
    )
    .await;
}

#[tokio::test]
async fn data_disk_luns_are_unique_and_encryption_sets_are_arm_ids() {
    let (env, g) = env_with_gallery().await;
    let d = definition_v2(&env, &g).await;
    let put = |v: &str, body: Value| {
        let url = format!("{d}/versions/{v}?{G}");
        let env = &env;
        async move { env.call(Method::PUT, &url, Some(body)).await }
    };
    let here = |enc: Value| json!([{"name": "westeurope", "encryption": enc}]);

    let r = put(
        "1.0.0",
        vhd_version(
            here(Value::Null),
            None,
            json!([data_disk(1, "a.vhd"), data_disk(1, "b.vhd")]),
        ),
    )
    .await;
    r.expect(400, "InvalidParameter");
    r.expect_message("LUN 1");
    let r = put(
        "1.0.0",
        vhd_version(
            here(Value::Null),
            None,
            json!([{"lun": 0, "source": {"uri": "https://acct.blob.core.windows.net/vhds/d.vhd"}}]),
        ),
    )
    .await;
    r.expect(400, "InvalidParameter");
    r.expect_message("storageAccountId");

    let bad_ids = [
        (
            json!({"osDiskImage": {"diskEncryptionSetId": "my-des"}}),
            "LinkedInvalidPropertyId",
        ),
        (
            json!({"osDiskImage": {"diskEncryptionSetId": format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv")}}),
            "InvalidParameter",
        ),
        (
            json!({"osDiskImage": {"diskEncryptionSetId": "/subscriptions/not-a-guid/resourceGroups/rg/providers/Microsoft.Compute/diskEncryptionSets/des"}}),
            "InvalidParameter",
        ),
        (
            json!({"osDiskImage": {"securityProfile": {"secureVMDiskEncryptionSetId": "des", "confidentialVMEncryptionType": "EncryptedWithCmk"}}}),
            "LinkedInvalidPropertyId",
        ),
        (
            json!({"osDiskImage": {"securityProfile": {"confidentialVMEncryptionType": "Encrypted"}}}),
            "InvalidParameter",
        ),
        (
            json!({"dataDiskImages": [{"lun": 0, "diskEncryptionSetId": "x"}]}),
            "LinkedInvalidPropertyId",
        ),
        (
            json!({"dataDiskImages": [{"lun": 0, "diskEncryptionSetId": des("d")}, {"lun": 0, "diskEncryptionSetId": des("e")}]}),
            "InvalidParameter",
        ),
    ];
    for (enc, code) in bad_ids {
        let r = put(
            "1.0.0",
            vhd_version(here(enc.clone()), None, json!([data_disk(0, "d.vhd")])),
        )
        .await;
        r.expect(400, code);
        if code == "LinkedInvalidPropertyId" {
            r.expect_message("Expect fully qualified resource Id");
            r.expect_message("properties.publishingProfile.targetRegions[0].encryption");
        }
    }

    let enc = json!({
        "osDiskImage": {"diskEncryptionSetId": des("os"),
            "securityProfile": {"confidentialVMEncryptionType": "EncryptedWithCmk", "secureVMDiskEncryptionSetId": des("cvm")}},
        "dataDiskImages": [{"lun": 0, "diskEncryptionSetId": des("data")}]
    });
    let r = put(
        "1.0.0",
        vhd_version(
            here(enc.clone()),
            None,
            json!([data_disk(0, "d.vhd"), data_disk(3, "e.vhd")]),
        ),
    )
    .await;
    assert!(r.status < 300, "{}", r.body);
    let v = env
        .ok(Method::GET, &format!("{d}/versions/1.0.0?{G}"), None)
        .await
        .body;
    assert_eq!(
        v["properties"]["publishingProfile"]["targetRegions"][0]["encryption"],
        enc
    );
    let disks = &v["properties"]["storageProfile"]["dataDiskImages"];
    assert_eq!(disks[0]["lun"], 0);
    assert_eq!(disks[1]["lun"], 3);
    assert_eq!(disks[1]["hostCaching"], "None");
    // The data disk layout cannot change afterwards.
    let r = env
        .call(
            Method::PUT,
            &format!("{d}/versions/1.0.0?{G}"),
            Some(vhd_version(
                here(enc),
                None,
                json!([data_disk(0, "d.vhd"), data_disk(4, "e.vhd")]),
            )),
        )
        .await;
    r.expect(409, "PropertyChangeNotAllowed");
    r.expect_message("dataDiskImages");
}

/// Data disk VHDs go through the same storage check as the OS disk: a dynamic one is refused, a
/// fixed one gets its size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_disk_vhds_are_checked_in_storage() {
    let env = Env::start(true, ArmConfig::fast()).await;
    env.create_group("rg-ingest").await;
    let g = format!(
        "{}/providers/Microsoft.Compute/galleries/gal",
        env.rg_path("rg")
    );
    env.ok(
        Method::PUT,
        &format!("{g}?{G}"),
        Some(json!({"location": "westeurope"})),
    )
    .await;
    let d = definition_v2(&env, &g).await;
    let os = env.upload_vhd("vhds", "os.vhd", "fixed", "8M").await;
    let fixed = env.upload_vhd("vhds", "data.vhd", "fixed", "16M").await;
    let dynamic = env
        .upload_vhd("vhds", "data-dynamic.vhd", "dynamic", "16M")
        .await;
    let account = format!(
        "/subscriptions/{SUB}/resourceGroups/rg-ingest/providers/Microsoft.Storage/storageAccounts/devstoreaccount1"
    );
    let body = |data: &str| {
        json!({"location": "westeurope", "properties": {
        "publishingProfile": {"targetRegions": [{"name": "westeurope"}]},
        "storageProfile": {
            "osDiskImage": {"source": {"uri": os, "storageAccountId": account}},
            "dataDiskImages": [{"lun": 2, "source": {"uri": data, "storageAccountId": account}}]
        }}})
    };
    let r = env
        .call(
            Method::PUT,
            &format!("{d}/versions/1.0.0?{G}"),
            Some(body(&dynamic)),
        )
        .await;
    r.expect(400, "InvalidParameter");
    r.expect_message("fixed");
    assert_eq!(
        r.body["error"]["target"],
        "galleryImageVersion.properties.storageProfile.dataDiskImages.source.uri"
    );
    let v = env
        .ok(
            Method::PUT,
            &format!("{d}/versions/1.0.0?{G}"),
            Some(body(&fixed)),
        )
        .await;
    let disk = &v.body["properties"]["storageProfile"]["dataDiskImages"][0];
    assert_eq!(disk["lun"], 2);
    assert_eq!(disk["sizeInGB"], 1);
    assert_eq!(disk["hostCaching"], "None");
}
