//! The process's one tail of the journal (DESIGN §8 "Streams"): one db-client
//! subscription (one `LISTEN` connection, one read per commit) whose entries are handed,
//! shared, to every `/v1/stream` client through a bounded broadcast.
//!
//! A client that falls more than the broadcast's capacity behind is told how far
//! (`Lagged`) and catches up from the database by cursor; so a slow client never slows the
//! tail or the others, holds no memory of its own for entries it has not read, and
//! misses nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::response::sse::Event;
use futures::{FutureExt, StreamExt};
use tidemark_db_client::types::{Cursor, JournalEntry};
use tidemark_db_client::{DbClient, JournalFilter};
use tokio::sync::{OnceCell, Semaphore, broadcast};
use tokio_util::sync::{CancellationToken, DropGuard};

/// The tail and the limits of the process's streams.
#[derive(Debug)]
pub struct Hub {
    db: DbClient,
    queue: usize,
    /// Started with the first stream; its first value is the head it started after.
    tail: OnceCell<broadcast::Sender<Arc<Live>>>,
    /// Open streams, up to the client limit.
    pub(crate) clients: Arc<Semaphore>,
    /// Database catch-ups run at once, so that reconnecting clients cannot take every
    /// connection of the pool.
    pub(crate) catch_up: Semaphore,
    stop: CancellationToken,
    _stop_on_drop: DropGuard,
    max_clients: usize,
    /// Counters for `/metrics`.
    pub(crate) counts: StreamCounts,
    /// Time from the tail reading an entry to a live client being sent it.
    pub(crate) fanout: metrics::Histogram,
    /// Open streams with a topic filter: while there are any, the tail reads the topics
    /// of each batch of new logs once (one statement), so that they filter in memory.
    topic_clients: Arc<AtomicUsize>,
}

/// Entries of the tail read at once (and their topics in one statement) at most.
const MAX_BATCH: usize = 1024;

/// An entry of the tail, shared by every live client, with its SSE frame: built by the
/// first client that sends it and cloned by the others, so that an entry is serialized
/// once per process, not once per client.
#[derive(Debug)]
pub(crate) struct Live {
    pub(crate) entry: JournalEntry,
    /// When the tail read it (after the writer's notification).
    pub(crate) read_at: Instant,
    /// A `log` entry's topics, when a topic-filtered stream was open as it was read (a
    /// `removed` entry carries its own).
    pub(crate) topics: Option<Vec<String>>,
    frame: OnceLock<Event>,
}

impl Live {
    fn new(entry: JournalEntry, topics: Option<Vec<String>>) -> Self {
        Self { entry, read_at: Instant::now(), topics, frame: OnceLock::new() }
    }

    /// The entry's frame, made by `build` on the first call.
    pub(crate) fn frame(&self, build: impl FnOnce(&JournalEntry) -> Event) -> Event {
        self.frame.get_or_init(|| build(&self.entry)).clone()
    }
}

/// A topic-filtered stream, counted while it lives ([`Hub::topic_client`]).
#[derive(Debug)]
pub(crate) struct TopicClient(Arc<AtomicUsize>);

impl Drop for TopicClient {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The topics of the `log` entries of `batch`, read in one statement. On failure none:
/// topic-filtered streams then read those entries from the database themselves.
async fn log_topics(db: &DbClient, batch: &[JournalEntry]) -> HashMap<Cursor, Vec<String>> {
    let cursors: Vec<Cursor> =
        batch.iter().filter(|e| matches!(e, JournalEntry::Log(_))).map(JournalEntry::cursor).collect();
    if cursors.is_empty() {
        return HashMap::new();
    }
    match db.event_topics(&cursors).await {
        Ok(rows) => rows.into_iter().collect(),
        Err(e) => {
            tracing::warn!(target: "tidemark_api::stream", error = %e, "topics of new logs not read; topic-filtered streams read them");
            HashMap::new()
        }
    }
}

/// What the streams did, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct StreamCounts {
    /// Entries sent to clients.
    pub(crate) sent: AtomicU64,
    /// `lagged` events sent.
    pub(crate) lagged: AtomicU64,
    /// Catch-up pages read from the database.
    pub(crate) catch_up_queries: AtomicU64,
}

