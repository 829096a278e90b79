//! Opening PostgreSQL connections with the TLS settings of a connection string.

use std::time::Duration;

use diesel_async::AsyncPgConnection;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Connection, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::params;
use super::roots::{libpq_default_root, pem_roots, system_roots};
use super::settings::{RootCert, SslMode, TlsError};
use super::verify::{Check, client_config};

/// Socket-level time limits of a [`PgConnector`] (see [`PgConnector::with_socket_timeouts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketTimeouts {
    /// TCP connect, per address.
    pub connect: Duration,
    /// Silence before the first keepalive probe.
    pub keepalives_idle: Duration,
    /// `TCP_USER_TIMEOUT`: unacknowledged data for this long closes the connection.
    pub tcp_user_timeout: Duration,
}

/// The stream of a connection made by a [`PgConnector`] (TLS or plain).
pub type TlsStream = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream;

/// A parsed connection string with its TLS setup, ready to open connections. Parsing
/// and loading the root certificates happen once, in [`PgConnector::new`]; nothing
/// touches the network until a connection is opened. Cheap to clone.
#[derive(Clone)]
pub struct PgConnector {
    config: tokio_postgres::Config,
    mode: SslMode,
    tls: MakeRustlsConnect,
}

impl std::fmt::Debug for PgConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConnector").field("sslmode", &self.mode).finish_non_exhaustive()
    }
}

impl PgConnector {
    /// Reads `database_url` (`postgres://`, `postgresql://` or keyword/value) and loads
    /// the root certificates its `sslmode` needs. Errors name the parameter or file at
    /// fault, never the URL.
    pub fn new(database_url: &str) -> Result<Self, TlsError> {
        let parsed = params::parse(database_url)?;
        let check = match (parsed.mode, &parsed.root) {
            (SslMode::Disable | SslMode::Allow | SslMode::Prefer, _)
            | (SslMode::Require, RootCert::Default) => Check::EncryptOnly,
            (SslMode::Require, RootCert::File(path)) => Check::Chain(pem_roots(path)?),
            (SslMode::Require | SslMode::VerifyCa, root) => Check::Chain(verify_roots(root, parsed.mode)?),
            (SslMode::VerifyFull, root) => Check::Full(verify_roots(root, parsed.mode)?),
        };
        let tls = MakeRustlsConnect::new(client_config(check)?);
        Ok(Self { config: parsed.config, mode: parsed.mode, tls })
    }

    /// Bounds how long the socket may wait on a server that stops answering: TCP connect
    /// within `socket.connect`, keepalive probes after `socket.keepalives_idle` of silence
    /// (then every third of it, three times), and `TCP_USER_TIMEOUT` (Linux: a connection
    /// whose sent data stays unacknowledged this long is closed). Values the connection
    /// string sets itself (`connect_timeout`, `keepalives_idle`, `tcp_user_timeout`) win.
    ///
    /// These catch a dead network path or host. A server whose processes hang while its
    /// kernel still acknowledges packets is caught by the callers' own time limits
    /// (the pool's query time limit).
    pub fn with_socket_timeouts(mut self, socket: SocketTimeouts) -> Self {
        let c = &mut self.config;
        if c.get_connect_timeout().is_none() {
            c.connect_timeout(socket.connect);
        }
        if c.get_tcp_user_timeout().is_none() {
            c.tcp_user_timeout(socket.tcp_user_timeout);
        }
        if c.get_keepalives() {
            if c.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
                c.keepalives_idle(socket.keepalives_idle);
            }
            let idle = c.get_keepalives_idle();
            if c.get_keepalives_interval().is_none() {
                c.keepalives_interval((idle / 3).max(Duration::from_secs(1)));
            }
            if c.get_keepalives_retries().is_none() {
                c.keepalives_retries(3);
            }
        }
        self
    }

    /// The parsed settings connections are opened with (no password is shown by its
    /// `Debug`).
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// The `sslmode` in force (`prefer` when the string names none).
    pub fn ssl_mode(&self) -> SslMode {
        self.mode
    }

    /// Opens a `tokio-postgres` connection; the caller drives the returned connection
    /// (e.g. `tokio::spawn`) for the client to work.
    pub async fn connect(&self) -> Result<(Client, Connection<Socket, TlsStream>), TlsError> {
        self.config.connect(self.tls.clone()).await.map_err(|e| self.error(&e))
    }

    /// Opens a `tokio-postgres` connection driven by a spawned task, which ends when the
    /// client is dropped or the socket fails.
    pub async fn connect_spawned(&self) -> Result<Client, TlsError> {
        let (client, connection) = self.connect().await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(target: "tidemark_db_client::tls", error = %e, "connection ended");
            }
        });
        Ok(client)
    }

    /// Opens a diesel-async connection.
    pub async fn establish(&self) -> Result<AsyncPgConnection, TlsError> {
        let (client, connection) = self.connect().await?;
        AsyncPgConnection::try_from_client_and_connection(client, connection)
            .await
            .map_err(|e| TlsError::Connect(e.to_string()))
    }

    fn error(&self, e: &tokio_postgres::Error) -> TlsError {
        let described = crate::error::describe(e);
        // tokio-postgres has no accessor for its error kinds; a TLS failure is the one
        // whose own text (without the cause) is this.
        if e.to_string() == "error performing TLS handshake" {
            let message = std::error::Error::source(e).map_or(described, |cause| cause.to_string());
            return TlsError::Handshake { sslmode: self.mode, message };
        }
        TlsError::Connect(described)
    }
}

/// The trusted roots of a verifying mode.
fn verify_roots(root: &RootCert, mode: SslMode) -> Result<rustls::RootCertStore, TlsError> {
    let store = match root {
        RootCert::File(path) => pem_roots(path)?,
        RootCert::Default => match libpq_default_root() {
            Some(path) => pem_roots(&path)?,
            None => system_roots()?,
        },
        RootCert::System => system_roots()?,
    };
    if store.is_empty() {
        return Err(TlsError::NoRoots { sslmode: mode });
    }
    Ok(store)
}

/// Opens a diesel-async connection to `database_url`, honouring its TLS parameters (for
/// tools and tests; applications keep a [`PgConnector`] or a [`PgPool`](crate::writer::PgPool)).
pub async fn establish(database_url: &str) -> Result<AsyncPgConnection, TlsError> {
    PgConnector::new(database_url)?.establish().await
}

/// Opens a `tokio-postgres` client to `database_url`, honouring its TLS parameters,
/// driven by a spawned task (see [`PgConnector::connect_spawned`]).
pub async fn connect(database_url: &str) -> Result<Client, TlsError> {
    PgConnector::new(database_url)?.connect_spawned().await
}
