//! IngestBuild: what an Image Builder run made goes on into the chain, without Image Builder's blocking
//! distribution. A VHD passes ingest's preflight like an upload (`vhd.accepted`); a managed image is
//! checked against the plan and goes to PublishVersion (`image.created`, never deleted: galleon did not
//! make it); a gallery version goes straight to ReplicateVersion (`image.version.published`), which
//! replicates it region by region.

use std::sync::Arc;

use serde_json::Value;

use super::{
    build_image::subject as template_subject,
    ingest::preflight,
    step::{Ctx, Emit, StepError, StepFuture},
};
use crate::{
    azure::{arm, blob::redact},
    domain::{builds, policy},
    events::{
        BuildFinished, BuildRef, Cause, Fact, FactType, PublishFrom, RunOutput, TargetRegion,
        VersionPublished,
    },
};

pub const NAME: &str = "IngestBuild";
pub const TRIGGER: &str = "fact";
pub const HANDLES: &[FactType] = &[FactType::BuildFinished];

/// `Microsoft.Storage/storageAccounts` api-version for finding a VHD output's account.
const STORAGE_API: &str = super::ingest::checks::STORAGE_API;

pub fn step(fact: Fact, ctx: Arc<Ctx>, _attempt: u32) -> StepFuture {
    Box::pin(async move { take(fact, &ctx).await })
}

/// What an output is, from its `distribute` type or else its artifact.
fn kind(output: &RunOutput) -> &str {
    match output.kind.as_deref() {
        Some(k) => k,
        None if output.artifact_uri.is_some() => "VHD",
        None if output
            .artifact_id
            .as_deref()
            .is_some_and(|id| id.contains("/galleries/")) =>
        {
            "SharedImage"
        }
        None => "ManagedImage",
    }
}

fn unusable(output: &RunOutput, why: impl Into<String>) -> StepError {
    StepError::failed(
        "BuildOutputUnusable",
        format!("run output '{}': {}", output.name, why.into()),
        output.artifact_id.clone().or(output.artifact_uri.clone()),
        "Look at the run output in Azure (az image builder show-runs); fix the template or the builds file's publish, then request the build again.",
    )
}

fn publish_invalid(template: &str, reason: crate::events::Reason) -> StepError {
    StepError::failed(
        "BuildPublishInvalid",
        format!("{template}: {}", reason.message),
        Some(template.to_owned()),
        format!(
            "Fix the template's publish in the builds file ({}), restart the function app, then request the build again.",
            reason.fix
        ),
    )
}

async fn take(fact: Fact, ctx: &Ctx) -> Result<Vec<Emit>, StepError> {
    let done: BuildFinished = fact.data().map_err(StepError::unreadable)?;
    if !done.has_outputs() {
        return Ok(Vec::new());
    }
    let entry = builds::find(&ctx.config.builds, &done.template_id).ok_or_else(|| {
        StepError::failed(
            "TemplateNotConfigured",
            format!("{} is not one of the templates galleon builds", done.template_id),
            Some(done.template_id.clone()),
            "Add the template to the builds file so galleon knows how to publish its outputs, then request the build again.",
        )
    })?;
    let mut emits = Vec::new();
    for output in &done.run_outputs {
        let cause = Cause {
            id: format!("{}:{}", fact.id(), output.name),
            correlation_id: fact
                .correlation_id()
                .unwrap_or_else(|| fact.id().to_owned()),
            traceparent: fact.traceparent(),
        };
        let build = BuildRef {
            template_id: done.template_id.clone(),
            run_output_name: output.name.clone(),
            run_started_at: done.started_at,
        };
        let more = match kind(output) {
            "VHD" => vhd(ctx, &cause, entry, output, build).await?,
            "ManagedImage" => image(ctx, &cause, entry, output, build, &done).await?,
            _ => version(ctx, &cause, entry, output, build).await?,
        };
        emits.extend(more);
    }
    Ok(emits)
}

