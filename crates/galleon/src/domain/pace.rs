//! The pace of Resource Manager calls per subscription, pure: from what ARM last said was left in its
//! token bucket (`x-ms-ratelimit-remaining-subscription-reads|writes`), how long a step should hold off
//! before spending more. Work already under way keeps a small reserve; new publishes keep a large one,
//! so when the budget runs low the images in flight finish first and new ones wait their turn.

use std::time::Duration;

/// One of ARM's token buckets: its size and refill per second (Azure: reads 250 + 25/s, writes 200 +
/// 10/s per subscription; `GALLEON_ARM_READS_BUDGET`, `GALLEON_ARM_WRITES_BUDGET`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub burst: f64,
    pub per_second: f64,
}

// Finite, positive numbers only (see `parse`), so equality is total.
impl Eq for Bucket {}

impl Bucket {
    pub const AZURE_READS: Bucket = Bucket {
        burst: 250.0,
        per_second: 25.0,
    };
    pub const AZURE_WRITES: Bucket = Bucket {
        burst: 200.0,
        per_second: 10.0,
    };

    /// `"250/25"`: burst, then refill per second.
    pub fn parse(text: &str) -> Result<Bucket, String> {
        let (burst, rate) = text
            .split_once('/')
            .ok_or_else(|| format!("'{text}' is not <burst>/<per second>, e.g. 250/25"))?;
        let number = |s: &str| {
            s.trim()
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n > 0.0)
                .ok_or_else(|| format!("'{s}' in '{text}' is not a positive number"))
        };
        Ok(Bucket {
            burst: number(burst)?,
            per_second: number(rate)?,
        })
    }
}

/// What ARM said was left, `age` ago.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seen {
    pub remaining: f64,
    pub age: Duration,
}

/// Who asks to spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// A look or a step of an image already under way.
    UnderWay,
    /// The first write of a new image.
    NewImage,
}

impl Priority {
    /// The share of the bucket that must stay after spending.
    fn reserve(self) -> f64 {
        match self {
            Priority::UnderWay => 0.1,
            Priority::NewImage => 0.4,
        }
    }
}

/// What is left now: what ARM last said plus what refilled since (at most the burst). The estimate is
/// optimistic (other instances spent too); every answer corrects it.
pub fn estimate(bucket: Bucket, seen: Seen) -> f64 {
    (seen.remaining + seen.age.as_secs_f64() * bucket.per_second).min(bucket.burst)
}

/// How long to hold off before spending `cost` calls: zero while the reserve of `priority` stays,
/// otherwise the time the bucket needs to refill to it. Nothing seen yet: no hold.
pub fn hold_off(bucket: Bucket, seen: Option<Seen>, cost: f64, priority: Priority) -> Duration {
    let Some(seen) = seen else {
        return Duration::ZERO;
    };
    // A full bucket is as much as can ever be asked for: a bucket seen small (or a cost larger than its
    // reserve leaves) must not make a wait that never ends.
    let wanted = (bucket.burst * priority.reserve() + cost).min(bucket.burst);
    let short = wanted - estimate(bucket, seen);
    if short <= 0.0 {
        return Duration::ZERO;
    }
    Duration::from_secs_f64((short / bucket.per_second).min(3600.0))
}

/// The bucket as it really is: no bigger than one more than the most ARM was ever seen to have left
/// (a subscription with smaller limits than configured, or other callers keeping it low, must not make
/// galleon wait for a reserve the bucket can never reach).
pub fn as_seen(bucket: Bucket, peak: Option<f64>) -> Bucket {
    match peak {
        Some(p) if p + 1.0 < bucket.burst => Bucket {
            burst: p + 1.0,
            ..bucket
        },
        _ => bucket,
    }
}

