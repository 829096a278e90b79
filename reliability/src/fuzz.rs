//! Bad input over HTTP (DESIGN §9.7): random and malformed methods, paths, query strings,
//! headers and bodies for every endpoint of both services, and a tally of the answers.
//!
//! Well-formed HTTP with random contents goes through `reqwest` (kept-alive connections);
//! malformed framing — broken request lines, header syntax, lengths, chunking, raw bytes —
//! is written to a fresh TCP connection by [`send_raw`], a minimal HTTP/1.1 client that
//! only reads the status line.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use rand::Rng;
use rand::seq::IndexedRandom;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Which service a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Service {
    /// `tidemark-api`.
    Api,
    /// The indexer's own HTTP server.
    Indexer,
}

impl Service {
    /// `api` or `indexer`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Indexer => "indexer",
        }
    }

    /// The endpoints it serves.
    pub fn endpoints(self) -> &'static [&'static str] {
        match self {
            Self::Api => &[
                "/live",
                "/health",
                "/status",
                "/config",
                "/v1/realtime",
                "/v1/events",
                "/v1/epochs",
                "/v1/stream",
                "/metrics",
                "/openapi.json",
            ],
            Self::Indexer => &["/health", "/status", "/config", "/metrics", "/v1/webhooks/alchemy"],
        }
    }

    /// Whether a 5xx on `path` is documented: `/health` 503 when unhealthy, `/status` 503
    /// with no status (both services), and the API's `/v1/realtime` 503 when behind or
    /// unknown.
    pub fn documented_5xx(self, path: &str, status: u16) -> bool {
        status == 503
            && match self {
                Self::Api => matches!(path, "/health" | "/status" | "/v1/realtime"),
                Self::Indexer => matches!(path, "/health" | "/status"),
            }
    }
}

/// Values that pass validation, so some requests reach the database with odd combinations.
#[derive(Debug, Clone)]
pub struct Known {
    /// The indexed chain.
    pub chain_id: u64,
    /// Contract names of the config.
    pub contracts: Vec<String>,
    /// Event names.
    pub events: Vec<String>,
    /// Contract addresses.
    pub addresses: Vec<String>,
    /// A transaction hash with events.
    pub tx_hash: String,
    /// A topic that occurs.
    pub topic: String,
}

/// One request to send.
#[derive(Debug, Clone)]
pub struct FuzzRequest {
    /// Target service.
    pub service: Service,
    /// The path the server sees (for classifying a 5xx).
    pub path: String,
    /// What was sent, shortened, for reports.
    pub summary: String,
    /// How to send it.
    pub kind: Kind,
}

/// How a [`FuzzRequest`] is sent.
#[derive(Debug, Clone)]
pub enum Kind {
    /// Well-formed HTTP through `reqwest`.
    Http {
        /// Method.
        method: String,
        /// Path and query, possibly with invalid percent escapes.
        target: String,
        /// Headers (values may hold obs-text bytes).
        headers: Vec<(String, Vec<u8>)>,
        /// Body.
        body: Vec<u8>,
    },
    /// Bytes written as they are to a new connection.
    Raw(Vec<u8>),
}

