//! Settings of a [`DbClient`](crate::DbClient).

use std::time::Duration;

use crate::pool::PoolConfig;

/// Settings of a [`DbClient`](crate::DbClient). [`DbClientConfig::new`] gives the
/// defaults of DESIGN §5; every field may be changed before building the client.
#[derive(Debug, Clone)]
pub struct DbClientConfig {
    /// Connection pool settings, including the database URL and the `statement_timeout`
    /// (default 5 s) that every query carries.
    pub pool: PoolConfig,
    /// The instance schema to read, e.g. `tidemark_demo`. Validated by
    /// [`DbClient::new`](crate::DbClient::new) before any SQL runs.
    pub schema: String,
    /// How often the cached public config is re-read while one is cached. Default 60 s.
    pub config_refresh: Duration,
    /// How often the public config is re-read while none is stored. Default 1 s.
    pub config_refresh_while_missing: Duration,
    /// How often the status snapshot is re-read. Default 1 s.
    pub status_refresh: Duration,
    /// How often the per-chain epoch summary is re-read. Default 1 s.
    pub epoch_summary_refresh: Duration,
    /// A snapshot older than this (by the database clock) raises the `status-stale`
    /// warning. Default 30 s.
    pub status_stale_after: Duration,
    /// The database counts as unreachable when it has not answered for this long.
    /// Default 10 s.
    pub unreachable_after: Duration,
    /// Longest delay between retries while the database fails; retries start after
    /// 100 ms and double up to this. Default 5 s.
    pub retry_max: Duration,
    /// How often a [`subscribe`](crate::DbClient::subscribe) stream reads the journal when
    /// no notification arrives (a missed one, or none at all on a read replica). Default
    /// 1 s.
    pub journal_poll: Duration,
}

impl DbClientConfig {
    /// The default settings for reading instance `schema` from `database_url`.
    pub fn new(database_url: impl Into<String>, schema: impl Into<String>) -> Self {
        let mut pool = PoolConfig::new(database_url);
        pool.application_name = "tidemark-db-client".into();
        Self {
            pool,
            schema: schema.into(),
            config_refresh: Duration::from_secs(60),
            config_refresh_while_missing: Duration::from_secs(1),
            status_refresh: Duration::from_secs(1),
            epoch_summary_refresh: Duration::from_secs(1),
            status_stale_after: Duration::from_secs(30),
            unreachable_after: Duration::from_secs(10),
            retry_max: Duration::from_secs(5),
            journal_poll: Duration::from_secs(1),
        }
    }
}
