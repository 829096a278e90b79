//! JSON-RPC access to one chain: request timeouts, backoff on rate limits and server
//! errors, failover across `rpc_urls`, redaction of URLs from every error message — and
//! distrust (invariant 9).
//!
//! Every endpoint is checked before use (chain id, and the hash of the anchor block the
//! index is built on) and again every minute; one on another chain or without the blocks
//! the index has is set aside and reported, never used as evidence. Every answer is
//! checked ([`answer`]); a `null` block means "not known yet", never "reorged". A rejected
//! answer is asked again on the next endpoint, counted in
//! `tidemark_rpc_bad_answers_total{chain_id,endpoint,kind}` and logged once per endpoint
//! and kind per minute.

pub mod answer;
mod endpoint;
pub mod errors;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::eips::{BlockId, BlockNumberOrTag};
use alloy::primitives::{B256, Bloom, U64};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::client::RpcClient;
use alloy::rpc::types::{Filter, Log};
use alloy::transports::TransportError;
use alloy::transports::http::{Http, reqwest};
use serde::Deserialize;
use tidemark_shared_types::BlockRef;

pub use answer::{BadAnswer, Interest};
use endpoint::Endpoint;
pub use endpoint::Standing;
pub use errors::RpcError;

/// A block header, as much of it as indexing needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Number, timestamp and hash.
    pub block: BlockRef,
    /// 0x hash of the parent.
    pub parent_hash: String,
    /// The block's logs bloom.
    pub logs_bloom: Bloom,
    /// Transactions in the block.
    pub tx_count: usize,
}

/// The fields of `eth_getBlockByNumber` read here; the rest of a chain's block format
/// (which differs between chains) is ignored.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawHeader {
    number: U64,
    hash: B256,
    parent_hash: B256,
    timestamp: U64,
    logs_bloom: Bloom,
    #[serde(default)]
    transactions: Vec<serde::de::IgnoredAny>,
}

