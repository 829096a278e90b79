//! `POST /v1/webhooks/{provider}/{chainId}`: check, parse, record, then acknowledge.
//!
//! Answers: 404 for an unknown provider or chain (or a chain without a webhook of that
//! provider), 413 above the body limit, 401 for a missing, wrong or stale signature
//! (nothing stored), 400 for a body that is not the provider's format, 200 once the
//! delivery is recorded (or was already, or its block is final), 503 when the database
//! cannot take it (the provider retries).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;
use tidemark_db_client::writer::{NewDelivery, Recorded, record_delivery};
use tidemark_shared_types::ErrorBody;

use super::payload::{self, Announced};
use super::{Hub, verify};
use crate::config::Provider;

/// How long recording may take before the answer is 503 (providers give up after 5 s).
const RECORD_LIMIT: Duration = Duration::from_secs(4);

/// The webhook routes.
pub fn router(hub: Arc<Hub>) -> Router {
    let limit = hub.max_body_bytes;
    Router::new()
        .route("/v1/webhooks/{provider}/{chain_id}", post(receive))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(hub)
}

fn error(code: StatusCode, kind: &'static str, message: impl Into<String>) -> Response {
    (code, Json(ErrorBody::<String>::new(kind, message.into()))).into_response()
}

impl Hub {
    fn rejected(&self, chain_id: u64, reason: &'static str) {
        self.progress.webhooks(chain_id, |w| *w.rejected.entry(reason.to_owned()).or_default() += 1);
        metrics::counter!("tidemark_webhook_requests_total", "chain_id" => chain_id.to_string(), "outcome" => reason)
            .increment(1);
    }

    fn counted(&self, chain_id: u64, outcome: &'static str) {
        metrics::counter!("tidemark_webhook_requests_total", "chain_id" => chain_id.to_string(), "outcome" => outcome)
            .increment(1);
    }
}

async fn receive(
    State(hub): State<Arc<Hub>>,
    Path((provider, chain)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let metrics = hub.metrics.clone();
    metrics.scope(handle(hub, provider, chain, headers, body)).await
}

async fn handle(
    hub: Arc<Hub>,
    provider: String,
    chain: String,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (Some(provider), Ok(chain_id)) = (Provider::from_path(&provider), chain.parse::<u64>()) else {
        return error(StatusCode::NOT_FOUND, "not_found", "no such webhook endpoint");
    };
    let mut keys = hub.keys(chain_id, provider).peekable();
    if keys.peek().is_none() {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("chain {chain_id} has no {} webhook configured", provider.as_str()),
        );
    }
    let body = match body {
        Ok(b) => b,
        Err(rejection) => {
            let status = rejection.status();
            let reason = if status == StatusCode::PAYLOAD_TOO_LARGE { "too-large" } else { "malformed" };
            hub.rejected(chain_id, reason);
            let message =
                format!("the body could not be read ({status}); the limit is {} bytes", hub.max_body_bytes);
            return error(status, reason, message);
        }
    };
    // The signature first, over the raw bytes: nothing unauthenticated is parsed.
    let checked = match provider {
        Provider::Alchemy => verify::alchemy(keys, &headers, &body).map(|()| None),
        Provider::Standard => verify::standard(keys, &headers, &body, now()).map(Some),
    };
    let header_id = match checked {
        Ok(id) => id,
        Err(refused) => {
            hub.rejected(chain_id, "signature");
            return error(StatusCode::UNAUTHORIZED, "unauthorized", refused.to_string());
        }
    };
    let parsed = match provider {
        Provider::Alchemy => payload::alchemy(&body),
        Provider::Standard => payload::standard(&body).and_then(|mut a| {
            a.delivery_id = Some(payload::delivery_id(header_id.unwrap_or_default(), "webhook-id")?);
            Ok(a)
        }),
    };
    let announced: Announced = match parsed {
        Ok(a) => a,
        Err(e) => {
            hub.rejected(chain_id, "malformed");
            return error(StatusCode::BAD_REQUEST, "bad_request", e.0);
        }
    };
    if let Some(other) = announced.chain_id.filter(|c| *c != chain_id) {
        hub.rejected(chain_id, "wrong-chain");
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!(
                "the delivery is for chain {other}, not chain {chain_id}: check the webhook's URL or network"
            ),
        );
    }
    record(&hub, provider, chain_id, &announced).await
}

async fn record(hub: &Hub, provider: Provider, chain_id: u64, a: &Announced) -> Response {
    let finality_depth = hub.chains.get(&chain_id).map_or(0, |c| c.finality_depth);
    let delivery = NewDelivery {
        provider: provider.as_str(),
        chain_id,
        delivery_id: a.delivery_id.as_deref().unwrap_or_default(),
        block_number: a.number,
        block_hash: &a.hash,
        parent_hash: a.parent_hash.as_deref(),
        sequence: a.sequence.as_deref(),
        log_count: a.log_count,
    };
    let recorded = tokio::time::timeout(
        RECORD_LIMIT,
        record_delivery(&hub.pool, &hub.schema, &delivery, finality_depth),
    )
    .await;
    let status = match recorded {
        Ok(Ok(Recorded::New)) => {
            hub.progress.webhooks(chain_id, |w| w.received += 1);
            hub.counted(chain_id, "recorded");
            hub.recorded.notify_one();
            "recorded"
        }
        Ok(Ok(Recorded::Duplicate)) => {
            hub.progress.webhooks(chain_id, |w| w.duplicate += 1);
            hub.counted(chain_id, "duplicate");
            "duplicate"
        }
        Ok(Ok(Recorded::Final)) => {
            hub.progress.webhooks(chain_id, |w| w.dropped_final += 1);
            hub.counted(chain_id, "final");
            "final"
        }
        Ok(Err(e)) if e.is_invalid_input() => {
            hub.rejected(chain_id, "malformed");
            return error(StatusCode::BAD_REQUEST, "bad_request", e.to_string());
        }
        Ok(Err(e)) => {
            tracing::warn!(target: "tidemark::webhooks", chain_id, error = %e, "cannot record a webhook delivery; answering 503");
            hub.rejected(chain_id, "unavailable");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the delivery could not be recorded; retry",
            );
        }
        Err(_) => {
            tracing::warn!(target: "tidemark::webhooks", chain_id, "recording a webhook delivery timed out; answering 503");
            hub.rejected(chain_id, "unavailable");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the delivery could not be recorded in time; retry",
            );
        }
    };
    tracing::debug!(target: "tidemark::webhooks", chain_id, provider = provider.as_str(), block = a.number, status, "webhook delivery");
    (StatusCode::OK, Json(json!({"status": status, "block": a.number}))).into_response()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
