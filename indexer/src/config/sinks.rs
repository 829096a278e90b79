//! `[[sinks]]` (DESIGN §8 "Sinks"): where the journal is pushed. Private config: never
//! part of the public config, so adding, changing or removing a sink never affects
//! compatibility. URLs and secrets are never echoed, not even in errors.

use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;

use super::error::ConfigError;

/// What the sinks' filters may name: per chain id, its contracts and their event names.
pub(super) type Indexed = Vec<(u64, Vec<(String, Vec<String>)>)>;

/// A `[[sinks]]` table as written (its `Debug` shows neither URL nor secret).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSink {
    name: String,
    kind: String,
    url: String,
    secret: Option<String>,
    #[serde(default)]
    filter: RawFilter,
    batch_size: Option<usize>,
    max_batch_bytes: Option<usize>,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
    #[serde(default)]
    delivery: Delivery,
    rebroadcast_every_ms: Option<u64>,
    #[serde(default)]
    start: Start,
    stream: Option<String>,
    subject: Option<String>,
}

impl std::fmt::Debug for RawSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL or the secret.
        f.debug_struct("RawSink").field("name", &self.name).field("kind", &self.kind).finish_non_exhaustive()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFilter {
    chain_ids: Option<Vec<u64>>,
    contracts: Option<Vec<String>>,
    events: Option<Vec<String>>,
}

fn default_timeout_ms() -> u64 {
    10_000
}

/// Entries per webhook `POST` (and per NATS read) unless set.
const DEFAULT_BATCH_SIZE: usize = 500;
/// A webhook batch is cut at this body size unless set.
const DEFAULT_MAX_BATCH_BYTES: usize = 1 << 20;
/// The NATS subject unless set.
pub const DEFAULT_SUBJECT: &str = "tidemark.{schema}.{chainId}.{contract}.{event}";
const PLACEHOLDERS: [&str; 4] = ["{schema}", "{chainId}", "{contract}", "{event}"];

/// Which entries a sink delivers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    /// Every entry as soon as it is committed (`removed` entries follow reorgs).
    #[default]
    Instant,
    /// Only entries older than finality, so never a `removed`.
    Finalized,
}

/// Where a sink seen for the first time starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Start {
    /// From cursor 0: the full history.
    #[default]
    Beginning,
    /// From the journal's head: new entries only.
    Head,
}

/// A sink's filter; `None` matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkFilter {
    /// Only these chains.
    pub chain_ids: Option<Vec<u64>>,
    /// Only these contract names.
    pub contracts: Option<Vec<String>>,
    /// Only these event names.
    pub events: Option<Vec<String>>,
}

impl SinkFilter {
    /// Whether an entry of this chain, contract and event passes.
    pub fn matches(&self, chain_id: u64, contract: &str, event: &str) -> bool {
        self.chain_ids.as_ref().is_none_or(|ids| ids.contains(&chain_id))
            && self.contracts.as_ref().is_none_or(|c| c.iter().any(|c| c == contract))
            && self.events.as_ref().is_none_or(|e| e.iter().any(|e| e == event))
    }
}

/// Where a sink delivers (private).
#[derive(Clone)]
pub enum SinkTarget {
    /// HTTP `POST`s signed per Standard Webhooks.
    Webhook {
        /// Receiver URL.
        url: url::Url,
        /// The signing key (the base64 part of `whsec_…`, decoded).
        key: Vec<u8>,
    },
    /// NATS JetStream publishes.
    Nats {
        /// Server URL(s), as async-nats takes them.
        url: String,
        /// Stream name (created if missing).
        stream: String,
        /// Subject template.
        subject: String,
    },
}

/// One validated sink.
#[derive(Clone)]
pub struct SinkConfig {
    /// Unique name.
    pub name: String,
    /// Where it delivers.
    pub target: SinkTarget,
    /// What it delivers.
    pub filter: SinkFilter,
    /// Entries per batch (webhook) or read and in flight (NATS).
    pub batch_size: usize,
    /// A webhook batch is cut at this body size.
    pub max_batch_bytes: usize,
    /// Timeout of one delivery attempt.
    pub timeout: Duration,
    /// Instant or finalized.
    pub delivery: Delivery,
    /// Scheduled full rebroadcasts.
    pub rebroadcast_every: Option<Duration>,
    /// Where a new sink starts.
    pub start: Start,
}

