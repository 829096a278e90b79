use std::collections::BTreeMap;

use tidemark_db_client::test_utils::metadata::{
    read_indexing_status, read_public_config, write_indexing_status, write_public_config,
};
use tidemark_shared_types::config::{PublicChainConfig, PublicContractConfig};
use tidemark_shared_types::{
    BlockRef, ChainIndexingConfig, ChainSnapshot, IndexingStatus, PublicConfig, SchemaName, VersionInfo,
};

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

fn block(number: u64) -> BlockRef {
    BlockRef { number, timestamp: 1_795_410_000 + number, hash: format!("0x{number:064x}") }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_and_status_round_trip() {
    let (_db, pool) = crate::migrated().await;
    let schema = SchemaName::new("tidemark_demo").expect("name");
    let mut conn = pool.get().await.expect("conn");
    assert_eq!(read_public_config(&mut conn, &schema).await.expect("read"), None);
    assert_eq!(read_indexing_status(&mut conn, &schema).await.expect("read"), None);

    write_public_config(&mut conn, &config()).await.expect("write config");
    let stored = read_public_config(&mut conn, &schema).await.expect("read").expect("present");
    assert_eq!(stored.value, config());
    assert!(stored.age_secs >= 0.0 && stored.age_secs < 5.0, "{}", stored.age_secs);

    let chains = BTreeMap::from([(
        31337,
        ChainSnapshot::Following {
            stalled: None,
            webhooks: None,
            progress: None,
            sources: Vec::new(),
            config: ChainIndexingConfig::LeftBounded { start_block: block(0) },
            latest_indexed_block: block(40),
            latest_known_block: block(41),
        },
    )]);
    let status = IndexingStatus::derive(chains, 1_795_420_000).expect("valid");
    write_indexing_status(&mut conn, &schema, &status).await.expect("write status");
    let first = read_indexing_status(&mut conn, &schema).await.expect("read").expect("present");
    assert_eq!(first.value, status);

    // A second upsert replaces the row and moves updated_at forward.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    write_indexing_status(&mut conn, &schema, &status).await.expect("rewrite");
    let second = read_indexing_status(&mut conn, &schema).await.expect("read").expect("present");
    assert!(second.updated_at > first.updated_at);

    // Another instance on the same database sees nothing.
    let other = SchemaName::new("tidemark_other").expect("name");
    assert_eq!(read_public_config(&mut conn, &other).await.expect("read"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inconsistent_stored_status_is_a_typed_error() {
    let (_db, pool) = crate::migrated().await;
    let schema = SchemaName::new("tidemark_demo").expect("name");
    let mut conn = pool.get().await.expect("conn");
    // omnichainStatus says following, but the only chain is queued.
    let bad = serde_json::json!({"strategy": "omnichain", "snapshotTime": 10, "slowestChainIndexingCursor": 0,
        "omnichainSnapshot": {"omnichainStatus": "omnichain-following", "omnichainIndexingCursor": 0,
        "chains": {"1": {"chainStatus": "chain-queued", "config": {"rangeType": "left-bounded",
        "startBlock": {"number": 0, "timestamp": 1, "hash": "0x00"}}}}}});
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query("INSERT INTO tidemark.metadata (instance_schema, key, value) VALUES ('tidemark_demo', 'indexing_status', $1)")
            .bind::<diesel::sql_types::Jsonb, _>(bad),
        &mut conn,
    )
    .await
    .expect("insert");
    let err = read_indexing_status(&mut conn, &schema).await.expect_err("rejected");
    assert!(matches!(err, tidemark_db_client::DbError::InvalidStoredValue { .. }), "{err:?}");
}
