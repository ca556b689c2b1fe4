//! ARM error bodies (`{"error":{code,message,target,details}}`) and the codes the simulator answers with.
//!
//! Every code is either documented by Azure (see shared/reference/arm-contract.md §4) or listed in
//! [`INVENTED_CODES`] and marked `INVENTED` where it is produced.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Error codes this simulator uses that were not found in Azure's documentation or observed output.
pub const INVENTED_CODES: &[&str] = &[
    // Gallery quota exceeded (100 galleries / 1,000 definitions / 10,000 versions per subscription+region).
    "GalleryQuotaExceeded",
    // A region's replication failed (fault injection); Azure reports it in replicationStatus details.
    "ReplicationFailed",
    // An Image Builder run failed (the template's lastRunStatus carries the message).
    "ImageBuildFailed",
    // Cancel of a template that is not running.
    "ImageTemplateNotRunning",
    // Fault injection asked for a code without giving one.
    "InjectedFault",
    // A managed image from a managed disk or snapshot: devcloud has no disks.
    "DevcloudUnsupportedSource",
    // Deleting a parent with children: the message is documented, code and status (409) are a guess.
    "CannotDeleteResource",
    // An HTTP method the resource does not support.
    "MethodNotAllowed",
    // Location polling of a canceled operation.
    "OperationCanceled",
    // Polling an operation id the simulator does not know.
    "NotFound",
    // Creating a Compute resource type devcloud does not simulate (virtualMachines, disks, ...).
    "DevcloudUnsupportedResourceType",
    // Internal inconsistencies that should not be reachable.
    "InvalidRequest",
];

/// Codes used here that Azure documents or was observed to return (arm-contract.md §4 and the ARM
/// troubleshooting and throttling pages).
pub const DOCUMENTED_CODES: &[&str] = &[
    "InvalidParameter",
    "ResourceNotFound",
    "ParentResourceNotFound",
    "PropertyChangeNotAllowed",
    "OperationNotAllowed",
    "InvalidRequestContent",
    "InvalidResourceName",
    "InvalidResourceType",
    "InvalidResourceLocation",
    "LocationRequired",
    "LocationNotAvailableForResourceType",
    "MissingApiVersionParameter",
    "InvalidApiVersionParameter",
    "NoRegisteredProviderFound",
    "SubscriptionRequestsThrottled",
    "TooManyRequests",
    "AuthenticationFailed",
    "InvalidAuthenticationToken",
    "InvalidAuthenticationTokenAudience",
    "ExpiredAuthenticationToken",
    "InternalServerError",
    "ServiceUnavailable",
    // Microsoft.Resources (resource groups) [obs]: a missing group, a bad name.
    "ResourceGroupNotFound",
    "InvalidResourceGroup",
    // [mem] ARM: a write into a group being deleted; re-creating a group in another region.
    "ResourceGroupBeingDeleted",
    "InvalidResourceGroupLocation",
    // [mem] ARM: a subscription id that is not a GUID.
    "InvalidSubscriptionId",
    // [obs] ARM: an id property that is not a resource id ("Property id '…' at path '…' is invalid.
    // Expect fully qualified resource Id that start with '/subscriptions/{subscriptionId}' or
    // '/providers/{resourceProviderNamespace}/'.", seen in azure-cli and azure-powershell issues).
    "LinkedInvalidPropertyId",
    // [obs] ARM: a token of another tenant than the subscription's (401), and a request naming a
    // resource of another tenant without an auxiliary token of that tenant (403); see tenancy.rs.
    "InvalidAuthenticationTokenTenant",
    "LinkedAuthorizationFailed",
    // [obs] ARM's tag rules (tags.rs): too many, a bad or long name, a long value.
    "InvalidTags",
    "InvalidTagName",
    "InvalidTagNameCharacters",
    "InvalidTagValueLength",
];

/// An ARM error: HTTP status plus the `error` object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmError {
    pub status: u16,
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<Value>,
}

impl std::fmt::Display for ArmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ArmError {}

