//! [`DbClient`]: the cached, health-checked read side of an instance (DESIGN §5).

mod caches;
mod config;
mod health;
mod tail;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::value::RawValue;
use tidemark_shared_types::{IndexingStatus, PublicConfig, RealtimeProjection, SchemaName};
use tokio::sync::broadcast;
use tokio_util::sync::{CancellationToken, DropGuard};

pub use self::caches::IncompatibleConfigTransition;
use self::caches::{
    ConfigCache, ConfigState, EpochCache, Shared, StatusCache, StatusState, fetch_config,
    fetch_epoch_summaries, fetch_status,
};
pub use self::config::DbClientConfig;
pub use self::health::{Health, Reason};
use crate::children::{ChildPage, ChildQuery, query_children_counted};
use crate::epochs::{EpochPage, EpochQuery, EpochSummaries, query_epochs_counted};
use crate::error::{DbError, Result};
use crate::events::{EventPage, EventQuery, parse_args, query_events_counted};
use crate::pool::{PgPool, PoolConfig};
use crate::swr::{Lookup, Swr, SwrOptions};

/// A reader of one Tidemark instance: the public config and the status snapshot,
/// cached stale-while-revalidate and checked for compatibility, the reader's health, event
/// and epoch queries, and a cached per-chain epoch summary.
///
/// Building a client never touches the network, so it never fails because the database
/// is down: background tasks keep retrying (with backoff) until it answers. The cached
/// reads ([`DbClient::public_config`], [`DbClient::indexing_status`],
/// [`DbClient::realtime_projection`], [`DbClient::health`], [`DbClient::status_parts`],
/// [`DbClient::epoch_summary`]) are synchronous: they return the cached values or a
/// [`Reason`] at once, never waiting for the database. [`DbClient::events`] and
/// [`DbClient::epochs`] query it.
///
/// Cheap to clone; clones share the caches. The background tasks stop when the last
/// clone is dropped or [`DbClient::shutdown`] is called.
///
/// ```no_run
/// # async fn demo() -> Result<(), tidemark_db_client::DbError> {
/// use tidemark_db_client::{DbClient, DbClientConfig};
///
/// let db = DbClient::new(DbClientConfig::new("postgres://localhost/tidemark", "tidemark_demo"))?;
/// db.first_load().await;
/// match db.indexing_status() {
///     Ok(status) => println!("{:?}", status.omnichain_snapshot.omnichain_status),
///     Err(reason) => println!("not ready: {reason}"),
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct DbClient {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    config: ConfigCache,
    status: StatusCache,
    epochs: EpochCache,
    cancel: CancellationToken,
    _stop_on_drop: DropGuard,
}

impl std::fmt::Debug for DbClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbClient")
            .field("schema", &self.inner.shared.schema)
            .field("pool", &self.inner.shared.pool)
            .finish_non_exhaustive()
    }
}

