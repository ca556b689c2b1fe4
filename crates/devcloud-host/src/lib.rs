//! A local Azure Functions host: reads host.json and function.json, starts the custom handler, drives its triggers.
//!
//! It runs a custom-handler function app (the same host.json, `function.json` files and binary
//! as deployed) the way the Functions host v4 does (shared/reference/functions-protocol.md):
//!
//! * **App**: `host.json`, app settings from `local.settings.json` `Values` (overridden by the
//!   `settings` given to [`Host::load`]), functions in `<app>/<Name>/function.json` only (as the
//!   Functions host reads them); host.json `functions` filters them,
//!   `"disabled": true` / `AzureWebJobs.<Name>.Disabled` skips one. Errors list every problem.
//! * **Handler process**: `customHandler.description` (`defaultExecutablePath`, `arguments` with
//!   `%Setting%`, `workingDirectory`), env = inherited env + app settings +
//!   `FUNCTIONS_CUSTOMHANDLER_PORT`/`_WORKER_ID`, `FUNCTIONS_HTTPWORKER_PORT`/`_ID`,
//!   `FUNCTIONS_APP_ROOT_PATH`; ready on any answer to `GET /` (every 25 ms, 30 s); stdout/stderr
//!   in the host log; restarted with backoff when it exits (invocations wait); its process group
//!   is killed on shutdown.
//! * **Triggers**: `serviceBusTrigger` (REST peek-lock, `maxConcurrentCalls`, lock renewal up to
//!   `maxAutoLockRenewalDuration`, complete on 2xx, abandon otherwise), `eventGridTrigger`
//!   (`/runtime/webhooks/eventgrid?functionName=<Name>`, both handshakes, 500 when any event of a
//!   delivery fails), `timerTrigger` (NCRONTAB / TimeSpan, `%Setting%`, `runOnStartup`,
//!   `useMonitor`), `httpTrigger` (`/<routePrefix>/<route>`, `methods`, `authLevel` with keys
//!   from [`HostConfig`], `code` query or `x-functions-key` header).
//! * **Outputs**: `http` (response), `serviceBus` (REST send), `eventGrid` (topic publish with
//!   `aeg-sas-key` or bearer). Credentials: a managed-identity token (`IDENTITY_ENDPOINT` /
//!   `IDENTITY_HEADER` from app settings or the environment, App Service 2019-08-01 protocol),
//!   or the SAS key of a Service Bus connection string. Extra CA: [`HostConfig::ca_cert_pem`]
//!   or `SSL_CERT_FILE`.
//! * **Admin** on the host port: `GET /_devcloud/host/functions`, `GET /_devcloud/host/invocations`,
//!   `GET /_devcloud/host/logs`, `GET /_devcloud/host/status`,
//!   `POST /_devcloud/host/functions/<Name>/fire` (run a timer now and wait; answers
//!   `{"status":"Succeeded"|"Failed"}`), and the real host's `POST /admin/functions/<Name>` (202).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let host = devcloud_host::Host::load(std::path::Path::new("app"), Default::default())?;
//! let running = host.start(devcloud_host::HostConfig::default()).await?;
//! println!("Functions host on http://{}", running.http_addr);
//! running.fire_timer("Monthly").await?;
//! running.shutdown().await;
//! # Ok(()) }
//! ```

pub mod auth;
pub mod config;
pub mod encoding;
mod host;
pub mod invocation;
pub mod log;
pub mod ncrontab;
pub mod outputs;
mod runtime;
mod server;
pub mod servicebus;
pub mod worker;

pub use config::{ConfigError, FunctionApp};
pub use host::{Host, RunningHost};
pub use log::{InvocationRecord, LogLine};
pub use runtime::HostConfig;
