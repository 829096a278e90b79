//! "Readers ignore unknown JSON fields, so a newer indexer's additions do not break an older
//! API" (DESIGN §2): every object of every fixture gets extra fields, and each type still
//! reads it, to the same value as without them.

use std::collections::BTreeMap;
use std::fmt::Debug;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tidemark_shared_types::{
    BlockRef, ChainIndexingConfig, ChainSnapshot, EpochItem, EpochSummary, EventItem, IndexingStatus,
    PublicConfig, RealtimeProjection,
};

use crate::fixtures::{FixtureKind, read_value, stem, valid_fixtures};

/// Adds fields a newer writer might add to every object of `value`, except inside maps whose
/// keys are data (`chains` keyed by chain id in a status) or free-form values (`args`).
fn add_unknown_fields(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                match key.as_str() {
                    "args" => {}
                    "chains" if child.is_object() => {
                        for chain in child.as_object_mut().expect("object").values_mut() {
                            add_unknown_fields(chain);
                        }
                    }
                    _ => add_unknown_fields(child),
                }
            }
            map.insert("newerField".into(), json!({"nested": [1, "two", null], "flag": true}));
            map.insert("zz_extra".into(), json!(42));
        }
        Value::Array(items) => items.iter_mut().for_each(add_unknown_fields),
        _ => {}
    }
}

/// Reads `value` with unknown fields added and checks it equals reading `value` itself.
fn ignores_unknown<T>(name: &str, value: &Value) -> T
where
    T: DeserializeOwned + Serialize + PartialEq + Debug,
{
    let plain: T = serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut extended = value.clone();
    add_unknown_fields(&mut extended);
    assert_ne!(&extended, value);
    let text = serde_json::to_string(&extended).expect("serializes");
    let from_text: T = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{name}: unknown fields are not ignored (text): {e}"));
    let from_value: T = serde_json::from_value(extended)
        .unwrap_or_else(|e| panic!("{name}: unknown fields are not ignored (Value): {e}"));
    assert_eq!(from_text, plain, "{name}");
    assert_eq!(from_value, plain, "{name}");
    assert_eq!(&serde_json::to_value(&from_text).expect("serializes"), value, "{name}");
    plain
}

#[test]
fn every_fixture_type_ignores_unknown_fields() {
    for (path, kind) in valid_fixtures() {
        let name = stem(&path);
        let value = read_value(&path);
        match kind {
            FixtureKind::PublicConfig => drop(ignores_unknown::<PublicConfig>(&name, &value)),
            FixtureKind::Status => drop(ignores_unknown::<IndexingStatus>(&name, &value)),
            FixtureKind::Projection => drop(ignores_unknown::<RealtimeProjection>(&name, &value)),
            FixtureKind::Event => drop(ignores_unknown::<EventItem>(&name, &value)),
            FixtureKind::Epoch => drop(ignores_unknown::<EpochItem>(&name, &value)),
            FixtureKind::EpochSummary => drop(ignores_unknown::<EpochSummary>(&name, &value)),
        }
    }
}

#[test]
fn chain_snapshots_and_their_parts_ignore_unknown_fields() {
    let mut seen = 0;
    for (path, kind) in valid_fixtures() {
        if kind != FixtureKind::Status {
            continue;
        }
        let name = stem(&path);
        let value = read_value(&path);
        let chains = value["omnichainSnapshot"]["chains"].as_object().expect("chains object");
        for (id, chain) in chains {
            let name = format!("{name}: chain {id}");
            ignores_unknown::<ChainSnapshot>(&name, chain);
            ignores_unknown::<ChainIndexingConfig>(&name, &chain["config"]);
            ignores_unknown::<BlockRef>(&name, &chain["config"]["startBlock"]);
            seen += 1;
        }
        // The map itself is keyed by chain id: its keys are data, not fields.
        let map: BTreeMap<u64, ChainSnapshot> =
            serde_json::from_value(value["omnichainSnapshot"]["chains"].clone()).expect("chains");
        assert_eq!(map.len(), chains.len(), "{name}");
    }
    assert!(seen >= 7, "too few chain snapshots in the fixtures");
}

/// A field added later at the top of a snapshot (e.g. `epochs` next to the status) is
/// ignored, and so is an unknown field that happens to look like a known one elsewhere.
#[test]
fn specific_additions_are_ignored() {
    let path = crate::fixtures::fixtures_dir().join("status_multichain_following.json");
    let value = read_value(&path);
    let plain: IndexingStatus = serde_json::from_value(value.clone()).expect("valid");

    let mut with_epochs = value.clone();
    with_epochs["epochs"] = json!([{"chainId": 1, "epochId": 7, "stage": "stored"}]);
    with_epochs["omnichainSnapshot"]["chains"]["31337"]["latestFinalizedBlock"] =
        json!({"number": 400, "timestamp": 1_795_420_187u64, "hash": "0x00"});
    // A queued-only field on a started chain, and a backfill field on a following chain.
    with_epochs["omnichainSnapshot"]["chains"]["31337"]["backfillEndBlock"] =
        value["omnichainSnapshot"]["chains"]["1"]["backfillEndBlock"].clone();
    let read: IndexingStatus = serde_json::from_value(with_epochs).expect("unknown fields are ignored");
    assert_eq!(read, plain);

    let config = read_value(&crate::fixtures::fixtures_dir().join("public_config.json"));
    let mut newer = config.clone();
    newer["versionInfo"]["gitCommit"] = json!("0123abc");
    newer["chains"][0]["contracts"][0]["abiHash"] = json!("0xfeed");
    newer["chains"][0]["label"] = json!("anvil");
    let read: PublicConfig = serde_json::from_value(newer).expect("unknown fields are ignored");
    assert_eq!(read, serde_json::from_value::<PublicConfig>(config).expect("valid"));
}
