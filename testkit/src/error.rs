//! Errors of the query helpers (fixtures panic instead: a broken fixture fails the test).

/// Why a testkit query failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A database query failed.
    #[error("database: {0}")]
    Db(#[from] diesel::result::Error),
    /// The database connection could not be opened.
    #[error("cannot connect to the database: {0}")]
    Connect(#[from] tidemark_db_client::tls::TlsError),
    /// A JSON-RPC request failed.
    #[error("rpc {method}: {message}")]
    Rpc {
        /// Method.
        method: &'static str,
        /// Cause.
        message: String,
    },
    /// An argument was invalid (e.g. a schema name).
    #[error("invalid argument: {0}")]
    Invalid(String),
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