impl DbClient {
    /// Builds a client and starts warming its caches in the background.
    ///
    /// Fails only on bad settings — an invalid schema name ([`DbError::InvalidSchema`],
    /// before any SQL), an unusable pool configuration, or no Tokio runtime
    /// ([`DbError::Config`]) — never because the database is down.
    ///
    /// ```
    /// use tidemark_db_client::{DbClient, DbClientConfig, Reason};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tidemark_db_client::DbError> {
    /// // Nothing listens on port 1: the client is built all the same, and says why it
    /// // cannot serve yet.
    /// let db = DbClient::new(DbClientConfig::new("postgres://127.0.0.1:1/app", "tidemark_demo"))?;
    /// assert_eq!(db.health().reasons, [Reason::DatabaseUnreachable]);
    /// assert_eq!(db.public_config().err(), Some(Reason::DatabaseUnreachable));
    ///
    /// // A bad schema name is refused before any SQL.
    /// let bad = DbClient::new(DbClientConfig::new("postgres://127.0.0.1:1/app", "Not-A-Schema"));
    /// assert!(bad.is_err_and(|e| e.is_invalid_input()));
    /// # Ok(()) }
    /// ```
    pub fn new(config: DbClientConfig) -> Result<Self> {
        let schema = SchemaName::new(config.schema.clone())?;
        tokio::runtime::Handle::try_current()
            .map_err(|_| DbError::Config("DbClient::new must be called inside a Tokio runtime".into()))?;
        let pool = PgPool::new(config.pool.clone())?;
        let refresh_pool = PgPool::new(PoolConfig { max_size: 1, ..config.pool.clone() })?;
        let shared = Arc::new(Shared::new(schema, pool, refresh_pool, config.clone()));
        let cancel = CancellationToken::new();

        let config_cache: ConfigCache = {
            let shared = shared.clone();
            let options = SwrOptions {
                fresh_for: config.config_refresh,
                refresh_every: config.config_refresh,
                refresh_every_while_empty: config.config_refresh_while_missing,
                retry_min: Duration::from_millis(100).min(config.retry_max),
                retry_max: config.retry_max,
            };
            Swr::with_empty_check(
                "public_config",
                options,
                cancel.clone(),
                |state: &ConfigState| state.current.is_none(),
                move |previous| {
                    let shared = shared.clone();
                    async move { fetch_config(&shared, previous).await }
                },
            )
        };
        let status_cache: StatusCache = {
            let shared = shared.clone();
            let config_cache = config_cache.clone();
            let options = SwrOptions {
                retry_min: Duration::from_millis(100).min(config.retry_max),
                retry_max: config.retry_max,
                ..SwrOptions::every(config.status_refresh)
            };
            Swr::new("indexing_status", options, cancel.clone(), move |previous| {
                let shared = shared.clone();
                let config_cache = config_cache.clone();
                async move { fetch_status(&shared, &config_cache, previous).await }
            })
        };
        let epoch_cache: EpochCache = {
            let shared = shared.clone();
            let options = SwrOptions {
                retry_min: Duration::from_millis(100).min(config.retry_max),
                retry_max: config.retry_max,
                ..SwrOptions::every(config.epoch_summary_refresh)
            };
            Swr::new("epoch_summary", options, cancel.clone(), move |_previous| {
                let shared = shared.clone();
                async move { fetch_epoch_summaries(&shared).await }
            })
        };
        Ok(Self {
            inner: Arc::new(Inner {
                shared,
                config: config_cache,
                status: status_cache,
                epochs: epoch_cache,
                _stop_on_drop: cancel.clone().drop_guard(),
                cancel,
            }),
        })
    }

    /// The instance schema this client reads.
    pub fn schema(&self) -> &SchemaName {
        &self.inner.shared.schema
    }

    /// The settings the client was built with.
    pub fn settings(&self) -> &DbClientConfig {
        &self.inner.shared.settings
    }

    /// Waits until the first read of the config, of the status and of the epoch summary
    /// has completed, successfully or not (or the client is shut down). Useful for one-shot
    /// programs; servers need not wait.
    pub async fn first_load(&self) {
        self.inner.config.first_attempt().await;
        self.inner.status.first_attempt().await;
        self.inner.epochs.first_attempt().await;
    }

    /// The cached public config (stale-while-revalidate: returns at once).
    ///
    /// Errors: [`Reason::Uninitialized`] when the database holds no config for the
    /// instance, [`Reason::DatabaseUnreachable`] when none could be read yet.
    pub fn public_config(&self) -> std::result::Result<Arc<PublicConfig>, Reason> {
        self.config_now(&self.inner.config.get())
    }

    /// The cached status snapshot (stale-while-revalidate: returns at once), served only
    /// when its chain ids equal the cached config's.
    ///
    /// Errors: those of [`DbClient::public_config`], then [`Reason::NoStatus`] when no
    /// snapshot is stored and [`Reason::Incompatible`] when the stored one does not
    /// describe the config's chains (it is rejected and logged, never served).
    pub fn indexing_status(&self) -> std::result::Result<Arc<IndexingStatus>, Reason> {
        self.view().map(|v| v.status)
    }

    /// Now, in unix seconds on the database clock (as of the last status read, advanced
    /// by this host's monotonic clock since), while a compatible status is cached. The
    /// clock to pass to [`DbClient::realtime_projection`]: the indexer's timestamps and
    /// the staleness verdict are on the database's side, not this host's.
    pub fn database_now(&self) -> Option<u64> {
        self.view().ok().map(|v| v.database_now)
    }