/// The storage account of a VHD output: the builds file's, else the account of that name in the
/// template's subscription.
async fn storage_account(
    ctx: &Ctx,
    entry: &builds::TemplateEntry,
    url: &str,
) -> Result<Option<String>, StepError> {
    if let Some(id) = &entry.storage_account_id {
        return Ok(Some(id.clone()));
    }
    let Some(name) = account_name(url) else {
        return Ok(None);
    };
    let sub = entry
        .template_id
        .trim_start_matches('/')
        .split('/')
        .nth(1)
        .unwrap_or_default();
    let accounts = ctx
        .arm
        .list(
            &format!("/subscriptions/{sub}/providers/Microsoft.Storage/storageAccounts"),
            STORAGE_API,
            &[],
            20,
        )
        .await?;
    Ok(accounts
        .iter()
        .find(|a| {
            a.get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| n.eq_ignore_ascii_case(&name))
        })
        .and_then(|a| a.get("id").and_then(Value::as_str))
        .map(str::to_owned))
}

/// A blob URL's storage account: the host's first label (`acct.blob.core.windows.net`), or the first path
/// segment on an IP or local endpoint (`http://127.0.0.1:10000/devstoreaccount1/…`).
fn account_name(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    match parsed.host()? {
        url::Host::Domain(d) if d.contains('.') && !d.eq_ignore_ascii_case("localhost") => {
            d.split('.').next().map(str::to_owned)
        }
        _ => parsed
            .path_segments()?
            .next()
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
    }
}

async fn vhd(
    ctx: &Ctx,
    cause: &Cause,
    entry: &builds::TemplateEntry,
    output: &RunOutput,
    build: BuildRef,
) -> Result<Vec<Emit>, StepError> {
    let url = output
        .artifact_uri
        .as_deref()
        .ok_or_else(|| unusable(output, "a VHD output without an artifactUri"))?;
    if let Err(e) = ctx.blobs.check_url(url) {
        return Err(StepError::failed(
            "BuildOutputNotReadable",
            format!("run output '{}' is at {}: {e}", output.name, redact(url)),
            Some(redact(url)),
            "Distribute the VHD to a storage account galleon may read (the distribute entry's uri, in an account listed in GALLEON_STORAGE_ACCOUNTS, with Storage Blob Data Reader for galleon's identity), then request the build again.",
        ));
    }
    let vprops = ctx
        .blobs
        .properties(url)
        .await?
        .ok_or_else(|| unusable(output, format!("{} does not exist", redact(url))))?;
    let storage_account_id = storage_account(ctx, entry, url).await?.ok_or_else(|| {
        StepError::failed(
            "StorageAccountNotFound",
            format!("no storage account in the template's subscription holds {}", redact(url)),
            Some(redact(url)),
            "Give the template's entry in the builds file its \"storageAccountId\", then request the build again.",
        )
    })?;
    let disk = url.rsplit('/').next().unwrap_or("build.vhd");
    let manifest = builds::publish_manifest(entry, disk)
        .map_err(|r| publish_invalid(&entry.template_id, r))?
        .ok_or_else(|| unusable(output, "the builds file gives no publish for a VHD"))?;
    let created = vprops
        .created
        .or(vprops.last_modified)
        .unwrap_or_else(chrono::Utc::now);
    let mut plan = manifest
        .plan(&ctx.config.policy, &storage_account_id, url, created)
        .map_err(|r| publish_invalid(&entry.template_id, r))?;
    plan.build = Some(build);
    let subject = format!(
        "{}/runOutputs/{}",
        template_subject(&entry.template_id),
        output.name
    );
    tracing::info!(vhd = %redact(url), "a build's VHD goes through ingest's checks");
    preflight::check_vhd(
        ctx,
        cause,
        preflight::Candidate {
            subject: &subject,
            storage_account_id: &storage_account_id,
            vhd_url: url,
            vprops: &vprops,
            manifest: None,
            allow_generation_mismatch: manifest.allow_generation_mismatch,
            stated_identifier: manifest.identifier.as_ref(),
        },
        plan,
    )
    .await
}

