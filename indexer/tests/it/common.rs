//! What the tests share beyond the testkit's [`tidemark_testkit::Stack`]: the instance
//! schema and the traffic they send.

use serde_json::Value;
use tidemark_db_client::{DbClient, DbClientConfig};
use tidemark_traffic::Demo;
use tokio_util::sync::CancellationToken;

/// Instance schema of every test (each test has its own database).
pub(crate) const SCHEMA: &str = "tidemark_it";

/// Sends `blocks` transactions (one block each) with a varied mix of events, mostly
/// `Burst`s of `burst` events; returns the number of events emitted.
pub(crate) async fn traffic(demo: &Demo, blocks: u64, burst: u64) -> u64 {
    demo.mixed(blocks, |_| burst).await.expect("sending traffic")
}

/// The API over the test database, in-process on an ephemeral port, until `stop` fires.
pub(crate) async fn serve_api(url: &str, stop: &CancellationToken) -> String {
    let db = DbClient::new(DbClientConfig::new(url, SCHEMA)).expect("db client");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let stop = stop.clone();
    tokio::spawn(async move { tidemark_api::run(listener, tidemark_api::AppState::new(db), stop).await });
    base
}

/// Every `/v1/events` item matching `filter`, page after page of `limit` items; each
/// body must be JSON.
pub(crate) async fn api_events(base: &str, filter: &str, limit: u32) -> Vec<Value> {
    let http = reqwest::Client::new();
    let mut items = Vec::new();
    let mut after = String::new();
    loop {
        let url = format!("{base}/v1/events?{filter}&limit={limit}{after}");
        let r = http.get(&url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert_eq!(r.status(), 200, "GET {url}");
        let text = r.text().await.expect("body");
        let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url} is not JSON ({e})"));
        items.extend(body["items"].as_array().expect("items").iter().cloned());
        match body["nextCursor"].as_str() {
            Some(c) => after = format!("&after={c}"),
            None => return items,
        }
    }
}
