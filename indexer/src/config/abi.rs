//! Event definitions: human-readable signatures or an ABI file plus event names.
//!
//! Signatures are accepted in every form users copy (Solidity and viem inline tuples with
//! component names, ethers' `tuple(…)`, unnamed components, `uint`, any spacing, with or
//! without `event`): [`canonical_event`] turns them into one canonical form, which alloy's
//! parser reads. Every event, from a signature or an ABI file, is stored under that
//! canonical form, so both ways of declaring one event give the same public config.

use std::path::Path;

use alloy::dyn_abi::{DynSolType, Specifier};
use alloy::json_abi::{Event, JsonAbi};
use alloy::primitives::B256;
use tidemark_shared_types::canonical_event;

use super::error::ConfigError;

/// An event ready for filtering and decoding.
#[derive(Debug, Clone)]
pub struct ResolvedEvent {
    /// The ABI item.
    pub event: Event,
    /// Canonical full signature (`event Transfer(address indexed from, …)`; tuples as
    /// `tuple(T1, T2)` without component names, see [`canonical_event`]).
    pub signature: String,
    /// keccak of the canonical signature.
    pub topic0: B256,
    /// The resolved type of each input, in order.
    pub types: Vec<DynSolType>,
    /// The tuple of the non-indexed inputs' types: the layout of the log's data.
    pub body: DynSolType,
    /// The args key of each input, in order: its name, or `_{i}` when unnamed.
    pub keys: Vec<String>,
}

impl ResolvedEvent {
    /// Resolves the input types of `event` once, for decoding every log of it.
    pub(crate) fn new(event: Event) -> Self {
        let types: Vec<DynSolType> = event.inputs.iter().filter_map(|p| p.resolve().ok()).collect();
        let body = DynSolType::Tuple(
            event.inputs.iter().zip(&types).filter(|(p, _)| !p.indexed).map(|(_, t)| t.clone()).collect(),
        );
        let keys = event
            .inputs
            .iter()
            .enumerate()
            .map(|(i, p)| if p.name.is_empty() { format!("_{i}") } else { p.name.clone() })
            .collect();
        let full = event.full_signature();
        let signature = canonical_event(&full).unwrap_or(full);
        Self { signature, topic0: event.selector(), types, body, keys, event }
    }
}

fn check_resolvable(event: &Event, path: &str) -> Result<(), ConfigError> {
    for p in &event.inputs {
        p.resolve().map_err(|e| ConfigError::new(path, format!("parameter {:?}: {e}", p.name)))?;
    }
    if event.anonymous {
        return Err(ConfigError::new(path, "anonymous events have no topic0 and cannot be filtered"));
    }
    Ok(())
}

/// Parses `event Name(type indexed name, …)` strings.
pub(super) fn events_from_signatures(sigs: &[String], q: &str) -> Result<Vec<Event>, ConfigError> {
    sigs.iter()
        .enumerate()
        .map(|(i, s)| {
            let path = format!("{q}.events[{i}]");
            let text = canonical_event(s).map_err(|e| ConfigError::new(&path, format!("{s:?}: {e}")))?;
            let event = Event::parse(&text).map_err(|e| ConfigError::new(&path, format!("{s:?}: {e}")))?;
            check_resolvable(&event, &path)?;
            Ok(event)
        })
        .collect()
}

/// Loads a JSON ABI and picks the named events (every overload of a name).
pub(super) fn events_from_abi_file(
    file: &Path,
    names: &[String],
    q: &str,
) -> Result<Vec<Event>, ConfigError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| ConfigError::new(format!("{q}.abi"), format!("cannot read {}: {e}", file.display())))?;
    let abi: JsonAbi = serde_json::from_str(&text).map_err(|e| {
        ConfigError::new(format!("{q}.abi"), format!("{} is not a JSON ABI: {e}", file.display()))
    })?;
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let path = format!("{q}.events[{i}]");
        let found = abi
            .events
            .get(name.trim())
            .ok_or_else(|| ConfigError::new(&path, format!("event {name:?} is not in {}", file.display())))?;
        for e in found {
            check_resolvable(e, &path)?;
            out.push(e.clone());
        }
    }
    Ok(out)
}
