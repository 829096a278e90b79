//! A consumer of the journal: replays entries in cursor order and checks DESIGN §3's
//! promise that doing so yields exactly the stored events.

use std::collections::{BTreeMap, HashSet};

use crate::db::{JournalEntry, StoredEvent};

/// The state a journal consumer builds: events keyed by `(chain_id, block_hash, log_index)`
/// with the cursor that added them.
#[derive(Debug, Default, Clone)]
pub struct JournalReplay {
    state: BTreeMap<(i64, String, i32), i64>,
    seen: HashSet<i64>,
    last_cursor: Option<i64>,
}

impl JournalReplay {
    /// An empty consumer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The highest cursor applied so far (resume after it).
    pub fn last_cursor(&self) -> Option<i64> {
        self.last_cursor
    }

    /// Number of events in the state.
    pub fn len(&self) -> usize {
        self.state.len()
    }

    /// Whether the state is empty.
    pub fn is_empty(&self) -> bool {
        self.state.is_empty()
    }

    /// Applies entries (ascending cursors, all above [`JournalReplay::last_cursor`]):
    /// `log` adds, `removed` deletes.
    ///
    /// Strict where a consumer can be: a cursor must increase; a `log` must not add an
    /// event the state already has; a `removed` must delete the very event (by cursor) the
    /// consumer saw, and must not remove one it saw twice. A `removed` of an event this
    /// consumer never saw is fine: that `log` entry left the journal with the event.
    pub fn apply(&mut self, entries: &[JournalEntry]) -> Result<(), String> {
        for e in entries {
            if self.last_cursor.is_some_and(|c| e.cursor <= c) {
                return Err(format!("cursor {} does not increase (last {:?})", e.cursor, self.last_cursor));
            }
            self.last_cursor = Some(e.cursor);
            let key = (e.chain_id, e.block_hash.clone(), e.log_index);
            match e.kind.as_str() {
                "log" => {
                    if let Some(prev) = self.state.insert(key, e.cursor) {
                        return Err(format!(
                            "log {} adds chain {} block {} log {} again (first added at cursor {prev})",
                            e.cursor, e.chain_id, e.block_hash, e.log_index
                        ));
                    }
                    self.seen.insert(e.cursor);
                }
                "removed" => match self.state.get(&key) {
                    Some(c) if *c == e.event_cursor => {
                        self.state.remove(&key);
                    }
                    _ if self.seen.contains(&e.event_cursor) => {
                        return Err(format!(
                            "removal {} of event cursor {} that the consumer no longer holds",
                            e.cursor, e.event_cursor
                        ));
                    }
                    Some(c) => {
                        return Err(format!(
                            "removal {} names event cursor {} but the consumer holds cursor {c} for that log",
                            e.cursor, e.event_cursor
                        ));
                    }
                    None => {}
                },
                other => return Err(format!("unknown journal kind {other:?} at cursor {}", e.cursor)),
            }
        }
        Ok(())
    }

    /// Compares the state with the stored events; `Err` describes the first difference.
    pub fn matches(&self, events: &[StoredEvent]) -> Result<(), String> {
        let stored: BTreeMap<(i64, String, i32), i64> =
            events.iter().map(|e| ((e.chain_id, e.block_hash.clone(), e.log_index), e.cursor)).collect();
        if stored.len() != events.len() {
            return Err("stored events contain duplicate keys".into());
        }
        if stored == self.state {
            return Ok(());
        }
        let missing = stored.iter().find(|(k, c)| self.state.get(*k) != Some(c));
        let extra = self.state.iter().find(|(k, c)| stored.get(*k) != Some(c));
        Err(format!(
            "replayed journal ({} events) differs from the stored events ({}): first stored not replayed {missing:?}, first replayed not stored {extra:?}",
            self.state.len(),
            stored.len()
        ))
    }
}
