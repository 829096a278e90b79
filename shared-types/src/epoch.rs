//! Epochs: one committed batch of one chain and the stages it went through (DESIGN §8),
//! and the shapes readers serve them in: [`EpochItem`] (one epoch) and [`EpochSummary`]
//! (the latest epoch of a chain and how many are not finalized yet).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A processing stage of an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
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
    /// Every configured sink delivered its entries (after `stored`; after `finalized` when
    /// a sink delivers finalized entries only). A stage of the history: the current
    /// `stage` stays `stored` or `finalized`, and `?stage=delivered` matches the history.
    Delivered,
}

impl EpochStage {
    /// Every stage, in pipeline order (`reorged`, then the history-only `delivered`, last).
    pub const ALL: [Self; 7] = [
        Self::Planned,
        Self::Fetched,
        Self::Decoded,
        Self::Stored,
        Self::Finalized,
        Self::Reorged,
        Self::Delivered,
    ];

    /// The stages of an epoch that is neither finalized nor reorged: still moving through
    /// the pipeline, or stored and waiting for finality.
    pub const NOT_FINALIZED: [Self; 4] = [Self::Planned, Self::Fetched, Self::Decoded, Self::Stored];

    /// True for the stages of [`EpochStage::NOT_FINALIZED`].
    pub fn is_not_finalized(self) -> bool {
        match self {
            Self::Planned | Self::Fetched | Self::Decoded | Self::Stored => true,
            Self::Finalized | Self::Reorged | Self::Delivered => false,
        }
    }

    /// The stage's name as stored and served.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Planned => "planned",
            Self::Fetched => "fetched",
            Self::Decoded => "decoded",
            Self::Stored => "stored",
            Self::Finalized => "finalized",
            Self::Reorged => "reorged",
            Self::Delivered => "delivered",
        }
    }

    /// Parses a stage name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

impl fmt::Display for EpochStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of an epoch's stage history: `{stage, at}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct EpochStageEntry {
    /// The stage reached.
    pub stage: EpochStage,
    /// When, in unix seconds with millisecond precision (the indexer's clock), as a JSON
    /// number.
    pub at: f64,
}

/// One epoch as served by readers (camelCase JSON): `{chainId, epochId, fromBlock,
/// toBlock, stage, stages: [{stage, at}], error}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct EpochItem {
    /// Chain id.
    pub chain_id: u64,
    /// Epoch id, increasing per chain (ids of different chains are unrelated).
    pub epoch_id: u64,
    /// First block of the epoch's range (inclusive).
    pub from_block: u64,
    /// Last block of the epoch's range (inclusive).
    pub to_block: u64,
    /// The current stage.
    pub stage: EpochStage,
    /// The stage history, oldest first.
    pub stages: Vec<EpochStageEntry>,
    /// The last failure, as `<stage>: <message>` (`null` when none); an epoch that failed
    /// is retried and keeps its history.
    #[cfg_attr(feature = "utoipa", schema(required = true))]
    pub error: Option<String>,
    /// The added source the epoch belongs to (absent for the chain's own epochs): the key
    /// `<contract>:<hash>` of a contract, addresses or events added to an indexed chain,
    /// backfilled beside it. Per chain and source, finished epochs cover the source's
    /// range without gap or overlap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// The epochs of one chain at a glance (camelCase JSON): `{latest, notFinalized}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct EpochSummary {
    /// The chain's epoch with the highest id (`null` when it has none).
    #[cfg_attr(feature = "utoipa", schema(required = true))]
    pub latest: Option<EpochItem>,
    /// How many of the chain's epochs are neither finalized nor reorged (stage
    /// `planned`, `fetched`, `decoded` or `stored`).
    pub not_finalized: u64,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn stage_names_parse_and_print_as_served() {
        for stage in EpochStage::ALL {
            assert_eq!(EpochStage::parse(stage.as_str()), Some(stage));
            assert_eq!(serde_json::to_value(stage).ok(), Some(json!(stage.as_str())));
            assert_eq!(stage.to_string(), stage.as_str());
            assert_eq!(stage.is_not_finalized(), EpochStage::NOT_FINALIZED.contains(&stage));
        }
        assert_eq!(EpochStage::parse("Planned"), None);
        assert_eq!(EpochStage::parse(""), None);
        assert!(!EpochStage::Finalized.is_not_finalized() && !EpochStage::Reorged.is_not_finalized());
    }

    #[test]
    fn an_epoch_item_has_the_design_shape() {
        let item = EpochItem {
            chain_id: 31337,
            epoch_id: 7,
            from_block: 100,
            to_block: 199,
            stage: EpochStage::Stored,
            stages: vec![
                EpochStageEntry { stage: EpochStage::Planned, at: 1_795_420_000.125 },
                EpochStageEntry { stage: EpochStage::Stored, at: 1_795_420_001.5 },
            ],
            error: None,
            source: None,
        };
        let value = serde_json::to_value(&item).expect("serializes");
        assert_eq!(
            value,
            json!({"chainId": 31337, "epochId": 7, "fromBlock": 100, "toBlock": 199, "stage": "stored",
                   "stages": [{"stage": "planned", "at": 1_795_420_000.125}, {"stage": "stored", "at": 1_795_420_001.5}],
                   "error": null})
        );
        assert_eq!(serde_json::from_value::<EpochItem>(value).ok(), Some(item.clone()));
        let summary = EpochSummary { latest: Some(item), not_finalized: 3 };
        let value = serde_json::to_value(&summary).expect("serializes");
        assert_eq!(value["notFinalized"], json!(3));
        assert_eq!(value["latest"]["epochId"], json!(7));
        let none = serde_json::to_value(EpochSummary { latest: None, not_finalized: 0 }).expect("serializes");
        assert_eq!(none, json!({"latest": null, "notFinalized": 0}));
    }
}
