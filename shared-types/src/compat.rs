//! Compatibility of two public configs (DESIGN §2).
//!
//! A config may run against data written under a stored one iff namespace and instance
//! schema are equal, every stored chain is still there and, per stored chain, the finality
//! depth is equal and every stored contract is still there with the same start and end
//! blocks and at least its stored addresses and events. Additions are compatible: a chain
//! (indexed from its start block beside the others), a contract, an address of a contract
//! or an event of a contract (each an [`AddedSource`], backfilled up to where the chain
//! was indexed). Nothing stored changes; removals and changes are incompatible.
//! `versionInfo` may change freely. Events are compared in their canonical form
//! ([`crate::signature`]): two spellings of one event (component names, `tuple(…)` or
//! `(…)`, spaces, `uint`) are the same event.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde_json::{Value, json};

use crate::config::{PublicChainConfig, PublicConfig, PublicContractConfig};
use crate::signature::canonical_or_same;

/// One differing field: its path and both values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldDiff {
    /// Path of the field, e.g. `chains[31337].contracts[Token].startBlock`.
    pub field: String,
    /// The value in the stored (persisted) config.
    pub stored: Value,
    /// The value in the current (new) config.
    pub current: Value,
}

/// The list of differences that make two configs incompatible (never empty).
#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error)]
pub struct Incompatibility {
    /// Every differing field.
    pub diffs: Vec<FieldDiff>,
}

impl fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config is incompatible with the stored config:")?;
        for d in &self.diffs {
            write!(f, " {}: stored {} vs current {};", d.field, d.stored, d.current)?;
        }
        Ok(())
    }
}

/// Checks that `current` may run against data written under `stored`.
pub fn check_compatible(stored: &PublicConfig, current: &PublicConfig) -> Result<(), Incompatibility> {
    let mut diffs = Vec::new();
    let mut diff = |field: String, s: Value, c: Value| {
        if s != c {
            diffs.push(FieldDiff { field, stored: s, current: c });
        }
    };
    diff("namespace".into(), json!(stored.namespace), json!(current.namespace));
    diff("instanceSchema".into(), json!(stored.instance_schema), json!(current.instance_schema));

    let s_chains: BTreeMap<u64, &PublicChainConfig> = stored.chains.iter().map(|c| (c.chain_id, c)).collect();
    let c_chains: BTreeMap<u64, &PublicChainConfig> =
        current.chains.iter().map(|c| (c.chain_id, c)).collect();
    // Only a chain removed counts: an added chain starts from its own start block.
    if s_chains.keys().any(|id| !c_chains.contains_key(id)) {
        diff(
            "chains[].chainId".into(),
            json!(s_chains.keys().collect::<Vec<_>>()),
            json!(c_chains.keys().collect::<Vec<_>>()),
        );
    }
    for (id, s) in &s_chains {
        let Some(c) = c_chains.get(id) else { continue };
        let p = format!("chains[{id}]");
        diff(format!("{p}.finalityDepth"), json!(s.finality_depth), json!(c.finality_depth));
        let s_con: BTreeMap<&str, &PublicContractConfig> =
            s.contracts.iter().map(|x| (x.name.as_str(), x)).collect();
        let c_con: BTreeMap<&str, &PublicContractConfig> =
            c.contracts.iter().map(|x| (x.name.as_str(), x)).collect();
        // Only a contract removed counts: an added one is backfilled.
        if s_con.keys().any(|n| !c_con.contains_key(n)) {
            diff(
                format!("{p}.contracts[].name"),
                json!(s_con.keys().collect::<Vec<_>>()),
                json!(c_con.keys().collect::<Vec<_>>()),
            );
        }
        for (name, sc) in &s_con {
            let Some(cc) = c_con.get(name) else { continue };
            let q = format!("{p}.contracts[{name}]");
            if !sc.addresses.iter().all(|a| cc.addresses.contains(a)) {
                diff(format!("{q}.addresses"), json!(sc.addresses), json!(cc.addresses));
            }
            diff(format!("{q}.factory"), json!(sc.factory), json!(cc.factory));
            diff(format!("{q}.startBlock"), json!(sc.start_block), json!(cc.start_block));
            diff(format!("{q}.endBlock"), json!(sc.end_block), json!(cc.end_block));
            let current = canonical_events(&cc.events);
            if !canonical_events(&sc.events).iter().all(|e| current.contains(e)) {
                diff(format!("{q}.events"), json!(sc.events), json!(cc.events));
            }
        }
    }
    if diffs.is_empty() { Ok(()) } else { Err(Incompatibility { diffs }) }
}

