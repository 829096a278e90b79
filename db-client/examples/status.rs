//! A small third-party application built on `tidemark-db-client`: prints an instance's
//! health, status, epochs and latest events, reading the database only (never the indexer).
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!     cargo run -p tidemark-db-client --example status -- tidemark_demo
//! ```

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use tidemark_db_client::{DbClient, DbClientConfig, EpochQuery, EventQuery, Limit};

#[tokio::main]
async fn main() -> ExitCode {
    let Ok(database_url) = std::env::var("DATABASE_URL") else {
        eprintln!("set DATABASE_URL");
        return ExitCode::from(2);
    };
    let schema = std::env::args().nth(1).unwrap_or_else(|| "tidemark_demo".to_owned());

    // Lazy: fails only on bad settings (e.g. an invalid schema name), never because the
    // database is down.
    let db = match DbClient::new(DbClientConfig::new(database_url, schema)) {
        Ok(db) => db,
        Err(e) => {
            eprintln!("invalid settings: {e}");
            return ExitCode::from(2);
        }
    };
    // A one-shot program waits for the first reads; a server would not.
    db.first_load().await;

    let health = db.health();
    let codes =
        |list: &[tidemark_db_client::Reason]| list.iter().map(|r| r.code()).collect::<Vec<_>>().join(", ");
    println!(
        "healthy: {} (reasons: [{}], warnings: [{}])",
        health.healthy,
        codes(&health.reasons),
        codes(&health.warnings)
    );

    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    match db.realtime_projection(now) {
        Ok(p) => {
            println!(
                "{:?}: everything up to {} is indexed ({} s behind)",
                p.snapshot.omnichain_snapshot.omnichain_status,
                p.snapshot.slowest_chain_indexing_cursor,
                p.worst_case_distance
            );
            for (chain, snapshot) in &p.snapshot.omnichain_snapshot.chains {
                let latest = snapshot.latest_indexed_block().map(|b| b.number);
                println!("  chain {chain}: latest indexed block {latest:?}");
            }
        }
        Err(reason) => println!("no status to show: {reason}"),
    }

    // Per chain: the latest epoch (batch) and how many are not finalized yet (cached).
    for (chain, summary) in db.epoch_summary().iter().flat_map(|s| s.iter()) {
        let latest = summary
            .latest
            .as_ref()
            .map(|e| format!("#{} [{}, {}] {}", e.epoch_id, e.from_block, e.to_block, e.stage));
        println!(
            "  chain {chain}: latest epoch {}, {} not finalized",
            latest.unwrap_or_else(|| "none".into()),
            summary.not_finalized
        );
    }
    // Epochs stored but not final yet, newest first (one query).
    let stored = EpochQuery {
        stage: Some(tidemark_db_client::types::EpochStage::Stored),
        size: 3,
        ..EpochQuery::default()
    };
    match db.epochs(&stored).await {
        Ok(page) => {
            let newest: Vec<String> =
                page.items.iter().map(|e| format!("{}#{}", e.chain_id, e.epoch_id)).collect();
            println!("{} epochs stored but not final yet (newest: {})", page.total, newest.join(", "));
        }
        Err(e) => println!("epochs unavailable: {e}"),
    }

    let query = EventQuery { limit: Limit::new(5).unwrap_or_default(), ..EventQuery::default() };
    match db.events(&query).await {
        Ok(page) => {
            for e in &page.items {
                println!(
                    "  #{} chain {} block {} {}.{}",
                    e.cursor, e.chain_id, e.block_number, e.contract, e.event
                );
            }
            if page.items.is_empty() {
                println!("no events yet");
            }
        }
        Err(e) => println!("events unavailable: {e}"),
    }
    if health.healthy { ExitCode::SUCCESS } else { ExitCode::from(1) }
}
