//! IngestBlob: a blob arrived (Event Grid `Microsoft.Storage.BlobCreated`). Only blobs in galleon's ingest
//! containers count: a manifest is the commit signal ([`manifest`]); a bare `.vhd` under
//! `<container>/<image definition>/` waits until complete ([`bare`]). Nothing is written to Azure here,
//! and a rejected blob is only marked, never moved ([`reject`]).

pub mod bare;
pub mod checks;
pub mod manifest;
pub mod preflight;
pub mod reject;

use std::sync::Arc;

use chrono::Utc;

use super::{
    on_event::{self, EventTry},
    step::{self, Ctx, Emit, StepError},
};
use crate::{
    azure::blob::redact,
    domain::manifest as manifest_rules,
    events::Cause,
    host::{Failure, Invocation, Output, Trigger},
};

pub const NAME: &str = "IngestBlob";
pub const TRIGGER: &str = "event";

pub use reject::{REJECTED_AT_KEY, REJECTION_KEY};

/// A blob that arrived, from its BlobCreated event.
#[derive(Debug, Clone)]
pub struct Arrived {
    pub url: String,
    /// `/blobServices/default/containers/<container>/blobs/<path>`
    pub subject: String,
    pub container: String,
    pub path: String,
    pub storage_account_id: String,
}

/// Reads container and path out of a BlobCreated subject.
pub fn parse_subject(subject: &str) -> Option<(String, String)> {
    let rest = subject.strip_prefix("/blobServices/default/containers/")?;
    let (container, path) = rest.split_once("/blobs/")?;
    (!container.is_empty() && !path.is_empty()).then(|| (container.to_owned(), path.to_owned()))
}

/// What kind of blob arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Manifest,
    BareVhd,
    /// Not galleon's to read: another container, or another kind of file.
    NotOurs,
}

/// What a blob is to galleon: only `.vhd` and `.manifest.json` blobs in its ingest containers count.
/// Anything else is ignored, never rejected or marked (the storage account may hold other people's data).
pub fn kind_of(container: &str, path: &str, ingest_containers: &[String]) -> Kind {
    if !ingest_containers.iter().any(|c| c == container) {
        return Kind::NotOurs;
    }
    let lower = path.to_ascii_lowercase();
    if manifest_rules::is_manifest(&lower) {
        Kind::Manifest
    } else if lower.ends_with(".vhd") {
        Kind::BareVhd
    } else {
        Kind::NotOurs
    }
}

/// The manifest a VHD would have next to it.
pub fn sibling_manifest(url: &str) -> String {
    let base = url.split('?').next().unwrap_or(url);
    let stem = base
        .strip_suffix(".vhd")
        .or_else(|| base.strip_suffix(".VHD"))
        .unwrap_or(base);
    format!("{stem}{}", manifest_rules::SUFFIX)
}