    /// The cached status projected to `now` (unix seconds): `worstCaseDistance` is how
    /// far behind `now` the slowest chain is.
    pub fn realtime_projection(&self, now: u64) -> std::result::Result<RealtimeProjection, Reason> {
        let status = self.indexing_status()?;
        Ok(RealtimeProjection::project(IndexingStatus::clone(&status), now))
    }

    /// The reader's health: healthy iff the database answered within
    /// [`DbClientConfig::unreachable_after`] (10 s), a config and a status are cached,
    /// and they are compatible. Warns `status-stale` when the cached snapshot is older
    /// than [`DbClientConfig::status_stale_after`] (30 s) by the database clock, and
    /// `chain-stalled:<chainId>` for each chain the indexer reports stalled.
    /// Never waits for the database.
    ///
    /// ```no_run
    /// # fn demo(db: &tidemark_db_client::DbClient) {
    /// let health = db.health();
    /// if !health.healthy {
    ///     // e.g. ["database-unreachable"] or ["uninitialized"]
    ///     eprintln!("unhealthy: {:?}", health.reasons.iter().map(|r| r.code()).collect::<Vec<_>>());
    /// }
    /// # }
    /// ```
    pub fn health(&self) -> Health {
        self.health_of(&self.view())
    }

    fn health_of(&self, view: &std::result::Result<View, Reason>) -> Health {
        let mut reasons = Vec::new();
        let mut warnings = Vec::new();
        let reachable = self
            .inner
            .shared
            .since_last_answer()
            .is_some_and(|since| since < self.inner.shared.settings.unreachable_after);
        if !reachable {
            reasons.push(Reason::DatabaseUnreachable);
        }
        match view {
            Ok(view) => {
                if view.age >= self.inner.shared.settings.status_stale_after {
                    warnings.push(Reason::StatusStale);
                }
                warnings.extend(
                    view.status
                        .omnichain_snapshot
                        .chains
                        .iter()
                        .filter(|(_, chain)| chain.stalled().is_some())
                        .map(|(id, _)| Reason::ChainStalled(*id)),
                );
                if view.status.index_build.as_ref().is_some_and(|b| b.is_pending()) {
                    warnings.push(Reason::IndexesBuilding);
                }
                if view.status.omnichain_snapshot.chains.values().any(|c| !c.sources().is_empty()) {
                    warnings.push(Reason::BackfillingSources);
                }
            }
            Err(reason) => {
                if !reasons.contains(reason) {
                    reasons.push(*reason);
                }
            }
        }
        Health::from_parts(reasons, warnings)
    }

    /// Everything a status page serves, read from the caches in one pass (one read of
    /// each cache, so the parts describe the same moment): the config, the status, the
    /// epoch summary and the health. Fails with the [`Health`] (whose `reasons` say why)
    /// when no compatible config and status are cached. Never waits for the database.
    pub fn status_parts(&self) -> std::result::Result<StatusParts, Health> {
        let config = self.inner.config.get();
        let status = self.inner.status.get();
        let view = self.view_of(&config, &status);
        let health = self.health_of(&view);
        match view {
            Ok(view) => Ok(StatusParts {
                config: view.config,
                status: view.status,
                epochs: self.inner.epochs.get().value,
                health,
                database_now: view.database_now,
            }),
            Err(_) => Err(health),
        }
    }

    /// `health().healthy`.
    pub fn is_healthy(&self) -> bool {
        self.health().healthy
    }

