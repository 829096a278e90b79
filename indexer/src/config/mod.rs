//! The indexer's configuration file (DESIGN §2): TOML with `${VAR}` substitution.
//!
//! Loading happens once, in `main`; everything else receives the typed [`IndexerConfig`].
//! Every error names the TOML key path (`chains[0].contracts[1].start_block`). The private
//! parts (RPC URLs, tuning) never leave this process: [`IndexerConfig::public`] is the only
//! view that is stored, logged or served.

mod abi;
mod env;
mod error;
mod factory;
mod sinks;
mod webhooks;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use alloy::json_abi::Event;
use alloy::primitives::{Address, B256};
use serde::Deserialize;
use tidemark_shared_types::{PublicChainConfig, PublicConfig, PublicContractConfig, SchemaName, VersionInfo};

pub use abi::ResolvedEvent;
pub use error::ConfigError;
pub use factory::{FactoryConfig, ParamLocation};
pub use sinks::{DEFAULT_SUBJECT, Delivery, SinkConfig, SinkFilter, SinkTarget, Start};
pub use webhooks::{Provider, WebhookConfig};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    namespace: String,
    schema: String,
    database_url: String,
    #[serde(default)]
    http: RawHttp,
    #[serde(default = "default_retain_epochs")]
    retain_epochs: u64,
    #[serde(default = "default_true")]
    record_epochs: bool,
    #[serde(default = "default_journal_retention_ms")]
    journal_retention_ms: u64,
    chains: Vec<RawChain>,
    #[serde(default)]
    sinks: Vec<sinks::RawSink>,
    #[serde(default = "default_webhook_retention_ms")]
    webhook_retention_ms: u64,
    #[serde(default = "default_pending_ttl_ms")]
    pending_ttl_ms: u64,
    #[serde(default = "default_webhook_max_body_bytes")]
    webhook_max_body_bytes: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[serde(default = "default_listen")]
    listen: String,
}

