//! TLS end to end: the real binary indexes anvil through an `https://` provider whose
//! certificate only the test's CA vouches for (trusted through `SSL_CERT_FILE`), and
//! writes to PostgreSQL with `sslmode=require`.

use std::time::Duration;

use tidemark_db_client::test_utils::{encrypted_sessions, with_param};
use tidemark_testkit::{Indexer, RpcProxy, SOON, Stack, TestCa, eventually, indexer_process};

use crate::common::{SCHEMA, traffic};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexes_through_an_https_provider_into_postgres_over_tls() {
    let stack = Stack::shared(SCHEMA).await;
    traffic(&stack.demo, 10, 3).await;
    let ca = TestCa::new();
    let proxy = RpcProxy::start_tls(stack.anvil.url(), &ca).await;
    assert!(proxy.url().starts_with("https://127.0.0.1:"), "{}", proxy.url());
    let mut cfg = stack.config();
    cfg.chains[0].rpc_url = Some(proxy.url().to_owned());
    cfg.database_url = with_param(&stack.db_url, "sslmode", "require");
    let path = stack.write_config(&cfg);
    let proc =
        indexer_process(&path, &[]).env("SSL_CERT_FILE", ca.ca_path()).log_dir(stack.dir.path()).spawn();
    let mut indexer = Indexer { proc, http: cfg.http_url() };

    let mut db = stack.instance().await;
    stack.wait_synced(&mut db, SOON).await;
    stack.assert_matches_chain(&mut db).await;
    assert!(proxy.count("eth_getLogs") > 0, "the logs came through the https proxy");
    let (all, encrypted) = encrypted_sessions(&stack.db_url, "tidemark-indexer").await;
    assert!(all > 0 && encrypted == all, "{encrypted} of the indexer's {all} sessions use TLS");
    assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_ca_in_ssl_cert_dir_is_trusted_too() {
    let stack = Stack::shared(SCHEMA).await;
    let ca = TestCa::new();
    let proxy = RpcProxy::start_tls(stack.anvil.url(), &ca).await;
    // A directory holding the CA certificate alone (not the server's certificate).
    let certs = stack.dir.path().join("certs");
    std::fs::create_dir(&certs).expect("certs directory");
    std::fs::copy(ca.ca_path(), certs.join("test-ca.pem")).expect("copy the CA");
    let mut cfg = stack.config();
    cfg.chains[0].rpc_url = Some(proxy.url().to_owned());
    let path = stack.write_config(&cfg);
    let proc = indexer_process(&path, &[]).env("SSL_CERT_DIR", &certs).log_dir(stack.dir.path()).spawn();
    let mut indexer = Indexer { proc, http: cfg.http_url() };
    let mut db = stack.instance().await;
    stack.wait_synced(&mut db, SOON).await;
    assert!(proxy.count("eth_getLogs") > 0, "the logs came through the https proxy");
    assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_database_tls_settings_exit_with_code_2_without_the_password() {
    let stack = Stack::shared(SCHEMA).await;
    let mut cfg = stack.config();
    let url = stack.db_url.replace("postgres@", "postgres:hunter2-secret@");
    let missing = stack.dir.path().join("missing-root.pem");
    cfg.database_url = with_param(
        &with_param(&url, "sslmode", "verify-full"),
        "sslrootcert",
        &missing.display().to_string(),
    );
    let (code, proc) = stack.run_command(&cfg, &[]).await;
    let logs = proc.logs();
    assert_eq!(code, 2, "{logs}");
    assert!(logs.contains("database_url") && logs.contains("missing-root.pem"), "{logs}");
    assert!(!logs.contains("hunter2"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_provider_signed_by_an_unknown_ca_is_not_trusted() {
    let stack = Stack::shared(SCHEMA).await;
    let ca = TestCa::new();
    let proxy = RpcProxy::start_tls(stack.anvil.url(), &ca).await;
    let mut cfg = stack.config();
    cfg.chains[0].rpc_url = Some(proxy.url().to_owned());
    let path = stack.write_config(&cfg);
    // Another CA is trusted: the proxy's certificate must be refused.
    let other = TestCa::new();
    let proc =
        indexer_process(&path, &[]).env("SSL_CERT_FILE", other.ca_path()).log_dir(stack.dir.path()).spawn();
    let mut indexer = Indexer { proc, http: cfg.http_url() };
    eventually(SOON, "/health reports the chain's RPC as unreachable", async || {
        let (code, body) = indexer.get_json("/health").await?;
        let reasons = body["reasons"].as_array()?;
        (code == 503 && reasons.iter().any(|r| r == "rpc-unreachable:31337")).then_some(())
    })
    .await;
    let logs = indexer.proc.logs();
    assert!(logs.contains("certificate"), "the log says why: {logs}");
    assert_eq!(proxy.count("eth_chainId") + proxy.count("eth_blockNumber"), 0, "no request got through");
    assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);
}
