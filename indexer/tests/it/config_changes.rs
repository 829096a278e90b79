//! DESIGN §2 and §7 "Start-up": private settings may change between runs, public ones may
//! not (exit 3, naming each field with both values); a bad file exits 2 naming the
//! problem; `check-config` prints the public config; `reset --yes` drops the instance.

use std::time::Duration;

use serde_json::Value;
use tidemark_testkit::{ChainSpec, IndexerConfigBuilder, SOON, Stack, free_port, indexer_process};
use tidemark_traffic::TOKEN_EVENTS;

use crate::common::{SCHEMA, traffic};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_settings_may_change_between_runs() {
    let stack = Stack::shared(SCHEMA).await;
    traffic(&stack.demo, 6, 4).await;
    let mut db = stack.instance().await;

    let mut first = stack.spawn(&stack.config());
    stack.wait_synced(&mut db, SOON).await;
    assert_eq!(first.stop(Duration::from_secs(5)).await, 0);

    // Another spelling of the same endpoint, and other tuning.
    let mut cfg = stack.config();
    cfg.chains[0].rpc_url = Some(format!("http://localhost:{}", stack.anvil.port()));
    cfg.chains[0].max_block_range = Some(3);
    cfg.chains[0].max_concurrency = Some(1);
    cfg.chains[0].poll_interval_ms = Some(20);
    let mut second = stack.spawn(&cfg);
    traffic(&stack.demo, 6, 4).await;
    stack.wait_synced(&mut db, SOON).await;
    assert!(second.proc.is_running(), "runs with a changed RPC URL");
    assert_eq!(second.stop(Duration::from_secs(5)).await, 0);

    // A failover list whose first endpoint is dead.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let mut cfg = stack.config();
    cfg.chains[0] = cfg.chains[0].clone().rpc_urls(vec![dead, stack.anvil.url().to_owned()]);
    let mut third = stack.spawn(&cfg);
    traffic(&stack.demo, 6, 4).await;
    stack.wait_synced(&mut db, SOON).await;
    assert!(third.proc.is_running(), "runs with a dead first endpoint");
    stack.assert_matches_chain(&mut db).await;
    assert_eq!(third.stop(Duration::from_secs(5)).await, 0);
}

/// Runs `cfg` expecting exit 3; returns stderr.
async fn expect_incompatible(stack: &Stack, cfg: &IndexerConfigBuilder) -> String {
    let mut indexer = stack.spawn(cfg);
    let code = indexer.proc.exit_code(SOON).await;
    let stderr = indexer.proc.stderr();
    assert_eq!(code, 3, "exit 3 for an incompatible config; stderr:\n{stderr}");
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_changes_exit_3_naming_the_field_with_both_values() {
    let stack = Stack::shared(SCHEMA).await;
    let mut db = stack.instance().await;
    let mut indexer = stack.spawn(&stack.config());
    stack.wait_synced(&mut db, SOON).await;
    assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);
    let stored = db.metadata("public_config").await.expect("query").expect("stored config").value;

    // The event list.
    let mut cfg = stack.config();
    cfg.chains[0].contracts[0].events = vec![TOKEN_EVENTS[1].to_owned()];
    let err = expect_incompatible(&stack, &cfg).await;
    assert!(err.contains("chains[31337].contracts[Token].events"), "{err}");
    assert!(err.contains(&format!("stored [\"{}\",\"{}\"]", TOKEN_EVENTS[0], TOKEN_EVENTS[1])), "{err}");
    assert!(err.contains(&format!("current [\"{}\"]", TOKEN_EVENTS[1])), "{err}");

    // A start block.
    let mut cfg = stack.config();
    cfg.chains[0].contracts[1].start_block = 2;
    let err = expect_incompatible(&stack, &cfg).await;
    assert!(err.contains("chains[31337].contracts[Registry].startBlock: stored 0 vs current 2"), "{err}");

    // A chain removed (checked before any RPC request: the other chain's endpoint is
    // dead). Adding one is compatible (`growing.rs`).
    let mut other = ChainSpec::new(31338, format!("http://127.0.0.1:{}", free_port()));
    other.contracts = stack.contracts();
    let cfg = IndexerConfigBuilder { chains: vec![other], ..stack.config() };
    let err = expect_incompatible(&stack, &cfg).await;
    assert!(err.contains("chains[].chainId: stored [31337] vs current [31338]"), "{err}");

    // The finality depth.
    let cfg = IndexerConfigBuilder { chains: vec![stack.chain_spec().finality_depth(3)], ..stack.config() };
    let err = expect_incompatible(&stack, &cfg).await;
    assert!(err.contains("chains[31337].finalityDepth: stored 12 vs current 3"), "{err}");

    let after = db.metadata("public_config").await.expect("query").expect("stored config").value;
    assert_eq!(after, stored, "refused runs leave the stored config alone");
}

