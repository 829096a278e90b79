//! [`WebhookReceiver`]: a local webhook receiver with faults, for sink tests. It speaks
//! just enough HTTP/1.1 over raw TCP to misbehave the ways real receivers do: answer
//! 500, never answer (the sender times out), reset the connection, or be down (the port
//! refuses connections). Every request is recorded with whether its signature verifies
//! with the Standard Webhooks reference library (`standardwebhooks`), not Tidemark's
//! code.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng as _;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::process::free_port;

/// What the receiver did with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 200.
    Accepted,
    /// 500.
    Failed,
    /// No answer until the sender gave up.
    Hung,
    /// The connection was reset.
    Reset,
}

/// One received request.
#[derive(Debug, Clone)]
pub struct Received {
    /// `webhook-id`.
    pub id: String,
    /// `webhook-timestamp`.
    pub timestamp: String,
    /// The body.
    pub body: Vec<u8>,
    /// Whether the signature verified with the reference library.
    pub verified: bool,
    /// What the receiver answered.
    pub outcome: Outcome,
}

/// Fault rates (0.0–1.0), drawn per request.
#[derive(Debug, Clone, Copy, Default)]
pub struct WebhookFaults {
    /// Answer 500.
    pub error: f64,
    /// Never answer.
    pub hang: f64,
    /// Reset the connection.
    pub reset: f64,
    /// Wait this long before answering each request.
    pub delay: Duration,
}

struct Shared {
    secret: String,
    faults: Mutex<WebhookFaults>,
    received: Mutex<Vec<Received>>,
}

/// A receiver on a free local port; stopped on drop.
pub struct WebhookReceiver {
    port: u16,
    shared: Arc<Shared>,
    accept: Mutex<Option<JoinHandle<()>>>,
    up: AtomicBool,
}

impl WebhookReceiver {
    /// Starts a receiver verifying with `secret` (`whsec_…`).
    pub async fn start(secret: &str) -> Self {
        let receiver = Self {
            port: free_port(),
            shared: Arc::new(Shared {
                secret: secret.to_owned(),
                faults: Mutex::new(WebhookFaults::default()),
                received: Mutex::new(Vec::new()),
            }),
            accept: Mutex::new(None),
            up: AtomicBool::new(false),
        };
        receiver.up().await;
        receiver
    }

    /// The URL to configure.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks/tidemark", self.port)
    }

    /// Sets the fault rates.
    pub fn set_faults(&self, faults: WebhookFaults) {
        *self.shared.faults.lock().unwrap_or_else(|e| e.into_inner()) = faults;
    }

    /// Stops listening: connections are refused until [`WebhookReceiver::up`].
    pub fn down(&self) {
        if let Some(h) = self.accept.lock().unwrap_or_else(|e| e.into_inner()).take() {
            h.abort();
        }
        self.up.store(false, Ordering::SeqCst);
    }

    /// Listens again (on the same port).
    ///
    /// # Panics
    /// When the port cannot be bound again within 5 s.
    pub async fn up(&self) {
        if self.up.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut listener = None;
        for _ in 0..100 {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => {
                    listener = Some(l);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        let listener =
            listener.unwrap_or_else(|| panic!("cannot bind the webhook receiver's port {}", self.port));
        let shared = self.shared.clone();
        let handle = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                connections.spawn(serve(stream, shared.clone()));
            }
        });
        *self.accept.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// How many requests arrived so far.
    pub fn count(&self) -> usize {
        self.shared.received.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The requests after the first `start`.
    pub fn received_since(&self, start: usize) -> Vec<Received> {
        let all = self.shared.received.lock().unwrap_or_else(|e| e.into_inner());
        all.get(start..).map(<[Received]>::to_vec).unwrap_or_default()
    }

    /// The items of every accepted request, in arrival order.
    pub fn accepted_items(&self) -> Vec<serde_json::Value> {
        self.received()
            .into_iter()
            .filter(|r| r.outcome == Outcome::Accepted)
            .flat_map(|r| {
                let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
                body["items"].as_array().cloned().unwrap_or_default()
            })
            .collect()
    }
}

/// The cursor of a sink's item (a decimal string in JSON).
///
/// # Panics
/// When the item has none.
pub fn item_cursor(item: &serde_json::Value) -> i64 {
    item["cursor"]
        .as_str()
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("item without a cursor: {item}"))
}

impl WebhookReceiver {
    /// The `[[sinks]]` table of a webhook sink `name` to this receiver, signed with
    /// `secret`, with `extra` lines (`batch_size = 3`, …).
    pub fn sink_table(&self, name: &str, secret: &str, extra: &str) -> String {
        format!(
            "name = \"{name}\"\nkind = \"webhook\"\nurl = \"{}\"\nsecret = \"{secret}\"\n{extra}",
            self.url()
        )
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.down();
    }
}

async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut headers = http::HeaderMap::new();
        let mut line = String::new();
        // Request line.
        match reader.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut length = 0usize;
        loop {
            line.clear();
            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_owned());
                if k == "content-length" {
                    length = v.parse().unwrap_or(0);
                }
                if let (Ok(name), Ok(value)) =
                    (http::HeaderName::from_bytes(k.as_bytes()), http::HeaderValue::from_str(&v))
                {
                    headers.insert(name, value);
                }
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        let verified =
            standardwebhooks::Webhook::new(&shared.secret).is_ok_and(|w| w.verify(&body, &headers).is_ok());
        let faults = *shared.faults.lock().unwrap_or_else(|e| e.into_inner());
        if !faults.delay.is_zero() {
            tokio::time::sleep(faults.delay).await;
        }
        let draw: f64 = rand::rng().random();
        let outcome = if draw < faults.error {
            Outcome::Failed
        } else if draw < faults.error + faults.hang {
            Outcome::Hung
        } else if draw < faults.error + faults.hang + faults.reset {
            Outcome::Reset
        } else {
            Outcome::Accepted
        };
        let header =
            |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        shared.received.lock().unwrap_or_else(|e| e.into_inner()).push(Received {
            id: header("webhook-id"),
            timestamp: header("webhook-timestamp"),
            body,
            verified,
            outcome,
        });
        let stream = reader.get_mut();
        match outcome {
            Outcome::Accepted | Outcome::Failed => {
                let status =
                    if outcome == Outcome::Accepted { "200 OK" } else { "500 Internal Server Error" };
                let response = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
                if stream.write_all(response.as_bytes()).await.is_err() {
                    return;
                }
            }
            Outcome::Hung => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            Outcome::Reset => {
                // SO_LINGER 0: closing sends a RST (a zero linger never blocks on drop).
                #[allow(deprecated)]
                let _ = stream.set_linger(Some(Duration::ZERO));
                return;
            }
        }
    }
}
