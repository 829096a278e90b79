//! Polling with deadlines and free ports: tests wait for conditions, never for fixed
//! times. The one `eventually` and the one `free_port` of every Tidemark test suite
//! (testkit re-exports them).

use std::fmt::Display;
use std::time::{Duration, Instant};

/// Interval between two polls of [`eventually`].
pub const POLL: Duration = Duration::from_millis(20);

/// What a polled condition returns: `true`/`Some(value)` when it holds.
pub trait Ready<T> {
    /// The value once ready.
    fn ready(self) -> Option<T>;
}

impl Ready<()> for bool {
    fn ready(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Ready<T> for Option<T> {
    fn ready(self) -> Option<T> {
        self
    }
}

/// Polls `f` every [`POLL`] until it holds (`true`, or `Some(value)`: then returns the
/// value). `f` is an async closure, so it may borrow mutably
/// (`async || db.checkpoint(1).await.ok()?`).
///
/// # Panics
/// When `timeout` passes first, naming `what`.
pub async fn eventually<T, R: Ready<T>>(
    timeout: Duration,
    what: impl Display,
    mut f: impl AsyncFnMut() -> R,
) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = f().await.ready() {
            return v;
        }
        if started.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A TCP port on 127.0.0.1 that nothing listened on a moment ago.
///
/// # Panics
/// When no port can be bound at all.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot bind a free port on 127.0.0.1: {e}"))
}