fn pick<'a, R: Rng + ?Sized>(rng: &mut R, items: &'a [&'a str]) -> &'a str {
    items.choose(rng).copied().unwrap_or_default()
}

const NUMBERS: [&str; 26] = [
    "0",
    "1",
    "-1",
    "2",
    "10",
    "100",
    "1000",
    "1001",
    "65535",
    "4294967296",
    "9007199254740993",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999999",
    "1e3",
    "1.5",
    "-0",
    "+1",
    "0x10",
    "00000000001",
    "NaN",
    "inf",
    " 1",
    "1 ",
];

const JUNK: [&str; 30] = [
    "",
    "%00",
    "%ff",
    "%zz",
    "%",
    "%%",
    "%e2%82",
    "%c0%af",
    "null",
    "true",
    "[]",
    "{}",
    "'",
    "\"",
    "';DROP TABLE events;--",
    "\\",
    "%0d%0aX-Injected:%201",
    "..%2f..%2f",
    "%F0%9F%92%A5",
    "caf%C3%A9",
    "a+b",
    "a%20b",
    "%2C",
    "0x",
    "0xZZ",
    "0x0000000000000000000000000000000000000000",
    "0xffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    "Transfer%00",
    "LOG",
    "planned",
];

const STAGES: [&str; 9] =
    ["planned", "fetched", "decoded", "stored", "finalized", "reorged", "delivered", "STORED", "stored "];

fn long<R: Rng + ?Sized>(rng: &mut R) -> String {
    let n = rng.random_range(200..9_000);
    let c = pick(rng, &["a", "9", "%41", "%", "é", "0"]);
    c.repeat(n / c.len().max(1))
}

fn random_printable<R: Rng + ?Sized>(rng: &mut R, max: usize) -> String {
    let n = rng.random_range(0..=max);
    (0..n)
        .map(|_| {
            let b: u8 = rng.random_range(0x21..0x7f);
            match b {
                b'&' | b'#' | b'=' => 'x',
                b => char::from(b),
            }
        })
        .collect()
}

fn value<R: Rng + ?Sized>(rng: &mut R, known: &Known, param: &str) -> String {
    let good = match param {
        "chainId" => known.chain_id.to_string(),
        "contract" => known.contracts.choose(rng).cloned().unwrap_or_default(),
        "event" => known.events.choose(rng).cloned().unwrap_or_default(),
        "address" => {
            let a = known.addresses.choose(rng).cloned().unwrap_or_default();
            if rng.random_bool(0.5) { a.to_uppercase().replacen("0X", "0x", 1) } else { a }
        }
        "txHash" => known.tx_hash.clone(),
        "topic1" | "topic2" | "topic3" => known.topic.clone(),
        "stage" => pick(rng, &STAGES).to_owned(),
        _ => pick(rng, &NUMBERS).to_owned(),
    };
    match rng.random_range(0..10) {
        0..=3 => good,
        4..=5 => pick(rng, &NUMBERS).to_owned(),
        6..=7 => pick(rng, &JUNK).to_owned(),
        8 => random_printable(rng, 40),
        _ => long(rng),
    }
}

fn params(path: &str) -> &'static [&'static str] {
    match path {
        "/v1/events" => &[
            "chainId",
            "contract",
            "event",
            "address",
            "txHash",
            "topic1",
            "topic2",
            "topic3",
            "fromBlock",
            "toBlock",
            "after",
            "limit",
        ],
        "/v1/epochs" => &["chainId", "stage", "page", "size"],
        "/v1/realtime" => &["maxWorstCaseDistance"],
        "/v1/stream" => &["after"],
        _ => &["limit", "after", "chainId"],
    }
}

fn query<R: Rng + ?Sized>(rng: &mut R, known: &Known, path: &str) -> String {
    let names = params(path);
    let mut parts: Vec<String> = Vec::new();
    for _ in 0..rng.random_range(0..=5) {
        let name = match rng.random_range(0..12) {
            0 => pick(rng, &["chainid", "LIMIT", "foo", "", "a[]", "limit[]", "%6cimit", "li%00mit"])
                .to_owned(),
            1 => random_printable(rng, 12),
            _ => pick(rng, names).to_owned(),
        };
        let v = value(rng, known, &name);
        parts.push(match rng.random_range(0..20) {
            0 => name,
            1 => format!("{name}=={v}"),
            _ => format!("{name}={v}"),
        });
    }
    let sep = if rng.random_bool(0.95) { "&" } else { pick(rng, &[";", "&&", "&=&"]) };
    parts.join(sep)
}

fn path<R: Rng + ?Sized>(rng: &mut R, service: Service) -> String {
    match rng.random_range(0..10) {
        0..=6 => pick(rng, service.endpoints()).to_owned(),
        7 => {
            let base = pick(rng, service.endpoints());
            match rng.random_range(0..6) {
                0 => format!("{base}/"),
                1 => base.to_uppercase(),
                2 => format!("/{base}"),
                3 => format!("{base}/{}", random_printable(rng, 10).replace('?', "")),
                4 => format!("{base}%00"),
                _ => format!("{base}/.."),
            }
        }
        8 => pick(
            rng,
            &[
                "/",
                "/v1",
                "/v1/",
                "/v2/events",
                "/v1/events/1",
                "/%2e%2e/%2e%2e/etc/passwd",
                "/.env",
                "/v1/w%C3%A9bhooks",
                "/v1/webhooks/",
                "/v1/webhooks/alchemy/x",
                "/openapi.yaml",
                "/favicon.ico",
                "/%ff%fe",
                "/health%20",
            ],
        )
        .to_owned(),
        _ => format!("/{}", long(rng)),
    }
}