impl StreamCounts {
    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl Hub {
    /// A hub reading `db`; `queue` entries of lag allowed per client, `max_clients`
    /// streams at once; the fan-out latency recorded in `fanout`. Nothing runs until the
    /// first stream.
    pub fn new(db: DbClient, queue: usize, max_clients: usize, fanout: metrics::Histogram) -> Self {
        let stop = CancellationToken::new();
        let catch_up = (db.settings().pool.max_size / 2).max(1);
        Self {
            db,
            queue: queue.max(1),
            tail: OnceCell::new(),
            clients: Arc::new(Semaphore::new(max_clients)),
            catch_up: Semaphore::new(catch_up),
            _stop_on_drop: stop.clone().drop_guard(),
            stop,
            max_clients,
            counts: StreamCounts::default(),
            fanout,
            topic_clients: Arc::default(),
        }
    }

    /// Streams open now.
    pub fn clients(&self) -> usize {
        self.max_clients.saturating_sub(self.clients.available_permits())
    }

    /// (entries sent, `lagged` events, catch-up queries) so far.
    pub fn counts(&self) -> (u64, u64, u64) {
        let c = &self.counts;
        (
            c.sent.load(Ordering::Relaxed),
            c.lagged.load(Ordering::Relaxed),
            c.catch_up_queries.load(Ordering::Relaxed),
        )
    }

    /// The database client.
    pub(crate) fn db(&self) -> &DbClient {
        &self.db
    }

    /// A receiver of every journal entry committed from now on (the tail started if it
    /// was not; until its subscription is open, this waits).
    pub(crate) async fn receiver(&self) -> tidemark_db_client::Result<broadcast::Receiver<Arc<Live>>> {
        let tx = self.tail.get_or_try_init(|| self.start()).await?;
        Ok(tx.subscribe())
    }

    /// Opens the subscription at the current head and spawns the task that broadcasts
    /// its entries. Every entry committed after the head it started at is broadcast.
    async fn start(&self) -> tidemark_db_client::Result<broadcast::Sender<Arc<Live>>> {
        let entries = self.db.subscribe(None, JournalFilter::default()).await?;
        let (tx, _) = broadcast::channel(self.queue);
        let (sender, stop) = (tx.clone(), self.stop.clone());
        let (db, topic_clients) = (self.db.clone(), self.topic_clients.clone());
        tokio::spawn(async move {
            let mut entries = std::pin::pin!(entries);
            loop {
                let next = tokio::select! {
                    _ = stop.cancelled() => return,
                    next = entries.next() => next,
                };
                match next {
                    Some(Ok(entry)) => {
                        // The rest of the commit, as far as it is read already.
                        let mut batch = vec![entry];
                        while batch.len() < MAX_BATCH {
                            match entries.next().now_or_never() {
                                Some(Some(Ok(entry))) => batch.push(entry),
                                Some(Some(Err(e))) => {
                                    tracing::warn!(target: "tidemark_api::stream", error = %e, "journal tail read failed; retrying");
                                    break;
                                }
                                Some(None) | None => break,
                            }
                        }
                        let mut topics = if topic_clients.load(Ordering::Relaxed) > 0 {
                            log_topics(&db, &batch).await
                        } else {
                            HashMap::new()
                        };
                        for entry in batch {
                            let topics = topics.remove(&entry.cursor());
                            // No receiver: nobody is streaming; the entry is in the database.
                            drop(sender.send(Arc::new(Live::new(entry, topics))));
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(target: "tidemark_api::stream", error = %e, "journal tail read failed; retrying");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    None => return,
                }
            }
        });
        Ok(tx)
    }

    /// Counts a topic-filtered stream while the guard lives.
    pub(crate) fn topic_client(&self) -> TopicClient {
        self.topic_clients.fetch_add(1, Ordering::Relaxed);
        TopicClient(self.topic_clients.clone())
    }

    /// Ends every stream (API shutdown: clients reconnect elsewhere).
    pub fn close(&self) {
        self.stop.cancel();
    }

    /// Completes when the streams are to end.
    pub(crate) async fn stopped(&self) {
        self.stop.cancelled().await;
    }

    /// The newest committed cursor: where a stream without a start position begins.
    pub(crate) async fn head(&self) -> tidemark_db_client::Result<Cursor> {
        self.db.journal_head().await
    }
}
