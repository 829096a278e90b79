//! The journal's tail for applications (DESIGN §8 "Streams"): pages of entries after a
//! cursor, and [`DbClient::subscribe`], which catches up from the database and then
//! follows the writer's notifications — the same guarantees as the API's stream, without
//! running the API.
//!
//! Invariant: the subscription reads every entry from the database by cursor, after the
//! last one it handed out. A notification only says "read again"; a missed one (while
//! the listening connection was down, or sent before it listened) is covered by the read
//! when it listens again and by the poll. So no entry is skipped or repeated, whatever
//! the notifications do.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use serde_json::value::RawValue;
use tidemark_shared_types::{Cursor, JournalEntry};
use tokio::sync::Notify;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::DbClient;
use crate::error::{DbError, Result};
use crate::events::journal::{JOURNAL_CHANNEL, JournalFilter, JournalPage, check_floor, journal_after};
use crate::events::{Finality, Limit, parse_item};

/// Entries read per page while catching up.
const CATCH_UP_PAGE: u32 = 1000;

impl DbClient {
    /// Which blocks are final, from the cached config and status.
    pub(super) fn finality(&self) -> Finality {
        let config = self.inner.config.get().value.and_then(|c| c.current.clone());
        let status = match self.inner.status.get().value.as_deref() {
            Some(super::StatusState::Present { status, .. }) => Some(status.clone()),
            _ => None,
        };
        Finality::new(config.as_deref(), status.as_deref())
    }

    /// Reads the journal entries after `after` that pass `filter`, at most `limit`, in
    /// cursor order: `log` entries (the items of [`DbClient::events`]) and `removed`
    /// entries (logs a reorg took back). Pass the page's `next_cursor` as the next
    /// `after`. Fails before any SQL when no index serves the filter
    /// ([`JournalFilter::check_indexed`]).
    ///
    /// Fails with [`DbError::CursorExpired`] when `0 < after <` the retained floor
    /// ([`DbClient::journal_floor`]): removals after `after` may have been pruned. A
    /// replay from 0 in pages reads cursors below the floor: use
    /// [`DbClient::journal_after_since`] with the head read before its first page, or
    /// [`DbClient::subscribe`], which does so.
    pub async fn journal_after(
        &self,
        after: Cursor,
        filter: &JournalFilter,
        limit: Limit,
    ) -> Result<JournalPage> {
        self.journal_after_since(after, after, filter, limit).await
    }

