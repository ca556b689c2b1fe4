//! Publish by request: a pipeline that can only send messages asks galleon to publish the VHD at a URL,
//! with its manifest in the request. Galleon writes the manifest next to the VHD, only where none is (a
//! user's blob is never overwritten), with the request's root in its metadata: its BlobCreated starts the
//! usual chain (IngestBlob judges it as any manifest), in the request's own run.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::{Value, json};

use super::{
    control::Refusal,
    ingest::{self, Kind, manifest::REQUEST_KEY, reject::blob_subject},
    step::Ctx,
};
use crate::{
    azure::blob::{WriteIf, redact},
    domain::manifest::{MAX_MANIFEST_BYTES, Manifest},
    events::Cause,
};

/// What a pipeline asked: the VHD's URL (no SAS: galleon reads with its identity) and its manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Asked {
    pub vhd: String,
    pub manifest: Value,
}

/// The manifest to write for `asked` (its `vhd` the VHD's name beside it), and where: `Err` names what is
/// wrong and the fix. Pure.
pub fn manifest_for(
    asked: &Asked,
    ingest_containers: &[String],
) -> Result<(String, Bytes), Refusal> {
    let bad = |code: &str, message: String| Refusal::new(400, code, message);
    if asked.vhd.contains('?') || asked.vhd.contains('#') {
        return Err(bad(
            "VhdUrlHasQuery",
            "vhd: send the blob's URL without a query or SAS; galleon reads it with its own identity (a SAS in a message would be kept in its journal)".into(),
        ));
    }
    let Some((container, path)) = ingest::parse_subject(&blob_subject(&asked.vhd)) else {
        return Err(bad(
            "VhdUrlInvalid",
            format!("vhd: '{}' is not a blob URL", redact(&asked.vhd)),
        ));
    };
    if ingest::kind_of(&container, &path, ingest_containers) != Kind::BareVhd {
        return Err(bad(
            "VhdNotInIngestContainer",
            format!(
                "vhd: {} is not a .vhd in an ingest container ({}); upload it into one of them, or add its container to GALLEON_INGEST_CONTAINERS",
                redact(&asked.vhd),
                ingest_containers.join(", ")
            ),
        ));
    }
    let name = path.rsplit('/').next().unwrap_or(&path).to_owned();
    let mut manifest = match &asked.manifest {
        Value::Object(m) => m.clone(),
        _ => {
            return Err(bad(
                "ManifestInvalid",
                "manifest: must be a JSON object (events/manifest.schema.json)".into(),
            ));
        }
    };
    match manifest.get("vhd") {
        None | Some(Value::Null) => {
            manifest.insert("vhd".into(), json!(name));
        }
        Some(Value::String(v)) if *v == name => {}
        Some(other) => {
            return Err(bad(
                "ManifestNamesAnotherVhd",
                format!(
                    "manifest.vhd is {other}, the request's VHD is {name}; leave manifest.vhd out (galleon sets it)"
                ),
            ));
        }
    }
    if manifest.contains_key("managedImage") {
        return Err(bad(
            "ManifestInvalid",
            "manifest.managedImage: a publish request publishes its VHD; publish a managed image with a manifest blob".into(),
        ));
    }
    let manifest_url = ingest::sibling_manifest(&asked.vhd);
    let text = serde_json::to_vec_pretty(&Value::Object(manifest)).unwrap_or_default();
    if text.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(bad(
            "ManifestTooLarge",
            format!(
                "manifest: {} bytes; at most {MAX_MANIFEST_BYTES}",
                text.len()
            ),
        ));
    }
    let file = manifest_url.rsplit('/').next().unwrap_or_default();
    Manifest::parse(&text, file)
        .map_err(|r| bad(&r.code, format!("manifest: {}; {}", r.message, r.fix)))?;
    Ok((manifest_url, Bytes::from(text)))
}

