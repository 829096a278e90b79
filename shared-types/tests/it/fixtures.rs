//! Golden fixtures: every valid file deserializes into its type and serializes back to the
//! same JSON value; every invalid status is rejected with a message naming its invariant.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tidemark_shared_types::{
    ChainSnapshot, Cursor, EpochItem, EpochStage, EpochSummary, EventItem, IndexingStatus, OmnichainStatus,
    PublicChainConfig, PublicConfig, PublicContractConfig, RealtimeProjection, VersionInfo,
};

use crate::generators::block_refs;

/// `tests/fixtures`.
pub(crate) fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures")
}

/// The `*.json` files directly in `dir`, sorted by name.
pub(crate) fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

/// The file name without `.json`.
pub(crate) fn stem(path: &Path) -> String {
    path.file_stem().expect("file name").to_string_lossy().into_owned()
}

pub(crate) fn read_text(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

pub(crate) fn read_value(path: &Path) -> Value {
    serde_json::from_str(&read_text(path)).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// What a valid fixture holds, by file-name prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FixtureKind {
    PublicConfig,
    Status,
    Projection,
    Event,
    Epoch,
    EpochSummary,
}

pub(crate) fn kind_of(path: &Path) -> FixtureKind {
    let name = stem(path);
    if name.starts_with("public_config") {
        FixtureKind::PublicConfig
    } else if name.starts_with("status_") {
        FixtureKind::Status
    } else if name.starts_with("realtime_projection") {
        FixtureKind::Projection
    } else if name.starts_with("event_item") {
        FixtureKind::Event
    } else if name.starts_with("epoch_item") {
        FixtureKind::Epoch
    } else if name.starts_with("epoch_summary") {
        FixtureKind::EpochSummary
    } else {
        panic!(
            "{}: unknown fixture prefix (public_config, status_, realtime_projection, event_item, epoch_item, \
             epoch_summary)",
            name
        )
    }
}

/// The valid fixtures, with their kinds.
pub(crate) fn valid_fixtures() -> Vec<(PathBuf, FixtureKind)> {
    json_files(&fixtures_dir()).into_iter().map(|p| (p.clone(), kind_of(&p))).collect()
}

/// Deserializes `value` as `T` both from the text and from a `Value` (serde takes different
/// paths for the two, notably for internally tagged enums) and checks that both serialize
/// back to `value`.
pub(crate) fn round_trip<T>(name: &str, text: &str, value: &Value) -> T
where
    T: DeserializeOwned + Serialize + PartialEq + Debug,
{
    let from_text: T =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: does not deserialize: {e}"));
    let from_value: T = serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("{name}: does not deserialize from a Value: {e}"));
    assert_eq!(from_text, from_value, "{name}: text and Value deserialize differently");
    let back = serde_json::to_value(&from_text).expect("serializes");
    assert_eq!(&back, value, "{name}: does not re-serialize to the same JSON");
    // And the serialized text reads back to the same thing.
    let again: T = serde_json::from_str(&serde_json::to_string(&from_text).expect("serializes"))
        .unwrap_or_else(|e| panic!("{name}: own output does not deserialize: {e}"));
    assert_eq!(again, from_text, "{name}: own output reads back differently");
    from_text
}

fn load<T>(file: &str) -> T
where
    T: DeserializeOwned + Serialize + PartialEq + Debug,
{
    let path = fixtures_dir().join(file);
    round_trip(file, &read_text(&path), &read_value(&path))
}

fn load_status(file: &str) -> IndexingStatus {
    load(file)
}

fn status_fixtures() -> Vec<(String, IndexingStatus)> {
    valid_fixtures()
        .into_iter()
        .filter(|(_, k)| *k == FixtureKind::Status)
        .map(|(p, _)| {
            let name = stem(&p);
            let status = round_trip(&name, &read_text(&p), &read_value(&p));
            (name, status)
        })
        .collect()
}

