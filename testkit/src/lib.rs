//! `tidemark-testkit`: fixtures for Tidemark's integration tests.
//!
//! - [`TestDb`]: a fresh PostgreSQL database per test (from `tidemark-db-client`), and
//!   [`TestRole`], a login role without privileges, dropped after the test;
//! - [`Anvil`]: an anvil chain on a free port, killed on drop;
//! - [`Process`]: a child process with captured output, `kill -9`, SIGTERM, exit status;
//! - [`IndexerConfigBuilder`]: an indexer TOML config for given chains, database and schema;
//! - [`InstanceDb`]: the rows an indexer stored (events, checkpoints, journal, metadata)
//!   and [`JournalReplay`], a consumer of the journal;
//! - [`canonical_logs`]: what the chain says, via `eth_getLogs`, in the same shape;
//! - [`RpcProxy`]: a JSON-RPC proxy that can slow down or refuse requests, over HTTP or
//!   HTTPS ([`tls`]: a private CA, [`TestCa`]);
//! - [`PgBouncer`]: a private PgBouncer in a given pool mode in front of the test server;
//! - [`eventually`]: polling with a deadline instead of sleeping;
//! - [`Stack`]: a database, an anvil with the demo contracts and a directory, on which the
//!   real binaries run ([`Indexer`], [`Api`], found by [`bins`]);
//! - [`compare`]: stored events against the canonical chain, asserted or counted;
//! - [`sse`]: a client of the API's `/v1/stream` ([`SseReader`]);
//! - [`WebhookReceiver`]: a webhook receiver that fails on demand and verifies signatures
//!   with the Standard Webhooks reference library; [`NatsServer`]: a private `nats-server`
//!   with JetStream.
//!
//! Missing tools are failures, never skips: a test that cannot start anvil or reach
//! PostgreSQL panics with a message saying what to install. This crate never depends on
//! `tidemark-indexer` (the API's tests use it too): it drives binaries and reads the
//! database, as an outside observer would.

mod anvil;
pub mod bins;
mod chain;
pub mod compare;
mod config;
mod db;
mod error;
mod faults;
mod journal;
mod metrics;
mod nats;
mod pgbouncer;
mod process;
mod proxy;
mod services;
pub mod sse;
mod stack;
pub mod tls;
mod webhook;

pub use anvil::Anvil;
pub use chain::{LogRow, block_hash, canonical_logs, head};
pub use compare::assert_matches_chain;
pub use config::{ChainSpec, ContractSpec, FactorySpec, IndexerConfigBuilder, WebhookSpec};
pub use db::{Checkpoint, ChildEntry, EpochRow, InstanceDb, JournalEntry, MetadataRow, StoredEvent};
pub use error::{Error, Result};
pub use faults::{Faults, InjectedCounts};
pub use journal::JournalReplay;
pub use metrics::metric_sum;
pub use nats::NatsServer;
pub use pgbouncer::PgBouncer;
pub use process::{Process, ProcessBuilder, free_port};
pub use proxy::RpcProxy;
pub use services::{Api, HealthView, Indexer, get_json, get_text, indexer_process};
pub use sse::{SseEvent, SseReader};
pub use stack::{Database, SOON, Stack, demo_contracts, wait_synced};
pub use tempfile::{TempDir, tempdir};
pub use tidemark_db_client::test_utils::wait::{POLL, eventually};
pub use tidemark_db_client::test_utils::{TestDb, TestRole};
pub use tls::TestCa;
pub use webhook::{Outcome, Received, WebhookFaults, WebhookReceiver, item_cursor};
