//! The indexer's lifecycle (DESIGN §7 "Start-up", "Shutdown").
//!
//! Start the HTTP server and progress log, migrate, check the stored config, then loop
//! over *writer terms*: take the instance's writer lock (waiting as a standby while
//! another process holds it), store or check the public config, and run the status loop
//! and one pipeline per chain until shutdown or a database failure. After a failure the
//! lock may be gone, so everything restarts from the lock, and from the checkpoints.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tidemark_db_client::PoolConfig;
use tidemark_db_client::writer::{PgPool, probe_session_pinning, run_migrations, stored_public_config};
use tidemark_shared_types::{Incompatibility, PublicConfig, SourceBackfill, added_sources, check_compatible};
use tokio::sync::Mutex;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::IndexerConfig;
use crate::epochs::Recorder;
use crate::http;
use crate::liveness::{Liveness, Role};
use crate::pipeline::{ChainPipeline, PipelineError};
use crate::progress::Progress;
use crate::rpc::ChainRpc;
use crate::status;
use crate::store::Writer;
use crate::telemetry::Metrics;

/// What every writer term shares.
struct Ctx<'a> {
    config: &'a IndexerConfig,
    public: &'a PublicConfig,
    pool: &'a PgPool,
    progress: &'a Progress,
    health: &'a Arc<Liveness>,
    summaries: &'a http::SharedSummaries,
    metrics: &'a Metrics,
    /// The sinks' journal reader (when sinks are configured).
    sink_reader: Option<&'a tidemark_db_client::DbClient>,
    /// Provider webhook ingestion (when a chain has webhooks).
    webhooks: Option<&'a Arc<crate::webhooks::Hub>>,
}

/// How long shutdown may take before tasks are abandoned.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(4500);

/// Runs the indexer until `shutdown`. Errors: [`crate::config::ConfigError`] (exit 2),
/// [`Incompatibility`] (exit 3), anything else (exit 1).
pub async fn run(config: IndexerConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let public = config.public();
    let mut pool_config = PoolConfig::new(config.database_url.clone());
    pool_config.application_name = "tidemark-indexer".into();
    // The webhook endpoints record deliveries through this pool too.
    pool_config.max_size = if config.chains.iter().any(|c| !c.webhooks.is_empty()) { 8 } else { 4 };
    // Building the pool only reads the URL's TLS settings and certificate files: its
    // errors are configuration errors (exit 2).
    let pool = PgPool::new(pool_config)
        .map_err(|e| crate::config::ConfigError::new("database_url", e.to_string()))?;
    let progress = Progress::new(config.chains.iter().map(|c| (c.chain_id, c.end_block())));
    for chain in &config.chains {
        progress.set_poll_interval(chain.chain_id, chain.poll_interval);
    }
    let health = Arc::new(Liveness::default());
    let metrics = Metrics::new();
    let tracker = TaskTracker::new();

    let listener = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("binding http.listen {}", config.http_listen))?;
    tracing::info!(target: "tidemark::http", addr = %config.http_listen, "indexer HTTP listening");
    let summaries = http::SharedSummaries::default();
    let webhooks = crate::webhooks::Hub::new(&config, pool.clone(), progress.clone(), metrics.clone());
    let http_state = http::HttpState {
        webhooks: webhooks.clone(),
        progress: progress.clone(),
        config: public.clone(),
        health: health.clone(),
        epochs: summaries.clone(),
        metrics: metrics.clone(),
        pool: Some(pool.clone()),
    };
    tracker.spawn(metrics.scope(http::serve(listener, http_state, shutdown.clone())));
    tracker.spawn(metrics.scope(crate::progress::log::log_progress(progress.clone(), shutdown.clone())));

    // A reader of the instance's own journal for the sinks, built once: its caches (the
    // config and status, for finality) warm up while the writer starts.
    let sink_reader = if config.sinks.is_empty() {
        None
    } else {
        let mut reader =
            tidemark_db_client::DbClientConfig::new(config.database_url.clone(), config.schema.as_str());
        reader.pool.application_name = "tidemark-indexer-sinks".into();
        reader.pool.max_size = config.sinks.len().clamp(2, 8);
        Some(tidemark_db_client::DbClient::new(reader).context("building the sinks' journal reader")?)
    };
    let ctx = Ctx {
        sink_reader: sink_reader.as_ref(),
        webhooks: webhooks.as_ref(),
        config: &config,
        public: &public,
        pool: &pool,
        progress: &progress,
        health: &health,
        summaries: &summaries,
        metrics: &metrics,
    };
    let result = metrics.scope(lifecycle(&ctx, &shutdown)).await;
    shutdown.cancel();
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait()).await.is_err() {
        tracing::warn!(target: "tidemark::run", "background tasks did not stop in time");
    }
    result
}