const HEADER_NAMES: [&str; 17] = [
    "Last-Event-ID",
    "Accept",
    "Accept-Encoding",
    "Accept-Language",
    "Origin",
    "Access-Control-Request-Method",
    "Access-Control-Request-Headers",
    "If-None-Match",
    "If-Modified-Since",
    "Range",
    "Content-Type",
    "Authorization",
    "Cookie",
    "X-Forwarded-For",
    "X-Request-Id",
    "Cache-Control",
    "X-Tidemark-Signature",
];

fn header_value<R: Rng + ?Sized>(rng: &mut R) -> Vec<u8> {
    match rng.random_range(0..8) {
        0 => b"text/event-stream".to_vec(),
        1 => b"application/json; charset=\xff".to_vec(),
        2 => pick(rng, &NUMBERS).as_bytes().to_vec(),
        3 => pick(rng, &JUNK).as_bytes().to_vec(),
        4 => (0..rng.random_range(1..64)).map(|_| rng.random_range(0x80..=0xff)).collect(),
        5 => "x".repeat(rng.random_range(1_000..40_000)).into_bytes(),
        6 => b"sha256=0000".to_vec(),
        _ => random_printable(rng, 60).into_bytes(),
    }
}

fn body<R: Rng + ?Sized>(rng: &mut R) -> Vec<u8> {
    match rng.random_range(0..20) {
        0..=11 => Vec::new(),
        12..=14 => (0..rng.random_range(1..4096)).map(|_| rng.random()).collect(),
        15..=17 => pick(
            rng,
            &[
                "{}",
                "[]",
                "{\"webhookId\":\"x\",\"event\":{\"data\":{\"block\":{\"number\":-1}}}}",
                "{\"a\":",
                "null",
                "\"\\ud800\"",
            ],
        )
        .as_bytes()
        .to_vec(),
        18 => "[".repeat(rng.random_range(100..20_000)).into_bytes(),
        _ => vec![b'a'; rng.random_range(100_000..1_100_000)],
    }
}

/// A well-formed request with random contents for `service`.
pub fn http_request<R: Rng + ?Sized>(rng: &mut R, service: Service, known: &Known) -> FuzzRequest {
    let method = match rng.random_range(0..20) {
        0..=11 => "GET",
        12..=13 => "HEAD",
        14 => "POST",
        15 => "PUT",
        16 => "DELETE",
        17 => "OPTIONS",
        18 => "PATCH",
        _ => pick(rng, &["TRACE", "FOO", "get", "PROPFIND"]),
    }
    .to_owned();
    let p = path(rng, service);
    let q = if rng.random_bool(0.8) { query(rng, known, &p) } else { String::new() };
    let target = if q.is_empty() && rng.random_bool(0.7) { p.clone() } else { format!("{p}?{q}") };
    let mut headers = Vec::new();
    for _ in 0..rng.random_range(0..4) {
        headers.push((pick(rng, &HEADER_NAMES).to_owned(), header_value(rng)));
    }
    if rng.random_bool(0.02) {
        for i in 0..rng.random_range(50..120) {
            headers.push((format!("X-Junk-{i}"), random_printable(rng, 20).into_bytes()));
        }
    }
    let body = if method == "GET" && rng.random_bool(0.8) { Vec::new() } else { body(rng) };
    let summary = format!("{method} {}", shorten(&target));
    FuzzRequest { service, path: p, summary, kind: Kind::Http { method, target, headers, body } }
}

