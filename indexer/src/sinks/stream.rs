//! Live NATS delivery as a pipeline: the next journal pages are read (and serialized)
//! while earlier entries are published, and the window of acks in flight stays full
//! across pages, so the sink runs near JetStream's own publish-with-ack rate instead of
//! alternating between the database and the broker.
//!
//! Invariant: the cursor moves only to an entry whose ack, and the acks of every entry
//! before it, arrived (acks are awaited in publish order); a chunk's filtered-out tail
//! moves it only once the chunk's last item was acknowledged.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use async_nats::jetstream::context::PublishAckFuture;
use tidemark_db_client::{DbClient, DbError, JournalFilter, Limit};
use tidemark_shared_types::{Cursor, JournalEntry};
use tokio::sync::mpsc;

use super::entry::{Item, item, passes};
use super::nats::Nats;
use super::redact::Redactor;
use crate::config::SinkFilter;

/// How long one pass runs before it returns to the sink's loop (status, requests,
/// rebroadcast pages).
const SLICE: Duration = Duration::from_secs(1);
/// How often the acknowledged cursor is written while a pass runs.
const PERSIST_EVERY: Duration = Duration::from_millis(200);
/// Pages read ahead of the publisher.
const READ_AHEAD: usize = 4;

/// Entries read after a cursor: the items to publish and where the cursor may move once
/// they are all acknowledged.
struct Chunk {
    items: Vec<Item>,
    upto: Cursor,
}

/// What the reader needs.
pub(super) struct Reader {
    pub(super) db: DbClient,
    pub(super) since: Cursor,
    pub(super) page: u32,
    pub(super) filter: SinkFilter,
    pub(super) finalized_only: bool,
}

/// The outcome of one pass.
pub(super) struct Pass {
    /// The highest cursor acknowledged without a gap (`None`: nothing moved).
    pub(super) acked: Option<Cursor>,
    /// Entries published and acknowledged.
    pub(super) delivered: u64,
    /// The first failure, if any.
    pub(super) error: Option<String>,
    /// A cursor write found the stored row changed (a replay): the row must be read again.
    pub(super) stale: bool,
}

impl Reader {
    /// Reads chunks after `after` into `tx` until caught up, `SLICE` passed, or the
    /// publisher is gone.
    async fn run(self, mut after: Cursor, tx: mpsc::Sender<Chunk>) -> Result<(), String> {
        let started = Instant::now();
        let limit = Limit::new(u64::from(self.page)).unwrap_or_default();
        loop {
            let page = self
                .db
                .journal_after_raw(self.since, after, &JournalFilter::default(), limit)
                .await
                .map_err(|e| read_error(after, &e))?;
            let full = page.entries.len() >= self.page as usize;
            let mut chunk = Chunk { items: Vec::with_capacity(page.entries.len()), upto: after };
            let mut blocked = false;
            for entry in &page.entries {
                if self.finalized_only {
                    match entry {
                        JournalEntry::Log(e) if !e.finalized => {
                            blocked = true;
                            break;
                        }
                        JournalEntry::Removed(_) => {
                            chunk.upto = entry.cursor();
                            continue;
                        }
                        JournalEntry::Log(_) => {}
                    }
                }
                if passes(&self.filter, entry) {
                    chunk.items.push(
                        item(entry, None)
                            .map_err(|e| format!("cannot serialize entry {}: {e}", entry.cursor()))?,
                    );
                }
                chunk.upto = entry.cursor();
            }
            if chunk.upto == after {
                return Ok(());
            }
            after = chunk.upto;
            if tx.send(chunk).await.is_err() {
                return Ok(());
            }
            if !full || blocked || started.elapsed() >= SLICE {
                return Ok(());
            }
        }
    }
}

fn read_error(after: Cursor, e: &DbError) -> String {
    match e {
        DbError::CursorExpired { floor } => format!(
            "removals after cursor {after} were pruned (journal floor {floor}): replay from 0 \
             (`sink replay --from-cursor 0`) to resync the receiver"
        ),
        other => format!("reading the journal failed: {other}"),
    }
}

