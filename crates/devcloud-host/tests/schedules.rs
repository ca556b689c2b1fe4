//! The patch cadence schedule documented in docs/schedules.md: "the Wednesday after the second
//! Tuesday of the month", evaluated with the local host's NCRONTAB over 2027-2028 against days
//! computed independently from the calendar.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc, Weekday};
use devcloud_host::ncrontab::Schedule;

/// The expression docs/schedules.md recommends (09:00 UTC on those Wednesdays).
const PATCH_WEDNESDAY: &str = "0 0 9 9-15 * WED";

/// The Wednesday after the second Tuesday of each month of `years`, counted from the calendar.
fn expected(years: std::ops::RangeInclusive<i32>) -> Vec<NaiveDate> {
    let mut out = Vec::new();
    for y in years {
        for m in 1..=12 {
            let second_tuesday = (1..=31)
                .filter_map(|d| NaiveDate::from_ymd_opt(y, m, d))
                .filter(|d| d.weekday() == Weekday::Tue)
                .nth(1)
                .expect("every month has two Tuesdays");
            out.push(second_tuesday + Duration::days(1));
        }
    }
    out
}

fn fires(expr: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let s = Schedule::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    let mut out = Vec::new();
    let mut t = from;
    while let Some(next) = s.next_after(t, from) {
        if next >= to {
            break;
        }
        out.push(next);
        t = next;
    }
    out
}

#[test]
fn patch_wednesday_fires_on_exactly_the_wednesday_after_the_second_tuesday() {
    let from = Utc.with_ymd_and_hms(2026, 12, 31, 23, 59, 59).unwrap();
    let to = Utc.with_ymd_and_hms(2029, 1, 1, 0, 0, 0).unwrap();
    let got = fires(PATCH_WEDNESDAY, from, to);
    let want: Vec<DateTime<Utc>> = expected(2027..=2028)
        .into_iter()
        .map(|d| Utc.from_utc_datetime(&d.and_hms_opt(9, 0, 0).unwrap()))
        .collect();
    assert_eq!(want.len(), 24);
    assert_eq!(got, want);
}

#[test]
fn day_and_weekday_are_both_required_not_either() {
    // With cron's OR, "9-15 and Wednesday" would fire on every day 9-15 and every Wednesday
    // (far more than 24 times in two years); NCrontab ANDs them.
    let from = Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap();
    let to = Utc.with_ymd_and_hms(2029, 1, 1, 0, 0, 0).unwrap();
    for f in fires(PATCH_WEDNESDAY, from, to) {
        assert_eq!(f.weekday(), Weekday::Wed, "{f}");
        assert!((9..=15).contains(&f.day()), "{f}");
    }
    // The naive "second Wednesday" (days 8-14) misses the months whose first day is a Wednesday:
    // there the second Tuesday is the 14th and patch Wednesday the 15th.
    let naive: Vec<_> = fires("0 0 9 8-14 * WED", from, to)
        .into_iter()
        .map(|t| t.date_naive())
        .collect();
    let want = expected(2027..=2028);
    assert_ne!(naive, want);
    let missed: Vec<_> = want.iter().filter(|d| !naive.contains(d)).collect();
    assert!(
        missed.iter().all(|d| d.day() == 15),
        "the naive expression only misses 15ths: {missed:?}"
    );
    assert!(!missed.is_empty());
}