/// A request with malformed HTTP framing for `service`.
pub fn raw_request<R: Rng + ?Sized>(rng: &mut R, service: Service, known: &Known) -> FuzzRequest {
    let p = pick(rng, service.endpoints()).to_owned();
    let q = query(rng, known, &p);
    let target = format!("{p}?{q}");
    let ok_line = format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    let kind = rng.random_range(0..24);
    let bytes: Vec<u8> = match kind {
        0 => format!("G\u{0}T {p} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes(),
        1 => format!("GET {p}\r\n\r\n").into_bytes(),
        2 => format!("GET {p} HTTP/9.9\r\nHost: x\r\n\r\n").into_bytes(),
        3 => b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
        4 => {
            let mut v = format!("GET {p}?").into_bytes();
            v.extend((0..rng.random_range(1..40)).map(|_| rng.random_range(0x80..=0xffu8)));
            v.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\n\r\n");
            v
        }
        5 => format!("GET {p} with spaces HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes(),
        6 => format!("GET http://127.0.0.1{target} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes(),
        7 => b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        8 => format!("{ok_line}Bad Header\r\n\r\n").into_bytes(),
        9 => format!("{ok_line}X(Y): z\r\n\r\n").into_bytes(),
        10 => {
            let mut v = ok_line.clone().into_bytes();
            v.extend_from_slice(b"X-A: a\x00b\r\nX-B: c\rd\r\n\r\n");
            v
        }
        11 => format!("{ok_line}X-A: a\r\n folded\r\n\r\n").into_bytes(),
        12 => format!(
            "{ok_line}Content-Length: {}\r\n\r\nabc",
            pick(rng, &["abc", "-1", "99999999999999999999", "3, 4", "+3", " 3"])
        )
        .into_bytes(),
        13 => format!("{ok_line}Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd").into_bytes(),
        14 => format!(
            "POST {p} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
        )
        .into_bytes(),
        15 => format!(
            "POST {p} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"
        )
        .into_bytes(),
        16 => {
            format!("GET {p}?{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(rng.random_range(10_000..120_000)))
                .into_bytes()
        }
        17 => {
            let mut s = ok_line.clone();
            for i in 0..rng.random_range(120..1_200) {
                s.push_str(&format!("X-H{i}: v\r\n"));
            }
            s.push_str("\r\n");
            s.into_bytes()
        }
        18 => format!("\r\n\r\n{ok_line}\r\n").into_bytes(),
        19 => format!("{ok_line}\r\n{ok_line}\r\nGARBAGE\r\n\r\n").into_bytes(),
        20 => format!("GET {target} HTTP/1.0\r\n\r\n").into_bytes(),
        21 => (0..rng.random_range(1..512)).map(|_| rng.random()).collect(),
        22 => format!("get {p} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes(),
        _ => format!("POST {p} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", "x".repeat(100))
            .into_bytes(),
    };
    let summary = format!("raw #{kind}: {}", shorten(&String::from_utf8_lossy(&bytes)));
    FuzzRequest { service, path: p, summary, kind: Kind::Raw(bytes) }
}

fn shorten(s: &str) -> String {
    let s = s.replace(['\r', '\n'], " ");
    if s.chars().count() > 120 { format!("{}…", s.chars().take(120).collect::<String>()) } else { s }
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A status code, the start of the body, and whether the body is a JSON error
    /// (`{"error": {"code": …}}`).
    Status(u16, String, bool),
    /// The server closed the connection without an HTTP answer.
    Closed,
    /// Nothing within the timeout.
    Timeout,
    /// The client could not send the request (e.g. it refused a header).
    NotSent(String),
}

/// Writes `bytes` to a new connection to `addr` and reads the answer: its status line,
/// headers and up to 64 KiB of body (as far as `Content-Length` says, or until the server
/// closes or pauses for 300 ms). A kept-alive connection is not waited on.
pub async fn send_raw(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> Answer {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        // The server may answer and close before reading everything: ignore write errors.
        let _ = s.write_all(bytes).await;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let headers_end = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
            let read = match headers_end {
                // Headers complete: read the body only while it keeps coming.
                Some(end) => {
                    let wanted = content_length(&buf[..end]).unwrap_or(64 * 1024).min(64 * 1024);
                    if buf.len() >= end + wanted {
                        break;
                    }
                    match tokio::time::timeout(Duration::from_millis(300), s.read(&mut chunk)).await {
                        Ok(r) => r,
                        Err(_) => break,
                    }
                }
                None => s.read(&mut chunk).await,
            };
            match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if buf.len() > 128 * 1024 {
                        break;
                    }
                }
            }
        }
        Some(buf)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Err(_) => Answer::Timeout,
        Ok(None) => Answer::NotSent("cannot connect".into()),
        Ok(Some(buf)) if buf.is_empty() => Answer::Closed,
        Ok(Some(buf)) => {
            let text = String::from_utf8_lossy(&buf);
            let code =
                text.strip_prefix("HTTP/1.").and_then(|r| r.get(2..5)).and_then(|c| c.parse::<u16>().ok());
            match code {
                Some(c) => {
                    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
                    Answer::Status(c, body.chars().take(300).collect(), false)
                }
                None => Answer::Closed,
            }
        }
    }
}

fn content_length(head: &[u8]) -> Option<usize> {
    String::from_utf8_lossy(head).lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim().eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok())?
    })
}

