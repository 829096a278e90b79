//! HTTP metrics (Prometheus) and request tracing with the matched route.
//!
//! Each [`Metrics`] owns its recorder, so several apps in one process (tests) never
//! share counters and no global recorder is installed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use tidemark_db_client::DbClient;
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::{DefaultOnFailure, DefaultOnRequest, DefaultOnResponse, MakeSpan, TraceLayer};
use tracing::{Level, Span};

/// Latency buckets in seconds.
const BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The metrics registry of one app.
#[derive(Clone)]
pub struct Metrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
    routes: Arc<Mutex<HashMap<String, RouteHandles>>>,
}

/// The request metrics of one matched route, registered on first use. Building a metric
/// key per request (label strings, sorting, hashing, the registry's lookup) cost about a
/// tenth of a `/status` request's instructions; a route's handles are few (bounded
/// methods and status codes), so they are looked up by scanning.
#[derive(Default)]
struct RouteHandles {
    /// By method and status.
    requests: Vec<((&'static str, u16), Counter)>,
    /// By method.
    latency: Vec<(&'static str, Histogram)>,
}

/// The handle registered under `key`, registering it with `register` on first use.
fn registered<K: PartialEq, H: Clone>(handles: &mut Vec<(K, H)>, key: K, register: impl FnOnce() -> H) -> H {
    if let Some((_, h)) = handles.iter().find(|(k, _)| *k == key) {
        return h.clone();
    }
    let h = register();
    handles.push((key, h.clone()));
    h
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// An empty registry with histogram buckets for request latency.
    pub fn new() -> Self {
        let builder = PrometheusBuilder::new();
        let recorder = match builder.set_buckets(BUCKETS) {
            Ok(b) => b.build_recorder(),
            Err(_) => PrometheusBuilder::new().build_recorder(),
        };
        let handle = recorder.handle();
        let metrics = Self { recorder: Arc::new(recorder), handle, routes: Arc::default() };
        metrics.with(|| {
            metrics::describe_counter!(
                "http_requests_total",
                "HTTP requests by method, matched route and status"
            );
            metrics::describe_histogram!(
                "http_request_duration_seconds",
                metrics::Unit::Seconds,
                "HTTP request latency by method and matched route"
            );
            metrics::describe_counter!("tidemark_db_queries_total", "SQL statements sent by the db-client");
            metrics::describe_gauge!("tidemark_healthy", "1 when the instance is healthy (see /health)");
            metrics::describe_gauge!("tidemark_stream_clients", "open /v1/stream clients");
            metrics::describe_counter!(
                "tidemark_stream_entries_sent_total",
                "journal entries sent to stream clients"
            );
            metrics::describe_counter!(
                "tidemark_stream_lagged_total",
                "lagged events sent to stream clients"
            );
            metrics::describe_counter!(
                "tidemark_stream_catch_up_queries_total",
                "catch-up pages stream clients read"
            );
            metrics::describe_histogram!(
                "tidemark_stream_fanout_seconds",
                metrics::Unit::Seconds,
                "from the journal tail reading a committed entry to a live client being sent it"
            );
        });
        metrics
    }

    /// The histogram of the streams' fan-out latency.
    pub fn stream_fanout(&self) -> metrics::Histogram {
        self.with(|| metrics::histogram!("tidemark_stream_fanout_seconds"))
    }

    fn with<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&*self.recorder, f)
    }

    /// Records one request.
    pub fn record_request(&self, method: &Method, route: &str, status: u16, elapsed: Duration) {
        let method = known_method(method);
        let (counter, histogram) = {
            let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
            let handles = match routes.get_mut(route) {
                Some(h) => h,
                None => routes.entry(route.to_owned()).or_default(),
            };
            let counter = registered(&mut handles.requests, (method, status), || {
                self.with(|| {
                    metrics::counter!("http_requests_total", "method" => method,
                        "route" => route.to_owned(), "status" => status.to_string())
                })
            });
            let histogram = registered(&mut handles.latency, method, || {
                self.with(|| {
                    metrics::histogram!("http_request_duration_seconds", "method" => method,
                        "route" => route.to_owned())
                })
            });
            (counter, histogram)
        };
        counter.increment(1);
        histogram.record(elapsed.as_secs_f64());
    }

    /// Renders the Prometheus text, with the database client's and the streams' figures.
    pub async fn render(&self, db: &DbClient, hub: &crate::hub::Hub) -> String {
        let healthy = db.is_healthy();
        let queries = db.queries_executed();
        let (clients, (sent, lagged, catch_up)) = (hub.clients(), hub.counts());
        let pool = db.pool_usage();
        self.with(|| {
            metrics::counter!("tidemark_db_queries_total").absolute(queries);
            metrics::gauge!("tidemark_healthy").set(if healthy { 1.0 } else { 0.0 });
            metrics::gauge!("tidemark_stream_clients").set(clients as f64);
            metrics::counter!("tidemark_stream_entries_sent_total").absolute(sent);
            metrics::counter!("tidemark_stream_lagged_total").absolute(lagged);
            metrics::counter!("tidemark_stream_catch_up_queries_total").absolute(catch_up);
            tidemark_service_kit::record_pool_usage("api", pool.max, pool.open, pool.idle, pool.waiting);
        });
        self.handle.render()
    }

    /// Drains histogram samples so memory stays bounded between scrapes.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }
}

/// A bounded label set: arbitrary methods would make the label cardinality unbounded.
fn known_method(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// Middleware counting requests and their latency per matched route.
pub async fn track(State(metrics): State<Metrics>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let started = Instant::now();
    let response = next.run(req).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    metrics.record_request(&method, route, response.status().as_u16(), started.elapsed());
    response
}

/// Spans named after the matched route, never the raw path (which may carry anything).
#[derive(Debug, Clone, Copy, Default)]
pub struct RouteSpan;

impl<B> MakeSpan<B> for RouteSpan {
    fn make_span(&mut self, req: &axum::http::Request<B>) -> Span {
        let route = req.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str);
        tracing::info_span!(target: "tidemark_api::http", "request", method = %req.method(), route)
    }
}

/// The request-tracing layer: a span per request with the matched route; requests and
/// responses at DEBUG, so `RUST_LOG=tidemark_api=debug,tower_http=debug` shows them.
pub fn trace_layer() -> TraceLayer<SharedClassifier<ServerErrorsAsFailures>, RouteSpan> {
    TraceLayer::new_for_http()
        .make_span_with(RouteSpan)
        .on_request(DefaultOnRequest::new().level(Level::DEBUG))
        .on_response(DefaultOnResponse::new().level(Level::DEBUG))
        // 503s are expected while the instance is unavailable; real 500s are logged
        // with their cause where they happen.
        .on_failure(DefaultOnFailure::new().level(Level::DEBUG))
}
