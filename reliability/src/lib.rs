//! `tidemark-reliability`: the support code of Tidemark's reliability suite.
//!
//! The suite (`tests/it`) starts the real `tidemark-indexer` and `tidemark-api` binaries
//! against a real anvil and a real PostgreSQL, breaks things on purpose — `kill -9`, reorg
//! storms, frozen RPC nodes, stopped databases, incompatible configs, malformed input,
//! secrets in URLs — and checks that nothing is lost, duplicated, leaked or crashed.
//! Every scenario records what it tried and what it found into a [`summary`] table that
//! is printed when the test binary exits.
//!
//! This crate only observes from the outside, as an operator would: it drives processes,
//! HTTP endpoints, anvil and PostgreSQL, and never links the indexer or the API. It talks
//! to loopback addresses only, and must never be pointed at a real network or database.
//!
//! - [`Scale`]: `TIDEMARK_RELIABILITY=full|reduced` (reduced by default);
//! - [`PrivatePg`]: a throwaway PostgreSQL cluster the test may stop and start;
//! - [`audit`]: a trigger that records whether each write came from the lock holder;
//! - [`fuzz`]: random and malformed HTTP requests, and a raw HTTP/1.1 client;
//! - [`summary`]: the table of what was tried and found.
//!
//! The stack, the binaries under test (`TIDEMARK_INDEXER_BIN` / `TIDEMARK_API_BIN`) and the
//! comparison with the chain are `tidemark-testkit`'s (`Stack`, `bins`, `compare`).

pub mod audit;
pub mod fuzz;
mod scale;
pub mod summary;

pub use scale::{Scale, seed};
pub use tidemark_db_client::test_utils::PrivatePg;
