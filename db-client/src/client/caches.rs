//! What the client caches and how it re-reads it: the public config (with the
//! compatibility check of config transitions), the status snapshot (checked against
//! the cached config) and the per-chain epoch summary.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tidemark_shared_types::{Incompatibility, IndexingStatus, PublicConfig, SchemaName, check_compatible};
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::client::config::DbClientConfig;
use crate::epochs::{EpochSummaries, query_epoch_summaries_counted};
use crate::error::{DbError, Result};
use crate::events::types::EventTypes;
use crate::events::{Finality, PageRead};
use crate::metadata;
use crate::pool::{PgPool, PooledConnection, within};
use crate::swr::Swr;

const TARGET: &str = "tidemark_db_client::client";

/// A stored public config replaced by one that is not compatible with it (DESIGN §2):
/// data indexed under `previous` does not describe `current`. Readers that cannot
/// adapt (such as the API, which exits with code 3) subscribe to these with
/// [`DbClient::subscribe_incompatible_transitions`](crate::DbClient::subscribe_incompatible_transitions).
#[derive(Debug, Clone)]
pub struct IncompatibleConfigTransition {
    /// The config cached before.
    pub previous: Arc<PublicConfig>,
    /// The config now stored (and now cached).
    pub current: Arc<PublicConfig>,
    /// Every differing field, with the previous value as `stored` and the new one as
    /// `current`.
    pub incompatibility: Incompatibility,
}

impl std::fmt::Display for IncompatibleConfigTransition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.incompatibility.fmt(f)
    }
}

/// State shared by the client and its background tasks.
///
/// Invariant: the caches' re-reads never wait for a connection held by a request. They
/// run over `refresh_pool`, a pool of one connection of their own, so that slow event or
/// epoch queries filling `pool` (up to its `statement_timeout` each) cannot age the
/// cached status and config.
pub(crate) struct Shared {
    pub(crate) schema: SchemaName,
    /// Connections for requests (events, epochs) and for applications' own queries.
    pub(crate) pool: PgPool,
    /// The caches' one connection.
    pub(crate) refresh_pool: PgPool,
    pub(crate) settings: DbClientConfig,
    /// SQL statements sent to the database so far.
    pub(crate) queries: AtomicU64,
    /// When the database last answered (successfully or with an SQL error).
    last_answer: Mutex<Option<Instant>>,
    pub(crate) transitions: broadcast::Sender<IncompatibleConfigTransition>,
    /// The names of the event types, for event pages.
    pub(crate) event_types: EventTypes,
}

impl Shared {
    pub(crate) fn new(
        schema: SchemaName,
        pool: PgPool,
        refresh_pool: PgPool,
        settings: DbClientConfig,
    ) -> Self {
        Self {
            schema,
            pool,
            refresh_pool,
            settings,
            queries: AtomicU64::new(0),
            last_answer: Mutex::new(None),
            transitions: broadcast::Sender::new(16),
            event_types: EventTypes::default(),
        }
    }

    /// What reading an events page needs, with `finality`.
    pub(crate) fn page_read<'a>(&'a self, finality: &'a Finality) -> PageRead<'a> {
        PageRead {
            schema: &self.schema,
            finality,
            types: &self.event_types,
            queries: Some(&self.queries),
            statement_timeout: self.settings.pool.statement_timeout,
        }
    }

    /// Runs `f` on a connection of `pool` within the pool's query timeout, and records
    /// whether the database answered.
    ///
    /// Invariant: no database call of the client waits longer than the checkout timeout
    /// plus the query timeout, even when the server hangs without closing its sockets;
    /// the caches' single-flight re-reads therefore always end, and health sees the
    /// silence within [`DbClientConfig`]'s unreachable limit.
    pub(crate) async fn timed<T>(
        &self,
        conn: Result<PooledConnection>,
        f: impl AsyncFnOnce(&mut diesel_async::AsyncPgConnection) -> Result<T>,
    ) -> Result<T> {
        let result = within(self.settings.pool.query_timeout, self.observed(conn)?, f).await;
        match &result {
            Ok(_) => self.answered(),
            Err(e) => self.observe(e),
        }
        result
    }

    fn observed(&self, conn: Result<PooledConnection>) -> Result<PooledConnection> {
        if let Err(e) = &conn {
            self.observe(e);
        }
        conn
    }

    /// Records that the database answered now.
    pub(crate) fn answered(&self) {
        *self.last_answer.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }

    /// Records the outcome of a database call: any answer but "unreachable" is an answer.
    pub(crate) fn observe(&self, error: &DbError) {
        if !error.is_unavailable() {
            self.answered();
        }
    }

    pub(crate) fn count(&self, statements: u64) {
        self.queries.fetch_add(statements, Ordering::Relaxed);
    }

    /// How long ago the database last answered, if ever.
    pub(crate) fn since_last_answer(&self) -> Option<Duration> {
        self.last_answer.lock().unwrap_or_else(PoisonError::into_inner).map(|at| at.elapsed())
    }
}

/// The cached public config. `current` is what is stored now (`None`: the row is gone or
/// was never written); `last_seen` is the latest config ever read, kept so that a config
/// stored after a reset is still compared with the one before it.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConfigState {
    pub(crate) current: Option<Arc<PublicConfig>>,
    pub(crate) last_seen: Option<Arc<PublicConfig>>,
}

