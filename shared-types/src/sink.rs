//! Sinks' state in the status snapshot (DESIGN §8 "Sinks"): what each configured sink has
//! delivered and what it is doing. Never a URL or a secret: sinks are private config.

use serde::{Deserialize, Serialize};

use crate::event::Cursor;

/// One sink's state, under its name in the snapshot's `sinks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SinkStatus {
    /// `webhook` or `nats`.
    pub kind: String,
    /// Every journal entry up to this cursor was delivered (or is outside the filter).
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub cursor: Cursor,
    /// Journal entries after the cursor (before the sink's filter), counted up to a cap.
    pub lag_entries: u64,
    /// Seconds since the sink was last caught up (0 while it is).
    pub lag_seconds: u64,
    /// What the sink is doing.
    pub state: SinkState,
    /// The last delivery failure, redacted (no URL, no secret); `null` after a success.
    pub last_error: Option<String>,
    /// When a delivery last succeeded (unix seconds).
    pub last_delivered_at: Option<u64>,
    /// The scheduled rebroadcast in progress, if any.
    pub rebroadcast: Option<SinkRebroadcast>,
}

/// What a sink is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum SinkState {
    /// Sending entries.
    Delivering,
    /// The last attempt failed; the same batch is retried after a backoff.
    Retrying,
    /// Every entry up to the journal's head was delivered.
    CaughtUp,
    /// Paused by `sink pause`.
    Paused,
    /// Re-sending the full current set (scheduled rebroadcast).
    Rebroadcasting,
}

/// A rebroadcast run in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SinkRebroadcast {
    /// The run's id (1, 2, …).
    pub run: u64,
    /// The run resumes after this cursor.
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub next_cursor: Cursor,
    /// When the run started (unix seconds).
    pub started_at: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snapshot_shape_is_camel_case_with_kebab_states() {
        let s = SinkStatus {
            kind: "webhook".into(),
            cursor: Cursor(42),
            lag_entries: 3,
            lag_seconds: 1,
            state: SinkState::CaughtUp,
            last_error: None,
            last_delivered_at: Some(1_795_420_200),
            rebroadcast: Some(SinkRebroadcast { run: 2, next_cursor: Cursor(7), started_at: 1 }),
        };
        let v = serde_json::to_value(&s).expect("serializes");
        assert_eq!(v["cursor"], "42");
        assert_eq!(v["lagEntries"], 3);
        assert_eq!(v["state"], "caught-up");
        assert_eq!(v["lastError"], serde_json::Value::Null);
        assert_eq!(v["rebroadcast"]["nextCursor"], "7");
        assert_eq!(serde_json::from_value::<SinkStatus>(v).expect("round trip"), s);
    }
}
