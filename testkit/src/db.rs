//! Reading what an indexer stored: events, checkpoints, the journal and metadata.
//!
//! Every query goes through the validated, quoted instance schema. A table that does not
//! exist yet (the indexer has not created the instance) reads as empty, so tests can
//! poll from the moment they start the indexer.

use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Bool, Double, Integer, Jsonb, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use serde_json::Value;
use tidemark_shared_types::SchemaName;

use crate::chain::LogRow;
use crate::error::{Error, Result};

/// A row of the instance's `events` table.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct StoredEvent {
    /// Journal cursor.
    #[diesel(sql_type = BigInt)]
    pub cursor: i64,
    /// Chain id.
    #[diesel(sql_type = BigInt)]
    pub chain_id: i64,
    /// Block number.
    #[diesel(sql_type = BigInt)]
    pub block_number: i64,
    /// Block hash.
    #[diesel(sql_type = Text)]
    pub block_hash: String,
    /// Block timestamp.
    #[diesel(sql_type = BigInt)]
    pub block_timestamp: i64,
    /// Transaction hash.
    #[diesel(sql_type = Text)]
    pub tx_hash: String,
    /// Transaction index.
    #[diesel(sql_type = Integer)]
    pub tx_index: i32,
    /// Log index.
    #[diesel(sql_type = Integer)]
    pub log_index: i32,
    /// Emitting contract.
    #[diesel(sql_type = Text)]
    pub address: String,
    /// Contract name from the config.
    #[diesel(sql_type = Text)]
    pub contract: String,
    /// Event name.
    #[diesel(sql_type = Text)]
    pub event: String,
    /// Canonical event signature.
    #[diesel(sql_type = Text)]
    pub signature: String,
    /// Topics.
    #[diesel(sql_type = Array<Text>)]
    pub topics: Vec<String>,
    /// Data.
    #[diesel(sql_type = Text)]
    pub data: String,
    /// Decoded arguments; JSON `null` when the log did not decode.
    #[diesel(sql_type = Jsonb)]
    pub args: Value,
    /// Why the log did not decode (always `None` on a layout-1 instance).
    #[diesel(sql_type = Nullable<Text>)]
    pub decode_error: Option<String>,
}

impl StoredEvent {
    /// The raw log this row stores, for comparison with [`crate::canonical_logs`].
    pub fn log_row(&self) -> LogRow {
        LogRow {
            block_number: self.block_number as u64,
            log_index: self.log_index as u64,
            block_hash: self.block_hash.clone(),
            block_timestamp: self.block_timestamp as u64,
            tx_hash: self.tx_hash.clone(),
            tx_index: self.tx_index as u64,
            address: self.address.clone(),
            topics: self.topics.clone(),
            data: self.data.clone(),
        }
    }
}

/// A row of the instance's `checkpoints` table.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct Checkpoint {
    /// Chain id.
    #[diesel(sql_type = BigInt)]
    pub chain_id: i64,
    /// Last indexed block.
    #[diesel(sql_type = BigInt)]
    pub block_number: i64,
    /// Its hash.
    #[diesel(sql_type = Text)]
    pub block_hash: String,
    /// Its timestamp.
    #[diesel(sql_type = BigInt)]
    pub block_timestamp: i64,
}

/// A row of the instance's `journal` view.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct JournalEntry {
    /// Cursor.
    #[diesel(sql_type = BigInt)]
    pub cursor: i64,
    /// `log` or `removed`.
    #[diesel(sql_type = Text)]
    pub kind: String,
    /// Chain id.
    #[diesel(sql_type = BigInt)]
    pub chain_id: i64,
    /// Block number.
    #[diesel(sql_type = BigInt)]
    pub block_number: i64,
    /// Block hash.
    #[diesel(sql_type = Text)]
    pub block_hash: String,
    /// Log index.
    #[diesel(sql_type = Integer)]
    pub log_index: i32,
    /// Cursor of the event the entry adds or removes.
    #[diesel(sql_type = BigInt)]
    pub event_cursor: i64,
    /// The event row as JSON.
    #[diesel(sql_type = Jsonb)]
    pub payload: Value,
}

