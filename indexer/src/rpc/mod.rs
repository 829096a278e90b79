//! JSON-RPC access to one chain: request timeouts, backoff on rate limits and server
//! errors, failover across `rpc_urls`, and redaction of URLs from every error message.

pub mod errors;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use alloy::eips::BlockNumberOrTag;
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::client::RpcClient;
use alloy::rpc::types::{Filter, Log};
use alloy::transports::TransportError;
use alloy::transports::http::{Http, reqwest};
use tidemark_shared_types::BlockRef;

pub use errors::RpcError;

/// A block header, as much of it as indexing needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Number, timestamp and hash.
    pub block: BlockRef,
    /// 0x hash of the parent.
    pub parent_hash: String,
}

struct Endpoint {
    provider: RootProvider,
    /// How the endpoint is named in logs: `rpc[0]`, never its URL.
    label: String,
}

/// A chain's RPC endpoints. Cheap to clone.
#[derive(Clone)]
pub struct ChainRpc {
    inner: Arc<Inner>,
}

struct Inner {
    chain_id: u64,
    endpoints: Vec<Endpoint>,
    active: AtomicUsize,
    redactor: errors::Redactor,
}

/// Attempts per call before the error is returned to the caller (who backs off further).
const ATTEMPTS: u32 = 4;

impl ChainRpc {
    /// Builds clients for `urls` (no network access yet). `https://` endpoints are
    /// verified against the platform's roots plus `SSL_CERT_FILE` / `SSL_CERT_DIR`
    /// ([`tidemark_db_client::tls::https_client_config`], loaded once here).
    pub fn new(chain_id: u64, urls: &[url::Url], timeout: Duration) -> Result<Self, RpcError> {
        tidemark_db_client::tls::install_crypto_provider();
        let tls = match urls.iter().any(|u| u.scheme() == "https") {
            true => Some(tidemark_db_client::tls::https_client_config().map_err(|e| RpcError::Fatal {
                message: format!("cannot set up TLS for https RPC endpoints: {e}"),
            })?),
            false => None,
        };
        let mut endpoints = Vec::with_capacity(urls.len());
        for (i, url) in urls.iter().enumerate() {
            let mut builder = reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout.min(Duration::from_secs(5)));
            if let Some(tls) = &tls {
                builder = builder.tls_backend_preconfigured(tls.clone());
            }
            let client = builder
                .build()
                .map_err(|e| RpcError::Fatal { message: format!("cannot build HTTP client: {e}") })?;
            let is_local = url.host_str().is_some_and(|h| h == "127.0.0.1" || h == "localhost");
            let transport = Http::with_client(client, url.clone());
            let provider = RootProvider::new(RpcClient::new(transport, is_local));
            endpoints.push(Endpoint { provider, label: format!("rpc[{i}]") });
        }
        let redactor = errors::Redactor::new(urls);
        Ok(Self { inner: Arc::new(Inner { chain_id, endpoints, active: AtomicUsize::new(0), redactor }) })
    }

    /// The chain id this client serves.
    pub fn chain_id(&self) -> u64 {
        self.inner.chain_id
    }

    /// The reported chain id of the endpoint.
    pub async fn remote_chain_id(&self) -> Result<u64, RpcError> {
        self.call("eth_chainId", |p| async move { p.get_chain_id().await }).await
    }

    /// The latest block number.
    pub async fn block_number(&self) -> Result<u64, RpcError> {
        self.call("eth_blockNumber", |p| async move { p.get_block_number().await }).await
    }

    /// The header of block `number`; `Ok(None)` when the node does not have it (yet).
    pub async fn header(&self, number: u64) -> Result<Option<Header>, RpcError> {
        let block = self
            .call("eth_getBlockByNumber", |p| async move {
                p.get_block_by_number(BlockNumberOrTag::Number(number)).await
            })
            .await?;
        Ok(block.map(|b| Header {
            block: BlockRef {
                number: b.header.number,
                timestamp: b.header.timestamp,
                hash: format!("{:#x}", b.header.hash),
            },
            parent_hash: format!("{:#x}", b.header.parent_hash),
        }))
    }

    /// The header of block `number`, treating a missing block as a transient error (a
    /// lagging node behind a load balancer).
    pub async fn require_header(&self, number: u64) -> Result<Header, RpcError> {
        self.header(number).await?.ok_or_else(|| RpcError::Transient {
            message: format!("block {number} is not available from the node yet"),
        })
    }

    /// `eth_getLogs` for `filter`.
    pub async fn logs(&self, filter: &Filter) -> Result<Vec<Log>, RpcError> {
        self.call("eth_getLogs", |p| {
            let filter = filter.clone();
            async move { p.get_logs(&filter).await }
        })
        .await
    }

    /// Runs `f` against the active endpoint. Rate limits, server errors and timeouts are
    /// retried with exponential backoff, rotating to the next endpoint after each
    /// failure; range errors and invalid requests are returned at once.
    async fn call<T, F, Fut>(&self, method: &'static str, f: F) -> Result<T, RpcError>
    where
        F: Fn(RootProvider) -> Fut,
        Fut: std::future::Future<Output = Result<T, TransportError>>,
    {
        let n = self.inner.endpoints.len();
        let mut delay = Duration::from_millis(100);
        let mut last = None;
        for attempt in 0..ATTEMPTS {
            let idx = self.inner.active.load(Ordering::Relaxed) % n;
            let endpoint = &self.inner.endpoints[idx];
            let started = std::time::Instant::now();
            let result = f(endpoint.provider.clone()).await;
            metrics::histogram!("tidemark_rpc_request_seconds", "method" => method)
                .record(started.elapsed().as_secs_f64());
            match result {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let err = errors::classify(&e, &self.inner.redactor);
                    metrics::counter!("tidemark_rpc_errors_total", "method" => method, "kind" => err.kind())
                        .increment(1);
                    if !err.is_retryable() {
                        return Err(err);
                    }
                    tracing::warn!(
                        target: "tidemark::rpc",
                        chain_id = self.inner.chain_id,
                        endpoint = %endpoint.label,
                        method,
                        attempt,
                        error = %err,
                        "rpc request failed; retrying"
                    );
                    if n > 1 {
                        // Fail over: the next caller starts on the next endpoint too.
                        let _ = self.inner.active.compare_exchange(
                            idx,
                            (idx + 1) % n,
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        );
                    }
                    last = Some(err);
                    if attempt + 1 < ATTEMPTS {
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                }
            }
        }
        Err(last.unwrap_or(RpcError::Transient { message: "no attempt was made".into() }))
    }
}
