//! `sink_cursors`, `sink_jobs` and `sink_requests` (DESIGN §8 "Sinks", feature `writer`):
//! each sink's delivered cursor and in-flight batch, its scheduled rebroadcast, and the
//! requests of `tidemark-indexer sink …`.
//!
//! Invariants:
//! - Every write of `sink_cursors` and `sink_jobs` is a [`Statements`] method, so it runs
//!   on the writer's lock-holding connection: a process that lost the writer lock cannot
//!   move a sink's cursor.
//! - Other processes only insert into `sink_requests` ([`request`]); the writer applies a
//!   request and marks it applied in one transaction.
//! - A sink's cursor only moves forward, except by an applied `replay` request.

use tidemark_shared_types::{Cursor, SchemaName};
use tokio_postgres::{GenericClient, Row};

use crate::error::{DbError, Result, stored_u64};
use crate::pool::PgPool;
use crate::statements::{Statements, signed};

/// A sink's stored state.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkRow {
    /// The sink's name.
    pub name: String,
    /// `webhook` or `nats`.
    pub kind: String,
    /// Every entry up to this cursor was delivered.
    pub cursor: Cursor,
    /// Paused by request.
    pub paused: bool,
    /// The batch being delivered: the cursors of its first and last entries, recorded
    /// before its first attempt.
    pub batch: Option<(Cursor, Cursor)>,
    /// Failed attempts of the current batch.
    pub attempts: u32,
    /// The last failure (redacted by the sink).
    pub last_error: Option<String>,
    /// When a delivery last succeeded (unix seconds).
    pub last_delivered_at: Option<u64>,
    /// The rebroadcast job.
    pub job: SinkJob,
    /// When the sink was first seen (unix seconds).
    pub created_at: u64,
    /// Rises with each applied `replay`; the sink's writes name the one they continue.
    pub generation: i64,
}

/// A sink's scheduled rebroadcast (`sink_jobs`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkJob {
    /// The latest run's id (0: never ran).
    pub run: u64,
    /// When the latest run started (unix seconds).
    pub last_started_at: Option<u64>,
    /// When the latest run finished (unix seconds).
    pub last_finished_at: Option<u64>,
    /// The run resumes after this cursor.
    pub next_cursor: Cursor,
    /// The run covers the entries up to this cursor (the journal head when it started).
    pub upto: Option<Cursor>,
    /// Whether the latest run finished (true when none ran).
    pub finished: bool,
}

/// What a `sink` command asks of the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkAction {
    /// Move the cursor back (or forward) to `from_cursor`.
    Replay,
    /// Stop delivering until resumed.
    Pause,
    /// Deliver again.
    Resume,
    /// Start a rebroadcast run now.
    Rebroadcast,
    /// Delete the sink's rows.
    Forget,
}

impl SinkAction {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Replay => "replay",
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Rebroadcast => "rebroadcast",
            Self::Forget => "forget",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "replay" => Self::Replay,
            "pause" => Self::Pause,
            "resume" => Self::Resume,
            "rebroadcast" => Self::Rebroadcast,
            "forget" => Self::Forget,
            other => {
                return Err(DbError::InvalidStoredValue {
                    key: "sink_requests",
                    message: format!("unknown action {other:?}"),
                });
            }
        })
    }
}

/// A request not applied yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkRequest {
    /// Its id.
    pub id: i64,
    /// The sink it concerns.
    pub sink: String,
    /// What to do.
    pub action: SinkAction,
    /// For `replay`: the new cursor.
    pub from_cursor: Option<Cursor>,
}

/// How a request ended, once applied.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestOutcome {
    /// When the writer applied it (unix seconds, database clock).
    pub applied_at: f64,
    /// What it did, or why not.
    pub outcome: String,
}

const ROW_COLUMNS: &str = "c.name, c.kind, c.cursor, c.paused, c.batch_first, c.batch_last, c.attempts, \
     c.last_error, extract(epoch FROM c.last_delivered_at)::bigint, j.run, \
     extract(epoch FROM j.last_started_at)::bigint, extract(epoch FROM j.last_finished_at)::bigint, \
     j.next_cursor, j.upto, j.finished, extract(epoch FROM c.created_at)::bigint, c.generation";

fn cursor_at(row: &Row, i: usize) -> Result<Cursor> {
    Ok(Cursor(row.try_get::<_, i64>(i)?))
}

fn opt_u64(row: &Row, i: usize) -> Result<Option<u64>> {
    row.try_get::<_, Option<i64>>(i)?.map(|v| stored_u64(v, "sink_cursors", "timestamp")).transpose()
}