/// One pass: reads after `from` and publishes, keeping `nats.window()` acks in flight;
/// `persist` is called with the acknowledged cursor every [`PERSIST_EVERY`] and at the
/// end (when it moved), and answers false when the stored row changed (the pass ends).
/// `prefix` starts every message id (`<schema>:`).
pub(super) async fn pass<P, F>(
    nats: &mut Nats,
    reader: Reader,
    from: Cursor,
    prefix: &str,
    redactor: &Redactor,
    mut persist: P,
) -> Result<Pass, DbError>
where
    P: FnMut(Cursor, u64) -> F,
    F: std::future::Future<Output = Result<bool, DbError>>,
{
    let context = match nats.context(redactor).await {
        Ok(c) => c,
        Err(e) => return Ok(Pass { acked: None, delivered: 0, error: Some(e), stale: false }),
    };
    let (tx, mut rx) = mpsc::channel::<Chunk>(READ_AHEAD);
    // A task of its own: reading and serializing use the other core while this one
    // publishes.
    let read = tokio::spawn(reader.run(from, tx));
    // Owns the receiver: when it ends, the reader stops at its next send.
    let publish = async move {
        let (window, timeout) = (nats.window(), nats.timeout());
        // (the cursor reached once this entry is acknowledged, its ack)
        let mut in_flight: VecDeque<(Cursor, Option<PublishAckFuture>)> = VecDeque::with_capacity(window);
        let mut pending: VecDeque<Item> = VecDeque::new();
        let mut pending_upto = from;
        let (mut acked, mut delivered, mut unpersisted) = (None::<Cursor>, 0u64, 0u64);
        let mut persisted = Instant::now();
        let mut reading = true;
        let mut error = None;
        let mut stale = false;
        'pass: loop {
            while in_flight.len() < window {
                if let Some(it) = pending.pop_front() {
                    let reach = if pending.is_empty() { pending_upto } else { it.cursor };
                    let id = format!("{prefix}{}", it.cursor);
                    match nats.send(&context, it, id).await {
                        Ok(ack) => in_flight.push_back((reach, Some(ack))),
                        Err(e) => {
                            error = Some(redactor.redact(&e));
                            break 'pass;
                        }
                    }
                    continue;
                }
                if !reading {
                    break;
                }
                let next = if in_flight.is_empty() {
                    rx.recv().await
                } else {
                    match rx.try_recv() {
                        Ok(c) => Some(c),
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => None,
                    }
                };
                match next {
                    Some(chunk) if chunk.items.is_empty() => in_flight.push_back((chunk.upto, None)),
                    Some(chunk) => {
                        pending = chunk.items.into();
                        pending_upto = chunk.upto;
                    }
                    None => reading = false,
                }
            }
            let Some((reach, ack)) = in_flight.pop_front() else { break };
            if let Some(ack) = ack {
                match tokio::time::timeout(timeout, ack).await {
                    Ok(Ok(_)) => {
                        delivered += 1;
                        unpersisted += 1;
                    }
                    Ok(Err(e)) => {
                        error = Some(redactor.redact(&format!("no JetStream ack: {e}")));
                        break;
                    }
                    Err(_) => {
                        error = Some("JetStream ack timed out".to_owned());
                        break;
                    }
                }
            }
            acked = Some(reach);
            if persisted.elapsed() >= PERSIST_EVERY {
                if !persist(reach, unpersisted).await? {
                    stale = true;
                    break;
                }
                unpersisted = 0;
                persisted = Instant::now();
            }
        }
        drop(rx);
        if let Some(a) = acked
            && !stale
            && !persist(a, unpersisted).await?
        {
            stale = true;
        }
        if error.is_some() {
            nats.reset();
        }
        Ok::<_, DbError>((acked, delivered, error, stale))
    };
    let (acked, delivered, error, stale) = publish.await?;
    let read = read.await.unwrap_or_else(|e| Err(format!("the journal reader failed: {e}")));
    Ok(Pass { acked: acked.filter(|_| !stale), delivered, error: error.or(read.err()), stale })
}