impl ArmError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_string(),
            message: message.into(),
            target: None,
            details: Vec::new(),
        }
    }

    pub fn with_target(mut self, target: &str) -> Self {
        self.target = Some(target.to_string());
        self
    }

    /// The inner `error` object (used in LRO status bodies).
    pub fn inner(&self) -> Value {
        let mut v = json!({"code": self.code, "message": self.message});
        if let Some(t) = &self.target {
            v["target"] = json!(t);
        }
        if !self.details.is_empty() {
            v["details"] = json!(self.details);
        }
        v
    }

    /// The full body: `{"error": {...}}`.
    pub fn body(&self) -> Value {
        json!({ "error": self.inner() })
    }

    // ---- documented or observed codes ----

    pub fn invalid_parameter(message: impl Into<String>, target: &str) -> Self {
        Self::new(400, "InvalidParameter", message).with_target(target)
    }

    pub fn required(param: &str, target: &str) -> Self {
        // Compute RP wording [mem]: "Required parameter 'x' is missing (null)."
        Self::invalid_parameter(
            format!("Required parameter '{param}' is missing (null)."),
            target,
        )
    }

    pub fn not_found(type_path: &str, rg: &str) -> Self {
        Self::new(
            404,
            "ResourceNotFound",
            format!(
                "The Resource '{type_path}' under resource group '{rg}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
            ),
        )
    }

    pub fn parent_not_found(parent: &str) -> Self {
        Self::new(
            404,
            "ParentResourceNotFound",
            format!(
                "Can not perform requested operation on nested resource. Parent resource '{parent}' not found."
            ),
        )
    }

    pub fn property_change(path: &str) -> Self {
        Self::new(
            409,
            "PropertyChangeNotAllowed",
            format!("Changing property '{path}' is not allowed."),
        )
        .with_target(path)
    }

    pub fn nested_exist() -> Self {
        // Message [doc]; INVENTED code and status.
        Self::invented(
            409,
            "CannotDeleteResource",
            "Can not delete resource before nested resources are deleted.",
        )
    }

    pub fn bad_json(err: impl std::fmt::Display) -> Self {
        Self::new(
            400,
            "InvalidRequestContent",
            format!("The request content was invalid and could not be deserialized: '{err}'."),
        )
    }

    pub fn conflict_in_progress(name: &str) -> Self {
        // [mem]: Compute answers 409 OperationNotAllowed while another operation is running.
        Self::new(
            409,
            "OperationNotAllowed",
            format!(
                "Operation on resource '{name}' is not allowed because another operation is in progress. Please retry after the current operation completes."
            ),
        )
    }

    pub fn invented(status: u16, code: &str, message: impl Into<String>) -> Self {
        debug_assert!(
            INVENTED_CODES.contains(&code),
            "{code} not listed as invented"
        );
        Self::new(status, code, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every literal code passed to `ArmError::new`/`invented` in the sources is either documented or
    /// listed as invented.
    #[test]
    fn every_code_is_documented_or_marked_invented() {
        let sources = [
            include_str!("handlers/mod.rs"),
            include_str!("handlers/common.rs"),
            include_str!("handlers/deletes.rs"),
            include_str!("handlers/route.rs"),
            include_str!("handlers/resources.rs"),
            include_str!("handlers/subscriptions.rs"),
            include_str!("handlers/storage.rs"),
            include_str!("handlers/paging.rs"),
            include_str!("handlers/images.rs"),
            include_str!("handlers/galleries.rs"),
            include_str!("handlers/definitions.rs"),
            include_str!("handlers/replication.rs"),
            include_str!("handlers/versions.rs"),
            include_str!("handlers/templates.rs"),
            include_str!("handlers/imagebuilder.rs"),
            include_str!("handlers/distribute.rs"),
            include_str!("handlers/sharing.rs"),
            include_str!("tenancy.rs"),
            include_str!("tags.rs"),
            include_str!("arm.rs"),
            include_str!("names.rs"),
            include_str!("server.rs"),
            include_str!("blob.rs"),
            include_str!("faults.rs"),
            include_str!("error.rs"),
        ];
        let re = regex::Regex::new(r#"(?:ArmError::new|ArmError::invented|Self::new|Self::invented)\(\s*\d+,\s*"([A-Za-z]+)""#).unwrap();
        let mut seen = 0;
        for src in sources {
            for c in re.captures_iter(src) {
                let code = &c[1];
                seen += 1;
                assert!(
                    DOCUMENTED_CODES.contains(&code) || INVENTED_CODES.contains(&code),
                    "{code} is neither documented nor marked invented"
                );
            }
        }
        assert!(seen > 20, "the scan found only {seen} codes");
        let fault_defaults = [
            "TooManyRequests",
            "InternalServerError",
            "ServiceUnavailable",
            "InjectedFault",
        ];
        for code in fault_defaults {
            assert!(DOCUMENTED_CODES.contains(&code) || INVENTED_CODES.contains(&code));
        }
    }
}
