//! Where each log line goes, so that it reaches Application Insights exactly once and with its severity,
//! as the Functions host reads a custom handler (shared/reference/functions-protocol.md §1.3, §3.1):
//!
//! - the `Logs` array of an invocation's answer is logged at Information on that invocation: info, debug
//!   and trace lines emitted inside an invocation go there, and only there;
//! - stdout lines are logged at Information (not tied to an invocation): info and lower lines outside an
//!   invocation, and an invocation's lines when its answer is a failure (the host ignores `Logs` then);
//! - stderr lines are logged at Warning when they contain "warn" (any case), else at Error: warnings and
//!   errors go to stderr, always, and a JSON error line has any "warn" in it escaped (`w\u0061rn`, the
//!   same text once parsed) so it stays an Error.

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

tokio::task_local! {
    static BUFFER: Arc<Mutex<Vec<String>>>;
}

/// Most lines one invocation returns in `Logs`; more are counted, not kept.
const MAX_LINES: usize = 200;

/// A stream log lines can be written to.
#[derive(Debug, Clone)]
pub enum Sink {
    Stdout,
    Stderr,
    /// Lines kept in memory (tests).
    Memory(Arc<Mutex<Vec<String>>>),
}

impl Sink {
    fn write_line(&self, line: &str) {
        match self {
            Sink::Stdout => stdout::write_line(line),
            Sink::Stderr => {
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            }
            Sink::Memory(lines) => {
                if let Ok(mut lines) = lines.lock() {
                    lines.push(line.to_owned());
                }
            }
        }
    }
}

/// stdout, written in batches: Information lines (one or more per invocation) are gathered and written
/// together when the runtime has nothing else to do ([`flush`], from the runtime's park hook), when a
/// batch is big, or when the oldest line in it has waited long. One write per batch instead of one per line
/// (each write to the host's pipe also wakes the host's reader). Warnings and errors go to stderr at once,
/// unbatched.
pub mod stdout {
    use std::{
        io::Write,
        sync::Mutex,
        time::{Duration, Instant},
    };

    /// Lines waiting, and when the first of them was written.
    static PENDING: Mutex<(Vec<u8>, Option<Instant>)> = Mutex::new((Vec::new(), None));

    /// A batch this big is written at once.
    const BATCH_BYTES: usize = 32 * 1024;
    /// No line waits longer than this while others keep coming.
    const MAX_WAIT: Duration = Duration::from_millis(100);

    pub(super) fn write_line(line: &str) {
        let Ok(mut pending) = PENDING.lock() else {
            let _ = writeln!(std::io::stdout().lock(), "{line}");
            return;
        };
        let (buf, since) = &mut *pending;
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        let first = *since.get_or_insert_with(Instant::now);
        if buf.len() >= BATCH_BYTES || first.elapsed() >= MAX_WAIT {
            write_out(buf);
            *since = None;
        }
    }

    /// Writes the lines waiting, if any. Called when a runtime worker is about to park, and at exit.
    pub fn flush() {
        if let Ok(mut pending) = PENDING.lock()
            && !pending.0.is_empty()
        {
            write_out(&mut pending.0);
            pending.1 = None;
        }
    }

    fn write_out(buf: &mut Vec<u8>) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(buf);
        let _ = out.flush();
        buf.clear();
    }
}

/// The `MakeWriter` of the process's fmt layer: picks each line's destination from its level and from
/// whether it was emitted inside an invocation ([`capture`]).
#[derive(Debug, Clone)]
pub struct Route {
    json: bool,
    stdout: Sink,
    stderr: Sink,
}

impl Route {
    /// The process's own streams; `json` when lines are JSON objects (then error lines can be kept free of
    /// "warn" without changing their meaning).
    pub fn new(json: bool) -> Route {
        Route::to(json, Sink::Stdout, Sink::Stderr)
    }

    pub fn to(json: bool, stdout: Sink, stderr: Sink) -> Route {
        Route {
            json,
            stdout,
            stderr,
        }
    }
}

enum Destination {
    Sink(Sink),
    Invocation(Arc<Mutex<Vec<String>>>),
}

/// One formatted line, written where it belongs when the fmt layer drops the writer.
pub struct LineWriter {
    bytes: Vec<u8>,
    destination: Destination,
    /// Escape "warn" (an error line in JSON).
    escape_warn: bool,
}

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.bytes);
        let line = text.trim_end_matches(['\r', '\n']);
        deliver(&self.destination, self.escape_warn, line.to_owned());
    }
}

/// Writes one finished line where it belongs.
fn deliver(destination: &Destination, escape: bool, mut line: String) {
    if line.is_empty() {
        return;
    }
    if escape {
        line = escape_warn(&line);
    }
    match destination {
        Destination::Sink(sink) => sink.write_line(&line),
        Destination::Invocation(buffer) => {
            if let Ok(mut lines) = buffer.lock() {
                if lines.len() < MAX_LINES {
                    lines.push(line);
                } else if lines.len() == MAX_LINES {
                    lines.push(
                        "… further log lines of this invocation were dropped (at most 200 are kept)"
                            .into(),
                    );
                }
            }
        }
    }
}

/// `warn` in any case with its `a` as a JSON escape: the host's "contains warn" test no longer matches,
/// and a JSON reader reads the same text. Only for JSON lines (every letter of one is inside a string).
fn escape_warn(line: &str) -> String {
    let lower = line.to_ascii_lowercase();
    let mut out = String::with_capacity(line.len() + 8);
    let mut i = 0;
    while let Some(found) = lower[i..].find("warn") {
        let at = i + found;
        out.push_str(&line[i..at + 1]);
        out.push_str(if &line[at + 1..at + 2] == "A" {
            "\\u0041"
        } else {
            "\\u0061"
        });
        i = at + 2;
    }
    out.push_str(&line[i..]);
    out
}