async fn image(
    ctx: &Ctx,
    cause: &Cause,
    entry: &builds::TemplateEntry,
    output: &RunOutput,
    build: BuildRef,
    done: &BuildFinished,
) -> Result<Vec<Emit>, StepError> {
    let image_id = output
        .artifact_id
        .as_deref()
        .ok_or_else(|| unusable(output, "a managed image output without an artifactId"))?;
    let manifest = builds::publish_manifest(entry, "image.vhd")
        .map_err(|r| publish_invalid(&entry.template_id, r))?
        .ok_or_else(|| {
            unusable(
                output,
                "the builds file gives no publish for a managed image",
            )
        })?;
    let mut plan = manifest
        .plan(&ctx.config.policy, "", image_id, done.finished_at)
        .map_err(|r| publish_invalid(&entry.template_id, r))?;
    plan.publish_from = PublishFrom::ManagedImage;
    plan.build = Some(build);
    super::foreign_image::publish(ctx, cause, image_id, plan).await
}

/// The parts of a gallery image version id: subscription, group, gallery, definition, version.
fn version_parts(id: &str) -> Option<[String; 5]> {
    let p: Vec<&str> = id.trim_start_matches('/').split('/').collect();
    let fits = p.len() == 12
        && p[6].eq_ignore_ascii_case("galleries")
        && p[8].eq_ignore_ascii_case("images")
        && p[10].eq_ignore_ascii_case("versions")
        && p.iter().all(|s| !s.is_empty());
    fits.then(|| [p[1], p[3], p[7], p[9], p[11]].map(str::to_owned))
}

