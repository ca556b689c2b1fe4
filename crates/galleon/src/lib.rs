//! Galleon: small event-driven functions that turn a VHD or an Image Builder run into a published,
//! replicated, announced Azure Compute Gallery image version.

pub mod azure;
pub mod config;
pub mod domain;
pub mod events;
pub mod functions;
pub mod host;
pub mod journal;
pub mod known;
pub mod ledger;
pub mod pace;
pub mod telemetry;

/// An error and its causes as one line, `outer: inner: innermost`, for logs and failure facts.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}
