//! Children of factory contracts: the addresses a factory created, as the API lists them
//! (`GET /v1/contracts/{name}/addresses`).

use serde::{Deserialize, Serialize};

/// One address of a contract: for a factory contract, a child with the log that created
/// it; for a contract with static addresses, a configured address (no creation fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ContractAddress {
    /// The chain.
    pub chain_id: u64,
    /// The contract's name.
    pub contract: String,
    /// Lowercase 0x address.
    pub address: String,
    /// The block of the creating log (children only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_number: Option<u64>,
    /// Its hash (children only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_hash: Option<String>,
    /// The creating log's index in its block (children only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_index: Option<u64>,
    /// The creating transaction (children only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_hash: Option<String>,
}
