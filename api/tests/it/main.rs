//! tidemark-api integration tests: the real router (in-process) and the real binary
//! against a real PostgreSQL, a fresh database per test.
//!
//! - `clock`: verdicts on the database clock, with the binary's clock skewed by libfaketime;
//! - `lifecycle`: health and status as the database and the instance come and go;
//! - `events`: `/v1/events` filters, pagination, validation, finality;
//! - `epochs`: `/v1/epochs` pagination, filters, validation, and `/status`'s `epochs`;
//! - `fuzz`: random requests never get a 5xx or a panic;
//! - `limits`: load shedding, timeouts, slow and idle connections, caps, CORS, the URL file;
//! - `process`: the binary's exit codes, signals and config transitions;
//! - `surface`: JSON 404/405, OpenAPI, metrics, CORS, no dependency on the indexer;
//! - `support`: the helpers (an in-process API, the binary as a child process).

mod clock;
mod epochs;
mod events;
mod fuzz;
mod lifecycle;
mod limits;
mod process;
mod stream;
mod support;
mod surface;
mod tls;
