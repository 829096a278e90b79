//! Typed errors of the db-client.
//!
//! The database drivers' errors (diesel's for the pool, tokio-postgres' for the writer)
//! are kept as boxed sources, never as public types: callers decide with the classifiers
//! ([`DbError::is_unavailable`], [`DbError::is_timeout`], [`DbError::is_invalid_input`]),
//! which stay the same whichever driver answered, and read the driver's message through
//! `Display` and [`std::error::Error::source`].

use std::time::Duration;

use tidemark_shared_types::{Cursor, InvalidSchemaName};

/// Result alias for db-client operations.
pub type Result<T, E = DbError> = std::result::Result<T, E>;

/// A database driver's error, kept as the source of a [`DbError`].
type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong talking to PostgreSQL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// No connection could be made or checked out (server down, refused, auth failed).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Every pooled connection stayed in use for the whole checkout timeout: this client
    /// has more queries in flight than connections, the database itself may be fine.
    /// Callers shed load (the API answers 503 `overloaded` with `Retry-After`).
    #[error("all {0:?} of waiting, every database connection of the pool stayed busy")]
    Busy(std::time::Duration),
    /// Connecting, checking out a connection or waiting for a query's answer took longer
    /// than the configured time limit (the database may be hung or cut off).
    #[error("database did not answer within {0:?}")]
    Timeout(Duration),
    /// The server cancelled a read that ran past the pool's `statement_timeout`
    /// ([`DbClient::events`](crate::DbClient::events) and
    /// [`DbClient::epochs`](crate::DbClient::epochs) tell it apart from other failures).
    #[error("query cancelled: it ran past the statement timeout of {limit:?} ({source})")]
    StatementTimeout {
        /// The connection's `statement_timeout`.
        limit: Duration,
        /// The server's error, as the driver reported it.
        source: BoxError,
    },
    /// A statement failed: the server refused it, or the connection broke while it ran
    /// ([`DbError::is_unavailable`] tells the two apart).
    #[error("query failed: {}", describe(.0.as_ref()))]
    Query(#[source] BoxError),
    /// Running the embedded migrations failed.
    #[error("migration failed: {0}")]
    Migration(String),
    /// The instance schema name is not acceptable; no SQL was run.
    #[error(transparent)]
    InvalidSchema(#[from] InvalidSchemaName),
    /// A stored value does not parse or breaks an invariant.
    #[error("stored {key} is invalid: {message}")]
    InvalidStoredValue {
        /// What was read, e.g. the metadata key `indexing_status` or the table `epochs`.
        key: &'static str,
        /// Why it was rejected.
        message: String,
    },
    /// A query's or a write's parameters are out of range (e.g. an
    /// [`EpochQuery`](crate::EpochQuery) page of 0, a block number above the bigint range);
    /// nothing was read or stored.
    #[error("invalid {field}: {message}")]
    InvalidQuery {
        /// The parameter, e.g. `size`.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The pool could not be built from the configuration.
    #[error("invalid pool configuration: {0}")]
    Config(String),
    /// The deferred index build cannot be recorded as done: these indexes of `events`
    /// are missing or invalid.
    #[error("indexes of events missing or invalid: {0}")]
    IndexesMissing(String),
    /// A journal read started after a cursor below the retained floor: removals after
    /// that cursor were pruned (retention), so reading on could silently miss one. Resync
    /// from `after = 0` (a replay of the current events) or from a cursor at or above
    /// `floor`.
    #[error("cursor expired: removals below cursor {floor} were pruned; resync from 0 or from {floor}")]
    CursorExpired {
        /// The lowest cursor a read may start after (besides 0).
        floor: Cursor,
    },
}

impl DbError {
    /// True when the database could not be reached at all (as opposed to a query that
    /// reached it and failed): no connection, or one that broke. Retry loops back off and
    /// try again on these. A saturated pool ([`DbError::Busy`]) counts: no statement
    /// reached the database ([`DbError::is_busy`] tells it apart).
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Unavailable(_) | Self::Timeout(_) | Self::Busy(_) => true,
            Self::Query(source) => {
                if let Some(diesel::result::Error::DatabaseError(kind, _)) =
                    source.downcast_ref::<diesel::result::Error>()
                {
                    use diesel::result::DatabaseErrorKind::{ClosedConnection, UnableToSendCommand};
                    return matches!(kind, ClosedConnection | UnableToSendCommand);
                }
                // No server error: the connection is closed, or the socket failed.
                source.downcast_ref::<tokio_postgres::Error>().is_some_and(|e| {
                    e.is_closed() || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
                })
            }
            _ => false,
        }
    }

    /// True when the pool had no free connection within its checkout timeout
    /// ([`DbError::Busy`]): overload of this client, not a sign the database is down.
    pub fn is_busy(&self) -> bool {
        matches!(self, Self::Busy(_))
    }

    /// True when a time limit ran out: the client's ([`DbError::Timeout`]) or the server's
    /// `statement_timeout` ([`DbError::StatementTimeout`]).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout(_) | Self::StatementTimeout { .. })
    }

    /// True when the caller's input was refused: a query or a write out of range
    /// ([`DbError::InvalidQuery`]) or a bad schema name ([`DbError::InvalidSchema`]).
    pub fn is_invalid_input(&self) -> bool {
        matches!(self, Self::InvalidQuery { .. } | Self::InvalidSchema(_))
    }

    /// The SQLSTATE of a server error on a `tokio-postgres` connection (the writer's).
    #[cfg(feature = "writer")]
    pub(crate) fn sqlstate(&self) -> Option<&str> {
        match self {
            Self::Query(source) => source.downcast_ref::<tokio_postgres::Error>()?.code().map(|c| c.code()),
            _ => None,
        }
    }

    /// This error, or [`DbError::StatementTimeout`] when it is a server error that came
    /// `elapsed` after the statement was sent, at or past `statement_timeout` (in whole
    /// milliseconds, as the pool sets it; under 1 ms is no timeout, as for the server).
    ///
    /// diesel-async does not pass PostgreSQL's SQLSTATE on (a cancellation, 57014, arrives
    /// as an `Unknown` database error with a message in the server's language), so the
    /// time tells it apart: the server cannot cancel a statement for its timeout before
    /// the timeout has passed on the client's clock too, which started earlier. Callers
    /// time the statement alone, not the checkout or any follow-up query.
    pub(crate) fn timed(self, elapsed: Duration, statement_timeout: Duration) -> Self {
        let limit = Duration::from_millis(u64::try_from(statement_timeout.as_millis()).unwrap_or(u64::MAX));
        let cancelled = |source: &BoxError| {
            matches!(
                source.downcast_ref::<diesel::result::Error>(),
                Some(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::Unknown, _))
            )
        };
        match self {
            Self::Query(source) if cancelled(&source) && !limit.is_zero() && elapsed >= limit => {
                Self::StatementTimeout { limit, source }
            }
            other => other,
        }
    }
}

