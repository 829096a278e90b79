//! PostgreSQL over TLS: `sslmode` and `sslrootcert` as libpq reads them, checked against
//! the shared server (`pg_stat_ssl`) and against private clusters serving a certificate
//! of the test's own CA (or no TLS at all).

use diesel::sql_types::Bool;
use diesel_async::RunQueryDsl;
use tidemark_db_client::PoolConfig;
use tidemark_db_client::test_utils::{PgOptions, PrivatePg, TestCa, TestDb, with_param};
use tidemark_db_client::tls::{self, SslMode, TlsError};
use tidemark_db_client::writer::PgPool;

const SESSION_SSL: &str = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

#[derive(diesel::QueryableByName)]
struct Ssl {
    #[diesel(sql_type = Bool)]
    ssl: bool,
}

/// Whether a pooled session and a raw (`COPY`) session of `url` are encrypted.
async fn sessions_encrypted(url: &str) -> (bool, bool) {
    let pool = PgPool::new(PoolConfig::new(url)).expect("pool");
    let mut conn = pool.get().await.unwrap_or_else(|e| panic!("pooled connection: {e}"));
    let pooled = diesel::sql_query(SESSION_SSL).get_result::<Ssl>(&mut *conn).await.expect("pg_stat_ssl").ssl;
    let raw = pool.connect_raw().await.unwrap_or_else(|e| panic!("raw connection: {e}"));
    let raw = raw.query_one(SESSION_SSL, &[]).await.expect("pg_stat_ssl").get::<_, bool>(0);
    (pooled, raw)
}

/// The error of a pooled checkout, of a raw connection and of [`tls::establish`] on `url`.
async fn connect_errors(url: &str) -> (String, String, TlsError) {
    let pool = PgPool::new(PoolConfig::new(url)).expect("pool");
    let pooled = pool.get().await.err().unwrap_or_else(|| panic!("a pooled connection to {url} succeeded"));
    let raw = pool.connect_raw().await.err().unwrap_or_else(|| panic!("a raw connection to {url} succeeded"));
    let direct = tls::establish(url).await.err().unwrap_or_else(|| panic!("establish {url} succeeded"));
    (pooled.to_string(), raw.to_string(), direct)
}

fn verified(pg: &PrivatePg, mode: &str, root: &std::path::Path) -> String {
    let url = with_param(&pg.url("postgres"), "sslmode", mode);
    with_param(&url, "sslrootcert", &root.display().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_encrypts_pooled_and_raw_sessions_and_disable_does_not() {
    let db = TestDb::new().await;
    assert_eq!(sessions_encrypted(&with_param(&db.url, "sslmode", "require")).await, (true, true));
    assert_eq!(sessions_encrypted(&with_param(&db.url, "sslmode", "disable")).await, (false, false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_uses_tls_when_offered_and_plain_otherwise() {
    let db = TestDb::new().await;
    // prefer is the default.
    assert_eq!(sessions_encrypted(&db.url).await, (true, true));
    assert_eq!(sessions_encrypted(&with_param(&db.url, "sslmode", "prefer")).await, (true, true));
    let plain = PrivatePg::start_with(PgOptions::new().setting("ssl", "off")).await;
    assert_eq!(sessions_encrypted(&plain.url("postgres")).await, (false, false));
    assert_eq!(
        sessions_encrypted(&with_param(&plain.url("postgres"), "sslmode", "allow")).await,
        (false, false)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_fails_clearly_when_the_server_has_no_tls() {
    let plain = PrivatePg::start_with(PgOptions::new().setting("ssl", "off")).await;
    let url = with_param(
        &plain.url("postgres").replace("postgres@", "postgres:hunter2-secret@"),
        "sslmode",
        "require",
    );
    let (pooled, raw, direct) = connect_errors(&url).await;
    assert!(matches!(direct, TlsError::Handshake { sslmode: SslMode::Require, .. }), "{direct:?}");
    for text in [pooled, raw, direct.to_string()] {
        assert!(text.contains("TLS") && text.contains("sslmode=require"), "{text}");
        assert!(text.contains("server does not support TLS"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_accepts_only_the_right_root() {
    let ca = TestCa::new();
    let pg = PrivatePg::start_with(ca.pg_options()).await;
    assert_eq!(sessions_encrypted(&verified(&pg, "verify-full", &ca.ca_path())).await, (true, true));
    // The certificate names localhost too.
    let by_name = verified(&pg, "verify-full", &ca.ca_path()).replace("127.0.0.1", "localhost");
    assert_eq!(sessions_encrypted(&by_name).await, (true, true));
    // require with a root certificate verifies the chain, as libpq does.
    assert_eq!(sessions_encrypted(&verified(&pg, "require", &ca.ca_path())).await, (true, true));

    let other = TestCa::new();
    for mode in ["verify-full", "verify-ca", "require"] {
        let url = verified(&pg, mode, &other.ca_path()).replace("postgres@", "postgres:hunter2-secret@");
        let (pooled, raw, direct) = connect_errors(&url).await;
        assert!(matches!(direct, TlsError::Handshake { .. }), "{direct:?}");
        for text in [pooled, raw, direct.to_string()] {
            assert!(text.contains("TLS") && text.contains(&format!("sslmode={mode}")), "{text}");
            assert!(text.contains("certificate"), "the reason is given: {text}");
            assert!(!text.contains("hunter2"), "{text}");
        }
    }
    // A root file that does not exist is a configuration error naming the file.
    let missing = ca.dir().join("missing.pem");
    let err = PgPool::new(PoolConfig::new(verified(&pg, "verify-full", &missing))).expect_err("no such file");
    assert!(err.to_string().contains("missing.pem"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_ca_ignores_the_hostname_and_verify_full_does_not() {
    let ca = TestCa::for_names(&["db.example.internal"]);
    let pg = PrivatePg::start_with(ca.pg_options()).await;
    assert_eq!(sessions_encrypted(&verified(&pg, "verify-ca", &ca.ca_path())).await, (true, true));
    let (pooled, _, direct) = connect_errors(&verified(&pg, "verify-full", &ca.ca_path())).await;
    assert!(matches!(direct, TlsError::Handshake { sslmode: SslMode::VerifyFull, .. }), "{direct:?}");
    assert!(pooled.contains("TLS") && pooled.contains("sslmode=verify-full"), "{pooled}");
    assert!(direct.to_string().contains("not valid for name"), "{direct}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_with_channel_binding_works_over_tls() {
    let ca = TestCa::new();
    let hba = "local all all trust\n\
               host all postgres 127.0.0.1/32 trust\n\
               hostssl all all 127.0.0.1/32 scram-sha-256\n";
    let pg = PrivatePg::start_with(ca.pg_options().file("pg_hba.conf", hba)).await;
    let admin = tls::connect(&pg.url("postgres")).await.expect("admin session");
    admin
        .batch_execute(
            "SET password_encryption = 'scram-sha-256'; CREATE ROLE app LOGIN PASSWORD 'app-secret'",
        )
        .await
        .expect("role");
    let url = verified(&pg, "verify-full", &ca.ca_path()).replace("postgres@", "app:app-secret@");
    let url = with_param(&url, "channel_binding", "require");
    assert_eq!(sessions_encrypted(&url).await, (true, true));
    let wrong = url.replace("app-secret", "wrong-secret");
    let (pooled, _, _) = connect_errors(&wrong).await;
    assert!(!pooled.contains("wrong-secret"), "{pooled}");
}
