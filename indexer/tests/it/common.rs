//! What the tests share beyond the testkit's [`tidemark_testkit::Stack`]: the instance
//! schema and the traffic they send.

use tidemark_traffic::Demo;

/// Instance schema of every test (each test has its own database).
pub(crate) const SCHEMA: &str = "tidemark_it";

/// Sends `blocks` transactions (one block each) with a varied mix of events, mostly
/// `Burst`s of `burst` events; returns the number of events emitted.
pub(crate) async fn traffic(demo: &Demo, blocks: u64, burst: u64) -> u64 {
    demo.mixed(blocks, |_| burst).await.expect("sending traffic")
}
