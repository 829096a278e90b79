//! The database pool's usage as gauges, the same names and labels in every service
//! (docs/metrics.md): `tidemark_db_pool_connections{pool, state="in_use"|"idle"}`,
//! `tidemark_db_pool_max_connections{pool}` and `tidemark_db_pool_waiting{pool}`.

/// Sets the gauges of pool `pool` in the recorder in scope: at most `max` connections,
/// `open` of them open, `idle` of those not checked out, `waiting` tasks waiting for one.
pub fn record_pool_usage(pool: &'static str, max: usize, open: usize, idle: usize, waiting: usize) {
    let in_use = open.saturating_sub(idle);
    metrics::gauge!("tidemark_db_pool_connections", "pool" => pool, "state" => "in_use").set(in_use as f64);
    metrics::gauge!("tidemark_db_pool_connections", "pool" => pool, "state" => "idle").set(idle as f64);
    metrics::gauge!("tidemark_db_pool_max_connections", "pool" => pool).set(max as f64);
    metrics::gauge!("tidemark_db_pool_waiting", "pool" => pool).set(waiting as f64);
}
