//! Embedded migrations (feature `writer`), run under a PostgreSQL advisory lock so that
//! any number of processes may start at once. Readers never migrate.

use diesel_async::AsyncMigrationHarness;
use diesel_async::AsyncPgConnection;
use diesel_async::RunQueryDsl;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::error::{DbError, Result};
use crate::pool::PgPool;

/// The SQL migrations in `migrations/`, compiled into the binary.
const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations");

/// Advisory-lock key serializing migrations and instance-schema DDL ("tidemark" in ASCII).
pub(crate) const MIGRATION_LOCK_KEY: i64 = 0x7469_6465_6d61_726b;

/// Runs pending migrations. Safe to call concurrently from several processes: the first
/// caller runs them under a session advisory lock while the others wait, then find
/// nothing pending.
pub async fn run_migrations(pool: &PgPool) -> Result<()> {
    let mut lock_conn = pool.connect_dedicated().await?;
    // The migration may take longer than the pool's statement timeout allows on a busy
    // server; the lock wait too.
    diesel::sql_query("SET statement_timeout = 0").execute(&mut lock_conn).await?;
    diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
        .execute(&mut lock_conn)
        .await?;
    let result = run_pending(pool).await;
    let unlock = diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))
        .execute(&mut lock_conn)
        .await;
    result?;
    unlock?;
    Ok(())
}

async fn run_pending(pool: &PgPool) -> Result<()> {
    let conn: AsyncPgConnection = pool.connect_dedicated().await?;
    // The harness is synchronous; it drives the async connection from a blocking thread.
    tokio::task::spawn_blocking(move || {
        let mut harness = AsyncMigrationHarness::new(conn);
        harness.run_pending_migrations(MIGRATIONS).map(|_| ()).map_err(|e| DbError::Migration(e.to_string()))
    })
    .await
    .map_err(|e| DbError::Migration(e.to_string()))?
}