fn sink_row(row: &Row) -> Result<SinkRow> {
    let batch = match (row.try_get::<_, Option<i64>>(4)?, row.try_get::<_, Option<i64>>(5)?) {
        (Some(a), Some(b)) => Some((Cursor(a), Cursor(b))),
        _ => None,
    };
    let job = match row.try_get::<_, Option<i64>>(9)? {
        Some(run) => SinkJob {
            run: stored_u64(run, "sink_jobs", "run")?,
            last_started_at: opt_u64(row, 10)?,
            last_finished_at: opt_u64(row, 11)?,
            next_cursor: Cursor(row.try_get::<_, Option<i64>>(12)?.unwrap_or(0)),
            upto: row.try_get::<_, Option<i64>>(13)?.map(Cursor),
            finished: row.try_get::<_, Option<bool>>(14)?.unwrap_or(true),
        },
        None => SinkJob { finished: true, ..SinkJob::default() },
    };
    Ok(SinkRow {
        name: row.try_get(0)?,
        kind: row.try_get(1)?,
        cursor: cursor_at(row, 2)?,
        paused: row.try_get(3)?,
        batch,
        attempts: u32::try_from(row.try_get::<_, i32>(6)?).unwrap_or(0),
        last_error: row.try_get(7)?,
        last_delivered_at: opt_u64(row, 8)?,
        job,
        created_at: opt_u64(row, 15)?.unwrap_or_default(),
        generation: row.try_get(16)?,
    })
}

async fn select_rows<C: GenericClient + Sync>(c: &C, s: &str, name: Option<&str>) -> Result<Vec<SinkRow>> {
    let sql = format!(
        "SELECT {ROW_COLUMNS} FROM {s}.sink_cursors c LEFT JOIN {s}.sink_jobs j ON j.sink = c.name
          WHERE $1::text IS NULL OR c.name = $1 ORDER BY c.name"
    );
    c.query(&sql, &[&name]).await?.iter().map(sink_row).collect()
}

