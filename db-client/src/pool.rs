//! The connection pool: diesel-async over deadpool, with connect, checkout and statement
//! timeouts so that no caller ever waits forever on a database that does not answer.
//!
//! Readers see only [`PoolConfig`] (the pool settings of a [`DbClient`](crate::DbClient))
//! and [`default_max_size`]; the pool itself is public to the indexer (feature `writer`).

// Public to writers and tests; readers reach only the settings.
#![cfg_attr(not(feature = "writer"), allow(unreachable_pub))]

use std::time::Duration;

use deadpool::managed::{self, Metrics, Object, Pool, PoolError, RecycleError, RecycleResult};
use diesel::ConnectionError;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, PoolError as ConnError, PoolableConnection,
};
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use futures::FutureExt;

use crate::error::{DbError, Result};
use crate::tls::{PgConnector, SocketTimeouts};

/// A pooled connection.
pub type PooledConnection = Object<PoolManager>;

/// A connection checked out again within this time of its previous checkout is handed out
/// without a test query (HikariCP's "alive bypass window").
pub const VERIFY_AFTER_IDLE: Duration = Duration::from_secs(1);

/// diesel-async's connection manager, with the test query on checkout (`SELECT 1`, one
/// round trip) skipped for connections in steady use.
///
/// Invariant: a connection is handed out only if it is not broken — no diesel-managed
/// transaction left open or failed, socket not closed (a server restart or
/// `pg_terminate_backend` closes it; the connection's task sees the close as soon as it
/// runs) — and, when it was last checked out [`VERIFY_AFTER_IDLE`] or longer ago, only
/// after the test query succeeded. Under load every checkout then costs no round trip,
/// while a connection that sat idle (and might have been cut without the socket noticing)
/// is still tested before use. A connection cut in the instant before its checkout fails
/// the one call that gets it and is discarded when it comes back broken.
pub struct PoolManager {
    inner: AsyncDieselConnectionManager<AsyncPgConnection>,
}

impl std::fmt::Debug for PoolManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolManager").finish_non_exhaustive()
    }
}

impl managed::Manager for PoolManager {
    type Type = AsyncPgConnection;
    type Error = ConnError;

    async fn create(&self) -> std::result::Result<AsyncPgConnection, ConnError> {
        managed::Manager::create(&self.inner).await
    }

    async fn recycle(&self, conn: &mut AsyncPgConnection, metrics: &Metrics) -> RecycleResult<ConnError> {
        if metrics.last_used() >= VERIFY_AFTER_IDLE {
            return managed::Manager::recycle(&self.inner, conn, metrics).await;
        }
        if std::thread::panicking() || conn.is_broken() {
            return Err(RecycleError::message("broken connection"));
        }
        Ok(())
    }
}

/// The default largest number of open connections: twice this host's cores, at least 4
/// and at most 16.
///
/// A pool larger than the cores the database can run its backends on does not serve more
/// pages per second: it moves the queue from the pool (first come, first served) into the
/// operating system's scheduler of PostgreSQL's backends, which lengthens the slowest
/// requests. With PostgreSQL on the same two-core machine and 32 concurrent first-page
/// requests, 4 connections instead of 16 cut the API's p99 by 1–2 ms (a tenth to a fifth) for
/// up to 8 % fewer pages per second (`bench/RESULTS.md`). Where the database runs on a
/// larger host, set the size to about twice its cores.
pub fn default_max_size() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    (2 * cores).clamp(4, 16)
}

/// Pool settings. Defaults: [`default_max_size`] connections, 5 s to connect, 5 s to check
/// out, 5 s `statement_timeout`, 7 s for any answer, TCP keepalives after 5 s of silence
/// and a 10 s `TCP_USER_TIMEOUT`.
#[derive(Clone)]
pub struct PoolConfig {
    /// `postgres://…` URL. Never logged.
    pub database_url: String,
    /// Maximum open connections.
    pub max_size: usize,
    /// Time allowed to open one connection.
    pub connect_timeout: Duration,
    /// Time allowed to wait for a free connection.
    pub checkout_timeout: Duration,
    /// `statement_timeout` set on every connection (0 disables it).
    pub statement_timeout: Duration,
    /// Client-side limit on waiting for one query's (or cache refresh's) answer, for a
    /// server that hangs without closing the socket; a connection that ran out of time is
    /// closed, never reused. Keep it above `statement_timeout`, so that the server's own
    /// cancellation normally comes first.
    pub query_timeout: Duration,
    /// Silence on a connection before TCP keepalive probes start.
    pub keepalives_idle: Duration,
    /// `TCP_USER_TIMEOUT` (Linux): data unacknowledged this long closes the connection.
    pub tcp_user_timeout: Duration,
    /// `application_name` reported to PostgreSQL.
    pub application_name: String,
}

