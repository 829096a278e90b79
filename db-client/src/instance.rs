//! The per-instance schema's lifecycle (feature `writer`): create or upgrade the instance
//! tables, or drop them with the instance's metadata rows. Only
//! [`Writer`](crate::writer::Writer) runs these statements, on its fenced connection;
//! readers never run DDL.

use tidemark_shared_types::SchemaName;
use tidemark_shared_types::config::SCHEMA_VERSION;
use tokio_postgres::Transaction;

use crate::error::Result;
use crate::migrate::MIGRATION_LOCK_KEY;

/// Creates the instance schema at the layout of [`SCHEMA_VERSION`], or upgrades an
/// instance of an earlier layout in place: `tidemark.ensure_instance_schema_v<N>`, which
/// the migration of layout `N` installs. Idempotent and safe to run concurrently: it
/// runs under the migration lock, taken for the transaction.
pub(crate) async fn ensure(tx: &Transaction<'_>, schema: &SchemaName) -> Result<()> {
    tx.execute(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"), &[]).await?;
    let sql = format!("SELECT tidemark.ensure_instance_schema_v{SCHEMA_VERSION}($1)");
    tx.execute(&sql, &[&schema.as_str()]).await?;
    Ok(())
}

/// Drops the instance schema with all its data and deletes its metadata rows (for a
/// deliberate reindex), within the caller's transaction.
pub(crate) async fn drop(tx: &Transaction<'_>, schema: &SchemaName) -> Result<()> {
    tx.execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", schema.quoted()), &[]).await?;
    crate::metadata::write::delete_instance(tx, schema).await
}
