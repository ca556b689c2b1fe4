//! ISO 8601 durations (`PT1M`, `P1DT2H`), as ARM writes Service Bus and Event Grid time settings.

use chrono::Duration;

/// Parses an ISO 8601 duration of days, hours, minutes and seconds (`P1DT2H`, `PT1M`, `PT30.5S`).
pub fn parse_iso_duration(s: &str) -> Option<Duration> {
    let rest = s.trim().strip_prefix('P')?;
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) => (d, t),
        None => (rest, ""),
    };
    let mut ms: f64 = 0.0;
    let mut any = false;
    let mut eat = |part: &str, units: &[(char, f64)]| -> Option<()> {
        let mut num = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                num.push(c);
            } else {
                let factor = units.iter().find(|(u, _)| *u == c)?.1;
                ms += num.parse::<f64>().ok()? * factor;
                num.clear();
                any = true;
            }
        }
        num.is_empty().then_some(())
    };
    eat(date, &[('D', 86_400_000.0), ('W', 604_800_000.0)])?;
    eat(time, &[('H', 3_600_000.0), ('M', 60_000.0), ('S', 1000.0)])?;
    any.then(|| Duration::milliseconds(ms as i64))
}