/// Spreads the holds of many waiting images over a window as long as the hold itself, so they do not
/// all come back at once: `spread` in [0, 1) picks the place.
pub fn spread(hold: Duration, spread: f64) -> Duration {
    hold + hold.mul_f64(spread.clamp(0.0, 0.999))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRITES: Bucket = Bucket::AZURE_WRITES;

    fn seen(remaining: f64, age_secs: u64) -> Option<Seen> {
        Some(Seen {
            remaining,
            age: Duration::from_secs(age_secs),
        })
    }

    #[test]
    fn budgets_are_parsed_with_their_fix() {
        assert_eq!(Bucket::parse("250/25"), Ok(Bucket::AZURE_READS));
        assert_eq!(
            Bucket::parse(" 20 / 1.5 "),
            Ok(Bucket {
                burst: 20.0,
                per_second: 1.5
            })
        );
        for bad in ["250", "250/0", "x/25", "-1/2", "250/inf"] {
            assert!(Bucket::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_estimate_refills_at_the_buckets_rate_up_to_its_burst() {
        assert_eq!(
            estimate(
                WRITES,
                Seen {
                    remaining: 50.0,
                    age: Duration::from_secs(3)
                }
            ),
            80.0
        );
        assert_eq!(
            estimate(
                WRITES,
                Seen {
                    remaining: 190.0,
                    age: Duration::from_secs(60)
                }
            ),
            200.0
        );
    }

    #[test]
    fn new_images_wait_before_work_under_way_does() {
        // (what ARM said, seconds ago, cost, priority) -> hold in seconds
        let table = [
            // Nothing heard yet: go (the first answer tells).
            (None, 1.0, Priority::NewImage, 0.0),
            // A full bucket: everyone goes.
            (seen(200.0, 0), 1.0, Priority::NewImage, 0.0),
            // 85 left: a new image (reserve 80) may spend 5, not 10.
            (seen(85.0, 0), 5.0, Priority::NewImage, 0.0),
            (seen(85.0, 0), 10.0, Priority::NewImage, 0.5),
            // 30 left: work under way (reserve 20) goes on, new images wait 5 s for the bucket to refill.
            (seen(30.0, 0), 1.0, Priority::UnderWay, 0.0),
            (seen(30.0, 0), 1.0, Priority::NewImage, 5.1),
            // Seen 5 s ago, it refilled by 50 since.
            (seen(30.0, 5), 1.0, Priority::NewImage, 0.1),
            // Throttled (0 left): even work under way holds off until the reserve is back.
            (seen(0.0, 0), 1.0, Priority::UnderWay, 2.1),
        ];
        for (seen, cost, priority, want) in table {
            let got = hold_off(WRITES, seen, cost, priority).as_secs_f64();
            assert!(
                (got - want).abs() < 1e-9,
                "{seen:?} cost {cost} {priority:?}: held {got} s, expected {want} s"
            );
        }
    }

    #[test]
    fn a_bucket_never_seen_full_is_taken_as_no_bigger_than_seen() {
        assert_eq!(as_seen(WRITES, None), WRITES);
        assert_eq!(as_seen(WRITES, Some(199.0)), WRITES);
        assert_eq!(as_seen(WRITES, Some(500.0)), WRITES);
        let small = as_seen(WRITES, Some(19.0));
        assert_eq!(small.burst, 20.0);
        // With 10 left of a bucket that never held more than 20, a new image (reserve 40% = 8) goes.
        assert_eq!(
            hold_off(small, seen(10.0, 0), 2.0, Priority::NewImage),
            Duration::ZERO
        );
        // Taken as Azure's 200, it would wait for a reserve of 80 the bucket never reaches.
        assert!(hold_off(WRITES, seen(10.0, 0), 2.0, Priority::NewImage) > Duration::from_secs(7));
    }

    #[test]
    fn a_hold_never_asks_for_more_than_a_full_bucket() {
        // Only a 429 seen so far (0 left): the bucket is taken as holding 1, and a new image costing 2
        // once waited for 1.4 calls the bucket can never hold, rescheduled forever.
        let tiny = as_seen(WRITES, Some(0.0));
        assert_eq!(
            hold_off(tiny, seen(0.0, 0), 2.0, Priority::NewImage),
            Duration::from_millis(100)
        );
        assert_eq!(
            hold_off(tiny, seen(0.0, 1), 2.0, Priority::NewImage),
            Duration::ZERO
        );
        // A cost beyond the burst waits for a full bucket, not for ever.
        assert_eq!(
            hold_off(WRITES, seen(200.0, 0), 500.0, Priority::UnderWay),
            Duration::ZERO
        );
    }

    #[test]
    fn holds_are_spread_over_a_window_as_long_as_themselves() {
        let hold = Duration::from_secs(10);
        assert_eq!(spread(hold, 0.0), hold);
        assert_eq!(spread(hold, 0.5), Duration::from_secs(15));
        assert!(spread(hold, 7.0) < Duration::from_secs(20));
        assert_eq!(spread(Duration::ZERO, 0.5), Duration::ZERO);
    }
}