impl SinkConfig {
    /// `webhook` or `nats`.
    pub fn kind(&self) -> &'static str {
        match self.target {
            SinkTarget::Webhook { .. } => "webhook",
            SinkTarget::Nats { .. } => "nats",
        }
    }

    /// The private strings of this sink (URL, secret key), for redaction.
    pub fn secrets(&self) -> Vec<String> {
        match &self.target {
            SinkTarget::Webhook { url, key } => {
                let mut s = vec![url.to_string(), url.as_str().trim_end_matches('/').to_owned()];
                s.push(base64::engine::general_purpose::STANDARD.encode(key));
                s
            }
            SinkTarget::Nats { url, .. } => vec![url.clone()],
        }
    }
}

impl std::fmt::Debug for SinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL or the secret.
        f.debug_struct("SinkConfig")
            .field("name", &self.name)
            .field("kind", &self.kind())
            .finish_non_exhaustive()
    }
}

fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    (1..=63).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

/// Decodes a Standard Webhooks secret: `whsec_` and base64 (the prefix is optional, as in
/// the reference libraries).
pub(super) fn webhook_key(secret: &str) -> Option<Vec<u8>> {
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    (!key.is_empty()).then_some(key)
}

pub(super) fn validate_sinks(raw: Vec<RawSink>, chains: &Indexed) -> Result<Vec<SinkConfig>, ConfigError> {
    let mut sinks: Vec<SinkConfig> = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let p = format!("sinks[{i}]");
        if !valid_name(&r.name) {
            return Err(ConfigError::new(
                format!("{p}.name"),
                format!("{:?} is not a sink name (^[a-z][a-z0-9_-]{{0,62}}$)", r.name),
            ));
        }
        if sinks.iter().any(|s| s.name == r.name) {
            return Err(ConfigError::new(
                format!("{p}.name"),
                format!("sink name {:?} is used twice", r.name),
            ));
        }
        let only = |set: bool, key: &str, kind: &str| {
            if set {
                Err(ConfigError::new(format!("{p}.{key}"), format!("not a setting of a {kind} sink")))
            } else {
                Ok(())
            }
        };
        let target = match r.kind.as_str() {
            "webhook" => {
                only(r.stream.is_some(), "stream", "webhook")?;
                only(r.subject.is_some(), "subject", "webhook")?;
                let url = url::Url::parse(&r.url)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
                    .ok_or_else(|| ConfigError::new(format!("{p}.url"), "not an http or https URL"))?;
                let secret = r.secret.as_deref().ok_or_else(|| {
                    ConfigError::new(format!("{p}.secret"), "a webhook sink needs a secret (whsec_…)")
                })?;
                let key = webhook_key(secret).ok_or_else(|| {
                    ConfigError::new(
                        format!("{p}.secret"),
                        "not a Standard Webhooks secret (whsec_ and base64)",
                    )
                })?;
                SinkTarget::Webhook { url, key }
            }
            "nats" => {
                only(r.secret.is_some(), "secret", "nats")?;
                only(r.max_batch_bytes.is_some(), "max_batch_bytes", "nats")?;
                let ok = url::Url::parse(&r.url)
                    .ok()
                    .is_some_and(|u| matches!(u.scheme(), "nats" | "tls") && u.has_host());
                if !ok {
                    return Err(ConfigError::new(format!("{p}.url"), "not a nats:// or tls:// URL"));
                }
                let stream = r.stream.unwrap_or_else(|| "TIDEMARK".to_owned());
                if stream.is_empty()
                    || stream.chars().any(|c| c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
                {
                    return Err(ConfigError::new(
                        format!("{p}.stream"),
                        format!("{stream:?} is not a JetStream stream name"),
                    ));
                }
                let subject = r.subject.unwrap_or_else(|| DEFAULT_SUBJECT.to_owned());
                check_subject(&subject).map_err(|m| ConfigError::new(format!("{p}.subject"), m))?;
                SinkTarget::Nats { url: r.url, stream, subject }
            }
            other => {
                return Err(ConfigError::new(
                    format!("{p}.kind"),
                    format!("{other:?} is not a sink kind (webhook, nats)"),
                ));
            }
        };
        let filter = validate_filter(r.filter, chains, &p)?;
        let batch_size = r.batch_size.unwrap_or(DEFAULT_BATCH_SIZE);
        if !(1..=10_000).contains(&batch_size) {
            return Err(ConfigError::new(format!("{p}.batch_size"), "must be between 1 and 10000"));
        }
        let max_batch_bytes = r.max_batch_bytes.unwrap_or(DEFAULT_MAX_BATCH_BYTES);
        if max_batch_bytes < 1024 {
            return Err(ConfigError::new(format!("{p}.max_batch_bytes"), "must be at least 1024"));
        }
        if r.timeout_ms == 0 {
            return Err(ConfigError::new(format!("{p}.timeout_ms"), "must be at least 1"));
        }
        if r.rebroadcast_every_ms == Some(0) {
            return Err(ConfigError::new(format!("{p}.rebroadcast_every_ms"), "must be at least 1"));
        }
        sinks.push(SinkConfig {
            name: r.name,
            target,
            filter,
            batch_size,
            max_batch_bytes,
            timeout: Duration::from_millis(r.timeout_ms),
            delivery: r.delivery,
            rebroadcast_every: r.rebroadcast_every_ms.map(Duration::from_millis),
            start: r.start,
        });
    }
    Ok(sinks)
}

