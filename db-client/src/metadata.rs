//! `tidemark.metadata`: the public config and the status snapshot of each instance.
//!
//! Writers (the indexer; tests standing in for it) upsert rows; readers get `None` when
//! the schema, the table or the row is missing ("uninitialized"), never an error.
//! `updated_at` is always set by the database clock, and ages are computed there too.

use diesel::QueryableByName;
use diesel::sql_types::{Bool, Double, Jsonb, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tidemark_shared_types::{IndexingStatus, PublicConfig, SchemaName};

use crate::error::{DbError, Result};

/// Metadata key of the public config.
pub const PUBLIC_CONFIG_KEY: &str = "public_config";
/// Metadata key of the status snapshot.
pub const INDEXING_STATUS_KEY: &str = "indexing_status";

/// A metadata value with its age on the database clock.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored<T> {
    /// The decoded value.
    pub value: T,
    /// When it was written (unix seconds, database clock).
    pub updated_at: f64,
    /// Seconds since it was written, measured by the database clock at read time.
    pub age_secs: f64,
}

#[derive(QueryableByName)]
struct Exists {
    #[diesel(sql_type = Bool)]
    exists: bool,
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = Jsonb)]
    value: serde_json::Value,
    #[diesel(sql_type = Double)]
    updated_at: f64,
    #[diesel(sql_type = Double)]
    age_secs: f64,
}

/// True when `tidemark.metadata` exists (the migrations have run).
pub async fn metadata_table_exists(conn: &mut AsyncPgConnection) -> Result<bool> {
    let row: Exists = diesel::sql_query("SELECT to_regclass('tidemark.metadata') IS NOT NULL AS exists")
        .get_result(conn)
        .await?;
    Ok(row.exists)
}

async fn read<T: DeserializeOwned>(
    conn: &mut AsyncPgConnection,
    schema: &SchemaName,
    key: &'static str,
) -> Result<Option<Stored<T>>> {
    if !metadata_table_exists(conn).await? {
        return Ok(None);
    }
    let row: Option<Row> = diesel::sql_query(
        "SELECT value,
                extract(epoch FROM updated_at)::float8 AS updated_at,
                extract(epoch FROM (now() - updated_at))::float8 AS age_secs
           FROM tidemark.metadata WHERE instance_schema = $1 AND key = $2",
    )
    .bind::<Text, _>(schema.as_str())
    .bind::<Text, _>(key)
    .get_result(conn)
    .await
    .map(Some)
    .or_else(|e| if e == diesel::result::Error::NotFound { Ok(None) } else { Err(e) })?;
    let Some(row) = row else { return Ok(None) };
    let value = serde_json::from_value(row.value)
        .map_err(|e| DbError::InvalidStoredValue { key, message: e.to_string() })?;
    Ok(Some(Stored { value, updated_at: row.updated_at, age_secs: row.age_secs }))
}

/// Upserts one metadata row: `$1` instance schema, `$2` key, `$3` jsonb value;
/// `updated_at` is the database clock. For writers on connections of their own (the
/// indexer's `COPY` connection).
pub const UPSERT_SQL: &str = "INSERT INTO tidemark.metadata (instance_schema, key, value, updated_at) \
     VALUES ($1, $2, $3, now()) \
     ON CONFLICT (instance_schema, key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()";

async fn write<T: Serialize>(
    conn: &mut AsyncPgConnection,
    schema: &SchemaName,
    key: &'static str,
    value: &T,
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

/// Reads the stored public config of `schema`.
pub async fn read_public_config(
    conn: &mut AsyncPgConnection,
    schema: &SchemaName,
) -> Result<Option<Stored<PublicConfig>>> {
    read(conn, schema, PUBLIC_CONFIG_KEY).await
}

/// Reads the stored status snapshot of `schema`; a snapshot that breaks an invariant is
/// an [`DbError::InvalidStoredValue`].
pub async fn read_indexing_status(
    conn: &mut AsyncPgConnection,
    schema: &SchemaName,
) -> Result<Option<Stored<IndexingStatus>>> {
    read(conn, schema, INDEXING_STATUS_KEY).await
}

/// Upserts the public config (its `instanceSchema` names the row).
pub async fn write_public_config(conn: &mut AsyncPgConnection, config: &PublicConfig) -> Result<()> {
    let schema = SchemaName::new(config.instance_schema.clone())?;
    write(conn, &schema, PUBLIC_CONFIG_KEY, config).await
}

/// Upserts the status snapshot of `schema`.
pub async fn write_indexing_status(
    conn: &mut AsyncPgConnection,
    schema: &SchemaName,
    status: &IndexingStatus,
) -> Result<()> {
    write(conn, schema, INDEXING_STATUS_KEY, status).await
}

/// Deletes one metadata row (e.g. on reset).
pub async fn delete_metadata(conn: &mut AsyncPgConnection, schema: &SchemaName, key: &str) -> Result<()> {
    if !metadata_table_exists(conn).await? {
        return Ok(());
    }
    diesel::sql_query("DELETE FROM tidemark.metadata WHERE instance_schema = $1 AND key = $2")
        .bind::<Text, _>(schema.as_str())
        .bind::<Text, _>(key)
        .execute(conn)
        .await?;
    Ok(())
}