/// What a compatible config adds to an indexed chain: logs of `addresses` × `events` of
/// `contract`, which the indexer backfills up to where it had indexed the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AddedSource {
    /// The chain (one the stored config already had).
    pub chain_id: u64,
    /// The contract's name.
    pub contract: String,
    /// Lowercase 0x addresses.
    pub addresses: Vec<String>,
    /// Canonical event signatures.
    pub events: Vec<String>,
    /// For a factory contract (whose `addresses` are empty): where its children come
    /// from. A new factory contract's children are discovered over its range first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factory: Option<crate::config::FactorySpec>,
    /// For a factory contract: its children must be discovered first, over its factory's
    /// range up to the checkpoint (a new factory contract; or addresses added to the
    /// contract its factory names, which `addresses` then lists: their children are new).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub discover: bool,
}

impl AddedSource {
    /// The source's key, `<contract>:<8 hex digits>`: the contract's name and a digest of
    /// its addresses, events and factory, so that two sources of one contract (an address
    /// added, then an event) have different keys, and one source the same key in every
    /// run. Epochs of the source carry it.
    pub fn key(&self) -> String {
        // FNV-1a over a canonical text: stable across builds, unlike `DefaultHasher`.
        let factory = self.factory.as_ref().map(|f| format!("{}/{}/{}", f.contract, f.event, f.parameter));
        let text = format!(
            "{}|{}|{}|{}",
            self.addresses.join(","),
            self.events.join(","),
            factory.unwrap_or_default(),
            self.discover
        );
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in text.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{}:{:08x}", self.contract, (h >> 32) ^ (h & 0xffff_ffff))
    }
}

/// The sources `current` adds to the chains of `stored` (a compatible pair): a new
/// contract (all its addresses and events; a factory contract's children discovered
/// first), addresses added to a contract (with all its events; and, for each indexed
/// factory contract whose factory is that contract, the children of those addresses),
/// events added to a contract (on its stored addresses, or a factory contract's
/// children). Added chains are not listed: they are indexed from their start block like
/// any new chain.
pub fn added_sources(stored: &PublicConfig, current: &PublicConfig) -> Vec<AddedSource> {
    let mut out = Vec::new();
    for s in &stored.chains {
        let Some(c) = current.chain(s.chain_id) else { continue };
        for cc in &c.contracts {
            let source = |addresses: Vec<String>, events: Vec<String>, discover: bool| AddedSource {
                chain_id: c.chain_id,
                contract: cc.name.clone(),
                addresses,
                events,
                factory: cc.factory.clone(),
                discover,
            };
            let events = canonical_events(&cc.events);
            let Some(sc) = s.contracts.iter().find(|x| x.name == cc.name) else {
                out.push(source(cc.addresses.clone(), events, cc.factory.is_some()));
                continue;
            };
            let added: Vec<String> =
                cc.addresses.iter().filter(|a| !sc.addresses.contains(a)).cloned().collect();
            if !added.is_empty() {
                out.push(source(added.clone(), events.clone(), false));
                // Factory contracts already indexed whose factory is this contract: the
                // added addresses' children are discovered and backfilled.
                for child in c.contracts.iter().filter(|k| {
                    k.factory.as_ref().is_some_and(|f| f.contract == cc.name)
                        && s.contracts.iter().any(|x| x.name == k.name)
                }) {
                    out.push(AddedSource {
                        chain_id: c.chain_id,
                        contract: child.name.clone(),
                        addresses: added.clone(),
                        events: canonical_events(&child.events),
                        factory: child.factory.clone(),
                        discover: true,
                    });
                }
            }
            let stored_events = canonical_events(&sc.events);
            let new_events: Vec<String> = events.into_iter().filter(|e| !stored_events.contains(e)).collect();
            if !new_events.is_empty() && (!sc.addresses.is_empty() || sc.factory.is_some()) {
                out.push(source(sc.addresses.clone(), new_events, false));
            }
        }
    }
    out
}

