//! db-client integration tests against a real PostgreSQL (a fresh database per test).

mod client;
mod epochs;
mod events;
mod hung;
mod metadata;
mod migrations;
mod plans;
mod pool;
mod tls;
mod writer;

use std::future::Future;
use std::time::Duration;

use tidemark_db_client::PoolConfig;
use tidemark_db_client::test_utils::TestDb;
use tidemark_db_client::writer::PgPool;

/// A fresh database with the migrations applied, and a pool on it.
pub(crate) async fn migrated() -> (TestDb, PgPool) {
    let db = TestDb::new().await;
    let pool = PgPool::new(PoolConfig::new(db.url.clone())).expect("pool");
    tidemark_db_client::writer::run_migrations(&pool).await.expect("migrations");
    (db, pool)
}

/// Polls `condition` every 20 ms until it holds; fails the test after 15 s.
pub(crate) async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
