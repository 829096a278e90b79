//! `GET /v1/events`: indexed events, filtered, in cursor order, keyset-paginated.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tidemark_db_client::{DbClient, EventQuery, Limit, Order};
use tidemark_shared_types::{Cursor, EventItem};
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;
use crate::extract::{Query, QueryParams};
use crate::response::{cache_control, json_content};
use crate::settings::HttpSettings;
use crate::state::AppState;

/// Typical serialized size of an event item (hashes, names, signature, small args).
const BYTES_PER_ITEM: usize = 640;

/// Longest accepted `contract` or `event` name.
const MAX_NAME_LEN: usize = 256;

/// Routes of this group.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/events", get(events))
}

/// `/v1/events` parameters. Every filter is optional; they combine with AND.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct EventsParams {
    /// Only this chain.
    pub chain_id: Option<u64>,
    /// Only this contract name (from the config).
    pub contract: Option<String>,
    /// Only this event name.
    pub event: Option<String>,
    /// Only events emitted by this contract address (0x + 40 hex digits, any case).
    pub address: Option<String>,
    /// Only events of this transaction (0x + 64 hex digits).
    pub tx_hash: Option<String>,
    /// First indexed topic (0x + 64 hex digits).
    pub topic1: Option<String>,
    /// Second indexed topic.
    pub topic2: Option<String>,
    /// Third indexed topic.
    pub topic3: Option<String>,
    /// Lowest block number (inclusive).
    pub from_block: Option<u64>,
    /// Highest block number (inclusive).
    pub to_block: Option<u64>,
    /// Only events after this cursor in the page's order (exclusive): the previous
    /// page's `nextCursor`. With `order=desc`, the events below it.
    pub after: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<u64>,
    /// `asc` (oldest first, the default) or `desc` (newest first; `nextCursor` pages
    /// towards older events).
    #[param(value_type = Option<String>, pattern = "^(asc|desc)$")]
    pub order: Option<String>,
}

impl QueryParams for EventsParams {
    const FIELDS: &'static [&'static str] = &[
        "chainId",
        "contract",
        "event",
        "address",
        "txHash",
        "topic1",
        "topic2",
        "topic3",
        "fromBlock",
        "toBlock",
        "after",
        "limit",
        "order",
    ];
}

fn hex(field: &str, value: Option<String>, digits: usize) -> Result<Option<String>, ApiError> {
    let Some(v) = value else { return Ok(None) };
    let ok = v.len() == digits + 2
        && (v.starts_with("0x") || v.starts_with("0X"))
        && v.bytes().skip(2).all(|b| b.is_ascii_hexdigit());
    if ok {
        Ok(Some(v.to_ascii_lowercase()))
    } else {
        Err(ApiError::invalid(field, format!("expected 0x followed by {digits} hex digits")))
    }
}

fn name(field: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    match value {
        Some(v) if v.len() > MAX_NAME_LEN => {
            Err(ApiError::invalid(field, format!("longer than {MAX_NAME_LEN} bytes")))
        }
        // PostgreSQL text cannot hold NUL: such a name can never match.
        Some(v) if v.contains('\0') => Err(ApiError::invalid(field, "must not contain NUL characters")),
        other => Ok(other),
    }
}

fn bigint(field: &str, value: Option<u64>) -> Result<Option<u64>, ApiError> {
    match value {
        Some(v) if i64::try_from(v).is_err() => {
            Err(ApiError::invalid(field, format!("must be at most {}", i64::MAX)))
        }
        other => Ok(other),
    }
}

impl EventsParams {
    /// Validates the parameters into a db-client query whose filters an index serves
    /// ([`EventQuery::check_indexed`]).
    pub fn into_query(self) -> Result<EventQuery, ApiError> {
        let from_block = bigint("fromBlock", self.from_block)?;
        let to_block = bigint("toBlock", self.to_block)?;
        if let (Some(from), Some(to)) = (from_block, to_block)
            && from > to
        {
            return Err(ApiError::invalid("fromBlock", "must not exceed toBlock"));
        }
        let after = match self.after {
            None => None,
            Some(s) => Some(s.parse::<Cursor>().map_err(|e| ApiError::invalid("after", e.to_string()))?),
        };
        let limit = match self.limit {
            None => Limit::default(),
            Some(n) => Limit::new(n).map_err(|e| ApiError::invalid("limit", e.to_string()))?,
        };
        let order = match self.order.as_deref() {
            None | Some("asc") => Order::Asc,
            Some("desc") => Order::Desc,
            Some(_) => return Err(ApiError::invalid("order", "expected asc or desc")),
        };
        let query = EventQuery {
            order,
            chain_id: bigint("chainId", self.chain_id)?,
            contract: name("contract", self.contract)?,
            event: name("event", self.event)?,
            address: hex("address", self.address, 40)?,
            tx_hash: hex("txHash", self.tx_hash, 64)?,
            topic1: hex("topic1", self.topic1, 64)?,
            topic2: hex("topic2", self.topic2, 64)?,
            topic3: hex("topic3", self.topic3, 64)?,
            from_block,
            to_block,
            after,
            limit,
        };
        // A shape no index serves is a 400 naming the missing companion parameter.
        query.check_indexed()?;
        Ok(query)
    }
}

/// `/v1/events` body.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventsBody {
    /// The events, by cursor in the requested order (ascending by default).
    #[schema(value_type = Vec<tidemark_shared_types::EventItem>)]
    pub items: Vec<EventItem<Box<RawValue>>>,
    /// Pass as `after` to get the next page; null at the end.
    #[schema(value_type = Option<String>)]
    pub next_cursor: Option<Cursor>,
}

/// Indexed events in cursor order (ascending, or descending with `order=desc`). A page
/// with a `nextCursor` whose events are all final cannot change any more and is cacheable
/// for a minute; others for a second. The newest page (`order=desc` without `after`)
/// changes with every commit: a second.
#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventsParams), responses(
    (status = 200, description = "A page of events", body = EventsBody),
    (status = 400, description = "Bad parameter", body = crate::error::ErrorBody),
    (status = 503, description = "Database unavailable, or the query ran past the statement timeout", body = crate::error::ErrorBody)))]
pub async fn events(
    State(db): State<DbClient>,
    State(http): State<Arc<HttpSettings>>,
    Query(params): Query<EventsParams>,
) -> Result<Response, ApiError> {
    let query = params.into_query()?;
    let newest = query.order == Order::Desc && query.after.is_none();
    // The arguments stay the stored JSON text: copied into the body, never parsed.
    let page = db.events_raw(&query).await?;
    // Sized up front: growing from a small buffer copies a 100-event page several times.
    // Written directly, the same bytes as serializing `EventsBody` (see `events_body`),
    // and no larger than the response cap: a page of large events ends early.
    let capacity = (BYTES_PER_ITEM * (page.items.len() + 1)).min(http.max_response_bytes);
    let mut bytes = Vec::with_capacity(capacity);
    let (written, next) =
        super::events_body::write(&mut bytes, &page.items, page.next_cursor, http.max_response_bytes)
            .map_err(|e| ApiError::Internal(format!("serializing an events page: {e}")))?;
    let settled = !newest && next.is_some() && page.items[..written].iter().all(|i| i.finalized);
    let cache = if settled { "public, max-age=60" } else { "public, max-age=1" };
    Ok((cache_control(cache), json_content(), bytes).into_response())
}
