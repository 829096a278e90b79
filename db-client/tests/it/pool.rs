use std::time::{Duration, Instant};

use tidemark_db_client::test_utils::free_port;
use tidemark_db_client::test_utils::metadata::read_public_config;
use tidemark_db_client::writer::PgPool;
use tidemark_db_client::{DbError, PoolConfig};
use tidemark_shared_types::SchemaName;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_gives_a_typed_error_quickly() {
    let mut cfg = PoolConfig::new(format!("postgres://postgres@127.0.0.1:{}/postgres", free_port()));
    cfg.connect_timeout = Duration::from_secs(1);
    cfg.checkout_timeout = Duration::from_secs(1);
    let pool = PgPool::new(cfg).expect("building the pool never connects");
    let started = Instant::now();
    let Err(err) = pool.get().await else { panic!("nothing listens there") };
    assert!(err.is_unavailable(), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_times_out() {
    // Accepts TCP connections but never speaks: connect must time out, not hang.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let mut cfg = PoolConfig::new(format!("postgres://postgres@127.0.0.1:{port}/postgres"));
    cfg.connect_timeout = Duration::from_millis(800);
    cfg.checkout_timeout = Duration::from_millis(800);
    let pool = PgPool::new(cfg).expect("pool");
    let started = Instant::now();
    let Err(err) = pool.get().await else { panic!("silent server") };
    assert!(matches!(err, DbError::Timeout(_) | DbError::Unavailable(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_cancels_long_queries() {
    let db = tidemark_db_client::test_utils::TestDb::new().await;
    let mut cfg = PoolConfig::new(db.url.clone());
    cfg.statement_timeout = Duration::from_millis(200);
    let pool = PgPool::new(cfg).expect("pool");
    let mut conn = pool.get().await.expect("conn");
    let started = Instant::now();
    let err = diesel_async::RunQueryDsl::execute(diesel::sql_query("SELECT pg_sleep(5)"), &mut conn)
        .await
        .expect_err("cancelled");
    assert!(err.to_string().contains("statement timeout"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn bad_schema_names_are_rejected_before_any_sql() {
    // No database at all: the name is refused by construction.
    for bad in ["Public", "pg_catalog", "x\"y", "tidemark", ""] {
        assert!(SchemaName::new(bad).is_err(), "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_database_reads_as_uninitialized() {
    let db = tidemark_db_client::test_utils::TestDb::new().await;
    let pool = PgPool::new(PoolConfig::new(db.url.clone())).expect("pool");
    let mut conn = pool.get().await.expect("conn");
    let schema = SchemaName::new("tidemark_demo").expect("name");
    // No migrations have run: no tidemark schema at all.
    assert_eq!(read_public_config(&mut conn, &schema).await.expect("no error"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_connections_keep_the_settings_and_say_what_the_server_said() {
    let db = tidemark_db_client::test_utils::TestDb::new().await;
    let mut cfg = PoolConfig::new(db.url.clone());
    cfg.statement_timeout = Duration::from_millis(200);
    cfg.application_name = "tidemark-raw-test".into();
    let client = PgPool::new(cfg).expect("pool").connect_raw().await.expect("connects");
    let row = client.query_one("SELECT current_setting('application_name')", &[]).await.expect("row");
    assert_eq!(row.get::<_, String>(0), "tidemark-raw-test");
    // A server error carries the server's message, not only "db error".
    let err = DbError::from(client.batch_execute("SELECT * FROM no_such_table").await.expect_err("missing"));
    assert!(err.to_string().contains("no_such_table"), "{err}");
    assert!(!err.is_unavailable(), "an SQL error is an answer: {err:?}");
    let err = DbError::from(client.batch_execute("SELECT pg_sleep(5)").await.expect_err("cancelled"));
    assert!(err.to_string().contains("statement timeout"), "{err}");
    // Nothing listens: unavailable, and the message says why.
    let mut cfg = PoolConfig::new(format!("postgres://postgres@127.0.0.1:{}/postgres", free_port()));
    cfg.connect_timeout = Duration::from_secs(1);
    let Err(err) = PgPool::new(cfg).expect("pool").connect_raw().await else {
        panic!("nothing listens there")
    };
    assert!(err.is_unavailable(), "{err:?}");
    assert!(err.to_string().to_lowercase().contains("refused"), "{err}");
}

#[derive(diesel::QueryableByName)]
struct Pid {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pid: i32,
}

async fn backend_pid(conn: &mut diesel_async::AsyncPgConnection) -> Result<i32, diesel::result::Error> {
    let row: Pid =
        diesel_async::RunQueryDsl::get_result(diesel::sql_query("SELECT pg_backend_pid() AS pid"), conn)
            .await?;
    Ok(row.pid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_server_process_ended_is_replaced_at_checkout() {
    let db = tidemark_db_client::test_utils::TestDb::new().await;
    let mut cfg = PoolConfig::new(db.url.clone());
    cfg.max_size = 1;
    let pool = PgPool::new(cfg.clone()).expect("pool");
    let admin = PgPool::new(cfg).expect("admin pool");
    // Checked out again soon after its last use (no test query on checkout), and after
    // an idle spell (test query on checkout): either way the caller gets a live connection.
    for idle in [
        Duration::from_millis(100),
        tidemark_db_client::writer::VERIFY_AFTER_IDLE + Duration::from_millis(200),
    ] {
        let before = backend_pid(&mut pool.get().await.expect("conn")).await.expect("pid");
        let mut a = admin.get().await.expect("admin conn");
        diesel_async::RunQueryDsl::execute(
            // Waits (up to 5 s) until the server process has exited.
            diesel::sql_query(format!("SELECT pg_terminate_backend({before}, 5000)")),
            &mut *a,
        )
        .await
        .expect("terminate");
        tokio::time::sleep(idle).await;
        let after = backend_pid(&mut pool.get().await.expect("conn after the backend ended"))
            .await
            .unwrap_or_else(|e| panic!("after {idle:?} idle the pool handed out a dead connection: {e}"));
        assert_ne!(before, after, "a new server process serves the checkout");
    }
}

#[test]
fn connections_carry_keepalives_and_a_tcp_user_timeout() {
    use tidemark_db_client::tls::{PgConnector, SocketTimeouts};
    let socket = SocketTimeouts {
        connect: Duration::from_secs(5),
        keepalives_idle: Duration::from_secs(5),
        tcp_user_timeout: Duration::from_secs(10),
    };
    let c = PgConnector::new("postgres://postgres@127.0.0.1:5432/postgres")
        .expect("url")
        .with_socket_timeouts(socket);
    let config = c.config();
    assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(5)));
    assert!(config.get_keepalives());
    assert_eq!(config.get_keepalives_idle(), Duration::from_secs(5));
    assert!(config.get_keepalives_interval().is_some_and(|i| i <= Duration::from_secs(2)));
    assert_eq!(config.get_keepalives_retries(), Some(3));
    assert_eq!(config.get_tcp_user_timeout(), Some(&Duration::from_secs(10)));
    // What the connection string says wins.
    let url = "postgres://postgres@127.0.0.1:5432/postgres?tcp_user_timeout=30&keepalives_idle=60";
    let c = PgConnector::new(url).expect("url").with_socket_timeouts(socket);
    assert_eq!(c.config().get_tcp_user_timeout(), Some(&Duration::from_secs(30)));
    assert_eq!(c.config().get_keepalives_idle(), Duration::from_secs(60));
    // The pool's defaults are applied.
    let pool = PgPool::new(PoolConfig::new("postgres://postgres@127.0.0.1:5432/postgres")).expect("pool");
    assert_eq!(pool.config().tcp_user_timeout, Duration::from_secs(10));
}
