//! The service: [`app`] (the router), [`run`] (serve until shut down) and [`serve`]
//! (the whole program: settings, signals, exit codes).

use std::io;
use std::time::Duration;

use axum::Router;
use axum::http::Method;
use axum::middleware;
use tidemark_db_client::{DbClient, IncompatibleConfigTransition};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::cors::{Any, CorsLayer};

use crate::cli::Cli;
use crate::routes;
use crate::state::AppState;
use crate::telemetry::{self, trace_layer};

const TARGET: &str = "tidemark_api";

/// How long shutdown waits for open requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How the process ends; [`Exit::code`] is its exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Clean shutdown on SIGINT/SIGTERM (0).
    Clean,
    /// Runtime failure, e.g. the address cannot be bound (1).
    Runtime,
    /// Invalid configuration or arguments (2).
    InvalidConfig,
    /// The stored config changed incompatibly (3).
    Incompatible,
}

impl Exit {
    /// The process exit status.
    pub fn code(self) -> u8 {
        match self {
            Self::Clean => 0,
            Self::Runtime => 1,
            Self::InvalidConfig => 2,
            Self::Incompatible => 3,
        }
    }
}

/// The router with its fallbacks (JSON 404/405) and layers: request tracing, then CORS
/// (read-only, any origin), then metrics per matched route.
///
/// The three are applied as one layer: `Router::layer` wraps every route in a boxed
/// service per call, and the router clones a route's whole stack of boxed services for
/// each request, so one boxing level instead of three saves allocations on every
/// request (they stay inside the router, where the matched route is known).
pub fn app(state: AppState) -> Router {
    let layers = ServiceBuilder::new()
        .layer(trace_layer())
        .layer(
            CorsLayer::new().allow_origin(Any).allow_methods([Method::GET, Method::HEAD]).allow_headers(Any),
        )
        .layer(middleware::from_fn_with_state(state.metrics.clone(), telemetry::track));
    routes::router()
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(layers)
        .with_state(state)
}

/// Serves [`app`] on `listener` until `shutdown` is cancelled, then lets open requests
/// finish.
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
    axum::serve(listener, app(state)).with_graceful_shutdown(shutdown.cancelled_owned()).await
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
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
    let db = match DbClient::new(cli.db_client_config()) {
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
        db_pool_size = db.settings().pool.max_size, "listening");

    let shutdown = CancellationToken::new();
    let mut server = tokio::spawn(run(listener, AppState::new(db.clone()), shutdown.clone()));
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