fn validate_filter(f: RawFilter, chains: &Indexed, p: &str) -> Result<SinkFilter, ConfigError> {
    if let Some(ids) = &f.chain_ids {
        for (j, id) in ids.iter().enumerate() {
            if !chains.iter().any(|(c, _)| c == id) {
                return Err(ConfigError::new(
                    format!("{p}.filter.chain_ids[{j}]"),
                    format!("chain {id} is not configured"),
                ));
            }
        }
    }
    let contracts = || chains.iter().flat_map(|(_, c)| c.iter());
    if let Some(names) = &f.contracts {
        for (j, n) in names.iter().enumerate() {
            if !contracts().any(|(name, _)| name == n) {
                return Err(ConfigError::new(
                    format!("{p}.filter.contracts[{j}]"),
                    format!("no contract is named {n:?}"),
                ));
            }
        }
    }
    if let Some(events) = &f.events {
        for (j, e) in events.iter().enumerate() {
            let known = contracts()
                .filter(|(name, _)| f.contracts.as_ref().is_none_or(|names| names.contains(name)))
                .any(|(_, events)| events.contains(e));
            if !known {
                return Err(ConfigError::new(
                    format!("{p}.filter.events[{j}]"),
                    format!("no filtered contract has an event named {e:?}"),
                ));
            }
        }
    }
    Ok(SinkFilter { chain_ids: f.chain_ids, contracts: f.contracts, events: f.events })
}

/// A subject template: dot-separated tokens, only the known placeholders, no wildcards.
fn check_subject(subject: &str) -> Result<(), String> {
    if subject.split('.').any(|t| t.is_empty() || t.contains(['*', '>', ' ', '\t'])) {
        return Err(format!("{subject:?} is not a subject (dot-separated tokens, no wildcards or spaces)"));
    }
    let mut rest = subject.to_owned();
    for p in PLACEHOLDERS {
        rest = rest.replace(p, "");
    }
    if rest.contains(['{', '}']) {
        return Err(format!("{subject:?} has an unknown placeholder (known: {})", PLACEHOLDERS.join(", ")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_pattern() {
        assert!(valid_name("orders-webhook"));
        assert!(valid_name("bus"));
        assert!(!valid_name("Bus"));
        assert!(!valid_name("1bus"));
        assert!(!valid_name(""));
        assert!(!valid_name(&"a".repeat(64)));
    }

    #[test]
    fn secrets_decode_with_or_without_the_prefix() {
        assert_eq!(
            webhook_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            webhook_key("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        );
        assert!(webhook_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_some());
        assert!(webhook_key("whsec_not base64!").is_none());
        assert!(webhook_key("whsec_").is_none());
    }

    #[test]
    fn subjects_take_the_known_placeholders_only() {
        assert!(check_subject(DEFAULT_SUBJECT).is_ok());
        assert!(check_subject("events.{chainId}").is_ok());
        assert!(check_subject("events.{chain}").is_err());
        assert!(check_subject("events.*").is_err());
        assert!(check_subject("events..x").is_err());
    }
}