/// The cached status verdict.
#[derive(Debug, Clone)]
pub(crate) enum StatusState {
    /// No snapshot is stored.
    Missing,
    /// A snapshot whose chains are all chains of the cached config (or no config was
    /// cached to check it against; readers check again).
    Present {
        status: Arc<IndexingStatus>,
        /// Its age by the database clock when it was read.
        age_secs: f64,
        /// The database clock (unix seconds) when it was read.
        read_at: f64,
        /// Set while this snapshot is kept in place of a newer one that names a chain the
        /// cached config does not know (the config is being read again): since when.
        held_since: Option<std::time::Instant>,
    },
    /// A snapshot whose chain ids differ from the cached config's: not served.
    Rejected { status_chains: Vec<u64> },
}

pub(crate) type ConfigCache = Swr<ConfigState, DbError>;
pub(crate) type StatusCache = Swr<StatusState, DbError>;
pub(crate) type EpochCache = Swr<EpochSummaries, DbError>;

/// Re-reads the public config and raises an [`IncompatibleConfigTransition`] when it is
/// incompatible with the last one seen (`previous`).
pub(crate) async fn fetch_config(shared: &Shared, previous: Option<Arc<ConfigState>>) -> Result<ConfigState> {
    let conn = shared.refresh_pool.get().await;
    shared.count(2);
    let stored = shared.timed(conn, async |c| metadata::read_public_config(c, &shared.schema).await).await?;
    let had_current = previous.as_ref().is_some_and(|p| p.current.is_some());
    let last_seen = previous.and_then(|p| p.last_seen.clone());
    let Some(stored) = stored else {
        if had_current {
            tracing::warn!(target: TARGET, schema = %shared.schema,
                "the stored public config disappeared; uninitialized until a new one is stored");
        }
        return Ok(ConfigState { current: None, last_seen });
    };
    let new = stored.value;
    let current = match last_seen {
        Some(old) if *old == new => old,
        Some(old) => {
            let new = Arc::new(new);
            match check_compatible(&old, &new) {
                Ok(()) => tracing::info!(target: TARGET, schema = %shared.schema,
                    tidemark = %new.version_info.tidemark, "the stored public config changed compatibly"),
                Err(incompatibility) => {
                    for d in &incompatibility.diffs {
                        tracing::warn!(target: TARGET, schema = %shared.schema, field = %d.field,
                            previous = %d.stored, current = %d.current, "incompatible config field");
                    }
                    tracing::warn!(target: TARGET, schema = %shared.schema, %incompatibility,
                        "the stored public config was replaced by an incompatible one");
                    // Nobody listening is fine: the transition is also visible in health.
                    let _ = shared.transitions.send(IncompatibleConfigTransition {
                        previous: old,
                        current: new.clone(),
                        incompatibility,
                    });
                }
            }
            new
        }
        None => Arc::new(new),
    };
    Ok(ConfigState { current: Some(current.clone()), last_seen: Some(current) })
}

/// How long a snapshot is kept in place of a newer one naming a chain the cached config
/// does not know, while the config is read again.
const HOLD_WHILE_CONFIG_CHANGES: std::time::Duration = std::time::Duration::from_secs(10);

/// Re-reads the status snapshot and checks its chain ids against the cached config.
pub(crate) async fn fetch_status(
    shared: &Shared,
    config: &ConfigCache,
    previous: Option<Arc<StatusState>>,
) -> Result<StatusState> {
    let conn = shared.refresh_pool.get().await;
    shared.count(2);
    let read = shared.timed(conn, async |c| metadata::read_indexing_status(c, &shared.schema).await).await;
    let Some(stored) = read? else { return Ok(StatusState::Missing) };
    let status_chains = stored.value.chain_ids();
    let cached_config = config.peek().value.and_then(|c| c.current.clone());
    if let Some(cfg) = cached_config
        && !stored.value.fits(&cfg)
    {
        // The indexer runs a config with a chain added and stored it before this status:
        // the cached config is older. Keep serving the previous snapshot for a few
        // seconds while the config is read again, rather than turn unhealthy.
        if let Some(StatusState::Present { status, age_secs, read_at, held_since }) = previous.as_deref()
            && status.fits(&cfg)
            && held_since.is_none_or(|t| t.elapsed() < HOLD_WHILE_CONFIG_CHANGES)
        {
            config.trigger();
            // Its age by the database clock now, as just read.
            let now = stored.updated_at + stored.age_secs;
            return Ok(StatusState::Present {
                status: status.clone(),
                age_secs: age_secs + (now - read_at).max(0.0),
                read_at: now,
                held_since: Some(held_since.unwrap_or_else(std::time::Instant::now)),
            });
        }
        let known = matches!(previous.as_deref(),
            Some(StatusState::Rejected { status_chains: s }) if *s == status_chains);
        if !known {
            tracing::warn!(target: TARGET, schema = %shared.schema, status_chains = ?status_chains,
                config_chains = ?cfg.chain_ids(), "rejected a status whose chain ids differ from the config's");
        }
        // The config may have changed under the status: re-read it now.
        config.trigger();
        return Ok(StatusState::Rejected { status_chains });
    }
    if matches!(previous.as_deref(), Some(StatusState::Rejected { .. })) {
        tracing::info!(target: TARGET, schema = %shared.schema, "the status matches the config again");
    }
    Ok(StatusState::Present {
        status: Arc::new(stored.value),
        age_secs: stored.age_secs,
        read_at: stored.updated_at + stored.age_secs,
        held_since: None,
    })
}

/// Re-reads the per-chain epoch summary (no chains while the instance has no epochs
/// table yet).
pub(crate) async fn fetch_epoch_summaries(shared: &Shared) -> Result<EpochSummaries> {
    let conn = shared.refresh_pool.get().await;
    shared
        .timed(conn, async |c| query_epoch_summaries_counted(c, &shared.schema, Some(&shared.queries)).await)
        .await
}
