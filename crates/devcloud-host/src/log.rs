//! The host log (handler output, invocation logs, host events) and the record of recent
//! invocations, both kept in memory for the admin API and mirrored to `tracing`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::Serialize;

const MAX_LINES: usize = 2000;
const MAX_INVOCATIONS: usize = 500;

#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    pub time: String,
    pub level: &'static str,
    pub source: String,
    pub message: String,
}

/// A shared, bounded host log.
#[derive(Clone, Default)]
pub struct HostLog {
    lines: Arc<Mutex<VecDeque<LogLine>>>,
}

impl HostLog {
    fn push(&self, level: &'static str, source: &str, message: &str) {
        match level {
            "error" => tracing::error!(target: "devcloud_host", source, "{message}"),
            "warn" => tracing::warn!(target: "devcloud_host", source, "{message}"),
            _ => tracing::info!(target: "devcloud_host", source, "{message}"),
        }
        let line = LogLine {
            time: crate::encoding::iso(&chrono::Utc::now()),
            level,
            source: source.to_string(),
            message: message.to_string(),
        };
        if let Ok(mut l) = self.lines.lock() {
            if l.len() >= MAX_LINES {
                l.pop_front();
            }
            l.push_back(line);
        }
    }

    pub fn info(&self, source: &str, message: &str) {
        self.push("info", source, message);
    }

    pub fn warn(&self, source: &str, message: &str) {
        self.push("warn", source, message);
    }

    pub fn error(&self, source: &str, message: &str) {
        self.push("error", source, message);
    }

    pub fn lines(&self) -> Vec<LogLine> {
        self.lines
            .lock()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// One finished invocation, as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InvocationRecord {
    pub id: String,
    pub function: String,
    pub trigger: String,
    pub started: String,
    pub duration_ms: u64,
    /// `Succeeded` or `Failed`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How many output items were written (messages, events, HTTP responses).
    pub outputs: usize,
}

#[derive(Clone, Default)]
pub struct Invocations {
    recent: Arc<Mutex<VecDeque<InvocationRecord>>>,
}

impl Invocations {
    pub fn push(&self, r: InvocationRecord) {
        if let Ok(mut l) = self.recent.lock() {
            if l.len() >= MAX_INVOCATIONS {
                l.pop_front();
            }
            l.push_back(r);
        }
    }

    pub fn list(&self) -> Vec<InvocationRecord> {
        self.recent
            .lock()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }
}
