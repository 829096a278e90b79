//! Factory contracts: `factory = { contract, event, parameter }` instead of `addresses`.
//!
//! The creating event is looked up in the factory contract's ABI (its `abi` file, or its
//! `events` signatures when it has none), by name or by full signature, whether or not the
//! factory contract indexes that event for its own sake. `parameter` must name one of the
//! event's `address` inputs, indexed or not. The factory contract must be a contract of
//! the same chain with static addresses (a factory's children do not create children).

use std::path::{Path, PathBuf};

use alloy::dyn_abi::DynSolType;
use alloy::json_abi::Event;
use alloy::primitives::Address;
use serde::Deserialize;
use tidemark_shared_types::{FactorySpec, canonical_event};

use super::abi::{self, ResolvedEvent};
use super::error::ConfigError;

/// `factory = { contract = "…", event = "…", parameter = "…" }` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFactory {
    contract: String,
    event: String,
    parameter: String,
}

/// Where the child's address sits in a creating log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamLocation {
    /// In topic `n` (1 to 3).
    Topic(usize),
    /// At position `n` of the decoded data tuple.
    Data(usize),
}

/// A validated factory: the creating contract's addresses and range, the creating event
/// and where the child's address is.
#[derive(Debug, Clone)]
pub struct FactoryConfig {
    /// The creating contract's name.
    pub contract: String,
    /// Its static addresses: only their logs create children.
    pub addresses: Vec<Address>,
    /// Its first block: children are discovered from its logs in its own range.
    pub start_block: u64,
    /// Its last block, when bounded.
    pub end_block: Option<u64>,
    /// The creating event.
    pub event: ResolvedEvent,
    /// The event as the public config states it (the name, or the canonical signature
    /// when the config gave a signature).
    pub event_key: String,
    /// The parameter's name.
    pub parameter: String,
    /// Where the child's address is in a creating log.
    pub location: ParamLocation,
}

impl FactoryConfig {
    /// The public form.
    pub fn spec(&self) -> FactorySpec {
        FactorySpec {
            contract: self.contract.clone(),
            event: self.event_key.clone(),
            parameter: self.parameter.clone(),
        }
    }
}

/// What a factory spec is resolved against: the contracts of the chain as written.
pub(super) struct Creator<'a> {
    pub(super) name: &'a str,
    pub(super) addresses: &'a [Address],
    pub(super) start_block: u64,
    pub(super) end_block: Option<u64>,
    pub(super) abi: Option<PathBuf>,
    pub(super) events: &'a [String],
    pub(super) is_factory: bool,
}

/// Resolves `raw` (at key path `q` = `chains[i].contracts[j].factory`) against the
/// chain's contracts.
pub(super) fn resolve(
    raw: &RawFactory,
    q: &str,
    creators: &[Creator<'_>],
    base: &Path,
    own_name: &str,
) -> Result<FactoryConfig, ConfigError> {
    let creator = creators.iter().find(|c| c.name == raw.contract).ok_or_else(|| {
        ConfigError::new(
            format!("{q}.contract"),
            format!("no contract named {:?} on this chain", raw.contract),
        )
    })?;
    if creator.name == own_name {
        return Err(ConfigError::new(format!("{q}.contract"), "a contract cannot be its own factory"));
    }
    if creator.is_factory {
        return Err(ConfigError::new(
            format!("{q}.contract"),
            format!("{:?} is itself a factory contract; a factory must have static addresses", raw.contract),
        ));
    }
    let event_path = format!("{q}.event");
    let wanted = raw.event.trim();
    let is_signature = wanted.contains('(');
    let candidates: Vec<Event> = match (&creator.abi, is_signature) {
        (Some(file), false) => abi::events_from_abi_file(&base.join(file), &[wanted.to_owned()], q)
            .map_err(|e| ConfigError::new(&event_path, e.message))?,
        (Some(file), true) => {
            let sig = canonical_event(wanted)
                .map_err(|e| ConfigError::new(&event_path, format!("{wanted:?}: {e}")))?;
            let name = sig.split_once('(').map(|(n, _)| n.trim_start_matches("event ").trim().to_owned());
            let all = abi::events_from_abi_file(&base.join(file), &[name.unwrap_or_default()], q)
                .map_err(|e| ConfigError::new(&event_path, e.message))?;
            all.into_iter().filter(|e| ResolvedEvent::new(e.clone()).signature == sig).collect()
        }
        (None, true) => abi::events_from_signatures(&[wanted.to_owned()], q)
            .map_err(|e| ConfigError::new(&event_path, e.message))?,
        (None, false) => {
            abi::events_from_signatures(creator.events, q)?.into_iter().filter(|e| e.name == wanted).collect()
        }
    };
    let event = match candidates.as_slice() {
        [one] => ResolvedEvent::new(one.clone()),
        [] => {
            return Err(ConfigError::new(
                &event_path,
                format!("contract {:?} has no event {wanted:?}", raw.contract),
            ));
        }
        _ => {
            return Err(ConfigError::new(
                &event_path,
                format!("{wanted:?} names {} overloads; give the full signature", candidates.len()),
            ));
        }
    };
    let location = locate(&event, &raw.parameter)
        .map_err(|message| ConfigError::new(format!("{q}.parameter"), message))?;
    Ok(FactoryConfig {
        contract: creator.name.to_owned(),
        addresses: creator.addresses.to_vec(),
        start_block: creator.start_block,
        end_block: creator.end_block,
        event_key: if is_signature { event.signature.clone() } else { wanted.to_owned() },
        event,
        parameter: raw.parameter.clone(),
        location,
    })
}

/// Where the `address` input named `parameter` of `event` sits in its logs.
fn locate(event: &ResolvedEvent, parameter: &str) -> Result<ParamLocation, String> {
    let inputs = &event.event.inputs;
    let Some(i) = inputs.iter().position(|p| p.name == parameter) else {
        let names: Vec<&str> = inputs.iter().map(|p| p.name.as_str()).filter(|n| !n.is_empty()).collect();
        return Err(format!("{} has no parameter {parameter:?} (it has {names:?})", event.signature));
    };
    if event.types.get(i) != Some(&DynSolType::Address) {
        return Err(format!(
            "parameter {parameter:?} of {} is a {}, not an address",
            event.signature, inputs[i].ty
        ));
    }
    let before = &inputs[..i];
    Ok(if inputs[i].indexed {
        ParamLocation::Topic(1 + before.iter().filter(|p| p.indexed).count())
    } else {
        ParamLocation::Data(before.iter().filter(|p| !p.indexed).count())
    })
}
