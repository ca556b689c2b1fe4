//! The local Event Grid: custom topics with the publish endpoint, the blob storage system topic
//! (by watching Azurite), the resource events system topic (fed by the local ARM), subscriptions
//! with filters and webhook delivery. Start it with [`serve`].

pub mod blobwatch;
pub mod delivery;
pub mod filter;
pub mod model;
pub mod resources;
pub mod sas;
pub mod server;

pub use blobwatch::{BlobWatchConfig, StorageAuth};
pub use delivery::{DeliverySettings, Destination, SubscriptionConfig};
pub use filter::{AdvancedFilter, EventFilter, Operator};
pub use model::Schema;
pub use resources::ResourcePublisher;
pub use server::{
    EventGridConfig, RESOURCES_TOPIC, RunningEventGrid, STORAGE_TOPIC, TopicConfig, serve,
};
