//! Indexer configuration files for tests (the TOML of DESIGN §2).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::process::free_port;

/// An indexer config. Fields are public: tests change what they need and write the file.
#[derive(Debug, Clone, Serialize)]
pub struct IndexerConfigBuilder {
    /// `namespace`.
    pub namespace: String,
    /// `schema` (the instance schema).
    pub schema: String,
    /// `database_url` (may be `${VAR}`).
    pub database_url: String,
    /// `retain_epochs`, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retain_epochs: Option<u64>,
    /// `journal_retention_ms`, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal_retention_ms: Option<u64>,
    /// `[http]`.
    pub http: HttpSpec,
    /// `[[chains]]`.
    pub chains: Vec<ChainSpec>,
    /// `pending_ttl_ms`, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_ttl_ms: Option<u64>,
    /// `[[sinks]]`, as TOML tables (each test writes the keys it needs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sinks: Vec<toml::Table>,
}

/// The `[http]` table.
#[derive(Debug, Clone, Serialize)]
pub struct HttpSpec {
    /// `listen`, e.g. `127.0.0.1:4001`.
    pub listen: String,
}

/// One `[[chains]]` entry. `None` fields are left out (the indexer's defaults apply).
#[derive(Debug, Clone, Serialize)]
pub struct ChainSpec {
    /// `chain_id`.
    pub chain_id: u64,
    /// `rpc_url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpc_url: Option<String>,
    /// `rpc_urls` (failover order).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpc_urls: Option<Vec<String>>,
    /// `finality_depth`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finality_depth: Option<u64>,
    /// `poll_interval_ms`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll_interval_ms: Option<u64>,
    /// `max_block_range`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_block_range: Option<u64>,
    /// `max_concurrency`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u64>,
    /// `request_timeout_ms`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_timeout_ms: Option<u64>,
    /// `[[chains.contracts]]`.
    pub contracts: Vec<ContractSpec>,
    /// `[[chains.webhooks]]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<WebhookSpec>,
}

/// One `[[chains.webhooks]]` entry.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookSpec {
    /// `alchemy` or `standard`.
    pub provider: String,
    /// The signing key (`whsec_…` for `standard`).
    pub secret: String,
}

/// One `[[chains.contracts]]` entry.
#[derive(Debug, Clone, Serialize)]
pub struct ContractSpec {
    /// `name`.
    pub name: String,
    /// `addresses`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// `factory`, instead of `addresses`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub factory: Option<FactorySpec>,
    /// `start_block`.
    pub start_block: u64,
    /// `end_block`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_block: Option<u64>,
    /// `events`: full signatures, or names when `abi` is set.
    pub events: Vec<String>,
    /// `abi`: path of a JSON ABI.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abi: Option<String>,
}

/// `factory = { contract, event, parameter }`.
#[derive(Debug, Clone, Serialize)]
pub struct FactorySpec {
    /// The creating contract's name.
    pub contract: String,
    /// The creating event.
    pub event: String,
    /// The `address` parameter naming the child.
    pub parameter: String,
}

impl IndexerConfigBuilder {
    /// A config for `schema` in the database at `database_url`, with namespace `test`,
    /// the HTTP server on a free port and no chains yet.
    pub fn new(schema: impl Into<String>, database_url: impl Into<String>) -> Self {
        Self {
            namespace: "test".into(),
            schema: schema.into(),
            database_url: database_url.into(),
            retain_epochs: None,
            journal_retention_ms: None,
            pending_ttl_ms: None,
            http: HttpSpec { listen: format!("127.0.0.1:{}", free_port()) },
            chains: Vec::new(),
            sinks: Vec::new(),
        }
    }

    /// Adds a sink given as the TOML of its table (`name = "…"`, `kind = "…"`, …).
    ///
    /// # Panics
    /// When `toml` is not a TOML table.
    pub fn sink(mut self, toml: &str) -> Self {
        self.sinks.push(toml.parse().unwrap_or_else(|e| panic!("sink table: {e}")));
        self
    }

    /// Adds a chain.
    pub fn chain(mut self, chain: ChainSpec) -> Self {
        self.chains.push(chain);
        self
    }

    /// Moves the HTTP server to another free port (for a second process on the same config).
    pub fn with_fresh_http_port(mut self) -> Self {
        self.http.listen = format!("127.0.0.1:{}", free_port());
        self
    }

    /// The base URL of the indexer's HTTP server.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http.listen)
    }

    /// The TOML text.
    ///
    /// # Panics
    /// When serialization fails (it cannot for these types).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| panic!("cannot serialize the indexer config: {e}"))
    }

    /// Writes the TOML to `path` and returns the path.
    ///
    /// # Panics
    /// When the file cannot be written.
    pub fn write(&self, path: impl AsRef<Path>) -> PathBuf {
        let path = path.as_ref().to_path_buf();
        std::fs::write(&path, self.to_toml())
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }
}