/// The canonical forms of `events`, sorted and deduplicated.
fn canonical_events(events: &[String]) -> Vec<String> {
    let mut out: Vec<String> = events.iter().map(|e| canonical_or_same(e)).collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::VersionInfo;

    fn config() -> PublicConfig {
        PublicConfig {
            namespace: "demo".into(),
            instance_schema: "tidemark_demo".into(),
            chains: vec![PublicChainConfig {
                chain_id: 31337,
                finality_depth: 12,
                contracts: vec![PublicContractConfig {
                    name: "Token".into(),
                    addresses: vec!["0x5fbdb2315678afecb367f032d93f642f64180aa3".into()],
                    factory: None,
                    start_block: 0,
                    end_block: None,
                    events: vec![
                        "event Transfer(address indexed from, address indexed to, uint256 value)".into(),
                    ],
                }],
            }],
            version_info: VersionInfo::current(),
        }
    }

    #[test]
    fn a_chain_may_be_added_but_not_removed() {
        let mut b = config();
        let mut second = b.chains[0].clone();
        second.chain_id = 10;
        b.chains.insert(0, second);
        assert_eq!(check_compatible(&config(), &b), Ok(()), "added");
        let err = check_compatible(&b, &config()).expect_err("removed");
        assert_eq!(err.diffs.len(), 1);
        assert_eq!(err.diffs[0].field, "chains[].chainId");
        assert_eq!(err.diffs[0].stored, json!([10, 31337]));
        assert_eq!(err.diffs[0].current, json!([31337]));
    }

    #[test]
    fn contracts_addresses_and_events_may_be_added_but_not_removed() {
        let stored = config();
        let mut grown = config();
        let token = &mut grown.chains[0].contracts[0];
        token.addresses.push("0x00000000000000000000000000000000000000aa".into());
        token
            .events
            .push("event Approval(address indexed owner, address indexed spender, uint256 value)".into());
        let mut registry = token.clone();
        registry.name = "Registry".into();
        registry.addresses = vec!["0x00000000000000000000000000000000000000bb".into()];
        grown.chains[0].contracts.push(registry);
        let grown = grown.normalized();
        assert_eq!(check_compatible(&stored, &grown), Ok(()));
        let sources = added_sources(&stored, &grown);
        let summary: Vec<(&str, usize, usize)> =
            sources.iter().map(|s| (s.contract.as_str(), s.addresses.len(), s.events.len())).collect();
        // Registry whole; Token's new address with both events; Token's new event on its
        // stored address.
        assert_eq!(summary, [("Registry", 1, 2), ("Token", 1, 2), ("Token", 1, 1)]);
        assert_eq!(sources[2].addresses, stored.chains[0].contracts[0].addresses);
        let err = check_compatible(&grown, &stored).expect_err("removals");
        let fields: Vec<&str> = err.diffs.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "chains[31337].contracts[].name",
                "chains[31337].contracts[Token].addresses",
                "chains[31337].contracts[Token].events"
            ]
        );
    }

    #[test]
    fn a_factory_contract_may_be_added_and_grow_events_but_its_factory_is_fixed() {
        let stored = config();
        let mut grown = config();
        let spec = crate::config::FactorySpec {
            contract: "Token".into(),
            event: "Transfer".into(),
            parameter: "to".into(),
        };
        let mut child = grown.chains[0].contracts[0].clone();
        child.name = "Child".into();
        child.addresses = Vec::new();
        child.factory = Some(spec.clone());
        grown.chains[0].contracts.push(child);
        let grown = grown.normalized();
        assert_eq!(check_compatible(&stored, &grown), Ok(()));
        let sources = added_sources(&stored, &grown);
        assert_eq!(sources.len(), 1);
        assert_eq!((sources[0].contract.as_str(), sources[0].addresses.len()), ("Child", 0));
        assert_eq!(sources[0].factory.as_ref(), Some(&spec));
        assert!(sources[0].discover, "a new factory contract discovers its children");

        // An address added to the factory's contract: its own source, and its children's.
        let mut wider = grown.clone();
        wider.chains[0].contracts[1].addresses.push("0x00000000000000000000000000000000000000dd".into());
        let sources = added_sources(&grown, &wider.normalized());
        let summary: Vec<(&str, usize, bool, bool)> = sources
            .iter()
            .map(|s| (s.contract.as_str(), s.addresses.len(), s.factory.is_some(), s.discover))
            .collect();
        assert_eq!(summary, [("Token", 1, false, false), ("Child", 1, true, true)]);
        assert_ne!(sources[0].key(), sources[1].key());

        // An event added to the factory contract: backfilled on its children.
        let mut more = grown.clone();
        more.chains[0].contracts[0].events.push("event Y()".into());
        let sources = added_sources(&grown, &more.normalized());
        assert_eq!(sources.len(), 1);
        assert_eq!(
            (sources[0].events.as_slice(), sources[0].factory.is_some()),
            (&["event Y()".to_owned()][..], true)
        );
        assert!(!sources[0].discover, "its children are known");

        // Another factory, or none: incompatible, named.
        let mut moved = grown.clone();
        moved.chains[0].contracts[0].factory =
            Some(crate::config::FactorySpec { parameter: "from".into(), ..spec });
        let err = check_compatible(&grown, &moved).expect_err("changed factory");
        assert_eq!(err.diffs[0].field, "chains[31337].contracts[Child].factory");
        let mut dropped = grown.clone();
        dropped.chains[0].contracts[0].factory = None;
        dropped.chains[0].contracts[0].addresses = vec!["0x00000000000000000000000000000000000000cc".into()];
        let err = check_compatible(&grown, &dropped).expect_err("factory removed");
        assert!(err.diffs.iter().any(|d| d.field == "chains[31337].contracts[Child].factory"), "{err:?}");
    }

    #[test]
    fn version_info_may_change() {
        let mut b = config();
        b.version_info = VersionInfo { tidemark: "9.9.9".into(), schema_version: 7 };
        assert_eq!(check_compatible(&config(), &b), Ok(()));
    }

    #[test]
    fn every_differing_field_is_listed_with_both_values() {
        let mut b = config();
        b.namespace = "other".into();
        b.chains[0].finality_depth = 3;
        b.chains[0].contracts[0].start_block = 5;
        // An event replaced (removed, another added).
        b.chains[0].contracts[0].events = vec!["event X()".into()];
        let err = check_compatible(&config(), &b).expect_err("incompatible");
        let fields: Vec<&str> = err.diffs.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "namespace",
                "chains[31337].finalityDepth",
                "chains[31337].contracts[Token].startBlock",
                "chains[31337].contracts[Token].events"
            ]
        );
        assert_eq!(err.diffs[2].stored, json!(0));
        assert_eq!(err.diffs[2].current, json!(5));
        let msg = err.to_string();
        assert!(msg.contains("startBlock: stored 0 vs current 5"), "{msg}");
    }

    #[test]
    fn events_compare_in_canonical_form() {
        let with_tuple = |event: &str| {
            let mut c = config();
            c.chains[0].contracts[0].events.push(event.to_owned());
            c
        };
        // What an earlier build stored for an ABI-file tuple event, and what this one writes.
        let stored = with_tuple("event Updated(uint64 indexed id, tuple(address who, uint128 amount) info)");
        for current in [
            "event Updated(uint64 indexed id, tuple(address, uint128) info)",
            "event Updated(uint64 indexed id, (address a, uint128 b) info)",
            "Updated(uint64  indexed id,(address,uint128) info)",
        ] {
            assert_eq!(check_compatible(&stored, &with_tuple(current)), Ok(()), "{current}");
        }
        // Types, indexed flags and top-level names still matter.
        for current in [
            "event Updated(uint64 indexed id, tuple(address, uint256) info)",
            "event Updated(uint64 id, tuple(address, uint128) info)",
            "event Updated(uint64 indexed id, tuple(address, uint128) data)",
        ] {
            let err = check_compatible(&stored, &with_tuple(current)).expect_err(current);
            assert_eq!(err.diffs[0].field, "chains[31337].contracts[Token].events");
        }
    }

    #[test]
    fn a_different_chain_set_is_incompatible() {
        let mut b = config();
        b.chains[0].chain_id = 1;
        let err = check_compatible(&config(), &b).expect_err("incompatible");
        assert_eq!(err.diffs[0].field, "chains[].chainId");
        assert_eq!(err.diffs[0].stored, json!([31337]));
        assert_eq!(err.diffs[0].current, json!([1]));
    }
}
