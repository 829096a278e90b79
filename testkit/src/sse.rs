//! A client of the API's `/v1/stream`: server-sent events read one at a time, over
//! reqwest ([`SseReader::connect`]) or over a plain socket with a small receive buffer
//! ([`SseReader::connect_raw`]), for a client that stops reading and must make the server
//! feel it at once.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// One server-sent event: its `id`, `event` (`message` when absent) and `data` fields.
/// `retry:` lines and comments are not events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// `id:`, when the event has one.
    pub id: Option<String>,
    /// `event:`.
    pub event: String,
    /// `data:` (lines joined with `\n`).
    pub data: String,
}

impl SseEvent {
    /// The `id` as a cursor.
    ///
    /// # Panics
    /// When the event has no `id` or it is not a number.
    pub fn cursor(&self) -> i64 {
        let id = self.id.as_deref().unwrap_or_else(|| panic!("a {} event without id", self.event));
        id.parse().unwrap_or_else(|_| panic!("id {id:?} is not a cursor"))
    }

    /// The data as JSON.
    ///
    /// # Panics
    /// When it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("{} data is not JSON ({e}): {}", self.event, self.data))
    }
}

enum Source {
    Http(reqwest::Response),
    Raw(TcpStream),
}

/// An open stream, read event by event.
pub struct SseReader {
    source: Source,
    buf: Vec<u8>,
    /// How far `buf` was searched for the end of an event.
    scanned: usize,
}

impl std::fmt::Debug for SseReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseReader").field("buffered", &self.buf.len()).finish_non_exhaustive()
    }
}

/// `GET url` with `Accept: text/event-stream` and, when given, `Last-Event-ID`.
///
/// # Errors
/// When the request fails.
pub async fn open(
    client: &reqwest::Client,
    url: &str,
    last_event_id: Option<&str>,
) -> reqwest::Result<reqwest::Response> {
    tidemark_db_client::tls::install_crypto_provider();
    let mut req = client.get(url).header("accept", "text/event-stream");
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    req.send().await
}

impl SseReader {
    /// Reads the events of `resp`, an open `text/event-stream` response.
    pub fn new(resp: reqwest::Response) -> Self {
        Self { source: Source::Http(resp), buf: Vec::new(), scanned: 0 }
    }

    /// Opens `url` ([`open`]).
    ///
    /// # Errors
    /// When the request fails or the answer is not a 200 `text/event-stream`: its status
    /// and body (status 0 when there was no answer).
    pub async fn connect(
        client: &reqwest::Client,
        url: &str,
        last_event_id: Option<&str>,
    ) -> Result<Self, (u16, String)> {
        let resp = open(client, url, last_event_id).await.map_err(|e| (0, e.to_string()))?;
        let status = resp.status().as_u16();
        let event_stream = resp
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        if status != 200 || !event_stream {
            return Err((status, resp.text().await.unwrap_or_default()));
        }
        Ok(Self::new(resp))
    }

    /// Opens `path` (with its query) on `base` (`http://host:port`) over a plain socket
    /// whose receive buffer is set to `recv_buffer` bytes, as HTTP/1.0 (so the body comes
    /// as it is, not chunked). A client that stops reading fills so little that the
    /// server's writes stop almost at once.
    ///
    /// # Errors
    /// When the connection fails or the answer is not 200: its status line and what came
    /// with it.
    pub async fn connect_raw(
        base: &str,
        path: &str,
        last_event_id: Option<&str>,
        recv_buffer: u32,
    ) -> Result<Self, String> {
        let host = base.strip_prefix("http://").ok_or_else(|| format!("{base} is not http://host:port"))?;
        let addr: std::net::SocketAddr = host.parse().map_err(|e| format!("{host}: {e}"))?;
        let socket = if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }
            .map_err(|e| e.to_string())?;
        socket.set_recv_buffer_size(recv_buffer).map_err(|e| e.to_string())?;
        let mut stream = socket.connect(addr).await.map_err(|e| format!("connecting to {addr}: {e}"))?;
        let mut request = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nAccept: text/event-stream\r\n");
        if let Some(id) = last_event_id {
            request.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            let n = stream.read(&mut byte).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err(format!(
                    "closed before the end of the response head: {}",
                    String::from_utf8_lossy(&head)
                ));
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let status = head.split(' ').nth(1).unwrap_or_default();
        if status != "200" || !head.to_ascii_lowercase().contains("content-type: text/event-stream") {
            return Err(head);
        }
        Ok(Self { source: Source::Raw(stream), buf: Vec::new(), scanned: 0 })
    }

