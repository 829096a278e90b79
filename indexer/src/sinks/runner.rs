//! One sink's task: reads the journal after the sink's cursor, delivers batches in cursor
//! order, and moves the cursor only after the receiver acknowledged (DESIGN §8 "Sinks").
//!
//! Invariants:
//! - At least once, in order: the cursor (in `sink_cursors`, written on the writer's
//!   fenced connection) moves past an entry only after its delivery was acknowledged.
//!   A failure retries the same entries after a backoff, forever; nothing is skipped.
//! - A webhook batch's range is recorded before its first attempt; a retry, also after a
//!   crash or a change of `batch_size`, sends that range with the same delivery id.
//! - A slow or dead receiver holds up only this task: it reads the journal through the
//!   pool and takes the writer only for its small cursor writes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use tidemark_db_client::writer::{PgPool, SinkRow, Writer, entries_after};
use tidemark_db_client::{DbClient, DbError, JournalFilter, Limit};
use tidemark_shared_types::{Cursor, JournalEntry, SchemaName, SinkRebroadcast, SinkState, SinkStatus};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::entry::{Item, RawEntry, item, passes};
use super::nats::Nats;
use super::redact::Redactor;
use super::stream;
use super::webhook::{self, Webhook};
use super::{backoff, lag_cap};
use crate::config::{Delivery, SinkConfig, SinkTarget, Start};
use crate::progress::{Progress, unix_now};

/// How often a caught-up sink looks for new entries.
const IDLE_POLL: Duration = Duration::from_millis(200);
/// Journal entries read per page at most.
const PAGE: u32 = 1000;

enum Out {
    Webhook(Webhook),
    Nats(Box<Nats>),
}

/// What one step did.
enum Step {
    /// Entries were delivered or skipped by the filter.
    Progressed,
    /// Nothing to do.
    Idle,
    /// A delivery or read failed; retry after a backoff.
    Failed,
}

/// The start of NATS message ids: `<schema>:` (`<schema>:r<generation>:` after a replay,
/// so that the duplicate window does not swallow the replayed entries).
fn msg_prefix(schema: &SchemaName, generation: i64) -> String {
    match generation {
        0 => format!("{}:", schema.as_str()),
        g => format!("{}:r{g}:", schema.as_str()),
    }
}

/// Which entries [`SinkTask::collect`] reads.
#[derive(Clone, Copy)]
enum Range {
    /// The next batch after the cursor.
    Live,
    /// The recorded batch, up to its last entry: sent whole, as it was first collected.
    Recorded(Cursor),
    /// A rebroadcast run's next page (logs only), up to the run's last cursor.
    Rebroadcast(u64, Cursor),
}

/// A batch about to be sent.
struct Batch {
    items: Vec<Item>,
    /// The cursor moves here once the batch is delivered (at least the last item's: the
    /// entries after it up to here were read and filtered out).
    upto: Cursor,
}

/// One configured sink's task.
pub(super) struct SinkTask {
    config: SinkConfig,
    schema: SchemaName,
    writer: Arc<Mutex<Writer>>,
    db: DbClient,
    pool: PgPool,
    progress: Progress,
    reload: watch::Receiver<u64>,
    token: CancellationToken,
    redactor: Redactor,
    out: Out,
    row: SinkRow,
    /// Where this reader began (its first cursor, or for a start at 0 the journal head
    /// then): reads are refused only when a removal pruned since could concern an entry
    /// it delivered.
    since: Cursor,
    state: SinkState,
    behind_since: Option<Instant>,
    lag: (u64, Option<Instant>),
    /// A write found the stored row changed by a request: reload it.
    stale: bool,
    /// The lag count running, if any (see [`SinkTask::report`]).
    lag_count: Option<JoinHandle<Result<u64, ()>>>,
}

