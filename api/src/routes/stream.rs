//! `GET /v1/stream`: the journal as server-sent events (DESIGN §8 "Streams").
//!
//! Each client catches up from the database in pages (ordered by cursor), then follows
//! the process's tail ([`crate::hub::Hub`]); its receiver of the tail is opened before the
//! catch-up, and entries at or below the last cursor sent are skipped, so there is no gap
//! or duplicate at the seam. A client that falls `stream_queue` entries behind the tail
//! gets one `lagged` event and catches up from the database again from the last cursor
//! it was sent: it is never disconnected for being slow and never misses an entry.
//!
//! Frames: `retry: 2000` first; `id: <cursor>` and `event: log` (the `/v1/events` item)
//! or `event: removed`; `event: lagged` (`{"behind", "resumeAfter"}`, no id); a
//! `: keep-alive` comment every 15 s.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tidemark_db_client::types::{Cursor, JournalEntry};
use tidemark_db_client::{DbError, JournalFilter, Limit};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{OwnedSemaphorePermit, broadcast};
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;
use crate::extract::{Query, QueryParams};
use crate::hub::{Hub, Live, StreamCounts, TopicClient};
use crate::routes::events::EventsParams;
use crate::state::AppState;

/// Entries per catch-up page.
const PAGE: u64 = 500;
/// Sent once at the start: how long a browser waits before reconnecting.
const RETRY: Duration = Duration::from_millis(2000);
/// Comment lines keep idle connections (and proxies) open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Routes of this group.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/stream", get(stream))
}

/// `/v1/stream` parameters: the filters of `/v1/events` without a block range, and
/// where to start. The `Last-Event-ID` header, when present, wins over `after`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// Only this chain.
    pub chain_id: Option<u64>,
    /// Only this contract name.
    pub contract: Option<String>,
    /// Only this event name (with `contract`).
    pub event: Option<String>,
    /// Only this emitting address.
    pub address: Option<String>,
    /// Only this transaction.
    pub tx_hash: Option<String>,
    /// First indexed topic.
    pub topic1: Option<String>,
    /// Second indexed topic.
    pub topic2: Option<String>,
    /// Third indexed topic.
    pub topic3: Option<String>,
    /// Start after this cursor (exclusive); `0` replays everything; absent: new entries
    /// only.
    pub after: Option<String>,
}

impl QueryParams for StreamParams {
    const FIELDS: &'static [&'static str] =
        &["chainId", "contract", "event", "address", "txHash", "topic1", "topic2", "topic3", "after"];
}

impl StreamParams {
    /// The validated filter (as `/v1/events` validates it) and the start cursor from
    /// `after`.
    fn into_filter(self) -> Result<(JournalFilter, Option<Cursor>), ApiError> {
        let q = EventsParams {
            chain_id: self.chain_id,
            contract: self.contract,
            event: self.event,
            address: self.address,
            tx_hash: self.tx_hash,
            topic1: self.topic1,
            topic2: self.topic2,
            topic3: self.topic3,
            after: self.after,
            ..EventsParams::default()
        }
        .into_query()?;
        let after = q.after;
        Ok((JournalFilter::from(q), after))
    }
}