impl<C: GenericClient + Sync> Statements<'_, C> {
    /// Adds the sink at `start` unless it exists (a sink's row outlives its config entry:
    /// re-adding it resumes), and returns its row.
    pub(crate) async fn register_sink(&self, name: &str, kind: &str, from_head: bool) -> Result<SinkRow> {
        let start = if from_head { self.journal_head().await? } else { Cursor(0) };
        let sql = format!(
            "INSERT INTO {s}.sink_cursors (name, kind, cursor) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET kind = EXCLUDED.kind, updated_at = now()
                 WHERE {s}.sink_cursors.kind <> EXCLUDED.kind",
            s = self.s
        );
        self.c.execute(&sql, &[&name, &kind, &start.0]).await?;
        let sql = format!("INSERT INTO {}.sink_jobs (sink) VALUES ($1) ON CONFLICT DO NOTHING", self.s);
        self.c.execute(&sql, &[&name]).await?;
        select_rows(self.c, &self.s, Some(name)).await?.into_iter().next().ok_or_else(|| {
            DbError::InvalidStoredValue { key: "sink_cursors", message: format!("sink {name:?} vanished") }
        })
    }

    /// The newest journal entry's cursor (0 when there is none).
    pub(crate) async fn journal_head(&self) -> Result<Cursor> {
        let sql = format!(
            "SELECT greatest((SELECT max(cursor) FROM {s}.events), (SELECT max(cursor) FROM {s}.removals), 0)",
            s = self.s
        );
        cursor_at(&self.c.query_one(&sql, &[]).await?, 0)
    }

    /// Every sink's row, by name.
    pub(crate) async fn sink_rows(&self) -> Result<Vec<SinkRow>> {
        select_rows(self.c, &self.s, None).await
    }

    /// Records the batch about to be sent (its first and last entries' cursors). False
    /// (nothing written) when the sink's generation is no longer `generation` (a replay
    /// was applied meanwhile) or a batch is recorded already.
    pub(crate) async fn record_sink_batch(
        &self,
        name: &str,
        generation: i64,
        first: Cursor,
        last: Cursor,
    ) -> Result<bool> {
        let sql = format!(
            "UPDATE {}.sink_cursors SET batch_first = $2, batch_last = $3, attempts = 0, updated_at = now()
              WHERE name = $1 AND generation = $4 AND batch_first IS NULL",
            self.s
        );
        Ok(self.c.execute(&sql, &[&name, &first.0, &last.0, &generation]).await? == 1)
    }

    /// The receiver acknowledged every entry up to `upto`: the cursor moves there (never
    /// back) and the recorded batch is cleared. `delivered`: whether anything was sent
    /// (a range the filter emptied moves the cursor without a delivery). False (nothing
    /// written) when the sink's generation is no longer `generation`.
    pub(crate) async fn sink_delivered(
        &self,
        name: &str,
        generation: i64,
        upto: Cursor,
        delivered: bool,
    ) -> Result<bool> {
        let sql = format!(
            "UPDATE {}.sink_cursors SET cursor = greatest(cursor, $2), batch_first = NULL, batch_last = NULL,
                    attempts = 0, last_error = NULL, updated_at = now(),
                    last_delivered_at = CASE WHEN $3 THEN now() ELSE last_delivered_at END
              WHERE name = $1 AND generation = $4",
            self.s
        );
        Ok(self.c.execute(&sql, &[&name, &upto.0, &delivered, &generation]).await? == 1)
    }

    /// An attempt failed with `error` (already redacted).
    pub(crate) async fn sink_failed(&self, name: &str, error: &str) -> Result<()> {
        let sql = format!(
            "UPDATE {}.sink_cursors SET attempts = attempts + 1, last_error = $2, last_error_at = now(),
                    updated_at = now() WHERE name = $1",
            self.s
        );
        self.c.execute(&sql, &[&name, &error]).await?;
        Ok(())
    }

    /// The rebroadcast of `name` has re-sent everything up to `next`.
    pub(crate) async fn sink_job_progress(
        &self,
        name: &str,
        run: u64,
        next: Cursor,
        finished: bool,
    ) -> Result<()> {
        let sql = format!(
            "UPDATE {}.sink_jobs SET next_cursor = $3, finished = $4,
                    last_finished_at = CASE WHEN $4 THEN now() ELSE last_finished_at END
              WHERE sink = $1 AND run = $2",
            self.s
        );
        self.c.execute(&sql, &[&name, &signed(run, "run")?, &next.0, &finished]).await?;
        Ok(())
    }

    /// Starts a rebroadcast run of `name` covering the entries up to `upto`; returns its id.
    pub(crate) async fn start_sink_job(&self, name: &str, upto: Cursor) -> Result<u64> {
        let sql = format!(
            "UPDATE {}.sink_jobs SET run = run + 1, last_started_at = now(), next_cursor = 0, upto = $2,
                    finished = false WHERE sink = $1 RETURNING run",
            self.s
        );
        let row = self.c.query_one(&sql, &[&name, &upto.0]).await?;
        stored_u64(row.try_get::<_, i64>(0)?, "sink_jobs", "run")
    }

    /// The requests not applied yet, oldest first.
    pub(crate) async fn pending_sink_requests(&self) -> Result<Vec<SinkRequest>> {
        let sql = format!(
            "SELECT id, sink, action, from_cursor FROM {}.sink_requests WHERE applied_at IS NULL ORDER BY id LIMIT 100",
            self.s
        );
        self.c
            .query(&sql, &[])
            .await?
            .iter()
            .map(|r| {
                Ok(SinkRequest {
                    id: r.try_get(0)?,
                    sink: r.try_get(1)?,
                    action: SinkAction::parse(r.try_get(2)?)?,
                    from_cursor: r.try_get::<_, Option<i64>>(3)?.map(Cursor),
                })
            })
            .collect()
    }

    /// Applies `request` to the sink's rows and marks it applied with `outcome`. Returns
    /// false (and applies nothing) when the sink has no row.
    pub(crate) async fn apply_sink_request(&self, request: &SinkRequest, head: Cursor) -> Result<String> {
        let s = &self.s;
        let name = request.sink.as_str();
        let exists = self
            .c
            .query_opt(&format!("SELECT 1 FROM {s}.sink_cursors WHERE name = $1 FOR UPDATE"), &[&name])
            .await?
            .is_some();
        let outcome = if !exists {
            format!("no sink named {name:?}")
        } else {
            match request.action {
                SinkAction::Replay => {
                    let to = request.from_cursor.unwrap_or_default();
                    self.c
                        .execute(
                            &format!(
                                "UPDATE {s}.sink_cursors SET cursor = $2, batch_first = NULL, batch_last = NULL,
                                        attempts = 0, generation = generation + 1, updated_at = now()
                                  WHERE name = $1"
                            ),
                            &[&name, &to.0],
                        )
                        .await?;
                    format!("cursor moved to {to}")
                }
                SinkAction::Pause | SinkAction::Resume => {
                    let paused = request.action == SinkAction::Pause;
                    self.c
                        .execute(
                            &format!(
                                "UPDATE {s}.sink_cursors SET paused = $2, updated_at = now() WHERE name = $1"
                            ),
                            &[&name, &paused],
                        )
                        .await?;
                    if paused { "paused".to_owned() } else { "resumed".to_owned() }
                }
                SinkAction::Rebroadcast => {
                    let run = self.start_sink_job(name, head).await?;
                    format!("rebroadcast run {run} started (up to cursor {head})")
                }
                // For a sink removed from the config. A configured sink is registered
                // again at once, at generation 0: a write of its task in flight at that
                // moment (also at generation 0) may still move the new row's cursor.
                SinkAction::Forget => {
                    self.c
                        .execute(&format!("DELETE FROM {s}.sink_cursors WHERE name = $1"), &[&name])
                        .await?;
                    "forgotten".to_owned()
                }
            }
        };
        self.c
            .execute(
                &format!("UPDATE {s}.sink_requests SET applied_at = now(), outcome = $2 WHERE id = $1"),
                &[&request.id, &outcome],
            )
            .await?;
        Ok(outcome)
    }
}