/// Sends `req` to `addr` (raw or through `client`).
pub async fn send(
    client: &reqwest::Client,
    addr: SocketAddr,
    req: &FuzzRequest,
    timeout: Duration,
) -> Answer {
    match &req.kind {
        Kind::Raw(bytes) => send_raw(addr, bytes, timeout).await,
        Kind::Http { method, target, headers, body } => {
            let Ok(url) = reqwest::Url::parse(&format!("http://{addr}{target}")) else {
                return Answer::NotSent("unparsable URL".into());
            };
            let Ok(method) = reqwest::Method::from_bytes(method.as_bytes()) else {
                return Answer::NotSent("invalid method".into());
            };
            let mut rb = client.request(method, url).timeout(timeout);
            for (name, value) in headers {
                if let Ok(v) = reqwest::header::HeaderValue::from_bytes(value) {
                    rb = rb.header(name.as_str(), v);
                }
            }
            if !body.is_empty() {
                rb = rb.body(body.clone());
            }
            match rb.send().await {
                Ok(r) => {
                    let code = r.status().as_u16();
                    // A stream's body never ends (`/v1/stream`): its head is the answer.
                    let stream = r.headers().get("content-type").is_some_and(|v| v == "text/event-stream");
                    let text = if stream { String::new() } else { r.text().await.unwrap_or_default() };
                    Answer::Status(code, text.chars().take(300).collect(), is_json_error(&text))
                }
                Err(e) if e.is_timeout() => Answer::Timeout,
                Err(e) if e.is_builder() => Answer::NotSent(e.to_string()),
                Err(_) => Answer::Closed,
            }
        }
    }
}

fn is_json_error(body: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .is_some_and(|v| v.get("error").and_then(|e| e.get("code")).is_some_and(serde_json::Value::is_string))
}

/// Tally of the answers of one service.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Requests sent.
    pub sent: u64,
    /// Answers by status class (`2xx`, `4xx`…), plus `closed`, `timeout`, `not-sent`.
    pub classes: BTreeMap<String, u64>,
    /// Documented 5xx answers (see [`Service::documented_5xx`]).
    pub documented_5xx: u64,
    /// Undocumented 5xx answers: `(status, request, body)`, the first 20.
    pub bad_5xx: Vec<(u16, String, String)>,
    /// Count of undocumented 5xx answers.
    pub bad_5xx_count: u64,
    /// API 4xx answers to well-formed requests whose body is not a JSON error.
    pub non_json_4xx: u64,
    /// Requests that got no answer in time, the first 5.
    pub timeouts: Vec<String>,
}

impl Tally {
    /// Adds one answer.
    pub fn add(&mut self, req: &FuzzRequest, answer: &Answer) {
        self.sent += 1;
        let class = match answer {
            Answer::Status(c, _, _) => format!("{}xx", c / 100),
            Answer::Closed => "closed".into(),
            Answer::Timeout => "timeout".into(),
            Answer::NotSent(_) => "not-sent".into(),
        };
        *self.classes.entry(class).or_default() += 1;
        if *answer == Answer::Timeout && self.timeouts.len() < 5 {
            self.timeouts.push(req.summary.clone());
        }
        if let Answer::Status(code, body, json_error) = answer {
            if *code >= 500 {
                if req.service.documented_5xx(&req.path, *code) {
                    self.documented_5xx += 1;
                } else {
                    self.bad_5xx_count += 1;
                    if self.bad_5xx.len() < 20 {
                        self.bad_5xx.push((*code, req.summary.clone(), body.clone()));
                    }
                }
            }
            let well_formed = matches!(&req.kind, Kind::Http { method, .. } if method != "HEAD");
            if req.service == Service::Api
                && (400..500).contains(code)
                && well_formed
                && !(*code == 431 || *code == 413)
                && !json_error
            {
                self.non_json_4xx += 1;
            }
        }
    }

    /// `2xx 123, 4xx 456, …`.
    pub fn classes_text(&self) -> String {
        self.classes.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
    }
}