async fn lifecycle(ctx: &Ctx<'_>, shutdown: &CancellationToken) -> anyhow::Result<()> {
    let (config, public, pool, health) = (ctx.config, ctx.public, ctx.pool, ctx.health);
    // Before the migration lock: a session advisory lock is meaningless behind a pooler in
    // transaction mode, and the writer's fencing relies on one.
    let Some(probe) =
        with_db_retry("checking for a connection pooler", shutdown, health, || probe_session_pinning(pool))
            .await?
    else {
        return Ok(());
    };
    if probe.unpinned() {
        return Err(crate::config::ConfigError::new(
            "database_url",
            format!(
                "the database sessions are not pinned to server backends (backend pids {} then {} on one \
                 connection, {} on another): a pooler in transaction or statement mode (e.g. PgBouncer) is \
                 not supported for the indexer, whose writer lock is a session advisory lock; connect \
                 directly or through a pooler in session mode (docs/database.md, \"Connection poolers\")",
                probe.first, probe.first_again, probe.other
            ),
        )
        .into());
    }
    if with_db_retry("migrations", shutdown, health, || run_migrations(pool)).await?.is_none() {
        return Ok(());
    }
    // Fail fast, before waiting for the lock, when the stored config is incompatible.
    let Some(stored) = with_db_retry("reading the stored config", shutdown, health, || {
        stored_public_config(pool, &config.schema)
    })
    .await?
    else {
        return Ok(());
    };
    check_stored(stored.as_ref(), public)?;

    let mut backoff = Duration::from_millis(500);
    loop {
        let Some(writer) = acquire(pool, config, health, shutdown).await else { return Ok(()) };
        health.set_role(Role::Writer);
        match term(writer, ctx, shutdown).await {
            Ok(()) => return Ok(()),
            Err(TermError::Fatal(e)) => return Err(e),
            Err(TermError::Retry(e)) => {
                health.set_role(Role::Starting);
                tracing::error!(target: "tidemark::run", error = %e, retry_in_ms = backoff.as_millis() as u64, "writer term ended; re-taking the lock");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// The added sources still backfilling: those stored by an earlier run, and those that
/// `public` adds to the chains of `stored`, each from its contract's start block up to the
/// chain's checkpoint (a chain not indexed yet covers them with its own backfill).
async fn added_source_backfills(
    writer: &mut Writer,
    stored: Option<&PublicConfig>,
    public: &PublicConfig,
) -> tidemark_db_client::Result<Vec<SourceBackfill>> {
    let mut sources = writer.added_sources().await?;
    let Some(stored) = stored else { return Ok(sources) };
    for added in added_sources(stored, public) {
        let Some(checkpoint) = writer.checkpoint(added.chain_id).await? else { continue };
        let chain = public.chain(added.chain_id);
        let contract = chain.and_then(|c| c.contracts.iter().find(|k| k.name == added.contract));
        // A factory contract's children are discovered over its factory's range: one
        // created before the contract's own start block may emit events after it.
        let factory_start = contract
            .and_then(|k| k.factory.as_ref())
            .and_then(|f| chain.and_then(|c| c.contracts.iter().find(|k| k.name == f.contract)))
            .map(|f| f.start_block);
        let own_start = contract.map_or(0, |k| k.start_block);
        let from = factory_start.map_or(own_start, |f| f.min(own_start));
        if from > checkpoint.number {
            continue;
        }
        sources.push(SourceBackfill {
            source: added,
            from_block: from,
            to_block: checkpoint.number,
            next_block: from,
            discovered: false,
        });
    }
    Ok(sources)
}

fn check_stored(stored: Option<&PublicConfig>, public: &PublicConfig) -> Result<(), Incompatibility> {
    match stored {
        Some(s) => check_compatible(s, public),
        None => Ok(()),
    }
}

/// Retries `f` while the database is unreachable. `Ok(None)` on shutdown.
async fn with_db_retry<T, F, Fut>(
    what: &'static str,
    shutdown: &CancellationToken,
    health: &Liveness,
    f: F,
) -> anyhow::Result<Option<T>>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = tidemark_db_client::Result<T>>,
{
    let mut delay = Duration::from_millis(250);
    loop {
        match f().await {
            Ok(v) => {
                health.db_ok();
                return Ok(Some(v));
            }
            Err(e) if e.is_unavailable() => {
                tracing::warn!(target: "tidemark::run", step = what, error = %e, "database unavailable; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(anyhow::Error::new(e).context(what)),
        }
    }
}

/// Takes the writer lock, waiting as a standby while another process holds it.
async fn acquire(
    pool: &PgPool,
    config: &IndexerConfig,
    health: &Liveness,
    shutdown: &CancellationToken,
) -> Option<Writer> {
    let mut announced = false;
    loop {
        match Writer::try_acquire(pool, &config.schema).await {
            Ok(Some(w)) => {
                health.db_ok();
                tracing::info!(target: "tidemark::run", schema = %config.schema, "writer lock taken");
                return Some(w);
            }
            Ok(None) => {
                health.db_ok();
                health.set_role(Role::Standby);
                if !announced {
                    tracing::info!(target: "tidemark::run", schema = %config.schema, "another indexer holds the writer lock; standing by");
                    announced = true;
                }
            }
            Err(e) => {
                tracing::warn!(target: "tidemark::run", error = %e, "cannot take the writer lock; retrying")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

enum TermError {
    /// Ends the process (incompatible config, wrong chain).
    Fatal(anyhow::Error),
    /// Ends the term; the lock is re-taken.
    Retry(anyhow::Error),
}

impl From<tidemark_db_client::DbError> for TermError {
    fn from(e: tidemark_db_client::DbError) -> Self {
        Self::Retry(e.into())
    }
}

async fn term(mut writer: Writer, ctx: &Ctx<'_>, shutdown: &CancellationToken) -> Result<(), TermError> {
    let (config, public, pool, progress, health, summaries) =
        (ctx.config, ctx.public, ctx.pool, ctx.progress, ctx.health, ctx.summaries);
    let started = std::time::Instant::now();
    writer.ensure_instance_schema().await?;
    if started.elapsed() > std::time::Duration::from_secs(1) {
        // Typically an instance of an earlier layout rewritten in place (readers waited).
        tracing::info!(target: "tidemark::run", schema = %config.schema, seconds = started.elapsed().as_secs_f64(),
            "instance schema created or upgraded to the current layout");
    }
    if writer.defer_indexes().await? {
        tracing::info!(target: "tidemark::run", schema = %config.schema,
            "new instance: the secondary indexes of events are built once every chain has finished its backfill");
    }
    let build_pending = writer.index_build_pending().await?;
    if build_pending {
        let built = writer.valid_indexes().await?;
        progress.set_index_build(Some(crate::indexes::deferred(built)));
    }
    // Read again now that the lock is held: no other indexer can change it any more.
    let stored = stored_public_config(pool, &config.schema).await?;
    check_stored(stored.as_ref(), public).map_err(|e| TermError::Fatal(e.into()))?;
    // New instance: store; compatible: refresh versionInfo, and record what the config
    // adds to indexed chains with the config itself (one transaction).
    let sources = added_source_backfills(&mut writer, stored.as_ref(), public).await?;
    writer.write_public_config_with_sources(public, &sources).await?;
    for s in sources.iter().filter(|s| s.next_block == s.from_block) {
        let added = &s.source;
        tracing::info!(target: "tidemark::sources", chain_id = added.chain_id, contract = %added.contract,
            addresses = added.addresses.len(), events = added.events.len(), from = s.from_block, to = s.to_block,
            "source added: backfilling it up to where the chain was indexed");
    }
    if stored.is_none() {
        tracing::info!(target: "tidemark::run", schema = %config.schema, "public config stored");
    }

    let writer = Arc::new(Mutex::new(writer));
    let token = shutdown.child_token();
    let mut tasks: JoinSet<Result<(), TermError>> = JoinSet::new();
    {
        let (writer, progress, token, health) =
            (writer.clone(), progress.clone(), token.clone(), health.clone());
        tasks.spawn(ctx.metrics.scope(async move {
            status::status_loop(writer, progress, token, health).await;
            Ok(())
        }));
    }
    tasks.spawn(ctx.metrics.scope(watch_lock(writer.clone(), token.clone())));
    {
        let (writer, retention, token) = (writer.clone(), config.journal_retention, token.clone());
        let sinks = config.sinks.iter().map(|s| s.name.clone()).collect();
        tasks.spawn(ctx.metrics.scope(async move {
            crate::retention::prune_journal(writer, retention, sinks, token).await;
            Ok(())
        }));
    }
    if build_pending {
        let (writer, pool, progress, token) = (writer.clone(), pool.clone(), progress.clone(), token.clone());
        tasks.spawn(ctx.metrics.scope(async move {
            crate::indexes::build_when_backfilled(writer, pool, progress, token).await;
            Ok(())
        }));
    }
    if let Some(db) = ctx.sink_reader {
        let sink_ctx = crate::sinks::SinkContext {
            schema: config.schema.clone(),
            writer: writer.clone(),
            db: db.clone(),
            pool: pool.clone(),
            progress: progress.clone(),
            metrics: ctx.metrics.clone(),
        };
        let (sinks, token) = (config.sinks.clone(), token.clone());
        tasks.spawn(
            ctx.metrics.scope(async move {
                crate::sinks::run(sinks, sink_ctx, token).await.map_err(TermError::from)
            }),
        );
    }
    if let Some(hub) = ctx.webhooks {
        let (hub, writer, token) = (hub.clone(), writer.clone(), token.clone());
        tasks.spawn(ctx.metrics.scope(async move {
            crate::webhooks::intake::run(hub, writer, token).await.map_err(TermError::from)
        }));
    }
    let recorder = Recorder::new(
        writer.clone(),
        pool.clone(),
        config.schema.clone(),
        config.retain_epochs,
        config.record_epochs,
        summaries.clone(),
    );
    let mut chain_epochs = Vec::with_capacity(config.chains.len());
    for chain in &config.chains {
        let checkpoint = writer.lock().await.checkpoint(chain.chain_id).await?;
        chain_epochs.push(recorder.chain(chain.chain_id, checkpoint.map(|c| c.number)).await?);
    }
    {
        let (ids, token) = (config.chains.iter().map(|c| c.chain_id).collect(), token.clone());
        tasks.spawn(ctx.metrics.scope(async move {
            recorder.run(ids, token).await;
            Ok(())
        }));
    }
    for (chain, epochs) in config.chains.iter().zip(chain_epochs) {
        let rpc = ChainRpc::new(chain.chain_id, &chain.rpc_urls, chain.request_timeout)
            .map_err(|e| TermError::Fatal(e.into()))?;
        let mut pipeline =
            ChainPipeline::new(chain.clone(), rpc, writer.clone(), progress.clone(), token.clone(), epochs);
        pipeline.hints = ctx.webhooks.and_then(|h| h.hints(chain.chain_id));
        tasks.spawn(ctx.metrics.scope(async move {
            pipeline.run().await.map_err(|e| match e {
                PipelineError::Db(db) => TermError::Retry(db.into()),
                other => TermError::Retry(other.into()),
            })
        }));
    }

    // The first failure ends the term; shutdown ends it cleanly.
    let mut outcome = Ok(());
    while let Some(joined) = tasks.join_next().await {
        let r = joined.unwrap_or_else(|e| Err(TermError::Retry(anyhow::anyhow!("task panicked: {e}"))));
        if let Err(e) = r {
            if outcome.is_ok() {
                outcome = Err(e);
            }
            token.cancel();
        }
    }
    // The status loop's last write can precede a commit that was in flight at shutdown:
    // write once more now that every pipeline has stopped, so the final status is final.
    if outcome.is_ok() {
        status::write_once(&writer, progress, health).await;
    }
    outcome
}

/// Ends the term when the writer's connection dies or its lock is gone, even while idle.
async fn watch_lock(writer: Arc<Mutex<Writer>>, token: CancellationToken) -> Result<(), TermError> {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = token.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        let held = writer.lock().await.still_holds_lock().await?;
        if !held {
            return Err(TermError::Retry(anyhow::anyhow!("the writer lock is no longer held")));
        }
    }
}