#[doc(hidden)]
impl From<diesel::result::Error> for DbError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Query(Box::new(e))
    }
}

#[doc(hidden)]
impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Query(Box::new(e))
    }
}

#[doc(hidden)]
impl From<diesel::ConnectionError> for DbError {
    fn from(e: diesel::ConnectionError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

/// A number stored in `table`'s `column` that must not be negative (block numbers,
/// timestamps, ids, counts); [`DbError::InvalidStoredValue`] otherwise.
pub(crate) fn stored_u64<T: TryInto<u64> + Copy + std::fmt::Display>(
    value: T,
    table: &'static str,
    column: &str,
) -> Result<u64> {
    value.try_into().map_err(|_| DbError::InvalidStoredValue {
        key: table,
        message: format!("column {column} holds the negative value {value}"),
    })
}

/// A driver's error with its cause: a `tokio-postgres` error's own text is only the kind
/// ("db error"), the server's message and detail are in its cause.
pub(crate) fn describe(e: &(dyn std::error::Error + Send + Sync + 'static)) -> String {
    match (e.downcast_ref::<tokio_postgres::Error>(), e.source()) {
        (Some(_), Some(cause)) => format!("{e}: {cause}"),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use diesel::result::{DatabaseErrorKind, Error};

    use super::DbError;

    fn server_error(kind: DatabaseErrorKind) -> DbError {
        DbError::from(Error::DatabaseError(kind, Box::new("canceling statement".to_owned())))
    }

    #[test]
    fn only_a_server_error_at_or_past_the_timeout_is_a_statement_timeout() {
        let limit = Duration::from_millis(300);
        let timed = |e: DbError, elapsed_ms| e.timed(Duration::from_millis(elapsed_ms), limit);
        assert!(
            matches!(timed(server_error(DatabaseErrorKind::Unknown), 300), DbError::StatementTimeout { limit: l, .. } if l == limit)
        );
        assert!(matches!(timed(server_error(DatabaseErrorKind::Unknown), 299), DbError::Query(_)));
        // A closed connection or a constraint error is what it is, however long it took.
        assert!(matches!(timed(server_error(DatabaseErrorKind::ClosedConnection), 900), DbError::Query(_)));
        assert!(matches!(timed(server_error(DatabaseErrorKind::UniqueViolation), 900), DbError::Query(_)));
        assert!(matches!(timed(DbError::Timeout(limit), 900), DbError::Timeout(_)));
        // No statement timeout set (under 1 ms is none, as the pool sends whole
        // milliseconds): nothing is cancelled for time.
        for none in [Duration::ZERO, Duration::from_micros(900)] {
            let e = server_error(DatabaseErrorKind::Unknown).timed(Duration::from_secs(60), none);
            assert!(matches!(e, DbError::Query(_)));
        }
    }

    #[test]
    fn the_classification_does_not_depend_on_the_driver() {
        assert!(server_error(DatabaseErrorKind::ClosedConnection).is_unavailable());
        assert!(server_error(DatabaseErrorKind::UnableToSendCommand).is_unavailable());
        assert!(!server_error(DatabaseErrorKind::UniqueViolation).is_unavailable());
        assert!(DbError::Unavailable("refused".into()).is_unavailable());
        assert!(DbError::Timeout(Duration::from_secs(1)).is_unavailable());
        assert!(DbError::Timeout(Duration::from_secs(1)).is_timeout());
        let busy = DbError::Busy(Duration::from_secs(5));
        assert!(busy.is_busy() && busy.is_unavailable() && !busy.is_timeout());
        let cancelled =
            server_error(DatabaseErrorKind::Unknown).timed(Duration::from_secs(1), Duration::from_secs(1));
        assert!(cancelled.is_timeout() && !cancelled.is_unavailable());
        let invalid = DbError::InvalidQuery { field: "size", message: "too large".into() };
        assert!(invalid.is_invalid_input() && !invalid.is_unavailable() && !invalid.is_timeout());
        // The driver's message stays readable, and is the error's source.
        let e = server_error(DatabaseErrorKind::UniqueViolation);
        assert_eq!(e.to_string(), "query failed: canceling statement");
        assert!(std::error::Error::source(&e).is_some());
    }
}