impl std::fmt::Debug for PoolConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolConfig")
            .field("database_url", &"<redacted>")
            .field("max_size", &self.max_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("checkout_timeout", &self.checkout_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("query_timeout", &self.query_timeout)
            .field("keepalives_idle", &self.keepalives_idle)
            .field("tcp_user_timeout", &self.tcp_user_timeout)
            .finish()
    }
}

impl PoolConfig {
    /// Settings with the defaults for `database_url`.
    pub fn new(database_url: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            max_size: default_max_size(),
            connect_timeout: Duration::from_secs(5),
            checkout_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(5),
            query_timeout: Duration::from_secs(7),
            keepalives_idle: Duration::from_secs(5),
            tcp_user_timeout: Duration::from_secs(10),
            application_name: "tidemark".into(),
        }
    }
}

/// A pool's connections at one moment (for metrics): `open - idle` are in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUsage {
    /// The most the pool opens.
    pub max: usize,
    /// Open now.
    pub open: usize,
    /// Open and not checked out.
    pub idle: usize,
    /// Tasks waiting for a connection.
    pub waiting: usize,
}

/// A pool of PostgreSQL connections. Building it never touches the network; connections
/// are opened on demand.
#[derive(Clone)]
pub struct PgPool {
    pool: Pool<PoolManager>,
    config: PoolConfig,
    /// For connections outside the pool (the writer's).
    #[cfg_attr(not(feature = "writer"), allow(dead_code))]
    connector: PgConnector,
}

impl std::fmt::Debug for PgPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgPool").field("config", &self.config).finish()
    }
}

impl PgPool {
    /// Builds the pool (lazy: does not connect). The URL's TLS parameters (`sslmode`,
    /// `sslrootcert`; see [`crate::tls`]) are read and root certificates loaded here: a
    /// bad parameter or an unreadable certificate file is a [`DbError::Config`].
    pub fn new(config: PoolConfig) -> Result<Self> {
        let connector = PgConnector::new(&config.database_url)
            .map_err(|e| DbError::Config(e.to_string()))?
            .with_socket_timeouts(SocketTimeouts {
                connect: config.connect_timeout,
                keepalives_idle: config.keepalives_idle,
                tcp_user_timeout: config.tcp_user_timeout,
            });
        let (setup_config, setup_connector) = (config.clone(), connector.clone());
        let mut manager_config = ManagerConfig::<AsyncPgConnection>::default();
        manager_config.custom_setup =
            Box::new(move |_url| connect(setup_connector.clone(), setup_config.clone()).boxed());
        let manager = PoolManager {
            inner: AsyncDieselConnectionManager::new_with_config(&config.database_url, manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(config.max_size)
            .wait_timeout(Some(config.checkout_timeout))
            .create_timeout(Some(config.connect_timeout + Duration::from_millis(500)))
            .recycle_timeout(Some(config.connect_timeout))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| DbError::Config(e.to_string()))?;
        Ok(Self { pool, config, connector })
    }

    /// How many connections are open, in use and awaited right now.
    pub fn usage(&self) -> PoolUsage {
        let s = self.pool.status();
        PoolUsage { max: s.max_size, open: s.size, idle: s.available, waiting: s.waiting }
    }

    /// Checks out a connection, waiting at most the checkout timeout.
    pub async fn get(&self) -> Result<PooledConnection> {
        self.pool.get().await.map_err(|e| match e {
            // Waiting for a connection in use: this client is saturated. Creating or
            // recycling one timed out: the database did not answer.
            PoolError::Timeout(deadpool::managed::TimeoutType::Wait) => {
                DbError::Busy(self.config.checkout_timeout)
            }
            PoolError::Timeout(_) => DbError::Timeout(self.config.checkout_timeout),
            PoolError::Backend(e) => DbError::Unavailable(e.to_string()),
            other => DbError::Unavailable(other.to_string()),
        })
    }

    /// Checks out a connection and runs `f` on it within [`PoolConfig::query_timeout`]
    /// (a connection that ran out of time is closed, never reused).
    #[cfg(feature = "writer")]
    pub async fn run<T>(&self, f: impl AsyncFnOnce(&mut AsyncPgConnection) -> Result<T>) -> Result<T> {
        within(self.config.query_timeout, self.get().await?, f).await
    }

    /// Opens a connection outside the pool with the same timeouts and settings (for
    /// session-scoped work such as advisory locks and LISTEN).
    #[cfg(feature = "writer")]
    pub async fn connect_dedicated(&self) -> Result<AsyncPgConnection> {
        Ok(connect(self.connector.clone(), self.config.clone()).await?)
    }

    /// Opens a connection outside the pool that `LISTEN`s on `channel`, calls `event(None)`
    /// once it listens and `event(Some(payload))` for each notification, and returns when
    /// the connection ends (`Ok`) or fails. Notifications sent while no such connection
    /// exists are lost: a caller re-reads what it follows at `event(None)`.
    pub(crate) async fn listen(&self, channel: &str, mut event: impl FnMut(Option<&str>)) -> Result<()> {
        use futures::StreamExt;
        use tokio_postgres::AsyncMessage;

        let timeout = self.config.connect_timeout;
        let (client, mut connection) = tokio::time::timeout(timeout, self.connector.connect())
            .await
            .map_err(|_| DbError::Unavailable(format!("connecting timed out after {timeout:?}")))?
            .map_err(|e| DbError::Unavailable(e.to_string()))?;
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        let sql = format!("{}; LISTEN {channel}", session_settings(&self.config));
        let listen = client.batch_execute(&sql);
        tokio::pin!(listen);
        let mut listening = false;
        loop {
            tokio::select! {
                done = &mut listen, if !listening => {
                    done?;
                    listening = true;
                    event(None);
                }
                message = messages.next() => match message {
                    Some(Ok(AsyncMessage::Notification(n))) => event(Some(n.payload())),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e.into()),
                    None => return Ok(()),
                },
            }
        }
    }