/// Every sink's row of `schema`, read outside the writer (`sink list`). Empty when the
/// instance has no sink tables yet.
pub async fn sink_rows(pool: &PgPool, schema: &SchemaName) -> Result<Vec<SinkRow>> {
    let client = pool.connect_raw().await?;
    if !tables_exist(&client, schema).await? {
        return Ok(Vec::new());
    }
    select_rows(&client, &schema.quoted(), None).await
}

async fn tables_exist(client: &tokio_postgres::Client, schema: &SchemaName) -> Result<bool> {
    let row = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&format!("{}.sink_requests", schema.quoted())])
        .await?;
    Ok(row.try_get(0)?)
}

/// Records a request for the writer (any process may: the writer applies it on its fenced
/// connection). Returns its id. [`DbError::InvalidQuery`] when the instance has no sink
/// tables yet (no indexer of this build has run on it).
pub async fn request(
    pool: &PgPool,
    schema: &SchemaName,
    sink: &str,
    action: SinkAction,
    from_cursor: Option<Cursor>,
) -> Result<i64> {
    let client = pool.connect_raw().await?;
    if !tables_exist(&client, schema).await? {
        return Err(DbError::InvalidQuery {
            field: "schema",
            message: format!("instance {schema} has no sink tables yet: start the indexer once first"),
        });
    }
    let sql = format!(
        "INSERT INTO {}.sink_requests (sink, action, from_cursor) VALUES ($1, $2, $3) RETURNING id",
        schema.quoted()
    );
    let row = client.query_one(&sql, &[&sink, &action.as_str(), &from_cursor.map(|c| c.0)]).await?;
    Ok(row.try_get(0)?)
}

/// The outcome of request `id`, once the writer applied it.
pub async fn request_outcome(pool: &PgPool, schema: &SchemaName, id: i64) -> Result<Option<RequestOutcome>> {
    let client = pool.connect_raw().await?;
    let sql = format!(
        "SELECT extract(epoch FROM applied_at)::float8, outcome FROM {}.sink_requests
          WHERE id = $1 AND applied_at IS NOT NULL",
        schema.quoted()
    );
    client
        .query_opt(&sql, &[&id])
        .await?
        .map(|r| -> Result<RequestOutcome> {
            Ok(RequestOutcome {
                applied_at: r.try_get(0)?,
                outcome: r.try_get::<_, Option<String>>(1)?.unwrap_or_default(),
            })
        })
        .transpose()
}

/// How many journal entries follow `after`, counting at most `cap` (a sink's lag). Read
/// through the pool: it writes nothing.
pub async fn entries_after(pool: &PgPool, schema: &SchemaName, after: Cursor, cap: u64) -> Result<u64> {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let s = schema.quoted();
    let sql = format!(
        "SELECT count(*) AS n FROM (SELECT 1 FROM {s}.events WHERE cursor > $1
                                     UNION ALL SELECT 1 FROM {s}.removals WHERE cursor > $1 LIMIT $2) x"
    );
    let mut conn = pool.get().await?;
    let row: Count = diesel::sql_query(sql)
        .bind::<diesel::sql_types::BigInt, _>(after.0)
        .bind::<diesel::sql_types::BigInt, _>(signed(cap, "cap")?)
        .get_result(&mut conn)
        .await?;
    stored_u64(row.n, "events", "count")
}