impl Default for RawHttp {
    fn default() -> Self {
        Self { listen: default_listen() }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChain {
    chain_id: u64,
    rpc_url: Option<String>,
    rpc_urls: Option<Vec<String>>,
    #[serde(default = "default_finality_depth")]
    finality_depth: u64,
    #[serde(default = "default_poll_interval_ms")]
    poll_interval_ms: u64,
    #[serde(default = "default_max_block_range")]
    max_block_range: u64,
    #[serde(default = "default_max_concurrency")]
    max_concurrency: usize,
    #[serde(default = "default_request_timeout_ms")]
    request_timeout_ms: u64,
    #[serde(default = "default_max_filter_addresses")]
    max_filter_addresses: usize,
    #[serde(default = "default_topic_only_above")]
    factory_topic_only_above: usize,
    contracts: Vec<RawContract>,
    #[serde(default)]
    webhooks: Vec<webhooks::RawWebhook>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContract {
    name: String,
    #[serde(default)]
    addresses: Vec<String>,
    factory: Option<factory::RawFactory>,
    #[serde(default)]
    start_block: u64,
    end_block: Option<u64>,
    events: Vec<String>,
    abi: Option<PathBuf>,
}

fn default_true() -> bool {
    true
}
fn default_listen() -> String {
    "127.0.0.1:4001".into()
}
fn default_retain_epochs() -> u64 {
    10_000
}
fn default_journal_retention_ms() -> u64 {
    7 * 24 * 3600 * 1000
}
fn default_webhook_retention_ms() -> u64 {
    24 * 3600 * 1000
}
fn default_pending_ttl_ms() -> u64 {
    3600 * 1000
}
fn default_webhook_max_body_bytes() -> usize {
    5 * 1024 * 1024
}
fn default_finality_depth() -> u64 {
    12
}
fn default_poll_interval_ms() -> u64 {
    1000
}
fn default_max_block_range() -> u64 {
    2000
}
fn default_max_concurrency() -> usize {
    4
}
fn default_request_timeout_ms() -> u64 {
    10_000
}
fn default_max_filter_addresses() -> usize {
    1000
}
fn default_topic_only_above() -> usize {
    10_000
}

/// The validated configuration.
#[derive(Clone)]
pub struct IndexerConfig {
    /// Public namespace.
    pub namespace: String,
    /// Instance schema.
    pub schema: SchemaName,
    /// PostgreSQL URL (private).
    pub database_url: String,
    /// Address of the indexer's own HTTP server.
    pub http_listen: SocketAddr,
    /// Epochs kept per chain.
    pub retain_epochs: u64,
    /// Whether epochs are recorded (on by default; off only to measure their cost).
    pub record_epochs: bool,
    /// How long the journal's `removed` entries are kept (events are never pruned).
    pub journal_retention: Duration,
    /// Chains, sorted by id.
    pub chains: Vec<ChainConfig>,
    /// Sinks (private: never part of the public config), in config order.
    pub sinks: Vec<SinkConfig>,
    /// Processed webhook deliveries are kept this long (and until their block is final).
    pub webhook_retention: Duration,
    /// A parked block never confirmed is dropped after this long.
    pub pending_ttl: Duration,
    /// Largest webhook request body accepted (larger: 413).
    pub webhook_max_body_bytes: usize,
}

impl std::fmt::Debug for IndexerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never prints URLs.
        f.debug_struct("IndexerConfig")
            .field("namespace", &self.namespace)
            .field("schema", &self.schema)
            .field("chains", &self.chains.iter().map(|c| c.chain_id).collect::<Vec<_>>())
            .field("sinks", &self.sinks)
            .finish_non_exhaustive()
    }
}

/// One chain, with its private settings.
#[derive(Clone)]
pub struct ChainConfig {
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// RPC endpoints in failover order (private).
    pub rpc_urls: Vec<url::Url>,
    /// Blocks behind the head considered final.
    pub finality_depth: u64,
    /// Head polling interval.
    pub poll_interval: Duration,
    /// Largest block range of one `eth_getLogs`.
    pub max_block_range: u64,
    /// Concurrent requests while backfilling.
    pub max_concurrency: usize,
    /// Timeout of one RPC request.
    pub request_timeout: Duration,
    /// Addresses per `eth_getLogs` request for factory children (longer lists are split).
    pub max_filter_addresses: usize,
    /// Beyond this many children, their logs are asked for by topic alone and filtered
    /// by the indexer (one request per range instead of one per address chunk).
    pub factory_topic_only_above: usize,
    /// Contracts, sorted by name.
    pub contracts: Vec<ContractConfig>,
    /// Provider webhooks pushing this chain's new blocks (private), in config order.
    pub webhooks: Vec<WebhookConfig>,
}

/// One contract.
#[derive(Debug, Clone)]
pub struct ContractConfig {
    /// Config name.
    pub name: String,
    /// Addresses, sorted.
    pub addresses: Vec<Address>,
    /// First block.
    pub start_block: u64,
    /// Last block, when bounded.
    pub end_block: Option<u64>,
    /// Events, sorted by canonical signature.
    pub events: Vec<ResolvedEvent>,
    /// For a factory contract (no `addresses`): where its children come from.
    pub factory: Option<FactoryConfig>,
    /// The ABI file, as written (relative to the config file).
    abi: Option<PathBuf>,
}

impl ChainConfig {
    /// Lowest start block over the contracts.
    pub fn start_block(&self) -> u64 {
        self.contracts.iter().map(|c| c.start_block).min().unwrap_or(0)
    }

    /// Highest end block when every contract is bounded.
    pub fn end_block(&self) -> Option<u64> {
        self.contracts.iter().map(|c| c.end_block).try_fold(0u64, |acc, e| e.map(|e| acc.max(e)))
    }

    /// Every address of every contract.
    pub fn addresses(&self) -> Vec<Address> {
        let mut all: Vec<Address> = self.contracts.iter().flat_map(|c| c.addresses.iter().copied()).collect();
        all.sort();
        all.dedup();
        all
    }

    /// The topic0s asked of the static addresses: every event of every contract with
    /// static addresses, and every factory's creating event.
    pub fn topic0s(&self) -> Vec<B256> {
        let own = self
            .contracts
            .iter()
            .filter(|c| c.factory.is_none())
            .flat_map(|c| c.events.iter().map(|e| e.topic0));
        let creating = self.factories().map(|(_, f)| f.event.topic0);
        let mut all: Vec<B256> = own.chain(creating).collect();
        all.sort();
        all.dedup();
        all
    }

