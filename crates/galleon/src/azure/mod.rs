//! Thin clients for the Azure services galleon touches: Resource Manager, Blob Storage and Service Bus,
//! over reqwest with bearer tokens from the managed identity. Errors are sorted once, in [`error`], into
//! transient (retry later, at `Retry-After`) and permanent (report, with Azure's code and message
//! verbatim and the answer's request ids).

pub mod arm;
pub mod blob;
pub mod budget;
pub mod bus;
pub mod error;
pub mod identity;
pub mod tenants;
#[cfg(test)]
mod test_support;

use std::time::Duration;

pub use error::{AzureError, Kind, RequestIds, classify, retry_after, wait_before_retry};
pub use identity::{
    ARM_RESOURCE, Audiences, SERVICE_BUS_RESOURCE, STORAGE_RESOURCE, StorageAccount, Tokens,
};

tokio::task_local! {
    /// The run (correlation id) the current task works for: ARM calls send it as `x-ms-client-request-id`,
    /// so Azure's activity log and support can find every call of one run. Set it with [`in_run`].
    pub static RUN: String;
}

/// Runs `future` on behalf of run `run_id` (a GUID): every ARM call inside sends it as
/// `x-ms-client-request-id`.
pub async fn in_run<F: std::future::Future>(run_id: String, future: F) -> F::Output {
    RUN.scope(run_id, future).await
}

/// The run the current task works for, if any.
pub fn current_run() -> Option<String> {
    RUN.try_with(Clone::clone).ok()
}

/// The HTTP client every Azure call shares: timeouts, no redirects (ARM's Location is polled, not followed,
/// and a redirect must never carry a token to another host).
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("galleon/", env!("CARGO_PKG_VERSION")))
        .build()
}
