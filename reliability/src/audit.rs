//! A writer audit (DESIGN §3 "One writer per instance", invariant 6): statement-level
//! triggers on the instance's data tables (events, journal, window, checkpoints, epochs)
//! and on `tidemark.metadata` (config and status snapshot) record, for every write that commits, the
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

/// Instance tables whose writes are audited (and `tidemark.metadata`).
pub const AUDITED_TABLES: [&str; 5] = ["events", "removals", "checkpoints", "blocks", "epochs"];

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
         ALTER TABLE public.reliability_writer_audit ADD COLUMN IF NOT EXISTS app text;
         CREATE OR REPLACE FUNCTION public.reliability_audit_write() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           INSERT INTO public.reliability_writer_audit (pid, tbl, op, holds_lock, app)
           VALUES (pg_backend_pid(), TG_TABLE_NAME, TG_OP, EXISTS (
             SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()
                AND classid = {WRITER_LOCK_CLASS}::oid AND objid = hashtext(TG_ARGV[0])::oid
                AND objsubid = 2 AND granted), current_setting('application_name'));
           RETURN NULL;
         END $$;"
    );
    let tables =
        AUDITED_TABLES.iter().map(|t| format!("\"{schema}\".\"{t}\"")).chain(["tidemark.metadata".into()]);
    for table in tables {
        sql.push_str(&format!(
            "DROP TRIGGER IF EXISTS reliability_audit ON {table};
             CREATE TRIGGER reliability_audit AFTER INSERT OR UPDATE OR DELETE ON {table}
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

#[derive(QueryableByName)]
struct Pid {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pid: i32,
}

/// The backend holding the writer lock of `schema` right now, if any.
///
/// # Errors
/// The database error.
pub async fn lock_holder(
    conn: &mut AsyncPgConnection,
    schema: &str,
) -> Result<Option<i32>, diesel::result::Error> {
    let rows: Vec<Pid> = diesel::sql_query(format!(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
            AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
            AND classid = {WRITER_LOCK_CLASS}::oid AND objid = hashtext($1)::oid AND objsubid = 2"
    ))
    .bind::<Text, _>(schema)
    .get_results(conn)
    .await?;
    Ok(rows.into_iter().next().map(|r| r.pid))
}

/// Audited writes committed after `since` (a timestamp, as PostgreSQL prints it):
/// `(writes, those by backends other than `holder`, their tables)`.
///
/// # Errors
/// The database error.
pub async fn writes_by_others_since(
    conn: &mut AsyncPgConnection,
    holder: i32,
    since: &str,
) -> Result<(i64, i64, String), diesel::result::Error> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        total: i64,
        #[diesel(sql_type = BigInt)]
        others: i64,
        #[diesel(sql_type = Text)]
        tables: String,
    }
    let row: Row = diesel::sql_query(
        "SELECT count(*)::bigint AS total, count(*) FILTER (WHERE pid <> $1)::bigint AS others,
                coalesce(string_agg(DISTINCT tbl, ',') FILTER (WHERE pid <> $1), '') AS tables
           FROM public.reliability_writer_audit WHERE at > $2::timestamptz",
    )
    .bind::<diesel::sql_types::Integer, _>(holder)
    .bind::<Text, _>(since)
    .get_result(conn)
    .await?;
    Ok((row.total, row.others, row.tables))
}
