//! A local Azure Functions host: reads host.json and function.json, starts the custom handler, drives its triggers.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let host = devcloud_host::Host::load(std::path::Path::new("app"), Default::default())?;
//! let running = host.start(devcloud_host::HostConfig::default()).await?;
//! println!("Functions host on http://{}", running.http_addr);
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
mod server;
pub mod servicebus;
pub mod worker;

pub use config::{ConfigError, FunctionApp};
pub use host::{Host, HostConfig, RunningHost};
pub use log::{InvocationRecord, LogLine};
