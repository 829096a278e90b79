//! `tidemark.metadata`: the public config and the status snapshot of each instance.
//!
//! Readers get `None` when the schema, the table or the row is missing
//! ("uninitialized"), never an error. The writer upserts rows ([`write`], feature
//! `writer`). `updated_at` is always set by the database clock, and ages are computed
//! there too.

// Public to tests (`test_utils::metadata`); the client reads through these.
#![cfg_attr(not(feature = "test-utils"), allow(unreachable_pub))]

use diesel::QueryableByName;
use diesel::sql_types::{Bool, Double, Jsonb, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::de::DeserializeOwned;
use tidemark_shared_types::{Cursor, IndexingStatus, PublicConfig, SchemaName};

use crate::error::{DbError, Result};

/// Metadata key of the public config.
pub const PUBLIC_CONFIG_KEY: &str = "public_config";
/// Metadata key of the status snapshot.
pub const INDEXING_STATUS_KEY: &str = "indexing_status";
/// Metadata key of the journal's retained floor: the highest cursor of a pruned removal
/// (a JSON string, like every cursor). Reads after a lower cursor than this, except 0,
/// are refused ([`DbError::CursorExpired`]).
pub(crate) const JOURNAL_FLOOR_KEY: &str = "journal_floor";

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
pub(crate) async fn metadata_table_exists(conn: &mut AsyncPgConnection) -> Result<bool> {
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
/// `updated_at` is the database clock.
#[cfg(feature = "writer")]
pub(crate) const UPSERT_SQL: &str = "INSERT INTO tidemark.metadata (instance_schema, key, value, updated_at) \
     VALUES ($1, $2, $3, now()) \
     ON CONFLICT (instance_schema, key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()";

/// Reads the stored public config of `schema`.
pub async fn read_public_config(
    conn: &mut AsyncPgConnection,
    schema: &SchemaName,
) -> Result<Option<Stored<PublicConfig>>> {
    read(conn, schema, PUBLIC_CONFIG_KEY).await
}

/// Reads the journal's retained floor of `schema` (`Cursor(0)` while nothing was pruned,
/// or before the migrations ran). One statement: it runs with every journal page.
pub(crate) async fn read_journal_floor(conn: &mut AsyncPgConnection, schema: &SchemaName) -> Result<Cursor> {
    #[derive(QueryableByName)]
    struct Floor {
        #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
        floor: Option<String>,
    }
    let read = diesel::sql_query(
        "SELECT (SELECT value #>> '{}' FROM tidemark.metadata WHERE instance_schema = $1 AND key = $2) AS floor",
    )
    .bind::<Text, _>(schema.as_str())
    .bind::<Text, _>(JOURNAL_FLOOR_KEY)
    .get_result::<Floor>(conn)
    .await;
    let text = match read {
        Ok(row) => row.floor,
        Err(e @ diesel::result::Error::DatabaseError(..)) => {
            if metadata_table_exists(conn).await? {
                return Err(e.into());
            }
            None
        }
        Err(e) => return Err(e.into()),
    };
    text.map_or(Ok(Cursor(0)), |t| {
        t.parse().map_err(|e| DbError::InvalidStoredValue {
            key: JOURNAL_FLOOR_KEY,
            message: format!("{t:?} is not a cursor: {e}"),
        })
    })
}

/// Reads the stored status snapshot of `schema`; a snapshot that breaks an invariant is
/// an [`DbError::InvalidStoredValue`].
pub async fn read_indexing_status(
    conn: &mut AsyncPgConnection,
    schema: &SchemaName,
) -> Result<Option<Stored<IndexingStatus>>> {
    read(conn, schema, INDEXING_STATUS_KEY).await
}

/// The writer's statements on `tidemark.metadata` (feature `writer`).
#[cfg(feature = "writer")]
impl<C: tokio_postgres::GenericClient + Sync> crate::statements::Statements<'_, C> {
    /// Upserts the instance's row `key` with `value`; `updated_at` is the database clock.
    pub(crate) async fn upsert_metadata(
        &self,
        key: &'static str,
        value: &impl serde::Serialize,
    ) -> Result<()> {
        let json = serde_json::to_value(value)
            .map_err(|e| DbError::InvalidStoredValue { key, message: e.to_string() })?;
        self.c.execute(UPSERT_SQL, &[&self.schema.as_str(), &key, &json]).await?;
        Ok(())
    }

    /// The start block of `chain_id` in the stored status snapshot (the block the index
    /// was built on), when a snapshot with that chain exists and this build can read it.
    pub(crate) async fn stored_start_block(
        &self,
        chain_id: u64,
    ) -> Result<Option<tidemark_shared_types::BlockRef>> {
        let row = self
            .c
            .query_opt(
                "SELECT value -> 'omnichainSnapshot' -> 'chains' -> $2 -> 'config' -> 'startBlock'
                   FROM tidemark.metadata WHERE instance_schema = $1 AND key = $3",
                &[&self.schema.as_str(), &chain_id.to_string(), &INDEXING_STATUS_KEY],
            )
            .await?;
        let value = row.map(|r| r.try_get::<_, Option<serde_json::Value>>(0)).transpose()?.flatten();
        // A snapshot this build cannot read is no anchor: the endpoints' chain id still is.
        Ok(value.and_then(|v| serde_json::from_value(v).ok()))
    }

    /// Raises the journal's retained floor to `floor` (never lowers it); returns the floor
    /// now stored.
    pub(crate) async fn raise_journal_floor(&self, floor: Cursor) -> Result<Cursor> {
        let row = self
            .c
            .query_opt(
                "SELECT value #>> '{}' FROM tidemark.metadata WHERE instance_schema = $1 AND key = $2 FOR UPDATE",
                &[&self.schema.as_str(), &JOURNAL_FLOOR_KEY],
            )
            .await?;
        let stored = match row.map(|r| r.try_get::<_, Option<String>>(0)).transpose()?.flatten() {
            Some(text) => text.parse::<Cursor>().map_err(|e| DbError::InvalidStoredValue {
                key: JOURNAL_FLOOR_KEY,
                message: format!("{text:?} is not a cursor: {e}"),
            })?,
            None => Cursor(0),
        };
        if floor <= stored {
            return Ok(stored);
        }
        self.upsert_metadata(JOURNAL_FLOOR_KEY, &floor).await?;
        Ok(floor)
    }

    /// Deletes every metadata row of the instance (when the table exists).
    pub(crate) async fn delete_metadata(&self) -> Result<()> {
        let exists = self.c.query_one("SELECT to_regclass('tidemark.metadata') IS NOT NULL", &[]).await?;
        if exists.try_get::<_, bool>(0)? {
            self.c
                .execute("DELETE FROM tidemark.metadata WHERE instance_schema = $1", &[&self.schema.as_str()])
                .await?;
        }
        Ok(())
    }
}

/// The stored public config of `schema`, read through `pool` (none while the metadata
/// table does not exist yet). The indexer's one way to read it: at start-up, before it
/// takes the writer lock, and again once it holds it.
#[cfg(feature = "writer")]
pub async fn stored_public_config(
    pool: &crate::pool::PgPool,
    schema: &SchemaName,
) -> Result<Option<PublicConfig>> {
    let stored = pool.run(async |c| read_public_config(c, schema).await).await?;
    Ok(stored.map(|s| s.value))
}