    /// The next event, `None` when the stream ended (closed, or a read failed).
    pub async fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            while let Some(block) = self.take_block() {
                if let Some(event) = parse_block(&block) {
                    return Some(event);
                }
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// The next event within `within`.
    ///
    /// # Panics
    /// When none comes in time or the stream ends.
    pub async fn next_within(&mut self, within: Duration) -> SseEvent {
        tokio::time::timeout(within, self.next_event())
            .await
            .unwrap_or_else(|_| panic!("no stream event within {within:?}"))
            .unwrap_or_else(|| panic!("the stream ended"))
    }

    /// The next event within 10 s ([`SseReader::next_within`]).
    ///
    /// # Panics
    /// When none comes in time or the stream ends.
    pub async fn next(&mut self) -> SseEvent {
        self.next_within(Duration::from_secs(10)).await
    }

    /// Reads more bytes into the buffer; false at the end of the stream.
    async fn fill(&mut self) -> bool {
        match &mut self.source {
            Source::Http(resp) => match resp.chunk().await {
                Ok(Some(chunk)) => {
                    self.buf.extend_from_slice(&chunk);
                    true
                }
                _ => false,
            },
            Source::Raw(stream) => {
                let mut chunk = [0u8; 8192];
                match stream.read(&mut chunk).await {
                    Ok(n) if n > 0 => {
                        self.buf.extend_from_slice(&chunk[..n]);
                        true
                    }
                    _ => false,
                }
            }
        }
    }

    /// The next complete event block (up to its blank line), removed from the buffer.
    fn take_block(&mut self) -> Option<Vec<u8>> {
        let from = self.scanned.saturating_sub(1);
        match self.buf[from..].windows(2).position(|w| w == b"\n\n") {
            Some(at) => {
                let end = from + at + 2;
                let block = self.buf.drain(..end).collect();
                self.scanned = 0;
                Some(block)
            }
            None => {
                self.scanned = self.buf.len();
                None
            }
        }
    }
}

/// An event from its lines; `None` for a block of comments or `retry:` only.
fn parse_block(block: &[u8]) -> Option<SseEvent> {
    let text = String::from_utf8_lossy(block);
    let (mut id, mut event, mut data): (Option<String>, Option<String>, Option<String>) = (None, None, None);
    for line in text.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => id = Some(value.to_owned()),
            "event" => event = Some(value.to_owned()),
            "data" => match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_owned()),
            },
            _ => {}
        }
    }
    if event.is_none() && data.is_none() {
        return None;
    }
    Some(SseEvent {
        id,
        event: event.unwrap_or_else(|| "message".to_owned()),
        data: data.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::parse_block;

    #[test]
    fn blocks_parse_into_events_and_comments_are_skipped() {
        assert_eq!(parse_block(b"retry: 2000\n\n"), None);
        assert_eq!(parse_block(b": keep-alive\n\n"), None);
        let e = parse_block(b"id: 7\nevent: log\ndata: {\"a\":1}\n\n").expect("an event");
        assert_eq!((e.id.as_deref(), e.event.as_str(), e.data.as_str()), (Some("7"), "log", "{\"a\":1}"));
        assert_eq!(e.cursor(), 7);
        let e = parse_block(b"event: lagged\ndata: x\ndata: y\n\n").expect("an event");
        assert_eq!((e.id, e.data.as_str()), (None, "x\ny"));
    }
}
