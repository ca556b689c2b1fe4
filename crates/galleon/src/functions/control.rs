//! What the operator's controls share, whichever way a request came (an HTTP call with a function key, or
//! a message on the `galleon-requests` queue): who asked through which invocation, and a refusal as an
//! HTTP status, a code and a message that names the cause and the fix.

use serde_json::{Value, json};

use super::step::{self, Ctx, Emit, StepError};
use crate::{events::Fact, host::Output};

/// Who asked, through what: the invocation (or message) id roots the facts the request makes.
#[derive(Debug, Clone)]
pub struct Asker {
    pub id: String,
    pub traceparent: Option<String>,
    /// The operator's name as the tool sent it, else `operator`.
    pub by: String,
}

impl Asker {
    /// The trace to continue: the caller's, else a new one rooted at `root`.
    pub fn traceparent(&self, root: &str) -> Option<String> {
        self.traceparent
            .clone()
            .or_else(|| Some(crate::events::new_traceparent(root)))
    }
}

/// A control's refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl Refusal {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            code: code.to_owned(),
            message: message.into(),
        }
    }

    /// Azure refused or failed a read or a write the control made: its code and message, verbatim.
    pub fn azure(e: &crate::azure::AzureError, id: &str) -> Refusal {
        tracing::warn!(resource = id, error = %crate::error_chain(e), "a control's Azure call failed");
        let status = if e.is_transient() { 503 } else { 502 };
        Refusal::new(status, e.code(), format!("{id}: {}", e.message()))
    }

    /// The state container could not be read.
    pub fn journal(e: &crate::azure::AzureError) -> Refusal {
        tracing::warn!(error = %crate::error_chain(e), "could not read the run journal");
        Refusal::new(503, "JournalUnreadable", super::runs::why_unreadable(e))
    }

    /// As an HTTP control answers it.
    pub fn output(&self) -> Output {
        super::runs::error(self.status, &self.code, self.message.clone())
    }

    pub fn body(&self) -> Value {
        json!({"error": {"code": self.code, "message": self.message}})
    }
}

/// A JSON body as the host sends it: a value, or text; empty text is no body.
pub fn body(body: &Value, example: &str) -> Result<Value, String> {
    match body {
        Value::String(text) if text.trim().is_empty() => Ok(Value::Null),
        Value::String(text) => {
            serde_json::from_str(text).map_err(|e| format!("body: not JSON ({e}); send {example}"))
        }
        other => Ok(other.clone()),
    }
}

/// Sends the fact a control made; trouble is a refusal (503: worth another try).
pub async fn send(ctx: &Ctx, fact: Result<Fact, StepError>) -> Result<(), Refusal> {
    let fact = fact.map_err(|e| Refusal::new(500, "FactUnbuildable", format!("{e:?}")))?;
    step::send(ctx, &[Emit::now(fact)])
        .await
        .map_err(|e| Refusal::new(503, "BusUnavailable", format!("{e:?}; try again")))
}
