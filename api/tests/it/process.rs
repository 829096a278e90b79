//! The real `tidemark-api` binary: listening with the database down, exit codes, config
//! transitions (acceptance 3), signals.

use std::time::{Duration, Instant};
use tidemark_db_client::test_utils::{eventually, free_port};

use tidemark_db_client::test_utils::fixtures::{public_config, seeded_instance};
use tidemark_db_client::test_utils::metadata::{PUBLIC_CONFIG_KEY, delete_metadata, write_public_config};

use crate::support::{ApiProcess, SCHEMA, schema, spawn_raw};

/// A URL where nothing listens.
fn closed_url() -> String {
    format!("postgres://postgres@127.0.0.1:{}/postgres", free_port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_listens_at_once_with_the_database_down() {
    let api = ApiProcess::spawn(&closed_url(), &[]).await;
    assert_eq!(api.get("/live").await.status, 200);
    let health = api.get("/health").await;
    assert_eq!(health.status, 503);
    assert_eq!(health.body["reasons"], serde_json::json!(["database-unreachable"]));
    assert!(!api.logs().contains("postgres://"), "the database URL is never logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_settings_exit_with_code_2() {
    let url = closed_url();
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: [Case<'_>; 5] = [
        (&[("TIDEMARK_SCHEMA", SCHEMA)], &[]),
        (&[("DATABASE_URL", &url)], &[]),
        (&[("DATABASE_URL", &url), ("TIDEMARK_SCHEMA", "Not-Valid")], &["--listen", "127.0.0.1:0"]),
        (&[("DATABASE_URL", &url), ("TIDEMARK_SCHEMA", SCHEMA)], &["--listen", "not-an-address"]),
        (&[("DATABASE_URL", &url), ("TIDEMARK_SCHEMA", SCHEMA), ("TIDEMARK_CONFIG_REFRESH_MS", "0")], &[]),
    ];
    for (env, args) in cases {
        let (mut child, log, _) = spawn_raw(env, args);
        let status =
            tokio::time::timeout(Duration::from_secs(10), child.wait()).await.expect("exits").expect("wait");
        assert_eq!(
            status.code(),
            Some(2),
            "{env:?} {args:?}: {}",
            log.lock().map(|l| l.clone()).unwrap_or_default()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_is_a_runtime_failure() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let url = closed_url();
    let (mut child, _, _) =
        spawn_raw(&[("DATABASE_URL", &url), ("TIDEMARK_SCHEMA", SCHEMA)], &["--listen", &addr]);
    let status =
        tokio::time::timeout(Duration::from_secs(10), child.wait()).await.expect("exits").expect("wait");
    assert_eq!(status.code(), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_down_cleanly() {
    let mut api = ApiProcess::spawn(&closed_url(), &[]).await;
    assert_eq!(api.get("/live").await.status, 200);
    let kill =
        std::process::Command::new("kill").args(["-TERM", &api.pid().to_string()]).status().expect("kill");
    assert!(kill.success());
    assert_eq!(api.exit_code(Duration::from_secs(10)).await, Some(0), "{}", api.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_transitions_compatible_deleted_then_incompatible_exit_3() {
    let (test_db, _pool, mut conn) = seeded_instance(&schema(), &[(31337, 40, 41)]).await;
    let mut api = ApiProcess::spawn(&test_db.url, &["--config-refresh-ms", "200"]).await;
    eventually(Duration::from_secs(15), "healthy", || async { api.get("/health").await.status == 200 }).await;

    // A compatible change (versionInfo): adopted, the process keeps running.
    let mut newer = public_config(SCHEMA, &[31337]);
    newer.version_info.tidemark = "9.9.9".into();
    write_public_config(&mut conn, &newer).await.expect("compatible");
    eventually(Duration::from_secs(15), "new version served", || async {
        api.get("/config").await.body["versionInfo"]["tidemark"] == "9.9.9"
    })
    .await;
    assert!(api.running());
    assert_eq!(api.get("/health").await.status, 200);

    // The row disappears (a reset): uninitialized, still running.
    delete_metadata(&mut conn, &schema(), PUBLIC_CONFIG_KEY).await.expect("delete");
    eventually(Duration::from_secs(15), "uninitialized", || async {
        api.get("/health").await.body["reasons"] == serde_json::json!(["uninitialized"])
    })
    .await;
    assert!(api.running());

    // A config without chain 31337: compared with the one before the reset, a chain
    // removed, exit 3 (adding a chain is compatible).
    write_public_config(&mut conn, &public_config(SCHEMA, &[1])).await.expect("incompatible");
    assert_eq!(api.exit_code(Duration::from_secs(15)).await, Some(3), "{}", api.logs());
    let logs = api.logs();
    assert!(logs.contains("incompatible config field") && logs.contains("chains[].chainId"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_default_refresh_an_incompatible_config_exits_3_within_70_s() {
    let (test_db, _pool, mut conn) = seeded_instance(&schema(), &[(31337, 40, 41)]).await;
    // Default settings: the config is re-read every 60 s.
    let mut api = ApiProcess::spawn(&test_db.url, &[]).await;
    eventually(Duration::from_secs(15), "healthy", || async { api.get("/health").await.status == 200 }).await;

    write_public_config(&mut conn, &public_config(SCHEMA, &[1])).await.expect("incompatible");
    let changed = Instant::now();
    assert_eq!(api.exit_code(Duration::from_secs(70)).await, Some(3), "{}", api.logs());
    eprintln!("exited with code 3 {:?} after the incompatible config was stored", changed.elapsed());
    assert!(api.logs().contains("chains[].chainId"));
}
