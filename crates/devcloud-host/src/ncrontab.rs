//! NCRONTAB schedules as the timer trigger reads them: six fields
//! `{second} {minute} {hour} {day} {month} {day-of-week}` (or a `hh:mm:ss` TimeSpan), with the
//! next-occurrence computation. Like NCrontab (the library the Functions host's `CronSchedule` wraps),
//! day-of-month and day-of-week must BOTH match (not cron's OR), day-of-week is 0-6 (Sunday = 0, no
//! 7), and names are any prefix of the English name (`WED`, `Wednesday`). See docs/schedules.md.

use chrono::{DateTime, Datelike, Duration, TimeZone, Timelike, Utc};

/// A parsed timer schedule.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    Cron(Cron),
    /// A TimeSpan schedule (`"00:05:00"`): every interval since the host started.
    Interval(std::time::Duration),
}

/// A six-field NCRONTAB expression: one bit set per allowed value.
#[derive(Debug, Clone, PartialEq)]
pub struct Cron {
    seconds: u64,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
}

const MONTHS: [&str; 12] = [
    "JANUARY",
    "FEBRUARY",
    "MARCH",
    "APRIL",
    "MAY",
    "JUNE",
    "JULY",
    "AUGUST",
    "SEPTEMBER",
    "OCTOBER",
    "NOVEMBER",
    "DECEMBER",
];
const DAYS: [&str; 7] = [
    "SUNDAY",
    "MONDAY",
    "TUESDAY",
    "WEDNESDAY",
    "THURSDAY",
    "FRIDAY",
    "SATURDAY",
];

impl Schedule {
    /// Parse a schedule string (already `%Setting%`-resolved).
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let fields: Vec<&str> = t.split_whitespace().collect();
        if fields.len() == 1 && t.contains(':') {
            return parse_timespan(t).map(Schedule::Interval);
        }
        if fields.len() != 6 {
            return Err(format!(
                "schedule {t:?} must have six fields {{second}} {{minute}} {{hour}} {{day}} {{month}} {{day-of-week}} (found {})",
                fields.len()
            ));
        }
        Ok(Schedule::Cron(Cron {
            seconds: parse_field(fields[0], 0, 59, &[], "second")?,
            minutes: parse_field(fields[1], 0, 59, &[], "minute")?,
            hours: parse_field(fields[2], 0, 23, &[], "hour")?,
            days: parse_field(fields[3], 1, 31, &[], "day")?,
            months: parse_field(fields[4], 1, 12, &MONTHS, "month")?,
            // NCrontab's day-of-week field is 0-6: unlike Vixie cron, 7 is out of range.
            weekdays: parse_field(fields[5], 0, 6, &DAYS, "day-of-week")?,
        }))
    }

    /// The first occurrence strictly after `after`.
    pub fn next_after(
        &self,
        after: DateTime<Utc>,
        started: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Cron(c) => c.next_after(after),
            Schedule::Interval(d) => {
                let step = Duration::from_std(*d).ok()?;
                if step <= Duration::zero() {
                    return None;
                }
                let elapsed = after - started;
                let n = if elapsed < Duration::zero() {
                    0
                } else {
                    elapsed.num_milliseconds() / step.num_milliseconds().max(1)
                };
                let mut next = started + step * (n as i32);
                while next <= after {
                    next += step;
                }
                Some(next)
            }
        }
    }

    /// The shortest gap between two occurrences near `from` (decides `useMonitor`'s default).
    pub fn period_at_least_a_minute(&self, from: DateTime<Utc>) -> bool {
        match self {
            Schedule::Interval(d) => d.as_secs() >= 60,
            Schedule::Cron(c) => {
                let Some(a) = c.next_after(from) else {
                    return true;
                };
                let Some(b) = c.next_after(a) else {
                    return true;
                };
                b - a >= Duration::minutes(1)
            }
        }
    }
}

