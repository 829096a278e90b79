//! Acceptance tests of `tidemark-indexer` against a real anvil and a real PostgreSQL:
//! each test has its own database and chain and runs the real binary (or, in
//! `in_process`, the library's `run`), then compares what
//! it stored with what the chain says (`eth_getLogs`). DESIGN §9's invariants are named
//! where they are checked. Missing anvil or PostgreSQL fails the tests; nothing skips.

mod common;
mod config_changes;
mod crash;
mod deferred_indexes;
mod epochs;
mod events;
mod factory;
mod growing;
mod in_process;
mod lying_rpc;
mod multichain;
mod payloads;
mod pooler;
mod previous_build;
mod provider;
mod reorg;
mod secrets;
mod signatures;
mod sinks;
mod status;
mod tls;
mod webhooks;
mod writer;
mod writer_session;
