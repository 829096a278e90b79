//! Bulk backfill: ranges fetched `max_concurrency` at a time and committed strictly in
//! block order, one epoch per range.

use std::collections::HashMap;

use alloy::rpc::types::{Filter, Log};
use futures::StreamExt;
use futures::future::BoxFuture;
use tidemark_db_client::writer::ChildRow;
use tidemark_shared_types::BlockRef;
use tidemark_shared_types::epoch::EpochStage;

use super::chain::{ChainPipeline, PipelineError};
use super::decode::EventRow;
use super::fetch;
use crate::epochs::Epoch;
use crate::rpc::{BadAnswer, Header, Interest, RpcError};
use crate::store::Batch;

/// A fetched and decoded range: its events and the children it created.
struct Fetched {
    rows: Vec<EventRow>,
    children: Vec<ChildRow>,
}

impl ChainPipeline {
    /// Indexes `[from, to]`; stored epochs ending at or below `finalized_upto` are final.
    /// Returns the last checkpoint.
    pub(super) async fn bulk(
        &self,
        from: u64,
        to: u64,
        finalized_upto: u64,
    ) -> Result<Option<BlockRef>, PipelineError> {
        let id = self.id();
        // Nothing above the checkpoint is committed: the set starts from what is stored.
        self.forget_children_above(from.saturating_sub(1))?;
        self.discovered_below.send_replace(from);
        // Ranges are planned lazily, so each takes the range size current when it starts.
        // Epoch ids are drawn here, in block order; a retried epoch keeps its range.
        let mut next = from;
        let plan = std::iter::from_fn(move || {
            if next > to {
                return None;
            }
            let end = to.min(next.saturating_add(self.size.get() - 1));
            let epoch = self.epochs.plan(next, end);
            next = epoch.to + 1;
            Some(epoch)
        });
        let fetched = futures::stream::iter(plan)
            .map(|epoch| -> BoxFuture<'_, _> { Box::pin(self.fetch_range(epoch)) })
            .buffered(self.chain.max_concurrency);

        // Fetching and decoding go on while a batch commits: the producer drives the
        // fetches (at most `max_concurrency` ranges in flight) and hands finished ranges,
        // in block order, through a channel of one; the consumer commits them. In memory at
        // most: the ranges in flight, one waiting, one committing.
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let producer = async move {
            let mut fetched = std::pin::pin!(fetched);
            while let Some(item) = fetched.next().await {
                if tx.send(item).await.is_err() {
                    break;
                }
            }
            drop(tx);
            // Never completes: the consumer ends the backfill, and dropping this future
            // cancels the fetches still in flight.
            std::future::pending::<std::convert::Infallible>().await
        };
        let consumer = async {
            let mut last = None;
            loop {
                let item = tokio::select! {
                    biased;
                    _ = self.shutdown.cancelled() => return Err(PipelineError::Shutdown),
                    item = rx.recv() => item,
                };
                let Some(result) = item else { break };
                let (Fetched { rows, children }, end_header, mut epoch) = result?;
                let started = std::time::Instant::now();
                epoch.push(EpochStage::Stored);
                {
                    let mut w = self.writer.lock().await;
                    w.commit(Batch {
                        chain_id: id,
                        events: &rows,
                        children: &children,
                        headers: std::slice::from_ref(&end_header),
                        checkpoint: &end_header.block,
                        prune_below: Some(end_header.block.number.saturating_sub(self.chain.finality_depth)),
                        epoch: self.epochs.enabled().then_some(&epoch),
                        finalize_upto: self
                            .epochs
                            .enabled()
                            .then(|| (finalized_upto, crate::epochs::now_secs())),
                    })
                    .await?;
                }
                metrics::histogram!("tidemark_commit_seconds", "chain_id" => self.id().to_string(), "phase" => "backfill")
                    .record(started.elapsed().as_secs_f64());
                self.committed(&rows, &end_header.block, None);
                last = Some(end_header.block);
            }
            Ok(last)
        };
        tokio::select! {
            result = consumer => result,
            never = producer => match never {},
        }
    }

    /// Checks a bulk range's logs against the chain's own data before they can be committed:
    /// every block with logs against its header's hash (a node on another branch, or one
    /// that rewrites hashes, is asked again), and the end block, when no log came back for
    /// it, against its bloom (a node that did not have it yet answered short). Returns the
    /// headers fetched, by number.
    pub(super) async fn confirm_range(
        &self,
        logs: &mut Vec<Log>,
        end: &Header,
        filters: &[Filter],
        interest: &Interest,
    ) -> Result<HashMap<u64, Header>, PipelineError> {
        let to = end.block.number;
        let mut numbers: Vec<u64> = logs.iter().filter_map(|l| l.block_number).filter(|n| *n != to).collect();
        numbers.sort_unstable();
        numbers.dedup();
        let headers = fetch::headers_of(&self.rpc, numbers, self.chain.max_concurrency * 2)
            .await
            .map_err(|e| self.rpc_err(e))?;
        let mut known: HashMap<u64, Header> = headers.into_iter().map(|h| (h.block.number, h)).collect();
        known.insert(to, end.clone());
        for log in logs.iter() {
            let (Some(n), Some(h)) = (log.block_number, log.block_hash) else { continue };
            if known.get(&n).is_some_and(|k| k.block.hash != format!("{h:#x}")) {
                let message = format!("a log of block {n} carries hash {h:#x}, not its header's; refetching");
                self.rpc.note_unattributed(BadAnswer::HashMismatch, &message);
                return Err(self.rpc_err(RpcError::BadAnswer { kind: BadAnswer::HashMismatch, message }));
            }
        }
        if let Some(end) = known.get(&to) {
            fetch::complete(&self.rpc, filters, interest, &[end], logs, 1)
                .await
                .map_err(|e| self.rpc_err(e))?;
        }
        Ok(known)
    }

    /// One range (one epoch), retried until it is fetched and decoded; every failed
    /// attempt is recorded in the epoch's history.
    async fn fetch_range(&self, mut epoch: Epoch) -> Result<(Fetched, Header, Epoch), PipelineError> {
        let mut backoff = self.backoff("fetch range");
        loop {
            match self.attempt(self.fetch_range_once(&mut epoch)).await {
                Ok((rows, end)) => return Ok((rows, end, epoch)),
                Err(PipelineError::Shutdown) => return Err(PipelineError::Shutdown),
                Err(e) => {
                    self.epochs.fail(&mut epoch, &e.to_string());
                    backoff.wait_after(e).await?;
                }
            }
        }
    }

    /// One attempt at a range: end header first (so a lagging node cannot answer empty
    /// for blocks it does not have), then logs, checked against the end block's hash. With
    /// factory contracts: the static addresses' logs first, then, once every lower range
    /// has added its children, the logs of the children created up to the range's end.
    async fn fetch_range_once(&self, epoch: &mut Epoch) -> Result<(Fetched, Header), PipelineError> {
        let (from, to) = (epoch.from, epoch.to);
        let end = self.rpc.header(to).await.map_err(|e| self.rpc_err(e))?;
        let end_hash = HashMap::from([(to, end.block.hash.clone())]);
        let mut logs = fetch::logs_in_range(&self.rpc, &self.filter, from, to, &self.size, &end_hash)
            .await
            .map_err(|e| self.rpc_err(e))?;
        let mut known =
            self.confirm_range(&mut logs, &end, std::slice::from_ref(&self.filter), &self.interest).await?;
        let mut children = Vec::new();
        if self.has_factories() {
            let found = super::children::discover(&self.chain, &logs);
            self.add_children_in_order(from, to, &found).await?;
            let topics = self.chain.child_topic0s();
            let mut child = self.child_logs(from, to, &end_hash, None, &topics).await?;
            if !child.filters.is_empty() {
                known.extend(
                    self.confirm_range(&mut child.logs, &end, &child.filters, &child.interest).await?,
                );
                logs.extend(child.logs);
                fetch::dedup(&mut logs);
            }
            children = found.into_iter().map(|d| d.row).collect();
        }
        self.epochs.advance(epoch, EpochStage::Fetched);
        let rows = self.decode(&logs, &known).await?;
        self.epochs.advance(epoch, EpochStage::Decoded);
        Ok((Fetched { rows, children }, end))
    }
}
