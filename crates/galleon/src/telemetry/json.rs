//! The JSON log line format, as a tracing layer of its own: the same shape as tracing-subscriber's JSON
//! formatter (`timestamp`, `level`, `fields` with `message`, `target`, and the current `span` with its
//! fields and `name`), written straight into one string per line. tracing-subscriber keeps span fields as
//! JSON text and parses them back into a map for every line (its own source calls this "far from
//! efficient"); here a span's fields are kept as ready JSON members, so a line costs one pass and a few
//! copies. Lines go where [`crate::host::Route`] sends them.

use std::{
    fmt::{self, Write as _},
    time::{SystemTime, UNIX_EPOCH},
};

use tracing::{
    Event, Subscriber,
    field::{Field, Visit},
    span::{Attributes, Id, Record},
};
use tracing_subscriber::{Layer, layer::Context, registry::LookupSpan};

use crate::host::Route;

/// Writes every event as one JSON line through `route`.
#[derive(Debug, Clone)]
pub struct JsonLayer {
    route: Route,
}

impl JsonLayer {
    pub fn new(route: Route) -> JsonLayer {
        JsonLayer { route }
    }
}

/// A span's fields, each as a ready JSON member value, in the order first recorded.
#[derive(Debug, Default)]
struct SpanFields(Vec<(&'static str, String)>);

impl SpanFields {
    fn set(&mut self, name: &'static str, json: String) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = json,
            None => self.0.push((name, json)),
        }
    }
}

/// Records span fields as JSON values.
struct SpanVisitor<'a>(&'a mut SpanFields);

impl Visit for SpanVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        let mut v = String::new();
        push_f64(&mut v, value);
        self.0.set(field.name(), v);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.set(field.name(), value.to_string());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.set(field.name(), value.to_string());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.set(field.name(), value.to_string());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        let mut v = String::with_capacity(value.len() + 2);
        push_json_str(&mut v, value);
        self.0.set(field.name(), v);
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let mut v = String::new();
        push_json_debug(&mut v, value);
        self.0.set(field.name(), v);
    }
}

/// Writes an event's fields as the members of the `fields` object. Records of the `log` crate (bridged by
/// tracing-log) carry their origin as `log.*` fields: those are left out, and `log.target` kept as the
/// line's target, as tracing-subscriber's formatter does.
struct EventVisitor<'a> {
    line: &'a mut String,
    first: bool,
    log_target: Option<String>,
}

impl EventVisitor<'_> {
    /// Starts a member for `field`; false for a `log.*` field, which is not written.
    fn key(&mut self, field: &Field) -> bool {
        if field.name().starts_with("log.") {
            return false;
        }
        if !self.first {
            self.line.push(',');
        }
        self.first = false;
        let name = field.name();
        push_json_str(self.line, name.strip_prefix("r#").unwrap_or(name));
        self.line.push(':');
        true
    }
}

impl Visit for EventVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        if self.key(field) {
            push_f64(self.line, value);
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.key(field) {
            let _ = write!(self.line, "{value}");
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.key(field) {
            let _ = write!(self.line, "{value}");
        }
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.key(field) {
            self.line.push_str(if value { "true" } else { "false" });
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "log.target" {
            self.log_target = Some(value.to_owned());
        }
        if self.key(field) {
            push_json_str(self.line, value);
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.key(field) {
            push_json_debug(self.line, value);
        }
    }
}

impl<S> Layer<S> for JsonLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = SpanFields::default();
        attrs.record(&mut SpanVisitor(&mut fields));
        span.extensions_mut().insert(fields);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(fields) = extensions.get_mut::<SpanFields>() {
            values.record(&mut SpanVisitor(fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut line = String::with_capacity(384);
        line.push_str("{\"timestamp\":\"");
        push_timestamp(&mut line, SystemTime::now());
        line.push_str("\",\"level\":\"");
        line.push_str(meta.level().as_str());
        line.push_str("\",\"fields\":{");
        let mut visitor = EventVisitor {
            line: &mut line,
            first: true,
            log_target: None,
        };
        event.record(&mut visitor);
        let log_target = visitor.log_target.take();
        line.push_str("},\"target\":");
        push_json_str(&mut line, log_target.as_deref().unwrap_or(meta.target()));
        if let Some(span) = ctx.event_span(event) {
            line.push_str(",\"span\":{");
            let extensions = span.extensions();
            if let Some(fields) = extensions.get::<SpanFields>() {
                for (name, value) in &fields.0 {
                    push_json_str(&mut line, name);
                    line.push(':');
                    line.push_str(value);
                    line.push(',');
                }
            }
            line.push_str("\"name\":");
            push_json_str(&mut line, span.name());
            line.push('}');
        }
        line.push('}');
        self.route.send(*meta.level(), line);
    }
}

/// A finite float as JSON number text, anything else as `null` (as serde_json writes it).
fn push_f64(out: &mut String, value: f64) {
    if value.is_finite() {
        let _ = write!(out, "{value}");
    } else {
        out.push_str("null");
    }
}

/// `value` as a JSON string literal.
pub(crate) fn push_json_str(out: &mut String, value: &str) {
    out.push('"');
    push_escaped(out, value);
    out.push('"');
}

/// `value` escaped for the inside of a JSON string.
fn push_escaped(out: &mut String, value: &str) {
    let bytes = value.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&value[start..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&value[start..]);
}

/// A value's `Debug` text as a JSON string literal (how tracing-subscriber writes `%` and `?` fields and
/// the message).
fn push_json_debug(out: &mut String, value: &dyn fmt::Debug) {
    struct Escaping<'a>(&'a mut String);
    impl fmt::Write for Escaping<'_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            push_escaped(self.0, s);
            Ok(())
        }
    }
    out.push('"');
    let _ = write!(Escaping(out), "{value:?}");
    out.push('"');
}

/// RFC 3339 UTC with microseconds, `2026-12-01T10:39:26.093640Z`, as tracing-subscriber writes it.
fn push_timestamp(out: &mut String, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_micros()
    );
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
#[path = "json_tests.rs"]
mod tests;
