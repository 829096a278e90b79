//! The start-up check for a connection pooler in transaction mode, under which a session
//! advisory lock — the writer's fencing — means nothing.

use crate::error::{DbError, Result};
use crate::pool::PgPool;

use super::limits::{QUERY_LIMIT, timed};

/// Backend process ids seen by the session probe ([`probe_session_pinning`]): the first
/// connection, a second connection opened while the first is idle, then the first again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionProbe {
    /// `pg_backend_pid()` of the first connection.
    pub first: i32,
    /// `pg_backend_pid()` of a second connection, asked while the first is idle.
    pub other: i32,
    /// `pg_backend_pid()` of the first connection, asked again.
    pub first_again: i32,
}

impl SessionProbe {
    /// Whether the sessions are not pinned to backends, i.e. a pooler in transaction or
    /// statement mode sits between the indexer and PostgreSQL. On a direct connection (or
    /// through a pooler in session mode) a connection keeps its backend for its lifetime
    /// and no other connection shares it. Under transaction pooling an idle connection's
    /// backend goes back to the pool: the next connection is handed that backend
    /// (PgBouncer reuses the most recently released one), or the first connection's next
    /// statement lands on another one.
    pub fn unpinned(&self) -> bool {
        self.other == self.first || self.first_again != self.first
    }
}

/// The backend pid of `client`, by a simple-protocol query (no prepared statement: those
/// do not survive a transaction-mode pooler).
async fn backend_pid(client: &tokio_postgres::Client) -> Result<i32> {
    let messages =
        timed(QUERY_LIMIT, async { Ok(client.simple_query("SELECT pg_backend_pid()").await?) }).await?;
    messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).and_then(|v| v.parse().ok()),
            _ => None,
        })
        .ok_or_else(|| DbError::InvalidStoredValue {
            key: "pg_backend_pid",
            message: "no pid returned".into(),
        })
}

/// Asks two connections of `pool` for their backend pids ([`SessionProbe`]), to detect a
/// pooler in transaction mode before anything relies on a session advisory lock.
pub async fn probe_session_pinning(pool: &PgPool) -> Result<SessionProbe> {
    let first_conn = pool.connect_raw().await?;
    let first = backend_pid(&first_conn).await?;
    let other_conn = pool.connect_raw().await?;
    let other = backend_pid(&other_conn).await?;
    let first_again = backend_pid(&first_conn).await?;
    Ok(SessionProbe { first, other, first_again })
}

#[cfg(test)]
mod tests {
    use super::SessionProbe;

    #[test]
    fn pinned_sessions_keep_their_backend_and_share_it_with_no_one() {
        // Direct connections, or a pooler in session mode.
        assert!(!SessionProbe { first: 100, other: 101, first_again: 100 }.unpinned());
    }

    #[test]
    fn a_backend_shared_by_two_connections_means_transaction_pooling() {
        // The idle first connection's backend was handed to the second one.
        assert!(SessionProbe { first: 100, other: 100, first_again: 100 }.unpinned());
        assert!(SessionProbe { first: 100, other: 100, first_again: 101 }.unpinned());
    }

    #[test]
    fn a_connection_moving_to_another_backend_means_transaction_pooling() {
        assert!(SessionProbe { first: 100, other: 101, first_again: 102 }.unpinned());
        assert!(SessionProbe { first: 100, other: 101, first_again: 101 }.unpinned());
    }
}
