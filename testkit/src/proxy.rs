//! A JSON-RPC proxy in front of a node, for tests that need a slow or failing provider.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use serde_json::Value;

use crate::faults::{self, Faults, Injected, InjectedCounts};

struct Shared {
    upstream: String,
    client: reqwest::Client,
    delays: Mutex<HashMap<String, Duration>>,
    counts: Mutex<HashMap<String, u64>>,
    down: AtomicBool,
    /// Widest `eth_getLogs` range served; wider ones get a "too many results" error.
    max_logs_range: Mutex<Option<u64>>,
    rejected_ranges: Mutex<u64>,
    faults: Mutex<Faults>,
    injected: Injected,
}

/// A proxy on `127.0.0.1:<free port>` forwarding JSON-RPC POSTs to an upstream node. It
/// can delay chosen methods, answer 503 to everything, and reject wide `eth_getLogs`
/// ranges like a hosted provider; it counts requests per method.
/// Stopped on drop.
pub struct RpcProxy {
    url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for RpcProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcProxy").field("url", &self.url).finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `(id, from, to)` of a single `eth_getLogs` request with a numeric range.
fn get_logs_range(body: &[u8]) -> Option<(serde_json::Value, u64, u64)> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    if v.get("method")?.as_str()? != "eth_getLogs" {
        return None;
    }
    let filter = v.get("params")?.get(0)?;
    let num = |k: &str| u64::from_str_radix(filter.get(k)?.as_str()?.strip_prefix("0x")?, 16).ok();
    Some((v.get("id")?.clone(), num("fromBlock")?, num("toBlock")?))
}

fn methods(body: &[u8]) -> Vec<String> {
    let method = |v: &serde_json::Value| v.get("method").and_then(|m| m.as_str()).map(str::to_owned);
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Array(items)) => items.iter().filter_map(method).collect(),
        Ok(v) => method(&v).into_iter().collect(),
        Err(_) => Vec::new(),
    }
}

async fn forward(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let called = methods(&body);
    let delay = {
        let mut counts = lock(&s.counts);
        for m in &called {
            *counts.entry(m.clone()).or_default() += 1;
        }
        let delays = lock(&s.delays);
        called.iter().filter_map(|m| delays.get(m).or_else(|| delays.get("*"))).max().copied()
    };
    if s.down.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "proxy is down").into_response();
    }
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let max_range = *lock(&s.max_logs_range);
    if let (Some(max), Some((id, from, to))) = (max_range, get_logs_range(&body))
        && to >= from
        && to - from + 1 > max
    {
        *lock(&s.rejected_ranges) += 1;
        // Infura's wording, with the range it suggests.
        let message = format!(
            "query returned more than 10000 results. Try with this block range [{from:#x}, {:#x}].",
            from + max - 1
        );
        let body =
            serde_json::json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32005, "message": message}});
        return (StatusCode::OK, axum::Json(body)).into_response();
    }
    let faults = *lock(&s.faults);
    if faults != Faults::default()
        && let Ok(request) = serde_json::from_slice::<Value>(&body)
        && request.is_object()
    {
        let up = |v: Value| -> BoxFuture<'_, Option<Value>> { Box::pin(post_json(&s, v)) };
        if let Some(response) = faults::answer(faults, &s.injected, &request, &up).await {
            return (StatusCode::OK, axum::Json(response)).into_response();
        }
    }
    let upstream =
        s.client.post(&s.upstream).header(header::CONTENT_TYPE, "application/json").body(body).send().await;
    match upstream {
        Ok(r) => {
            let status = StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            match r.bytes().await {
                Ok(b) => (status, [(header::CONTENT_TYPE, "application/json")], b).into_response(),
                Err(_) => StatusCode::BAD_GATEWAY.into_response(),
            }
        }
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}

/// One JSON-RPC request to the upstream node; its whole response object.
async fn post_json(s: &Shared, request: Value) -> Option<Value> {
    let r = s.client.post(&s.upstream).json(&request).send().await.ok()?;
    r.json().await.ok()
}

impl RpcProxy {
    /// Starts a proxy to `upstream` on the current tokio runtime.
    ///
    /// # Panics
    /// When no port can be bound.
    pub async fn start(upstream: &str) -> Self {
        Self::start_serving(upstream, None).await
    }

    /// Starts a proxy serving plain HTTP, or HTTPS with `tls` (see `crate::tls`).
    pub(crate) async fn start_serving(upstream: &str, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("cannot bind the RPC proxy: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("RPC proxy address: {e}"));
        let shared = Arc::new(Shared {
            upstream: upstream.to_owned(),
            client: {
                tidemark_db_client::tls::install_crypto_provider();
                reqwest::Client::new()
            },
            delays: Mutex::new(HashMap::new()),
            counts: Mutex::new(HashMap::new()),
            down: AtomicBool::new(false),
            max_logs_range: Mutex::new(None),
            rejected_ranges: Mutex::new(0),
            faults: Mutex::new(Faults::default()),
            injected: Injected::default(),
        });
        let app = axum::Router::new().fallback(axum::routing::post(forward)).with_state(shared.clone());
        let scheme = if tls.is_some() { "https" } else { "http" };
        let task = tokio::spawn(async move {
            match tls {
                Some(config) => crate::tls::serve_https(listener, app, config).await,
                None => {
                    let _ = axum::serve(listener, app).await;
                }
            }
        });
        Self { url: format!("{scheme}://{addr}"), shared, task }
    }

    /// The proxy's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Delays every request calling `method` (`"*"`: any method without its own delay).
    pub fn delay(&self, method: &str, delay: Duration) {
        lock(&self.shared.delays).insert(method.to_owned(), delay);
    }

    /// Removes every delay.
    pub fn clear_delays(&self) {
        lock(&self.shared.delays).clear();
    }

    /// While `down`, every request gets HTTP 503.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::Relaxed);
    }

    /// Rejects `eth_getLogs` over more than `max` blocks the way Infura does ("query
    /// returned more than 10000 results. Try with this block range [0x…, 0x…]."); `None`
    /// serves any range.
    pub fn limit_logs_range(&self, max: Option<u64>) {
        *lock(&self.shared.max_logs_range) = max;
    }

    /// How many `eth_getLogs` requests were rejected as too wide.
    pub fn rejected_ranges(&self) -> u64 {
        *lock(&self.shared.rejected_ranges)
    }

    /// Answers a fraction of requests as a lagging or lying node would ([`Faults`]);
    /// `Faults::default()` forwards everything again.
    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.shared.faults) = faults;
    }

    /// How many answers each fault mode altered so far.
    pub fn injected(&self) -> InjectedCounts {
        self.shared.injected.counts()
    }

    /// How many requests called `method` so far.
    pub fn count(&self, method: &str) -> u64 {
        lock(&self.shared.counts).get(method).copied().unwrap_or(0)
    }
}

impl Drop for RpcProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
