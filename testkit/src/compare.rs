//! Stored events against the canonical chain (DESIGN §9.1): asserted row for row
//! ([`assert_matches_chain`]), or counted ([`compare_with_chain`]) so that a report can
//! say how many were missing, duplicated or orphaned.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::{InstanceDb, JournalReplay, LogRow, StoredEvent, block_hash, canonical_logs};
use alloy::primitives::Address;

/// What one comparison found, for one chain, up to its checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Comparison {
    /// The checkpoint block (none: nothing indexed yet).
    pub checkpoint: Option<u64>,
    /// Whether the checkpoint's hash is the canonical hash at its height.
    pub checkpoint_canonical: bool,
    /// Canonical logs up to the checkpoint.
    pub canonical: usize,
    /// Stored events of the chain.
    pub stored: usize,
    /// Canonical logs with no stored event.
    pub missing: usize,
    /// Stored events beyond the first for the same `(block_hash, log_index)`.
    pub duplicated: usize,
    /// Stored events that are not canonical (orphaned by a reorg, or above the checkpoint).
    pub orphaned: usize,
    /// Stored events above the checkpoint (a torn commit).
    pub above_checkpoint: usize,
    /// Stored events whose fields differ from their canonical log.
    pub mismatched: usize,
    /// The first difference, for the failure message.
    pub first_difference: Option<String>,
}

impl Comparison {
    /// Nothing missing, duplicated, orphaned or different, and a canonical checkpoint.
    pub fn is_exact(&self) -> bool {
        self.checkpoint.is_some()
            && self.checkpoint_canonical
            && self.missing == 0
            && self.duplicated == 0
            && self.orphaned == 0
            && self.above_checkpoint == 0
            && self.mismatched == 0
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "checkpoint {:?} (canonical: {}), {} stored vs {} canonical: missing {}, duplicated {}, orphaned {}, above checkpoint {}, mismatched {}",
            self.checkpoint,
            self.checkpoint_canonical,
            self.stored,
            self.canonical,
            self.missing,
            self.duplicated,
            self.orphaned,
            self.above_checkpoint,
            self.mismatched
        )?;
        if let Some(d) = &self.first_difference {
            write!(f, "; first difference: {d}")?;
        }
        Ok(())
    }
}

/// Reads checkpoint and events in one snapshot and compares them with `eth_getLogs` of
/// `addresses` on the chain at `rpc_url`, from block 0 to the checkpoint.
///
/// # Errors
/// When the database or the node cannot be read.
pub async fn compare_with_chain(
    db: &mut InstanceDb,
    chain_id: u64,
    rpc_url: &str,
    addresses: &[Address],
) -> Result<Comparison, String> {
    let (checkpoints, events) = db.snapshot().await.map_err(|e| format!("reading the instance: {e}"))?;
    let stored: Vec<StoredEvent> = events.into_iter().filter(|e| e.chain_id as u64 == chain_id).collect();
    let Some(cp) = checkpoints.into_iter().find(|c| c.chain_id as u64 == chain_id) else {
        return Ok(Comparison {
            stored: stored.len(),
            orphaned: stored.len(),
            above_checkpoint: stored.len(),
            ..Comparison::default()
        });
    };
    let cp_number = cp.block_number as u64;
    let canonical_hash = block_hash(rpc_url, cp_number).await.map_err(|e| e.to_string())?;
    let canonical = canonical_logs(rpc_url, addresses, 0, cp_number).await.map_err(|e| e.to_string())?;
    let mut c = count(&canonical, &stored, cp_number);
    c.checkpoint = Some(cp_number);
    c.checkpoint_canonical = canonical_hash.as_deref() == Some(cp.block_hash.as_str());
    if !c.checkpoint_canonical && c.first_difference.is_none() {
        c.first_difference =
            Some(format!("checkpoint {cp_number} hash {} vs canonical {canonical_hash:?}", cp.block_hash));
    }
    Ok(c)
}

/// Asserts that the stored events of `chain_id` equal the chain's logs of `addresses` up
/// to the checkpoint, row for row and in order, and that the checkpoint is canonical.
/// Returns the chain's stored events (by block and log index).
///
/// # Panics
/// On the first difference, or when the database or the node cannot be read.
pub async fn assert_matches_chain(
    db: &mut InstanceDb,
    chain_id: u64,
    rpc_url: &str,
    addresses: &[Address],
) -> Vec<StoredEvent> {
    // One snapshot: a commit landing between two separate reads would look like a torn batch.
    let (checkpoints, events) = db.snapshot().await.expect("reading checkpoints and events");
    let cp = checkpoints.into_iter().find(|c| c.chain_id as u64 == chain_id).expect("a checkpoint");
    let canonical_hash = block_hash(rpc_url, cp.block_number as u64).await.expect("block hash");
    assert_eq!(
        Some(cp.block_hash.clone()),
        canonical_hash,
        "checkpoint hash is canonical at {}",
        cp.block_number
    );
    let canonical = canonical_logs(rpc_url, addresses, 0, cp.block_number as u64).await.expect("eth_getLogs");
    let stored: Vec<StoredEvent> = events.into_iter().filter(|e| e.chain_id as u64 == chain_id).collect();
    let rows: Vec<_> = stored.iter().map(StoredEvent::log_row).collect();
    if rows != canonical {
        let first = rows.iter().zip(&canonical).position(|(a, b)| a != b);
        panic!(
            "chain {chain_id}: {} stored events vs {} canonical logs up to block {}; first difference at {first:?}: stored {:?} vs canonical {:?}",
            rows.len(),
            canonical.len(),
            cp.block_number,
            first.and_then(|i| rows.get(i)),
            first.and_then(|i| canonical.get(i)),
        );
    }
    stored
}

