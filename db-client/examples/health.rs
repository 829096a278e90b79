//! Watches an instance's health from its database, printing each change until Ctrl-C —
//! what a supervisor or a dashboard would do with [`DbClient::health`]:
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!     cargo run -p tidemark-db-client --example health -- tidemark_demo
//! ```
//!
//! Stop the indexer and `status-stale` appears after 30 s; stop the database and
//! `database-unreachable` appears after 10 s, while the last status is still served.

use std::time::Duration;

use tidemark_db_client::{DbClient, DbClientConfig, Health, Reason};

fn codes(reasons: &[Reason]) -> String {
    reasons.iter().map(|r| r.code()).collect::<Vec<_>>().join(", ")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL").map_err(|_| "set DATABASE_URL")?;
    let schema = std::env::args().nth(1).unwrap_or_else(|| "tidemark_demo".to_owned());
    let db = DbClient::new(DbClientConfig::new(url, schema))?;
    // A stored config replaced by an incompatible one: data indexed before does not
    // describe it (the API exits with code 3 on this).
    let mut transitions = db.subscribe_incompatible_transitions();

    let mut last: Option<Health> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            Ok(t) = transitions.recv() => println!("incompatible config: {t}"),
            _ = tick.tick() => {}
        }
        // From the cache: no query, so polling it often costs nothing.
        let health = db.health();
        if last.as_ref() != Some(&health) {
            let cursor = db.indexing_status().map(|s| s.slowest_chain_indexing_cursor);
            println!(
                "healthy: {} reasons: [{}] warnings: [{}] indexed up to: {cursor:?}",
                health.healthy,
                codes(&health.reasons),
                codes(&health.warnings)
            );
            last = Some(health);
        }
    }
    db.shutdown();
    Ok(())
}
