//! Test fixtures: a fresh, uniquely named database per test on the server named by
//! `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`).
//!
//! A test that cannot reach PostgreSQL fails with a clear message; it never skips.
//!
//! [`fixtures`] writes what an indexer would (configs, snapshots, events) so that
//! readers can be tested without one, and [`metadata`] reads and writes the metadata rows; [`proxy`] puts a TCP proxy that a test can switch
//! off and on between a client and the server; [`cluster`] starts a private PostgreSQL
//! that a test may stop or configure; [`ca`] makes a certificate authority and server
//! certificates for TLS tests.

pub mod alloc;
pub mod ca;
pub mod cluster;
pub mod fixtures;
pub mod freeze;
pub mod metadata;
pub mod plans;
pub mod proxy;
pub mod wait;

pub use ca::TestCa;
pub use cluster::{PgOptions, PrivatePg};
pub use wait::{eventually, free_port};

use std::sync::atomic::{AtomicU32, Ordering};

use diesel_async::RunQueryDsl;

use crate::tls::establish;

/// The server tests use.
pub fn server_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// `url` with its database name replaced by `db`, keeping credentials and parameters.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[after_scheme..].find('/').map_or(base.len(), |i| after_scheme + i);
    let mut out = format!("{}/{db}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// `url` with its `host:port` replaced by `authority`, keeping credentials, database and
/// parameters.
pub fn with_authority(url: &str, authority: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[after_scheme..];
    let host_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let userinfo_end = rest[..host_end].rfind('@').map_or(0, |i| i + 1);
    format!("{}{}{authority}{}", &url[..after_scheme], &rest[..userinfo_end], &rest[host_end..])
}

/// `url` with the query parameter `key` set to `value` (replacing any earlier value), e.g.
/// `sslmode=require`.
pub fn with_param(url: &str, key: &str, value: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let prefix = format!("{key}=");
    let mut params: Vec<&str> =
        query.split('&').filter(|p| !p.is_empty() && !p.starts_with(&prefix)).collect();
    let pair = format!("{key}={value}");
    params.push(&pair);
    format!("{base}?{}", params.join("&"))
}

/// The `host:port` of `url` (port 5432 when none is given).
pub fn authority(url: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[after_scheme..];
    let host_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let host = &rest[rest[..host_end].rfind('@').map_or(0, |i| i + 1)..host_end];
    if host
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()) && !host.ends_with(']'))
    {
        host.to_owned()
    } else {
        format!("{host}:5432")
    }
}

/// `(all, encrypted)`: the sessions on `url`'s database whose `application_name` is
/// `application`, and how many of them use TLS (`pg_stat_ssl`).
///
/// # Panics
/// When the database cannot be queried.
pub async fn encrypted_sessions(url: &str, application: &str) -> (i64, i64) {
    let client = crate::tls::connect(url).await.unwrap_or_else(|e| panic!("session: {e}"));
    let row = client
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.datname = current_database() AND a.application_name = $1",
            &[&application],
        )
        .await
        .unwrap_or_else(|e| panic!("pg_stat_ssl: {e}"));
    (row.get(0), row.get(1))
}

/// A database created for one test and dropped (forcibly) when the value is dropped.
#[derive(Debug)]
pub struct TestDb {
    /// Name of the database.
    pub name: String,
    /// URL of the database.
    pub url: String,
    admin_url: String,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl TestDb {
    /// Creates a fresh database. Panics with a clear message when PostgreSQL is missing.
    pub async fn new() -> Self {
        let admin_url = server_url();
        let name = format!(
            "tidemark_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        );
        let mut conn = tokio::time::timeout(std::time::Duration::from_secs(10), establish(&admin_url))
            .await
            .unwrap_or_else(|_| panic!("PostgreSQL did not answer within 10 s at DATABASE_URL (tests need a real server; run deploy/test.sh)"))
            .unwrap_or_else(|e| panic!("cannot connect to PostgreSQL at DATABASE_URL: {e} (tests need a real server; run deploy/test.sh)"));
        diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        let url = with_database(&admin_url, &name);
        Self { name, url, admin_url }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop may run inside a runtime: do the async work on a thread of its own.
        let handle = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async move {
                if let Ok(mut conn) = establish(&admin_url).await {
                    let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                }
            });
        });
        let _ = handle.join();
    }
}

