//! Fault injection, configured through `/_devcloud/faults`: fail the next N requests or operations of a
//! kind with an ARM error, answer 5xx/429 at a rate, add latency, stall operations, reset connections,
//! or fail a region's replication.

use serde::{Deserialize, Serialize};

/// One rule. It matches requests of `kind` (an operation id such as `GalleryImageVersions_CreateOrUpdate`,
/// or `None` for every ARM request), applies with probability `rate` (default 1) and at most `count` times;
/// used up, it stays listed with its `applied` count until the rules are cleared.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultRule {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub count: Option<u64>,
    #[serde(default)]
    pub rate: Option<f64>,
    pub action: FaultAction,
    /// How many times it has applied.
    #[serde(default)]
    pub applied: u64,
}

/// What a rule does.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum FaultAction {
    /// Answer with an ARM error. With `inOperation`, the request is accepted and its long-running
    /// operation ends `Failed` with this error instead.
    #[serde(rename_all = "camelCase")]
    Error {
        status: u16,
        #[serde(default)]
        code: Option<String>,
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        retry_after: Option<u64>,
        #[serde(default)]
        in_operation: bool,
    },
    /// Delay the request by `ms` before it is carried out; with `after`, carry it out first and delay
    /// only the answer (a write has then happened though its client may never hear of it: a client
    /// that gives up or dies meanwhile, as against Azure).
    Latency {
        ms: u64,
        #[serde(default)]
        after: bool,
    },
    /// The operation started by the request never finishes until `POST /_devcloud/operations/{id}/release`.
    Stall,
    /// Drop the connection without an answer.
    Reset,
    /// The long-running operation the request starts is answered with only a `Location` header (no
    /// `Azure-AsyncOperation`), as many Azure providers do.
    LocationOnly,
    /// An Image Builder run (`VirtualMachineImageTemplates_Run`) fails the distribution target named
    /// `runOutputName` with `message`; the others still distribute, so the run ends
    /// `PartiallySucceeded` (or `Failed` when it was the only one).
    #[serde(rename_all = "camelCase")]
    FailDistribute {
        run_output_name: String,
        #[serde(default)]
        message: Option<String>,
    },
    /// The version's replication to `region` fails with `details`. On an Image Builder run, the
    /// gallery versions it distributes fail to replicate there.
    #[serde(rename_all = "camelCase")]
    FailRegion {
        region: String,
        #[serde(default)]
        details: Option<String>,
    },
}

/// What applies to one request, after rolling the dice.
#[derive(Debug, Default, Clone)]
pub struct Applied {
    pub latency_ms: u64,
    /// Latency after the request was carried out, before its answer.
    pub answer_latency_ms: u64,
    pub reset: bool,
    pub error: Option<crate::error::ArmError>,
    pub retry_after: Option<u64>,
    /// For the operation the request starts.
    pub op: OpFault,
}

/// Faults carried into the operation a request starts.
#[derive(Debug, Default, Clone)]
pub struct OpFault {
    pub error: Option<crate::error::ArmError>,
    pub stall: bool,
    pub fail_regions: Vec<(String, String)>,
    /// Image Builder distribution targets (run output names) that fail, with their message.
    pub fail_outputs: Vec<(String, String)>,
    /// Answer with `Location` only.
    pub location_only: bool,
}

impl FaultAction {
    pub fn to_error(&self) -> Option<crate::error::ArmError> {
        match self {
            FaultAction::Error {
                status,
                code,
                message,
                ..
            } => {
                let code = code.clone().unwrap_or_else(|| match status {
                    429 => "TooManyRequests".to_string(),
                    500 => "InternalServerError".to_string(),
                    503 => "ServiceUnavailable".to_string(),
                    // INVENTED: a placeholder when the rule names no code.
                    _ => "InjectedFault".to_string(),
                });
                let message = message
                    .clone()
                    .unwrap_or_else(|| format!("Injected fault ({code})."));
                Some(crate::error::ArmError::new(*status, &code, message))
            }
            _ => None,
        }
    }
}