impl Cron {
    fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut t = after.with_nanosecond(0)? + Duration::seconds(1);
        let limit = after + Duration::days(366 * 5);
        while t <= limit {
            if !bit(self.months, t.month()) {
                let (y, m) = if t.month() == 12 {
                    (t.year() + 1, 1)
                } else {
                    (t.year(), t.month() + 1)
                };
                t = Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single()?;
                continue;
            }
            if !bit(self.days, t.day()) || !bit(self.weekdays, t.weekday().num_days_from_sunday()) {
                t = Utc
                    .with_ymd_and_hms(t.year(), t.month(), t.day(), 0, 0, 0)
                    .single()?
                    + Duration::days(1);
                continue;
            }
            if !bit(self.hours, t.hour()) {
                t = t.with_minute(0)?.with_second(0)? + Duration::hours(1);
                continue;
            }
            if !bit(self.minutes, t.minute()) {
                t = t.with_second(0)? + Duration::minutes(1);
                continue;
            }
            if !bit(self.seconds, t.second()) {
                t += Duration::seconds(1);
                continue;
            }
            return Some(t);
        }
        None
    }
}

fn bit(mask: u64, v: u32) -> bool {
    mask & (1u64 << v) != 0
}

fn parse_value(s: &str, names: &[&str], min: u32) -> Option<u32> {
    if let Ok(n) = s.parse::<u32>() {
        return Some(n);
    }
    // NCrontab: the first name the text is a (case-insensitive) prefix of.
    let upper = s.to_ascii_uppercase();
    if upper.is_empty() {
        return None;
    }
    names
        .iter()
        .position(|n| n.starts_with(&upper))
        .map(|i| i as u32 + min)
}

fn parse_field(field: &str, min: u32, max: u32, names: &[&str], what: &str) -> Result<u64, String> {
    let err = |m: &str| format!("invalid {what} field {field:?}: {m}");
    let mut mask = 0u64;
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().map_err(|_| err("bad step"))?),
            None => (part, 1),
        };
        if step == 0 {
            return Err(err("step must be positive"));
        }
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            let a = parse_value(a, names, min).ok_or_else(|| err("bad range start"))?;
            let b = parse_value(b, names, min).ok_or_else(|| err("bad range end"))?;
            (a, b)
        } else {
            let a = parse_value(range, names, min).ok_or_else(|| err("bad value"))?;
            // `a/n` runs from a to the field maximum.
            (a, if part.contains('/') { max } else { a })
        };
        if lo < min || hi > max || lo > hi {
            return Err(err(&format!("values must be within {min}-{max}")));
        }
        let mut v = lo;
        while v <= hi {
            mask |= 1u64 << v;
            v += step;
        }
    }
    Ok(mask)
}

fn parse_timespan(s: &str) -> Result<std::time::Duration, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let nums: Result<Vec<f64>, _> = parts.iter().map(|p| p.parse::<f64>()).collect();
    match nums.as_deref() {
        Ok([h, m, sec]) if *h >= 0.0 && *m >= 0.0 && *sec >= 0.0 => Ok(
            std::time::Duration::from_secs_f64(h * 3600.0 + m * 60.0 + sec),
        ),
        _ => Err(format!(
            "invalid TimeSpan schedule {s:?} (expected hh:mm:ss)"
        )),
    }
}

