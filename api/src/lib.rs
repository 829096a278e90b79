//! `tidemark-api`: Tidemark's HTTP API (DESIGN §6).
//!
//! It serves the status, the public config and the indexed events of one instance, and
//! reads everything through [`tidemark_db_client::DbClient`] — from PostgreSQL only. It
//! never contacts the indexer (it has no setting naming the indexer's address), so it
//! keeps serving while the indexer restarts, upgrades or fails; and it never runs DDL.
//!
//! - [`app`] builds the router (testable in-process), [`run`] serves it on a listener
//!   until a shutdown token is cancelled;
//! - [`server::serve`] is the whole program behind `main`: settings, signals, exit codes
//!   (0 clean shutdown, 1 runtime failure, 2 invalid configuration or arguments, 3
//!   incompatible config transition);
//! - [`budget`] and [`listen`] keep it answering under load and abuse: a request budget
//!   with load shedding for the public routes, connection caps and timeouts
//!   ([`settings::HttpSettings`]);
//! - [`routes`] holds one module per route group; [`error::ApiError`] and the
//!   [`extract::Query`] extractor make every failure a JSON error.

pub mod budget;
pub mod cli;
pub mod clock;
pub mod error;
pub mod extract;
pub mod hub;
pub mod listen;
pub mod openapi;
pub mod response;
pub mod routes;
pub mod server;
pub mod settings;
pub mod state;
pub mod telemetry;

pub use server::{app, run};
pub use state::AppState;
