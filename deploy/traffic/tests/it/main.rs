//! The `tidemark-traffic` binary against a real anvil: deployment output, a bounded run
//! with reorgs, and a clean stop on SIGTERM; the webhook simulator in [`webhook_sim`].

mod webhook_sim;

use std::time::Duration;

use alloy::primitives::Address;
use tidemark_testkit::{Anvil, Process, canonical_logs, eventually};
use tidemark_traffic::{DEFAULT_REGISTRY, DEFAULT_TOKEN, Demo};

const BIN: &str = env!("CARGO_BIN_EXE_tidemark-traffic");

fn traffic(anvil: &Anvil, args: &[&str]) -> Process {
    Process::builder("traffic", BIN)
        .args(["--rpc-url", anvil.url()])
        .args(args)
        .env("RUST_LOG", "info")
        .spawn()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_prints_the_addresses_and_a_bounded_run_with_reorgs_exits_0() {
    let anvil = Anvil::spawn().await;
    let mut deploy = traffic(&anvil, &["deploy"]);
    assert_eq!(deploy.exit_code(Duration::from_secs(30)).await, 0, "{}", deploy.logs());
    let out: serde_json::Value = serde_json::from_str(deploy.stdout().trim()).expect("JSON on stdout");
    let token: Address = out["token"].as_str().expect("token").parse().expect("address");
    let registry: Address = out["registry"].as_str().expect("registry").parse().expect("address");
    assert_eq!((token, registry), (DEFAULT_TOKEN, DEFAULT_REGISTRY), "first deployments of account 0");

    let mut run = traffic(
        &anvil,
        &[
            "run",
            "--deploy-if-missing",
            "--tx-per-second",
            "40",
            "--duration",
            "3",
            "--reorg-every",
            "1",
            "--seed",
            "7",
        ],
    );
    assert_eq!(run.exit_code(Duration::from_secs(20)).await, 0, "{}", run.logs());
    let logs = run.stderr();
    assert!(logs.contains("reorg provoked"), "{logs}");
    let head = Demo::at(anvil.url(), token, registry).expect("url").block_number().await.expect("head");
    let logs = canonical_logs(anvil.url(), &[token, registry], 0, head).await.expect("eth_getLogs");
    let topics: std::collections::HashSet<&str> = logs.iter().map(|l| l.topics[0].as_str()).collect();
    assert!(topics.len() >= 4, "a mix of events: {} logs, {} kinds", logs.len(), topics.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_generator_cleanly() {
    let anvil = Anvil::spawn().await;
    let mut run = traffic(&anvil, &["--deploy", "--tx-per-second", "20"]);
    let demo = Demo::at(anvil.url(), DEFAULT_TOKEN, DEFAULT_REGISTRY).expect("url");
    eventually(Duration::from_secs(30), "a few blocks of traffic", async || {
        (demo.block_number().await.ok()? > 10).then_some(())
    })
    .await;
    run.sigterm();
    assert_eq!(run.exit_code(Duration::from_secs(5)).await, 0, "{}", run.logs());
    assert!(run.stderr().contains("stopped"), "{}", run.stderr());
}
