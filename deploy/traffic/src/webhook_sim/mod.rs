//! A provider-webhook simulator: watches a chain's new blocks over JSON-RPC and POSTs
//! each block to an indexer's webhook endpoint the way a hosted provider would, with
//! faults on demand.
//!
//! Two formats ([`WebhookFormat`]): Alchemy Notify custom (GraphQL) webhooks, signed
//! with `X-Alchemy-Signature` ([`sign_alchemy`]), and Standard Webhooks, signed with
//! `webhook-signature` ([`sign_standard`]). Each block becomes one [`Delivery`] (an id and
//! a body that never change); re-sends reuse both (Standard Webhooks re-signs with a
//! fresh timestamp).
//!
//! Like a provider, a delivery answered with a non-2xx status or failing to connect
//! (5 s timeout) is retried with exponential backoff (250 ms doubling, capped at 5 s) up
//! to [`SimOptions::max_attempts`] times, then given up. Faults: drops (never sent),
//! duplicates (sent again later, after the first was accepted), reordering (a random
//! pick out of a window of buffered deliveries), forged copies (a wrong signature, sent
//! once besides the real one, expected to be refused with 401), a delay before every
//! request and a down window (after N blocks the receiver counts as unreachable for S
//! seconds: every attempt fails and is retried later).
//!
//! [`run`] drives it all until the last requested block was delivered or the shutdown
//! token fires, and returns a [`SimSummary`].

mod payload;
mod runner;
mod send;
mod sign;

use std::collections::BTreeMap;
use std::time::Duration;

use alloy::primitives::Address;
use alloy::transports::TransportError;
use serde::Serialize;

pub use payload::{
    ALCHEMY_WEBHOOK_ID, BlockData, Delivery, FIRST_SEQUENCE, WebhookFormat, alchemy_delivery,
    delivery_for_block, fetch_block, standard_delivery,
};
pub use runner::run;
pub use sign::{sign_alchemy, sign_standard};

/// Header carrying the Alchemy signature.
pub const ALCHEMY_SIGNATURE_HEADER: &str = "X-Alchemy-Signature";

/// Why the simulator could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// An option is out of range.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// The RPC URL does not parse.
    #[error("invalid RPC URL: {0}")]
    InvalidUrl(String),
    /// A JSON-RPC request failed.
    #[error("{method} failed: {source}")]
    Rpc {
        /// JSON-RPC method.
        method: &'static str,
        /// Cause.
        #[source]
        source: TransportError,
    },
    /// The node answered something without the expected fields.
    #[error("malformed node answer: {0}")]
    Malformed(String),
    /// The Standard Webhooks secret is not base64 (after an optional `whsec_` prefix).
    #[error("the signing secret is not a Standard Webhooks secret: {0}")]
    Secret(String),
    /// A body could not be signed.
    #[error("cannot sign: {0}")]
    Sign(String),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

impl SimError {
    fn rpc(method: &'static str) -> impl FnOnce(TransportError) -> Self {
        move |source| Self::Rpc { method, source }
    }
}

/// What to simulate. [`SimOptions::new`] sets the defaults of the CLI.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// JSON-RPC endpoint of the chain.
    pub rpc_url: String,
    /// Full URL the deliveries are POSTed to.
    pub endpoint: String,
    /// Wire format.
    pub format: WebhookFormat,
    /// Signing secret: any string for Alchemy (its UTF-8 bytes are the key), a base64 key
    /// with an optional `whsec_` prefix for Standard Webhooks.
    pub secret: String,
    /// First block delivered (default: the head at start + 1).
    pub from_block: Option<u64>,
    /// Last block delivered: [`run`] returns once every block up to it was delivered,
    /// dropped or given up (default: run until shutdown).
    pub until_block: Option<u64>,
    /// Only logs of these contracts (all logs when empty).
    pub addresses: Vec<Address>,
    /// Deliveries buffered and released in random order (0 or 1: in order).
    pub shuffle_window: usize,
    /// Fraction of deliveries sent a second time, later, with the same id and body.
    pub duplicate: f64,
    /// Fraction of deliveries never sent.
    pub drop: f64,
    /// Fraction of deliveries additionally sent once with a corrupted signature.
    pub forge: f64,
    /// Wait before every request.
    pub delay: Duration,
    /// After this many blocks the receiver counts as down for [`SimOptions::down_for`].
    pub down_after_blocks: Option<u64>,
    /// Length of the down window.
    pub down_for: Duration,
    /// Seed of every random choice (default: random).
    pub seed: Option<u64>,
    /// Head polling interval.
    pub poll: Duration,
    /// Attempts per delivery before it is given up.
    pub max_attempts: u32,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Timeout of one request.
    pub request_timeout: Duration,
    /// First retry delay; doubles after each failed attempt.
    pub retry_initial: Duration,
    /// Largest retry delay.
    pub retry_max: Duration,
}