    /// The factory contracts with their factories.
    pub fn factories(&self) -> impl Iterator<Item = (&ContractConfig, &FactoryConfig)> {
        self.contracts.iter().filter_map(|c| c.factory.as_ref().map(|f| (c, f)))
    }

    /// The topic0s asked of factory children: every event of every factory contract.
    pub fn child_topic0s(&self) -> Vec<B256> {
        let mut all: Vec<B256> =
            self.factories().flat_map(|(c, _)| c.events.iter().map(|e| e.topic0)).collect();
        all.sort();
        all.dedup();
        all
    }
}

impl IndexerConfig {
    /// Reads, substitutes and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path.display().to_string(), format!("cannot read: {e}")))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base, &|name| std::env::var(name).ok())
    }

    /// Parses `text`; `${VAR}` is looked up with `lookup`; ABI paths are relative to `base`.
    pub fn parse(
        text: &str,
        base: &Path,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut value: toml::Value = toml::from_str(text).map_err(|e| {
            let span =
                e.span().map(|s| line_of(text, s.start)).map(|l| format!("line {l}")).unwrap_or_default();
            ConfigError::new(if span.is_empty() { "toml".into() } else { span }, e.message().to_owned())
        })?;
        let from_env = env::substitute(&mut value, "", lookup)?;
        let raw: RawConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let mut message = e.into_inner().to_string();
            if from_env.contains(&path) {
                message = env::hide_value(&message);
            }
            ConfigError::new(if path == "." { "(root)".into() } else { path }, message)
        })?;
        validate(raw, base)
    }

    /// The public view: what is stored, logged and served.
    pub fn public(&self) -> PublicConfig {
        PublicConfig {
            namespace: self.namespace.clone(),
            instance_schema: self.schema.as_str().to_owned(),
            chains: self
                .chains
                .iter()
                .map(|c| PublicChainConfig {
                    chain_id: c.chain_id,
                    finality_depth: c.finality_depth,
                    contracts: c
                        .contracts
                        .iter()
                        .map(|k| PublicContractConfig {
                            name: k.name.clone(),
                            addresses: k.addresses.iter().map(|a| format!("{a:#x}")).collect(),
                            factory: k.factory.as_ref().map(FactoryConfig::spec),
                            start_block: k.start_block,
                            end_block: k.end_block,
                            events: k.events.iter().map(|e| e.signature.clone()).collect(),
                        })
                        .collect(),
                })
                .collect(),
            version_info: VersionInfo::current(),
        }
        .normalized()
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn validate(raw: RawConfig, base: &Path) -> Result<IndexerConfig, ConfigError> {
    if raw.namespace.trim().is_empty() {
        return Err(ConfigError::new("namespace", "must not be empty"));
    }
    let schema = SchemaName::new(raw.schema).map_err(|e| ConfigError::new("schema", e.to_string()))?;
    let http_listen: SocketAddr = raw
        .http
        .listen
        .parse()
        .map_err(|e| ConfigError::new("http.listen", format!("not a socket address: {e}")))?;
    if raw.chains.is_empty() {
        return Err(ConfigError::new("chains", "at least one chain is required"));
    }
    let mut chains = Vec::with_capacity(raw.chains.len());
    for (i, c) in raw.chains.into_iter().enumerate() {
        let p = format!("chains[{i}]");
        // Chain ids are bigint in SQL: one above 2^63 − 1 would be clamped, never stored as is.
        if i64::try_from(c.chain_id).is_err() {
            return Err(ConfigError::new(
                format!("{p}.chain_id"),
                format!("chain id {} is above the largest supported ({})", c.chain_id, i64::MAX),
            ));
        }
        if chains.iter().any(|x: &ChainConfig| x.chain_id == c.chain_id) {
            return Err(ConfigError::new(
                format!("{p}.chain_id"),
                format!("chain {} is listed twice", c.chain_id),
            ));
        }
        chains.push(validate_chain(c, &p, base)?);
    }
    chains.sort_by_key(|c| c.chain_id);
    if raw.retain_epochs == 0 {
        return Err(ConfigError::new("retain_epochs", "must be at least 1"));
    }
    if raw.journal_retention_ms == 0 {
        return Err(ConfigError::new("journal_retention_ms", "must be at least 1"));
    }
    let indexed: sinks::Indexed = chains
        .iter()
        .map(|c| {
            let contracts = c
                .contracts
                .iter()
                .map(|k| (k.name.clone(), k.events.iter().map(|e| e.event.name.clone()).collect()));
            (c.chain_id, contracts.collect())
        })
        .collect();
    let sinks = sinks::validate_sinks(raw.sinks, &indexed)?;
    // Bounded so that `now() - interval` stays within PostgreSQL's timestamps.
    const MAX_KEEP_MS: u64 = 365 * 24 * 3600 * 1000;
    for (v, key) in
        [(raw.webhook_retention_ms, "webhook_retention_ms"), (raw.pending_ttl_ms, "pending_ttl_ms")]
    {
        if !(1..=MAX_KEEP_MS).contains(&v) {
            return Err(ConfigError::new(key, format!("must be between 1 and {MAX_KEEP_MS} (365 days)")));
        }
    }
    if raw.webhook_max_body_bytes < 1024 {
        return Err(ConfigError::new("webhook_max_body_bytes", "must be at least 1024"));
    }
    Ok(IndexerConfig {
        namespace: raw.namespace,
        schema,
        database_url: raw.database_url,
        http_listen,
        retain_epochs: raw.retain_epochs,
        record_epochs: raw.record_epochs,
        journal_retention: Duration::from_millis(raw.journal_retention_ms),
        chains,
        sinks,
        webhook_retention: Duration::from_millis(raw.webhook_retention_ms),
        pending_ttl: Duration::from_millis(raw.pending_ttl_ms),
        webhook_max_body_bytes: raw.webhook_max_body_bytes,
    })
}

fn validate_chain(c: RawChain, p: &str, base: &Path) -> Result<ChainConfig, ConfigError> {
    let urls: Vec<(String, String)> = match (c.rpc_url, c.rpc_urls) {
        (Some(u), None) => vec![(format!("{p}.rpc_url"), u)],
        (None, Some(us)) if !us.is_empty() => {
            us.into_iter().enumerate().map(|(j, u)| (format!("{p}.rpc_urls[{j}]"), u)).collect()
        }
        (Some(_), Some(_)) => return Err(ConfigError::new(p, "set either rpc_url or rpc_urls, not both")),
        _ => return Err(ConfigError::new(format!("{p}.rpc_url"), "an RPC URL is required")),
    };
    let rpc_urls = urls
        .into_iter()
        .map(|(path, u)| {
            // The URL itself is never echoed: it may carry a key.
            let parsed =
                url::Url::parse(&u).map_err(|e| ConfigError::new(&path, format!("not a URL ({e})")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(ConfigError::new(&path, "only http and https RPC URLs are supported"));
            }
            Ok(parsed)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let positive = |v: u64, key: &str| {
        if v == 0 { Err(ConfigError::new(format!("{p}.{key}"), "must be at least 1")) } else { Ok(v) }
    };
    positive(c.max_block_range, "max_block_range")?;
    positive(c.max_concurrency as u64, "max_concurrency")?;
    positive(c.poll_interval_ms, "poll_interval_ms")?;
    positive(c.request_timeout_ms, "request_timeout_ms")?;
    positive(c.max_filter_addresses as u64, "max_filter_addresses")?;
    if c.contracts.is_empty() {
        return Err(ConfigError::new(format!("{p}.contracts"), "at least one contract is required"));
    }
    let mut contracts: Vec<ContractConfig> = Vec::new();
    // Each log is decoded with the ABI and range of the one contract at its address.
    let mut owners: HashMap<Address, String> = HashMap::new();
    let mut factories = Vec::new();
    for (j, mut k) in c.contracts.into_iter().enumerate() {
        let q = format!("{p}.contracts[{j}]");
        if contracts.iter().any(|x| x.name == k.name) {
            return Err(ConfigError::new(
                format!("{q}.name"),
                format!("contract name {:?} is used twice", k.name),
            ));
        }
        let listed = k.addresses.clone();
        if let Some(raw) = k.factory.take() {
            factories.push((j, raw));
        }
        let contract = validate_contract(k, &q, base, factories.last().is_some_and(|f| f.0 == j))?;
        for (i, a) in listed.iter().enumerate() {
            let Ok(a) = a.parse::<Address>() else { continue };
            match owners.get(&a) {
                Some(other) if *other != contract.name => {
                    return Err(ConfigError::new(
                        format!("{q}.addresses[{i}]"),
                        format!("{a:#x} is already an address of contract {other:?} on this chain"),
                    ));
                }
                _ => {
                    owners.insert(a, contract.name.clone());
                }
            }
        }
        contracts.push(contract);
    }
    resolve_factories(&mut contracts, &factories, p, base)?;
    contracts.sort_by(|a, b| a.name.cmp(&b.name));
    let webhooks = webhooks::validate_webhooks(c.webhooks, p)?;
    Ok(ChainConfig {
        chain_id: c.chain_id,
        rpc_urls,
        finality_depth: c.finality_depth,
        poll_interval: Duration::from_millis(c.poll_interval_ms),
        max_block_range: c.max_block_range,
        max_concurrency: c.max_concurrency,
        request_timeout: Duration::from_millis(c.request_timeout_ms),
        max_filter_addresses: c.max_filter_addresses,
        factory_topic_only_above: c.factory_topic_only_above,
        contracts,
        webhooks,
    })
}

/// Resolves each contract's `factory` (written at index `j` of the chain's contracts, in
/// config order as `contracts`) against the chain's other contracts.
fn resolve_factories(
    contracts: &mut [ContractConfig],
    factories: &[(usize, factory::RawFactory)],
    p: &str,
    base: &Path,
) -> Result<(), ConfigError> {
    let signatures: Vec<Vec<String>> =
        contracts.iter().map(|c| c.events.iter().map(|e| e.signature.clone()).collect()).collect();
    let creators: Vec<factory::Creator<'_>> = contracts
        .iter()
        .enumerate()
        .map(|(j, c)| factory::Creator {
            name: &c.name,
            addresses: &c.addresses,
            start_block: c.start_block,
            end_block: c.end_block,
            abi: c.abi.clone(),
            events: &signatures[j],
            is_factory: factories.iter().any(|f| f.0 == j),
        })
        .collect();
    let mut resolved = Vec::with_capacity(factories.len());
    for (j, raw) in factories {
        let q = format!("{p}.contracts[{j}].factory");
        resolved.push((*j, factory::resolve(raw, &q, &creators, base, &contracts[*j].name)?));
    }
    for (j, f) in resolved {
        contracts[j].factory = Some(f);
    }
    Ok(())
}

fn validate_contract(
    k: RawContract,
    q: &str,
    base: &Path,
    has_factory: bool,
) -> Result<ContractConfig, ConfigError> {
    if k.name.trim().is_empty() {
        return Err(ConfigError::new(format!("{q}.name"), "must not be empty"));
    }
    if has_factory && !k.addresses.is_empty() {
        return Err(ConfigError::new(
            format!("{q}.addresses"),
            "a factory contract's addresses are discovered: set either addresses or factory, not both",
        ));
    }
    if !has_factory && k.addresses.is_empty() {
        return Err(ConfigError::new(
            format!("{q}.addresses"),
            "at least one address (or a factory) is required",
        ));
    }
    let mut addresses = Vec::with_capacity(k.addresses.len());
    for (i, a) in k.addresses.iter().enumerate() {
        let parsed: Address = a.parse().map_err(|_| {
            ConfigError::new(format!("{q}.addresses[{i}]"), format!("{a:?} is not a 20-byte 0x address"))
        })?;
        addresses.push(parsed);
    }
    addresses.sort();
    addresses.dedup();
    if let Some(end) = k.end_block
        && end < k.start_block
    {
        return Err(ConfigError::new(
            format!("{q}.end_block"),
            format!("end_block {end} is below start_block {}", k.start_block),
        ));
    }
    if k.events.is_empty() {
        return Err(ConfigError::new(format!("{q}.events"), "at least one event is required"));
    }
    let events: Vec<Event> = match &k.abi {
        Some(file) => abi::events_from_abi_file(&base.join(file), &k.events, q)?,
        None => abi::events_from_signatures(&k.events, q)?,
    };
    let mut events: Vec<ResolvedEvent> = events.into_iter().map(ResolvedEvent::new).collect();
    events.sort_by(|a, b| a.signature.cmp(&b.signature));
    events.dedup_by(|a, b| a.signature == b.signature);
    Ok(ContractConfig {
        name: k.name,
        addresses,
        start_block: k.start_block,
        end_block: k.end_block,
        events,
        factory: None,
        abi: k.abi,
    })
}

#[cfg(test)]
mod tests;
