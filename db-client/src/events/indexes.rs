//! The secondary indexes of `events` that a new instance builds after its first backfill
//! (feature `writer`; docs/database.md, "Deferred indexes").
//!
//! Bulk `COPY` into `events` with every index of the migrations is markedly slower than
//! with its primary key and unique constraint only, and building the secondary indexes
//! afterwards takes seconds. So on a new instance ([`Statements::defer_indexes`]) the
//! writer drops the [`DEFERRABLE`] indexes and records the build as pending under the
//! metadata key [`INDEX_BUILD_KEY`]; once every chain has finished its backfill, an
//! [`IndexBuilder`] builds each missing or invalid one with `CREATE INDEX CONCURRENTLY`
//! on a connection of its own, and the writer records the build as done
//! ([`Statements::finish_index_build`]).
//!
//! Always kept: `events_pkey` and the unique `events_chain_block (chain_id, block_number,
//! log_index)`, which guards duplicates and which the writer's rollback deletes by (its keys
//! arrive in order, so it costs little during a backfill).

use serde::{Deserialize, Serialize};
use tidemark_shared_types::SchemaName;
use tokio_postgres::{Client, GenericClient, Transaction};

use crate::error::{DbError, Result};
use crate::metadata::UPSERT_SQL;
use crate::pool::PgPool;
use crate::statements::Statements;

/// A secondary index of `events` that a new instance builds after its first backfill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeferrableIndex {
    /// The index's name (in the instance schema).
    pub name: &'static str,
    /// Its column list (and a partial index's predicate) as `pg_indexes.indexdef` shows it
    /// after `USING btree`.
    pub columns: &'static str,
}

/// Every deferrable index of `events`, exactly as `ensure_instance_schema_v4` creates
/// them (a test compares this list with the catalog of a new instance).
pub const DEFERRABLE: [DeferrableIndex; 8] = [
    DeferrableIndex { name: "events_contract_event", columns: "(event_id, cursor)" },
    DeferrableIndex { name: "events_address", columns: "(address, cursor)" },
    DeferrableIndex { name: "events_tx", columns: "(tx_hash)" },
    DeferrableIndex { name: "events_topic1", columns: "(topic1, cursor) WHERE (topic1 IS NOT NULL)" },
    DeferrableIndex { name: "events_topic2", columns: "(topic2, cursor) WHERE (topic2 IS NOT NULL)" },
    DeferrableIndex { name: "events_topic3", columns: "(topic3, cursor) WHERE (topic3 IS NOT NULL)" },
    DeferrableIndex { name: "events_chain_cursor", columns: "(chain_id, cursor)" },
    DeferrableIndex { name: "events_contract_cursor", columns: "(contract_id, cursor)" },
];

/// Metadata key of the deferred index build: `{"state": "pending"}` from the deferral
/// until every index is built, then `{"state": "done"}`. While it is pending,
/// `ensure_instance_schema_v*` leaves these indexes alone (`tidemark.indexes_deferred`,
/// migration `deferred_indexes`): a plain `CREATE INDEX` at a restart during the
/// backfill would block every commit while it runs.
pub const INDEX_BUILD_KEY: &str = "index_build";

/// The stored record of [`INDEX_BUILD_KEY`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    state: RecordState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum RecordState {
    Pending,
    Done,
}

/// The deferrable indexes that exist and are valid, by name (`pg_index.indisvalid`: an
/// interrupted `CREATE INDEX CONCURRENTLY` leaves an invalid one behind).
const VALID_SQL: &str = "SELECT c.relname FROM pg_index i
       JOIN pg_class c ON c.oid = i.indexrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relname = ANY($2) AND i.indisvalid";

/// The same, invalid ones.
const INVALID_SQL: &str = "SELECT c.relname FROM pg_index i
       JOIN pg_class c ON c.oid = i.indexrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relname = ANY($2) AND NOT i.indisvalid";

fn names() -> Vec<&'static str> {
    DEFERRABLE.iter().map(|i| i.name).collect()
}

async fn names_where(c: &impl GenericClient, sql: &str, schema: &SchemaName) -> Result<Vec<String>> {
    let rows = c.query(sql, &[&schema.as_str(), &names()]).await?;
    rows.iter().map(|r| Ok(r.try_get::<_, String>(0)?)).collect()
}

impl<C: GenericClient + Sync> Statements<'_, C> {
    async fn index_build_record(&self) -> Result<Option<Record>> {
        let row = self
            .c
            .query_opt(
                "SELECT value FROM tidemark.metadata WHERE instance_schema = $1 AND key = $2",
                &[&self.schema.as_str(), &INDEX_BUILD_KEY],
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        let value: serde_json::Value = row.try_get(0)?;
        serde_json::from_value(value)
            .map(Some)
            .map_err(|e| DbError::InvalidStoredValue { key: INDEX_BUILD_KEY, message: e.to_string() })
    }

    async fn put_index_build_record(&self, record: &Record) -> Result<()> {
        let json = serde_json::to_value(record)
            .map_err(|e| DbError::InvalidStoredValue { key: INDEX_BUILD_KEY, message: e.to_string() })?;
        self.c.execute(UPSERT_SQL, &[&self.schema.as_str(), &INDEX_BUILD_KEY, &json]).await?;
        Ok(())
    }

    /// Whether the deferred index build is pending (recorded, not done yet).
    pub(crate) async fn index_build_pending(&self) -> Result<bool> {
        Ok(self.index_build_record().await?.is_some_and(|r| r.state == RecordState::Pending))
    }

    /// The deferrable indexes that exist and are valid.
    pub(crate) async fn valid_indexes(&self) -> Result<Vec<String>> {
        names_where(self.c, VALID_SQL, self.schema).await
    }
}

