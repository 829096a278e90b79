//! Scenario 6 — bad input (DESIGN §6 "Bad input is a 4xx", invariant 7):
//! - random and malformed query strings, headers, paths, methods and bodies, and broken
//!   HTTP framing, against every endpoint of both services: no undocumented 5xx, no
//!   panic, both still healthy, no data lost;
//! - malformed TOML config files and ABI files: exit 2 with a message, never a panic;
//!   valid files with extreme tuning values run without panicking.

use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tidemark_reliability::fuzz::{self, Known, Service, Tally};
use tidemark_reliability::summary;
use tidemark_testkit::{SOON, Stack, free_port, indexer_process};
use tidemark_traffic::REGISTRY_ABI;

use crate::common::{count_lines, traffic};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_and_malformed_requests_get_no_5xx_and_no_panic() {
    summary::run("6a bad input: HTTP", |rec| async move {
        let total: u64 = rec.scale().pick(5_000, 50_000);
        let seed = tidemark_reliability::seed();

        rec.step("indexer and API up");
        let stack = Stack::shared("tidemark_rel_fuzz").await;
        traffic(&stack.demo, 12, 4).await;
        let mut indexer = stack.spawn(&stack.config());
        let mut api = stack.spawn_api(&[]);
        let mut db = stack.instance().await;
        stack.wait_synced(&mut db, SOON).await;
        api.wait_healthy(SOON).await;
        let events = db.events().await.expect("events");
        let sample = events.iter().find(|e| e.topics.len() > 1).unwrap_or(&events[0]);
        let known = Known {
            chain_id: stack.chain_id,
            contracts: vec!["Token".into(), "Registry".into()],
            events: events
                .iter()
                .map(|e| e.event.clone())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect(),
            addresses: stack.addresses().iter().map(|a| format!("{a:#x}")).collect(),
            tx_hash: sample.tx_hash.clone(),
            topic: sample.topics.get(1).cloned().unwrap_or_default(),
        };
        let api_addr: std::net::SocketAddr =
            api.http.trim_start_matches("http://").parse().expect("api addr");
        let idx_addr: std::net::SocketAddr =
            indexer.http.trim_start_matches("http://").parse().expect("indexer addr");

        rec.step(format!("{total} requests"));
        let mut rng = StdRng::seed_from_u64(seed);
        let requests: Vec<fuzz::FuzzRequest> = (0..total)
            .map(|_| {
                let service = if rng.random_bool(0.6) { Service::Api } else { Service::Indexer };
                if rng.random_bool(0.15) {
                    fuzz::raw_request(&mut rng, service, &known)
                } else {
                    fuzz::http_request(&mut rng, service, &known)
                }
            })
            .collect();
        tidemark_db_client::tls::install_crypto_provider();
        let client =
            reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        let started = Instant::now();
        let answers: Vec<(fuzz::FuzzRequest, fuzz::Answer)> = futures::stream::iter(requests)
            .map(|req| {
                let client = client.clone();
                async move {
                    let addr = if req.service == Service::Api { api_addr } else { idx_addr };
                    let answer = fuzz::send(&client, addr, &req, Duration::from_secs(5)).await;
                    (req, answer)
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        let elapsed = started.elapsed();
        let mut tallies = [Tally::default(), Tally::default()];
        for (req, answer) in &answers {
            tallies[usize::from(req.service == Service::Indexer)].add(req, answer);
        }

        let api_health = api.health().await;
        let idx_health = indexer.health().await;
        let c = stack.compare(&mut db).await;
        for (i, service) in [Service::Api, Service::Indexer].into_iter().enumerate() {
            let t = &tallies[i];
            let (running, healthy, logs) = match service {
                Service::Api => (
                    api.proc.is_running(),
                    api_health.as_ref().is_some_and(|h| h.code == 200),
                    api.proc.logs(),
                ),
                Service::Indexer => (
                    indexer.proc.is_running(),
                    idx_health.as_ref().is_some_and(|h| h.code == 200),
                    indexer.proc.logs(),
                ),
            };
            let panics = count_lines(&logs, "panicked");
            let examples: Vec<String> =
                t.bad_5xx.iter().take(3).map(|(c, r, b)| format!("{c} for `{r}`: {b}")).collect();
            rec.record(
                format!("{} random/malformed requests to the {}", t.sent, service.name()),
                format!(
                    "undocumented 5xx {}, panics {panics}, still running and healthy: {}{}",
                    t.bad_5xx_count,
                    running && healthy,
                    if examples.is_empty() {
                        String::new()
                    } else {
                        format!("; e.g. {}", examples.join(" | "))
                    }
                ),
                t.bad_5xx_count == 0 && panics == 0 && running && healthy,
                format!(
                    "{}; documented 503s {}{}{}",
                    t.classes_text(),
                    t.documented_5xx,
                    if t.timeouts.is_empty() {
                        String::new()
                    } else {
                        format!("; no answer within 5 s e.g. {}", t.timeouts.join(" | "))
                    },
                    if service == Service::Api {
                        format!("; 4xx without a JSON error body {}", t.non_json_4xx)
                    } else {
                        String::new()
                    }
                ),
            );
        }
        rec.record(
            "data after the requests",
            format!("missing {}, duplicated {}", c.missing, c.duplicated),
            c.is_exact(),
            format!("seed {seed}; {total} requests in {:.1} s, 16 in flight", elapsed.as_secs_f64()),
        );
        let (ei, ea) = (indexer.stop(Duration::from_secs(10)).await, {
            api.proc.sigterm();
            api.proc.exit_code(Duration::from_secs(10)).await
        });
        assert_eq!((ei, ea), (0, 0), "exit codes");
    })
    .await;
}

/// One mutation of `text`: truncation, a line dropped or duplicated, a value replaced,
/// random bytes inserted.
fn mutate(rng: &mut StdRng, text: &[u8]) -> Vec<u8> {
    let lines: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
    let mut out: Vec<u8>;
    match rng.random_range(0..6) {
        0 => out = text[..rng.random_range(0..text.len())].to_vec(),
        1 => {
            let drop = rng.random_range(0..lines.len());
            out = lines
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != drop)
                .map(|(_, l)| *l)
                .collect::<Vec<_>>()
                .join(&b'\n');
        }
        2 => {
            let dup = rng.random_range(0..lines.len());
            let mut ls = lines.clone();
            ls.insert(dup, lines[dup]);
            out = ls.join(&b'\n');
        }
        3 => {
            // Replace the value of a random `key = value` line.
            let i = rng.random_range(0..lines.len());
            let replacement: &[u8] = [
                &b"-1"[..],
                b"\"x\"",
                b"1e400",
                b"[]",
                b"{}",
                b"true",
                b"99999999999999999999999",
                b"\"\\u0000\"",
                b"\"${NOPE_UNSET_VAR}\"",
                b"[[]]",
                b"0",
                b"\"\"",
                b"\"0xZZ\"",
                b"\"event Foo(uint7 x)\"",
                b"[\"event Transfer(address indexed from, address indexed to, uint256 value) extra\"]",
                b"\"/dev/null\"",
                b"\"../../../../etc/passwd\"",
            ][rng.random_range(0..17)];
            let mut ls: Vec<Vec<u8>> = lines.iter().map(|l| l.to_vec()).collect();
            if let Some(eq) = ls[i].iter().position(|b| *b == b'=') {
                ls[i].truncate(eq + 1);
                ls[i].push(b' ');
                ls[i].extend_from_slice(replacement);
            }
            out = ls.join(&b'\n');
        }
        4 => {
            out = text.to_vec();
            let at = rng.random_range(0..out.len());
            let junk: Vec<u8> = (0..rng.random_range(1..16)).map(|_| rng.random()).collect();
            out.splice(at..at, junk);
        }
        _ => {
            out = text.to_vec();
            for _ in 0..rng.random_range(1..6) {
                let at = rng.random_range(0..out.len());
                out[at] = rng.random();
            }
        }
    }
    out
}

/// Runs `check-config` on `path`: `(exit code, stderr)`; `None` as code when killed by a signal.
async fn check_config(path: &Path) -> (Option<i32>, String) {
    let mut p = indexer_process(path, &["check-config"]).spawn();
    let status = p.wait_timeout(SOON).await;
    if status.is_none() {
        p.kill9();
    }
    (status.and_then(|s| s.code()), p.stderr())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_config_and_abi_files_exit_2_and_extreme_values_do_not_panic() {
    summary::run("6b bad input: config and ABI files", |rec| async move {
        let scale = rec.scale();
        let (n_toml, n_abi) = scale.pick((60, 30), (400, 200));
        let seed = tidemark_reliability::seed();
        let mut rng = StdRng::seed_from_u64(seed);
        let stack = Stack::shared("tidemark_rel_files").await;
        let base = stack.config().to_toml();
        let (code, out) = check_config(&stack.write_config(&stack.config())).await;
        assert_eq!(code, Some(0), "the unmutated config is valid: {out}");

        rec.step(format!("{n_toml} mutated TOML files"));
        let mut files = Vec::new();
        for i in 0..n_toml {
            let path = stack.dir.path().join(format!("mutant-{i}.toml"));
            std::fs::write(&path, mutate(&mut rng, base.as_bytes())).expect("write");
            files.push(path);
        }
        rec.step(format!("{n_abi} mutated ABI files"));
        let abi_cfg = stack.config().to_toml().replace("Registry.abi.json", "mutant.abi.json");
        for i in 0..n_abi {
            let dir = stack.dir.path().join(format!("abi-{i}"));
            std::fs::create_dir_all(&dir).expect("mkdir");
            let abi: Vec<u8> = match i % 4 {
                0 => mutate(&mut rng, REGISTRY_ABI.as_bytes()),
                1 => REGISTRY_ABI.as_bytes()[..rng.random_range(0..REGISTRY_ABI.len())].to_vec(),
                2 => [
                    &b"{}"[..],
                    b"[]",
                    b"[1,2]",
                    b"[{\"type\":\"event\"}]",
                    b"[{\"type\":\"event\",\"name\":\"Burst\",\"inputs\":[{\"name\":\"x\",\"type\":\"uint7\",\"indexed\":false}]}]",
                    b"[{\"type\":\"event\",\"name\":\"Burst\",\"inputs\":[{\"name\":\"x\",\"type\":\"tuple\",\"indexed\":true}],\"anonymous\":false}]",
                    b"[{\"type\":\"event\",\"name\":\"Burst\",\"inputs\":[],\"anonymous\":true}]",
                    b"null",
                    b"\"abi\"",
                    b"\xff\xfe",
                ][rng.random_range(0..10)]
                .to_vec(),
                _ => REGISTRY_ABI.replace("uint256", ["uint7", "uint512", "tuple", "bytes33", "int0", ""][rng.random_range(0..6)]).into_bytes(),
            };
            std::fs::write(dir.join("mutant.abi.json"), abi).expect("write");
            let path = dir.join("config.toml");
            std::fs::write(&path, &abi_cfg).expect("write");
            files.push(path);
        }
        let started = Instant::now();
        let results: Vec<(Option<i32>, String)> =
            futures::stream::iter(files.iter().map(|f| check_config(f))).buffer_unordered(4).collect().await;
        let (toml_results, abi_results) = results.split_at(n_toml);
        for (what, results) in [("TOML", toml_results), ("ABI", abi_results)] {
            let exit2 = results.iter().filter(|(c, _)| *c == Some(2)).count();
            let exit0 = results.iter().filter(|(c, _)| *c == Some(0)).count();
            let panics = results.iter().filter(|(_, e)| e.contains("panicked")).count();
            let no_message = results
                .iter()
                .filter(|(c, e)| *c == Some(2) && !e.contains("invalid configuration"))
                .count();
            let other: Vec<String> = results
                .iter()
                .filter(|(c, _)| !matches!(c, Some(0) | Some(2)))
                .take(3)
                .map(|(c, e)| format!("exit {c:?}: {}", e.lines().last().unwrap_or_default()))
                .collect();
            rec.record(
                format!("{} mutated {what} files through `check-config`", results.len()),
                format!(
                    "exit 2 {exit2}, still valid (exit 0) {exit0}, other {}, panics {panics}, exit 2 without a message {no_message}{}",
                    other.len(),
                    if other.is_empty() { String::new() } else { format!(": {}", other.join(" | ")) }
                ),
                panics == 0 && other.is_empty() && no_message == 0 && exit2 > 0,
                format!("seed {seed}; {:.1} s for all files", started.elapsed().as_secs_f64()),
            );
        }

        rec.step("extreme but valid values at run time");
        let max = u64::MAX;
        let mut extremes: Vec<(&str, tidemark_testkit::IndexerConfigBuilder)> = Vec::new();
        let mut v = stack.config();
        v.chains[0].max_block_range = Some(max);
        v.chains[0].max_concurrency = Some(max);
        extremes.push(("max_block_range and max_concurrency u64::MAX", v));
        let mut v = stack.config();
        v.chains[0].request_timeout_ms = Some(max);
        v.chains[0].poll_interval_ms = Some(max);
        extremes.push(("request_timeout_ms and poll_interval_ms u64::MAX", v));
        let mut v = stack.config();
        v.chains[0].finality_depth = Some(max);
        extremes.push(("finality_depth u64::MAX", v));
        let mut v = stack.config();
        v.chains[0].contracts[0].start_block = max - 1;
        v.chains[0].contracts[1].start_block = max - 1;
        extremes.push(("start_block u64::MAX - 1", v));
        if scale.is_full() {
            let mut v = stack.config();
            v.chains[0].contracts[0].start_block = 3;
            v.chains[0].contracts[0].end_block = Some(3);
            v.chains[0].contracts[1].start_block = 3;
            v.chains[0].contracts[1].end_block = Some(3);
            extremes.push(("a one-block bounded range", v));
            let mut v = stack.config();
            v.chains[0].max_block_range = Some(1);
            v.chains[0].max_concurrency = Some(1);
            v.chains[0].poll_interval_ms = Some(1);
            v.chains[0].request_timeout_ms = Some(1);
            extremes.push(("every tuning value 1 (1 ms timeouts)", v));
        }
        traffic(&stack.demo, 4, 3).await;
        let mut bad = Vec::new();
        for (i, (what, mut cfg)) in extremes.into_iter().enumerate() {
            cfg.schema = format!("tidemark_rel_extreme_{i}");
            cfg.http.listen = format!("127.0.0.1:{}", free_port());
            let mut p = stack.spawn(&cfg);
            tokio::time::sleep(Duration::from_secs(3)).await;
            let early = p.proc.try_status();
            let code = match early {
                Some(s) => s.code(),
                None => {
                    p.proc.sigterm();
                    p.proc.wait_timeout(Duration::from_secs(10)).await.and_then(|s| s.code())
                }
            };
            let logs = p.proc.logs();
            if logs.contains("panicked") || !matches!(code, Some(0..=2)) {
                let line = logs.lines().find(|l| l.contains("panicked")).unwrap_or_default();
                bad.push(format!("{what}: exit {code:?} {line}"));
            }
        }
        rec.record(
            "valid configs with extreme tuning and block values, run for 3 s",
            if bad.is_empty() { "no panic; clean exit on SIGTERM (or a clear error)".to_owned() } else { bad.join("; ") },
            bad.is_empty(),
            "",
        );
    })
    .await;
}
