//! TLS for PostgreSQL and for HTTPS clients, with rustls and its `ring` provider.
//!
//! [`PgConnector`] reads a `postgres://` / `postgresql://` URL (or a keyword/value string)
//! with libpq's TLS parameters — `sslmode` (`disable`, `allow`, `prefer` (default),
//! `require`, `verify-ca`, `verify-full`) and `sslrootcert` (a PEM file or `system`) —
//! and opens `tokio-postgres` clients or diesel-async connections with them. Channel
//! binding (SCRAM-SHA-256-PLUS) works over these connections.
//!
//! [`https_client_config`] is the rustls configuration for HTTPS clients (the indexer's
//! RPC): the platform's roots plus `SSL_CERT_FILE` / `SSL_CERT_DIR`.
//!
//! Nothing here logs or returns a URL or a password: errors name the parameter, the
//! `sslmode` and what failed.
//!
//! Public with the feature `writer` (the indexer's RPC, tests); readers get it through
//! the URL of their [`PoolConfig`](crate::PoolConfig).

#![cfg_attr(not(feature = "writer"), allow(unreachable_pub, dead_code, unused_imports))]

mod connect;
mod params;
mod provider;
mod roots;
mod settings;
mod verify;

pub use connect::{PgConnector, SocketTimeouts, TlsStream, connect, establish};
pub use provider::{crypto_provider, https_client_config, install_crypto_provider};
pub use roots::{pem_roots, system_roots};
pub use settings::{RootCert, SslMode, TlsError};
