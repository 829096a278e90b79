//! db-client integration tests against a real PostgreSQL (a fresh database per test).

mod client;
mod epochs;
mod events;
mod hung;
mod indexes;
mod journal;
mod metadata;
mod migrations;
mod plans;
mod pool;
mod tls;
mod writer;

use std::time::Duration;

use tidemark_db_client::PoolConfig;
use tidemark_db_client::test_utils::TestDb;
use tidemark_db_client::writer::PgPool;

/// Deadline for what the client should notice within a few refresh intervals.
pub(crate) const SOON: Duration = Duration::from_secs(15);

/// A fresh database with the migrations applied, and a pool on it.
pub(crate) async fn migrated() -> (TestDb, PgPool) {
    let db = TestDb::new().await;
    let pool = PgPool::new(PoolConfig::new(db.url.clone())).expect("pool");
    tidemark_db_client::writer::run_migrations(&pool).await.expect("migrations");
    (db, pool)
}
