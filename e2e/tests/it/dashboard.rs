//! The operator dashboard (`GET /` of the API) in a real headless Chromium, driven over
//! WebDriver (Debian's `chromium` and `chromium-driver`, which `deploy/test.sh` installs):
//! against an indexer backfilling through a slow RPC proxy, then following a chain with
//! traffic, the page shows the chain's row reaching `following` at 100 %, live events
//! arriving over its stream, no console errors, few requests while idle, a banner while
//! PostgreSQL is down, and recovery once it is back. Screenshots (1280×800) go to
//! `<target>/dashboard/`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};
use tidemark_testkit::{Api, RpcProxy, SOON, Stack, free_port, metric_sum};

const SCHEMA: &str = "tidemark_dashboard";
/// Blocks of history: enough for a visible backfill through the slow proxy.
const HISTORY_BLOCKS: u64 = 600;

/// A chromedriver process and a headless Chromium session through it.
struct Browser {
    driver: Child,
    client: Client,
    _profile: tidemark_testkit::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn binary(env: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(env).map_or_else(|| PathBuf::from(default), PathBuf::from);
    assert!(
        path.exists(),
        "{} not found: install Debian's chromium and chromium-driver (deploy/test.sh does), or set {env}",
        path.display()
    );
    path
}

impl Browser {
    async fn start() -> Self {
        let chromium = binary("CHROMIUM", "/usr/bin/chromium");
        let chromedriver = binary("CHROMEDRIVER", "/usr/bin/chromedriver");
        let port = free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let profile = tidemark_testkit::tempdir().expect("a profile directory");
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,800",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        });
        let Value::Object(caps) = caps else { unreachable!("an object literal") };
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector).capabilities(caps.clone()).connect(&url).await {
                Ok(c) => break c,
                Err(e) if Instant::now() > deadline => panic!("no WebDriver session within 30 s: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        // Screenshots of the page at 1280×800: the window is the viewport plus whatever
        // the browser draws around it.
        let inner = client
            .execute(
                "return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight]",
                vec![],
            )
            .await
            .expect("the window's frame");
        let frame = |i: usize| u32::try_from(inner[i].as_u64().unwrap_or(0)).unwrap_or(0);
        client.set_window_size(1280 + frame(0), 800 + frame(1)).await.expect("resizing the window");
        Self { driver, client, _profile: profile }
    }

    /// What the test reads off the page, in one script.
    async fn view(&self) -> View {
        let v = self
            .client
            .execute(
                r#"
                const rows = [...document.querySelectorAll('[data-chain-id]')].map(r => ({
                  id: r.getAttribute('data-chain-id'),
                  status: (r.querySelector('.chain-status') || {}).textContent || '',
                  percent: Number((r.querySelector('.progress-bar') || {dataset: {}}).dataset.percent || -1),
                }));
                const banner = document.getElementById('banner');
                const cursors = [...document.querySelectorAll('.event-row')].map(e => Number(e.getAttribute('data-cursor')));
                const body = document.getElementById('events-body');
                return {
                  rows,
                  cursors,
                  removed: document.querySelectorAll('.event-row.removed').length,
                  eventsText: body ? body.textContent : '',
                  injected: body ? body.querySelectorAll('img, script, b').length : 0,
                  title: document.title,
                  degraded: !!banner && banner.classList.contains('degraded') && !banner.classList.contains('hidden'),
                  banner: banner ? banner.textContent : '',
                };
                "#,
                vec![],
            )
            .await
            .expect("reading the page");
        serde_json::from_value(v).expect("the page's view")
    }

    async fn until(&self, what: &str, within: Duration, f: impl Fn(&View) -> bool) -> View {
        let deadline = Instant::now() + within;
        loop {
            let view = self.view().await;
            if f(&view) {
                return view;
            }
            assert!(Instant::now() < deadline, "{what}: not within {within:?}; the page shows {view:?}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        // Bars animate their width for 0.4 s.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let dir = tidemark_testkit::bins::target_dir().join("dashboard");
        std::fs::create_dir_all(&dir).expect("screenshot directory");
        let path = dir.join(format!("{name}.png"));
        let png = self.client.screenshot().await.expect("a screenshot");
        std::fs::write(&path, png).expect("writing the screenshot");
        println!("screenshot: {}", path.display());
        path
    }

    /// The browser's console entries at `SEVERE` level since the last call.
    async fn console_errors(&self) -> Vec<String> {
        let logs = self.client.issue_cmd(BrowserLog).await.expect("reading the browser log");
        logs.as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

/// ChromeDriver's log endpoint (`goog:loggingPrefs`): console messages and failed loads.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.to_owned()))
    }
}

#[derive(Debug, serde::Deserialize)]
struct View {
    rows: Vec<Row>,
    cursors: Vec<i64>,
    removed: usize,
    #[serde(rename = "eventsText")]
    events_text: String,
    injected: usize,
    title: String,
    degraded: bool,
    banner: String,
}

#[derive(Debug, serde::Deserialize)]
struct Row {
    id: String,
    status: String,
    percent: i64,
}

impl View {
    fn chain(&self, id: u64) -> Option<&Row> {
        self.rows.iter().find(|r| r.id == id.to_string())
    }
}

async fn rpc(url: &str, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let http = reqwest::Client::new();
    let r: Value = http.post(url).json(&body).send().await.expect("rpc").json().await.expect("rpc json");
    assert!(r.get("error").is_none(), "{method}: {r}");
    r["result"].clone()
}

/// Requests the API answered, all routes but `/metrics`, from its own counters.
async fn requests_served(api: &Api) -> f64 {
    let (_, text) = tidemark_testkit::get_text(&format!("{}/metrics", api.http)).await.expect("/metrics");
    metric_sum(&text, "http_requests_total", "")
        - metric_sum(&text, "http_requests_total", "route=\"/metrics\"")
}

/// The prefix the dashboard is served under in this test, through [`prefix_proxy`].
const PREFIX: &str = "/ops/tidemark";

/// A reverse proxy serving `upstream` under [`PREFIX`] (as an operator mounts the API
/// behind a path on a shared host): `GET {PREFIX}/x` → `GET {upstream}/x`, bodies
/// streamed (the page's event stream included). Returns the proxy's base URL.
async fn prefix_proxy(upstream: String) -> String {
    use axum::body::Body;
    use axum::extract::{Request, State};
    use hyper_util::client::legacy::Client as HttpClient;
    use hyper_util::rt::TokioExecutor;

    type Upstream = (HttpClient<hyper_util::client::legacy::connect::HttpConnector, Body>, String);
    async fn forward(State((client, upstream)): State<Upstream>, req: Request) -> axum::response::Response {
        let (mut parts, body) = req.into_parts();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let rest = path.strip_prefix(PREFIX).unwrap_or(path);
        parts.uri = format!("{upstream}{rest}").parse().expect("an upstream URI");
        match client.request(Request::from_parts(parts, body)).await {
            Ok(resp) => resp.map(Body::new),
            Err(e) => {
                axum::response::IntoResponse::into_response((http::StatusCode::BAD_GATEWAY, e.to_string()))
            }
        }
    }
    let client = HttpClient::builder(TokioExecutor::new()).build_http();
    let app = axum::Router::new()
        .route(&format!("{PREFIX}/"), axum::routing::any(forward))
        .route(&format!("{PREFIX}/{{*rest}}"), axum::routing::any(forward))
        .with_state((client, upstream));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binding the proxy");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_backfill_following_live_events_and_an_outage_in_chromium() {
    tidemark_db_client::tls::install_crypto_provider();
    let browser = Browser::start().await;
    let mut stack = Stack::private(SCHEMA).await;
    let chain = stack.chain_id;

    // History: some events, then empty blocks, so the backfill has a length to show.
    stack.demo.mixed(20, |i| 1 + i % 4).await.expect("traffic");
    rpc(stack.anvil.url(), "anvil_mine", json!([format!("{HISTORY_BLOCKS:#x}")])).await;
    stack.demo.mixed(5, |_| 2).await.expect("traffic");

    // The indexer reads through a proxy that slows `eth_getLogs`: a backfill of tens of
    // seconds, in small ranges.
    let proxy = RpcProxy::start(stack.anvil.url()).await;
    proxy.delay("eth_getLogs", Duration::from_millis(400));
    let spec =
        stack.chain_spec().rpc_urls(vec![proxy.url().to_owned()]).max_block_range(10).max_concurrency(1);
    let config =
        tidemark_testkit::IndexerConfigBuilder::new(stack.schema.clone(), stack.db_url.clone()).chain(spec);
    let _indexer = stack.spawn(&config);
    let api = stack.spawn_api(&["--config-refresh-ms", "1000"]);
    api.wait_healthy(SOON).await;

    // Behind a path prefix, as an operator may mount it: every URL of the page is relative.
    let proxied = prefix_proxy(api.http.clone()).await;
    browser.client.goto(&format!("{proxied}{PREFIX}/")).await.expect("loading the dashboard");
    let view = browser
        .until("the chain backfilling", SOON, |v| {
            v.chain(chain).is_some_and(|r| r.status.contains("backfill") && (1..100).contains(&r.percent))
        })
        .await;
    println!("backfilling: {:?}", view.chain(chain));
    browser.screenshot("backfilling").await;

    // Let it catch up, then keep the chain busy.
    proxy.clear_delays();
    let traffic = {
        let demo = stack.demo.clone();
        tokio::spawn(async move {
            loop {
                let _ = demo.burst(2).await;
                tokio::time::sleep(Duration::from_millis(700)).await;
            }
        })
    };
    let view = browser
        .until("the chain following at 100 %", SOON, |v| {
            v.chain(chain).is_some_and(|r| r.status.trim() == "following" && r.percent == 100)
        })
        .await;
    let newest = view.cursors.iter().copied().max().unwrap_or(0);
    assert!(!view.cursors.is_empty(), "the newest events are shown on load");
    browser.until("a live event from the stream", SOON, |v| v.cursors.iter().any(|c| *c > newest)).await;
    browser.screenshot("following").await;

    // Anyone can emit anything: markup in event arguments is shown as text, never run.
    let hostile = "<img src=x onerror=\"document.title='owned'\">";
    stack
        .demo
        .tag(alloy::primitives::B256::repeat_byte(7), &["<b>bold</b>", hostile], b"\x00\xff<script>")
        .await
        .expect("tag");
    let view =
        browser.until("a hostile event shown as text", SOON, |v| v.events_text.contains("<b>bold</b>")).await;
    assert_eq!(view.injected, 0, "markup from an event became elements");
    assert_ne!(view.title, "owned");

    // A reorg reaches the page as `removed` entries: their rows are struck through.
    stack.demo.reorg(3).await.expect("reorg");
    browser.until("removed rows struck through", SOON, |v| v.removed > 0).await;

    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");

    // Idle (no traffic): the page's own requests, from the API's counters.
    traffic.abort();
    let (before, started) = (requests_served(&api).await, Instant::now());
    tokio::time::sleep(Duration::from_secs(60)).await;
    let per_second = (requests_served(&api).await - before) / started.elapsed().as_secs_f64();
    println!("idle: {per_second:.2} requests/s from the page over 60 s");
    assert!(per_second <= 3.0, "the page polls {per_second:.2} requests/s while idle");
    assert!(per_second >= 0.5, "the page keeps itself up to date ({per_second:.2} requests/s)");

    // PostgreSQL down: the page says so and keeps its data.
    stack.pg().stop().await;
    let view = browser.until("the degraded banner", SOON, |v| v.degraded).await;
    println!("degraded: {}", view.banner.trim());
    assert!(view.chain(chain).is_some(), "the chain's row stays while degraded");
    assert!(!view.cursors.is_empty(), "the events stay while degraded");
    browser.screenshot("degraded").await;

    // Back: the banner goes by itself, live events flow again.
    stack.pg().restart().await;
    let view = browser.until("recovery", SOON * 2, |v| !v.degraded).await;
    let newest = view.cursors.iter().copied().max().unwrap_or(0);
    let demo = stack.demo.clone();
    let more = tokio::spawn(async move {
        loop {
            let _ = demo.burst(1).await;
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
    });
    browser.until("live events after recovery", SOON * 2, |v| v.cursors.iter().any(|c| *c > newest)).await;
    more.abort();
    browser.screenshot("recovered").await;
    let _ = browser.client.clone().close().await;
}
