//! Classification of provider errors and redaction of RPC URLs.
//!
//! Provider error *messages* are the one place where matching text is unavoidable; every
//! pattern lives here, each with a test.

use alloy::transports::{RpcError as AlloyRpcError, TransportError, TransportErrorKind};

/// An RPC failure, with every URL already redacted from its message.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RpcError {
    /// The provider refused the block range (too many results or too wide). `suggested`
    /// is the range the provider proposed, when its message names one.
    #[error("block range rejected by the provider: {message}")]
    RangeTooLarge {
        /// Provider-suggested `(from, to)`.
        suggested: Option<(u64, u64)>,
        /// Redacted provider message.
        message: String,
    },
    /// Worth retrying later: timeouts, connection errors, 429, 5xx, a lagging node.
    #[error("rpc temporarily unavailable: {message}")]
    Transient {
        /// Redacted message.
        message: String,
    },
    /// Retrying the same request will not help.
    #[error("rpc request failed: {message}")]
    Fatal {
        /// Redacted message.
        message: String,
    },
    /// The node answered, but the answer failed a consistency check (a lagging or lying
    /// backend): asked again, never committed.
    #[error("rpc answer rejected ({kind}): {message}")]
    BadAnswer {
        /// What was wrong.
        kind: super::answer::BadAnswer,
        /// Redacted description.
        message: String,
    },
}

impl RpcError {
    /// Whether a retry of the same request may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Transient { .. } | Self::BadAnswer { .. })
    }

    /// Whether the node does not offer the method at all (JSON-RPC "method not found" and
    /// providers' wordings of it), as opposed to refusing this one request.
    pub fn is_unsupported_method(&self) -> bool {
        let Self::Fatal { message } = self else { return false };
        let lower = message.to_ascii_lowercase();
        ["method not found", "does not exist", "not supported", "unsupported method", "is not available"]
            .iter()
            .any(|p| lower.contains(p))
    }

    /// Short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::RangeTooLarge { .. } => "range",
            Self::Transient { .. } => "transient",
            Self::Fatal { .. } => "fatal",
            Self::BadAnswer { kind, .. } => kind.label(),
        }
    }
}

/// Replaces every configured RPC URL (and its parts that may carry secrets) in a message.
#[derive(Debug, Clone)]
pub struct Redactor {
    needles: Vec<(String, String)>,
}

impl Redactor {
    /// A redactor for `urls`; each is shown as `rpc[i]`.
    pub fn new(urls: &[url::Url]) -> Self {
        let mut needles = Vec::new();
        for (i, u) in urls.iter().enumerate() {
            let label = format!("rpc[{i}]");
            let full = u.as_str().to_owned();
            needles.push((full.trim_end_matches('/').to_owned(), label.clone()));
            if !u.username().is_empty() || u.password().is_some() {
                // HTTP clients print the URL without its credentials: replace that form whole too.
                let mut bare = u.clone();
                let _ = bare.set_username("");
                let _ = bare.set_password(None);
                needles.push((bare.as_str().trim_end_matches('/').to_owned(), label.clone()));
            }
            if let Some(q) = u.query() {
                needles.push((q.to_owned(), "<redacted>".into()));
            }
            if !u.username().is_empty() {
                needles.push((u.username().to_owned(), "<redacted>".into()));
            }
            if let Some(p) = u.password() {
                needles.push((p.to_owned(), "<redacted>".into()));
            }
            let path = u.path().trim_matches('/');
            if path.len() >= 8 {
                // Keys in the path (`/v2/<key>`).
                needles.push((path.to_owned(), "<redacted>".into()));
            }
            // Each part on its own too: providers quote them separately (a path segment, a
            // query value, a hostname that carries the account's key).
            for segment in path.split('/').filter(|p| looks_secret(p, 6)) {
                needles.push((segment.to_owned(), "<redacted>".into()));
            }
            for (_, value) in u.query_pairs() {
                if looks_secret(&value, 4) {
                    needles.push((value.into_owned(), "<redacted>".into()));
                }
            }
            if let Some(host) = u.host_str() {
                for label in host.split('.').filter(|l| looks_secret(l, 8)) {
                    needles.push((label.to_owned(), "<redacted>".into()));
                }
            }
        }
        // Longest first, so a URL is replaced whole before its parts.
        needles.sort_by_key(|(n, _)| std::cmp::Reverse(n.len()));
        needles.retain(|(n, _)| !n.is_empty());
        Self { needles }
    }

    /// `message` with every secret replaced.
    pub fn redact(&self, message: &str) -> String {
        let mut out = message.to_owned();
        for (needle, label) in &self.needles {
            if out.contains(needle.as_str()) {
                out = out.replace(needle.as_str(), label);
            }
        }
        out
    }
}