/// A row of the instance's `epochs` table.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct EpochRow {
    /// Chain id.
    #[diesel(sql_type = BigInt)]
    pub chain_id: i64,
    /// Per-chain epoch id.
    #[diesel(sql_type = BigInt)]
    pub epoch_id: i64,
    /// First block.
    #[diesel(sql_type = BigInt)]
    pub from_block: i64,
    /// Last block.
    #[diesel(sql_type = BigInt)]
    pub to_block: i64,
    /// Current stage.
    #[diesel(sql_type = Text)]
    pub stage: String,
    /// Stage history: `[{stage, at}]`, oldest first.
    #[diesel(sql_type = Jsonb)]
    pub stages: Value,
    /// Last failure, if any.
    #[diesel(sql_type = Nullable<Text>)]
    pub error: Option<String>,
    /// The added source it belongs to (`None`: the chain's own epochs).
    #[diesel(sql_type = Nullable<Text>)]
    pub source: Option<String>,
}

impl EpochRow {
    /// Whether the epoch finished (`stored` or `finalized`).
    pub fn is_finished(&self) -> bool {
        matches!(self.stage.as_str(), "stored" | "finalized")
    }

    /// The stage names of the history, oldest first.
    pub fn stage_names(&self) -> Vec<String> {
        self.stages
            .as_array()
            .map(|a| a.iter().filter_map(|e| e["stage"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }

    /// The stage timestamps of the history, oldest first.
    pub fn stage_times(&self) -> Vec<f64> {
        self.stages
            .as_array()
            .map(|a| a.iter().filter_map(|e| e["at"].as_f64()).collect())
            .unwrap_or_default()
    }
}

/// A row of `tidemark.metadata`, with times on the database clock.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct MetadataRow {
    /// Value.
    #[diesel(sql_type = Jsonb)]
    pub value: Value,
    /// `updated_at` as unix seconds.
    #[diesel(sql_type = Double)]
    pub updated_at: f64,
    /// Seconds since `updated_at`, by the database clock.
    #[diesel(sql_type = Double)]
    pub age_secs: f64,
}

#[derive(QueryableByName)]
struct Flag {
    #[diesel(sql_type = Bool)]
    flag: bool,
}

#[derive(QueryableByName)]
struct Num {
    #[diesel(sql_type = Nullable<BigInt>)]
    n: Option<i64>,
}

#[derive(QueryableByName)]
struct Txt {
    #[diesel(sql_type = Text)]
    t: String,
}

#[derive(QueryableByName)]
struct Secs {
    #[diesel(sql_type = Double)]
    s: f64,
}

/// A row of `children`.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct ChildEntry {
    /// Chain.
    #[diesel(sql_type = BigInt)]
    pub chain_id: i64,
    /// The factory contract.
    #[diesel(sql_type = Text)]
    pub contract: String,
    /// Lowercase 0x address.
    #[diesel(sql_type = Text)]
    pub address: String,
    /// The creating block.
    #[diesel(sql_type = BigInt)]
    pub block_number: i64,
}

/// A connection to a test database, looking at one instance schema.
pub struct InstanceDb {
    conn: AsyncPgConnection,
    schema: SchemaName,
}

impl std::fmt::Debug for InstanceDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceDb").field("schema", &self.schema.as_str()).finish_non_exhaustive()
    }
}

impl InstanceDb {
    /// Connects to `database_url` for instance `schema`.
    pub async fn connect(database_url: &str, schema: &str) -> Result<Self> {
        let schema = SchemaName::new(schema).map_err(|e| Error::Invalid(e.to_string()))?;
        let conn = tidemark_db_client::tls::establish(database_url).await?;
        Ok(Self { conn, schema })
    }

    /// The connection, for ad-hoc queries.
    pub fn conn(&mut self) -> &mut AsyncPgConnection {
        &mut self.conn
    }

    /// The instance schema name.
    pub fn schema(&self) -> &str {
        self.schema.as_str()
    }

    /// Whether the instance schema exists.
    pub async fn schema_exists(&mut self) -> Result<bool> {
        let row: Flag = diesel::sql_query(
            "SELECT EXISTS (SELECT 1 FROM information_schema.schemata WHERE schema_name = $1) AS flag",
        )
        .bind::<Text, _>(self.schema.as_str())
        .get_result(&mut self.conn)
        .await?;
        Ok(row.flag)
    }

