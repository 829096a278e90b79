//! A hung PostgreSQL (every process `SIGSTOP`ped: sockets open, packets acknowledged,
//! nothing answers): every call of the client ends within its time limits, health
//! reports `database-unreachable`, and all is well again after `SIGCONT`.

use std::time::{Duration, Instant};

use tidemark_db_client::test_utils::fixtures::{following_status, migrated_instance, public_config};
use tidemark_db_client::test_utils::metadata::{write_indexing_status, write_public_config};
use tidemark_db_client::test_utils::{PrivatePg, eventually};
use tidemark_db_client::{DbClient, DbError, EventQuery, Reason};
use tidemark_shared_types::SchemaName;

use crate::SOON;
use crate::client::fast;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_server_times_out_is_reported_and_recovers() {
    let pg = PrivatePg::start().await;
    let url = pg.create_database("hung").await;
    let schema = SchemaName::new("tidemark_demo").expect("valid");
    let pool = migrated_instance(&url, &schema).await;
    {
        let mut conn = pool.get().await.expect("conn");
        write_public_config(&mut conn, &public_config("tidemark_demo", &[1])).await.expect("config");
        write_indexing_status(&mut conn, &schema, &following_status(&[(1, 10, 10)])).await.expect("status");
    }
    let mut settings = fast(&url);
    settings.unreachable_after = Duration::from_secs(5);
    settings.pool.max_size = 1;
    settings.pool.query_timeout = Duration::from_secs(2);
    let db = DbClient::new(settings).expect("client");
    eventually(SOON, "healthy", async || db.health().healthy).await;
    // A connection used just now is handed out again without a test query: only the
    // query's own time limit can end a call on it.
    db.events(&EventQuery::default()).await.expect("events before the freeze");

    let frozen = pg.freeze();
    let started = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(20), db.events(&EventQuery::default()))
        .await
        .unwrap_or_else(|_| panic!("db.events() still waiting after 20 s on a hung server"))
        .expect_err("nothing answers");
    let took = started.elapsed();
    assert!(matches!(err, DbError::Timeout(_)), "{err:?}");
    assert!(took < Duration::from_secs(4), "the call took {took:?} (query timeout 2 s)");
    eventually(SOON, "database-unreachable", async || {
        db.health().reasons.contains(&Reason::DatabaseUnreachable)
    })
    .await;
    let detected = started.elapsed();
    assert!(detected < Duration::from_secs(15), "reported after {detected:?}");

    frozen.thaw();
    eventually(SOON, "healthy again", async || db.health().healthy).await;
    db.events(&EventQuery::default()).await.expect("events after the thaw");
}
