//! A writer audit (DESIGN §3 "One writer per instance", invariant 6): statement-level
//! triggers on the instance's data tables record, for every write that commits, the
//! backend that made it and whether that backend held the instance's writer lock at the
//! time. A fenced indexer never commits without the lock, so every row must say `true`.
//!
//! The audit lives in the test database's `public` schema, outside the instance; the
//! triggers go away with the instance schema (`reset`), and are installed again by
//! [`install`].

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

/// Advisory-lock class of the writer lock: `pg_advisory_lock(0x74646d01, hashtext(schema))`
/// (docs/database.md, "Single writer").
pub const WRITER_LOCK_CLASS: i64 = 0x7464_6d01;

/// Tables whose writes are audited.
pub const AUDITED_TABLES: [&str; 4] = ["events", "removals", "checkpoints", "blocks"];

#[derive(QueryableByName)]
struct N {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Installs (or re-installs) the audit triggers on `schema`'s data tables, which must exist.
///
/// # Errors
/// The database error.
pub async fn install(conn: &mut AsyncPgConnection, schema: &str) -> Result<(), diesel::result::Error> {
    let schema = valid_schema(schema)?;
    let mut sql = format!(
        "CREATE TABLE IF NOT EXISTS public.reliability_writer_audit (
            at timestamptz NOT NULL DEFAULT clock_timestamp(),
            pid int NOT NULL,
            tbl text NOT NULL,
            op text NOT NULL,
            holds_lock bool NOT NULL);
         CREATE OR REPLACE FUNCTION public.reliability_audit_write() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           INSERT INTO public.reliability_writer_audit (pid, tbl, op, holds_lock)
           VALUES (pg_backend_pid(), TG_TABLE_NAME, TG_OP, EXISTS (
             SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()
                AND classid = {WRITER_LOCK_CLASS}::oid AND objid = hashtext(TG_ARGV[0])::oid
                AND objsubid = 2 AND granted));
           RETURN NULL;
         END $$;"
    );
    for table in AUDITED_TABLES {
        sql.push_str(&format!(
            "DROP TRIGGER IF EXISTS reliability_audit ON \"{schema}\".\"{table}\";
             CREATE TRIGGER reliability_audit AFTER INSERT OR UPDATE OR DELETE ON \"{schema}\".\"{table}\"
               FOR EACH STATEMENT EXECUTE FUNCTION public.reliability_audit_write('{schema}');"
        ));
    }
    conn.batch_execute(&sql).await
}

/// `schema` when it is a valid instance schema name (so it can be pasted into DDL).
fn valid_schema(schema: &str) -> Result<&str, diesel::result::Error> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && schema.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !schema.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(schema)
    } else {
        Err(diesel::result::Error::QueryBuilderError(format!("invalid schema name {schema:?}").into()))
    }
}

/// Audited writes so far: `(total, without the lock)`.
///
/// # Errors
/// The database error.
pub async fn counts(conn: &mut AsyncPgConnection) -> Result<(i64, i64), diesel::result::Error> {
    let total: N = diesel::sql_query("SELECT count(*)::bigint AS n FROM public.reliability_writer_audit")
        .get_result(conn)
        .await?;
    let unfenced: N = diesel::sql_query(
        "SELECT count(*)::bigint AS n FROM public.reliability_writer_audit WHERE NOT holds_lock",
    )
    .get_result(conn)
    .await?;
    Ok((total.n, unfenced.n))
}

/// Backends holding the writer lock of `schema` right now.
///
/// # Errors
/// The database error.
pub async fn lock_holders(conn: &mut AsyncPgConnection, schema: &str) -> Result<i64, diesel::result::Error> {
    let row: N = diesel::sql_query(format!(
        "SELECT count(*)::bigint AS n FROM pg_locks WHERE locktype = 'advisory' AND granted
            AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
            AND classid = {WRITER_LOCK_CLASS}::oid AND objid = hashtext($1)::oid AND objsubid = 2"
    ))
    .bind::<Text, _>(schema)
    .get_result(conn)
    .await?;
    Ok(row.n)
}
