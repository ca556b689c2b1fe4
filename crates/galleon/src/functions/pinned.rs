//! The published VHD is the VHD that was checked: its ETag is compared right before every ARM write that
//! reads the blob, and again once Azure has finished copying it. A change in between ends the run in
//! `vhd.rejected` naming the change (and what this run made from the changed blob is removed).

use super::step::{Ctx, StepError};
use crate::{azure::blob::BlobProperties, events::BlobRef};

/// What the blob looks like now, when it is no longer the one that was checked.
#[derive(Debug)]
pub enum Changed {
    Gone,
    Rewritten(BlobProperties),
}

impl Changed {
    pub fn now(&self) -> Option<&BlobProperties> {
        match self {
            Changed::Gone => None,
            Changed::Rewritten(p) => Some(p),
        }
    }
}

/// Whether `now` is still the blob that was checked.
pub fn same_blob(checked: &BlobRef, now: &BlobProperties) -> bool {
    now.e_tag == checked.e_tag && now.content_length == checked.content_length
}

/// Reads the blob's properties and compares them with what was checked.
pub async fn verify(ctx: &Ctx, checked: &BlobRef) -> Result<Result<(), Changed>, StepError> {
    match ctx.blobs.properties(&checked.url).await? {
        None => Ok(Err(Changed::Gone)),
        Some(now) if same_blob(checked, &now) => Ok(Ok(())),
        Some(now) => Ok(Err(Changed::Rewritten(now))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn a_new_etag_or_length_is_another_blob() {
        let checked = BlobRef {
            url: "https://a/c/d.vhd".into(),
            e_tag: "\"1\"".into(),
            content_length: 512,
        };
        let props = |e_tag: &str, len| BlobProperties {
            content_length: len,
            e_tag: e_tag.into(),
            blob_type: "PageBlob".into(),
            copy_status: None,
            created: None,
            last_modified: None,
            metadata: BTreeMap::new(),
        };
        assert!(same_blob(&checked, &props("\"1\"", 512)));
        assert!(!same_blob(&checked, &props("\"2\"", 512)));
        assert!(!same_blob(&checked, &props("\"1\"", 1024)));
    }
}
