//! A local Azure Resource Manager for Compute images, galleries and Image Builder, faithful enough for the official clients.
//!
//! It also serves what those clients need around them: resource groups (required, as in Azure),
//! subscriptions and locations, and a read-only view of the Azurite storage account. Lists page with
//! `nextLink`, PATCH merges, and long-running operations can be answered with `Location` only
//! ([`ArmConfig`]'s `location_only`, or the `locationOnly` fault action).
//!
//! Start it with [`serve`]; it listens on 127.0.0.1 over HTTPS (with the devcloud CA) or HTTP, checks the
//! bearer tokens of [`devcloud_core::Identity`], and keeps state in memory (optionally snapshotted).
//! Admin endpoints live under `/_devcloud/` (see [`admin`]). Writes, deletes and actions raise
//! resource events for Event Grid through a sink ([`Arm::set_event_sink`], see [`events`]).

pub mod admin;
pub mod arm;
pub mod blob;
pub mod config;
pub mod error;
pub mod event_pump;
pub mod events;
pub mod faults;
pub mod handlers;
pub mod model;
pub mod names;
pub mod osdisk;
pub mod platform;
pub mod qemu;
pub mod running;
pub mod server;
pub mod stack;
pub mod tags;
pub mod tenancy;

pub use arm::Arm;
pub use config::{
    ApiVersions, ArmConfig, Bucket, DEFAULT_STORAGE_RESOURCE_GROUP, DEFAULT_SUBSCRIPTION_ID,
    LatencyModel, Limits, ResourceGroupSeed, StorageAccount, Throttling, Work,
};
pub use error::{ArmError, INVENTED_CODES};
pub use events::{EventSink, ResourceEvent};
pub use faults::{FaultAction, FaultRule};
pub use handlers::imagebuilder;
pub use platform::PlatformImage;
pub use running::{RunningArm, serve};
pub use stack::{Stack, StackOptions};
pub use tenancy::SubscriptionSeed;
