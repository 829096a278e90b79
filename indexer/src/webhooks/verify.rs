//! Signature checks over the raw request body, before anything parses it, in constant
//! time (`Mac::verify_slice`).
//!
//! - Alchemy: `X-Alchemy-Signature` is the hex HMAC-SHA256 of the body, keyed with the
//!   webhook's signing key (no timestamp: a replayed delivery is caught by its id).
//! - Standard Webhooks: `webhook-signature` lists `v1,<base64 HMAC-SHA256 of
//!   "<webhook-id>.<webhook-timestamp>.<body>">` (any one may match, for key rotation);
//!   the timestamp must be within 5 minutes of now.

use axum::http::HeaderMap;
use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

/// How far a Standard Webhooks timestamp may be from now.
pub(super) const TOLERANCE_SECS: i64 = 5 * 60;

/// Why a request's signature was refused (never says which key was close).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    /// A required header is absent or not text.
    Missing(&'static str),
    /// The timestamp is not a number or too far from now.
    Timestamp,
    /// No key matches.
    Mismatch,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing(h) => write!(f, "missing or unreadable {h} header"),
            Self::Timestamp => write!(f, "webhook-timestamp is not within 5 minutes of now"),
            Self::Mismatch => write!(f, "the signature does not match"),
        }
    }
}

fn mac(key: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256>>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
}

fn header<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<&'h str, Refused> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).ok_or(Refused::Missing(name))
}

/// Checks an Alchemy delivery against each of `keys`.
pub(super) fn alchemy<'k>(
    keys: impl IntoIterator<Item = &'k [u8]>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), Refused> {
    let given = header(headers, "x-alchemy-signature")?;
    let given =
        const_hex::decode(given.strip_prefix("0x").unwrap_or(given)).map_err(|_| Refused::Mismatch)?;
    for key in keys {
        let mut m = mac(key);
        m.update(body);
        if m.verify_slice(&given).is_ok() {
            return Ok(());
        }
    }
    Err(Refused::Mismatch)
}

/// Checks a Standard Webhooks delivery against each of `keys` at `now` (unix seconds);
/// returns its `webhook-id`.
pub(super) fn standard<'h, 'k>(
    keys: impl IntoIterator<Item = &'k [u8]>,
    headers: &'h HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<&'h str, Refused> {
    let id = header(headers, "webhook-id")?;
    let ts = header(headers, "webhook-timestamp")?;
    let signatures = header(headers, "webhook-signature")?;
    let t: i64 = ts.parse().map_err(|_| Refused::Timestamp)?;
    if now.abs_diff(t) > TOLERANCE_SECS.unsigned_abs() {
        return Err(Refused::Timestamp);
    }
    let given: Vec<Vec<u8>> = signatures
        .split(' ')
        .filter_map(|s| s.split_once(','))
        .filter(|(version, _)| *version == "v1")
        .filter_map(|(_, sig)| base64::engine::general_purpose::STANDARD.decode(sig).ok())
        .collect();
    for key in keys {
        let mut m = mac(key);
        m.update(id.as_bytes());
        m.update(b".");
        m.update(ts.as_bytes());
        m.update(b".");
        m.update(body);
        if given.iter().any(|g| m.clone().verify_slice(g).is_ok()) {
            return Ok(id);
        }
    }
    Err(Refused::Mismatch)
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue};
    use base64::Engine as _;

    use super::{Refused, alchemy, standard};

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).expect("header"));
        }
        h
    }

    #[test]
    fn alchemy_signatures_are_hex_hmac_of_the_raw_body() {
        // Alchemy's docs: HMAC-SHA256 of the body with the signing key as a UTF-8 string.
        let key = b"whsec_test".as_slice();
        let body = br#"{"webhookId":"wh_1","id":"whevt_1"}"#;
        let sig = crate::webhooks::tests::alchemy_sign(key, body);
        assert_eq!(alchemy([key], &headers(&[("x-alchemy-signature", &sig)]), body), Ok(()));
        assert_eq!(
            alchemy([key], &headers(&[("X-Alchemy-Signature", &sig.to_uppercase())]), body),
            Ok(()),
            "hex is case-insensitive"
        );
        assert_eq!(alchemy([key], &headers(&[("x-alchemy-signature", &sig)]), b"{}"), Err(Refused::Mismatch));
        assert_eq!(alchemy([key], &headers(&[]), body), Err(Refused::Missing("x-alchemy-signature")));
        assert_eq!(
            alchemy([key], &headers(&[("x-alchemy-signature", &sig[..10])]), body),
            Err(Refused::Mismatch),
            "truncated"
        );
        let other = b"another key".as_slice();
        assert_eq!(alchemy([other, key], &headers(&[("x-alchemy-signature", &sig)]), body), Ok(()));
    }

    #[test]
    fn standard_signatures_match_the_reference_library() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let key = base64::engine::general_purpose::STANDARD.decode(&secret[6..]).expect("b64");
        let body = br#"{"block":{"number":"0x1"}}"#;
        let now = 1_700_000_000;
        let sig =
            standardwebhooks::Webhook::new(secret).expect("secret").sign("msg_1", now, body).expect("sign");
        let h = headers(&[
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", &now.to_string()),
            ("webhook-signature", &sig),
        ]);
        assert_eq!(standard([key.as_slice()], &h, body, now + 299), Ok("msg_1"));
        assert_eq!(standard([key.as_slice()], &h, body, now + 301), Err(Refused::Timestamp));
        assert_eq!(standard([key.as_slice()], &h, body, now - 301), Err(Refused::Timestamp));
        assert_eq!(standard([key.as_slice()], &h, b"{}", now), Err(Refused::Mismatch));
        // Several signatures (key rotation): one match suffices.
        let rotated = format!("v1,AAAA {sig} v2,whatever");
        let h = headers(&[
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", &now.to_string()),
            ("webhook-signature", &rotated),
        ]);
        assert_eq!(standard([key.as_slice()], &h, body, now), Ok("msg_1"));
        let h = headers(&[("webhook-id", "msg_1"), ("webhook-signature", &sig)]);
        assert_eq!(standard([key.as_slice()], &h, body, now), Err(Refused::Missing("webhook-timestamp")));
        // Timestamps at the ends of the range are refused, never overflow.
        for ts in
            [i64::MIN.to_string(), i64::MAX.to_string(), "-1".to_owned(), "99999999999999999999".to_owned()]
        {
            let h =
                headers(&[("webhook-id", "msg_1"), ("webhook-timestamp", &ts), ("webhook-signature", &sig)]);
            assert_eq!(standard([key.as_slice()], &h, body, now), Err(Refused::Timestamp), "{ts}");
        }
    }
}
