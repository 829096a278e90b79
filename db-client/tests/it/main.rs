//! db-client integration tests against a real PostgreSQL (a fresh database per test).

mod metadata;
mod migrations;
mod pool;

use tidemark_db_client::test_utils::TestDb;
use tidemark_db_client::{PgPool, PoolConfig};

/// A fresh database with the migrations applied, and a pool on it.
pub(crate) async fn migrated() -> (TestDb, PgPool) {
    let db = TestDb::new().await;
    let pool = PgPool::new(PoolConfig::new(db.url.clone())).expect("pool");
    tidemark_db_client::migrate::run_migrations(&pool).await.expect("migrations");
    (db, pool)
}
