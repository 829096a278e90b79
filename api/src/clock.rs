//! The clock of the time-dependent handlers: `/status`'s realtime projection and
//! `/v1/realtime`'s distance.
//!
//! Production uses the database's clock as the db-client last read it (extrapolated
//! with a monotonic clock), the same clock staleness is measured on, so a host whose
//! clock is skewed against the database changes no verdict. Tests fix the time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Where "now" comes from, in unix seconds.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The database's clock; the host's only until the database has answered once.
    #[default]
    Database,
    /// A fixed time that tests set and move.
    Fixed(Arc<AtomicU64>),
}

impl Clock {
    /// A clock that reads `unix_secs` until [`Clock::set`] moves it.
    pub fn fixed(unix_secs: u64) -> Self {
        Self::Fixed(Arc::new(AtomicU64::new(unix_secs)))
    }

    /// Moves a fixed clock to `unix_secs` (no effect on the database clock).
    pub fn set(&self, unix_secs: u64) {
        if let Self::Fixed(t) = self {
            t.store(unix_secs, Ordering::Relaxed);
        }
    }

    /// Now, given the database's clock as the db-client knows it (`None` before its
    /// first answer).
    pub fn now(&self, database_now: Option<u64>) -> u64 {
        match self {
            Self::Database => database_now.unwrap_or_else(host_now),
            Self::Fixed(t) => t.load(Ordering::Relaxed),
        }
    }
}

fn host_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_clock_wins_over_the_host_and_a_fixed_clock_over_both() {
        assert_eq!(Clock::Database.now(Some(5)), 5);
        assert!(Clock::Database.now(None) > 1_700_000_000);
        let fixed = Clock::fixed(10);
        assert_eq!(fixed.now(Some(5)), 10);
        fixed.set(11);
        assert_eq!(fixed.now(None), 11);
    }
}
