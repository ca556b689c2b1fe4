//! IngestImage: a managed image written in a watched resource group (Event Grid's
//! `Microsoft.Resources.ResourceWriteSuccess` for `Microsoft.Compute/images/write`) and tagged
//! `galleon-definition=<image definition>` is published like a manifest naming it: Packer's
//! `managed_image_name` output reaches the gallery without a VHD export. Images without the tag, and
//! galleon's own intermediate images, are left alone.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::{
    on_event::{self, EventTry},
    step::{Ctx, StepError},
};
use crate::{
    azure::arm,
    domain::manifest::{Manifest, is_managed_image_id},
    events::{Cause, PublishFrom},
    host::{Failure, Invocation, Output, Trigger},
};

pub const NAME: &str = "IngestImage";
pub const TRIGGER: &str = "event";
pub const EVENT_TYPE: &str = "Microsoft.Resources.ResourceWriteSuccess";
pub const OPERATION: &str = "Microsoft.Compute/images/write";
/// The tag that asks galleon to publish an image, naming its image definition.
pub const DEFINITION_TAG: &str = "galleon-definition";

/// The manifest an image's tags make: `galleon-definition`, and optionally `galleon-version`,
/// `galleon-gallery`, `galleon-regions` (comma-separated) and `galleon-os-state`; the OS type and
/// generation are the image's own. `None` when the image does not ask to be published.
pub fn manifest_from_tags(image: &Value) -> Option<Result<Manifest, crate::events::Reason>> {
    let tag = |name: &str| {
        image
            .pointer(&format!("/tags/{name}"))
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let definition = tag(DEFINITION_TAG)?;
    let at = |p: &str| image.pointer(p).and_then(Value::as_str).unwrap_or_default();
    let mut m = Map::new();
    m.insert("managedImage".into(), at("/id").into());
    m.insert("imageDefinition".into(), definition.into());
    m.insert(
        "osType".into(),
        at("/properties/storageProfile/osDisk/osType").into(),
    );
    let generation = match at("/properties/hyperVGeneration") {
        "" => "V1",
        g => g,
    };
    m.insert("hyperVGeneration".into(), generation.into());
    let state = tag("galleon-os-state").unwrap_or(at("/properties/storageProfile/osDisk/osState"));
    if !state.is_empty() {
        m.insert("osState".into(), state.into());
    }
    for (tag_name, field) in [
        ("galleon-version", "version"),
        ("galleon-gallery", "gallery"),
    ] {
        if let Some(v) = tag(tag_name) {
            m.insert(field.into(), v.into());
        }
    }
    if let Some(regions) = tag("galleon-regions") {
        let list: Vec<Value> = regions
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(|r| serde_json::json!({"name": r}))
            .collect();
        m.insert("targetRegions".into(), Value::Array(list));
    }
    Some(Manifest::parse(
        Value::Object(m).to_string().as_bytes(),
        "the image's galleon-* tags",
    ))
}

pub async fn run(
    invocation: Invocation,
    ctx: Arc<Ctx>,
    tried: EventTry,
) -> Result<Output, Failure> {
    let Trigger::EventGrid(event) = invocation.trigger else {
        return Err(Failure::new(
            "IngestImage is bound to an Event Grid trigger",
        ));
    };
    let operation = event
        .data
        .get("operationName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let image_id = event
        .data
        .get("resourceUri")
        .and_then(Value::as_str)
        .or(event.subject.as_deref())
        .unwrap_or_default()
        .to_owned();
    if event.event_type != EVENT_TYPE
        || !operation.eq_ignore_ascii_case(OPERATION)
        || !is_managed_image_id(&image_id)
    {
        tracing::info!(event_type = %event.event_type, operation, "not a managed image write; ignored (check the Event Grid subscription's filter)");
        return Ok(Output::default());
    }
    let cause = Cause::root(
        &event.id,
        invocation
            .traceparent
            .clone()
            .or_else(|| Some(crate::events::new_traceparent(&event.id))),
    );
    let work = async {
        let Some(image) = ctx.arm.get(&image_id, arm::COMPUTE_IMAGES_API, &[]).await? else {
            tracing::info!(image = %image_id, "the image is gone already; nothing to do");
            return Ok(Vec::new());
        };
        if image
            .pointer(&format!("/tags/{}", super::owned::RUN_TAG))
            .is_some()
        {
            tracing::info!(image = %image_id, "galleon's own image; left alone");
            return Ok(Vec::new());
        }
        let manifest = match manifest_from_tags(&image) {
            None => {
                tracing::info!(image = %image_id, "no {DEFINITION_TAG} tag; not for galleon");
                return Ok(Vec::new());
            }
            Some(Err(reason)) => {
                return Err(StepError::failed(
                    reason.code,
                    reason.message,
                    Some(image_id.clone()),
                    format!(
                        "Fix the image's galleon-* tags ({}), then tag it again.",
                        reason.fix
                    ),
                ));
            }
            Some(Ok(m)) => m,
        };
        let mut plan = manifest
            .plan(
                &ctx.config.policy,
                "",
                &image_id,
                event.time.unwrap_or_else(chrono::Utc::now),
            )
            .map_err(|r| StepError::failed(r.code, r.message, Some(image_id.clone()), r.fix))?;
        plan.publish_from = PublishFrom::ManagedImage;
        super::foreign_image::publish(&ctx, &cause, &image_id, plan).await
    };
    let outcome = crate::azure::in_run(cause.correlation_id.clone(), work).await;
    on_event::finish(&ctx, NAME, &cause, &event, tried, outcome).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID: &str = "/subscriptions/6d3f8b1e-0c4a-4d2b-9e57-1a2b3c4d5e6f/resourceGroups/rg-packer/providers/Microsoft.Compute/images/win2022-20261201";

    fn image(tags: Value) -> Value {
        json!({"id": ID, "location": "westeurope", "tags": tags, "properties": {"hyperVGeneration": "V2",
            "storageProfile": {"osDisk": {"osType": "Windows", "osState": "Generalized"}}}})
    }

    #[test]
    fn an_images_tags_make_its_manifest() {
        assert!(
            manifest_from_tags(&image(json!({"owner": "packer"}))).is_none(),
            "no tag: not for galleon"
        );
        let m = manifest_from_tags(&image(
            json!({"galleon-definition": "win2022", "galleon-version": "2026.12.1",
            "galleon-regions": "westeurope, northeurope"}),
        ))
        .expect("asks")
        .expect("valid");
        assert_eq!(m.managed_image.as_deref(), Some(ID));
        assert_eq!(m.image_definition, "win2022");
        assert_eq!(m.os_type, crate::events::OsType::Windows);
        assert_eq!(m.hyper_v_generation, crate::events::HyperVGeneration::V2);
        assert_eq!(m.version.as_deref(), Some("2026.12.1"));
        assert_eq!(m.target_regions.map(|r| r.len()), Some(2));
        let bad = manifest_from_tags(&image(
            json!({"galleon-definition": "win2022", "galleon-os-state": "Frozen"}),
        ))
        .expect("asks");
        assert!(bad.is_err_and(|r| r.code == "ManifestInvalid"));
    }
}
