//! Property tests of the compatibility rules (DESIGN §2) and of the public config's JSON.

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Value, json};
use tidemark_shared_types::{FieldDiff, PublicConfig, check_compatible};

use crate::generators::{arb_config, arb_version_info};

/// A compatibility-relevant field of a config.
#[derive(Debug, Clone, Copy)]
enum Site {
    Namespace,
    InstanceSchema,
    ChainId(usize),
    FinalityDepth(usize),
    ContractName(usize, usize),
    Addresses(usize, usize),
    StartBlock(usize, usize),
    EndBlock(usize, usize),
    Events(usize, usize),
}

fn sites(config: &PublicConfig) -> Vec<Site> {
    let mut sites = vec![Site::Namespace, Site::InstanceSchema];
    for (c, chain) in config.chains.iter().enumerate() {
        sites.push(Site::ChainId(c));
        sites.push(Site::FinalityDepth(c));
        for k in 0..chain.contracts.len() {
            sites.extend([
                Site::ContractName(c, k),
                Site::Addresses(c, k),
                Site::StartBlock(c, k),
                Site::EndBlock(c, k),
                Site::Events(c, k),
            ]);
        }
    }
    sites
}

fn diff(field: String, stored: Value, current: Value) -> FieldDiff {
    FieldDiff { field, stored, current }
}

/// Changes the field at `site` of `config` (keeping it normalized) and returns the
/// difference `check_compatible(stored, changed)` must report.
fn change(config: &mut PublicConfig, site: Site, entropy: u64) -> FieldDiff {
    let ids = |c: &PublicConfig| json!(c.chain_ids());
    match site {
        Site::Namespace => {
            let old = config.namespace.clone();
            config.namespace.push('x');
            diff("namespace".into(), json!(old), json!(config.namespace))
        }
        Site::InstanceSchema => {
            let old = config.instance_schema.clone();
            config.instance_schema = format!("{old}_{}", entropy % 10);
            diff("instanceSchema".into(), json!(old), json!(config.instance_schema))
        }
        Site::ChainId(c) => {
            let stored = ids(config);
            let unused = (1..).map(|i| i + entropy % 1_000).find(|id| config.chain(*id).is_none());
            config.chains[c].chain_id = unused.expect("a free chain id");
            *config = config.clone().normalized();
            diff("chains[].chainId".into(), stored, ids(config))
        }
        Site::FinalityDepth(c) => {
            let chain = &mut config.chains[c];
            let old = chain.finality_depth;
            chain.finality_depth = old + 1 + entropy % 100;
            diff(format!("chains[{}].finalityDepth", chain.chain_id), json!(old), json!(chain.finality_depth))
        }
        Site::ContractName(c, k) => {
            let chain = &mut config.chains[c];
            let names = |ch: &tidemark_shared_types::PublicChainConfig| {
                let mut n: Vec<String> = ch.contracts.iter().map(|x| x.name.clone()).collect();
                n.sort();
                json!(n)
            };
            let stored = names(chain);
            // Generated names have no '_', so this one is new.
            chain.contracts[k].name.push('_');
            chain.contracts.sort_by(|a, b| a.name.cmp(&b.name));
            diff(format!("chains[{}].contracts[].name", chain.chain_id), stored, names(chain))
        }
        Site::Addresses(c, k) | Site::StartBlock(c, k) | Site::EndBlock(c, k) | Site::Events(c, k) => {
            let chain_id = config.chains[c].chain_id;
            let contract = &mut config.chains[c].contracts[k];
            let path = format!("chains[{chain_id}].contracts[{}]", contract.name);
            match site {
                Site::Addresses(..) => {
                    let old = contract.addresses.clone();
                    if entropy.is_multiple_of(2) || old.len() == 1 {
                        let new = format!("0x{:040x}", u128::from(entropy));
                        if old.contains(&new) {
                            contract.addresses.retain(|a| *a != new);
                        } else {
                            contract.addresses.push(new);
                            contract.addresses.sort();
                        }
                    } else {
                        contract.addresses.remove(entropy as usize % old.len());
                    }
                    diff(format!("{path}.addresses"), json!(old), json!(contract.addresses))
                }
                Site::StartBlock(..) => {
                    let old = contract.start_block;
                    contract.start_block =
                        if old > 0 && entropy.is_multiple_of(2) { old - 1 } else { old + 1 };
                    diff(format!("{path}.startBlock"), json!(old), json!(contract.start_block))
                }
                Site::EndBlock(..) => {
                    let old = contract.end_block;
                    contract.end_block = match old {
                        None => Some(contract.start_block + entropy % 1_000),
                        Some(_) if entropy.is_multiple_of(2) => None,
                        Some(e) => Some(e + 1),
                    };
                    diff(format!("{path}.endBlock"), json!(old), json!(contract.end_block))
                }
                _ => {
                    let old = contract.events.clone();
                    if entropy.is_multiple_of(2) || old.len() == 1 {
                        contract.events.push(format!("event Changed{entropy}(uint256 value)"));
                        contract.events.sort();
                    } else {
                        contract.events.remove(entropy as usize % old.len());
                    }
                    diff(format!("{path}.events"), json!(old), json!(contract.events))
                }
            }
        }
    }
}

