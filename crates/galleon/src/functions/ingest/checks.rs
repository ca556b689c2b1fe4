//! The checks a VHD passes before galleon writes anything to Azure: a page blob, in a storage account in
//! the version's home region, a fixed VHD that reads right (footer, size, partition table), and not
//! already published by another run. Decisions are pure functions; the reads stay here at the edge.

use serde_json::Value;

use super::super::step::{Ctx, StepError};
use crate::{
    azure::{
        AzureError,
        arm::{self, ids},
        blob::{BlobProperties, VhdReader},
    },
    domain::features,
    events::{Architecture, Cause, DefinitionSpec, HyperVGeneration, Identifier, Plan, Reason},
};

/// Resource Manager API version for `Microsoft.Storage/storageAccounts` reads.
pub const STORAGE_API: &str = "2023-05-01";

/// Azure creates images and versions only from page blobs: a block or append blob is refused up front.
pub fn blob_type_problem(url_name: &str, blob_type: &str) -> Option<Reason> {
    if blob_type.eq_ignore_ascii_case("PageBlob") {
        return None;
    }
    let kind = if blob_type.is_empty() {
        "of unknown type"
    } else {
        blob_type
    };
    Some(Reason {
        code: "VhdNotPageBlob".into(),
        message: format!(
            "{url_name} is a {kind}; Azure makes images only from VHDs stored as page blobs"
        ),
        fix: format!(
            "Upload it again as a page blob: azcopy copy {url_name} 'https://<account>.blob.core.windows.net/<container>/<path>/{url_name}' --blob-type PageBlob (or az storage blob upload --type page)."
        ),
    })
}

/// Azure reads the VHD only from a storage account in the region where the image or version is made
/// (the home region).
pub fn region_problem(account_id: &str, account_location: &str, home: &str) -> Option<Reason> {
    let norm = |s: &str| {
        s.chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_lowercase()
    };
    if norm(account_location) == norm(home) {
        return None;
    }
    let account = account_id.rsplit('/').next().unwrap_or(account_id);
    Some(Reason {
        code: "StorageAccountRegionMismatch".into(),
        message: format!(
            "the VHD's storage account {account} is in {account_location}, but the image version is made in {home}; Azure reads the source VHD only from the same region"
        ),
        fix: format!(
            "Upload the VHD to a storage account in {home} (azcopy copy between accounts works), or set the home region (GALLEON_LOCATION, or the manifest's first target region) to {account_location}."
        ),
    })
}

/// Looks up the storage account's region through Resource Manager (an account's region never changes,
/// so an instance reads it once per `GALLEON_KNOWN_SECONDS`); a reason when it is not the home region.
pub async fn storage_region(
    ctx: &Ctx,
    account_id: &str,
    home: &str,
) -> Result<Option<Reason>, StepError> {
    if let Some(account) = ctx.known.get(account_id) {
        return Ok(region_problem(account_id, location_of(&account), home));
    }
    let Some(account) = ctx.arm.get(account_id, STORAGE_API, &[]).await? else {
        return Err(StepError::failed(
            "StorageAccountNotFound",
            format!("Resource Manager does not know the VHD's storage account {account_id}"),
            Some(account_id.to_owned()),
            "The BlobCreated event named a storage account that Resource Manager cannot find from galleon's subscription. Grant galleon's identity Reader on that storage account, or upload to an account it can see.",
        ));
    };
    ctx.known.put(account_id, &account);
    Ok(region_problem(account_id, location_of(&account), home))
}

fn location_of(account: &Value) -> &str {
    account
        .get("location")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The OS disk's checks: the VHD's own (footer, size, partition table against the declared generation),
/// then its EFI system partition's boot loader against the architecture, and the security type and
/// architecture against the generation. `Ok(Err(problem))` is a rejection, `Err` an I/O failure to retry.
/// A blob that changed under the ETag-pinned reads is `Err(Transient)` with a condition-not-met error.
pub async fn inspect_os(
    ctx: &Ctx,
    url: &str,
    props: &BlobProperties,
    expectations: &vhd::Expectations,
    definition: &DefinitionSpec,
) -> Result<Result<vhd::OsDiskInspection, vhd::Problem>, StepError> {
    let reader = VhdReader {
        blobs: &ctx.blobs,
        url,
        e_tag: &props.e_tag,
    };
    let security = definition
        .security_type
        .and_then(|s| vhd::SecurityType::parse(s.as_str()));
    let architecture = definition.architecture.map(|a| match a {
        Architecture::X64 => vhd::Architecture::X64,
        Architecture::Arm64 => vhd::Architecture::Arm64,
    });
    sorted(
        vhd::inspect_os_disk(
            &reader,
            props.content_length,
            expectations,
            security,
            architecture,
        )
        .await,
    )
}

/// A data disk's checks: the same VHD checks as the OS disk's, and no OS partition layout.
pub async fn inspect_data(
    ctx: &Ctx,
    url: &str,
    props: &BlobProperties,
    expectations: &vhd::Expectations,
    lun: u32,
) -> Result<Result<vhd::Inspection, vhd::Problem>, StepError> {
    let reader = VhdReader {
        blobs: &ctx.blobs,
        url,
        e_tag: &props.e_tag,
    };
    sorted(vhd::inspect_data_disk(&reader, props.content_length, expectations, lun).await)
}

/// The architecture the disk showed, in the plan's words (`None`: x64 by default, not stated).
pub fn detected_architecture(os: &vhd::OsDiskInspection) -> Option<Architecture> {
    match (os.architecture_source, os.architecture) {
        (vhd::ArchitectureSource::Default, _) => None,
        (_, vhd::Architecture::Arm64) => Some(Architecture::Arm64),
        (_, _) => Some(Architecture::X64),
    }
}

fn sorted<T>(
    outcome: Result<T, vhd::InspectError<AzureError>>,
) -> Result<Result<T, vhd::Problem>, StepError> {
    match outcome {
        Ok(i) => Ok(Ok(i)),
        Err(vhd::InspectError::Rejected(problem)) => Ok(Err(problem)),
        Err(vhd::InspectError::Read { source, .. }) => Err(StepError::from(source)),
        Err(other) => Err(StepError::Transient(AzureError::transient(
            "Blob Storage",
            "ShortRead",
            other.to_string(),
        ))),
    }
}

pub fn problem_reason(p: vhd::Problem) -> Reason {
    Reason {
        code: p.code.to_string(),
        message: p.message,
        fix: p.fix,
    }
}

pub fn scheme_name(scheme: &vhd::PartitionScheme) -> &'static str {
    match scheme {
        vhd::PartitionScheme::Gpt { has_esp: true, .. } => "gpt-esp",
        vhd::PartitionScheme::Gpt { .. } => "gpt",
        vhd::PartitionScheme::Mbr { .. } => "mbr",
        _ => "none",
    }
}

