//! Why a step did not finish (a transient Azure failure, a wait, a pace, or giving up) and what a
//! failure tells: Azure's error verbatim and galleon's advice for it.

use std::time::Duration;

use crate::{
    azure::AzureError,
    events::{ErrorDetail, LeftBehind},
};

/// Why a step did not finish.
#[derive(Debug)]
pub enum StepError {
    /// Azure had trouble (throttling, 5xx, a dropped connection): try again later; counts towards
    /// `GALLEON_MAX_ATTEMPTS`.
    Transient(AzureError),
    /// Something Azure is still making or removing: look again at the follow-up interval. Not a failure,
    /// bounded by the deadline only.
    Waiting(String),
    /// Give up: Azure refused for a reason that will not change, or galleon cannot go on.
    Failed(Box<Stop>),
    /// The subscription's ARM budget is low: a new image waits its turn (this long) before its first
    /// write. Not a failure, bounded by the deadline only.
    Paced(Duration),
}

/// How a step ended when it gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    pub error: ErrorDetail,
    pub advice: String,
    /// What this run made and could not remove.
    pub left_behind: Vec<LeftBehind>,
}

impl StepError {
    /// A permanent failure with galleon's own code.
    pub fn failed(
        code: impl Into<String>,
        message: impl Into<String>,
        target: Option<String>,
        advice: impl Into<String>,
    ) -> StepError {
        let mut error = ErrorDetail::new(code, message);
        error.target = target;
        StepError::Failed(Box::new(Stop {
            error,
            advice: advice.into(),
            left_behind: Vec::new(),
        }))
    }

    /// A fact (or part of one) that does not match its schema: galleon wrote it, so it is a defect.
    pub fn unreadable(what: impl std::fmt::Display) -> StepError {
        StepError::failed(
            "FactUnreadable",
            what.to_string(),
            None,
            "The fact does not match its schema in events/; this is a galleon defect: report it with the fact.",
        )
    }

    /// Adds what could not be cleaned up to a failure (other errors are returned as they are).
    pub fn with_left_behind(self, left: Vec<LeftBehind>) -> StepError {
        match self {
            StepError::Failed(mut stop) => {
                stop.left_behind.extend(left);
                StepError::Failed(stop)
            }
            other => other,
        }
    }
}

impl From<AzureError> for StepError {
    fn from(e: AzureError) -> StepError {
        if e.is_transient() {
            StepError::Transient(e)
        } else {
            let advice = e
                .advice()
                .map(str::to_owned)
                .unwrap_or_else(|| advice_for(e.code()));
            StepError::Failed(Box::new(Stop {
                error: detail_of(&e),
                advice,
                left_behind: Vec::new(),
            }))
        }
    }
}

/// The fact-side detail of an Azure error: code, message and target verbatim.
pub fn detail_of(e: &AzureError) -> ErrorDetail {
    let mut detail = ErrorDetail::new(e.code(), e.message());
    detail.target = e.target();
    let ids = e.request_ids();
    detail.request_id = ids.request_id;
    detail.correlation_request_id = ids.correlation_request_id;
    detail
}

/// Galleon's advice for Azure error codes users meet.
pub fn advice_for(code: &str) -> String {
    match code {
        "PropertyChangeNotAllowed" => "The image definition already exists with other immutable properties (osType, osState, hyperVGeneration or identifier). Publish to a new image definition name, or make the manifest match the existing definition.".into(),
        "AuthorizationFailed" | "LinkedAuthorizationFailed" => "Grant the function app's managed identity the galleon-compute role on the gallery's resource group (infra/galleon-compute-role.json), and Storage Blob Data Contributor on the source storage account (it marks rejected blobs).".into(),
        "InvalidParameter" | "BadRequest" => "Azure refused the request as written; the message names the parameter. Fix the manifest or the policy settings and upload the manifest again.".into(),
        "ResourceNotFound" | "NotFound" | "BlobNotFound" => "A resource galleon needs is gone; upload the VHD and manifest again once it exists.".into(),
        "ResourceGroupNotFound" => "The resource group named by GALLEON_RESOURCE_GROUP (or the manifest) does not exist; galleon does not create resource groups. Create it (infra/ does) and upload the manifest again.".into(),
        "QuotaExceeded" | "OperationNotAllowed" => "A subscription or gallery limit was reached; remove old image versions (or raise the quota) and upload the manifest again.".into(),
        _ => "See Azure's error above; once the cause is fixed, upload the manifest again to re-run the chain (every step is idempotent).".into(),
    }
}