impl SinkTask {
    /// Registers the sink (a new one starts at 0 or at the head) and builds its task.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn new(
        config: SinkConfig,
        schema: SchemaName,
        writer: Arc<Mutex<Writer>>,
        db: DbClient,
        pool: PgPool,
        progress: Progress,
        reload: watch::Receiver<u64>,
        token: CancellationToken,
    ) -> Result<Self, DbError> {
        let row = writer
            .lock()
            .await
            .register_sink(&config.name, config.kind(), config.start == Start::Head)
            .await?;
        let redactor = Redactor::new(config.secrets());
        let out = match &config.target {
            SinkTarget::Webhook { url, key } => {
                match Webhook::new(url.clone(), key.clone(), config.timeout) {
                    Ok(w) => Out::Webhook(w),
                    Err(e) => return Err(DbError::Config(redactor.redact(&e))),
                }
            }
            SinkTarget::Nats { url, stream, subject } => Out::Nats(Box::new(Nats::new(
                url.clone(),
                stream.clone(),
                subject.clone(),
                schema.clone(),
                config.timeout,
                config.batch_size,
            ))),
        };
        let mut task = Self {
            config,
            schema,
            writer,
            db,
            pool,
            progress,
            reload,
            token,
            redactor,
            out,
            row,
            since: Cursor(0),
            state: SinkState::Delivering,
            behind_since: None,
            lag: (0, None),
            stale: false,
            lag_count: None,
        };
        task.since = task.since_for(task.row.cursor).await;
        tracing::info!(target: "tidemark::sinks", sink = %task.config.name, kind = task.config.kind(), cursor = %task.row.cursor, "sink started");
        Ok(task)
    }

    async fn since_for(&self, cursor: Cursor) -> Cursor {
        if cursor.0 > 0 {
            return cursor;
        }
        self.db.journal_head().await.unwrap_or(Cursor(0))
    }

    /// Delivers until `token` is cancelled. Errors only when a write of the writer failed
    /// (the term restarts); delivery failures are retried here.
    pub(super) async fn run(mut self) -> Result<(), DbError> {
        // The sink's counters exist from the start, at zero.
        for name in ["tidemark_sink_entries_delivered_total", "tidemark_sink_failures_total"] {
            metrics::counter!(name, "sink" => self.config.name.clone()).increment(0);
        }
        let mut failures: u32 = 0;
        loop {
            if self.token.is_cancelled() {
                return Ok(());
            }
            if self.stale || self.reload.has_changed().unwrap_or(false) {
                self.stale = false;
                self.reload.borrow_and_update();
                self.reload_row().await?;
                failures = 0;
            }
            if self.row.paused {
                self.state = SinkState::Paused;
                self.report().await;
                if !self.wait(Duration::from_secs(3600)).await {
                    return Ok(());
                }
                continue;
            }
            self.schedule_rebroadcast().await?;
            let live = self.live_step().await?;
            let rebroadcast = if matches!(live, Step::Failed) || self.row.job.finished {
                Step::Idle
            } else {
                self.rebroadcast_step().await?
            };
            let pause = match (&live, &rebroadcast) {
                (Step::Failed, _) | (_, Step::Failed) => {
                    failures = failures.saturating_add(1);
                    self.state = SinkState::Retrying;
                    backoff::delay(failures)
                }
                (Step::Idle, Step::Idle) => {
                    failures = 0;
                    self.state = SinkState::CaughtUp;
                    self.behind_since = None;
                    IDLE_POLL
                }
                _ => {
                    failures = 0;
                    self.state =
                        if self.row.job.finished { SinkState::Delivering } else { SinkState::Rebroadcasting };
                    self.behind_since.get_or_insert_with(Instant::now);
                    Duration::ZERO
                }
            };
            self.report().await;
            if !pause.is_zero() && !self.wait(pause).await {
                return Ok(());
            }
        }
    }

    /// Waits `d`, or until a request changed the sink; false on shutdown.
    async fn wait(&mut self, d: Duration) -> bool {
        tokio::select! {
            _ = self.token.cancelled() => false,
            _ = tokio::time::sleep(d) => true,
            _ = self.reload.changed() => {
                // Seen again at the top of the loop.
                self.reload.mark_changed();
                true
            }
        }
    }

    async fn reload_row(&mut self) -> Result<(), DbError> {
        let name = self.config.name.clone();
        let rows = self.writer.lock().await.sink_rows().await?;
        self.row = match rows.into_iter().find(|r| r.name == name) {
            Some(r) => r,
            // Forgotten while configured: it starts afresh.
            None => {
                self.writer
                    .lock()
                    .await
                    .register_sink(&name, self.config.kind(), self.config.start == Start::Head)
                    .await?
            }
        };
        self.since = self.since_for(self.row.cursor).await;
        Ok(())
    }

    /// Entries per journal read: a batch's worth (so that a page is not read twice),
    /// between 100 and [`PAGE`].
    fn page(&self) -> u32 {
        u32::try_from(self.config.batch_size).unwrap_or(PAGE).clamp(100, PAGE)
    }

    /// Reads the journal after `after`; `None` after logging a failed read (retried).
    /// A rebroadcast (`logs_only`) skips removals, so no pruned removal concerns it: its
    /// reads are never refused.
    async fn read(&mut self, after: Cursor, logs_only: bool) -> Option<Vec<RawEntry>> {
        let limit = Limit::new(u64::from(self.page())).unwrap_or_default();
        let since = if logs_only { Cursor(i64::MAX) } else { self.since };
        match self.db.journal_after_raw(since, after, &JournalFilter::default(), limit).await {
            Ok(page) => Some(page.entries),
            Err(e) => {
                let message = match &e {
                    DbError::CursorExpired { floor } => format!(
                        "removals after cursor {after} were pruned (journal floor {floor}): replay from 0 \
                         (`sink replay --from-cursor 0`) to resync the receiver"
                    ),
                    other => format!("reading the journal failed: {other}"),
                };
                tracing::warn!(target: "tidemark::sinks", sink = %self.config.name, error = %message, "sink cannot read the journal; retrying");
                self.row.last_error = Some(message);
                None
            }
        }
    }

    /// Collects the next batch after `after` (see [`Range`]): entries passing the filter
    /// (for a `finalized` sink only final logs, never a removal), at most `batch_size`
    /// and `max_batch_bytes` (a larger single entry goes alone).
    async fn collect(&mut self, after: Cursor, range: Range) -> Option<Batch> {
        let max_bytes = match self.out {
            Out::Webhook(_) => self.config.max_batch_bytes,
            Out::Nats(_) => usize::MAX,
        };
        let end = match range {
            Range::Live => None,
            Range::Recorded(last) | Range::Rebroadcast(_, last) => Some(last),
        };
        let run = match range {
            Range::Rebroadcast(run, _) => Some(run),
            _ => None,
        };
        let finalized_only = self.config.delivery == Delivery::Finalized;
        let (mut items, mut bytes, mut upto) = (Vec::new(), 0usize, after);
        let mut from = after;
        'pages: loop {
            let entries = self.read(from, run.is_some()).await?;
            let Some(last) = entries.last().map(JournalEntry::cursor) else { break };
            for entry in &entries {
                if end.is_some_and(|end| entry.cursor() > end) {
                    break 'pages;
                }
                let is_log = matches!(entry, JournalEntry::Log(_));
                // A recorded batch was final when it was collected: the finality known
                // now (e.g. not yet read after a restart) does not hold it back.
                if finalized_only
                    && !matches!(range, Range::Recorded(_))
                    && let JournalEntry::Log(e) = entry
                    && !e.finalized
                {
                    // Live: wait for it. A rebroadcast sends the final set: a log that is
                    // not final yet is delivered live once it is.
                    if run.is_some() {
                        upto = entry.cursor();
                        continue;
                    }
                    break 'pages;
                }
                let skip =
                    !passes(&self.config.filter, entry) || (!is_log && (run.is_some() || finalized_only));
                if !skip {
                    let it = match item(entry, run) {
                        Ok(it) => it,
                        Err(e) => {
                            self.row.last_error =
                                Some(format!("cannot serialize entry {}: {e}", entry.cursor()));
                            return None;
                        }
                    };
                    let len = it.json.get().len() + 1;
                    // A recorded range is sent whole, whatever the limits are now.
                    let full = items.len() >= self.config.batch_size
                        || (!items.is_empty() && bytes + len > max_bytes);
                    if full && !matches!(range, Range::Recorded(_)) {
                        break 'pages;
                    }
                    bytes += len;
                    items.push(it);
                }
                upto = entry.cursor();
            }
            if entries.len() < self.page() as usize {
                break;
            }
            from = last;
        }
        if let Range::Recorded(last) = range {
            upto = upto.max(last);
        }
        Some(Batch { items, upto })
    }

    /// Delivers the next live batch, or the recorded one.
    async fn live_step(&mut self) -> Result<Step, DbError> {
        if self.row.batch.is_none() && matches!(self.out, Out::Nats(_)) {
            return self.nats_pass().await;
        }
        let recorded = self.row.batch;
        let batch = match recorded {
            Some((first, last)) => {
                match self.collect(Cursor(first.0.saturating_sub(1)), Range::Recorded(last)).await {
                    Some(b) => b,
                    None => return Ok(Step::Failed),
                }
            }
            None => match self.collect(self.row.cursor, Range::Live).await {
                Some(b) => b,
                None => return Ok(Step::Failed),
            },
        };
        if batch.items.is_empty() {
            if batch.upto <= self.row.cursor {
                return Ok(Step::Idle);
            }
            self.delivered(batch.upto, 0).await?;
            return Ok(Step::Progressed);
        }
        let (first, last) = (batch.items[0].cursor, batch.items[batch.items.len() - 1].cursor);
        let result = match &mut self.out {
            Out::Webhook(w) => {
                let (first, last) = recorded.unwrap_or((first, last));
                if recorded.is_none() {
                    let generation = self.row.generation;
                    if !self
                        .writer
                        .lock()
                        .await
                        .record_sink_batch(&self.config.name, generation, first, last)
                        .await?
                    {
                        // A replay was applied meanwhile: start again from the stored row.
                        self.stale = true;
                        return Ok(Step::Progressed);
                    }
                    self.row.batch = Some((first, last));
                }
                // After a replay (generation > 0) the ids differ from the first delivery's,
                // so receivers that drop repeated ids take the replayed entries.
                let id = match self.row.generation {
                    0 => format!("{}:{first}-{last}", self.config.name),
                    g => format!("r{g}:{}:{first}-{last}", self.config.name),
                };
                Self::post(w, &self.config.name, &id, &batch.items, &self.redactor)
                    .await
                    .map_err(|e| (None, e))
            }
            Out::Nats(n) => {
                let prefix = msg_prefix(&self.schema, self.row.generation);
                match n.publish(&batch.items, |c| format!("{prefix}{c}"), &self.redactor).await {
                    (_, Ok(())) => Ok(()),
                    (acked, Err(e)) => Err((acked, e)),
                }
            }
        };
        match result {
            Ok(()) => {
                self.delivered(batch.upto, batch.items.len()).await?;
                Ok(Step::Progressed)
            }
            Err((acked, error)) => {
                if let Some(acked) = acked {
                    let n = batch.items.iter().filter(|i| i.cursor <= acked).count();
                    self.delivered(acked, n).await?;
                }
                self.failed(error).await?;
                Ok(Step::Failed)
            }
        }
    }

    /// Live NATS delivery: one pipelined pass ([`stream::pass`]).
    async fn nats_pass(&mut self) -> Result<Step, DbError> {
        let reader = stream::Reader {
            db: self.db.clone(),
            since: self.since,
            // No batches here: the largest page.
            page: PAGE,
            filter: self.config.filter.clone(),
            finalized_only: self.config.delivery == Delivery::Finalized,
        };
        let (writer, name, generation) = (self.writer.clone(), self.config.name.clone(), self.row.generation);
        let persist = move |cursor: Cursor, delivered: u64| {
            let (writer, name) = (writer.clone(), name.clone());
            async move { writer.lock().await.sink_delivered(&name, generation, cursor, delivered > 0).await }
        };
        let schema = msg_prefix(&self.schema, generation);
        let Out::Nats(nats) = &mut self.out else { return Ok(Step::Idle) };
        let pass = stream::pass(nats, reader, self.row.cursor, &schema, &self.redactor, persist).await?;
        if pass.stale {
            self.stale = true;
            return Ok(Step::Progressed);
        }
        if let Some(acked) = pass.acked {
            self.row.cursor = self.row.cursor.max(acked);
        }
        if pass.delivered > 0 {
            self.row.last_delivered_at = Some(unix_now());
            metrics::counter!("tidemark_sink_entries_delivered_total", "sink" => self.config.name.clone())
                .increment(pass.delivered);
        }
        match pass.error {
            Some(error) => {
                self.failed(error).await?;
                Ok(Step::Failed)
            }
            None if pass.acked.is_some() => {
                self.row.attempts = 0;
                self.row.last_error = None;
                Ok(Step::Progressed)
            }
            None => Ok(Step::Idle),
        }
    }

    async fn post(
        w: &Webhook,
        sink: &str,
        id: &str,
        items: &[Item],
        redactor: &Redactor,
    ) -> Result<(), String> {
        let body = webhook::body(sink, id, items).map_err(|e| format!("cannot serialize the batch: {e}"))?;
        w.post(id, body, redactor).await
    }

    async fn delivered(&mut self, upto: Cursor, count: usize) -> Result<(), DbError> {
        let generation = self.row.generation;
        if !self.writer.lock().await.sink_delivered(&self.config.name, generation, upto, count > 0).await? {
            // A replay was applied meanwhile: its cursor stands.
            self.stale = true;
            return Ok(());
        }
        self.row.cursor = self.row.cursor.max(upto);
        self.row.batch = None;
        self.row.attempts = 0;
        self.row.last_error = None;
        if count > 0 {
            self.row.last_delivered_at = Some(unix_now());
            metrics::counter!("tidemark_sink_entries_delivered_total", "sink" => self.config.name.clone())
                .increment(count as u64);
        }
        Ok(())
    }

    async fn failed(&mut self, error: String) -> Result<(), DbError> {
        tracing::warn!(target: "tidemark::sinks", sink = %self.config.name, cursor = %self.row.cursor, error = %error, "delivery failed; retrying after a backoff");
        metrics::counter!("tidemark_sink_failures_total", "sink" => self.config.name.clone()).increment(1);
        self.writer.lock().await.sink_failed(&self.config.name, &error).await?;
        self.row.attempts = self.row.attempts.saturating_add(1);
        self.row.last_error = Some(error);
        Ok(())
    }

    /// Starts a scheduled rebroadcast when one is due.
    async fn schedule_rebroadcast(&mut self) -> Result<(), DbError> {
        let Some(every) = self.config.rebroadcast_every else { return Ok(()) };
        if !self.row.job.finished {
            return Ok(());
        }
        // The first run is due one period after the sink was first seen.
        let last = self.row.job.last_started_at.unwrap_or(self.row.created_at);
        if unix_now().saturating_sub(last) < every.as_secs().max(1) {
            return Ok(());
        }
        let (run, upto) = self.writer.lock().await.start_sink_job(&self.config.name).await?;
        tracing::info!(target: "tidemark::sinks", sink = %self.config.name, run, upto = %upto, "scheduled rebroadcast started");
        self.row.job.run = run;
        self.row.job.next_cursor = Cursor(0);
        self.row.job.upto = Some(upto);
        self.row.job.finished = false;
        self.row.job.last_started_at = Some(unix_now());
        Ok(())
    }

    /// Re-sends the next page of the current set in a rebroadcast run.
    async fn rebroadcast_step(&mut self) -> Result<Step, DbError> {
        let job = self.row.job.clone();
        let (run, upto) = (job.run, job.upto.unwrap_or_default());
        let Some(batch) = self.collect(job.next_cursor, Range::Rebroadcast(run, upto)).await else {
            return Ok(Step::Failed);
        };
        let finished = batch.items.is_empty() || batch.upto >= upto;
        if !batch.items.is_empty() {
            let (first, last) = (batch.items[0].cursor, batch.items[batch.items.len() - 1].cursor);
            let result = match &mut self.out {
                Out::Webhook(w) => {
                    let id = format!("rb{run}:{}:{first}-{last}", self.config.name);
                    Self::post(w, &self.config.name, &id, &batch.items, &self.redactor).await
                }
                Out::Nats(n) => {
                    let schema = self.schema.as_str().to_owned();
                    n.publish(&batch.items, |c| format!("{schema}:{c}:rb{run}"), &self.redactor).await.1
                }
            };
            if let Err(e) = result {
                self.failed(e).await?;
                return Ok(Step::Failed);
            }
        }
        let next = if finished { upto } else { batch.upto };
        self.writer.lock().await.sink_job_progress(&self.config.name, run, next, finished).await?;
        self.row.job.next_cursor = next;
        self.row.job.finished = finished;
        if finished {
            self.row.job.last_finished_at = Some(unix_now());
            tracing::info!(target: "tidemark::sinks", sink = %self.config.name, run, "rebroadcast finished");
        }
        Ok(Step::Progressed)
    }

    /// Publishes the sink's state to the status snapshot and metrics.
    async fn report(&mut self) {
        // The count reads up to `lag_cap()` entries: it runs beside delivery, and its
        // result (the lag when it started) is taken by a later report.
        if let Some(count) = self.lag_count.take_if(|h| h.is_finished())
            && let Some(Ok(Ok(n))) = count.now_or_never()
        {
            self.lag = (n, Some(Instant::now()));
        }
        let stale = self.lag.1.is_none_or(|at| at.elapsed() >= Duration::from_secs(1));
        if stale && self.lag_count.is_none() {
            if self.state == SinkState::CaughtUp {
                self.lag = (0, Some(Instant::now()));
            } else {
                let (pool, schema, cursor) = (self.pool.clone(), self.schema.clone(), self.row.cursor);
                self.lag_count = Some(tokio::spawn(async move {
                    entries_after(&pool, &schema, cursor, lag_cap()).await.map_err(|_| ())
                }));
            }
        }
        let name = &self.config.name;
        metrics::gauge!("tidemark_sink_cursor", "sink" => name.clone()).set(self.row.cursor.0 as f64);
        metrics::gauge!("tidemark_sink_lag_entries", "sink" => name.clone()).set(self.lag.0 as f64);
        let job = &self.row.job;
        self.progress.set_sink(
            name,
            SinkStatus {
                kind: self.config.kind().to_owned(),
                cursor: self.row.cursor,
                lag_entries: if self.state == SinkState::CaughtUp { 0 } else { self.lag.0 },
                lag_seconds: self.behind_since.map_or(0, |t| t.elapsed().as_secs()),
                state: self.state,
                last_error: self.row.last_error.clone(),
                last_delivered_at: self.row.last_delivered_at,
                rebroadcast: (!job.finished).then(|| SinkRebroadcast {
                    run: job.run,
                    next_cursor: job.next_cursor,
                    started_at: job.last_started_at.unwrap_or_default(),
                }),
            },
        );
    }
}
