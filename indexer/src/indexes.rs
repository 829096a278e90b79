//! The deferred index build (docs/database.md, "Deferred indexes").
//!
//! A new instance starts without the secondary indexes of `events`
//! ([`Writer::defer_indexes`]), which makes its first backfill's bulk `COPY` cheaper.
//! Once every chain follows its head or has completed its range, [`build_when_backfilled`]
//! builds them one at a time with `CREATE INDEX CONCURRENTLY` on a connection of its own
//! (the writer's commits go on meanwhile), then records the build as done through the
//! writer. The pending record survives a restart: the next writer term resumes, dropping
//! and rebuilding what an interrupted build left invalid.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tidemark_db_client::writer::{DEFERRABLE, IndexBuilder, PgPool};
use tidemark_shared_types::{IndexBuild, IndexBuildState};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::progress::Progress;
use crate::store::Writer;

/// How often the chains' phases are checked while the build waits for the backfills (an
/// in-memory read).
const POLL: Duration = Duration::from_millis(50);

/// The number of deferrable indexes, as the status reports it.
fn total() -> u32 {
    u32::try_from(DEFERRABLE.len()).unwrap_or(u32::MAX)
}

/// The build's state before it starts: `deferred`, with `built` of the indexes already
/// valid (a resumed build).
pub fn deferred(built: usize) -> IndexBuild {
    IndexBuild {
        state: IndexBuildState::Deferred,
        built: u32::try_from(built).unwrap_or(u32::MAX),
        total: total(),
        current: None,
    }
}

/// Waits until every chain has finished its backfill, then builds the deferred indexes
/// and records the build as done; returns at once when `token` is cancelled. A failed
/// attempt is logged and tried again (with backoff): a build never ends the writer term,
/// and the API answers meanwhile, only slower on filtered pages.
pub async fn build_when_backfilled(
    writer: Arc<Mutex<Writer>>,
    pool: PgPool,
    progress: Progress,
    token: CancellationToken,
) {
    loop {
        if progress.backfills_done() {
            break;
        }
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(POLL) => {}
        }
    }
    let mut backoff = Duration::from_secs(1);
    loop {
        match attempt(&writer, &pool, &progress, &token).await {
            Ok(()) => return,
            Err(e) => {
                if token.is_cancelled() {
                    return;
                }
                tracing::warn!(target: "tidemark::indexes", error = %e, retry_in_ms = backoff.as_millis() as u64,
                    "building the deferred indexes failed; retrying");
                progress.set_index_build(progress.index_build().map(|b| IndexBuild {
                    state: IndexBuildState::Deferred,
                    current: None,
                    ..b
                }));
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// One attempt: build every missing or invalid index, then record the build as done.
async fn attempt(
    writer: &Mutex<Writer>,
    pool: &PgPool,
    progress: &Progress,
    token: &CancellationToken,
) -> tidemark_db_client::Result<()> {
    let builder: IndexBuilder = writer.lock().await.index_builder(pool).await?;
    let to_build = builder.to_build().await?;
    let total = total();
    let already = DEFERRABLE.len() - to_build.len();
    let m = to_build.len();
    tracing::info!(target: "tidemark::indexes", to_build = m, total, "every chain finished its backfill; building the deferred indexes");
    let started = Instant::now();
    for (i, index) in to_build.iter().enumerate() {
        progress.set_index_build(Some(IndexBuild {
            state: IndexBuildState::Building,
            built: u32::try_from(already + i).unwrap_or(u32::MAX),
            total,
            current: Some(index.name.to_owned()),
        }));
        let t = Instant::now();
        tokio::select! {
            // Dropping the builder closes its connection: the server abandons the build
            // (within a second), leaving an invalid index the next attempt rebuilds.
            _ = token.cancelled() => return Ok(()),
            r = builder.build(index) => r?,
        }
        tracing::info!(target: "tidemark::indexes", index = index.name, seconds = t.elapsed().as_secs_f64(),
            n = i + 1, m, "index built");
    }
    drop(builder);
    writer.lock().await.finish_index_build().await?;
    progress.set_index_build(Some(IndexBuild {
        state: IndexBuildState::Done,
        built: total,
        total,
        current: None,
    }));
    tracing::info!(target: "tidemark::indexes", built = m, seconds = started.elapsed().as_secs_f64(),
        "deferred indexes built");
    Ok(())
}