    /// Opens a plain `tokio-postgres` connection outside the pool, with the same connect
    /// timeout and session settings, for work diesel-async cannot do (binary `COPY`). The
    /// connection runs on a spawned task; it ends when the client is dropped or the
    /// socket fails (then every call returns a closed-connection error).
    #[cfg(feature = "writer")]
    pub async fn connect_raw(&self) -> Result<tokio_postgres::Client> {
        let config = &self.config;
        let timeout = config.connect_timeout;
        let client = tokio::time::timeout(timeout, async {
            let client =
                self.connector.connect_spawned().await.map_err(|e| DbError::Unavailable(e.to_string()))?;
            client.batch_execute(&session_settings(config)).await?;
            Ok::<_, DbError>(client)
        })
        .await
        .map_err(|_| DbError::Unavailable(format!("connecting timed out after {timeout:?}")))??;
        Ok(client)
    }

    /// The settings the pool was built with.
    #[cfg(feature = "writer")]
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }
}

/// Opens one connection within `connect_timeout` and applies the session settings.
async fn connect(connector: PgConnector, config: PoolConfig) -> Result<AsyncPgConnection, ConnectionError> {
    let timeout = config.connect_timeout;
    tokio::time::timeout(timeout, async {
        let mut conn =
            connector.establish().await.map_err(|e| ConnectionError::BadConnection(e.to_string()))?;
        conn.batch_execute(&session_settings(&config))
            .await
            .map_err(|e| ConnectionError::BadConnection(e.to_string()))?;
        Ok(conn)
    })
    .await
    .map_err(|_| ConnectionError::BadConnection(format!("connecting timed out after {timeout:?}")))?
}

/// Runs `f` on `conn` and waits at most `limit` for it.
///
/// Invariant: a connection whose query ran out of time never returns to the pool. Its
/// answer may still arrive (or never, from a hung server), so it is detached from the
/// pool and closed, and the caller gets [`DbError::Timeout`].
pub(crate) async fn within<T>(
    limit: Duration,
    mut conn: PooledConnection,
    f: impl AsyncFnOnce(&mut AsyncPgConnection) -> Result<T>,
) -> Result<T> {
    let outcome = tokio::time::timeout(limit, f(&mut conn)).await;
    match outcome {
        Ok(result) => result,
        Err(_) => {
            drop(Object::take(conn));
            Err(DbError::Timeout(limit))
        }
    }
}

/// The `SET` statements applied to every new connection.
fn session_settings(config: &PoolConfig) -> String {
    let app = config.application_name.replace(['\'', '\\'], "");
    format!(
        "SET statement_timeout = {}; SET application_name = '{app}'",
        config.statement_timeout.as_millis()
    )
}
