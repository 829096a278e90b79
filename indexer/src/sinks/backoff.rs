//! Retry delays of a failing sink: exponential, 1 s doubling to 5 min, with full jitter
//! (a uniformly random delay up to the exponential one), so that many sinks failing at
//! once do not retry in step. Retries never stop: an entry is never skipped.

use std::time::Duration;

use rand::Rng as _;

/// The first ceiling.
const BASE: Duration = Duration::from_secs(1);
/// The largest ceiling.
const CAP: Duration = Duration::from_secs(300);

/// The ceiling of the delay after `attempt` failures (1-based).
pub(super) fn ceiling(attempt: u32) -> Duration {
    let factor = 1u32.checked_shl(attempt.saturating_sub(1).min(16)).unwrap_or(u32::MAX);
    BASE.saturating_mul(factor).min(CAP)
}

/// A random delay in `[0, ceiling(attempt)]`.
pub(super) fn delay(attempt: u32) -> Duration {
    let max = ceiling(attempt).as_millis() as u64;
    Duration::from_millis(rand::rng().random_range(0..=max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_doubles_from_one_second_to_five_minutes() {
        assert_eq!(ceiling(1), Duration::from_secs(1));
        assert_eq!(ceiling(2), Duration::from_secs(2));
        assert_eq!(ceiling(9), Duration::from_secs(256));
        assert_eq!(ceiling(10), CAP);
        assert_eq!(ceiling(u32::MAX), CAP);
        for attempt in 1..20 {
            assert!(delay(attempt) <= ceiling(attempt));
        }
    }
}