impl Statements<'_, Transaction<'_>> {
    /// On a new instance (no row in `events`, no checkpoint), drops the [`DEFERRABLE`]
    /// indexes and records the build as pending; returns whether it did. On an instance
    /// with data it does nothing: one that finished its first backfill keeps its indexes,
    /// also while a chain added later backfills.
    ///
    /// Invariant: the drop and the pending record commit together (the caller's
    /// transaction), so an instance never lacks an index without the record that makes
    /// the indexer build it.
    pub(crate) async fn defer_indexes(&self) -> Result<bool> {
        let sql = format!(
            "SELECT NOT EXISTS (SELECT 1 FROM {s}.events) AND NOT EXISTS (SELECT 1 FROM {s}.checkpoints)",
            s = self.s
        );
        let empty: bool = self.c.query_one(&sql, &[]).await?.try_get(0)?;
        if !empty {
            return Ok(false);
        }
        for index in &DEFERRABLE {
            self.c.execute(&format!("DROP INDEX IF EXISTS {}.{}", self.s, index.name), &[]).await?;
        }
        self.put_index_build_record(&Record { state: RecordState::Pending }).await?;
        Ok(true)
    }

    /// Records the build as done once every [`DEFERRABLE`] index exists and is valid;
    /// [`DbError::IndexesMissing`] naming the others otherwise.
    ///
    /// Invariant: `done` is recorded only when the catalog shows every index valid, in
    /// the transaction that checked it.
    pub(crate) async fn finish_index_build(&self) -> Result<()> {
        let valid = self.valid_indexes().await?;
        let missing: Vec<&str> =
            DEFERRABLE.iter().map(|i| i.name).filter(|n| !valid.iter().any(|v| v == n)).collect();
        if !missing.is_empty() {
            return Err(DbError::IndexesMissing(missing.join(", ")));
        }
        self.put_index_build_record(&Record { state: RecordState::Done }).await
    }
}

/// Session settings of the index build's connection: no statement timeout (a build takes
/// as long as the table needs).
const BUILD_SESSION: &str = "SET statement_timeout = 0; SET lock_timeout = 0; \
     SET idle_in_transaction_session_timeout = 0; SET application_name = 'tidemark-indexer-index-build'";

/// From PostgreSQL 14 on: notice a client that went away within a second, so an abandoned
/// build stops instead of holding its lock on the table until it ends.
const CHECK_CLIENT: &str = "SET client_connection_check_interval = '1s'";

/// A dedicated connection that builds the deferred indexes with `CREATE INDEX
/// CONCURRENTLY`, which cannot run inside a transaction and does not block the writer's
/// commits. Made by [`Writer::index_builder`](crate::writer::Writer::index_builder), the
/// same way as the writer's connection (URL, TLS, time limits), so only a process that
/// holds the writer lock starts a build; what it writes is idempotent (`IF NOT EXISTS`).
pub struct IndexBuilder {
    client: Client,
    schema: SchemaName,
}

impl std::fmt::Debug for IndexBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexBuilder").field("schema", &self.schema).finish_non_exhaustive()
    }
}

impl IndexBuilder {
    pub(crate) async fn connect(pool: &PgPool, schema: &SchemaName) -> Result<Self> {
        let client = pool.connect_raw().await?;
        client.batch_execute(BUILD_SESSION).await?;
        let version: i32 =
            client.query_one("SELECT current_setting('server_version_num')::int", &[]).await?.try_get(0)?;
        if version >= 140_000 {
            client.batch_execute(CHECK_CLIENT).await?;
        }
        Ok(Self { client, schema: schema.clone() })
    }

    /// The deferrable indexes that are missing or invalid, in the order of [`DEFERRABLE`].
    pub async fn to_build(&self) -> Result<Vec<DeferrableIndex>> {
        let valid = names_where(&self.client, VALID_SQL, &self.schema).await?;
        Ok(DEFERRABLE.into_iter().filter(|i| !valid.iter().any(|v| v == i.name)).collect())
    }

    /// Builds `index`: drops it first when it is invalid (left by an interrupted build),
    /// then `CREATE INDEX CONCURRENTLY IF NOT EXISTS`.
    pub async fn build(&self, index: &DeferrableIndex) -> Result<()> {
        let s = self.schema.quoted();
        let invalid = names_where(&self.client, INVALID_SQL, &self.schema).await?;
        if invalid.iter().any(|n| n == index.name) {
            self.client
                .batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {s}.{}", index.name))
                .await?;
        }
        let sql =
            format!("CREATE INDEX CONCURRENTLY IF NOT EXISTS {} ON {s}.events {}", index.name, index.columns);
        self.client.batch_execute(&sql).await?;
        Ok(())
    }
}
