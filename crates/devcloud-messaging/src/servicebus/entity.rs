//! A Service Bus entity's settings, with Azure's defaults, and what a broker operation can answer.

use chrono::Duration;

/// The application property Service Bus sets on a dead-lettered message: why.
pub const DEAD_LETTER_REASON: &str = "DeadLetterReason";
/// The application property Service Bus sets on a dead-lettered message: the details.
pub const DEAD_LETTER_DESCRIPTION: &str = "DeadLetterErrorDescription";

/// Standard tier message size limit (body + properties).
pub const STANDARD_MAX_MESSAGE_SIZE: usize = 256 * 1024;

/// Settings of a queue or subscription (the receiving side) and of a queue or topic (the sending side).
/// The defaults are Azure's for a new entity: lock 1 minute, 10 deliveries, no TTL, no dead-lettering on
/// expiry, **no duplicate detection** (`requiresDuplicateDetection: false`).
#[derive(Debug, Clone)]
pub struct EntityConfig {
    pub lock_duration: Duration,
    pub max_delivery_count: u32,
    /// Entity default message TTL; a message's own TTL can only shorten it.
    pub default_ttl: Option<Duration>,
    pub dead_lettering_on_expiration: bool,
    /// `Some(window)` = `requiresDuplicateDetection: true` with `duplicateDetectionHistoryTimeWindow`
    /// (queues and topics). Off by default, as in Azure; it cannot be switched on or off later.
    pub duplicate_detection_window: Option<Duration>,
    pub max_message_size: usize,
    /// `forwardDeadLetteredMessagesTo`: a queue that receives this entity's dead letters instead of
    /// its own dead-letter sub-queue, with `DeadLetterSource` naming this entity.
    pub forward_dead_letters_to: Option<String>,
}

impl Default for EntityConfig {
    fn default() -> Self {
        EntityConfig {
            lock_duration: Duration::seconds(60),
            max_delivery_count: 10,
            default_ttl: None,
            dead_lettering_on_expiration: false,
            duplicate_detection_window: None,
            max_message_size: STANDARD_MAX_MESSAGE_SIZE,
            forward_dead_letters_to: None,
        }
    }
}

/// Errors of broker operations, mapped to the REST status codes by the HTTP layer.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BrokerError {
    #[error("the messaging entity '{0}' could not be found")]
    EntityNotFound(String),
    #[error("the message of {size} bytes exceeds the maximum size of {max} bytes")]
    MessageTooLarge { size: usize, max: usize },
    #[error("{0}")]
    PropertiesTooLarge(String),
    #[error("the lock supplied is invalid: it has expired, or the message was already removed")]
    LockLost,
    #[error("sending to '{0}' is not supported: send to the queue or topic")]
    CannotSendHere(String),
    #[error("{0}")]
    BadRequest(String),
    /// Azure refuses to change `requiresDuplicateDetection` of an existing queue or topic.
    #[error(
        "SubCode=40000. The value for the 'requiresDuplicateDetection' property of an existing {kind} cannot be changed."
    )]
    DuplicateDetectionImmutable { kind: &'static str },
}
