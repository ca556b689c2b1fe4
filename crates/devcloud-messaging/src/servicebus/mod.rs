//! The local Service Bus: a broker ([`broker`]) behind the Service Bus REST API ([`rest`]), with an
//! admin endpoint under `/_devcloud/`. Start it with [`serve`].

pub mod broker;
pub mod entity;
pub mod filter;
pub mod message;
pub mod outage;
pub mod rest;
pub mod store;

#[cfg(test)]
mod broker_tests;

pub use broker::{EntityConfig, Namespace, ReceiveMode, ReceivePath};
pub use filter::{CorrelationFilter, Filter, Rule};
pub use rest::{
    RunningServiceBus, ServiceBus, ServiceBusConfig, SubscriptionSpec, TopicSpec, serve,
};