/// Whether a URL part looks like it may carry a key: 16 characters or more, or at least
/// `min` characters with two digits or more (`v3`, `rpc`, `mainnet` do not).
fn looks_secret(part: &str, min: usize) -> bool {
    let digits = part.chars().filter(char::is_ascii_digit).count();
    part.len() >= 16 || part.len() >= min && digits >= 2
}

/// Maps an alloy transport error to an [`RpcError`].
pub fn classify(err: &TransportError, redactor: &Redactor) -> RpcError {
    match err {
        AlloyRpcError::ErrorResp(payload) => classify_message(
            payload.code,
            &redactor.redact(&payload.message),
            &payload.data.as_ref().map(|d| d.get().to_owned()).unwrap_or_default(),
        ),
        AlloyRpcError::Transport(TransportErrorKind::HttpError(http)) => {
            let message = redactor.redact(&format!("HTTP {}: {}", http.status, truncate(&http.body)));
            if http.status == 429 || http.status >= 500 || http.status == 408 {
                // Some providers answer range errors with HTTP 4xx/5xx bodies.
                if let Some(range) = range_error(&message) {
                    return RpcError::RangeTooLarge { suggested: range, message };
                }
                RpcError::Transient { message }
            } else if let Some(range) = range_error(&message) {
                RpcError::RangeTooLarge { suggested: range, message }
            } else {
                RpcError::Fatal { message }
            }
        }
        AlloyRpcError::Transport(_) | AlloyRpcError::NullResp => {
            RpcError::Transient { message: redactor.redact(&with_causes(err)) }
        }
        AlloyRpcError::DeserError { .. } => {
            RpcError::Transient { message: redactor.redact(&truncate(&err.to_string())) }
        }
        _ => RpcError::Fatal { message: redactor.redact(&err.to_string()) },
    }
}

/// `err` followed by each cause whose text it does not already contain (`a: b: c`):
/// reqwest's own text ("error sending request") does not say why a request failed — a
/// refused connection, a certificate the platform does not trust, a name that does not
/// resolve.
fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn truncate(s: &str) -> String {
    if s.len() > 300 {
        let mut end = 300;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    } else {
        s.to_owned()
    }
}

/// Classifies a JSON-RPC error response by code and message.
pub fn classify_message(code: i64, message: &str, data: &str) -> RpcError {
    let text = format!("{message} {data}");
    if let Some(range) = range_error(&text) {
        return RpcError::RangeTooLarge { suggested: range, message: message.to_owned() };
    }
    let lower = text.to_ascii_lowercase();
    let transient = code == 429
        || code == -32005 && !lower.contains("range")
        || lower.contains("rate limit")
        || lower.contains("too many requests")
        || lower.contains("timeout")
        || lower.contains("timed out")
        || lower.contains("header not found")
        || lower.contains("unknown block")
        || lower.contains("block not found")
        || lower.contains("could not find block")
        || lower.contains("resource not found")
        || lower.contains("internal error")
        || lower.contains("try again")
        || code == -32603;
    if transient {
        RpcError::Transient { message: message.to_owned() }
    } else {
        RpcError::Fatal { message: message.to_owned() }
    }
}

/// `Some(suggestion)` when `text` is a provider's "range too large / too many results"
/// error; the suggestion is the `[0x…, 0x…]` range some providers include.
fn range_error(text: &str) -> Option<Option<(u64, u64)>> {
    let lower = text.to_ascii_lowercase();
    const PATTERNS: &[&str] = &[
        "query returned more than", // Infura, Geth-style: "query returned more than 10000 results"
        "log response size exceeded", // Alchemy
        "block range is too wide",  // QuickNode, Erigon
        "block range too large",    // various
        "exceed maximum block range", // BSC, Ankr: "exceed maximum block range: 5000"
        "exceeds max block range",
        "range is too large",
        "block range limit exceeded",
        "response size should not greater than", // Nodereal
        "response size exceeded",
        "query exceeds max results",
        "too many results",
        "limited to a", // "eth_getLogs is limited to a 10,000 range"
        "ranges over",  // "ranges over 10000 blocks are not supported"
        "max results",
        "block range exceeds",
    ];
    if !PATTERNS.iter().any(|p| lower.contains(p)) {
        return None;
    }
    Some(suggested_range(text))
}

