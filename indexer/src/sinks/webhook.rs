//! Webhook delivery, signed per Standard Webhooks (standardwebhooks.com): `webhook-id`
//! (the delivery id, the same on every retry), `webhook-timestamp` (unix seconds, of this
//! attempt) and `webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`
//! keyed with the secret's decoded bytes, so receivers verify with an existing library.

use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use serde::Serialize;
use serde_json::value::RawValue;
use sha2::Sha256;

use super::entry::Item;
use super::redact::Redactor;

/// A webhook receiver.
pub(super) struct Webhook {
    client: reqwest::Client,
    url: url::Url,
    key: Vec<u8>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    sink: &'a str,
    delivery_id: &'a str,
    items: Vec<&'a RawValue>,
}

/// The body of a batch.
pub(super) fn body(sink: &str, delivery_id: &str, items: &[Item]) -> Result<String, serde_json::Error> {
    serde_json::to_string(&Body { sink, delivery_id, items: items.iter().map(|i| &*i.json).collect() })
}

/// The `webhook-signature` header value of `body` sent as `id` at `timestamp`.
pub(super) fn sign(key: &[u8], id: &str, timestamp: u64, body: &str) -> String {
    // HMAC takes a key of any length.
    let mut mac =
        <Hmac<Sha256>>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

impl Webhook {
    /// A client for `url` (no redirects followed, `timeout` per attempt).
    pub(super) fn new(url: url::Url, key: Vec<u8>, timeout: Duration) -> Result<Self, String> {
        tidemark_db_client::tls::install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)));
        if url.scheme() == "https" {
            let tls = tidemark_db_client::tls::https_client_config()
                .map_err(|e| format!("cannot set up TLS for the webhook: {e}"))?;
            builder = builder.tls_backend_preconfigured(tls);
        }
        let client =
            builder.build().map_err(|e| format!("cannot build the webhook client: {}", e.without_url()))?;
        Ok(Self { client, url, key })
    }

    /// Sends `body` as delivery `id`. `Err` with a redacted reason unless the receiver
    /// answered 2xx.
    pub(super) async fn post(&self, id: &str, body: String, redactor: &Redactor) -> Result<(), String> {
        let timestamp = crate::progress::unix_now();
        let signature = sign(&self.key, id, timestamp, &body);
        let response = self
            .client
            .post(self.url.clone())
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|e| redactor.redact(&describe(e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        if status.is_redirection() {
            // Not followed: the sink's URL is the receiver. The target is named by its
            // origin only: its path or query may carry a token.
            let location = response
                .headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .and_then(|l| self.url.join(l).ok())
                .map(|u| u.origin().ascii_serialization())
                .unwrap_or_default();
            return Err(redactor.redact(&format!(
                "the receiver answered {status}, a redirect to {location:?} (not followed)"
            )));
        }
        Err(format!("the receiver answered {status}"))
    }
}

/// A reqwest error without its URL, with its causes.
fn describe(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let e = e.without_url();
    let mut text = format!("{kind}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification's reference libraries.
    #[test]
    fn signatures_match_the_reference_example() {
        let key = base64::engine::general_purpose::STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .expect("base64");
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