    /// [`DbClient::journal_after`] for a reader that began at `since`: its start cursor,
    /// or for a replay from 0, the [`DbClient::journal_head`] read before its first page.
    /// The read is refused only when a removal pruned since then could concern a log the
    /// reader saw (`after <` floor and floor `> since`).
    pub async fn journal_after_since(
        &self,
        since: Cursor,
        after: Cursor,
        filter: &JournalFilter,
        limit: Limit,
    ) -> Result<JournalPage> {
        let page = self.journal_after_raw(since, after, filter, limit).await?;
        let entries = page
            .entries
            .into_iter()
            .map(|entry| match entry {
                JournalEntry::Log(item) => parse_item(item).map(JournalEntry::Log),
                JournalEntry::Removed(r) => Ok(JournalEntry::Removed(r)),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(JournalPage { entries, next_cursor: page.next_cursor })
    }

    /// [`DbClient::journal_after_since`] with each `log` entry's `args` as the stored JSON
    /// text, unparsed: for readers that pass entries on (the indexer's sinks) without
    /// looking into their arguments.
    pub async fn journal_after_raw(
        &self,
        since: Cursor,
        after: Cursor,
        filter: &JournalFilter,
        limit: Limit,
    ) -> Result<JournalPage<Box<RawValue>>> {
        let finality = self.finality();
        let shared = &self.inner.shared;
        let read = shared.page_read(&finality);
        let query = filter.to_query(after, limit);
        let conn = shared.pool.get().await;
        shared.timed(conn, async |c| journal_after(c, &read, &query, since).await).await
    }

    /// The journal's retained floor: removals at or below it may have been pruned
    /// (retention), so reads after a lower cursor, except 0, fail with
    /// [`DbError::CursorExpired`](crate::DbError::CursorExpired). `Cursor(0)` while
    /// nothing was pruned.
    pub async fn journal_floor(&self) -> Result<Cursor> {
        let shared = &self.inner.shared;
        let conn = shared.pool.get().await;
        shared.timed(conn, async |c| crate::metadata::read_journal_floor(c, &shared.schema).await).await
    }

    /// The indexed topics (`topics[0]` the signature's, lowercase) of the stored events
    /// with these cursors, in one statement: for filtering `log` entries by topic in
    /// memory (a `RemovedItem` carries its own). A cursor without a stored event (e.g.
    /// removed since) is absent.
    pub async fn event_topics(&self, cursors: &[Cursor]) -> Result<Vec<(Cursor, Vec<String>)>> {
        let shared = &self.inner.shared;
        let conn = shared.pool.get().await;
        shared
            .timed(conn, async |c| {
                shared.queries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                crate::events::journal::event_topics(c, &shared.schema, cursors).await
            })
            .await
    }

    /// Checks that a reader may resume after `after`: [`DbError::CursorExpired`] when
    /// `0 < after <` the journal floor ([`DbClient::journal_floor`]), since a removal
    /// after it may have been pruned. Resuming after 0 always may.
    pub async fn check_resume(&self, after: Cursor) -> Result<()> {
        if after.0 == 0 {
            return Ok(());
        }
        check_floor(after, after, self.journal_floor().await?)
    }

    /// The cursor of the newest committed journal entry (`Cursor(0)` when there is none):
    /// where a subscription without `after` starts.
    pub async fn journal_head(&self) -> Result<Cursor> {
        let shared = &self.inner.shared;
        let conn = shared.pool.get().await;
        shared.timed(conn, async |c| crate::events::journal::head(c, &shared.schema).await).await
    }

    /// Follows the journal: every entry after `after` that passes `filter`, in cursor
    /// order, then each new one as the indexer commits it. `None` starts at the current
    /// head (new entries only); `Some(Cursor(0))` replays everything.
    ///
    /// It catches up from the database in pages, then waits for the writer's
    /// notification (`LISTEN tidemark_journal`, one connection per subscription) or
    /// [`DbClientConfig::journal_poll`](crate::DbClientConfig::journal_poll) (1 s; the
    /// whole mechanism where notifications do not arrive, e.g. on a read replica), and
    /// reads again after the last cursor it yielded. It never skips or repeats an entry;
    /// store the last cursor you handled and pass it as `after` to resume.
    ///
    /// A failed read yields one `Err` and is retried with backoff; the stream goes on,
    /// except after [`DbError::CursorExpired`](crate::DbError::CursorExpired) (the
    /// subscription fell below the retained floor, by days): that `Err` is its last item.
    /// Fails at once when no index serves the filter, when `after` is below the retained
    /// floor ([`DbClient::journal_floor`]), or (with `None`) when the head cannot be read.
    /// Dropping the stream stops it.
    ///
    /// ```no_run
    /// # async fn demo(db: tidemark_db_client::DbClient) -> Result<(), tidemark_db_client::DbError> {
    /// use futures::StreamExt;
    /// use tidemark_db_client::JournalFilter;
    /// use tidemark_db_client::types::{Cursor, JournalEntry};
    ///
    /// let mut tail = std::pin::pin!(db.subscribe(Some(Cursor(0)), JournalFilter::default()).await?);
    /// while let Some(entry) = tail.next().await {
    ///     match entry? {
    ///         JournalEntry::Log(e) => println!("{} + {} {}", e.cursor, e.contract, e.event),
    ///         JournalEntry::Removed(r) => println!("{} - {}", r.cursor, r.event_cursor),
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn subscribe(
        &self,
        after: Option<Cursor>,
        filter: JournalFilter,
    ) -> Result<impl Stream<Item = Result<JournalEntry>> + Send + 'static> {
        filter.check_indexed()?;
        let (after, since) = match after {
            Some(Cursor(0)) => (Cursor(0), self.journal_head().await?),
            Some(c) => {
                self.check_resume(c).await?;
                (c, c)
            }
            None => {
                let head = self.journal_head().await?;
                (head, head)
            }
        };
        let wake = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        tokio::spawn(listen(self.clone(), wake.clone(), stop.clone()));
        let state = Tail {
            db: self.clone(),
            filter,
            since,
            last: after,
            pending: VecDeque::new(),
            wake,
            _stop: stop.drop_guard(),
            failures: 0,
            expired: false,
        };
        Ok(futures::stream::unfold(state, Tail::next))
    }
}

/// Keeps a `LISTEN` connection open until `stop`, waking the subscription on each
/// notification for its schema and each time it (re)connects.
async fn listen(db: DbClient, wake: Arc<Notify>, stop: CancellationToken) {
    let prefix = format!("{}:", db.inner.shared.schema.as_str());
    let max = db.inner.shared.settings.retry_max;
    let mut backoff = Duration::from_millis(100);
    loop {
        let on_event = |payload: Option<&str>| {
            if payload.is_none_or(|p| p.starts_with(&prefix)) {
                wake.notify_one();
            }
        };
        let ended = tokio::select! {
            _ = stop.cancelled() => return,
            r = db.inner.shared.pool.listen(JOURNAL_CHANNEL, on_event) => r,
        };
        if let Err(e) = ended {
            tracing::debug!(target: "tidemark_db_client::tail", error = %e, "journal listener failed; retrying");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(max);
    }
}

/// The state of one subscription.
struct Tail {
    db: DbClient,
    filter: JournalFilter,
    /// Where it began, for the floor check ([`DbClient::journal_after_since`]).
    since: Cursor,
    /// The last cursor handed out, or the start position.
    last: Cursor,
    pending: VecDeque<JournalEntry>,
    wake: Arc<Notify>,
    /// Stops the listener when the stream is dropped.
    _stop: DropGuard,
    /// Consecutive failed reads, for the backoff.
    failures: u32,
    /// The last read found the start below the retained floor: the stream ends.
    expired: bool,
}

impl Tail {
    async fn next(mut self) -> Option<(Result<JournalEntry>, Self)> {
        if self.expired {
            return None;
        }
        loop {
            if let Some(entry) = self.pending.pop_front() {
                self.last = entry.cursor();
                return Some((Ok(entry), self));
            }
            match self.read().await {
                Ok(true) => self.failures = 0,
                Ok(false) => {
                    self.failures = 0;
                    let poll = self.db.inner.shared.settings.journal_poll;
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(poll) => {}
                    }
                }
                Err(e @ DbError::CursorExpired { .. }) => {
                    self.expired = true;
                    return Some((Err(e), self));
                }
                Err(e) => {
                    self.failures = self.failures.saturating_add(1);
                    let max = self.db.inner.shared.settings.retry_max;
                    let backoff =
                        Duration::from_millis(100).saturating_mul(1 << self.failures.min(10)).min(max);
                    tokio::time::sleep(backoff).await;
                    return Some((Err(e), self));
                }
            }
        }
    }

    /// Reads the next page into `pending`; false when there was nothing new.
    async fn read(&mut self) -> Result<bool> {
        let after = self.last;
        let limit = Limit::new(u64::from(CATCH_UP_PAGE)).unwrap_or(Limit::MAX);
        let page = self.db.journal_after_since(self.since, after, &self.filter, limit).await?;
        let found = !page.entries.is_empty();
        self.pending.extend(page.entries);
        Ok(found)
    }
}
