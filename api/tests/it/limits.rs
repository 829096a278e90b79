//! The API under load and abuse: load shedding, the request timeout, the probes outside
//! the budget, slow and idle connections, the connection cap, the response-size cap,
//! CORS and the database URL from a file.

use std::time::{Duration, Instant};
use tidemark_db_client::test_utils::eventually;

use tidemark_api::AppState;
use tidemark_api::settings::HttpSettings;
use tidemark_db_client::test_utils::TestDb;
use tidemark_db_client::test_utils::fixtures::{TestEvent, insert_event, seeded_instance};
use tidemark_db_client::{DbClient, DbClientConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::support::{fast_config, schema, spawn_raw};

/// The API in-process with `http` limits over `url`; its base URL and its stop token.
async fn serve(url: &str, http: HttpSettings) -> (String, CancellationToken) {
    serve_config(fast_config(url), http).await
}

/// [`serve`] with the client settings `config`.
async fn serve_config(config: DbClientConfig, http: HttpSettings) -> (String, CancellationToken) {
    let db = DbClient::new(config).expect("client");
    tidemark_db_client::tls::install_crypto_provider();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("127.0.0.1:{}", listener.local_addr().expect("addr").port());
    let stop = CancellationToken::new();
    tokio::spawn(tidemark_api::run(listener, AppState::with_http(db, http), stop.clone()));
    (base, stop)
}

/// A "database" that accepts connections and never answers: every query waits for the
/// pool's connect timeout (1 s in `fast_config`).
async fn black_hole() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("postgres://postgres@{}/x?sslmode=disable", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    url
}

async fn get(base: &str, path: &str) -> reqwest::Response {
    reqwest::Client::new().get(format!("http://{base}{path}")).send().await.expect("get")
}

/// Whether the server closes `stream` (EOF or reset) within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 256];
    match tokio::time::timeout(within, stream.read(&mut buf)).await {
        Ok(Ok(0) | Err(_)) => true,
        Ok(Ok(_)) | Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_budget_sheds_with_503_overloaded_and_the_probes_still_answer() {
    let url = black_hole().await;
    let http = HttpSettings { max_concurrent_requests: 2, ..HttpSettings::default() };
    // The slow requests hold their permits for the pool's connect timeout: long enough
    // that a loaded machine still sees them held.
    let mut config = fast_config(&url);
    config.pool.connect_timeout = Duration::from_secs(5);
    config.pool.checkout_timeout = Duration::from_secs(5);
    let (base, _stop) = serve_config(config, http).await;
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let base = base.clone();
            tokio::spawn(async move { get(&base, "/v1/events?limit=1").await.status() })
        })
        .collect();
    // Well inside the 5 s the slow requests hold their permits, late enough that they
    // have taken them on a loaded machine. (A request sent before they arrive is served,
    // and polling from the start would race them for the permits.)
    tokio::time::sleep(Duration::from_secs(1)).await;
    let shed = get(&base, "/openapi.json").await;
    assert_eq!(shed.status(), 503);
    assert_eq!(shed.headers().get("retry-after").map(|v| v.as_bytes()), Some(&b"1"[..]));
    let body: serde_json::Value = shed.json().await.expect("json");
    assert_eq!(body["error"]["code"], "overloaded", "{body}");
    // Built before the clock starts: a client loads the system's certificates.
    let client = reqwest::Client::new();
    for probe in ["/live", "/health"] {
        let started = Instant::now();
        let r = client.get(format!("http://{base}{probe}")).send().await.expect("get");
        assert!(started.elapsed() < Duration::from_millis(200), "{probe} took {:?}", started.elapsed());
        assert_ne!(r.headers().get("content-type"), None, "{probe}");
    }
    for s in slow {
        assert_eq!(s.await.expect("join"), 503, "the slow requests end with the database's 503");
    }
    // The permits are back.
    assert_eq!(get(&base, "/openapi.json").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_the_timeout_is_a_503_request_timeout() {
    let url = black_hole().await;
    let http = HttpSettings { request_timeout: Duration::from_millis(200), ..HttpSettings::default() };
    let (base, _stop) = serve(&url, http).await;
    let started = Instant::now();
    let r = get(&base, "/v1/events").await;
    assert!(started.elapsed() < Duration::from_millis(900), "took {:?}", started.elapsed());
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "request_timeout", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_closed() {
    let test_db = TestDb::new().await;
    let http = HttpSettings {
        header_read_timeout: Duration::from_millis(400),
        idle_timeout: Duration::from_millis(300),
        ..HttpSettings::default()
    };
    let (base, _stop) = serve(&test_db.url, http).await;
    // Slowloris: a request line and headers a few bytes at a time.
    let mut slow = TcpStream::connect(&base).await.expect("connect");
    let started = Instant::now();
    let mut closed = false;
    for chunk in ["GET /li", "ve HTTP/1.1\r\n", "Host: x\r\n", "X-A: 1\r\n", "X-B: 2\r\n", "X-C: 3\r\n"] {
        if slow.write_all(chunk.as_bytes()).await.is_err()
            || closed_within(&mut slow, Duration::from_millis(150)).await
        {
            closed = true;
            break;
        }
    }
    assert!(
        closed || closed_within(&mut slow, Duration::from_secs(2)).await,
        "slowloris connection kept open"
    );
    assert!(started.elapsed() < Duration::from_secs(2), "closed after {:?}", started.elapsed());
    // Idle: a connection that sends nothing.
    let mut idle = TcpStream::connect(&base).await.expect("connect");
    assert!(closed_within(&mut idle, Duration::from_secs(2)).await, "idle connection kept open");
    // A prompt client is served.
    assert_eq!(get(&base, "/live").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_for_one_to_close() {
    let test_db = TestDb::new().await;
    let http = HttpSettings { max_connections: 2, ..HttpSettings::default() };
    let (base, _stop) = serve(&test_db.url, http).await;
    let held = [TcpStream::connect(&base).await.expect("a"), TcpStream::connect(&base).await.expect("b")];
    tokio::time::sleep(Duration::from_millis(100)).await;
    let waiting = tokio::spawn({
        let base = base.clone();
        async move { get(&base, "/live").await.status() }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "a third connection was served beyond the cap of 2");
    drop(held);
    let status = tokio::time::timeout(Duration::from_secs(3), waiting).await.expect("served").expect("join");
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_stops_at_the_response_cap_and_continues_from_its_next_cursor() {
    let (test_db, _pool, mut conn) = seeded_instance(&schema(), &[]).await;
    for i in 0..20 {
        let mut e = TestEvent::transfer(1, i, 0, i, i + 1);
        e.args = serde_json::json!({"blob": "x".repeat(4000)});
        insert_event(&mut conn, &schema(), &e).await.expect("insert");
    }
    let cap = 16 * 1024;
    let (base, _stop) =
        serve(&test_db.url, HttpSettings { max_response_bytes: cap, ..HttpSettings::default() }).await;
    let (mut seen, mut after, mut pages) = (0, String::new(), 0);
    loop {
        let r = get(&base, &format!("/v1/events?limit=1000{after}")).await;
        assert_eq!(r.status(), 200);
        let bytes = r.bytes().await.expect("body");
        assert!(bytes.len() <= cap, "a {}-byte page over the {cap}-byte cap", bytes.len());
        let page: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        seen += page["items"].as_array().expect("items").len();
        pages += 1;
        match page["nextCursor"].as_str() {
            Some(c) => after = format!("&after={c}"),
            None => break,
        }
    }
    assert_eq!(seen, 20);
    assert!(pages >= 5, "{pages} pages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_covers_the_configured_origins_and_never_metrics() {
    let test_db = TestDb::new().await;
    let http = HttpSettings { cors_origins: vec!["https://app.example".into()], ..HttpSettings::default() };
    let (base, _stop) = serve(&test_db.url, http).await;
    let client = reqwest::Client::new();
    let allowed = |path: &'static str, origin: &'static str| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let r = client
                .get(format!("http://{base}{path}"))
                .header("origin", origin)
                .send()
                .await
                .expect("get");
            r.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap_or("").to_owned())
        }
    };
    assert_eq!(allowed("/status", "https://app.example").await.as_deref(), Some("https://app.example"));
    assert_eq!(allowed("/live", "https://app.example").await.as_deref(), Some("https://app.example"));
    assert_eq!(allowed("/status", "https://other.example").await, None);
    assert_eq!(allowed("/metrics", "https://app.example").await, None);
    let (default, _stop) = serve(&test_db.url, HttpSettings::default()).await;
    let r =
        client.get(format!("http://{default}/metrics")).header("origin", "https://x.example").send().await;
    assert!(
        !r.expect("get").headers().contains_key("access-control-allow-origin"),
        "/metrics offered to browsers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_url_comes_from_a_file_and_a_command_line_url_is_warned_about() {
    let test_db = TestDb::new().await;
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("url");
    std::fs::write(&file, format!("{}\n", test_db.url)).expect("write");
    let file = file.to_str().expect("utf-8");
    let common = ["--listen", "127.0.0.1:0", "--log-format", "json", "--schema", "tidemark_demo"];
    let wait = async |child: &mut tokio::process::Child, addr: tokio::sync::oneshot::Receiver<String>| {
        tokio::select! {
            a = addr => a.expect("listening"),
            s = child.wait() => panic!("exited {s:?}"),
        }
    };
    let (mut child, log, addr) = spawn_raw(&[("DATABASE_URL_FILE", file)], &common);
    let addr = wait(&mut child, addr).await;
    assert_eq!(get(&addr, "/live").await.status(), 200);
    eventually(Duration::from_secs(20), "the database reached through the URL from the file", || async {
        let body: serde_json::Value = get(&addr, "/health").await.json().await.unwrap_or_default();
        body["reasons"] == serde_json::json!(["uninitialized"])
    })
    .await;
    let text = log.lock().map(|l| l.clone()).unwrap_or_default();
    assert!(!text.contains("visible to every user"), "{text}");
    assert!(text.contains("open-file limit"), "{text}");
    drop(child);

    let (mut child, log, addr) = spawn_raw(&[], &[&common[..], &["--database-url", &test_db.url]].concat());
    wait(&mut child, addr).await;
    let text = log.lock().map(|l| l.clone()).unwrap_or_default();
    assert!(text.contains("visible to every user"), "{text}");
    assert!(!text.contains(&test_db.url), "the URL was logged");

    let (mut child, _log, _addr) = spawn_raw(&[("DATABASE_URL_FILE", "/nonexistent/url")], &common);
    let status =
        tokio::time::timeout(Duration::from_secs(20), child.wait()).await.expect("exits").expect("wait");
    assert_eq!(status.code(), Some(2));
}