pub fn to_vhd_generation(g: HyperVGeneration) -> vhd::Generation {
    match g {
        HyperVGeneration::V1 => vhd::Generation::V1,
        HyperVGeneration::V2 => vhd::Generation::V2,
    }
}

/// The image definition's immutable properties (and the identifier, when the manifest states one) against
/// the plan, before any write. The definition is read through the instance's known cache, as
/// PublishVersion reads it, so the next image of a definition costs no more ARM calls; a mismatch seen in
/// the cache is read again before it rejects. No definition yet: nothing to compare.
pub async fn definition_mismatch(
    ctx: &Ctx,
    plan: &Plan,
    stated_identifier: Option<&Identifier>,
) -> Result<Option<Reason>, StepError> {
    let id = ids::image_definition(
        &plan.subscription_id,
        &plan.resource_group,
        &plan.gallery,
        &plan.image_definition,
    );
    let conflicts = |existing: &Value| {
        let mut found = features::definition_conflicts(existing, plan);
        found.extend(stated_identifier.and_then(|i| features::identifier_conflict(existing, i)));
        found
    };
    if let Some(seen) = ctx.known.get(&id) {
        if conflicts(&seen).is_empty() {
            return Ok(None);
        }
        ctx.known.forget(&id);
    }
    let Some(existing) = ctx.arm.get(&id, arm::GALLERY_API, &[]).await? else {
        return Ok(None);
    };
    let state = existing
        .pointer("/properties/provisioningState")
        .and_then(Value::as_str);
    if matches!(state, Some("Succeeded") | None) {
        ctx.known.put(&id, &existing);
    }
    let found = conflicts(&existing);
    Ok((!found.is_empty()).then(|| features::conflict_reason(&plan.image_definition, &found)))
}

/// Whether this plan's version was already published by another run. A version made by this very run (a
/// redelivered event) is not "already published": the chain just goes on, idempotently.
pub async fn already_published(
    ctx: &Ctx,
    cause: &Cause,
    plan: &Plan,
) -> Result<Option<String>, StepError> {
    let id = ids::image_version(
        &plan.subscription_id,
        &plan.resource_group,
        &plan.gallery,
        &plan.image_definition,
        &plan.version,
    );
    let Some(version) = ctx.arm.get(&id, arm::GALLERY_API, &[]).await? else {
        return Ok(None);
    };
    let run = version
        .pointer("/tags/galleon-run")
        .and_then(|v| v.as_str());
    let state = version
        .pointer("/properties/provisioningState")
        .and_then(|v| v.as_str());
    Ok((run != Some(cause.correlation_id.as_str()) && state == Some("Succeeded")).then_some(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_page_blobs_pass() {
        assert_eq!(blob_type_problem("disk.vhd", "PageBlob"), None);
        assert_eq!(blob_type_problem("disk.vhd", "pageblob"), None);
        for other in ["BlockBlob", "AppendBlob", ""] {
            let reason = blob_type_problem("disk.vhd", other);
            assert!(
                reason.as_ref().is_some_and(|r| r.code == "VhdNotPageBlob"
                    && r.fix.contains("--blob-type PageBlob")
                    && r.message.contains("disk.vhd")),
                "{other}: {reason:?}"
            );
        }
    }

    #[test]
    fn storage_account_must_be_in_the_home_region() {
        let id =
            "/subscriptions/s/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/builds";
        assert_eq!(region_problem(id, "westeurope", "westeurope"), None);
        assert_eq!(
            region_problem(id, "West Europe", "westeurope"),
            None,
            "display names compare like ARM names"
        );
        let r = region_problem(id, "eastus", "westeurope");
        assert!(
            r.as_ref()
                .is_some_and(|r| r.code == "StorageAccountRegionMismatch"
                    && r.message.contains("builds")
                    && r.message.contains("eastus")
                    && r.fix.contains("westeurope"))
        );
    }
}