impl SimOptions {
    /// Options without faults: poll every 100 ms, 20 attempts, 4 requests at once, 5 s
    /// timeout, backoff from 250 ms to 5 s.
    pub fn new(
        rpc_url: impl Into<String>,
        endpoint: impl Into<String>,
        format: WebhookFormat,
        secret: impl Into<String>,
    ) -> Self {
        Self {
            rpc_url: rpc_url.into(),
            endpoint: endpoint.into(),
            format,
            secret: secret.into(),
            from_block: None,
            until_block: None,
            addresses: Vec::new(),
            shuffle_window: 0,
            duplicate: 0.0,
            drop: 0.0,
            forge: 0.0,
            delay: Duration::ZERO,
            down_after_blocks: None,
            down_for: Duration::ZERO,
            seed: None,
            poll: Duration::from_millis(100),
            max_attempts: 20,
            concurrency: 4,
            request_timeout: Duration::from_secs(5),
            retry_initial: Duration::from_millis(250),
            retry_max: Duration::from_secs(5),
        }
    }

    fn validate(&self) -> Result<(), SimError> {
        for (name, p) in [("duplicate", self.duplicate), ("drop", self.drop), ("forge", self.forge)] {
            if !(0.0..=1.0).contains(&p) {
                return Err(SimError::InvalidOption(format!("{name} must be a fraction in [0, 1], not {p}")));
            }
        }
        if self.max_attempts == 0 {
            return Err(SimError::InvalidOption("max_attempts must be at least 1".into()));
        }
        if self.concurrency == 0 {
            return Err(SimError::InvalidOption("concurrency must be at least 1".into()));
        }
        if self.poll.is_zero() {
            return Err(SimError::InvalidOption("the poll interval must be positive".into()));
        }
        if let (Some(from), Some(until)) = (self.from_block, self.until_block)
            && until < from
        {
            return Err(SimError::InvalidOption(format!("until_block {until} is before from_block {from}")));
        }
        match reqwest::Url::parse(&self.endpoint) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(()),
            _ => Err(SimError::InvalidOption(format!("endpoint {:?} is not an http(s) URL", self.endpoint))),
        }
    }
}

/// What a run did. Serialized (camelCase) as the CLI's summary line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SimSummary {
    /// Deliveries generated (one per block seen; a reorg's new blocks count again).
    pub blocks: u64,
    /// Requests with the real signature (first attempts, retries and duplicates).
    pub sent: u64,
    /// Requests with the real signature answered 2xx.
    pub accepted: u64,
    /// Deliveries sent a second time.
    pub duplicates_sent: u64,
    /// Deliveries never sent.
    pub dropped: u64,
    /// Requests with a corrupted signature.
    pub forged: u64,
    /// Forged requests answered 401.
    pub forged_rejected: u64,
    /// Attempts after the first (including those failed in a down window).
    pub retries: u64,
    /// Deliveries (or duplicate re-sends) abandoned after the last attempt.
    pub given_up: u64,
    /// Answers per HTTP status, forged requests included.
    pub statuses: BTreeMap<u16, u64>,
}

impl SimSummary {
    /// The summary as one line of JSON.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line_uses_the_documented_keys() {
        let mut s = SimSummary { blocks: 2, duplicates_sent: 1, ..SimSummary::default() };
        s.statuses.insert(200, 3);
        s.statuses.insert(401, 1);
        let v: serde_json::Value = serde_json::from_str(&s.to_json_line()).expect("json");
        for key in [
            "blocks",
            "sent",
            "accepted",
            "duplicatesSent",
            "dropped",
            "forged",
            "forgedRejected",
            "retries",
            "givenUp",
        ] {
            assert!(v[key].is_u64(), "{key} in {v}");
        }
        assert_eq!(v["statuses"], serde_json::json!({"200": 3, "401": 1}));
    }

    #[test]
    fn options_are_validated() {
        let ok =
            SimOptions::new("http://127.0.0.1:8545", "http://127.0.0.1:1/x", WebhookFormat::Alchemy, "s");
        assert!(ok.validate().is_ok());
        assert!(SimOptions { drop: 1.5, ..ok.clone() }.validate().is_err());
        assert!(SimOptions { concurrency: 0, ..ok.clone() }.validate().is_err());
        assert!(SimOptions { endpoint: "nope".into(), ..ok.clone() }.validate().is_err());
        assert!(SimOptions { from_block: Some(5), until_block: Some(4), ..ok }.validate().is_err());
    }
}
