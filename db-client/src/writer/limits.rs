//! Client-side time limits of the writer's calls.

use std::future::Future;
use std::time::Duration;

use crate::error::{DbError, Result};

/// Client-side limit on one call of the writer other than a commit or a rollback.
pub(crate) const QUERY_LIMIT: Duration = Duration::from_secs(15);
/// Client-side limit on a batch's commit or a rollback (the session's `statement_timeout`
/// is 120 s per statement).
pub(crate) const COMMIT_LIMIT: Duration = Duration::from_secs(125);

/// Client-side limit on creating or upgrading the instance: an upgrade rewrites tables in
/// one statement for as long as their size needs (1,000,000 events took seconds; a
/// billion would take hours), and runs once, at start-up.
pub(crate) const UPGRADE_LIMIT: Duration = Duration::from_secs(6 * 3600);

/// `f`, or [`DbError::Timeout`] when it has not finished within `limit`.
///
/// Invariant: no call of the writer waits forever on a server that hangs without
/// closing its socket. A call that timed out may leave its statement in flight on the
/// connection; the lock watcher's next check (itself limited) then times out too and
/// ends the term, which drops the connection.
pub(crate) async fn timed<T>(limit: Duration, f: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(limit, f).await.map_err(|_| DbError::Timeout(limit))?
}
