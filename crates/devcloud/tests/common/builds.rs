//! The build tests' helpers: Image Builder templates and gallery definitions made as a platform team
//! makes them, galleon started with a builds file, the timer fired, and the facts about a template.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Scenario, distinct, start, with_status};

pub const AIB_API: &str = "2024-02-01";
pub const GALLERY_API: &str = "2025-03-03";

pub fn sub() -> &'static str {
    devcloud_arm::DEFAULT_SUBSCRIPTION_ID
}

pub fn template_id(name: &str) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.VirtualMachineImages/imageTemplates/{name}",
        sub(),
        devcloud::RESOURCE_GROUP
    )
}

pub fn definition_id(name: &str) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/galleries/{}/images/{name}",
        sub(),
        devcloud::RESOURCE_GROUP,
        devcloud::GALLERY
    )
}

pub fn ubuntu() -> Value {
    json!({"type": "PlatformImage", "publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"})
}

/// A template entry of the builds file.
pub fn entry(name: &str, extra: Value) -> Value {
    let mut e = json!({"templateId": template_id(name)});
    if let (Some(e), Some(extra)) = (e.as_object_mut(), extra.as_object()) {
        e.extend(extra.clone());
    }
    e
}

/// Starts the local cloud with galleon configured by a builds file holding `entries`.
pub async fn start_building(entries: Vec<Value>) -> (Scenario, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("builds.json");
    std::fs::write(&file, json!({"templates": entries}).to_string()).expect("builds file");
    let path = file.display().to_string();
    let s = start(&[("GALLEON_BUILDS_FILE", path.as_str())]).await;
    (s, dir)
}

impl Scenario {
    pub async fn arm_call(
        &self,
        method: reqwest::Method,
        path: &str,
        api: &str,
        body: Option<Value>,
    ) -> Value {
        let token = self.cloud.identity.issue("https://management.azure.com");
        let mut request = self
            .cloud
            .client()
            .expect("client")
            .request(
                method,
                format!("{}{path}?api-version={api}", self.cloud.arm.base_url),
            )
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        with_status(request.send().await.expect("ARM answers")).await
    }

    /// Waits until the resource's provisioningState is Succeeded.
    pub async fn settled(&self, id: &str, api: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = self.arm_call(reqwest::Method::GET, id, api, None).await;
            if r["properties"]["provisioningState"] == "Succeeded" {
                return r;
            }
            assert!(Instant::now() < deadline, "{id} did not settle: {r}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// An Image Builder template, as a platform team makes it (az image builder create).
    pub async fn template(
        &self,
        name: &str,
        source: Value,
        distribute: Value,
        timeout_minutes: u32,
    ) {
        let id = template_id(name);
        let put = self
            .arm_call(
                reqwest::Method::PUT,
                &id,
                AIB_API,
                Some(json!({"location": devcloud::HOME_REGION, "identity": {"type": "None"}, "properties": {
                    "source": source,
                    "customize": [{"type": "Shell", "name": "patch", "inline": ["apt-get -y upgrade"]}],
                    "distribute": distribute,
                    "vmProfile": {"vmSize": "Standard_D2ds_v5", "osDiskSizeGB": 0},
                    "buildTimeoutInMinutes": timeout_minutes}})),
            )
            .await;
        assert!(put["_status"] == 200 || put["_status"] == 201, "{put}");
        self.settled(&id, AIB_API).await;
    }

    /// The gallery and an image definition a SharedImage distribution publishes into.
    pub async fn gallery_definition(&self, name: &str) {
        let gallery = format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/galleries/{}",
            sub(),
            devcloud::RESOURCE_GROUP,
            devcloud::GALLERY
        );
        self.arm_put(
            &gallery,
            GALLERY_API,
            &json!({"location": devcloud::HOME_REGION, "properties": {}}),
        )
        .await;
        self.settled(&gallery, GALLERY_API).await;
        let def = definition_id(name);
        self.arm_put(
            &def,
            GALLERY_API,
            &json!({"location": devcloud::HOME_REGION, "properties": {"osType": "Linux", "osState": "Generalized",
                "hyperVGeneration": "V2", "identifier": {"publisher": "contoso", "offer": name, "sku": "monthly"}}}),
        )
        .await;
        self.settled(&def, GALLERY_API).await;
    }

    pub async fn fire_schedule(&self) {
        self.cloud
            .host
            .fire_timer("ScheduleBuilds")
            .await
            .expect("the timer fires");
    }

    /// Distinct public facts of `ty` about template `name`.
    pub fn about(&self, ty: &str, name: &str) -> Vec<Value> {
        distinct(&self.receiver.received.of_type(ty))
            .into_iter()
            .filter(|e| {
                e["data"]["templateId"] == template_id(name)
                    || e["data"]["build"]["templateId"] == template_id(name)
            })
            .collect()
    }

    /// Waits until `n` distinct facts of `ty` about template `name` arrived.
    pub async fn wait_about(&self, ty: &str, name: &str, n: usize, seconds: u64) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            let got = self.about(ty, name);
            if got.len() >= n {
                return got;
            }
            if Instant::now() > deadline {
                panic!(
                    "{} of {n} {ty} about {name} within {seconds} s; received {:#?}\nhost log (newest first):\n{}",
                    got.len(),
                    self.receiver.received.all(),
                    self.recent_host_log(80)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Writes a request blob for template `name`, as a pipeline that can only write to storage does.
    pub async fn request_build(&self, name: &str) {
        let storage = self.cloud.storage().expect("storage");
        // Made by the first request (409 ContainerAlreadyExists after).
        let _ = storage.create_container("build-requests").await;
        storage
            .upload_block_blob(
                "build-requests",
                &format!("{name}.json"),
                json!({"template": name}).to_string().as_bytes(),
            )
            .await
            .expect("request");
    }

    /// Ends a build test that went well: nothing failed or was rejected, every event is in the catalog,
    /// and galleon's role allowed every ARM call it made.
    pub async fn end_clean(self) {
        assert!(self.failures().is_empty(), "{:#?}", self.failures());
        super::assert_catalog_valid(&self.receiver.received.all());
        self.assert_role_allows_what_galleon_did().await;
        self.stop().await;
    }

    pub fn failures(&self) -> Vec<Value> {
        ["io.galleon.step.failed.v1", "io.galleon.vhd.rejected.v1"]
            .iter()
            .flat_map(|t| self.receiver.received.of_type(t))
            .collect()
    }
}
