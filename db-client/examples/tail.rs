//! Follows an instance's journal and appends each entry, one line each, to a file, which
//! is also where it resumes from: started again after a kill, it reads the cursor of the
//! file's last complete line and continues exactly after it (nothing missed, nothing
//! written twice; a line cut short by the kill is dropped and written again). Without the
//! file it starts at the current head; `--from-start` replays the whole journal.
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!     cargo run -p tidemark-db-client --example tail -- tidemark_demo journal.log
//! ```
//!
//! Lines: `log <cursor> <chainId> <block> <logIndex> <contract> <event>` or
//! `removed <cursor> <eventCursor> <chainId> <block> <logIndex>`.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use futures::StreamExt;
use tidemark_db_client::types::{Cursor, JournalEntry};
use tidemark_db_client::{DbClient, DbClientConfig, DbError, JournalFilter};

const USAGE: &str = "usage: tail <schema> <file> [--from-start]";

/// The cursor of the last complete line of `path` (`None` when it has none), after
/// cutting off a last line without its newline.
fn resume_point(path: &Path) -> Result<Option<Cursor>, Box<dyn std::error::Error>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let complete = text.rfind('\n').map_or(0, |i| i + 1);
    if complete < text.len() {
        OpenOptions::new().write(true).open(path)?.set_len(u64::try_from(complete)?)?;
    }
    let Some(last) = text[..complete].lines().last() else { return Ok(None) };
    let cursor = last.split(' ').nth(1).ok_or_else(|| format!("no cursor in line {last:?}"))?;
    Ok(Some(cursor.parse()?))
}

fn line(entry: &JournalEntry) -> String {
    match entry {
        JournalEntry::Log(e) => {
            format!(
                "log {} {} {} {} {} {}\n",
                e.cursor, e.chain_id, e.block_number, e.log_index, e.contract, e.event
            )
        }
        JournalEntry::Removed(r) => {
            format!(
                "removed {} {} {} {} {}\n",
                r.cursor, r.event_cursor, r.chain_id, r.block_number, r.log_index
            )
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL").map_err(|_| "set DATABASE_URL")?;
    let mut args = std::env::args().skip(1);
    let schema = args.next().ok_or(USAGE)?;
    let path = args.next().ok_or(USAGE)?;
    let from_start = args.next().as_deref() == Some("--from-start");
    let path = Path::new(&path);

    let after = resume_point(path)?.or(from_start.then_some(Cursor(0)));
    let db = DbClient::new(DbClientConfig::new(url, schema))?;
    let mut entries = std::pin::pin!(db.subscribe(after, JournalFilter::default()).await?);
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    loop {
        let entry = tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            entry = entries.next() => entry,
        };
        match entry {
            // One write per line: the line is the record of the entry and of the cursor.
            Some(Ok(entry)) => file.write_all(line(&entry).as_bytes())?,
            // Fell below the retained floor: resync (e.g. a new file from the start).
            Some(Err(e @ DbError::CursorExpired { .. })) => return Err(e.into()),
            // The stream retries by itself.
            Some(Err(e)) => eprintln!("reading the journal failed (retrying): {e}"),
            None => break,
        }
    }
    Ok(())
}
