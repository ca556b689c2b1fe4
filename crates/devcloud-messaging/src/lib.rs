//! Local Service Bus (queues, topics, subscriptions, peek-lock) and Event Grid (blob events, custom topics, webhook delivery).

pub mod auth;
pub mod compose;
pub mod eventgrid;
pub mod httpserv;
pub mod inspect;
pub mod iso;
pub mod rbac;
pub mod routing;
pub mod servicebus;

pub use compose::{MessagingOptions, StartError, start};
pub use routing::Routing;