/// Does the live entry pass `filter`? As the database's filters would decide: names
/// exactly, hex in any case, topic `k` against `topics[k]` (a `removed` entry's are the
/// removed log's). `None` when the filter has a topic and the entry came without the
/// log's topics: the client then reads it from the database.
fn passes(filter: &JournalFilter, live: &Live) -> Option<bool> {
    let wants_topic = filter.topic1.is_some() || filter.topic2.is_some() || filter.topic3.is_some();
    let (chain_id, contract, event, address, tx_hash, topics) = match &live.entry {
        JournalEntry::Log(e) => {
            let topics = match (&live.topics, wants_topic) {
                (Some(t), _) => t.as_slice(),
                (None, false) => &[],
                (None, true) => return None,
            };
            (e.chain_id, &e.contract, &e.event, &e.address, &e.transaction_hash, topics)
        }
        JournalEntry::Removed(r) => {
            (r.chain_id, &r.contract, &r.event, &r.address, &r.transaction_hash, r.topics.as_slice())
        }
    };
    let hex =
        |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w.eq_ignore_ascii_case(have));
    let topic = |want: &Option<String>, k: usize| {
        want.as_deref().is_none_or(|w| topics.get(k).is_some_and(|t| t.eq_ignore_ascii_case(w)))
    };
    Some(
        filter.chain_id.is_none_or(|c| c == chain_id)
            && filter.contract.as_deref().is_none_or(|c| c == contract)
            && filter.event.as_deref().is_none_or(|v| v == event)
            && hex(&filter.address, address)
            && hex(&filter.tx_hash, tx_hash)
            && topic(&filter.topic1, 1)
            && topic(&filter.topic2, 2)
            && topic(&filter.topic3, 3),
    )
}

/// The data of an `event: lagged` frame: the client fell `behind` entries behind the live
/// tail and continues from the database after `resumeAfter`, the last cursor it was sent.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LaggedData {
    /// Live entries dropped for this client (it reads them from the database instead).
    pub behind: u64,
    /// The last cursor sent: the catch-up reads after it.
    #[schema(value_type = String)]
    pub resume_after: Cursor,
}

fn frame(entry: &JournalEntry) -> Event {
    let (kind, data) = match entry {
        JournalEntry::Log(e) => ("log", serde_json::to_string(e)),
        JournalEntry::Removed(r) => ("removed", serde_json::to_string(r)),
    };
    let data = data.unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    Event::default().id(entry.cursor().to_string()).event(kind).data(data)
}

#[utoipa::path(get, path = "/v1/stream", tag = "events", params(StreamParams),
    responses(
        (status = 200, description = "`text/event-stream`: `retry: 2000`, then `event: log` (data: an `EventItem`) and `event: removed` (data: a `RemovedItem`), each with `id:` = its cursor; `event: lagged` (data: `LaggedData`, no id); a `: keep-alive` comment every 15 s", content_type = "text/event-stream"),
        (status = 400, description = "a bad filter or cursor, in `after` or `Last-Event-ID`", body = crate::error::ErrorBody),
        (status = 410, description = "`cursor_expired`: the start cursor is below the journal's retained floor (`floor`); resume from 0 or from the floor", body = crate::error::ErrorBody),
        (status = 503, description = "`too_many_streams` (with `Retry-After`), or the database is unavailable", body = crate::error::ErrorBody),
    ))]
/// Journal entries as server-sent events: catch-up from the start position, then live.
pub async fn stream(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Query(params): Query<StreamParams>,
) -> Result<Response, ApiError> {
    let (filter, after) = params.into_filter()?;
    let last_event_id = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<Cursor>().ok())
                .ok_or_else(|| ApiError::invalid("Last-Event-ID", "a cursor is a decimal integer"))?,
        ),
    };
    let permit = hub.clients.clone().try_acquire_owned().map_err(|_| ApiError::TooManyStreams)?;
    // From now on the tail reads the topics of new logs, for this client to filter.
    let has_topic = filter.topic1.is_some() || filter.topic2.is_some() || filter.topic3.is_some();
    let topics = has_topic.then(|| hub.topic_client());
    // The tail's receiver first, then the start: every entry after it is in the catch-up
    // or in the receiver.
    let rx = hub.receiver().await?;
    let (start, since) = match last_event_id.or(after) {
        Some(Cursor(0)) => (Cursor(0), hub.head().await?),
        Some(c) => {
            hub.db().check_resume(c).await?;
            (c, c)
        }
        None => {
            let head = hub.head().await?;
            (head, head)
        }
    };
    let client = Client {
        hub,
        filter,
        since,
        last: start,
        rx,
        catching_up: true,
        // Renewed when the first catch-up ends: a long one fills the receiver.
        renewed: false,
        pending: Vec::new(),
        _permit: permit,
        _topics: topics,
    };
    let events = futures::stream::once(async { Ok::<_, Infallible>(Event::default().retry(RETRY)) })
        .chain(futures::stream::unfold(client, Client::next));
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive")).into_response())
}

