//! `tidemark-indexer reset`: drop the instance schema and its metadata rows.

use anyhow::Context;
use tidemark_db_client::PoolConfig;
use tidemark_db_client::writer::PgPool;

use crate::config::IndexerConfig;
use crate::store::Writer;

/// Drops the instance. Refuses while an indexer holds the writer lock.
pub async fn reset(config: &IndexerConfig) -> anyhow::Result<()> {
    let pool =
        PgPool::new(PoolConfig::new(config.database_url.clone())).context("building the database pool")?;
    let mut writer = Writer::try_acquire(&pool, &config.schema)
        .await
        .context("connecting to the database")?
        .ok_or_else(|| anyhow::anyhow!("an indexer is running on schema {}; stop it first", config.schema))?;
    writer.drop_instance().await.context("dropping the instance")?;
    tracing::info!(target: "tidemark::reset", schema = %config.schema, "instance schema and metadata dropped");
    Ok(())
}
