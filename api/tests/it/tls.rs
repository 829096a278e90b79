//! The real binary reading PostgreSQL over TLS (`sslmode=require`), and refusing TLS
//! settings it cannot honour.

use std::time::Duration;
use tidemark_db_client::test_utils::eventually;

use tidemark_db_client::test_utils::fixtures::{insert_synthetic_events, seeded_instance};
use tidemark_db_client::test_utils::{encrypted_sessions, with_param};

use crate::support::{ApiProcess, schema, spawn_raw};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_health_and_events_over_tls_sessions() {
    let (test_db, _pool, mut conn) = seeded_instance(&schema(), &[(31337, 40, 41)]).await;
    insert_synthetic_events(&mut conn, &schema(), 31337, 5).await.expect("events");
    let api = ApiProcess::spawn(&with_param(&test_db.url, "sslmode", "require"), &[]).await;
    eventually(Duration::from_secs(20), "/health is 200", async || api.get("/health").await.status == 200)
        .await;
    let events = api.get("/v1/events?limit=10").await;
    assert_eq!(events.status, 200, "{:?}", events.body);
    assert_eq!(events.body["items"].as_array().map(Vec::len), Some(5), "{:?}", events.body);
    let (all, encrypted) = encrypted_sessions(&test_db.url, "tidemark-api").await;
    assert!(all > 0 && encrypted == all, "{encrypted} of the API's {all} sessions use TLS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_tls_settings_exit_with_code_2_without_the_password() {
    let url = "postgres://postgres:hunter2-secret@127.0.0.1:1/postgres";
    for (params, named) in [("sslmode=verify-everything", "sslmode"), ("sslcert=/client.pem", "sslcert")] {
        let env =
            [("DATABASE_URL", format!("{url}?{params}")), ("TIDEMARK_SCHEMA", "tidemark_it".to_owned())];
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (mut child, log, _) = spawn_raw(&env, &["--listen", "127.0.0.1:0"]);
        let status =
            tokio::time::timeout(Duration::from_secs(10), child.wait()).await.expect("exits").expect("wait");
        let log = log.lock().map(|l| l.clone()).unwrap_or_default();
        assert_eq!(status.code(), Some(2), "{params}: {log}");
        assert!(log.contains(named), "{params}: the log names the parameter: {log}");
        assert!(!log.contains("hunter2"), "{params}: {log}");
    }
}