pub async fn run(
    invocation: Invocation,
    ctx: Arc<Ctx>,
    tried: EventTry,
) -> Result<Output, Failure> {
    let Trigger::EventGrid(event) = invocation.trigger else {
        return Err(Failure::new("IngestBlob is bound to an Event Grid trigger"));
    };
    if event.event_type != "Microsoft.Storage.BlobCreated" {
        tracing::warn!(event_type = %event.event_type, id = %event.id, "not a BlobCreated event; check the Event Grid subscription filter");
        return Ok(Output::default());
    }
    let url = event
        .data
        .get("url")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned();
    let Some((container, path)) = event.subject.as_deref().and_then(parse_subject) else {
        tracing::warn!(subject = ?event.subject, "BlobCreated without a blob subject; ignored");
        return Ok(Output::default());
    };
    let kind = kind_of(&container, &path, &ctx.config.ingest_containers);
    if kind == Kind::NotOurs {
        tracing::info!(blob = %redact(&url), container = %container, "not a VHD or manifest in an ingest container (GALLEON_INGEST_CONTAINERS); ignored");
        return Ok(Output::default());
    }
    let traceparent = event
        .raw
        .get("traceparent")
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .or(invocation.traceparent.clone())
        .or_else(|| Some(crate::events::new_traceparent(&event.id)));
    let cause = Cause::root(&event.id, traceparent);
    let arrived = Arrived {
        url,
        subject: event.subject.clone().unwrap_or_default(),
        container,
        path,
        storage_account_id: event.source.clone(),
    };
    tracing::info!(blob = %redact(&arrived.url), kind = ?kind, "blob arrived");
    // A blob of a storage account galleon is not configured for gets no token: refused, and said.
    if let Err(e) = ctx.blobs.check_url(&arrived.url) {
        let emits =
            refused(&ctx, &cause, &arrived, &e).map_err(|e| Failure::new(format!("{e:?}")))?;
        step::send(&ctx, &emits).await?;
        return Ok(Output::default());
    }
    // A manifest galleon wrote for a request (`galleon-requests`) belongs to the request's run.
    let (cause, manifest_props) = if kind == Kind::Manifest {
        match ctx.blobs.properties(&arrived.url).await {
            Ok(Some(props)) => (manifest::run_cause(&cause, &props), Some(props)),
            Ok(None) => {
                tracing::info!(blob = %redact(&arrived.url), "manifest is gone; nothing to do");
                return Ok(Output::default());
            }
            Err(e) => {
                return on_event::finish(&ctx, NAME, &cause, &event, tried, Err(e.into())).await;
            }
        }
    } else {
        (cause, None)
    };
    tracing::Span::current().record("correlation_id", cause.correlation_id.as_str());
    let work = async {
        match (kind, manifest_props) {
            (Kind::Manifest, Some(props)) => {
                manifest::from_manifest(&ctx, &cause, &arrived, props).await
            }
            (Kind::BareVhd, _) => {
                let look = bare::BareLook {
                    cause: &cause,
                    subject: &arrived.subject,
                    url: &arrived.url,
                    last_e_tag: None,
                    first_seen: Utc::now(),
                    attempt: 0,
                    deadline: tried.deadline,
                    storage_account_id: &arrived.storage_account_id,
                };
                bare::look(&ctx, look).await
            }
            _ => Ok(Vec::new()),
        }
    };
    // Trouble a later try can get past is a retry on Service Bus (on_event); the step is idempotent.
    let outcome = crate::azure::in_run(cause.correlation_id.clone(), work).await;
    on_event::finish(&ctx, NAME, &cause, &event, tried, outcome).await
}

/// The rejection of a blob in a storage account galleon may not send tokens to (not marked: galleon has
/// no access there).
fn refused(
    ctx: &Ctx,
    cause: &Cause,
    arrived: &Arrived,
    error: &crate::azure::AzureError,
) -> Result<Vec<Emit>, StepError> {
    tracing::warn!(blob = %redact(&arrived.url), error = %error, "blob of a storage account galleon is not configured for");
    let data = crate::events::VhdRejected {
        blob: crate::events::BlobRef {
            url: arrived.url.split('?').next().unwrap_or(&arrived.url).to_owned(),
            e_tag: String::new(),
            content_length: 0,
        },
        vhd: None,
        reason: crate::events::Reason {
            code: "StorageAccountNotAllowed".into(),
            message: error.to_string(),
            fix: "Galleon reads VHDs only from the storage accounts in GALLEON_STORAGE_ACCOUNTS (its tokens go nowhere else). Add this account's blob endpoint there, or upload to an account that is listed.".into(),
        },
        marked: false,
    };
    Ok(vec![Emit::now(ctx.fact(
        cause,
        &arrived.subject,
        "StorageAccountNotAllowed",
        &data,
    )?)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_and_kinds() {
        let ingest = ["images".to_owned()];
        assert_eq!(
            parse_subject("/blobServices/default/containers/images/blobs/ubuntu/u.manifest.json"),
            Some(("images".into(), "ubuntu/u.manifest.json".into()))
        );
        assert_eq!(
            parse_subject("/blobServices/default/containers/images"),
            None
        );
        assert_eq!(
            kind_of("images", "ubuntu/u.manifest.json", &ingest),
            Kind::Manifest
        );
        assert_eq!(kind_of("images", "ubuntu/U.VHD", &ingest), Kind::BareVhd);
        assert_eq!(kind_of("images", "ubuntu/u.vhdx", &ingest), Kind::NotOurs);
        assert_eq!(kind_of("images", "notes.txt", &ingest), Kind::NotOurs);
        assert_eq!(
            kind_of("backups", "ubuntu/disk.vhd", &ingest),
            Kind::NotOurs,
            "a VHD outside the ingest containers is not galleon's"
        );
        assert_eq!(
            kind_of("backups", "ubuntu/u.manifest.json", &ingest),
            Kind::NotOurs
        );
        assert_eq!(
            sibling_manifest("https://a/c/ubuntu/disk.vhd"),
            "https://a/c/ubuntu/disk.manifest.json"
        );
    }
}