    /// Whether `table` (or view) exists in the instance schema.
    pub async fn has_table(&mut self, table: &str) -> Result<bool> {
        let row: Flag =
            diesel::sql_query("SELECT to_regclass(format('%I.%I', $1::text, $2::text)) IS NOT NULL AS flag")
                .bind::<Text, _>(self.schema.as_str())
                .bind::<Text, _>(table)
                .get_result(&mut self.conn)
                .await?;
        Ok(row.flag)
    }

    /// Every stored event, ordered by chain, block number and log index.
    pub async fn events(&mut self) -> Result<Vec<StoredEvent>> {
        self.events_where("TRUE ORDER BY chain_id, block_number, log_index").await
    }

    /// Every stored event in cursor order.
    pub async fn events_by_cursor(&mut self) -> Result<Vec<StoredEvent>> {
        self.events_where("TRUE ORDER BY cursor").await
    }

    async fn events_where(&mut self, tail: &str) -> Result<Vec<StoredEvent>> {
        if !self.has_table("events").await? {
            return Ok(Vec::new());
        }
        let s = self.schema.quoted();
        // Layout 4 (`event_types`) as hex text, or a previous build's layout as it is.
        let sql = if self.has_table("event_types").await? {
            format!(
                "SELECT * FROM (
                   SELECT e.cursor, e.chain_id, e.block_number, '0x' || encode(e.block_hash, 'hex') AS block_hash,
                          e.block_timestamp, '0x' || encode(e.tx_hash, 'hex') AS tx_hash, e.tx_index, e.log_index,
                          '0x' || encode(e.address, 'hex') AS address, t.contract, t.event, t.signature,
                          array_remove(ARRAY['0x' || encode(coalesce(e.topic0, t.topic0), 'hex'),
                                             '0x' || encode(e.topic1, 'hex'),
                                             '0x' || encode(e.topic2, 'hex'), '0x' || encode(e.topic3, 'hex')], NULL)
                              AS topics,
                          '0x' || encode(e.data, 'hex') AS data, coalesce(e.args, 'null') AS args, e.decode_error
                     FROM {s}.events e JOIN {s}.event_types t ON t.id = e.type_id) e
                 WHERE {tail}"
            )
        } else {
            format!(
                "SELECT cursor, chain_id, block_number, block_hash, block_timestamp, tx_hash, tx_index, log_index,
                        address, contract, event, signature, topics, data, coalesce(args, 'null') AS args,
                        to_jsonb(e) ->> 'decode_error' AS decode_error
                   FROM {s}.events e WHERE {tail}"
            )
        };
        Ok(diesel::sql_query(sql).load(&mut self.conn).await?)
    }

    /// Checkpoints and events read in one repeatable-read transaction: what a reader sees
    /// at one instant. (Two separate reads may straddle a commit that lands in between.)
    pub async fn snapshot(&mut self) -> Result<(Vec<Checkpoint>, Vec<StoredEvent>)> {
        self.conn.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?;
        let read = async { Ok::<_, Error>((self.checkpoints().await?, self.events().await?)) }.await;
        let end = self.conn.batch_execute(if read.is_ok() { "COMMIT" } else { "ROLLBACK" }).await;
        let read = read?;
        end?;
        Ok(read)
    }

    /// Number of stored events.
    pub async fn event_count(&mut self) -> Result<i64> {
        if !self.has_table("events").await? {
            return Ok(0);
        }
        let s = self.schema.quoted();
        let row: Num = diesel::sql_query(format!("SELECT count(*)::bigint AS n FROM {s}.events"))
            .get_result(&mut self.conn)
            .await?;
        Ok(row.n.unwrap_or(0))
    }

    /// The highest cursor in the journal (events and removals), if any.
    pub async fn max_cursor(&mut self) -> Result<Option<i64>> {
        if !self.has_table("journal").await? {
            return Ok(None);
        }
        let s = self.schema.quoted();
        let row: Num = diesel::sql_query(format!("SELECT max(cursor) AS n FROM {s}.journal"))
            .get_result(&mut self.conn)
            .await?;
        Ok(row.n)
    }

    /// Every checkpoint, by chain id.
    pub async fn checkpoints(&mut self) -> Result<Vec<Checkpoint>> {
        if !self.has_table("checkpoints").await? {
            return Ok(Vec::new());
        }
        let s = self.schema.quoted();
        Ok(diesel::sql_query(format!(
            "SELECT chain_id, block_number, block_hash, block_timestamp FROM {s}.checkpoints ORDER BY chain_id"
        ))
        .load(&mut self.conn)
        .await?)
    }

    /// Every epoch, by chain id and epoch id.
    pub async fn epochs(&mut self) -> Result<Vec<EpochRow>> {
        if !self.has_table("epochs").await? {
            return Ok(Vec::new());
        }
        let s = self.schema.quoted();
        Ok(diesel::sql_query(format!(
            "SELECT chain_id, epoch_id, from_block, to_block, stage, stages, error, to_jsonb(e) ->> 'source' AS source
               FROM {s}.epochs e ORDER BY chain_id, epoch_id"
        ))
        .load(&mut self.conn)
        .await?)
    }

    /// Every factory child: (chain id, contract, lowercase 0x address, creating block),
    /// by chain, block and log index.
    pub async fn children(&mut self) -> Result<Vec<ChildEntry>> {
        if !self.has_table("children").await? {
            return Ok(Vec::new());
        }
        let s = self.schema.quoted();
        Ok(diesel::sql_query(format!(
            "SELECT chain_id, contract, '0x' || encode(address, 'hex') AS address, block_number
               FROM {s}.children ORDER BY chain_id, block_number, log_index, contract"
        ))
        .load(&mut self.conn)
        .await?)
    }

    /// The checkpoint of `chain_id`.
    pub async fn checkpoint(&mut self, chain_id: u64) -> Result<Option<Checkpoint>> {
        Ok(self.checkpoints().await?.into_iter().find(|c| c.chain_id as u64 == chain_id))
    }

    /// Journal entries with a cursor above `after`, in cursor order.
    pub async fn journal_after(&mut self, after: i64) -> Result<Vec<JournalEntry>> {
        if !self.has_table("journal").await? {
            return Ok(Vec::new());
        }
        let s = self.schema.quoted();
        Ok(diesel::sql_query(format!(
            "SELECT cursor, kind, chain_id, block_number, block_hash, log_index, event_cursor, payload
               FROM {s}.journal WHERE cursor > $1 ORDER BY cursor"
        ))
        .bind::<BigInt, _>(after)
        .load(&mut self.conn)
        .await?)
    }

    /// The whole journal, in cursor order.
    pub async fn journal(&mut self) -> Result<Vec<JournalEntry>> {
        self.journal_after(i64::MIN).await
    }

    /// The instance's metadata row `key` (`public_config`, `indexing_status`).
    pub async fn metadata(&mut self, key: &str) -> Result<Option<MetadataRow>> {
        let exists: Flag = diesel::sql_query("SELECT to_regclass('tidemark.metadata') IS NOT NULL AS flag")
            .get_result(&mut self.conn)
            .await?;
        if !exists.flag {
            return Ok(None);
        }
        let rows: Vec<MetadataRow> = diesel::sql_query(
            "SELECT value, extract(epoch FROM updated_at)::float8 AS updated_at,
                    extract(epoch FROM now() - updated_at)::float8 AS age_secs
               FROM tidemark.metadata WHERE instance_schema = $1 AND key = $2",
        )
        .bind::<Text, _>(self.schema.as_str())
        .bind::<Text, _>(key)
        .load(&mut self.conn)
        .await?;
        Ok(rows.into_iter().next())
    }

    /// Waits (up to `within`) until no writer session of an indexer
    /// (`tidemark-indexer-writer`) is left in this database. After a kill -9 the commit
    /// the dead process had sent has then landed or been rolled back: reads that follow
    /// see the final state, however loaded the machine.
    ///
    /// # Panics
    /// When a writer session is still there after `within`.
    pub async fn wait_writer_sessions_gone(&mut self, within: std::time::Duration) {
        let started = std::time::Instant::now();
        loop {
            let row: Num = diesel::sql_query(
                "SELECT count(*)::bigint AS n FROM pg_stat_activity
                  WHERE datname = current_database() AND application_name = 'tidemark-indexer-writer'",
            )
            .get_result(&mut self.conn)
            .await
            .expect("pg_stat_activity");
            if row.n == Some(0) {
                return;
            }
            assert!(started.elapsed() < within, "a writer session is still open after {within:?}");
            tokio::time::sleep(crate::POLL).await;
        }
    }

    /// Number of metadata rows of this instance.
    pub async fn metadata_count(&mut self) -> Result<i64> {
        let exists: Flag = diesel::sql_query("SELECT to_regclass('tidemark.metadata') IS NOT NULL AS flag")
            .get_result(&mut self.conn)
            .await?;
        if !exists.flag {
            return Ok(0);
        }
        let row: Num = diesel::sql_query(
            "SELECT count(*)::bigint AS n FROM tidemark.metadata WHERE instance_schema = $1",
        )
        .bind::<Text, _>(self.schema.as_str())
        .get_result(&mut self.conn)
        .await?;
        Ok(row.n.unwrap_or(0))
    }

    /// The database clock, as unix seconds.
    pub async fn now(&mut self) -> Result<f64> {
        let row: Secs = diesel::sql_query("SELECT extract(epoch FROM clock_timestamp())::float8 AS s")
            .get_result(&mut self.conn)
            .await?;
        Ok(row.s)
    }

    /// Rewrites a layout-4 instance's `events` in layout 3, as the previous build stored
    /// them (hex text, names per row, `topics text[]`), with layout 3's indexes and
    /// journal view (`tidemark.ensure_instance_schema_v3`), and drops `event_types`: the
    /// instance a build of layout 3 leaves, for upgrade tests.
    pub async fn downgrade_to_layout_3(&mut self) -> Result<()> {
        let s = self.schema.quoted();
        let hex = |c: &str| format!("'0x' || encode({c}, 'hex')");
        let sql = format!(
            "BEGIN;
             DROP VIEW {s}.journal;
             CREATE TABLE {s}.events_v3 AS
               SELECT e.cursor, e.chain_id, e.block_number, {bh}::text AS block_hash, e.block_timestamp,
                      {tx}::text AS tx_hash, e.tx_index, e.log_index, {ad}::text AS address, t.contract, t.event,
                      t.signature, array_remove(ARRAY[{t0}, {t1}, {t2}, {t3}], NULL)::text[] AS topics,
                      {da}::text AS data, e.args, e.decode_error
                 FROM {s}.events e JOIN {s}.event_types t ON t.id = e.type_id ORDER BY e.cursor;
             DROP TABLE {s}.events, {s}.event_types;
             ALTER TABLE {s}.events_v3 RENAME TO events;
             ALTER TABLE {s}.events ADD PRIMARY KEY (cursor), ADD UNIQUE (chain_id, block_hash, log_index);
             SELECT tidemark.ensure_instance_schema_v3('{name}');
             COMMIT;",
            bh = hex("e.block_hash"),
            tx = hex("e.tx_hash"),
            ad = hex("e.address"),
            t0 = hex("coalesce(e.topic0, t.topic0)"),
            t1 = hex("e.topic1"),
            t2 = hex("e.topic2"),
            t3 = hex("e.topic3"),
            da = hex("e.data"),
            name = self.schema.as_str(),
        );
        self.conn.batch_execute(&sql).await?;
        Ok(())
    }

    /// Every row of every table and view of the instance schema and of `tidemark.metadata`
    /// (all instances), as JSON text, one row per line: for checking that a secret
    /// appears nowhere in the database.
    pub async fn dump_text(&mut self) -> Result<String> {
        let tables: Vec<Txt> = diesel::sql_query(
            "SELECT format('%I.%I', table_schema, table_name) AS t FROM information_schema.tables
              WHERE table_schema = $1 OR (table_schema = 'tidemark') ORDER BY 1",
        )
        .bind::<Text, _>(self.schema.as_str())
        .load(&mut self.conn)
        .await?;
        let mut out = String::new();
        for table in tables {
            // `table.t` was quoted by format('%I') on the server.
            let rows: Vec<Txt> =
                diesel::sql_query(format!("SELECT to_jsonb(x)::text AS t FROM {} x", table.t))
                    .load(&mut self.conn)
                    .await?;
            out.push_str(&format!("-- {}\n", table.t));
            for r in rows {
                out.push_str(&r.t);
                out.push('\n');
            }
        }
        Ok(out)
    }
}
