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
    /// Connecting or checking out a connection took longer than the configured timeout.
    #[error("database did not answer within {0:?}")]
    Timeout(Duration),
    /// A query failed (including `statement_timeout` cancellations).
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
