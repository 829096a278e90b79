//! Polling with deadlines: tests wait for conditions, never for fixed times.

use std::fmt::Display;
use std::time::{Duration, Instant};

/// Interval between two polls of [`eventually`].
pub const POLL: Duration = Duration::from_millis(50);

/// Polls `f` every [`POLL`] until it returns `Some`, and returns that value. `f` is an
/// async closure, so it may borrow mutably (`async || db.checkpoint(1).await.ok()?`).
///
/// # Panics
/// When `timeout` passes first, naming `what`.
pub async fn eventually<T>(
    timeout: Duration,
    what: impl Display,
    mut f: impl AsyncFnMut() -> Option<T>,
) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if started.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}
