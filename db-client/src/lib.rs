//! `tidemark-db-client`: everything that talks to Tidemark's PostgreSQL database.
//!
//! Most applications need only [`DbClient`]: it reads one instance's public config and
//! status snapshot through stale-while-revalidate caches, checks them for compatibility,
//! reports health with typed reasons, queries events with keyset pagination and epochs by
//! page, and keeps a per-chain epoch summary cached. See `docs/db-client.md` and
//! `examples/status.rs`.
//!
//! - [`DbClient`] / [`DbClientConfig`]: the cached, health-checked read side;
//! - [`events`]: event filters and pages ([`EventQuery`], [`EventPage`]);
//! - [`epochs`]: epoch pages and per-chain summaries ([`EpochQuery`], [`EpochPage`],
//!   [`EpochSummaries`]);
//! - [`swr`]: the generic stale-while-revalidate cache behind the client;
//! - [`pool`]: a diesel-async + deadpool pool with connect, checkout and statement timeouts;
//! - [`migrate`]: embedded migrations, run under an advisory lock (writers only);
//! - `writer` (feature `writer`, the indexer only): the fenced single writer, which runs
//!   every statement that writes an instance (each table's module holds its statements);
//! - [`metadata`]: reading and writing the public config and the status snapshot;
//! - [`tls`]: connection strings with libpq's `sslmode` / `sslrootcert` over rustls, and
//!   the rustls setup for HTTPS clients.
//!
//! Readers built on this crate (the API, third-party apps) never run DDL: a missing
//! schema, table or row reads as "uninitialized", never as an error. This crate never
//! contacts the indexer; the database is the only thing the parts share.

#[cfg(feature = "writer")]
mod checkpoints;
mod client;
pub mod epochs;
pub mod error;
pub mod events;
#[cfg(feature = "writer")]
mod instance;
pub mod metadata;
pub mod migrate;
pub mod pool;
mod prepared;
pub mod swr;
#[cfg(feature = "test-utils")]
pub mod test_utils;
pub mod tls;
#[cfg(feature = "writer")]
pub mod writer;

pub use client::{DbClient, DbClientConfig, Health, IncompatibleConfigTransition, Reason, StatusParts};
pub use diesel_async::AsyncPgConnection;
pub use epochs::{EpochPage, EpochQuery, EpochSummaries};
pub use error::{DbError, Result};
pub use events::{EventPage, EventQuery, Limit};
pub use pool::{PgPool, PoolConfig, PoolManager, PooledConnection, VERIFY_AFTER_IDLE, default_max_size};
