//! DESIGN §2: an RPC URL is private. A key carried in it appears nowhere — not in the
//! database, the logs, error messages, or any response of the indexer's HTTP server —
//! even while an endpoint fails and its errors are logged.

use std::time::Duration;

use tidemark_testkit::{SOON, Stack, eventually, free_port};

use crate::common::{SCHEMA, traffic};

const SECRET: &str = "SECRET123";

fn assert_clean(what: &str, text: &str) {
    assert!(!text.contains(SECRET), "{what} leaks the RPC key:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rpc_key_appears_nowhere() {
    let stack = Stack::shared(SCHEMA).await;
    traffic(&stack.demo, 8, 3).await;
    // A dead first endpoint (its errors get logged) with the key in every part of the URL,
    // then the live one with the key in the query.
    let dead_host = format!("127.0.0.1:{}", free_port());
    let dead = format!("http://user:{SECRET}@{dead_host}/v2/{SECRET}?apikey={SECRET}");
    let live = format!("{}/?apikey={SECRET}", stack.anvil.url());
    let mut cfg = stack.config();
    cfg.chains[0] = cfg.chains[0].clone().rpc_urls(vec![dead.clone(), live]);
    let mut indexer = stack.spawn(&cfg);
    let mut db = stack.instance().await;
    stack.wait_synced(&mut db, SOON).await;
    traffic(&stack.demo, 4, 3).await;
    stack.wait_synced(&mut db, SOON).await;
    stack.assert_matches_chain(&mut db).await;

    for path in ["/health", "/status", "/config", "/metrics", "/nope"] {
        let (_, body) = indexer.get_text(path).await.unwrap_or_else(|| panic!("GET {path}"));
        assert_clean(path, &body);
    }
    let (_, metrics) = indexer.get_text("/metrics").await.expect("metrics");
    assert!(
        metrics.contains("tidemark_rpc_errors_total"),
        "the dead endpoint's errors were counted:\n{metrics}"
    );
    assert_clean("the database", &db.dump_text().await.expect("dump"));

    // A run whose only endpoint is dead: errors and an unhealthy /health, still no key.
    let mut cfg_dead = cfg.clone().with_fresh_http_port();
    cfg_dead.chains[0] = cfg_dead.chains[0].clone().rpc_urls(vec![dead]);
    cfg_dead.schema = "tidemark_it_dead".into();
    let mut failing = stack.spawn(&cfg_dead);
    let body = eventually(SOON, "rpc-unreachable in /health", async || {
        let (code, body) = failing.get_text("/health").await?;
        (code == 503 && body.contains("rpc-unreachable:31337")).then_some(body)
    })
    .await;
    assert_clean("/health of a failing indexer", &body);
    let (_, status) = failing.get_text("/status").await.expect("status");
    assert_clean("/status of a failing indexer", &status);

    assert_eq!(failing.stop(Duration::from_secs(5)).await, 0);
    assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);
    for (name, p) in [("indexer", &indexer.proc), ("failing indexer", &failing.proc)] {
        let logs = p.logs();
        assert!(logs.contains("rpc[0]"), "{name}: endpoint errors are logged, redacted:\n{logs}");
        assert_clean(&format!("{name} output"), &logs);
        assert!(
            !logs.contains(&dead_host),
            "{name}: the failing URL is never shown, even without its key:\n{logs}"
        );
    }
    assert_clean("the database", &db.dump_text().await.expect("dump"));

    // Configuration errors and check-config do not echo it either.
    let (code, p) = stack.run_command(&cfg, &["check-config"]).await;
    assert_eq!(code, 0);
    assert_clean("check-config", &p.logs());
    let mut bad = cfg.clone();
    bad.chains[0] = bad.chains[0].clone().rpc_urls(vec![format!("ftp://{SECRET}@example.invalid/{SECRET}")]);
    let (code, p) = stack.run_command(&bad, &[]).await;
    assert_eq!(code, 2, "{}", p.logs());
    assert!(p.stderr().contains("chains[0].rpc_urls[0]"), "{}", p.stderr());
    assert_clean("a configuration error", &p.logs());
    let mut bad = cfg;
    bad.chains[0] = bad.chains[0].clone().rpc_urls(vec![format!("http://[{SECRET}")]);
    let (code, p) = stack.run_command(&bad, &[]).await;
    assert_eq!(code, 2, "{}", p.logs());
    assert_clean("a URL parse error", &p.logs());
}