/// Writes `text` as a config file and runs the indexer on it; returns exit code and stderr.
async fn run_raw(stack: &Stack, name: &str, text: &str, args: &[&str]) -> (i32, String, String) {
    let path = stack.dir.path().join(name);
    std::fs::write(&path, text).expect("writing the config");
    let mut p =
        indexer_process(&path, args).log_dir(stack.dir.path()).env_remove("TIDEMARK_IT_UNSET").spawn();
    let code = p.exit_code(SOON).await;
    (code, p.stdout(), p.stderr())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_configs_exit_2_naming_the_problem() {
    let stack = Stack::shared(SCHEMA).await;
    let good = stack.config().to_toml();

    let (code, _, err) =
        run_raw(&stack, "broken.toml", &format!("{good}\nnamespace = \"unterminated\n"), &[]).await;
    assert_eq!(code, 2, "invalid TOML: {err}");
    assert!(err.contains("invalid configuration") && err.contains("line"), "{err}");

    let text = good.replacen(
        &format!("database_url = \"{}\"", stack.db_url),
        "database_url = \"${TIDEMARK_IT_UNSET}\"",
        1,
    );
    assert_ne!(text, good, "the database_url line was replaced");
    let (code, _, err) = run_raw(&stack, "missing-var.toml", &text, &[]).await;
    assert_eq!(code, 2, "missing variable: {err}");
    assert!(err.contains("database_url") && err.contains("TIDEMARK_IT_UNSET"), "{err}");

    let (code, _, err) =
        run_raw(&stack, "unknown-key.toml", &good.replacen("namespace =", "colour = 1\nnamespace =", 1), &[])
            .await;
    assert_eq!(code, 2, "unknown key: {err}");
    assert!(err.contains("colour"), "{err}");

    let mut cfg = stack.config();
    cfg.chains[0].contracts[1].start_block = 10;
    cfg.chains[0].contracts[1].end_block = Some(5);
    let (code, _, err) = run_raw(&stack, "range.toml", &cfg.to_toml(), &[]).await;
    assert_eq!(code, 2, "end below start: {err}");
    assert!(err.contains("chains[0].contracts[1].end_block"), "{err}");

    let (code, _, err) = run_raw(&stack, "reset.toml", &good, &["reset"]).await;
    assert_eq!(code, 2, "reset without --yes: {err}");
    assert!(err.contains("--yes"), "{err}");

    let (code, _, err) = run_raw(&stack, "flag.toml", &good, &["--no-such-flag"]).await;
    assert_eq!(code, 2, "unknown flag: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_prints_the_public_config() {
    let stack = Stack::shared(SCHEMA).await;
    let (code, p) = stack.run_command(&stack.config(), &["check-config"]).await;
    assert_eq!(code, 0, "{}", p.logs());
    let public: Value = serde_json::from_str(&p.stdout()).expect("stdout is the public config as JSON");
    assert_eq!(public["namespace"], "test");
    assert_eq!(public["instanceSchema"], crate::common::SCHEMA);
    let chain = &public["chains"][0];
    assert_eq!(chain["chainId"], 31337);
    assert_eq!(chain["finalityDepth"], 12);
    let contracts = chain["contracts"].as_array().expect("contracts");
    let names: Vec<&str> = contracts.iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names, ["Registry", "Token"], "sorted by name");
    assert_eq!(contracts[1]["addresses"][0], format!("{:#x}", stack.demo.token), "lowercase");
    assert_eq!(contracts[1]["events"], serde_json::json!(TOKEN_EVENTS));
    assert_eq!(contracts[0]["events"], serde_json::json!(tidemark_traffic::REGISTRY_EVENTS));
    assert_eq!(contracts[0]["endBlock"], Value::Null);
    assert!(public["versionInfo"]["schemaVersion"].is_number());
    let text = p.logs();
    assert!(
        !text.contains(&stack.anvil.port().to_string()) && !text.contains("rpc_url"),
        "no RPC URL: {text}"
    );
    assert!(!text.contains(&stack.db_url), "no database URL: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_drops_the_schema_and_its_metadata() {
    let stack = Stack::shared(SCHEMA).await;
    traffic(&stack.demo, 6, 4).await;
    let mut db = stack.instance().await;
    let mut indexer = stack.spawn(&stack.config());
    stack.wait_synced(&mut db, SOON).await;

    // Refused while an indexer holds the writer lock.
    let (code, p) = stack.run_command(&stack.config(), &["reset", "--yes"]).await;
    assert_eq!(code, 1, "{}", p.logs());
    assert!(db.schema_exists().await.expect("query"));
    assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);

    let (code, p) = stack.run_command(&stack.config(), &["reset", "--yes"]).await;
    assert_eq!(code, 0, "{}", p.logs());
    assert!(!db.schema_exists().await.expect("query"), "instance schema dropped");
    assert_eq!(db.metadata_count().await.expect("query"), 0, "metadata rows dropped");

    // A deliberate reindex from scratch.
    let mut indexer = stack.spawn(&stack.config());
    stack.wait_synced(&mut db, SOON).await;
    stack.assert_matches_chain(&mut db).await;
    assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);
}
