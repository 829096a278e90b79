//! Backfills of sources added to an indexed chain (a compatible config change: a
//! contract, addresses or events; [`tidemark_shared_types::added_sources`]). Each covers
//! `[fromBlock, toBlock]`, where `toBlock` was the chain's checkpoint when the source was
//! added; the follower, whose filter has the source since then, covers what follows.
//!
//! They run beside the chain's bulk backfill and follower, in ranges of the chain's
//! adaptive size, each checked like a bulk range (end block by hash and bloom, every log's
//! block against its header) and committed with the source's progress in one transaction
//! ([`Writer::commit_source`]), which refuses a range above the chain's checkpoint or on
//! blocks the chain no longer has (the follower repairs reorgs; the range is fetched again
//! after) and leaves out logs the follower already stored. A restart resumes at the first
//! block not stored. Existing rows are never rewritten: the source's events get new
//! cursors.
//!
//! [`Writer::commit_source`]: crate::store::Writer::commit_source

use std::collections::HashMap;

use alloy::primitives::{Address, B256};
use alloy::rpc::types::Filter;
use tidemark_db_client::DbError;
use tidemark_db_client::writer::SourceCommit;
use tidemark_shared_types::SourceBackfill;
use tidemark_shared_types::epoch::EpochStage;

use super::chain::{ChainPipeline, PipelineError};
use super::fetch;
use crate::rpc::Interest;

/// How long a source range waits for the follower to repair the chain under it.
const REPAIR_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// How an added source's logs are asked for.
enum SourceQuery {
    /// Static addresses: one filter.
    Static(Box<(Filter, Interest)>),
    /// The children of factory contract `contract` (an index in the chain's contracts),
    /// with `topics`.
    Children { contract: usize, topics: Vec<B256> },
}

impl ChainPipeline {
    /// This chain's added sources still backfilling.
    pub(super) async fn pending_sources(&self) -> Result<Vec<SourceBackfill>, PipelineError> {
        let id = self.id();
        Ok(self
            .writer
            .lock()
            .await
            .added_sources()
            .await?
            .into_iter()
            .filter(|s| s.source.chain_id == id && !s.is_done())
            .collect())
    }

    /// Discovers the children that the factory sources among `pending` that need it
    /// created over their ranges (below the checkpoint, where the follower does not look):
    /// from all the factory's addresses for a new factory contract, from the added ones
    /// when addresses were added to the factory's contract. Stores them, adds them to the
    /// set and records the discovery as done. Runs before the follower starts, so that it
    /// knows every child created up to the checkpoint; interrupted, it runs again (adding
    /// nothing twice).
    pub(super) async fn discover_source_children(
        &self,
        pending: &mut [SourceBackfill],
    ) -> Result<(), PipelineError> {
        let id = self.id();
        for source in pending.iter_mut().filter(|s| s.source.discover && !s.discovered) {
            let Some((j, contract)) =
                self.chain.contracts.iter().enumerate().find(|(_, c)| c.name == source.source.contract)
            else {
                continue;
            };
            let Some(f) = &contract.factory else { continue };
            let creators: Vec<Address> = if source.source.addresses.is_empty() {
                f.addresses.clone()
            } else {
                source.source.addresses.iter().filter_map(|a| a.parse().ok()).collect()
            };
            let filter = Filter::new().address(creators.clone()).event_signature(f.event.topic0);
            let interest = Interest::new(creators, vec![f.event.topic0]);
            let mut from = source.from_block.max(f.start_block);
            let to = source.to_block.min(f.end_block.unwrap_or(u64::MAX));
            let mut found_total = 0usize;
            while from <= to {
                let end = to.min(from.saturating_add(self.chain.max_block_range - 1));
                let found = self
                    .retry("added factory discovery", || async {
                        let header = self.rpc.header(end).await.map_err(|e| self.rpc_err(e))?;
                        let hashes = HashMap::from([(end, header.block.hash.clone())]);
                        let mut logs =
                            fetch::logs_in_range(&self.rpc, &filter, from, end, &self.size, &hashes)
                                .await
                                .map_err(|e| self.rpc_err(e))?;
                        self.confirm_range(&mut logs, &header, std::slice::from_ref(&filter), &interest)
                            .await?;
                        Ok(super::children::discover(&self.chain, &logs))
                    })
                    .await?;
                let found: Vec<_> = found.into_iter().filter(|d| d.creation.contract == j).collect();
                let rows: Vec<_> = found.iter().map(|d| d.row.clone()).collect();
                self.writer.lock().await.store_children(id, &rows).await?;
                self.add_children(&found)?;
                found_total += found.len();
                from = end + 1;
            }
            source.discovered = true;
            self.writer.lock().await.update_added_source(source).await?;
            tracing::info!(target: "tidemark::sources", chain_id = id, contract = %source.source.contract,
                children = found_total, to, "children of an added factory source discovered");
        }
        Ok(())
    }

