//! `tidemark-db-client`: reading a Tidemark instance from PostgreSQL — for the API and for
//! third-party applications.
//!
//! [`DbClient`] is the whole reader API. It keeps an instance's public config, status
//! snapshot and per-chain epoch summary in stale-while-revalidate caches that background
//! tasks refresh, so the cached reads ([`DbClient::public_config`],
//! [`DbClient::indexing_status`], [`DbClient::health`], …) are plain synchronous calls that
//! never wait for the database; it checks config and status for compatibility, reports
//! its health with typed [`Reason`]s, and pages through events ([`DbClient::events`],
//! keyset pagination by cursor) and epochs ([`DbClient::epochs`]). The vocabulary — configs,
//! status snapshots, event and epoch items, cursors — is `tidemark-shared-types`,
//! re-exported as [`types`] so that a reader needs no second, matching dependency.
//!
//! ```no_run
//! use tidemark_db_client::{DbClient, DbClientConfig, EventQuery};
//!
//! # async fn demo() -> Result<(), tidemark_db_client::DbError> {
//! // Lazy: fails only on bad settings, never because the database is down.
//! let db = DbClient::new(DbClientConfig::new("postgres://localhost/app", "tidemark_demo"))?;
//! db.first_load().await; // a one-shot program waits for the first reads; a server would not
//! let health = db.health(); // from the caches: never waits
//! println!("healthy: {}", health.healthy);
//! if let Ok(status) = db.indexing_status() {
//!     println!("indexed up to {}", status.slowest_chain_indexing_cursor);
//! }
//! let page = db.events(&EventQuery { contract: Some("Token".into()), ..Default::default() }).await?;
//! for event in &page.items {
//!     println!("{} {}.{} {}", event.cursor, event.contract, event.event, event.args);
//! }
//! # Ok(()) }
//! ```
//!
//! See `docs/db-client.md` and the examples (`status`, `events`, `health`).
//!
//! This crate never contacts the indexer: the database is the only thing the parts share.
//! Readers never run DDL: a missing schema, table or row reads as "uninitialized", never as
//! an error.
//!
//! Features: `writer` (the indexer only) adds the module `writer` — the fenced single
//! writer that runs every statement writing an instance, each table's statements beside
//! the readers' in that table's module — with migrations, and `tls` for the indexer's
//! HTTPS clients; `test-utils` adds `test_utils`, fixtures for tests.

#[cfg(feature = "writer")]
mod checkpoints;
mod children;
mod client;
mod epochs;
mod error;
mod events;
mod hex;
#[cfg(feature = "writer")]
mod instance;
mod metadata;
#[cfg(feature = "writer")]
mod migrate;
mod paging;
mod pool;
mod prepared;
#[cfg(feature = "writer")]
mod sinks;
#[cfg(feature = "writer")]
mod sources;
#[cfg(feature = "writer")]
mod statements;
mod swr;
#[cfg(feature = "test-utils")]
pub mod test_utils;
#[cfg(not(feature = "writer"))]
mod tls;
#[cfg(feature = "writer")]
pub mod tls;
#[cfg(feature = "writer")]
mod webhooks;
#[cfg(feature = "writer")]
pub mod writer;

pub use tidemark_shared_types as types;

pub use children::{ChildPage, ChildQuery};
pub use client::{DbClient, DbClientConfig, Health, IncompatibleConfigTransition, Reason, StatusParts};
pub use epochs::{EpochPage, EpochQuery, EpochSummaries};
pub use error::{DbError, Result};
pub use events::journal::{JOURNAL_CHANNEL, JournalFilter, JournalPage};
pub use events::{EventPage, EventQuery, InvalidLimit, Limit, Order};
pub use pool::{PoolConfig, PoolUsage, default_max_size};
