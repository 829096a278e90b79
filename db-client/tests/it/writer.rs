//! The writer's statements that no reader path exercises.

use diesel::QueryableByName;
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use tidemark_db_client::test_utils::fixtures::{block, epoch, insert_epochs, seeded_instance};
use tidemark_db_client::types::{BlockRef, EpochStage, SchemaName};
use tidemark_db_client::writer::{Batch, Writer};

#[derive(QueryableByName, Debug, PartialEq)]
struct Key {
    #[diesel(sql_type = BigInt)]
    chain_id: i64,
    #[diesel(sql_type = BigInt)]
    epoch_id: i64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_keeps_the_newest_epochs_of_each_chain() {
    let schema = SchemaName::new("tidemark_demo").expect("name");
    let (_db, pool, mut conn) = seeded_instance(&schema, &[]).await;
    let epochs: Vec<_> = (1..=5)
        .map(|i| epoch(1, i, EpochStage::Finalized))
        .chain((1..=3).map(|i| epoch(2, i, EpochStage::Stored)))
        .collect();
    insert_epochs(&mut conn, &schema, &epochs).await.expect("epochs");

    let mut writer = Writer::try_acquire(&pool, &schema).await.expect("connects").expect("the lock");
    assert_eq!(writer.prune_epochs(1, 2).await.expect("pruned"), 3);
    assert_eq!(writer.prune_epochs(1, 2).await.expect("pruned again"), 0);
    assert_eq!(writer.prune_epochs(2, 10).await.expect("fewer than retained"), 0);
    let left: Vec<Key> =
        diesel::sql_query("SELECT chain_id, epoch_id FROM tidemark_demo.epochs ORDER BY 1, 2")
            .load(&mut conn)
            .await
            .expect("epochs left");
    let left: Vec<(i64, i64)> = left.iter().map(|k| (k.chain_id, k.epoch_id)).collect();
    assert_eq!(left, [(1, 4), (1, 5), (2, 1), (2, 2), (2, 3)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_number_beyond_bigint_is_refused_not_clamped() {
    let schema = SchemaName::new("tidemark_demo").expect("name");
    let (_db, pool, _conn) = seeded_instance(&schema, &[]).await;
    let mut writer = Writer::try_acquire(&pool, &schema).await.expect("connects").expect("the lock");
    let beyond = BlockRef { number: i64::MAX as u64 + 1, ..block(1) };
    let e = writer.commit(Batch::new(1, &[], &beyond)).await.expect_err("refused");
    assert!(e.is_invalid_input(), "{e}");
    assert_eq!(writer.checkpoint(1).await.expect("checkpoint"), None, "nothing stored");
}