/// One client's position.
struct Client {
    hub: Arc<Hub>,
    filter: JournalFilter,
    /// Where it began: its start cursor, or for a replay from 0 the head before its first
    /// read (the journal floor check, `DbClient::journal_after_since`).
    since: Cursor,
    /// The last cursor sent (or the start position).
    last: Cursor,
    rx: broadcast::Receiver<Arc<Live>>,
    /// Reading from the database until a page comes back empty.
    catching_up: bool,
    /// The receiver was renewed since the catch-up began: entries it skipped are read
    /// by the read that follows.
    renewed: bool,
    /// Entries read and not yet sent, in reverse order.
    pending: Vec<JournalEntry>,
    _permit: OwnedSemaphorePermit,
    /// Counted by the hub while it lives, when the filter has a topic.
    _topics: Option<TopicClient>,
}

impl Client {
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        loop {
            if let Some(entry) = self.pending.pop() {
                self.last = entry.cursor();
                StreamCounts::add(&self.hub.counts.sent);
                return Some((Ok(frame(&entry)), self));
            }
            if self.catching_up {
                match self.read().await {
                    Ok(true) => continue,
                    // Caught up: renew the receiver, whose backlog the catch-up has read
                    // (so a long catch-up is not mistaken for a slow client), and read
                    // once more what was committed meanwhile: an entry committed between
                    // the empty read and the renewal is in neither the read nor the new
                    // receiver, so the next read, not the receiver, comes first.
                    Ok(false) if !self.renewed => {
                        self.rx = self.rx.resubscribe();
                        self.renewed = true;
                        continue;
                    }
                    Ok(false) => self.catching_up = false,
                    // Fell below the retained floor (behind by the retention period):
                    // end; reconnecting with the last id gets the 410.
                    Err(e @ DbError::CursorExpired { .. }) => {
                        tracing::info!(target: "tidemark_api::stream", error = %e, "stream ended below the journal floor");
                        return None;
                    }
                    Err(e) => {
                        tracing::warn!(target: "tidemark_api::stream", error = %e, "stream catch-up failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
            }
            let received = tokio::select! {
                _ = self.hub.stopped() => return None,
                r = self.rx.recv() => r,
            };
            match received {
                Ok(live) if live.entry.cursor() <= self.last => {}
                Ok(live) => match passes(&self.filter, &live) {
                    Some(true) => {
                        self.last = live.entry.cursor();
                        StreamCounts::add(&self.hub.counts.sent);
                        self.hub.fanout.record(live.read_at.elapsed().as_secs_f64());
                        return Some((Ok(live.frame(frame)), self));
                    }
                    Some(false) => {}
                    // Read the filtered entries from the database instead.
                    None => {
                        self.catching_up = true;
                        self.renewed = true;
                    }
                },
                Err(RecvError::Lagged(behind)) => {
                    // Live entries dropped for this client: resume from the database.
                    self.rx = self.rx.resubscribe();
                    self.catching_up = true;
                    self.renewed = true;
                    StreamCounts::add(&self.hub.counts.lagged);
                    let data = LaggedData { behind, resume_after: self.last };
                    let data =
                        serde_json::to_string(&data).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
                    return Some((Ok(Event::default().event("lagged").data(data)), self));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// Reads the next page after `last` into `pending`; false when there was none.
    async fn read(&mut self) -> tidemark_db_client::Result<bool> {
        let _permit = self.hub.catch_up.acquire().await;
        StreamCounts::add(&self.hub.counts.catch_up_queries);
        let limit = Limit::new(PAGE).unwrap_or_default();
        let page = self.hub.db().journal_after_since(self.since, self.last, &self.filter, limit).await?;
        let found = !page.entries.is_empty();
        self.pending = page.entries;
        self.pending.reverse();
        Ok(found)
    }
}
