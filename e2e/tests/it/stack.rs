//! The local stack as a user starts it: `deploy/up.sh` (debug builds, private ports, a fresh
//! database), then the checks a user would make: the API reaches `omnichain-following`, its
//! event count matches the chain, it keeps serving with the indexer killed, the restarted
//! indexer catches up, and Ctrl-C leaves no process behind.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tidemark_db_client::test_utils::free_port;

use serde_json::{Value, json};
use tidemark_db_client::test_utils::TestDb;

struct Stack {
    up: Child,
    api: String,
}

impl Drop for Stack {
    fn drop(&mut self) {
        // Whatever happened, stop everything: SIGINT to the script runs its cleanups.
        signal(self.up.id(), "INT");
        let _ = wait_exit(&mut self.up, Duration::from_secs(20));
        let _ = self.up.kill();
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

fn wait_exit(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

fn pid_of(dir: &Path, name: &str) -> u32 {
    let text = std::fs::read_to_string(dir.join(format!("{name}.pid"))).expect("pid file");
    text.trim().parse().expect("pid")
}

fn stack_env(dir: &Path) -> HashMap<String, String> {
    std::fs::read_to_string(dir.join("stack.env"))
        .expect("stack.env")
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect()
}

async fn get(client: &reqwest::Client, url: &str) -> Option<(u16, Value)> {
    let r = client.get(url).send().await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.json().await.ok()?))
}

async fn rpc(client: &reqwest::Client, url: &str, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let r: Value = client.post(url).json(&body).send().await.expect("rpc").json().await.expect("rpc json");
    r["result"].clone()
}

/// Polls `f` every 250 ms until it returns `Some`, or panics with `what` after `within`.
async fn until<T, F, Fut>(what: &str, within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn latest_indexed(status: &Value) -> Option<u64> {
    status["realtimeProjection"]["snapshot"]["omnichainSnapshot"]["chains"]["31337"]["latestIndexedBlock"]["number"]
        .as_u64()
}

/// Every event the API serves up to `to_block`, walking the pages.
async fn api_events(client: &reqwest::Client, api: &str, to_block: u64) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("{api}/v1/events?chainId=31337&fromBlock=0&toBlock={to_block}&limit=1000");
        if let Some(a) = &after {
            url.push_str(&format!("&after={a}"));
        }
        let (code, page) = get(client, &url).await.expect("events answer");
        assert_eq!(code, 200, "{page}");
        out.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["nextCursor"].as_str() {
            Some(c) => after = Some(c.to_owned()),
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_stack_works_end_to_end() {
    let db = TestDb::new().await;
    let dir = std::env::temp_dir().join(format!("tidemark-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("stack dir");
    let api_port = free_port();
    let log = std::fs::File::create(dir.join("up.log")).expect("log");
    let mut up = Command::new("bash");
    // As from a terminal: SIGINT at its default disposition. A test run started in the
    // background of a non-interactive shell inherits SIGINT ignored, and bash cannot trap
    // a signal ignored on entry, so Ctrl-C would never reach the script's cleanup.
    // SAFETY: `signal` is async-signal-safe, and nothing else runs between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut up, || {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    let up = up
        .arg(crate::repo_root().join("deploy/up.sh"))
        .env("DATABASE_URL", &db.url)
        .env("TIDEMARK_PROFILE", "debug")
        .env("TIDEMARK_STACK_DIR", &dir)
        .env("TIDEMARK_SCHEMA", "tidemark_e2e")
        .env("TIDEMARK_API_PORT", api_port.to_string())
        .env("TIDEMARK_INDEXER_PORT", free_port().to_string())
        .env("TIDEMARK_ANVIL_PORT", free_port().to_string())
        .env("TIDEMARK_TRAFFIC_ARGS", "--tx-per-second 8 --seed 7")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("deploy/up.sh starts");
    let mut stack = Stack { up, api: format!("http://127.0.0.1:{api_port}") };
    tidemark_db_client::tls::install_crypto_provider();
    let client = reqwest::Client::new();
    let up_log = || std::fs::read_to_string(dir.join("up.log")).unwrap_or_default();

    // 1. The API reaches omnichain-following (the build is part of the wait).
    let api = stack.api.clone();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Ok(Some(status)) = stack.up.try_wait() {
            panic!("deploy/up.sh exited with {status}:\n{}", up_log());
        }
        let following = get(&client, &format!("{api}/status")).await.is_some_and(|(code, s)| {
            code == 200
                && s["realtimeProjection"]["snapshot"]["omnichainSnapshot"]["omnichainStatus"]
                    == "omnichain-following"
        });
        if following {
            break;
        }
        assert!(Instant::now() < deadline, "no omnichain-following within 300 s:\n{}", up_log());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // 2. The API's events equal the chain's logs up to the indexed block.
    let env = stack_env(&dir);
    let rpc_url = env["RPC_URL"].clone();
    let contracts: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("contracts.json")).expect("contracts"))
            .expect("contracts json");
    // Let some traffic land first.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, status) = get(&client, &format!("{api}/status")).await.expect("status");
    let indexed = latest_indexed(&status).expect("latest indexed block");
    let logs = rpc(
        &client,
        &rpc_url,
        "eth_getLogs",
        json!([{"fromBlock": "0x0", "toBlock": format!("0x{indexed:x}"),
                "address": [contracts["token"], contracts["registry"]]}]),
    )
    .await;
    let logs = logs.as_array().expect("logs");
    let served = api_events(&client, &api, indexed).await;
    assert!(!served.is_empty(), "demo events are served");
    assert_eq!(served.len(), logs.len(), "the API serves every log of the chain up to block {indexed}");
    let key = |block: &Value, tx: &Value, idx: &Value| format!("{block}/{tx}/{idx}");
    let mut chain_keys: Vec<String> = logs
        .iter()
        .map(|l| {
            let n =
                u64::from_str_radix(l["blockNumber"].as_str().unwrap_or("0x0").trim_start_matches("0x"), 16)
                    .unwrap_or(0);
            let i = u64::from_str_radix(l["logIndex"].as_str().unwrap_or("0x0").trim_start_matches("0x"), 16)
                .unwrap_or(0);
            key(&json!(n), &l["transactionHash"], &json!(i))
        })
        .collect();
    let mut api_keys: Vec<String> =
        served.iter().map(|e| key(&e["blockNumber"], &e["transactionHash"], &e["logIndex"])).collect();
    chain_keys.sort();
    api_keys.sort();
    assert_eq!(api_keys, chain_keys);

    // 3. Kill the indexer: the API keeps serving.
    let indexer_pid = pid_of(&dir, "indexer");
    signal(indexer_pid, "KILL");
    until("the indexer to die", Duration::from_secs(10), || async { (!alive(indexer_pid)).then_some(()) })
        .await;
    for _ in 0..8 {
        let (code, _) =
            get(&client, &format!("{api}/status")).await.expect("status while the indexer is down");
        assert_eq!(code, 200);
        let (code, page) = get(&client, &format!("{api}/v1/events?limit=5")).await.expect("events");
        assert_eq!(code, 200);
        assert!(!page["items"].as_array().expect("items").is_empty());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // 4. Restart it as an operator would: it catches up with the chain.
    let head_at_restart = u64::from_str_radix(
        rpc(&client, &rpc_url, "eth_blockNumber", json!([]))
            .await
            .as_str()
            .expect("head")
            .trim_start_matches("0x"),
        16,
    )
    .expect("hex");
    let restart_log = std::fs::File::create(dir.join("indexer-restart.log")).expect("log");
    let mut indexer = Command::new(&env["INDEXER_BIN"])
        .args(["--config", &dir.join("tidemark.toml").to_string_lossy()])
        .env("DATABASE_URL", &env["DATABASE_URL"])
        .env("RPC_URL", &rpc_url)
        .env("ORDERS_WEBHOOK_URL", &env["ORDERS_WEBHOOK_URL"])
        .env("ORDERS_WEBHOOK_SECRET", &env["ORDERS_WEBHOOK_SECRET"])
        .env("NATS_URL", &env["NATS_URL"])
        .env("ALCHEMY_SIGNING_KEY", &env["ALCHEMY_SIGNING_KEY"])
        .stdout(restart_log.try_clone().expect("log"))
        .stderr(restart_log)
        .spawn()
        .expect("indexer restarts");
    until("the restarted indexer to catch up", Duration::from_secs(120), || async {
        let (_, s) = get(&client, &format!("{api}/status")).await?;
        (latest_indexed(&s)? >= head_at_restart).then_some(())
    })
    .await;
    // Both sinks deliver: the demo receiver verified deliveries, and the restarted
    // indexer's status shows both sinks caught up.
    let indexer_http = format!("http://127.0.0.1:{}", env["INDEXER_PORT"]);
    until("both sinks caught up", Duration::from_secs(60), || async {
        let (_, s) = get(&client, &format!("{indexer_http}/status")).await?;
        let sinks = &s["sinks"];
        (sinks["bus"]["state"] == "caught-up" && sinks["orders-webhook"]["state"] == "caught-up")
            .then_some(())
    })
    .await;
    // The provider simulator's pushes reach the restarted indexer, which stores blocks
    // they announced.
    until("webhook deliveries released", Duration::from_secs(60), || async {
        let (_, s) = get(&client, &format!("{indexer_http}/status")).await?;
        let w = &s["realtimeProjection"]["snapshot"]["omnichainSnapshot"]["chains"]["31337"]["webhooks"];
        (w["received"].as_u64()? > 0 && w["released"].as_u64()? > 0).then_some(())
    })
    .await;
    // `sink list` as the README runs it: the config's variables from stack.env.
    let list = Command::new(&env["INDEXER_BIN"])
        .args(["sink", "list", "--config", &dir.join("tidemark.toml").to_string_lossy()])
        .env_clear()
        .envs(&env)
        .output()
        .expect("sink list runs");
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success(), "sink list: {}", String::from_utf8_lossy(&list.stderr));
    assert!(listed.contains("orders-webhook") && listed.contains("bus"), "{listed}");
    let received = std::fs::read_to_string(dir.join("receiver.log")).unwrap_or_default();
    assert!(received.contains("delivery verified"), "the demo receiver verified deliveries:\n{received}");
    assert!(!received.contains("does not verify"), "every delivery verifies:\n{received}");
    signal(indexer.id(), "TERM");
    let status =
        wait_exit(&mut indexer, Duration::from_secs(5)).expect("the indexer stops within 5 s of SIGTERM");
    assert!(status.success(), "clean shutdown exits 0: {status}");

    // 5. Ctrl-C stops everything the script started.
    let mut pids: Vec<u32> =
        ["anvil", "api", "traffic", "receiver", "webhooks"].iter().map(|n| pid_of(&dir, n)).collect();
    if dir.join("nats.pid").exists() {
        pids.push(pid_of(&dir, "nats"));
    }
    signal(stack.up.id(), "INT");
    wait_exit(&mut stack.up, Duration::from_secs(30)).expect("deploy/up.sh exits after Ctrl-C");
    for pid in pids {
        assert!(!alive(pid), "process {pid} left behind:\n{}", up_log());
    }
    let _ = std::fs::remove_dir_all(&dir);
}