async fn version(
    ctx: &Ctx,
    cause: &Cause,
    entry: &builds::TemplateEntry,
    output: &RunOutput,
    build: BuildRef,
) -> Result<Vec<Emit>, StepError> {
    let version_id = output
        .artifact_id
        .as_deref()
        .ok_or_else(|| unusable(output, "a gallery image output without an artifactId"))?;
    let Some([sub, rg, gallery, definition, name]) = version_parts(version_id) else {
        return Err(unusable(
            output,
            format!("'{version_id}' is not a gallery image version id"),
        ));
    };
    let found = ctx
        .arm
        .get(version_id, arm::GALLERY_API, &[])
        .await?
        .ok_or_else(|| unusable(output, format!("{version_id} does not exist")))?;
    let definition_id = arm::ids::image_definition(&sub, &rg, &gallery, &definition);
    let def = ctx
        .arm
        .get(&definition_id, arm::GALLERY_API, &[])
        .await?
        .ok_or_else(|| unusable(output, format!("{definition_id} does not exist")))?;
    let text = |v: &Value, p: &str| {
        v.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    // The plan: the builds file's publish (target regions, replicas), the rest as the version is.
    let mut fields = entry.publish.clone().unwrap_or_default();
    for (key, value) in [
        ("subscriptionId", sub.clone()),
        ("resourceGroup", rg.clone()),
        ("gallery", gallery.clone()),
        ("imageDefinition", definition.clone()),
        ("version", name.clone()),
        ("osType", text(&def, "/properties/osType")),
        ("osState", text(&def, "/properties/osState")),
        (
            "hyperVGeneration",
            text(&def, "/properties/hyperVGeneration"),
        ),
    ] {
        if !value.is_empty() {
            fields.insert(key.into(), Value::String(value));
        }
    }
    if let Some(identifier) = def.pointer("/properties/identifier") {
        fields.insert("identifier".into(), identifier.clone());
    }
    let probe = builds::TemplateEntry {
        publish: Some(fields),
        ..entry.clone()
    };
    let manifest = builds::publish_manifest(&probe, "version.vhd")
        .map_err(|r| publish_invalid(&entry.template_id, r))?
        .ok_or_else(|| unusable(output, "no plan"))?;
    let mut plan = manifest
        .plan(&ctx.config.policy, "", version_id, chrono::Utc::now())
        .map_err(|r| publish_invalid(&entry.template_id, r))?;
    // The version is where Image Builder made it, and keeps the regions Image Builder gave it.
    let location = text(&found, "/location");
    let mut regions = plan.target_regions.clone();
    if let Some(existing) = found
        .pointer("/properties/publishingProfile/targetRegions")
        .and_then(Value::as_array)
    {
        for r in existing {
            let name = text(r, "/name").to_ascii_lowercase().replace(' ', "");
            if !name.is_empty() && !regions.iter().any(|t| t.name == name) {
                regions.push(TargetRegion {
                    name,
                    regional_replica_count: r
                        .get("regionalReplicaCount")
                        .and_then(Value::as_u64)
                        .unwrap_or(1) as u32,
                    ..TargetRegion::default()
                });
            }
        }
    }
    if !location.is_empty() {
        plan.location = location.to_ascii_lowercase().replace(' ', "");
    }
    plan.target_regions = policy::home_first(
        &plan.location,
        &regions,
        plan.publishing.replica_count.unwrap_or(1),
    );
    plan.build = Some(build);
    let state = text(&found, "/properties/provisioningState");
    if state != "Succeeded" {
        return Err(unusable(
            output,
            format!("{version_id} is in provisioningState '{state}'"),
        ));
    }
    let data = VersionPublished {
        version_id: version_id.to_owned(),
        image_id: None,
        vhd: None,
        plan,
        home_region_seconds: None,
    };
    tracing::info!(
        version = version_id,
        regions = data.plan.target_regions.len(),
        "a build's gallery version goes straight to ReplicateVersion"
    );
    Ok(vec![Emit::now(ctx.fact(
        cause,
        &super::version_subject(&data.plan),
        "",
        &data,
    )?)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_urls_account_is_its_hosts_first_label_or_its_first_path_segment() {
        let table = [
            (
                "https://stagingacct.blob.core.windows.net/vhds/a.vhd",
                Some("stagingacct"),
            ),
            (
                "http://127.0.0.1:10000/devstoreaccount1/imagebuilder/a.vhd",
                Some("devstoreaccount1"),
            ),
            (
                "http://localhost:10000/devstoreaccount1/c/a.vhd",
                Some("devstoreaccount1"),
            ),
            ("not a url", None),
        ];
        for (url, want) in table {
            assert_eq!(account_name(url).as_deref(), want, "{url}");
        }
    }

    #[test]
    fn a_gallery_version_id_splits_into_its_names() {
        let id = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/galleries/g/images/d/versions/1.0.0";
        assert_eq!(
            version_parts(id),
            Some(["s", "rg", "g", "d", "1.0.0"].map(str::to_owned))
        );
        assert_eq!(
            version_parts(
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/images/i"
            ),
            None
        );
    }

    #[test]
    fn an_output_is_known_by_its_distribute_type_or_its_artifact() {
        let out = |kind: Option<&str>, id: Option<&str>, uri: Option<&str>| RunOutput {
            name: "o".into(),
            kind: kind.map(str::to_owned),
            artifact_id: id.map(str::to_owned),
            artifact_uri: uri.map(str::to_owned),
        };
        assert_eq!(kind(&out(Some("VHD"), None, None)), "VHD");
        assert_eq!(kind(&out(None, None, Some("https://a/b.vhd"))), "VHD");
        assert_eq!(
            kind(&out(None, Some("/s/galleries/g/images/d/versions/1"), None)),
            "SharedImage"
        );
        assert_eq!(
            kind(&out(
                None,
                Some("/s/providers/Microsoft.Compute/images/i"),
                None
            )),
            "ManagedImage"
        );
    }
}