proptest! {
    #[test]
    fn generated_configs_are_normalized_and_round_trip(config in arb_config()) {
        prop_assert_eq!(&config.clone().normalized(), &config);
        let value = serde_json::to_value(&config).expect("serializes");
        let back: PublicConfig = serde_json::from_value(value.clone()).expect("deserializes");
        prop_assert_eq!(&back, &config);
        let text = serde_json::to_string(&config).expect("serializes");
        let back: PublicConfig = serde_json::from_str(&text).expect("deserializes");
        prop_assert_eq!(serde_json::to_value(&back).expect("serializes"), value);
    }

    #[test]
    fn a_config_is_compatible_with_itself(config in arb_config()) {
        prop_assert_eq!(check_compatible(&config, &config), Ok(()));
        prop_assert_eq!(check_compatible(&config, &config.clone().normalized()), Ok(()));
    }

    #[test]
    fn version_info_may_change_freely(config in arb_config(), version in arb_version_info()) {
        let mut current = config.clone();
        current.version_info = version;
        prop_assert_eq!(check_compatible(&config, &current), Ok(()));
        prop_assert_eq!(check_compatible(&current, &config), Ok(()));
    }

    #[test]
    fn one_changed_field_is_reported_with_its_path_and_both_values(
        config in arb_config(),
        pick in any::<Index>(),
        entropy in any::<u64>(),
        version in proptest::option::of(arb_version_info()),
    ) {
        let site = *pick.get(&sites(&config));
        let mut current = config.clone();
        let expected = change(&mut current, site, entropy);
        // A versionInfo change on top adds nothing to the report.
        if let Some(version) = version {
            current.version_info = version;
        }
        prop_assert_ne!(&expected.stored, &expected.current);
        // An address or event added (nothing removed) is compatible one way: only its
        // removal, the other way round, is reported.
        let grew = matches!(site, Site::Addresses(..) | Site::Events(..))
            && expected.stored.as_array().is_some_and(|old| {
                old.iter().all(|v| expected.current.as_array().is_some_and(|new| new.contains(v)))
            });
        if grew {
            prop_assert_eq!(check_compatible(&config, &current), Ok(()), "{:?}", site);
            prop_assert!(!tidemark_shared_types::added_sources(&config, &current).is_empty());
            let err = check_compatible(&current, &config).expect_err("a removal is incompatible");
            let swapped = FieldDiff { field: expected.field, stored: expected.current, current: expected.stored };
            prop_assert_eq!(err.diffs, vec![swapped]);
            return Ok(());
        }
        let err = check_compatible(&config, &current).expect_err("a changed field is incompatible");
        prop_assert_eq!(&err.diffs, &vec![expected.clone()], "{:?}", site);
        let message = err.to_string();
        prop_assert!(message.contains(&expected.field), "{}", message);
        prop_assert!(message.contains(&expected.stored.to_string()), "{}", message);
        prop_assert!(message.contains(&expected.current.to_string()), "{}", message);

        // The other way round, stored and current swap; a removed address or event is an
        // addition that way, compatible.
        let shrank = matches!(site, Site::Addresses(..) | Site::Events(..))
            && expected.current.as_array().is_some_and(|new| {
                new.iter().all(|v| expected.stored.as_array().is_some_and(|old| old.contains(v)))
            });
        if shrank {
            prop_assert_eq!(check_compatible(&current, &config), Ok(()));
            return Ok(());
        }
        let err = check_compatible(&current, &config).expect_err("incompatible both ways");
        let swapped = FieldDiff { field: expected.field, stored: expected.current, current: expected.stored };
        prop_assert_eq!(err.diffs, vec![swapped]);
    }

    #[test]
    fn a_chain_may_be_added_and_never_removed(config in arb_config(), entropy in any::<u64>()) {
        let mut current = config.clone();
        let mut added = current.chains[0].clone();
        added.chain_id = (1..).map(|i| i + entropy % 1_000).find(|id| config.chain(*id).is_none()).expect("a free id");
        current.chains.push(added);
        current = current.normalized();
        prop_assert_eq!(check_compatible(&config, &current), Ok(()), "added");
        let err = check_compatible(&current, &config).expect_err("removed");
        prop_assert_eq!(err.diffs, vec![FieldDiff {
            field: "chains[].chainId".into(),
            stored: json!(current.chain_ids()),
            current: json!(config.chain_ids()),
        }]);
    }
}
