//! When to look again at a long Azure operation, pure: the looks are spaced by what the operation is
//! likely to need (how long it has run, how long it is expected to take), never a fixed poll for hours.

use std::time::Duration;

/// Looks are never further apart than this, so a finished operation is noticed within it.
pub const LONGEST_WAIT: Duration = Duration::from_secs(15 * 60);

/// The wait before the next look at an operation that has run for `elapsed`:
/// - while it is expected to be still running, until its expected end;
/// - past that (or with no expectation), a quarter of the time it has run so far, so the number of
///   looks grows with the logarithm of the duration, not linearly;
///
/// never shorter than `base` (GALLEON_FOLLOWUP_SECONDS) or Azure's `Retry-After`, never longer than
/// [`LONGEST_WAIT`] unless Azure asks for longer.
pub fn next_look_wait(
    elapsed: Duration,
    expected: Option<Duration>,
    retry_after: Option<Duration>,
    base: Duration,
) -> Duration {
    let model = match expected {
        Some(e) if elapsed < e => e - elapsed,
        _ => elapsed / 4,
    };
    model
        .min(LONGEST_WAIT)
        .max(base)
        .max(retry_after.unwrap_or_default())
}

/// How long replicating to `regions` target regions (the home region included) is expected to take,
/// from how long Azure took to make the version in its home region. Both copy the same disk, so the home
/// region's time already grows with the disk's size and the storage's speed; a copy across regions is
/// slower (×1.5), and more regions share the source's bandwidth (+5% per region beyond the second).
pub fn expected_replication(home: Duration, regions: usize) -> Duration {
    let extra = regions.saturating_sub(2) as u32;
    home.mul_f64(1.5) + home.saturating_mul(extra) / 20
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn looks_are_spaced_by_what_the_operation_needs() {
        // (elapsed, expected, retry-after, base) -> wait
        let table = [
            // No expectation yet: the base interval first, then a quarter of the time so far.
            (S(0), None, None, S(30), S(30)),
            (S(60), None, None, S(30), S(30)),
            (S(400), None, None, S(30), S(100)),
            // Azure's Retry-After is a floor.
            (S(0), None, Some(S(45)), S(30), S(45)),
            (S(400), None, Some(S(300)), S(30), S(300)),
            // Expected to run 10 min: the first look near its end.
            (S(0), Some(S(600)), None, S(30), S(600)),
            (S(590), Some(S(600)), None, S(30), S(30)),
            // Past the expectation: geometric.
            (S(800), Some(S(600)), None, S(30), S(200)),
            // Six hours in: one look every 15 minutes at most, not every 30 s.
            (S(6 * 3600), None, None, S(30), LONGEST_WAIT),
            (S(6 * 3600), Some(S(3600)), None, S(30), LONGEST_WAIT),
            // The local cloud's 1 s base with a precise Retry-After.
            (S(0), None, Some(S(3)), S(1), S(3)),
        ];
        for (elapsed, expected, retry_after, base, want) in table {
            assert_eq!(
                next_look_wait(elapsed, expected, retry_after, base),
                want,
                "elapsed {elapsed:?}, expected {expected:?}, retry-after {retry_after:?}, base {base:?}"
            );
        }
    }

    #[test]
    fn six_hours_take_a_few_dozen_looks_not_seven_hundred() {
        let (mut elapsed, mut looks) = (Duration::ZERO, 0);
        while elapsed < S(6 * 3600) {
            elapsed += next_look_wait(elapsed, Some(S(1200)), None, S(30));
            looks += 1;
        }
        assert!(looks <= 30, "{looks} looks in six hours");
    }

    #[test]
    fn replication_is_expected_to_take_longer_with_more_regions() {
        let home = S(240);
        assert_eq!(expected_replication(home, 1), S(360));
        assert_eq!(expected_replication(home, 2), S(360));
        assert_eq!(expected_replication(home, 3), S(372));
        assert_eq!(expected_replication(home, 10), S(456));
        assert!(expected_replication(S(2400), 3) > expected_replication(S(240), 3));
    }
}