#[test]
fn every_valid_fixture_round_trips() {
    let fixtures = valid_fixtures();
    for (path, kind) in &fixtures {
        let name = stem(path);
        let (text, value) = (read_text(path), read_value(path));
        match kind {
            FixtureKind::PublicConfig => drop(round_trip::<PublicConfig>(&name, &text, &value)),
            FixtureKind::Status => drop(round_trip::<IndexingStatus>(&name, &text, &value)),
            FixtureKind::Projection => drop(round_trip::<RealtimeProjection>(&name, &text, &value)),
            FixtureKind::Event => drop(round_trip::<EventItem>(&name, &text, &value)),
            FixtureKind::Epoch => drop(round_trip::<EpochItem>(&name, &text, &value)),
            FixtureKind::EpochSummary => drop(round_trip::<EpochSummary>(&name, &text, &value)),
        }
    }
    for kind in [
        FixtureKind::PublicConfig,
        FixtureKind::Status,
        FixtureKind::Projection,
        FixtureKind::Event,
        FixtureKind::Epoch,
        FixtureKind::EpochSummary,
    ] {
        assert!(fixtures.iter().any(|(_, k)| *k == kind), "no fixture of kind {kind:?}");
    }
}

#[test]
fn public_config_fixture_is_the_design_example() {
    let config: PublicConfig = load("public_config.json");
    let expected = PublicConfig {
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
        version_info: VersionInfo { tidemark: "0.1.0".into(), schema_version: 1 },
    };
    assert_eq!(config, expected);
    assert_eq!(config.clone().normalized(), config, "the stored form is normalized");
    // `endBlock: null` is written out, not skipped.
    let value = serde_json::to_value(&config).expect("serializes");
    assert_eq!(value["chains"][0]["contracts"][0]["endBlock"], Value::Null);
    assert!(value["chains"][0]["contracts"][0].as_object().expect("object").contains_key("endBlock"));
}

#[test]
fn status_fixtures_cover_every_chain_and_omnichain_status() {
    let mut chain_kinds = BTreeSet::new();
    let mut omni = BTreeSet::new();
    for (_, status) in status_fixtures() {
        omni.insert(format!("{:?}", status.omnichain_snapshot.omnichain_status));
        for chain in status.omnichain_snapshot.chains.values() {
            let value = serde_json::to_value(chain).expect("serializes");
            chain_kinds.insert((
                value["chainStatus"].as_str().expect("chainStatus").to_owned(),
                value["config"]["rangeType"].as_str().expect("rangeType").to_owned(),
            ));
        }
    }
    let expected_chains: BTreeSet<(String, String)> = [
        ("chain-queued", "left-bounded"),
        ("chain-queued", "bounded"),
        ("chain-backfill", "left-bounded"),
        ("chain-backfill", "bounded"),
        ("chain-following", "left-bounded"),
        ("chain-following", "bounded"),
        ("chain-completed", "bounded"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_owned(), b.to_owned()))
    .collect();
    assert_eq!(chain_kinds, expected_chains);
    let expected_omni: BTreeSet<String> = [
        OmnichainStatus::Unstarted,
        OmnichainStatus::Backfill,
        OmnichainStatus::Following,
        OmnichainStatus::Completed,
    ]
    .iter()
    .map(|s| format!("{s:?}"))
    .collect();
    assert_eq!(omni, expected_omni);
}

#[test]
fn status_fixtures_equal_their_derivation() {
    for (name, status) in status_fixtures() {
        let derived = IndexingStatus::derive(status.omnichain_snapshot.chains.clone(), status.snapshot_time)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        // `indexBuild` is reported, not derived from the chains.
        let derived = IndexingStatus { index_build: status.index_build.clone(), ..derived };
        assert_eq!(derived, status, "{name}: the stored omnichain fields are not the derived ones");
        assert_eq!(status.validate(), Ok(()), "{name}");
    }
}

