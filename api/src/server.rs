//! The service: [`app`] (the router), [`run`] (serve until shut down) and [`serve`]
//! (the whole program: settings, signals, exit codes).

use std::io;
use std::time::Duration;

use std::sync::Arc;

use axum::Router;
use axum::middleware;
use tidemark_db_client::{DbClient, IncompatibleConfigTransition};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, broadcast};
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;

use crate::cli::Cli;
use crate::state::AppState;
use crate::telemetry::{self, trace_layer};
use crate::{budget, listen, response, routes};

const TARGET: &str = "tidemark_api";

/// Scrapes of `/metrics` handled at once (its own budget, apart from the public routes).
const METRICS_CONCURRENCY: usize = 4;

/// How long shutdown waits for open requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

pub use tidemark_service_kit::Exit;
use tidemark_service_kit::shutdown_signal;

/// The router: the public routes within the request budget ([`crate::budget`]), the
/// probes outside it, CORS on both (not on `/metrics`, which has a budget of its own),
/// the JSON 404/405 fallbacks, and around everything request tracing and metrics per
/// matched route.
///
/// A route that must not be cut short or shed — a long-lived stream such as a future
/// `/v1/stream` — goes next to [`routes::probes`]: it then still counts against the
/// connection cap, but not against the request timeout or the concurrency limit.
///
/// Tracing and metrics are applied as one layer: `Router::layer` wraps every route in a
/// boxed service per call, and the router clones a route's whole stack of boxed services
/// for each request, so one boxing level instead of two saves allocations on every
/// request (they stay inside the router, where the matched route is known).
pub fn app(state: AppState) -> Router {
    let http = state.http.clone();
    let limited = Semaphore::new(http.max_concurrent_requests);
    let public = routes::public().method_not_allowed_fallback(response::method_not_allowed);
    let mut public = budget::apply(public, &http, Arc::new(limited))
        .merge(routes::probes().method_not_allowed_fallback(response::method_not_allowed))
        .merge(routes::streams().method_not_allowed_fallback(response::method_not_allowed));
    if let Some(cors) = budget::cors(&http.cors_origins) {
        public = public.layer(cors);
    }
    let metrics = routes::meta::metrics_router().method_not_allowed_fallback(response::method_not_allowed);
    let metrics = budget::apply(metrics, &http, Arc::new(Semaphore::new(METRICS_CONCURRENCY)));
    let layers = ServiceBuilder::new()
        .layer(trace_layer())
        .layer(middleware::from_fn_with_state(state.metrics.clone(), telemetry::track));
    public
        .merge(metrics)
        .fallback(response::not_found)
        .method_not_allowed_fallback(response::method_not_allowed)
        .layer(layers)
        .with_state(state)
}

/// Serves [`app`] on `listener` until `shutdown` is cancelled, then lets open requests
/// finish. Connections are limited as `state.http` says
/// ([`crate::settings::HttpSettings`]).
pub async fn run(listener: TcpListener, state: AppState, shutdown: CancellationToken) -> io::Result<()> {
    let metrics = state.metrics.clone();
    let upkeep_stop = shutdown.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = upkeep_stop.cancelled() => return,
                _ = tick.tick() => metrics.run_upkeep(),
            }
        }
    });
    let http = state.http.clone();
    // Streams never finish by themselves: end them when shutdown begins, so that the
    // grace period is left to the requests that do.
    let (hub, stop) = (state.hub.clone(), shutdown.clone());
    tokio::spawn(async move {
        stop.cancelled().await;
        hub.close();
    });
    listen::serve(listener, app(state), &http, shutdown).await
}

/// Waits for the first incompatible config transition.
async fn incompatible(
    mut rx: broadcast::Receiver<IncompatibleConfigTransition>,
) -> IncompatibleConfigTransition {
    loop {
        match rx.recv().await {
            Ok(t) => return t,
            // Missed some: the next one received is still a transition.
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}

/// The program: builds the client, listens at once (even with the database down), serves
/// until SIGINT/SIGTERM or an incompatible config transition, and says how it ended.
pub async fn serve(cli: Cli) -> Exit {
    if cli.database_url_on_command_line {
        tracing::warn!(target: TARGET,
            "the database URL was given with --database-url: a command line is visible to every user \
             of this host; use DATABASE_URL or --database-url-file instead");
    }
    let url = match cli.database_url() {
        Ok(url) => url,
        Err(e) => {
            tracing::error!(target: TARGET, error = %e, "invalid configuration");
            return Exit::InvalidConfig;
        }
    };
    match listen::raise_open_file_limit() {
        Ok((before, after)) => tracing::info!(target: TARGET, soft_before = before.soft, soft = after.soft,
            hard = after.hard, "open-file limit"),
        Err(e) => tracing::warn!(target: TARGET, error = %e, "cannot raise the open-file limit"),
    }
    let http = cli.http_settings();
    let db = match DbClient::new(cli.db_client_config(url)) {
        Ok(db) => db,
        Err(e) => {
            tracing::error!(target: TARGET, error = %e, "invalid configuration");
            return Exit::InvalidConfig;
        }
    };
    let transitions = db.subscribe_incompatible_transitions();
    let listener = match TcpListener::bind(cli.listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(target: TARGET, addr = %cli.listen, error = %e, "cannot listen");
            return Exit::Runtime;
        }
    };
    let addr = listener.local_addr().map_or_else(|_| cli.listen.to_string(), |a| a.to_string());
    tracing::info!(target: TARGET, addr = %addr, schema = %db.schema(),
        db_pool_size = db.settings().pool.max_size, max_connections = http.max_connections,
        max_concurrent_requests = http.max_concurrent_requests, "listening");

    let shutdown = CancellationToken::new();
    let mut server = tokio::spawn(run(listener, AppState::with_http(db.clone(), http), shutdown.clone()));
    let exit = tokio::select! {
        result = &mut server => return finished(result),
        () = shutdown_signal() => {
            tracing::info!(target: TARGET, "shutting down");
            Exit::Clean
        }
        t = incompatible(transitions) => {
            for d in &t.incompatibility.diffs {
                tracing::error!(target: TARGET, field = %d.field, previous = %d.stored, current = %d.current,
                    "incompatible config field");
            }
            tracing::error!(target: TARGET, incompatibility = %t,
                "the stored public config changed incompatibly; exiting with code 3");
            Exit::Incompatible
        }
    };
    shutdown.cancel();
    db.shutdown();
    match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
        Ok(result) if exit == Exit::Clean => finished(result),
        Ok(_) => exit,
        Err(_) => {
            tracing::warn!(target: TARGET, "open requests did not finish in time");
            server.abort();
            exit
        }
    }
}

fn finished(result: Result<io::Result<()>, tokio::task::JoinError>) -> Exit {
    match result {
        Ok(Ok(())) => Exit::Clean,
        Ok(Err(e)) => {
            tracing::error!(target: TARGET, error = %e, "the server failed");
            Exit::Runtime
        }
        Err(e) => {
            tracing::error!(target: TARGET, error = %e, "the server task failed");
            Exit::Runtime
        }
    }
}
