//! The two signature schemes: Alchemy Notify's `X-Alchemy-Signature` and Standard
//! Webhooks' `webhook-signature`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::SimError;

/// `X-Alchemy-Signature`: lowercase hex of HMAC-SHA256 keyed with the UTF-8 bytes of
/// `secret` (as given, no decoding) over the raw `body`.
pub fn sign_alchemy(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(body);
    const_hex::encode(mac.finalize().into_bytes())
}

/// `webhook-signature` of Standard Webhooks: `v1,<base64 HMAC-SHA256>` keyed with the
/// base64-decoded `secret` (an optional `whsec_` prefix is stripped) over
/// `"<id>.<timestamp>.<body>"`. Signed with the reference library (`standardwebhooks`).
///
/// # Errors
/// [`SimError::Secret`] when the secret is not base64, [`SimError::Sign`] when the body is
/// not UTF-8 (the scheme signs text).
pub fn sign_standard(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String, SimError> {
    standard_signer(secret)?.sign(id, timestamp, body).map_err(|e| SimError::Sign(e.to_string()))
}

/// The reference library's signer for `secret`.
pub(super) fn standard_signer(secret: &str) -> Result<standardwebhooks::Webhook, SimError> {
    standardwebhooks::Webhook::new(secret).map_err(|e| SimError::Secret(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alchemy_signature_is_hmac_hex_of_the_raw_body() {
        // RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            sign_alchemy("Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn standard_signature_verifies_and_accepts_both_secret_spellings() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        let sig = sign_standard(secret, "msg_1", ts, b"{\"a\":1}").expect("sign");
        assert!(sig.starts_with("v1,"));
        let bare = sign_standard(&secret["whsec_".len()..], "msg_1", ts, b"{\"a\":1}").expect("sign");
        assert_eq!(sig, bare);
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("webhook-id", "msg_1".parse().expect("header"));
        headers.insert("webhook-timestamp", ts.to_string().parse().expect("header"));
        headers.insert("webhook-signature", sig.parse().expect("header"));
        let verifier = standardwebhooks::Webhook::new(secret).expect("secret");
        assert!(verifier.verify(b"{\"a\":1}", &headers).is_ok());
        assert!(verifier.verify(b"{\"a\":2}", &headers).is_err());
        assert!(matches!(sign_standard("not base64!", "m", ts, b"{}"), Err(SimError::Secret(_))));
    }
}
