//! TLS fixtures: a private CA ([`TestCa`], from `tidemark-db-client`'s test utilities so
//! that the db-client's own tests can use it too) and HTTPS serving for the
//! [`RpcProxy`] (`RpcProxy::start_tls`), so that clients are tested against a server
//! whose certificate only the test's CA vouches for.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

pub use tidemark_db_client::test_utils::TestCa;

use crate::RpcProxy;

/// A TCP listener that completes a TLS handshake before handing a connection to axum.
/// Failed or slow handshakes (a client that does not trust the CA) are dropped.
struct TlsListener {
    inner: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (socket, addr) = axum::serve::Listener::accept(&mut self.inner).await;
            let handshake = tokio::time::timeout(Duration::from_secs(5), self.acceptor.accept(socket));
            if let Ok(Ok(stream)) = handshake.await {
                return (stream, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// Serves `app` over HTTPS on `listener` until the task is aborted.
pub(crate) async fn serve_https(listener: TcpListener, app: axum::Router, config: Arc<rustls::ServerConfig>) {
    let listener = TlsListener { inner: listener, acceptor: TlsAcceptor::from(config) };
    let _ = axum::serve(listener, app).await;
}

impl RpcProxy {
    /// Starts a proxy to `upstream` that serves HTTPS at `https://127.0.0.1:<port>` with
    /// `ca`'s server certificate (issued for `127.0.0.1` by [`TestCa::new`]).
    ///
    /// # Panics
    /// When no port can be bound.
    pub async fn start_tls(upstream: &str, ca: &TestCa) -> Self {
        Self::start_serving(upstream, Some(ca.server_config())).await
    }
}
