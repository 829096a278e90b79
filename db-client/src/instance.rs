//! Per-instance schema lifecycle: create or upgrade the instance tables, or drop them.
//!
//! Only the indexer calls these; readers never run DDL.

use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use tidemark_shared_types::SchemaName;

use crate::error::{DbError, Result};
use crate::migrate::MIGRATION_LOCK_KEY;

/// The statement that creates the instance schema at the layout of
/// [`SCHEMA_VERSION`](tidemark_shared_types::config::SCHEMA_VERSION), or upgrades an
/// instance of an earlier layout in place (`$1` = the schema name). Run it under the
/// migration lock, as [`ensure_instance_schema`] does.
pub const ENSURE_INSTANCE_SCHEMA_SQL: &str = "SELECT tidemark.ensure_instance_schema_v2($1)";

/// Creates the instance schema and its tables if missing, or upgrades them to the current
/// layout (version 2: `events.decode_error`). Idempotent and safe to run concurrently
/// (serialized by a transaction-level advisory lock).
pub async fn ensure_instance_schema(conn: &mut AsyncPgConnection, schema: &SchemaName) -> Result<()> {
    let schema = schema.as_str().to_owned();
    conn.transaction::<_, DbError, _>(async |c| {
        diesel::sql_query(format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")).execute(c).await?;
        diesel::sql_query(ENSURE_INSTANCE_SCHEMA_SQL).bind::<Text, _>(&schema).execute(c).await?;
        Ok(())
    })
    .await
}

/// Drops the instance schema with all its data and deletes its metadata rows, in one
/// transaction (for a deliberate reindex).
pub async fn drop_instance(conn: &mut AsyncPgConnection, schema: &SchemaName) -> Result<()> {
    let quoted = schema.quoted();
    let name = schema.as_str().to_owned();
    conn.transaction::<_, DbError, _>(async |c| {
        diesel::sql_query(format!("DROP SCHEMA IF EXISTS {quoted} CASCADE")).execute(c).await?;
        let has_metadata = crate::metadata::metadata_table_exists(c).await?;
        if has_metadata {
            diesel::sql_query("DELETE FROM tidemark.metadata WHERE instance_schema = $1")
                .bind::<Text, _>(&name)
                .execute(c)
                .await?;
        }
        Ok(())
    })
    .await
}
