//! `tidemark-db-client`: everything that talks to Tidemark's PostgreSQL database.
//!
//! - [`pool`]: a diesel-async + deadpool pool with connect, checkout and statement timeouts;
//! - [`migrate`]: embedded migrations, run under an advisory lock;
//! - [`instance`]: creation and removal of the per-instance schema (indexer only);
//! - [`metadata`]: reading and writing the public config and the status snapshot.
//!
//! Readers built on this crate (the API, third-party apps) never run DDL: a missing
//! schema, table or row reads as "uninitialized" (`None`), never as an error. This crate
//! never contacts the indexer; the database is the only thing the parts share.

pub mod error;
pub mod instance;
pub mod metadata;
pub mod migrate;
pub mod pool;
#[cfg(feature = "test-utils")]
pub mod test_utils;

pub use diesel_async::AsyncPgConnection;
pub use error::{DbError, Result};
pub use pool::{PgPool, PoolConfig, PooledConnection};
