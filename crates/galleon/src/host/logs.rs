//! Captures the log lines an invocation emits through `tracing`, so they go back to the host in `Logs`
//! (where Application Insights ties them to the invocation) as well as to the process log.

use std::{
    fmt::Write as _,
    sync::{Arc, Mutex},
};

use tracing::{
    Event, Subscriber,
    field::{Field, Visit},
};
use tracing_subscriber::{Layer, layer::Context};

tokio::task_local! {
    static BUFFER: Arc<Mutex<Vec<String>>>;
}

/// Most lines one invocation returns in `Logs`; more are counted, not kept.
const MAX_LINES: usize = 200;

/// A `tracing` layer that copies events emitted inside [`capture`] into that invocation's buffer.
#[derive(Debug, Default, Clone, Copy)]
pub struct CaptureLayer;

impl<S: Subscriber> Layer<S> for CaptureLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let _ = BUFFER.try_with(|buffer| {
            let mut line = String::new();
            let _ = write!(line, "{} ", event.metadata().level());
            event.record(&mut LineVisitor(&mut line));
            if let Ok(mut lines) = buffer.lock() {
                if lines.len() < MAX_LINES {
                    lines.push(line);
                } else if lines.len() == MAX_LINES {
                    lines.push(
                        "… further log lines of this invocation are in the process log".into(),
                    );
                }
            }
        });
    }
}

struct LineVisitor<'a>(&'a mut String);

impl Visit for LineVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={}", field.name(), value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={:?}", field.name(), value);
        }
    }
}

/// Runs `future`, returning its result and the log lines it emitted.
pub async fn capture<F: std::future::Future>(future: F) -> (F::Output, Vec<String>) {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let out = BUFFER.scope(buffer.clone(), future).await;
    let lines = buffer
        .lock()
        .map(|mut l| std::mem::take(&mut *l))
        .unwrap_or_default();
    (out, lines)
}
