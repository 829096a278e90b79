//! `[[chains.webhooks]]`: provider webhooks that push new blocks to the indexer (DESIGN §8
//! "Webhook ingestion"). Private: keys never reach the public config, logs or errors.

use serde::Deserialize;

use super::error::ConfigError;

/// Which format and signature a webhook endpoint takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Provider {
    /// Alchemy Notify custom (GraphQL) webhooks: `X-Alchemy-Signature`, hex HMAC-SHA256
    /// of the body keyed with the signing key.
    Alchemy,
    /// Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
    Standard,
}

impl Provider {
    /// The path segment and stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alchemy => "alchemy",
            Self::Standard => "standard",
        }
    }

    /// The provider named by a path segment.
    pub fn from_path(s: &str) -> Option<Self> {
        match s {
            "alchemy" => Some(Self::Alchemy),
            "standard" => Some(Self::Standard),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebhook {
    provider: Provider,
    secret: String,
}

impl std::fmt::Debug for RawWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawWebhook").field("provider", &self.provider).finish_non_exhaustive()
    }
}

/// One webhook of a chain: its provider and signing key.
#[derive(Clone)]
pub struct WebhookConfig {
    /// Format and signature scheme.
    pub provider: Provider,
    /// The HMAC key: an Alchemy signing key's bytes as given; a Standard Webhooks
    /// secret's base64 part, decoded.
    pub key: Vec<u8>,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("WebhookConfig").field("provider", &self.provider).finish_non_exhaustive()
    }
}

pub(super) fn validate_webhooks(raw: Vec<RawWebhook>, p: &str) -> Result<Vec<WebhookConfig>, ConfigError> {
    raw.into_iter()
        .enumerate()
        .map(|(i, w)| {
            let key_path = format!("{p}.webhooks[{i}].secret");
            let key = match w.provider {
                Provider::Alchemy => {
                    let s = w.secret.trim();
                    if s.is_empty() {
                        return Err(ConfigError::new(key_path, "an Alchemy webhook needs its signing key"));
                    }
                    s.as_bytes().to_vec()
                }
                Provider::Standard => super::sinks::webhook_key(&w.secret).ok_or_else(|| {
                    ConfigError::new(key_path, "not a Standard Webhooks secret (whsec_ and base64)")
                })?,
            };
            Ok(WebhookConfig { provider: w.provider, key })
        })
        .collect()
}