    /// Backfills this chain's added sources (`pending`), beside the chain's bulk backfill
    /// and follower; returns once every one is stored.
    pub(super) async fn backfill_sources(&self, pending: Vec<SourceBackfill>) -> Result<(), PipelineError> {
        let id = self.id();
        if pending.is_empty() {
            return Ok(());
        }
        self.progress.update(id, |s| s.sources = pending.clone());
        for source in pending {
            self.backfill_source(source).await?;
        }
        Ok(())
    }

    async fn backfill_source(&self, mut source: SourceBackfill) -> Result<(), PipelineError> {
        let id = self.id();
        let query = self.source_query(&source)?;
        let key = source.source.key();
        tracing::info!(target: "tidemark::sources", chain_id = id, contract = %source.source.contract,
            from = source.next_block, to = source.to_block, "backfilling an added source");
        while !source.is_done() {
            let from = source.next_block;
            let end = source.to_block.min(from.saturating_add(self.size.get() - 1));
            // The range's epoch, written with its commit (ids drawn in commit order's
            // neighbourhood; a range that waits for a repair draws a new one next time).
            let mut epoch = self.epochs.enabled().then(|| self.epochs.plan_source(key.clone(), from, end));
            let rows = self
                .retry("added source range", || async {
                    let header = self.rpc.header(end).await.map_err(|e| self.rpc_err(e))?;
                    let hashes = HashMap::from([(end, header.block.hash.clone())]);
                    let (mut logs, filters, interest) = match &query {
                        SourceQuery::Static(query) => {
                            let (filter, interest) = query.as_ref();
                            let logs =
                                fetch::logs_in_range(&self.rpc, filter, from, end, &self.size, &hashes)
                                    .await
                                    .map_err(|e| self.rpc_err(e))?;
                            (logs, vec![filter.clone()], interest.clone())
                        }
                        SourceQuery::Children { contract, topics } => {
                            let c = self.child_logs(from, end, &hashes, Some(&[*contract]), topics).await?;
                            (c.logs, c.filters, c.interest)
                        }
                    };
                    let known = self.confirm_range(&mut logs, &header, &filters, &interest).await?;
                    self.decode(&logs, &known).await
                })
                .await?;
            let mut next = source.clone();
            next.next_block = end + 1;
            if let Some(e) = epoch.as_mut() {
                for stage in [EpochStage::Fetched, EpochStage::Decoded, EpochStage::Stored] {
                    e.push(stage);
                }
            }
            let outcome =
                self.writer.lock().await.commit_source(id, &rows, (from, end), &next, epoch.as_ref()).await?;
            match outcome {
                SourceCommit::Committed => {
                    source = next;
                    self.committed_source(&source, rows.len() as u64);
                }
                // A rollback rewound the source meanwhile: resume where it says.
                SourceCommit::Rewound(n) => {
                    tracing::info!(target: "tidemark::sources", chain_id = id, contract = %source.source.contract, from = n,
                        "added source rewound by a reorg; resuming");
                    source.next_block = n;
                    self.committed_source(&source, 0);
                }
                // The follower rolled the chain back below the range, or its blocks changed:
                // the follower repairs (its filter has the source); fetch again after it.
                SourceCommit::Reorged | SourceCommit::AboveCheckpoint => {
                    tracing::info!(target: "tidemark::sources", chain_id = id, contract = %source.source.contract, from, to = end,
                        outcome = ?outcome, "added source range waits for the chain's repair");
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return Err(PipelineError::Shutdown),
                        _ = tokio::time::sleep(REPAIR_WAIT) => {}
                    }
                }
            }
        }
        tracing::info!(target: "tidemark::sources", chain_id = id, contract = %source.source.contract, "added source backfilled");
        self.progress.update(id, |s| s.sources.retain(|x| x.source != source.source));
        Ok(())
    }

    /// How an added source's logs are asked for, from the chain's config (which has the
    /// source's contract, addresses and events).
    fn source_query(&self, backfill: &SourceBackfill) -> Result<SourceQuery, PipelineError> {
        let source = &backfill.source;
        let (j, contract) =
            self.chain.contracts.iter().enumerate().find(|(_, c)| c.name == source.contract).ok_or_else(
                || {
                    PipelineError::Db(DbError::Config(format!(
                        "added source {} is not in the chain's config",
                        source.contract
                    )))
                },
            )?;
        if contract.factory.is_some() {
            let topics: Vec<B256> = contract
                .events
                .iter()
                .filter(|e| source.events.contains(&e.signature))
                .map(|e| e.topic0)
                .collect();
            return Ok(SourceQuery::Children { contract: j, topics });
        }
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
        Ok(SourceQuery::Static(Box::new((filter, Interest::new(addresses, topics)))))
    }

    /// Records a committed range of an added source in the progress (the chain made
    /// progress: it is not stalled while it backfills a source).
    fn committed_source(&self, source: &SourceBackfill, events: u64) {
        let id = self.id();
        metrics::counter!("tidemark_events_indexed_total", "chain_id" => id.to_string()).increment(events);
        self.progress.update(id, |s| {
            s.events_indexed += events;
            s.progressed();
            match s.sources.iter_mut().find(|x| x.source == source.source) {
                Some(x) => *x = source.clone(),
                None => s.sources.push(source.clone()),
            }
        });
    }
}
