//! Epochs: one committed batch of one chain and the stages it went through (DESIGN §8).

use serde::{Deserialize, Serialize};

/// A processing stage of an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EpochStage {
    /// The block range was chosen.
    Planned,
    /// Its logs were fetched.
    Fetched,
    /// Its logs were decoded.
    Decoded,
    /// Its events and checkpoint were committed.
    Stored,
    /// Its last block is at least `finalityDepth` behind the head.
    Finalized,
    /// It was rolled back by a reorg.
    Reorged,
}

impl EpochStage {
    /// The stage's name as stored and served.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Planned => "planned",
            Self::Fetched => "fetched",
            Self::Decoded => "decoded",
            Self::Stored => "stored",
            Self::Finalized => "finalized",
            Self::Reorged => "reorged",
        }
    }

    /// Parses a stage name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Planned, Self::Fetched, Self::Decoded, Self::Stored, Self::Finalized, Self::Reorged]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}
