//! Rejection: a blob galleon will not publish is marked with metadata (never moved, overwritten or
//! deleted) and a `vhd.rejected` fact says why and how to fix it, every time the input arrives again.

use std::collections::BTreeMap;

use chrono::Utc;

use super::super::step::{Ctx, Emit, StepError};
use crate::{
    azure::blob::{BlobProperties, redact},
    events::{BlobRef, Cause, Reason, VhdRejected},
};

/// Metadata galleon puts on a blob it rejects (keys must be C# identifiers for Azure metadata).
pub const REJECTION_KEY: &str = "galleonrejection";
pub const REJECTED_AT_KEY: &str = "galleonrejectedat";

/// The blob as a fact names it: URL without any SAS token, ETag and length as seen.
pub fn blob_ref(url: &str, props: &BlobProperties) -> BlobRef {
    BlobRef {
        url: url.split('?').next().unwrap_or(url).to_owned(),
        e_tag: props.e_tag.clone(),
        content_length: props.content_length,
    }
}

/// A blob that was judged: where it is and what it looked like.
pub struct Judged<'a> {
    pub subject: &'a str,
    pub url: &'a str,
    pub props: &'a BlobProperties,
}

/// Marks the judged blob as rejected and builds the rejection fact. The rejection is announced every time
/// the input arrives (a manifest uploaded again for a VHD that is still bad is told again); the mark is
/// metadata only, which raises no BlobCreated in Azure, so marking cannot loop.
pub async fn reject(
    ctx: &Ctx,
    cause: &Cause,
    judged: Judged<'_>,
    vhd: Option<BlobRef>,
    reason: Reason,
) -> Result<Vec<Emit>, StepError> {
    let Judged {
        subject,
        url,
        props,
    } = judged;
    tracing::warn!(blob = %redact(url), code = %reason.code, message = %reason.message, "rejecting");
    let mark = BTreeMap::from([
        (REJECTION_KEY.to_owned(), reason.code.clone()),
        (REJECTED_AT_KEY.to_owned(), Utc::now().to_rfc3339()),
    ]);
    let marked = if props.e_tag.is_empty() {
        false
    } else {
        match ctx
            .blobs
            .add_metadata(url, &props.e_tag, &props.metadata, &mark)
            .await
        {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(blob = %redact(url), error = %e, "could not mark the blob; the rejection is still announced");
                false
            }
        }
    };
    let data = VhdRejected {
        blob: blob_ref(url, props),
        vhd,
        reason,
        marked,
    };
    let code = data.reason.code.clone();
    Ok(vec![Emit::now(ctx.fact(cause, subject, &code, &data)?)])
}

/// The rejection of a VHD that changed after it was checked: announced, never marked (the blob now holds
/// the uploader's new content, whose own BlobCreated starts a new run).
pub fn changed_after_check(
    ctx: &Ctx,
    cause: &Cause,
    checked: &BlobRef,
    now: Option<&BlobProperties>,
) -> Result<Vec<Emit>, StepError> {
    let (message, blob) = match now {
        Some(p) => (
            format!(
                "{} changed after it was checked: ETag {} ({} bytes) became {} ({} bytes); galleon publishes only the VHD it checked",
                redact(&checked.url),
                checked.e_tag,
                checked.content_length,
                p.e_tag,
                p.content_length
            ),
            blob_ref(&checked.url, p),
        ),
        None => (
            format!(
                "{} was deleted after it was checked (ETag {})",
                redact(&checked.url),
                checked.e_tag
            ),
            checked.clone(),
        ),
    };
    let reason = Reason {
        code: "VhdChanged".into(),
        message,
        fix: "Do not write to a VHD while galleon publishes it. The new upload is judged on its own; upload its manifest again if it has one.".into(),
    };
    let data = VhdRejected {
        blob,
        vhd: Some(checked.clone()),
        reason,
        marked: false,
    };
    let subject = blob_subject(&checked.url);
    Ok(vec![Emit::now(ctx.fact(
        cause,
        &subject,
        "VhdChanged",
        &data,
    )?)])
}

/// The BlobCreated-style subject of a blob URL: `/blobServices/default/containers/<c>/blobs/<path>`.
/// Azure's URLs name the account in the host; path-style ones (Azurite, an IP or localhost) in the path.
pub fn blob_subject(url: &str) -> String {
    let Ok(parsed) = url::Url::parse(url) else {
        return String::new();
    };
    let path_style = matches!(parsed.host(), Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)))
        || parsed.host_str() == Some("localhost");
    let path = parsed.path().trim_start_matches('/');
    let mut segments = path.splitn(if path_style { 3 } else { 2 }, '/');
    if path_style {
        segments.next();
    }
    let container = segments.next().unwrap_or_default();
    let blob = segments.next().unwrap_or_default();
    format!("/blobServices/default/containers/{container}/blobs/{blob}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_of_blob_urls() {
        assert_eq!(
            blob_subject("https://acct.blob.core.windows.net/images/ubuntu/disk.vhd"),
            "/blobServices/default/containers/images/blobs/ubuntu/disk.vhd"
        );
        assert_eq!(
            blob_subject("https://127.0.0.1:10000/devstoreaccount1/images/ubuntu/disk.vhd"),
            "/blobServices/default/containers/images/blobs/ubuntu/disk.vhd"
        );
        assert_eq!(
            blob_subject("https://acct.blob.core.windows.net/images/disk.vhd"),
            "/blobServices/default/containers/images/blobs/disk.vhd"
        );
    }
}
