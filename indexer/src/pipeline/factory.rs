//! The pipeline's side of factory contracts: the chain's child set loaded at start,
//! children added as ranges discover them, and their logs fetched per range (address
//! chunks, or one topic-only request filtered by the set; see [`super::children`]).

use std::collections::HashMap;

use alloy::primitives::B256;
use alloy::rpc::types::{Filter, Log};

use super::chain::{ChainPipeline, PipelineError};
use super::children::{ChildFetch, ChildSet, Discovered, child_query};
use super::fetch;
use crate::rpc::{Interest, RpcError};

/// A range's children logs, with the requests and interest that asked for them (to
/// confirm them the same way).
pub(super) struct ChildLogs {
    pub(super) logs: Vec<Log>,
    pub(super) filters: Vec<Filter>,
    pub(super) interest: Interest,
}

impl ChainPipeline {
    /// Whether the chain has factory contracts.
    pub(super) fn has_factories(&self) -> bool {
        self.chain.factories().next().is_some()
    }

    /// Loads the chain's stored children into the set (at start, and after a new term).
    pub(super) async fn load_children(&self) -> Result<(), PipelineError> {
        if !self.has_factories() {
            return Ok(());
        }
        let rows = self.writer.lock().await.children(self.id()).await?;
        let set = ChildSet::from_rows(&self.chain, &rows);
        tracing::info!(target: "tidemark::factory", chain_id = self.id(), children = set.len(), "factory children loaded");
        self.children_gauge(set.len());
        *self.children.write().map_err(|_| self.poisoned())? = set;
        Ok(())
    }

    fn children_gauge(&self, n: usize) {
        metrics::gauge!("tidemark_factory_children", "chain_id" => self.id().to_string()).set(n as f64);
    }

    /// Drops the children created above `block` from the set (uncommitted, or orphaned).
    pub(super) fn forget_children_above(&self, block: u64) -> Result<(), PipelineError> {
        let mut set = self.children.write().map_err(|_| self.poisoned())?;
        let before = set.len();
        set.truncate_above(block);
        if set.len() != before {
            self.children_gauge(set.len());
        }
        Ok(())
    }

    /// Adds the children `found` in `[from, to]` to the set. During a bulk backfill ranges
    /// are fetched concurrently: this waits until every range below `from` has added its
    /// own, so that the set is complete up to `to` when the range asks for its children's
    /// logs. Adding is idempotent (a retried range adds the same children again).
    pub(super) async fn add_children_in_order(
        &self,
        from: u64,
        to: u64,
        found: &[Discovered],
    ) -> Result<(), PipelineError> {
        let mut below = self.discovered_below.subscribe();
        // The sender is `self`: it outlives this wait.
        let _ = below.wait_for(|n| *n >= from).await;
        self.add_children(found)?;
        self.discovered_below.send_modify(|n| *n = (*n).max(to + 1));
        Ok(())
    }

    /// Adds `found` to the set.
    pub(super) fn add_children(&self, found: &[Discovered]) -> Result<(), PipelineError> {
        if found.is_empty() {
            return Ok(());
        }
        let mut set = self.children.write().map_err(|_| self.poisoned())?;
        let added = found.iter().filter(|d| set.insert(d.address, d.creation)).count();
        if added > 0 {
            self.children_gauge(set.len());
        }
        Ok(())
    }

    /// How children's logs are asked for on this chain.
    fn child_fetch(&self) -> ChildFetch {
        ChildFetch {
            max_addresses: self.chain.max_filter_addresses,
            topic_only_above: self.chain.factory_topic_only_above,
        }
    }

    /// The logs with `topics` of the children of `contracts` (every factory contract when
    /// `None`) created up to `to`, in `[from, to]`; every log of a block in `hashes` must
    /// carry that hash.
    pub(super) async fn child_logs(
        &self,
        from: u64,
        to: u64,
        hashes: &HashMap<u64, String>,
        contracts: Option<&[usize]>,
        topics: &[B256],
    ) -> Result<ChildLogs, PipelineError> {
        let addresses = self.children.read().map_err(|_| self.poisoned())?.addresses_upto(to, contracts);
        let fetch = self.child_fetch();
        let (filters, interest) = child_query(&addresses, topics, fetch);
        let topic_only = addresses.len() > fetch.topic_only_above;
        // Children's queries have a range size of their own: what strangers emit with the
        // same topics (a topic-only answer) must not shrink the chain's ranges.
        let (filters, interest, logs) = match fetch::query_logs(
            &self.rpc,
            &filters,
            &interest,
            from,
            to,
            &self.child_size,
            hashes,
        )
        .await
        {
            Ok(logs) => (filters, interest, logs),
            // A block holds more logs with the children's topics than the provider
            // returns at once (anyone can emit them): ask by address chunks instead.
            Err(RpcError::Fatal { message }) if topic_only => {
                metrics::counter!("tidemark_factory_topic_fallbacks_total", "chain_id" => self.id().to_string())
                        .increment(1);
                tracing::warn!(target: "tidemark::factory", chain_id = self.id(), from, to, error = %message,
                        "topic-only request for children's logs refused; asking by address chunks");
                let chunks = ChildFetch { topic_only_above: usize::MAX, ..fetch };
                let (filters, interest) = child_query(&addresses, topics, chunks);
                let logs =
                    fetch::query_logs(&self.rpc, &filters, &interest, from, to, &self.child_size, hashes)
                        .await
                        .map_err(|e| self.rpc_err(e))?;
                (filters, interest, logs)
            }
            Err(e) => return Err(self.rpc_err(e)),
        };
        Ok(ChildLogs { logs, filters, interest })
    }
}