    /// Reads one page of events (keyset pagination by cursor: pass the page's
    /// `next_cursor` as the next query's `after`). `finalized` is derived from the
    /// cached config and status. A missing instance table reads as an empty page.
    ///
    /// It queries the database each time; it fails with [`DbError`] when the database
    /// does not answer within the pool's timeouts ([`DbError::is_unavailable`],
    /// [`DbError::is_timeout`]) and, before any SQL, when the filters have no index to
    /// serve them ([`EventQuery::check_indexed`]).
    ///
    /// ```no_run
    /// # async fn demo(db: tidemark_db_client::DbClient) -> Result<(), tidemark_db_client::DbError> {
    /// use tidemark_db_client::{EventQuery, Limit};
    ///
    /// // Every `Transfer` of `Token` on chain 1, 500 per page, oldest first.
    /// let mut query = EventQuery {
    ///     chain_id: Some(1),
    ///     contract: Some("Token".into()),
    ///     event: Some("Transfer".into()),
    ///     limit: Limit::new(500).unwrap_or_default(),
    ///     ..EventQuery::default()
    /// };
    /// loop {
    ///     let page = db.events(&query).await?;
    ///     for e in &page.items {
    ///         println!("{} block {} {} final: {}", e.cursor, e.block_number, e.args, e.finalized);
    ///     }
    ///     match page.next_cursor {
    ///         Some(cursor) => query.after = Some(cursor),
    ///         None => break,
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn events(&self, query: &EventQuery) -> Result<EventPage> {
        parse_args(self.events_raw(query).await?)
    }

    /// [`DbClient::events`] with each event's arguments as the stored JSON text: for
    /// servers that pass them on as they are (no parsing and re-encoding per request).
    pub async fn events_raw(&self, query: &EventQuery) -> Result<EventPage<Box<RawValue>>> {
        let finality = self.finality();
        let shared = &self.inner.shared;
        let read = shared.page_read(&finality);
        let conn = shared.pool.get().await;
        shared.timed(conn, async |c| query_events_counted(c, &read, query).await).await
    }

    /// Reads one page of a factory contract's children, oldest first (by creating block
    /// and log index): the addresses its factory created, with the creating log. A missing
    /// instance table reads as an empty page. Queries the database each time (one
    /// statement); fails with [`DbError::InvalidQuery`] when `page` is 0 or `size` is not
    /// within 1..=1000.
    pub async fn children(&self, query: &ChildQuery) -> Result<ChildPage> {
        query.validate()?;
        let shared = &self.inner.shared;
        let timeout = shared.settings.pool.statement_timeout;
        let conn = shared.pool.get().await;
        shared
            .timed(conn, async |c| {
                query_children_counted(c, &shared.schema, query, Some(&shared.queries), timeout).await
            })
            .await
    }

    /// Reads one page of epochs, newest first: by `epoch_id` descending, then `chain_id`
    /// ascending (newest first within a chain, chains interleaved by id). `total` counts
    /// every matching epoch and `pages` is `ceil(total / size)`; a page past the last one
    /// has no items. A missing instance table reads as an empty page.
    ///
    /// Queries the database each time (one statement). Fails with
    /// [`DbError::InvalidQuery`] when `page` is 0 or `size` is not within 1..=100 (before
    /// any SQL), and with [`DbError`] when the database does not answer.
    pub async fn epochs(&self, query: &EpochQuery) -> Result<EpochPage> {
        query.validate()?;
        let shared = &self.inner.shared;
        let timeout = shared.settings.pool.statement_timeout;
        let conn = shared.pool.get().await;
        shared
            .timed(conn, async |c| {
                query_epochs_counted(c, &shared.schema, query, Some(&shared.queries), timeout).await
            })
            .await
    }

    /// The cached epoch summary per chain id: each chain's latest epoch and how many of
    /// its epochs are neither finalized nor reorged. Re-read in the background every
    /// [`DbClientConfig::epoch_summary_refresh`] (1 s): returns at once and never queries
    /// the database itself.
    ///
    /// `None` until the first read succeeds; an empty map while the instance has no
    /// epochs (or no epochs table yet). After a failed read the last good summary stays.
    pub fn epoch_summary(&self) -> Option<Arc<EpochSummaries>> {
        self.inner.epochs.get().value
    }

    /// Subscribes to incompatible config transitions: each time the stored public config
    /// is replaced by one incompatible with the last config this client saw (also across
    /// a deleted row), every subscriber receives an [`IncompatibleConfigTransition`].
    /// The transition carries the new config; the cache holds it a moment later (the
    /// event is raised while the new value is being stored). Subscribe right after [`DbClient::new`]:
    /// the first config read cannot be a transition, so nothing is missed.
    pub fn subscribe_incompatible_transitions(&self) -> broadcast::Receiver<IncompatibleConfigTransition> {
        self.inner.shared.transitions.subscribe()
    }