impl From<RawHeader> for Header {
    fn from(h: RawHeader) -> Self {
        Self {
            block: BlockRef {
                number: h.number.to(),
                timestamp: h.timestamp.to(),
                hash: format!("{:#x}", h.hash),
            },
            parent_hash: format!("{:#x}", h.parent_hash),
            logs_bloom: h.logs_bloom,
            tx_count: h.transactions.len(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct RawReceipt {
    #[serde(default)]
    logs: Vec<Log>,
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
    /// A block the index is built on; an endpoint that has another hash for it serves
    /// another chain.
    anchor: Mutex<Option<BlockRef>>,
    /// The highest indexed block: a head below it is a lagging node's.
    floor: AtomicU64,
    /// The highest head any endpoint answered.
    max_head: AtomicU64,
    /// Log limiter for rejections seen only by comparing answers.
    unattributed: endpoint::Limiter,
}

/// Attempts per call before the error is returned to the caller (who backs off further).
const ATTEMPTS: u32 = 4;

fn bad(kind: BadAnswer, message: impl Into<String>) -> RpcError {
    RpcError::BadAnswer { kind, message: message.into() }
}

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
            endpoints.push(Endpoint::new(provider, format!("rpc[{i}]")));
        }
        let redactor = errors::Redactor::new(urls);
        Ok(Self {
            inner: Arc::new(Inner {
                chain_id,
                endpoints,
                active: AtomicUsize::new(0),
                redactor,
                anchor: Mutex::new(None),
                floor: AtomicU64::new(0),
                max_head: AtomicU64::new(0),
                unattributed: endpoint::Limiter::default(),
            }),
        })
    }

    /// The chain id this client serves.
    pub fn chain_id(&self) -> u64 {
        self.inner.chain_id
    }

    /// Sets the block every endpoint must agree on (the start block as first indexed);
    /// every endpoint is checked again before its next use.
    pub fn set_anchor(&self, anchor: BlockRef) {
        *self.inner.anchor.lock().unwrap_or_else(|e| e.into_inner()) = Some(anchor);
        self.recheck_endpoints();
    }

    /// Sets the endpoint in use aside as serving another chain (its answers disagree with
    /// every indexed block), counted as a `wrong-chain` answer and logged.
    pub fn set_aside_active(&self, why: &str) {
        let idx = self.inner.active.load(Ordering::Relaxed) % self.inner.endpoints.len();
        let endpoint = &self.inner.endpoints[idx];
        let chain_id = self.inner.chain_id;
        metrics::counter!("tidemark_rpc_bad_answers_total", "chain_id" => chain_id.to_string(), "endpoint" => endpoint.label.clone(), "kind" => BadAnswer::WrongChain.label())
            .increment(1);
        tracing::error!(target: "tidemark::rpc", chain_id, endpoint = %endpoint.label, error = why, "rpc answer rejected; endpoint set aside");
        self.set_standing(endpoint, Standing::WrongChain(why.to_owned()));
    }

    /// Has every endpoint checked again before its next use.
    pub fn recheck_endpoints(&self) {
        for e in &self.inner.endpoints {
            e.invalidate();
        }
    }

    /// The anchor block, once set.
    pub fn anchor(&self) -> Option<BlockRef> {
        self.inner.anchor.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Records the highest indexed block: a head answered below it comes from a node that
    /// lags behind the index and is asked again elsewhere.
    pub fn set_floor(&self, indexed: u64) {
        self.inner.floor.store(indexed, Ordering::Relaxed);
    }

    /// The highest head any endpoint has answered.
    pub fn max_head(&self) -> u64 {
        self.inner.max_head.load(Ordering::Relaxed)
    }

    /// Each endpoint's label and standing.
    pub fn standings(&self) -> Vec<(String, Standing)> {
        self.inner.endpoints.iter().map(|e| (e.label.clone(), e.standing())).collect()
    }

    /// Succeeds once an endpoint is usable (serves the configured chain and agrees on the
    /// anchor); else a retryable error naming each endpoint's standing.
    pub async fn ensure_usable(&self) -> Result<(), RpcError> {
        self.pick().await.map(|_| ())
    }

    /// The latest block number (never below the indexed floor).
    pub async fn block_number(&self) -> Result<u64, RpcError> {
        let head = self
            .call("eth_blockNumber", |p| async move {
                let head = p.get_block_number().await.map_err(|e| self.classify(&e))?;
                let floor = self.inner.floor.load(Ordering::Relaxed);
                if head < floor {
                    return Err(bad(
                        BadAnswer::NotYet,
                        format!("head {head} is below the indexed block {floor}"),
                    ));
                }
                Ok(head)
            })
            .await?;
        self.inner.max_head.fetch_max(head, Ordering::Relaxed);
        Ok(head)
    }

    /// The header of block `number`. A node without it (a `null` block) is asked again
    /// elsewhere; the error, when every attempt fails, is retryable.
    pub async fn header(&self, number: u64) -> Result<Header, RpcError> {
        self.call("eth_getBlockByNumber", |p| async move { self.fetch_header(&p, number).await }).await
    }

    async fn fetch_header(&self, p: &RootProvider, number: u64) -> Result<Header, RpcError> {
        let raw: Option<RawHeader> = p
            .client()
            .request("eth_getBlockByNumber", (BlockNumberOrTag::Number(number), false))
            .await
            .map_err(|e| self.classify(&e))?;
        let h = raw
            .ok_or_else(|| bad(BadAnswer::NotYet, format!("block {number} is not known to the node yet")))?;
        if h.number.to::<u64>() != number {
            return Err(bad(
                BadAnswer::OutOfRange,
                format!("asked for block {number}, got block {}", h.number),
            ));
        }
        Ok(h.into())
    }

    /// `eth_getLogs` for `filter` over `[from, to]`, checked ([`answer::check_range`]);
    /// a log of a block in `hashes` must carry that hash.
    pub async fn logs(
        &self,
        filter: &Filter,
        from: u64,
        to: u64,
        hashes: &std::collections::HashMap<u64, String>,
    ) -> Result<Vec<Log>, RpcError> {
        let filter = filter.clone().from_block(from).to_block(to);
        self.call("eth_getLogs", |p| {
            let filter = filter.clone();
            async move {
                let logs = p.get_logs(&filter).await.map_err(|e| self.classify(&e))?;
                answer::check_range(&logs, from, to).map_err(|(k, m)| bad(k, m))?;
                answer::check_hashes(&logs, hashes).map_err(|(k, m)| bad(k, m))?;
                Ok(logs)
            }
        })
        .await
    }

    /// Counts and (at most once a minute) logs a rejected answer that cannot be traced to
    /// one endpoint (it showed only when compared with another answer).
    pub fn note_unattributed(&self, kind: BadAnswer, message: &str) {
        let chain_id = self.inner.chain_id;
        metrics::counter!("tidemark_rpc_bad_answers_total", "chain_id" => chain_id.to_string(), "endpoint" => "any", "kind" => kind.label())
            .increment(1);
        if let Some(count) = self.inner.unattributed.note_rejection(kind.label()) {
            tracing::warn!(target: "tidemark::rpc", chain_id, kind = kind.label(), count, error = %message, "rpc answer rejected; asking again");
        }
    }

    /// `eth_getLogs` by the block hash of `header`: a node without the block answers with
    /// an error, never with an empty list.
    pub async fn block_logs(&self, filter: &Filter, header: &Header) -> Result<Vec<Log>, RpcError> {
        let hash: B256 = header.block.hash.parse().map_err(|_| RpcError::Fatal {
            message: format!("stored hash {} is not a block hash", header.block.hash),
        })?;
        let number = header.block.number;
        let filter = filter.clone().at_block_hash(hash);
        self.call("eth_getLogs", |p| {
            let filter = filter.clone();
            async move {
                let logs = p.get_logs(&filter).await.map_err(|e| self.classify(&e))?;
                answer::check_block(&logs, number, &hash).map_err(|(k, m)| bad(k, m))?;
                Ok(logs)
            }
        })
        .await
    }

    /// The logs of `header`'s block that `interest` asks for, from the block's receipts,
    /// which must be one per transaction. `None` when the node does not offer
    /// `eth_getBlockReceipts`.
    pub async fn receipt_logs(
        &self,
        header: &Header,
        interest: &Interest,
    ) -> Result<Option<Vec<Log>>, RpcError> {
        let hash: B256 = header.block.hash.parse().map_err(|_| RpcError::Fatal {
            message: format!("stored hash {} is not a block hash", header.block.hash),
        })?;
        let number = header.block.number;
        let result = self
            .call("eth_getBlockReceipts", |p| async move {
                let receipts: Option<Vec<RawReceipt>> = p
                    .client()
                    .request("eth_getBlockReceipts", (BlockId::hash(hash),))
                    .await
                    .map_err(|e| self.classify(&e))?;
                let receipts = receipts.ok_or_else(|| {
                    bad(BadAnswer::NotYet, format!("receipts of block {number} not known yet"))
                })?;
                if receipts.len() != header.tx_count {
                    return Err(bad(
                        BadAnswer::Incomplete,
                        format!(
                            "{} receipts for the {} transactions of block {number}",
                            receipts.len(),
                            header.tx_count
                        ),
                    ));
                }
                let logs: Vec<Log> =
                    receipts.into_iter().flat_map(|r| r.logs).filter(|l| interest.matches(l)).collect();
                answer::check_block(&logs, number, &hash).map_err(|(k, m)| bad(k, m))?;
                Ok(logs)
            })
            .await;
        match result {
            Ok(logs) => Ok(Some(logs)),
            Err(e) if e.is_unsupported_method() => Ok(None),
            // Any other refusal must not turn an unconfirmed empty block into "no events":
            // asked again, like any answer that leaves out what the bloom shows.
            Err(RpcError::Fatal { message }) => {
                Err(bad(BadAnswer::Incomplete, format!("receipts of block {number}: {message}")))
            }
            Err(e) => Err(e),
        }
    }

    fn classify(&self, e: &TransportError) -> RpcError {
        errors::classify(e, &self.inner.redactor)
    }

    /// The endpoint to use now: the active one when usable, else the next usable one,
    /// checking each that is due. A retryable error naming every endpoint's standing when
    /// none is usable.
    async fn pick(&self) -> Result<usize, RpcError> {
        let n = self.inner.endpoints.len();
        let start = self.inner.active.load(Ordering::Relaxed);
        let mut why = Vec::new();
        for k in 0..n {
            let idx = (start + k) % n;
            let endpoint = &self.inner.endpoints[idx];
            if endpoint.needs_check() {
                self.check(endpoint).await;
            }
            match endpoint.standing() {
                Standing::Usable => {
                    self.inner.active.store(idx, Ordering::Relaxed);
                    return Ok(idx);
                }
                other => why.push(format!("{} {other}", endpoint.label)),
            }
        }
        Err(RpcError::Transient { message: format!("no usable endpoint: {}", why.join("; ")) })
    }

    /// Checks that `endpoint` serves the configured chain and has the anchor block with
    /// the anchor's hash.
    async fn check(&self, endpoint: &Endpoint) {
        let p = &endpoint.provider;
        let outcome = async {
            let reported = p.get_chain_id().await.map_err(|e| self.classify(&e))?;
            if reported != self.inner.chain_id {
                return Ok(Standing::WrongChain(format!("reports chain id {reported}")));
            }
            if let Some(anchor) = self.anchor() {
                match self.fetch_header(p, anchor.number).await {
                    Ok(h) if h.block.hash == anchor.hash => {}
                    Ok(h) => {
                        return Ok(Standing::WrongChain(format!(
                            "block {} is {} there but {} in the index",
                            anchor.number, h.block.hash, anchor.hash
                        )));
                    }
                    Err(RpcError::BadAnswer { kind: BadAnswer::NotYet, .. }) => {
                        return Ok(Standing::Behind(format!("does not have block {} yet", anchor.number)));
                    }
                    Err(e) => return Err(e),
                }
            }
            let head = p.get_block_number().await.map_err(|e| self.classify(&e))?;
            let floor = self.inner.floor.load(Ordering::Relaxed);
            if head < floor {
                return Ok(Standing::Behind(format!("its head {head} is below the indexed block {floor}")));
            }
            Ok(Standing::Usable)
        }
        .await;
        let standing = outcome.unwrap_or_else(|e: RpcError| {
            metrics::counter!("tidemark_rpc_errors_total", "method" => "endpoint-check", "kind" => e.kind()).increment(1);
            if let Some(count) = endpoint.note_rejection("unreachable") {
                tracing::warn!(target: "tidemark::rpc", chain_id = self.inner.chain_id, endpoint = %endpoint.label, count, error = %e, "endpoint check failed");
            }
            Standing::Unreachable(e.to_string())
        });
        self.set_standing(endpoint, standing);
    }

    fn set_standing(&self, endpoint: &Endpoint, standing: Standing) {
        let chain_id = self.inner.chain_id;
        metrics::gauge!("tidemark_rpc_endpoint_usable", "chain_id" => chain_id.to_string(), "endpoint" => endpoint.label.clone())
            .set(if standing == Standing::Usable { 1.0 } else { 0.0 });
        let Some(before) = endpoint.set(standing.clone()) else { return };
        match &standing {
            Standing::Usable => {
                tracing::info!(target: "tidemark::rpc", chain_id, endpoint = %endpoint.label, was = %before, "endpoint usable")
            }
            Standing::Unreachable(_) => {}
            other => {
                tracing::warn!(target: "tidemark::rpc", chain_id, endpoint = %endpoint.label, standing = %other, "endpoint set aside")
            }
        }
    }

    /// Runs `f` against a usable endpoint. Rate limits, server errors, timeouts and
    /// rejected answers are retried with exponential backoff, rotating to the next
    /// endpoint after each failure; range errors and invalid requests are returned at once.
    async fn call<T, F, Fut>(&self, method: &'static str, f: F) -> Result<T, RpcError>
    where
        F: Fn(RootProvider) -> Fut,
        Fut: std::future::Future<Output = Result<T, RpcError>>,
    {
        let n = self.inner.endpoints.len();
        let mut delay = Duration::from_millis(100);
        let mut last = None;
        for attempt in 0..ATTEMPTS {
            let result = match self.pick().await {
                Ok(idx) => {
                    let endpoint = &self.inner.endpoints[idx];
                    let started = std::time::Instant::now();
                    let result = f(endpoint.provider.clone()).await;
                    metrics::histogram!("tidemark_rpc_request_seconds", "method" => method)
                        .record(started.elapsed().as_secs_f64());
                    result.map_err(|e| (Some(idx), e))
                }
                Err(e) => Err((None, e)),
            };
            let (idx, err) = match result {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            metrics::counter!("tidemark_rpc_errors_total", "method" => method, "kind" => err.kind())
                .increment(1);
            if !err.is_retryable() {
                return Err(err);
            }
            if let Some(idx) = idx {
                self.failed(idx, method, attempt, &err);
                if n > 1 {
                    // Fail over: the next caller starts on the next endpoint too.
                    let _ = self.inner.active.compare_exchange(
                        idx,
                        (idx + 1) % n,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                }
            }
            last = Some(err);
            if attempt + 1 < ATTEMPTS {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
        Err(last.unwrap_or(RpcError::Transient { message: "no attempt was made".into() }))
    }

    /// Records a failed request on endpoint `idx`: a rejected answer is counted and logged
    /// at most once a minute per endpoint and kind.
    fn failed(&self, idx: usize, method: &'static str, attempt: u32, err: &RpcError) {
        let chain_id = self.inner.chain_id;
        let endpoint = &self.inner.endpoints[idx];
        let RpcError::BadAnswer { kind, message } = err else {
            tracing::warn!(target: "tidemark::rpc", chain_id, endpoint = %endpoint.label, method, attempt, error = %err, "rpc request failed; retrying");
            return;
        };
        metrics::counter!("tidemark_rpc_bad_answers_total", "chain_id" => chain_id.to_string(), "endpoint" => endpoint.label.clone(), "kind" => kind.label())
            .increment(1);
        if let Some(count) = endpoint.note_rejection(kind.label()) {
            tracing::warn!(target: "tidemark::rpc", chain_id, endpoint = %endpoint.label, method, kind = kind.label(), count, error = %message, "rpc answer rejected; asking again");
        }
    }
}
