//! Local Service Bus (queues, topics, subscriptions, peek-lock) and Event Grid (blob events, custom topics, webhook delivery).

pub mod auth;
pub mod httpserv;
pub mod servicebus;