impl<'a> MakeWriter<'a> for Route {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            bytes: Vec::new(),
            destination: Destination::Sink(self.stdout.clone()),
            escape_warn: false,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> LineWriter {
        let level = *meta.level();
        LineWriter {
            bytes: Vec::new(),
            destination: self.destination(level),
            escape_warn: self.json && level == Level::ERROR,
        }
    }
}

impl Route {
    fn destination(&self, level: Level) -> Destination {
        // tracing orders levels by verbosity: ERROR < WARN < INFO < DEBUG < TRACE.
        if level <= Level::WARN {
            Destination::Sink(self.stderr.clone())
        } else {
            match BUFFER.try_with(Arc::clone) {
                Ok(buffer) => Destination::Invocation(buffer),
                Err(_) => Destination::Sink(self.stdout.clone()),
            }
        }
    }

    /// Sends one finished line (no newline) of severity `level` where it belongs.
    pub fn send(&self, level: Level, line: String) {
        let escape = self.json && level == Level::ERROR;
        deliver(&self.destination(level), escape, line);
    }
}

/// Runs `future`, returning its result and the info (and lower) log lines it emitted, for `Logs`.
pub async fn capture<F: std::future::Future>(future: F) -> (F::Output, Vec<String>) {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let out = BUFFER.scope(buffer.clone(), future).await;
    let lines = buffer
        .lock()
        .map(|mut l| std::mem::take(&mut *l))
        .unwrap_or_default();
    (out, lines)
}

/// An invocation's lines when its answer is a failure: the host ignores that answer's `Logs`, so they go
/// to stdout (Information), still once.
pub fn to_stdout(lines: &[String]) {
    for line in lines {
        Sink::Stdout.write_line(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    fn lines(sink: &Sink) -> Vec<String> {
        match sink {
            Sink::Memory(l) => l.lock().map(|l| l.clone()).unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// The severity the Functions host gives a line (WorkerProcess: stdout → Information; stderr →
    /// Warning when it contains "warn", else Error).
    fn host_severity(stream: &str, line: &str) -> &'static str {
        match stream {
            "stdout" | "Logs" => "Information",
            _ if line.to_ascii_lowercase().contains("warn") => "Warning",
            _ => "Error",
        }
    }

    #[test]
    fn each_line_once_with_its_severity() {
        for json in [true, false] {
            let stdout = Sink::Memory(Arc::default());
            let stderr = Sink::Memory(Arc::default());
            let route = Route::to(json, stdout.clone(), stderr.clone());
            let dispatch = if json {
                tracing::Dispatch::new(
                    tracing_subscriber::registry()
                        .with(tracing_subscriber::fmt::layer().json().with_writer(route)),
                )
            } else {
                tracing::Dispatch::new(
                    tracing_subscriber::registry().with(
                        tracing_subscriber::fmt::layer()
                            .with_ansi(false)
                            .with_writer(route),
                    ),
                )
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime");
            let emit = || async {
                tracing::info!(step = "PublishVersion", "info inside");
                tracing::warn!("throttled; warning inside");
                tracing::error!(
                    detail = "a Warning-looking word",
                    "error inside: WARNING text"
                );
            };
            let logs = tracing::dispatcher::with_default(&dispatch, || {
                tracing::info!("info outside");
                runtime.block_on(capture(emit())).1
            });
            let (out, err) = (lines(&stdout), lines(&stderr));
            let mut seen: Vec<(&str, String)> = Vec::new();
            seen.extend(logs.iter().map(|l| ("Logs", l.clone())));
            seen.extend(out.iter().map(|l| ("stdout", l.clone())));
            seen.extend(err.iter().map(|l| ("stderr", l.clone())));
            for (message, stream, severity) in [
                ("info outside", "stdout", "Information"),
                ("info inside", "Logs", "Information"),
                ("throttled", "stderr", "Warning"),
                ("error inside", "stderr", "Error"),
            ] {
                let found: Vec<_> = seen.iter().filter(|(_, l)| l.contains(message)).collect();
                assert_eq!(found.len(), 1, "json={json}: '{message}' once: {seen:?}");
                let (s, line) = found[0];
                assert_eq!(*s, stream, "json={json}: {line}");
                if json {
                    assert_eq!(host_severity(s, line), severity, "{line}");
                    let parsed: serde_json::Value =
                        serde_json::from_str(line).expect("a JSON line");
                    if message == "error inside" {
                        assert_eq!(
                            parsed.pointer("/fields/message").and_then(|m| m.as_str()),
                            Some("error inside: WARNING text"),
                            "the escaped line reads the same"
                        );
                    }
                } else if message != "error inside" {
                    assert_eq!(host_severity(s, line), severity, "{line}");
                }
            }
            assert_eq!(seen.len(), 4, "json={json}: nothing else: {seen:?}");
        }
    }

    #[test]
    fn warn_escape_keeps_json_meaning() {
        let line = r#"{"level":"ERROR","fields":{"message":"Warn: forewarned","warnings":1}}"#;
        let escaped = escape_warn(line);
        assert!(!escaped.to_ascii_lowercase().contains("warn"), "{escaped}");
        let a: serde_json::Value = serde_json::from_str(line).expect("json");
        let b: serde_json::Value = serde_json::from_str(&escaped).expect("json");
        assert_eq!(a, b);
    }
}