/// Writes the manifest for `asked`, in the run of request root `root`; answers where, and the run.
pub async fn publish(ctx: &Ctx, asked: &Asked, root: &str) -> Result<Value, Refusal> {
    let (manifest_url, text) = manifest_for(asked, &ctx.config.ingest_containers)?;
    let refused = |e: &crate::azure::AzureError| {
        if e.is_foreign_host() {
            Refusal::new(
                403,
                "StorageAccountNotAllowed",
                format!(
                    "vhd: {} is in a storage account galleon is not configured for; add it to GALLEON_STORAGE_ACCOUNTS",
                    redact(&asked.vhd)
                ),
            )
        } else {
            Refusal::azure(e, &redact(&asked.vhd))
        }
    };
    if ctx
        .blobs
        .properties(&asked.vhd)
        .await
        .map_err(|e| refused(&e))?
        .is_none()
    {
        return Err(Refusal::new(
            404,
            "VhdMissing",
            format!(
                "vhd: {} does not exist; upload it first, then send the request",
                redact(&asked.vhd)
            ),
        ));
    }
    let run = Cause::root(root, None).correlation_id;
    let answer = |already: bool| json!({"vhd": redact(&asked.vhd), "manifest": redact(&manifest_url), "run": run, "alreadyWritten": already});
    let metadata = BTreeMap::from([(REQUEST_KEY.to_owned(), root.to_owned())]);
    match ctx
        .blobs
        .put_small_with(&manifest_url, text.clone(), WriteIf::Absent, &metadata)
        .await
        .map_err(|e| refused(&e))?
    {
        Some(_) => {
            tracing::info!(manifest = %redact(&manifest_url), "wrote a requested manifest");
            Ok(answer(false))
        }
        None => {
            // A manifest is there: this request's own (a redelivery), or someone else's, which stays.
            let there = ctx
                .blobs
                .read_small(&manifest_url, MAX_MANIFEST_BYTES)
                .await
                .map_err(|e| refused(&e))?;
            if there.1.metadata.get(REQUEST_KEY).map(String::as_str) == Some(root) {
                Ok(answer(true))
            } else {
                Err(Refusal::new(
                    409,
                    "ManifestExists",
                    format!(
                        "{} is there already and galleon never overwrites a blob it did not write; delete it or publish the VHD under another name",
                        redact(&manifest_url)
                    ),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Value {
        json!({"imageDefinition": "ubuntu-2404", "osType": "Linux", "hyperVGeneration": "V2", "version": "1.0.0"})
    }

    #[test]
    fn the_manifest_goes_beside_its_vhd_naming_it() {
        let ingest = ["images".to_owned()];
        let asked = Asked {
            vhd: "https://acct.blob.core.windows.net/images/ubuntu/disk.vhd".into(),
            manifest: manifest(),
        };
        let (url, text) = manifest_for(&asked, &ingest).expect("valid");
        assert_eq!(
            url,
            "https://acct.blob.core.windows.net/images/ubuntu/disk.manifest.json"
        );
        let written: Value = serde_json::from_slice(&text).expect("json");
        assert_eq!(written["vhd"], "disk.vhd");
        assert_eq!(written["imageDefinition"], "ubuntu-2404");
        let local = Asked {
            vhd: "http://127.0.0.1:10000/devstoreaccount1/images/u/disk.vhd".into(),
            manifest: manifest(),
        };
        assert!(manifest_for(&local, &ingest).is_ok());
    }

    #[test]
    fn what_cannot_be_published_is_refused_with_the_fix() {
        let ingest = ["images".to_owned()];
        let with = |vhd: &str, manifest: Value| Asked {
            vhd: vhd.into(),
            manifest,
        };
        let ok_vhd = "https://acct.blob.core.windows.net/images/u/disk.vhd";
        let mut other = manifest();
        other["vhd"] = json!("other.vhd");
        let mut image = manifest();
        image["managedImage"] =
            json!("/subscriptions/s/resourceGroups/r/providers/Microsoft.Compute/images/i");
        let mut unknown = manifest();
        unknown["colour"] = json!("blue");
        for (asked, code) in [
            (
                with(&format!("{ok_vhd}?sig=secret"), manifest()),
                "VhdUrlHasQuery",
            ),
            (with("not a url", manifest()), "VhdUrlInvalid"),
            (
                with(
                    "https://acct.blob.core.windows.net/backups/u/disk.vhd",
                    manifest(),
                ),
                "VhdNotInIngestContainer",
            ),
            (
                with(
                    "https://acct.blob.core.windows.net/images/u/disk.qcow2",
                    manifest(),
                ),
                "VhdNotInIngestContainer",
            ),
            (with(ok_vhd, json!("text")), "ManifestInvalid"),
            (with(ok_vhd, other), "ManifestNamesAnotherVhd"),
            (with(ok_vhd, image), "ManifestInvalid"),
            (with(ok_vhd, unknown), "ManifestInvalid"),
            (
                with(ok_vhd, json!({"imageDefinition": "u"})),
                "ManifestInvalid",
            ),
        ] {
            let refused = manifest_for(&asked, &ingest).expect_err(code);
            assert_eq!(refused.code, code, "{}", refused.message);
            assert_eq!(refused.status, 400);
            assert!(!refused.message.contains("secret"), "{}", refused.message);
        }
    }
}
