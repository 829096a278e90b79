//! `tidemark.metadata` in tests: the readers' queries, and writes as the indexer makes
//! them (the writer's upsert statement, here on a diesel connection, without the lock).

use diesel::sql_types::{Jsonb, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use tidemark_shared_types::{IndexingStatus, PublicConfig, SchemaName};

use crate::error::{DbError, Result};
use crate::metadata::UPSERT_SQL;
pub use crate::metadata::{
    INDEXING_STATUS_KEY, PUBLIC_CONFIG_KEY, Stored, read_indexing_status, read_public_config,
};

async fn upsert(
    conn: &mut AsyncPgConnection,
    schema: &SchemaName,
    key: &'static str,
    value: &impl Serialize,
) -> Result<()> {
    let json = serde_json::to_value(value)
        .map_err(|e| DbError::InvalidStoredValue { key, message: e.to_string() })?;
    diesel::sql_query(UPSERT_SQL)
        .bind::<Text, _>(schema.as_str())
        .bind::<Text, _>(key)
        .bind::<Jsonb, _>(json)
        .execute(conn)
        .await?;
    Ok(())
}

/// Upserts the public config (its `instanceSchema` names the row).
pub async fn write_public_config(conn: &mut AsyncPgConnection, config: &PublicConfig) -> Result<()> {
    let schema = SchemaName::new(config.instance_schema.clone())?;
    upsert(conn, &schema, PUBLIC_CONFIG_KEY, config).await
}

/// Upserts the status snapshot of `schema`.
pub async fn write_indexing_status(
    conn: &mut AsyncPgConnection,
    schema: &SchemaName,
    status: &IndexingStatus,
) -> Result<()> {
    upsert(conn, schema, INDEXING_STATUS_KEY, status).await
}

/// Deletes one metadata row (as a reset does).
pub async fn delete_metadata(conn: &mut AsyncPgConnection, schema: &SchemaName, key: &str) -> Result<()> {
    diesel::sql_query("DELETE FROM tidemark.metadata WHERE instance_schema = $1 AND key = $2")
        .bind::<Text, _>(schema.as_str())
        .bind::<Text, _>(key)
        .execute(conn)
        .await?;
    Ok(())
}
