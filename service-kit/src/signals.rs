//! SIGINT and SIGTERM: the one way a Tidemark program is asked to stop.

use tokio_util::sync::CancellationToken;

/// Resolves on the first SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

/// Cancels `token` on SIGINT or SIGTERM (returns early when it is cancelled otherwise).
pub async fn cancel_on_signal(token: CancellationToken) {
    tokio::select! {
        () = shutdown_signal() => {
            tracing::info!(target: "tidemark", "shutdown signal received");
            token.cancel();
        }
        () = token.cancelled() => {}
    }
}