/// `url` with its user-info replaced by `user` (no password: for servers with trust
/// authentication), keeping host, database and parameters.
pub fn with_user(url: &str, user: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[after_scheme..];
    let host_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let userinfo_end = rest[..host_end].rfind('@').map_or(0, |i| i + 1);
    format!("{}{user}@{}", &url[..after_scheme], &rest[userinfo_end..])
}

/// A login role created for one test: a unique name, no superuser, no `CREATEROLE`, no
/// privileges beyond what `PUBLIC` has. When the value is dropped, whatever it owns or
/// was granted in the test database goes (`DROP OWNED`), then the role itself.
#[derive(Debug)]
pub struct TestRole {
    /// Name of the role (a plain identifier: no quoting needed).
    pub name: String,
    /// URL of the test database as this role (no password: trust authentication).
    pub url: String,
    db_url: String,
}

impl TestRole {
    /// Creates a role named `<prefix>_<pid>_<n>` (`prefix`: lowercase letters, digits,
    /// `_`) through `db_url`, a superuser's URL of the test database.
    ///
    /// # Panics
    /// When the role cannot be created.
    pub async fn new(db_url: &str, prefix: &str) -> Self {
        let name = format!("{prefix}_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        let mut conn =
            establish(db_url).await.unwrap_or_else(|e| panic!("connecting to create role {name}: {e}"));
        diesel::sql_query(format!("CREATE ROLE \"{name}\" LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB"))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("cannot create role {name}: {e}"));
        Self { url: with_user(db_url, &name), name, db_url: db_url.to_owned() }
    }
}

impl Drop for TestRole {
    fn drop(&mut self) {
        let (db_url, name) = (self.db_url.clone(), self.name.clone());
        // Drop may run inside a runtime: do the async work on a thread of its own.
        let handle = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async move {
                let drop_role = format!("DROP ROLE IF EXISTS \"{name}\"");
                if let Ok(mut conn) = establish(&db_url).await {
                    let _ = diesel::sql_query(format!("DROP OWNED BY \"{name}\" CASCADE"))
                        .execute(&mut conn)
                        .await;
                    let _ = diesel::sql_query(drop_role).execute(&mut conn).await;
                } else if let Ok(mut conn) = establish(&server_url()).await {
                    // The database is gone, and with it everything of the role in it.
                    let _ = diesel::sql_query(drop_role).execute(&mut conn).await;
                }
            });
        });
        let _ = handle.join();
    }
}

#[cfg(test)]
mod tests {
    use super::{authority, with_authority, with_database, with_param, with_user};

    #[test]
    fn sets_one_parameter() {
        assert_eq!(with_param("postgres://h/db", "sslmode", "require"), "postgres://h/db?sslmode=require");
        assert_eq!(
            with_param("postgres://h/db?sslmode=disable&x=1", "sslmode", "require"),
            "postgres://h/db?x=1&sslmode=require"
        );
    }

    #[test]
    fn replaces_only_the_database_name() {
        assert_eq!(
            with_database("postgres://u:p@h:5/postgres?sslmode=disable", "x"),
            "postgres://u:p@h:5/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    }

    #[test]
    fn replaces_only_the_authority() {
        assert_eq!(
            with_authority("postgres://u:p@h:5/db?x=1", "127.0.0.1:9"),
            "postgres://u:p@127.0.0.1:9/db?x=1"
        );
        assert_eq!(with_authority("postgres://h/db", "a:1"), "postgres://a:1/db");
        assert_eq!(authority("postgres://u@127.0.0.1:5433/db"), "127.0.0.1:5433");
        assert_eq!(authority("postgres://localhost/db"), "localhost:5432");
    }

    #[test]
    fn replaces_only_the_user() {
        assert_eq!(with_user("postgres://u:p@h:5/db?x=1", "r"), "postgres://r@h:5/db?x=1");
        assert_eq!(with_user("postgres://h/db", "r"), "postgres://r@h/db");
    }
}
