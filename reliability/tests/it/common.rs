//! What every scenario builds beyond the testkit's [`Stack`]: traffic, frozen processes,
//! and the record of a recovery.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use tidemark_testkit::{Api, Indexer, IndexerConfigBuilder, SOON, Stack, compare};
use tidemark_traffic::Demo;

/// A private cluster with a first stretch of chain indexed, and both services up: the
/// indexer (the writer) synced to the head, the API healthy.
pub(crate) async fn private_with_services(schema: &str) -> (Stack, Indexer, Api) {
    let stack = Stack::private(schema).await;
    traffic(&stack.demo, 10, 4).await;
    let indexer = stack.spawn(&stack.config());
    let api = stack.spawn_api(&[]);
    {
        let mut db = stack.instance().await;
        stack.wait_synced(&mut db, SOON).await;
    }
    api.wait_healthy(SOON).await;
    indexer.wait_role("writer", SOON).await;
    (stack, indexer, api)
}

/// Some traffic, an indexer that became the writer and caught up, and the writer audit
/// installed on its schema (scenarios 4 and 4b).
pub(crate) async fn audited_writer(stack: &Stack) -> (IndexerConfigBuilder, Indexer) {
    traffic(&stack.demo, 10, 4).await;
    let cfg = stack.config();
    let a = stack.spawn(&cfg);
    a.wait_role("writer", SOON).await;
    let mut db = stack.instance().await;
    stack.wait_synced(&mut db, SOON).await;
    let mut admin = tidemark_db_client::tls::establish(&stack.db_url).await.expect("connect");
    tidemark_reliability::audit::install(&mut admin, &stack.schema)
        .await
        .expect("installing the writer audit");
    (cfg, a)
}

/// Sends `blocks` transactions (one block each) with a varied mix of events, mostly
/// `Burst`s of up to `burst` events; returns the number of events emitted.
pub(crate) async fn traffic(demo: &Demo, blocks: u64, burst: u64) -> u64 {
    demo.mixed(blocks, |i| 1 + i % burst.max(1)).await.expect("sending traffic")
}

/// A background task sending a burst every few tens of milliseconds until stopped.
pub(crate) struct Traffic {
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<u64>>,
}

impl Traffic {
    /// Starts sending bursts of 1..=`max_burst` events, pausing `pause_ms` between them.
    pub(crate) fn start(demo: &Demo, max_burst: u64, pause_ms: std::ops::Range<u64>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (demo, flag) = (demo.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut sent = 0;
            while !flag.load(Ordering::Relaxed) {
                let (n, pause) = {
                    let mut rng = rand::rng();
                    (rng.random_range(1..=max_burst), rng.random_range(pause_ms.clone()))
                };
                // A failed send (e.g. the node is frozen) is simply not counted.
                if demo.burst(n).await.is_ok() {
                    sent += n;
                }
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            sent
        });
        Self { stop, task: Some(task) }
    }

    /// Stops and returns the number of events sent.
    pub(crate) async fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        match self.task.take() {
            Some(t) => t.await.unwrap_or(0),
            None => 0,
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Freezes a process with SIGSTOP; SIGCONT on [`Frozen::thaw`] or drop.
pub(crate) struct Frozen {
    pid: libc::pid_t,
    thawed: bool,
}

impl Frozen {
    /// SIGSTOP `pid`.
    pub(crate) fn freeze(pid: u32) -> Self {
        let pid = libc::pid_t::try_from(pid).expect("pid");
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is a child of this
        // test (anvil), alive while its handle is.
        let rc = unsafe { libc::kill(pid, libc::SIGSTOP) };
        assert_eq!(rc, 0, "SIGSTOP failed");
        Self { pid, thawed: false }
    }

    /// SIGCONT.
    pub(crate) fn thaw(mut self) {
        self.cont();
    }

    fn cont(&mut self) {
        if !self.thawed {
            // SAFETY: as in `freeze`.
            unsafe {
                libc::kill(self.pid, libc::SIGCONT);
            }
            self.thawed = true;
        }
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        self.cont();
    }
}

/// Lines of `text` containing `needle`.
pub(crate) fn count_lines(text: &str, needle: &str) -> usize {
    text.lines().filter(|l| l.contains(needle)).count()
}

/// Seconds with one decimal.
pub(crate) fn secs(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64())
}

/// After a database outage: waits until the chain is indexed again, compares the stored
/// events with it, replays the journal, and records one row saying how both services
/// recovered (`synced_since`: also how long indexing took from that instant).
pub(crate) async fn record_recovery(
    rec: &tidemark_reliability::summary::Recorder,
    stack: &Stack,
    tried: &str,
    (idx_back, api_back): (Option<Duration>, Option<Duration>),
    sent: u64,
    synced_since: Option<Instant>,
) {
    let mut db = stack.instance().await;
    stack.wait_synced(&mut db, Duration::from_secs(60)).await;
    let synced = synced_since.map(|t| format!(", synced {} s", secs(t.elapsed()))).unwrap_or_default();
    let c = stack.compare(&mut db).await;
    let replay = compare::replay_journal(&mut db).await;
    rec.record(
        tried,
        format!(
            "indexer recovered: {}, API recovered: {}; missing {}, duplicated {}; journal replays: {}",
            idx_back.is_some(),
            api_back.is_some(),
            c.missing,
            c.duplicated,
            replay.is_ok()
        ),
        idx_back.is_some() && api_back.is_some() && c.is_exact() && replay.is_ok(),
        format!(
            "recovery: indexer {} s, API {} s{synced}; {sent} events sent meanwhile, {} stored",
            idx_back.map_or("-".into(), secs),
            api_back.map_or("-".into(), secs),
            c.stored
        ),
    );
}
