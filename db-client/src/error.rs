//! Typed errors of the db-client.

use std::time::Duration;

use tidemark_shared_types::InvalidSchemaName;

/// Result alias for db-client operations.
pub type Result<T, E = DbError> = std::result::Result<T, E>;

/// What went wrong talking to PostgreSQL.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No connection could be made or checked out (server down, refused, auth failed).
    #[error("database unavailable: {0}")]
    Unavailable(String),
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
        /// The server's error, as diesel reports it.
        source: diesel::result::Error,
    },
    /// A query failed.
    #[error("query failed: {0}")]
    Query(#[from] diesel::result::Error),
    /// A statement on a plain `tokio-postgres` connection failed (the indexer's writer,
    /// which needs `COPY`).
    #[error("query failed: {}", describe(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// Running the embedded migrations failed.
    #[error("migration failed: {0}")]
    Migration(String),
    /// The instance schema name is not acceptable; no SQL was run.
    #[error(transparent)]
    InvalidSchema(#[from] InvalidSchemaName),
    /// A stored metadata value does not parse or breaks an invariant.
    #[error("stored {key} is invalid: {message}")]
    InvalidStoredValue {
        /// Metadata key, e.g. `indexing_status`.
        key: &'static str,
        /// Why it was rejected.
        message: String,
    },
    /// A query's parameters are out of range (e.g. an [`EpochQuery`](crate::EpochQuery)
    /// page of 0); no SQL was run.
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
}

impl DbError {
    /// True when the database could not be reached at all (as opposed to a query that
    /// reached it and failed). Retry loops back off and try again on these.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Unavailable(_) | Self::Timeout(_) => true,
            Self::Query(diesel::result::Error::DatabaseError(kind, _)) => {
                matches!(
                    kind,
                    diesel::result::DatabaseErrorKind::ClosedConnection
                        | diesel::result::DatabaseErrorKind::UnableToSendCommand
                )
            }
            // No server error: the connection is closed, or the socket failed.
            Self::Postgres(e) => {
                e.is_closed()
                    || std::error::Error::source(e)
                        .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some())
            }
            _ => false,
        }
    }

    /// The SQLSTATE of a server error on a `tokio-postgres` connection (the writer's).
    #[cfg(feature = "writer")]
    pub(crate) fn sqlstate(&self) -> Option<&str> {
        match self {
            Self::Postgres(e) => e.code().map(|c| c.code()),
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
        match self {
            Self::Query(
                source @ diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::Unknown, _),
            ) if !limit.is_zero() && elapsed >= limit => Self::StatementTimeout { limit, source },
            other => other,
        }
    }
}

impl From<diesel::ConnectionError> for DbError {
    fn from(e: diesel::ConnectionError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

/// A `tokio-postgres` error with its cause: its own text is only the kind ("db error"),
/// the server's message and detail are in the cause.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use diesel::result::{DatabaseErrorKind, Error};

    use super::DbError;

    fn server_error(kind: DatabaseErrorKind) -> DbError {
        DbError::Query(Error::DatabaseError(kind, Box::new("canceling statement".to_owned())))
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
}
