//! [`HttpSettings`]: the limits that keep the API answering under load and abuse, and
//! who may read it from a browser (CORS).

use std::time::Duration;

/// Connection and request limits, the response-size cap and CORS. The defaults are those
/// of the `tidemark-api` flags (`docs/api.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// How long a client may take to send a request's headers, counted from the moment
    /// the connection waits for them (its opening, or the end of the previous response):
    /// a slow or idle client's connection is closed then.
    pub header_read_timeout: Duration,
    /// How long a connection may make no progress (nothing read or written) while no
    /// request of it is being handled, e.g. a client that stops reading a response. A
    /// `/v1/stream` response is being handled until it ends.
    pub idle_timeout: Duration,
    /// How long a limited route's handler may run before the request is answered 503
    /// `request_timeout`.
    pub request_timeout: Duration,
    /// Requests the limited routes handle at once; more are shed at once with 503
    /// `overloaded` and `Retry-After`, never queued.
    pub max_concurrent_requests: usize,
    /// Open connections; the accept loop waits for one to close beyond this.
    pub max_connections: usize,
    /// An events page stops growing once its body would exceed this many bytes (it
    /// always holds at least one event), and its `nextCursor` continues from there.
    pub max_response_bytes: usize,
    /// Origins a browser may read the public routes from (`*` for any; empty: CORS off).
    pub cors_origins: Vec<String>,
    /// Concurrent `/v1/stream` clients; more are answered 503 `too_many_streams`.
    pub stream_max_clients: usize,
    /// Journal entries a stream client may fall behind the live tail before it gets
    /// `lagged` and catches up from the database.
    pub stream_queue: usize,
}

/// `Retry-After` of a shed or timed-out request, in seconds.
pub const RETRY_AFTER_SECS: u64 = 1;

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            max_concurrent_requests: 256,
            max_connections: 4096,
            max_response_bytes: 8 << 20,
            cors_origins: vec!["*".to_owned()],
            stream_max_clients: 10_000,
            stream_queue: 1024,
        }
    }
}
