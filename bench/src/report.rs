//! Rates, medians and formatting.

use std::fmt;
use std::time::Duration;

/// Events and blocks processed in some time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rate {
    pub(crate) events: u64,
    pub(crate) blocks: u64,
    pub(crate) elapsed: Duration,
}

impl Rate {
    pub(crate) fn new(events: u64, blocks: u64, elapsed: Duration) -> Self {
        Self { events, blocks, elapsed }
    }

    pub(crate) fn events_per_s(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub(crate) fn blocks_per_s(&self) -> f64 {
        self.blocks as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Doing both serially: 1/(1/fetch + 1/write), as a rate over the same work.
    pub(crate) fn serial_bound(fetch: &Rate, write: &Rate) -> Rate {
        let per_event = 1.0 / fetch.events_per_s() + 1.0 / write.events_per_s();
        Rate::new(fetch.events, fetch.blocks, Duration::from_secs_f64(per_event * fetch.events as f64))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:.0} events/s, {:.1} blocks/s ({:.2} s)",
            self.events_per_s(),
            self.blocks_per_s(),
            self.elapsed.as_secs_f64()
        )
    }
}

/// The run with the median duration.
pub(crate) fn median(mut runs: Vec<Rate>) -> Rate {
    runs.sort_by_key(|r| r.elapsed);
    runs[runs.len() / 2]
}

/// Bytes as MiB.
pub(crate) fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1_048_576.0)
}