impl ChainSpec {
    /// A chain served at `rpc_url`, with test-friendly tuning: 50 ms polls and a 5 s
    /// request timeout; other settings at the indexer's defaults.
    pub fn new(chain_id: u64, rpc_url: impl Into<String>) -> Self {
        Self {
            chain_id,
            rpc_url: Some(rpc_url.into()),
            rpc_urls: None,
            finality_depth: None,
            poll_interval_ms: Some(50),
            max_block_range: None,
            max_concurrency: None,
            request_timeout_ms: Some(5_000),
            contracts: Vec::new(),
            webhooks: Vec::new(),
        }
    }

    /// Adds a webhook of `provider` signed with `secret`.
    pub fn webhook(mut self, provider: &str, secret: &str) -> Self {
        self.webhooks.push(WebhookSpec { provider: provider.into(), secret: secret.into() });
        self
    }

    /// Adds a contract.
    pub fn contract(mut self, contract: ContractSpec) -> Self {
        self.contracts.push(contract);
        self
    }

    /// Sets `finality_depth`.
    pub fn finality_depth(mut self, depth: u64) -> Self {
        self.finality_depth = Some(depth);
        self
    }

    /// Sets `max_block_range`.
    pub fn max_block_range(mut self, range: u64) -> Self {
        self.max_block_range = Some(range);
        self
    }

    /// Sets `max_concurrency`.
    pub fn max_concurrency(mut self, n: u64) -> Self {
        self.max_concurrency = Some(n);
        self
    }

    /// Sets `poll_interval_ms`.
    pub fn poll_interval_ms(mut self, ms: u64) -> Self {
        self.poll_interval_ms = Some(ms);
        self
    }

    /// Replaces `rpc_url` with a failover list.
    pub fn rpc_urls(mut self, urls: Vec<String>) -> Self {
        self.rpc_url = None;
        self.rpc_urls = Some(urls);
        self
    }
}

impl ContractSpec {
    /// A contract at `address` from block 0, unbounded, with event signatures `events`.
    pub fn new(name: impl Into<String>, address: impl ToString, events: &[&str]) -> Self {
        Self {
            name: name.into(),
            addresses: vec![address.to_string()],
            start_block: 0,
            end_block: None,
            events: events.iter().map(|e| (*e).to_owned()).collect(),
            abi: None,
            factory: None,
        }
    }

    /// A factory contract: its addresses come from `event`'s `parameter` in the logs of
    /// contract `factory`; its events `names` from the JSON ABI at `abi`.
    pub fn factory(
        name: impl Into<String>,
        (factory, event, parameter): (&str, &str, &str),
        abi: impl Into<String>,
        names: &[&str],
    ) -> Self {
        Self {
            addresses: Vec::new(),
            factory: Some(FactorySpec {
                contract: factory.into(),
                event: event.into(),
                parameter: parameter.into(),
            }),
            abi: Some(abi.into()),
            ..Self::new(name, "", names)
        }
    }

    /// A contract at `address` from block 0, unbounded, whose events `names` come from the
    /// JSON ABI at `abi` (relative to the config file, or absolute).
    pub fn with_abi(
        name: impl Into<String>,
        address: impl ToString,
        abi: impl Into<String>,
        names: &[&str],
    ) -> Self {
        Self { abi: Some(abi.into()), ..Self::new(name, address, names) }
    }

    /// Sets `start_block`.
    pub fn start_block(mut self, n: u64) -> Self {
        self.start_block = n;
        self
    }

    /// Sets `end_block`.
    pub fn end_block(mut self, n: u64) -> Self {
        self.end_block = Some(n);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_indexer_toml_layout() {
        let cfg = IndexerConfigBuilder::new("tidemark_x", "${DATABASE_URL}").chain(
            ChainSpec::new(31337, "http://127.0.0.1:8545")
                .finality_depth(4)
                .contract(ContractSpec::new("Token", "0xab", &["event A(uint256 x)"]).end_block(9)),
        );
        let text = cfg.to_toml();
        let value: toml::Value = toml::from_str(&text).expect("valid TOML");
        assert_eq!(value["schema"].as_str(), Some("tidemark_x"));
        assert_eq!(value["database_url"].as_str(), Some("${DATABASE_URL}"));
        assert!(value["http"]["listen"].as_str().is_some_and(|l| l.starts_with("127.0.0.1:")));
        let chain = &value["chains"][0];
        assert_eq!(chain["finality_depth"].as_integer(), Some(4));
        assert!(chain.get("max_block_range").is_none());
        assert_eq!(chain["contracts"][0]["end_block"].as_integer(), Some(9));
        assert_eq!(chain["contracts"][0]["events"][0].as_str(), Some("event A(uint256 x)"));
    }
}