/// Parse a host.json TimeSpan (`"00:05:00"`, `"1.00:00:00"`); `None` for `-1` / invalid.
pub fn parse_host_timespan(s: &str) -> Option<std::time::Duration> {
    let s = s.trim();
    let (days, rest) = match s.split_once('.') {
        Some((d, r)) if r.contains(':') && !d.contains(':') => (d.parse::<f64>().ok()?, r),
        _ => (0.0, s),
    };
    let span = parse_timespan(rest).ok()?;
    Some(span + std::time::Duration::from_secs_f64(days * 86400.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn next_occurrences_table() {
        let cases = [
            (
                "0 */5 * * * *",
                "2024-01-01T10:02:30Z",
                "2024-01-01T10:05:00Z",
            ),
            (
                "0 */1 * * * *",
                "2024-01-01T10:05:00Z",
                "2024-01-01T10:06:00Z",
            ),
            (
                "*/10 * * * * *",
                "2024-01-01T10:00:05Z",
                "2024-01-01T10:00:10Z",
            ),
            (
                "0 0 0 1 * *",
                "2024-01-15T00:00:00Z",
                "2024-02-01T00:00:00Z",
            ),
            (
                "0 0 0 1 * *",
                "2024-12-02T00:00:00Z",
                "2025-01-01T00:00:00Z",
            ),
            (
                "0 30 9 * * 1-5",
                "2024-06-07T10:00:00Z",
                "2024-06-10T09:30:00Z",
            ),
            (
                "0 30 9 * * MON-FRI",
                "2024-06-07T10:00:00Z",
                "2024-06-10T09:30:00Z",
            ),
            (
                "0 0 12 * * SUN",
                "2024-06-03T00:00:00Z",
                "2024-06-09T12:00:00Z",
            ),
            (
                "0 0 12 * * Sunday",
                "2024-06-03T00:00:00Z",
                "2024-06-09T12:00:00Z",
            ),
            (
                "0 0 0 29 FEB *",
                "2024-03-01T00:00:00Z",
                "2028-02-29T00:00:00Z",
            ),
            (
                "5,10 0 0 * * *",
                "2024-01-01T00:00:05Z",
                "2024-01-01T00:00:10Z",
            ),
            (
                "0 0 9-17/4 * * *",
                "2024-01-01T09:00:00Z",
                "2024-01-01T13:00:00Z",
            ),
            (
                "0 0 3/6 * * *",
                "2024-01-01T04:00:00Z",
                "2024-01-01T09:00:00Z",
            ),
            (
                "0 0 0 13 * FRI",
                "2024-01-01T00:00:00Z",
                "2024-09-13T00:00:00Z",
            ),
            (
                "0 0 0 1 jan,jul *",
                "2024-02-01T00:00:00Z",
                "2024-07-01T00:00:00Z",
            ),
        ];
        for (expr, after, want) in cases {
            let s = Schedule::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
            assert_eq!(
                s.next_after(at(after), at(after)),
                Some(at(want)),
                "{expr} after {after}"
            );
        }
    }

    #[test]
    fn impossible_schedule_has_no_occurrence() {
        let s = Schedule::parse("0 0 0 31 FEB *").unwrap();
        assert_eq!(
            s.next_after(at("2024-01-01T00:00:00Z"), at("2024-01-01T00:00:00Z")),
            None
        );
    }

    #[test]
    fn rejects_bad_expressions() {
        for bad in [
            "* * * * *",
            "60 * * * * *",
            "* * 24 * * *",
            "* * * 0 * *",
            "* * * * 13 *",
            "*/0 * * * * *",
            "5-1 * * * * *",
            "x * * * * *",
            "* * * * * FUNDAY",
            // NCrontab's day-of-week is 0-6; 7 is out of range there (cron's second Sunday).
            "0 0 12 * * 7",
            "0 0 12 * * 5-7",
            "* * * * * WEDX",
            "1:xx:00",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn timespans() {
        let s = Schedule::parse("00:00:10").unwrap();
        let start = at("2024-01-01T00:00:00Z");
        assert_eq!(
            s.next_after(at("2024-01-01T00:00:15Z"), start),
            Some(at("2024-01-01T00:00:20Z"))
        );
        assert_eq!(s.next_after(start, start), Some(at("2024-01-01T00:00:10Z")));
        assert_eq!(
            parse_host_timespan("00:05:00"),
            Some(std::time::Duration::from_secs(300))
        );
        assert_eq!(
            parse_host_timespan("1.00:00:01"),
            Some(std::time::Duration::from_secs(86401))
        );
        assert_eq!(parse_host_timespan("-1"), None);
    }

    #[test]
    fn monitor_default_depends_on_period() {
        let now = at("2024-01-01T00:00:00Z");
        assert!(
            Schedule::parse("0 */5 * * * *")
                .unwrap()
                .period_at_least_a_minute(now)
        );
        assert!(
            !Schedule::parse("*/10 * * * * *")
                .unwrap()
                .period_at_least_a_minute(now)
        );
    }
}
