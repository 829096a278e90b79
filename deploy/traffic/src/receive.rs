//! `tidemark-traffic receive`: the local stack's demo webhook receiver. It verifies each
//! delivery with the Standard Webhooks reference library (`standardwebhooks`), exactly as
//! a receiver in production would, logs a line per delivery, and answers 200 (or 401 when
//! the signature does not verify, so the sink retries and shows the error).

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// Serves `POST /` (and any path) on `listen` until `shutdown`.
pub(crate) async fn receive(
    listen: SocketAddr,
    secret: String,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let verifier = std::sync::Arc::new(
        standardwebhooks::Webhook::new(&secret)
            .map_err(|e| anyhow::anyhow!("the secret is not a whsec_ secret: {e}"))?,
    );
    let app =
        axum::Router::new().route("/", post(deliver)).route("/{*path}", post(deliver)).with_state(verifier);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(addr = %listen, "webhook receiver listening");
    axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await?;
    Ok(())
}

async fn deliver(
    State(verifier): State<std::sync::Arc<standardwebhooks::Webhook>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
    if let Err(e) = verifier.verify(&body, &headers) {
        tracing::warn!(delivery = %id, error = %e, "signature does not verify: refused");
        return StatusCode::UNAUTHORIZED;
    }
    let parsed: Value = serde_json::from_slice(&body).unwrap_or_default();
    let items = parsed["items"].as_array().cloned().unwrap_or_default();
    let cursor = |i: Option<&Value>| i.and_then(|i| i["cursor"].as_str()).unwrap_or("-").to_owned();
    let removed = items.iter().filter(|i| i["kind"] == "removed").count();
    tracing::info!(
        delivery = %id,
        sink = parsed["sink"].as_str().unwrap_or("-"),
        items = items.len(),
        removed,
        first = %cursor(items.first()),
        last = %cursor(items.last()),
        "delivery verified"
    );
    StatusCode::OK
}