/// Parses the first `[0xA, 0xB]` pair in `text`.
fn suggested_range(text: &str) -> Option<(u64, u64)> {
    let start = text.find("[0x")?;
    let rest = &text[start + 1..];
    let end = rest.find(']')?;
    let mut parts = rest[..end].split(',').map(|p| p.trim().trim_matches('"'));
    let a = u64::from_str_radix(parts.next()?.strip_prefix("0x")?, 16).ok()?;
    let b = u64::from_str_radix(parts.next()?.strip_prefix("0x")?, 16).ok()?;
    (a <= b).then_some((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_errors_carry_their_causes() {
        let tls = std::io::Error::other("invalid peer certificate: UnknownIssuer");
        let err: TransportError = TransportErrorKind::custom(tls);
        let RpcError::Transient { message } = classify(&err, &Redactor::new(&[])) else {
            panic!("transient")
        };
        assert!(message.contains("invalid peer certificate: UnknownIssuer"), "{message}");
        assert_eq!(message.matches("UnknownIssuer").count(), 1, "each cause once: {message}");
    }

    fn range(code: i64, msg: &str) -> Option<Option<(u64, u64)>> {
        match classify_message(code, msg, "") {
            RpcError::RangeTooLarge { suggested, .. } => Some(suggested),
            _ => None,
        }
    }

    #[test]
    fn infura_too_many_results_with_suggestion() {
        let m = "query returned more than 10000 results. Try with this block range [0x1E8480, 0x1E8C4F].";
        assert_eq!(range(-32005, m), Some(Some((0x1E8480, 0x1E8C4F))));
    }

    #[test]
    fn alchemy_response_size_with_suggestion() {
        let m = "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range and no limit on the response size, or you can request any block range with a cap of 10K logs in the response. Based on your parameters, this block range should work: [0x0, 0x3e7]";
        assert_eq!(range(-32602, m), Some(Some((0, 999))));
    }

    #[test]
    fn range_errors_without_suggestion() {
        for m in [
            "block range is too wide",
            "exceed maximum block range: 5000",
            "eth_getLogs is limited to a 10,000 range",
            "ranges over 10000 blocks are not supported",
            "query exceeds max results 20000, retry with the range 1-100",
            "response size should not greater than 10000000 bytes",
            "Block range limit exceeded",
        ] {
            assert_eq!(range(-32000, m), Some(None), "{m}");
        }
    }

    #[test]
    fn rate_limits_and_internal_errors_are_transient() {
        for (code, m) in [
            (429, "Too Many Requests"),
            (-32005, "rate limit exceeded"),
            (-32603, "internal error"),
            (-32000, "header not found"),
            (-32000, "unknown block"),
            (-32001, "resource not found"),
            (-32000, "block not found"),
            (-32000, "Could not find block with hash 0xabc"),
        ] {
            assert!(classify_message(code, m, "").is_retryable(), "{m}");
        }
        assert!(
            !classify_message(-32602, "invalid argument 0: hex string without 0x prefix", "").is_retryable()
        );
    }

    #[test]
    fn a_method_the_node_lacks_is_told_apart_from_a_refused_request() {
        for m in [
            "the method eth_getBlockReceipts does not exist/is not available",
            "Method not found",
            "eth_getBlockReceipts is not supported on this network",
        ] {
            assert!(classify_message(-32601, m, "").is_unsupported_method(), "{m}");
        }
        assert!(
            !classify_message(-32602, "invalid argument 0: hex string has odd length", "")
                .is_unsupported_method()
        );
    }

    #[test]
    fn urls_and_keys_are_redacted() {
        let urls = [
            url::Url::parse("https://user:pw@mainnet.example.io/v3/abcdef0123456789?apikey=s3cr3t")
                .expect("url"),
            url::Url::parse("http://127.0.0.1:8545").expect("url"),
        ];
        let r = Redactor::new(&urls);
        let msg = "error sending request for url (https://user:pw@mainnet.example.io/v3/abcdef0123456789?apikey=s3cr3t) and http://127.0.0.1:8545/ plus apikey=s3cr3t alone and v3/abcdef0123456789";
        let out = r.redact(msg);
        assert!(
            !out.contains("s3cr3t") && !out.contains("abcdef0123456789") && !out.contains(":pw@"),
            "{out}"
        );
        assert!(out.contains("rpc[0]") && out.contains("rpc[1]"), "{out}");
        // reqwest's errors show the URL without its credentials: still replaced whole.
        let out = r.redact(
            "error sending request for url (https://mainnet.example.io/v3/abcdef0123456789?apikey=s3cr3t)",
        );
        assert_eq!(out, "error sending request for url (rpc[0])");
    }

    #[test]
    fn parts_of_urls_quoted_separately_are_redacted() {
        let urls = [url::Url::parse(
            "https://a1b2c3d4e5f6.rpc.example.io/ext/bc/C/rpc/9f8e7d6c5b4a39281706?project=abcd1234&network=main",
        )
        .expect("url")];
        let r = Redactor::new(&urls);
        let out = r.redact(
            "host a1b2c3d4e5f6.rpc.example.io refused key 9f8e7d6c5b4a39281706 for project abcd1234 on mainnet",
        );
        for secret in ["a1b2c3d4e5f6", "9f8e7d6c5b4a39281706", "abcd1234"] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert!(out.contains("mainnet") && out.contains("rpc.example.io"), "ordinary words stay: {out}");
    }
}
