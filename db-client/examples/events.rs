//! Every event of one contract (and, optionally, one event name), page by page in cursor
//! order, as a third-party application would read them:
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!     cargo run -p tidemark-db-client --example events -- tidemark_demo Token Transfer
//! ```

use std::process::ExitCode;

use tidemark_db_client::{DbClient, DbClientConfig, EventQuery, Limit};

#[tokio::main]
async fn main() -> ExitCode {
    let (Ok(url), Some(schema), Some(contract)) =
        (std::env::var("DATABASE_URL"), std::env::args().nth(1), std::env::args().nth(2))
    else {
        eprintln!("usage: DATABASE_URL=… events <schema> <contract> [event]");
        return ExitCode::from(2);
    };
    let db = match DbClient::new(DbClientConfig::new(url, schema)) {
        Ok(db) => db,
        Err(e) => {
            eprintln!("invalid settings: {e}");
            return ExitCode::from(2);
        }
    };
    // `finalized` is judged from the cached config and status: wait for their first read.
    db.first_load().await;

    let mut query = EventQuery {
        contract: Some(contract),
        event: std::env::args().nth(3),
        limit: Limit::MAX,
        ..EventQuery::default()
    };
    let (mut events, mut pages) = (0, 0);
    loop {
        let page = match db.events(&query).await {
            Ok(page) => page,
            // Retry loops decide from the classification, never from the message.
            Err(e) if e.is_unavailable() || e.is_timeout() => {
                eprintln!("database unavailable ({e}); retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => {
                eprintln!("cannot read events: {e}");
                return ExitCode::from(1);
            }
        };
        pages += 1;
        for e in &page.items {
            events += 1;
            let finality = if e.finalized { "final" } else { "not final" };
            println!(
                "{} chain {} block {} {}.{} {} ({finality})",
                e.cursor, e.chain_id, e.block_number, e.contract, e.event, e.args
            );
        }
        // Keyset pagination: the next page starts after the last cursor of this one.
        match page.next_cursor {
            Some(cursor) => query.after = Some(cursor),
            None => break,
        }
    }
    eprintln!("{events} events in {pages} pages");
    ExitCode::SUCCESS
}