/// Counts the differences between canonical logs and stored events (pure).
pub fn count(canonical: &[LogRow], stored: &[StoredEvent], checkpoint: u64) -> Comparison {
    let key = |hash: &str, index: u64| (hash.to_owned(), index);
    let by_key: HashMap<(String, u64), &LogRow> =
        canonical.iter().map(|l| (key(&l.block_hash, l.log_index), l)).collect();
    let mut seen: BTreeMap<(String, u64), usize> = BTreeMap::new();
    let mut c = Comparison { canonical: canonical.len(), stored: stored.len(), ..Comparison::default() };
    for e in stored {
        let row = e.log_row();
        let k = key(&row.block_hash, row.log_index);
        *seen.entry(k.clone()).or_default() += 1;
        if row.block_number > checkpoint {
            c.above_checkpoint += 1;
        }
        match by_key.get(&k) {
            None => {
                c.orphaned += 1;
                c.first_difference.get_or_insert_with(|| format!("stored, not canonical: {row:?}"));
            }
            Some(l) if **l != row => {
                c.mismatched += 1;
                c.first_difference.get_or_insert_with(|| format!("stored {row:?} vs canonical {l:?}"));
            }
            Some(_) => {}
        }
    }
    c.duplicated = seen.values().map(|n| n - 1).sum();
    for l in canonical {
        if !seen.contains_key(&key(&l.block_hash, l.log_index)) {
            c.missing += 1;
            c.first_difference.get_or_insert_with(|| format!("canonical, not stored: {l:?}"));
        }
    }
    c
}

/// Replays the whole journal from scratch and compares the result with the stored events
/// (DESIGN §3). Returns the number of `removed` entries.
///
/// # Errors
/// The first inconsistency, or a database error.
pub async fn replay_journal(db: &mut InstanceDb) -> Result<usize, String> {
    let journal = db.journal().await.map_err(|e| format!("reading the journal: {e}"))?;
    let events = db.events().await.map_err(|e| format!("reading the events: {e}"))?;
    let mut replay = JournalReplay::new();
    replay.apply(&journal)?;
    replay.matches(&events)?;
    Ok(journal.iter().filter(|e| e.kind == "removed").count())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(block: u64, index: u64) -> LogRow {
        LogRow {
            block_number: block,
            log_index: index,
            block_hash: format!("0x{block:064x}"),
            block_timestamp: 1,
            tx_hash: "0x01".into(),
            tx_index: 0,
            address: "0xab".into(),
            topics: vec!["0x02".into()],
            data: "0x".into(),
        }
    }

    fn stored(l: &LogRow, cursor: i64) -> StoredEvent {
        StoredEvent {
            cursor,
            chain_id: 1,
            block_number: l.block_number as i64,
            block_hash: l.block_hash.clone(),
            block_timestamp: l.block_timestamp as i64,
            tx_hash: l.tx_hash.clone(),
            tx_index: l.tx_index as i32,
            log_index: l.log_index as i32,
            address: l.address.clone(),
            contract: "C".into(),
            event: "E".into(),
            signature: "event E()".into(),
            topics: l.topics.clone(),
            data: l.data.clone(),
            args: serde_json::json!({}),
            decode_error: None,
        }
    }

    #[test]
    fn counts_missing_duplicated_orphaned_and_mismatched() {
        let canonical = vec![log(1, 0), log(1, 1), log(2, 0), log(3, 0)];
        let mut changed = log(3, 0);
        changed.data = "0xff".into();
        let rows = vec![
            stored(&canonical[0], 1),
            stored(&canonical[0], 2),
            stored(&canonical[2], 3),
            stored(&changed, 4),
            stored(&log(9, 0), 5),
        ];
        let c = count(&canonical, &rows, 3);
        assert_eq!((c.missing, c.duplicated, c.orphaned, c.mismatched, c.above_checkpoint), (1, 1, 1, 1, 1));
        assert!(!c.is_exact());
    }

    #[test]
    fn an_exact_copy_is_exact() {
        let canonical = vec![log(1, 0), log(2, 0)];
        let rows: Vec<StoredEvent> = canonical.iter().zip(1..).map(|(l, c)| stored(l, c)).collect();
        let mut c = count(&canonical, &rows, 2);
        c.checkpoint = Some(2);
        c.checkpoint_canonical = true;
        assert!(c.is_exact(), "{c}");
    }
}
