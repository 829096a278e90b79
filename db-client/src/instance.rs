//! The per-instance schema's lifecycle (feature `writer`): create or upgrade the instance
//! tables, or drop them with the instance's metadata rows. Readers never run DDL.

use tidemark_shared_types::config::SCHEMA_VERSION;
use tokio_postgres::Transaction;

use crate::error::Result;
use crate::migrate::MIGRATION_LOCK_KEY;
use crate::statements::Statements;

impl Statements<'_, Transaction<'_>> {
    /// Creates the instance schema at the layout of [`SCHEMA_VERSION`], or upgrades an
    /// instance of an earlier layout in place: `tidemark.ensure_instance_schema_v<N>`,
    /// which the migration of layout `N` installs. Idempotent and safe to run
    /// concurrently: it runs under the migration lock, taken for the transaction.
    pub(crate) async fn ensure_instance(&self) -> Result<()> {
        self.c.execute(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"), &[]).await?;
        // Not a notice per existing table at every start ("relation … already exists").
        self.c.execute("SET LOCAL client_min_messages = warning", &[]).await?;
        // An upgrade rewrites tables in this one statement, for as long as their size
        // needs: under the writer's statement timeout a large instance would time out at
        // every start and never be upgraded. (Waiting for a lock still times out.)
        self.c.execute("SET LOCAL statement_timeout = 0", &[]).await?;
        let sql = format!("SELECT tidemark.ensure_instance_schema_v{SCHEMA_VERSION}($1)");
        self.c.execute(&sql, &[&self.schema.as_str()]).await?;
        Ok(())
    }

    /// Drops the instance schema with all its data and deletes its metadata rows (for a
    /// deliberate reindex).
    pub(crate) async fn drop_instance(&self) -> Result<()> {
        self.c.execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.s), &[]).await?;
        self.delete_metadata().await
    }
}
