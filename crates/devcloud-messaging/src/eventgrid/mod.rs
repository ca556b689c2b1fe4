//! The local Event Grid: custom topics with the publish endpoint, the blob storage system topic
//! (by watching Azurite), subscriptions with filters and webhook delivery. Start it with [`serve`].

pub mod delivery;
pub mod model;