fn is_block_hash(s: &str) -> bool {
    s.len() == 66
        && s.starts_with("0x")
        && s[2..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The fixtures look like real data: 32-byte hashes, one hash per block, timestamps that
/// grow with block numbers, and a snapshot time no earlier than any indexed or known block
/// (only a bounded range's end block may lie ahead, beyond the head).
#[test]
fn status_fixtures_are_realistic() {
    for (name, status) in status_fixtures() {
        for (id, chain) in &status.omnichain_snapshot.chains {
            let mut refs = block_refs(chain);
            refs.sort_by_key(|b| b.number);
            let end = chain.config().end_block();
            for b in &refs {
                assert!(is_block_hash(&b.hash), "{name}: chain {id}: bad hash {}", b.hash);
                if Some(*b) != end {
                    assert!(
                        b.timestamp <= status.snapshot_time,
                        "{name}: chain {id}: block after snapshotTime"
                    );
                }
            }
            for w in refs.windows(2) {
                if w[0].number == w[1].number {
                    assert_eq!(w[0], w[1], "{name}: chain {id}: two refs to block {}", w[0].number);
                } else {
                    assert!(w[0].timestamp < w[1].timestamp, "{name}: chain {id}: timestamps do not grow");
                    assert_ne!(w[0].hash, w[1].hash, "{name}: chain {id}: two blocks share a hash");
                }
            }
        }
    }
}

#[test]
fn multichain_fixture_is_the_design_example() {
    let status = load_status("status_multichain_following.json");
    assert_eq!(status.snapshot_time, 1_795_420_200);
    assert_eq!(status.slowest_chain_indexing_cursor, 1_795_419_000);
    assert_eq!(status.omnichain_snapshot.omnichain_status, OmnichainStatus::Following);
    assert_eq!(status.chain_ids(), [1, 31337]);
    let value = serde_json::to_value(&status).expect("serializes");
    let chains = &value["omnichainSnapshot"]["chains"];
    assert_eq!(chains["1"]["chainStatus"], json!("chain-backfill"));
    assert_eq!(chains["1"]["latestIndexedBlock"]["timestamp"], json!(1_795_419_000));
    assert_eq!(chains["31337"]["chainStatus"], json!("chain-following"));
    assert_eq!(chains["31337"]["latestKnownBlock"]["number"], json!(412));
}

#[test]
fn gap_fixture_takes_the_earliest_queued_start_minus_one() {
    // Queued and completed chains only: nothing is started-not-completed, not all are
    // completed and not all are queued.
    let status = load_status("status_queued_and_completed.json");
    let chains = &status.omnichain_snapshot.chains;
    assert!(chains.values().any(|c| matches!(c, ChainSnapshot::Queued { .. })));
    assert!(chains.values().any(|c| matches!(c, ChainSnapshot::Completed { .. })));
    assert!(
        chains.values().all(|c| matches!(c, ChainSnapshot::Queued { .. } | ChainSnapshot::Completed { .. }))
    );
    assert_eq!(status.omnichain_snapshot.omnichain_status, OmnichainStatus::Backfill);
    assert_eq!(status.omnichain_snapshot.omnichain_indexing_cursor, 1_795_100_000 - 1);
}

#[test]
fn realtime_projection_fixture_is_the_projection_of_its_snapshot() {
    let projection: RealtimeProjection = load("realtime_projection.json");
    assert_eq!(RealtimeProjection::project(projection.snapshot.clone(), projection.projected_at), projection);
    assert_eq!(projection.worst_case_distance, 1_795_420_205 - 1_795_419_000);
    assert_eq!(projection.snapshot, load_status("status_multichain_following.json"));
}

#[test]
fn event_item_fixture() {
    let item: EventItem = load("event_item.json");
    // Above 2^53: a JSON number would lose it, the decimal string keeps it.
    assert_eq!(item.cursor, Cursor(9_007_199_254_740_993));
    let value = serde_json::to_value(&item).expect("serializes");
    assert_eq!(value["cursor"], json!("9007199254740993"));
    assert_eq!(value["args"]["value"], json!("1000000000000000000"));
    assert!(is_block_hash(&item.block_hash) && is_block_hash(&item.transaction_hash));
}

#[test]
fn epoch_fixtures() {
    let item: EpochItem = load("epoch_item.json");
    assert_eq!((item.chain_id, item.epoch_id, item.stage), (31337, 42, EpochStage::Finalized));
    assert_eq!(item.stages.last().map(|s| s.stage), Some(item.stage), "the stage is the last of the history");
    assert!(item.stages.windows(2).all(|w| w[0].at <= w[1].at), "the history is in time order");
    // `at` keeps its milliseconds.
    assert_eq!(item.stages[0].at, 1_795_420_100.125);

    let summary: EpochSummary = load("epoch_summary.json");
    let latest = summary.latest.as_ref().expect("latest");
    assert_eq!((latest.stage, summary.not_finalized), (EpochStage::Reorged, 12));
    // `error: null` is written out, not skipped.
    let value = serde_json::to_value(&summary).expect("serializes");
    assert!(value["latest"].as_object().expect("object").contains_key("error"));
}

/// Each invalid fixture and a fragment of the message it must be rejected with.
const INVALID: &[(&str, &str)] = &[
    ("backfill_end_beyond_end_block", "chain-backfill: backfillEndBlock is beyond endBlock"),
    ("backfill_latest_below_start", "chain-backfill: latestIndexedBlock is below startBlock"),
    ("backfill_latest_beyond_backfill_end", "chain-backfill: latestIndexedBlock is beyond backfillEndBlock"),
    ("bounded_end_below_start", "config.endBlock is below config.startBlock"),
    ("completed_latest_not_end_block", "chain-completed: latestIndexedBlock differs from endBlock"),
    ("completed_left_bounded", "chain-completed requires a bounded range"),
    ("following_latest_below_start", "chain-following: latestIndexedBlock is below startBlock"),
    (
        "following_latest_beyond_latest_known",
        "chain-following: latestIndexedBlock is beyond latestKnownBlock",
    ),
    ("no_chains", "a snapshot needs at least one chain"),
    ("omnichain_cursor_wrong", "omnichainIndexingCursor does not match the chains"),
    ("omnichain_status_mismatch", "omnichainStatus does not match the chain statuses"),
    ("slowest_cursor_differs", "slowestChainIndexingCursor differs from omnichainIndexingCursor"),
    ("unknown_chain_status", "unknown variant `chain-paused`"),
];

#[test]
fn every_invalid_fixture_is_rejected_naming_its_invariant() {
    let dir = fixtures_dir().join("invalid");
    let files = json_files(&dir);
    let names: BTreeSet<String> = files.iter().map(|p| stem(p)).collect();
    let listed: BTreeSet<String> = INVALID.iter().map(|(n, _)| (*n).to_owned()).collect();
    assert_eq!(names, listed, "every file in tests/fixtures/invalid needs an expected message here");
    for (name, expected) in INVALID {
        let path = dir.join(format!("{name}.json"));
        let err = serde_json::from_str::<IndexingStatus>(&read_text(&path))
            .expect_err(&format!("{name} must be rejected"))
            .to_string();
        assert!(err.contains(expected), "{name}: {err:?} does not name {expected:?}");
        let err = serde_json::from_value::<IndexingStatus>(read_value(&path))
            .expect_err(&format!("{name} must be rejected from a Value"))
            .to_string();
        assert!(err.contains(expected), "{name}: {err:?} does not name {expected:?}");
        // The same snapshot is also refused inside a projection.
        let projection =
            json!({"projectedAt": 1_800_000_000u64, "worstCaseDistance": 0, "snapshot": read_value(&path)});
        let err = serde_json::from_value::<RealtimeProjection>(projection)
            .expect_err(&format!("{name} must be rejected inside a projection"))
            .to_string();
        assert!(err.contains(expected), "{name}: {err:?} does not name {expected:?}");
    }
}

/// Each invalid fixture breaks one invariant only: a chain-level one in exactly one chain
/// (the others validate), or an omnichain-level one in snapshots whose chains are all valid
/// and whose derivation differs from the file in the broken field only.
#[test]
fn invalid_fixtures_break_one_invariant_each() {
    let dir = fixtures_dir().join("invalid");
    for (name, expected) in INVALID {
        if matches!(*name, "unknown_chain_status" | "no_chains") {
            continue;
        }
        let bad = read_value(&dir.join(format!("{name}.json")));
        let chains: BTreeMap<u64, ChainSnapshot> =
            serde_json::from_value(bad["omnichainSnapshot"]["chains"].clone())
                .unwrap_or_else(|e| panic!("{name}: chains do not parse: {e}"));
        let failing: Vec<String> =
            chains.values().filter_map(|c| c.validate().err()).map(|e| e.to_string()).collect();
        if expected.starts_with("chain-") || expected.starts_with("config.") {
            assert_eq!(failing.len(), 1, "{name}: {failing:?}");
            assert!(failing[0].contains(expected), "{name}: {failing:?}");
        } else {
            assert_eq!(failing, Vec::<String>::new(), "{name}");
            let snapshot_time = bad["snapshotTime"].as_u64().expect("snapshotTime");
            let derived = IndexingStatus::derive(chains, snapshot_time).expect("derivable");
            let derived = serde_json::to_value(&derived).expect("serializes");
            let differing = leaf_differences(&derived, &bad);
            assert!((1..=2).contains(&differing), "{name}: {differing} fields differ from the derivation");
        }
    }
}

/// How many leaves differ between two JSON values (a missing subtree counts as one).
fn leaf_differences(a: &Value, b: &Value) -> usize {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter()
                .map(|k| match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => leaf_differences(p, q),
                    _ => 1,
                })
                .sum()
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            x.iter().zip(y).map(|(p, q)| leaf_differences(p, q)).sum()
        }
        _ => usize::from(a != b),
    }
}
