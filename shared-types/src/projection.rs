//! The realtime projection: the status seen from "now", computed at read time, never stored.

use serde::{Deserialize, Serialize};

use crate::status::IndexingStatus;

/// `{projectedAt, worstCaseDistance, snapshot}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RealtimeProjection {
    /// The time the projection is made for (unix seconds).
    pub projected_at: u64,
    /// `projectedAt − slowestChainIndexingCursor`, in seconds (0 if the cursor is ahead).
    pub worst_case_distance: u64,
    /// The snapshot projected.
    pub snapshot: IndexingStatus,
}

impl RealtimeProjection {
    /// Projects `snapshot` to `now` (unix seconds). `projectedAt` is never before the
    /// snapshot time.
    pub fn project(snapshot: IndexingStatus, now: u64) -> Self {
        let projected_at = now.max(snapshot.snapshot_time);
        Self {
            projected_at,
            worst_case_distance: projected_at.saturating_sub(snapshot.slowest_chain_indexing_cursor),
            snapshot,
        }
    }
}
