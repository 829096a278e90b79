//! Backfills of sources added to an indexed chain (a compatible config change: a
//! contract, addresses or events; [`tidemark_shared_types::added_sources`]). Each covers
//! `[fromBlock, toBlock]`, where `toBlock` was the chain's checkpoint when the source was
//! added; the follower, whose filter has the source since then, covers what follows.
//!
//! It runs when the chain's pipeline starts, before the chain goes on from its
//! checkpoint: in ranges of the chain's adaptive size, each checked like a bulk range (end
//! block by hash and bloom, every log's block against its header) and committed with the
//! source's progress in one transaction ([`Writer::commit_source`]). A restart resumes at
//! the first block not stored. Existing rows are never rewritten: the source's events get
//! new cursors.
//!
//! [`Writer::commit_source`]: crate::store::Writer::commit_source

use std::collections::HashMap;

use alloy::primitives::{Address, B256};
use alloy::rpc::types::Filter;
use tidemark_db_client::DbError;
use tidemark_db_client::writer::SourceCommit;
use tidemark_shared_types::{BlockRef, SourceBackfill};

use super::chain::{ChainPipeline, PipelineError};
use super::{fetch, reorg};
use crate::rpc::Interest;

impl ChainPipeline {
    /// Backfills this chain's added sources up to `cp` (lowered when a reorg is repaired
    /// meanwhile).
    pub(super) async fn backfill_sources(
        &self,
        cp: &mut Option<BlockRef>,
        start_n: u64,
    ) -> Result<(), PipelineError> {
        let id = self.id();
        let pending: Vec<SourceBackfill> = self
            .writer
            .lock()
            .await
            .added_sources()
            .await?
            .into_iter()
            .filter(|s| s.chain_id == id && !s.is_done())
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        self.progress.update(id, |s| s.sources = pending.clone());
        for source in pending {
            self.backfill_source(source, cp, start_n).await?;
        }
        Ok(())
    }

    async fn backfill_source(
        &self,
        mut source: SourceBackfill,
        cp: &mut Option<BlockRef>,
        start_n: u64,
    ) -> Result<(), PipelineError> {
        let id = self.id();
        let (filter, interest) = self.source_filter(&source)?;
        tracing::info!(target: "tidemark::sources", chain_id = id, contract = %source.contract,
            from = source.next_block, to = source.to_block, "backfilling an added source");
        loop {
            // Never beyond the checkpoint: what lies above it is the follower's.
            let to = source.to_block.min(cp.as_ref().map_or(0, |c| c.number));
            if cp.is_none() || source.next_block > to {
                break;
            }
            let from = source.next_block;
            let end = to.min(from.saturating_add(self.size.get() - 1));
            let rows = self
                .retry("added source range", || async {
                    let header = self.rpc.header(end).await.map_err(|e| self.rpc_err(e))?;
                    let hashes = HashMap::from([(end, header.block.hash.clone())]);
                    let mut logs = fetch::logs_in_range(&self.rpc, &filter, from, end, &self.size, &hashes)
                        .await
                        .map_err(|e| self.rpc_err(e))?;
                    let known = self.confirm_range(&mut logs, &header, &filter, &interest).await?;
                    self.decode(&logs, &known).await
                })
                .await?;
            let mut next = source.clone();
            next.next_block = end + 1;
            let outcome = self.writer.lock().await.commit_source(id, &rows, end, &next).await?;
            match outcome {
                SourceCommit::Committed => {
                    source = next;
                    self.committed_source(&source, rows.len() as u64);
                }
                // The chain moved under the stored checkpoint (a reorg while no follower
                // ran): repair as the start does, then go on below the new checkpoint.
                SourceCommit::Reorged | SourceCommit::AboveCheckpoint => {
                    let stored = self.writer.lock().await.checkpoint(id).await?;
                    *cp = match stored {
                        Some(c) => reorg::repair(self, &c, start_n).await?,
                        None => None,
                    };
                }
            }
        }
        if !source.is_done() {
            // The checkpoint fell below the source's range end: the follower's filter has
            // the source, so it stores the rest; nothing is left for this backfill.
            source.next_block = source.to_block + 1;
            self.writer.lock().await.commit_source(id, &[], 0, &source).await?;
        }
        tracing::info!(target: "tidemark::sources", chain_id = id, contract = %source.contract, "added source backfilled");
        self.progress.update(id, |s| s.sources.retain(|x| !same_source(x, &source)));
        Ok(())
    }

    /// The log filter and bloom interest of an added source, from the chain's config
    /// (which has the source's contract, addresses and events).
    fn source_filter(&self, source: &SourceBackfill) -> Result<(Filter, Interest), PipelineError> {
        let contract = self.chain.contracts.iter().find(|c| c.name == source.contract).ok_or_else(|| {
            PipelineError::Db(DbError::Config(format!(
                "added source {} is not in the chain's config",
                source.contract
            )))
        })?;
        let addresses: Vec<Address> = source.addresses.iter().filter_map(|a| a.parse().ok()).collect();
        let topics: Vec<B256> = contract
            .events
            .iter()
            .filter(|e| source.events.contains(&e.signature))
            .map(|e| e.topic0)
            .collect();
        if addresses.len() != source.addresses.len() || topics.len() != source.events.len() {
            return Err(PipelineError::Db(DbError::Config(format!(
                "added source {} does not match the chain's config (addresses or events)",
                source.contract
            ))));
        }
        let filter = Filter::new().address(addresses.clone()).event_signature(topics.clone());
        Ok((filter, Interest::new(addresses, topics)))
    }

    /// Records a committed range of an added source in the progress (the chain made
    /// progress: it is not stalled while it backfills a source).
    fn committed_source(&self, source: &SourceBackfill, events: u64) {
        let id = self.id();
        metrics::counter!("tidemark_events_indexed_total", "chain_id" => id.to_string()).increment(events);
        self.progress.update(id, |s| {
            s.events_indexed += events;
            s.progressed();
            match s.sources.iter_mut().find(|x| same_source(x, source)) {
                Some(x) => *x = source.clone(),
                None => s.sources.push(source.clone()),
            }
        });
    }
}

fn same_source(a: &SourceBackfill, b: &SourceBackfill) -> bool {
    a.chain_id == b.chain_id && a.contract == b.contract && a.addresses == b.addresses && a.events == b.events
}
