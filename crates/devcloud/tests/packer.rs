//! Packer's managed images as input, end to end on the local cloud: a managed image made outside galleon
//! (as Packer's azure-arm builder leaves it with managed_image_name) reaches image ready when a manifest
//! names it, or when it is tagged galleon-definition and its resource event arrives. It is checked
//! against the plan before any write, and never deleted.

mod common;

use common::*;
use serde_json::{Value, json};

const IMAGES_API: &str = "2025-04-01";

fn image_id(name: &str) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/images/{name}",
        devcloud_arm::DEFAULT_SUBSCRIPTION_ID,
        devcloud::RESOURCE_GROUP
    )
}

impl Scenario {
    /// A managed image as Packer makes it: from a real fixed VHD, outside the ingest containers, with
    /// `tags`; waits until it is made.
    async fn packer_image(&self, name: &str, tags: Value) -> String {
        let work = tempfile::tempdir().expect("dir");
        let storage = self.cloud.storage().expect("storage");
        storage.create_container("packer").await.expect("container");
        let vhd = make_vhd(work.path(), &format!("{name}.vhd"), "fixed", "32M");
        storage
            .upload_page_blob("packer", &format!("{name}.vhd"), &vhd)
            .await
            .expect("vhd");
        let id = image_id(name);
        let put = self
            .arm_put(
                &id,
                IMAGES_API,
                &json!({"location": devcloud::HOME_REGION, "tags": tags, "properties": {"hyperVGeneration": "V2",
                    "storageProfile": {"osDisk": {"osType": "Linux", "osState": "Generalized",
                        "blobUri": storage.url("packer", &format!("{name}.vhd"))}}}}),
            )
            .await;
        assert!(put["_status"] == 200 || put["_status"] == 201, "{put}");
        for _ in 0..100 {
            if self.arm_get(&id).await["properties"]["provisioningState"] == "Succeeded" {
                return id;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("the image {id} was not made");
    }

    async fn manifest_naming(&self, stem: &str, image: &str, extra: Value) {
        let mut m = json!({"managedImage": image, "imageDefinition": "ubuntu-packer", "osType": "Linux", "hyperVGeneration": "V2",
            "identifier": {"publisher": "contoso", "offer": "ubuntu-packer", "sku": "2404"}});
        if let (Some(m), Some(extra)) = (m.as_object_mut(), extra.as_object()) {
            m.extend(extra.clone());
        }
        self.cloud
            .storage()
            .expect("storage")
            .upload_block_blob(
                "images",
                &format!("packer/{stem}.manifest.json"),
                m.to_string().as_bytes(),
            )
            .await
            .expect("manifest");
    }
}

#[tokio::test]
async fn a_manifest_naming_a_packer_image_ends_as_image_ready_and_the_image_stays() {
    let s = start(&[]).await;
    let image = s
        .packer_image("ubuntu-2404-20261201", json!({"builder": "packer"}))
        .await;
    s.manifest_naming("ubuntu", &image, json!({"version": "1.0.0"}))
        .await;
    let ready = s.wait_for("io.galleon.image.ready.v1", 120).await;
    let d = &ready["data"];
    assert_eq!(d["sourceImageId"], json!(image), "{d}");
    assert!(d["sourceVhd"].is_null(), "{d}");
    assert!(
        d["versionId"]
            .as_str()
            .is_some_and(|v| v.ends_with("/images/ubuntu-packer/versions/1.0.0"))
    );
    let version = s.arm_get(d["versionId"].as_str().unwrap_or_default()).await;
    assert_eq!(
        version["properties"]["storageProfile"]["source"]["id"],
        json!(image),
        "made from the image: {version}"
    );
    assert_eq!(version["tags"]["galleon-source"], json!(image));
    assert_eq!(
        s.arm_get(&image).await["_status"],
        200,
        "galleon never deletes an image it did not make"
    );
    assert_catalog_valid(&s.receiver.received.all());
    s.assert_role_allows_what_galleon_did().await;
    s.stop().await;
}

#[tokio::test]
async fn an_image_that_is_not_what_the_manifest_says_is_rejected_before_any_write() {
    let s = start(&[]).await;
    let image = s.packer_image("win-or-not", json!({})).await;
    s.manifest_naming("wrong", &image, json!({"osType": "Windows"}))
        .await;
    let rejected = s.wait_for("io.galleon.vhd.rejected.v1", 60).await;
    assert_eq!(
        rejected["data"]["reason"]["code"], "ManagedImageMismatch",
        "{rejected}"
    );
    assert!(
        rejected["data"]["reason"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("osType Linux")),
        "{rejected}"
    );
    let definition = format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/galleries/{}/images/ubuntu-packer",
        devcloud_arm::DEFAULT_SUBSCRIPTION_ID,
        devcloud::RESOURCE_GROUP,
        devcloud::GALLERY
    );
    assert_eq!(
        s.arm_get(&definition).await["_status"],
        404,
        "nothing was written"
    );
    assert_eq!(s.arm_get(&image).await["_status"], 200);
    s.stop().await;
}

#[tokio::test]
async fn a_tagged_image_announced_by_its_resource_event_ends_as_image_ready() {
    let s = start(&[]).await;
    // Untagged: galleon leaves it alone.
    s.packer_image("scratch", json!({"builder": "packer"}))
        .await;
    let image = s
        .packer_image(
            "ubuntu-2404-tagged",
            json!({"galleon-definition": "ubuntu-events", "galleon-version": "2026.12.1", "galleon-regions": "westeurope,northeurope"}),
        )
        .await;
    let ready = s.wait_for("io.galleon.image.ready.v1", 120).await;
    let d = &ready["data"];
    assert_eq!(d["sourceImageId"], json!(image), "{d}");
    assert!(
        d["versionId"]
            .as_str()
            .is_some_and(|v| v.ends_with("/images/ubuntu-events/versions/2026.12.1")),
        "{d}"
    );
    let regions = region_names(d);
    assert_eq!(regions, ["westeurope", "northeurope"]);
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(
        distinct(&s.receiver.received.of_type("io.galleon.image.ready.v1")).len(),
        1,
        "only the tagged image"
    );
    assert_eq!(s.arm_get(&image).await["_status"], 200, "never deleted");
    assert_catalog_valid(&s.receiver.received.all());
    s.stop().await;
}