    /// The query pool's connections right now (the background refresh has one of its own).
    pub fn pool_usage(&self) -> crate::pool::PoolUsage {
        self.inner.shared.pool.usage()
    }

    /// The number of SQL statements this client has sent to the database (cache reads,
    /// event and epoch queries), for metrics and tests.
    pub fn queries_executed(&self) -> u64 {
        self.inner.shared.queries.load(Ordering::Relaxed)
    }

    /// Stops the background revalidation of every clone of this client. Cached values
    /// stay readable but no longer change; [`DbClient::events`] and [`DbClient::epochs`]
    /// still work.
    pub fn shutdown(&self) {
        self.inner.cancel.cancel();
    }

    fn config_now(
        &self,
        lookup: &Lookup<ConfigState, DbError>,
    ) -> std::result::Result<Arc<PublicConfig>, Reason> {
        match &lookup.value {
            Some(state) => state.current.clone().ok_or(Reason::Uninitialized),
            None => Err(missing(lookup, Reason::Uninitialized)),
        }
    }

    /// The cached config and status, when both are present and compatible.
    fn view(&self) -> std::result::Result<View, Reason> {
        self.view_of(&self.inner.config.get(), &self.inner.status.get())
    }

    fn view_of(
        &self,
        config: &Lookup<ConfigState, DbError>,
        lookup: &Lookup<StatusState, DbError>,
    ) -> std::result::Result<View, Reason> {
        let config = self.config_now(config)?;
        match lookup.value.as_deref() {
            None => Err(missing(lookup, Reason::NoStatus)),
            Some(StatusState::Missing) => Err(Reason::NoStatus),
            Some(StatusState::Rejected { .. }) => Err(Reason::Incompatible),
            Some(StatusState::Present { status, age_secs, read_at, .. }) => {
                if !status.fits(&config) {
                    return Err(Reason::Incompatible);
                }
                let since_read = lookup.age.unwrap_or_default();
                let age = Duration::try_from_secs_f64(age_secs.max(0.0)).unwrap_or(Duration::MAX);
                // The database clock now: as read, plus the time passed since on this
                // host's monotonic clock (never its wall clock, which may be skewed).
                let database_now = (read_at + since_read.as_secs_f64()).max(0.0) as u64;
                Ok(View { config, status: status.clone(), age: age.saturating_add(since_read), database_now })
            }
        }
    }
}

/// The cached config and status (compatible) with the status's current age by the
/// database clock.
struct View {
    config: Arc<PublicConfig>,
    status: Arc<IndexingStatus>,
    age: Duration,
    /// Unix seconds on the database clock.
    database_now: u64,
}

/// What [`DbClient::status_parts`] read: a compatible config and status, the epoch
/// summary (`None` until first read) and the health of the same read (its `warnings`,
/// such as `status-stale`, apply to this status).
#[derive(Debug, Clone)]
pub struct StatusParts {
    /// The cached public config.
    pub config: Arc<PublicConfig>,
    /// The cached status snapshot, whose chains are the config's.
    pub status: Arc<IndexingStatus>,
    /// The cached per-chain epoch summary.
    pub epochs: Option<Arc<EpochSummaries>>,
    /// The reader's health at this read (`reasons` may name `database-unreachable`
    /// while the cached values are still served).
    pub health: Health,
    /// Now, in unix seconds on the database clock: the clock to project the status to
    /// (staleness is judged on it too), so a skewed host clock changes no verdict.
    pub database_now: u64,
}

/// The reason for a cache that holds no value: the database could not be read yet, or
/// it answered something unusable (`otherwise`).
fn missing<T>(lookup: &Lookup<T, DbError>, otherwise: Reason) -> Reason {
    match &lookup.error {
        _ if !lookup.attempted => Reason::DatabaseUnreachable,
        Some(e) if e.is_unavailable() => Reason::DatabaseUnreachable,
        _ => otherwise,
    }
}
