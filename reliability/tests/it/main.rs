//! Tidemark's reliability suite: the real `tidemark-indexer` and `tidemark-api` binaries
//! against a real anvil and a real PostgreSQL, under crashes, reorg storms, outages,
//! database restarts, incompatible configs, bad input, secrets in URLs and least-privilege
//! database roles, and the live stream (`/v1/stream`) under traffic, reorgs, API kills,
//! database restarts and a crowd of clients catching up at once, and the sinks (webhook
//! and NATS JetStream) under receiver faults, kills and a broker restart, and provider
//! webhook deliveries shuffled, duplicated and dropped through an indexer outage.
//!
//! `TIDEMARK_RELIABILITY=full|reduced` (default reduced) sets the scale; each scenario
//! records what it tried and what it found, and the table is printed to standard error
//! when the binary exits and written to `$CARGO_TARGET_DIR/reliability-summary.md`.
//! Missing anvil or PostgreSQL fails the scenarios; nothing skips.

#![allow(clippy::unwrap_used)]

mod bad_input;
mod common;
mod crash;
mod deposed;
mod hung_db;
mod incompatible;
mod least_privilege;
mod load;
mod lying_rpc;
mod outages;
mod reorg_storm;
mod secrets;
mod sinks;
mod stream;
mod webhooks;
mod writer;
