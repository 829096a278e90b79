//! The events table as the indexer lays it out, read from PostgreSQL's catalog — never
//! written out by the bench — and copies of it for the raw `COPY` measurements.
//!
//! [`capture`] reads, while the real indexer backfills, which table of its schema the rows
//! go to (the largest one) and which indexes are maintained on it at that moment (with
//! the constraints they back). [`Layout::create_copy`] makes an empty table of the same
//! columns (`LIKE … INCLUDING ALL EXCLUDING INDEXES`) in another schema and adds those
//! constraints and indexes by their catalog definitions. So the raw `COPY` follows the
//! indexer's layout when it changes: other columns, other indexes, indexes built only
//! after the backfill, rows written to another table first.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio_postgres::Client;

/// One index of the table, as the catalog defines it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Index {
    pub(crate) name: String,
    /// `pg_get_indexdef`.
    pub(crate) def: String,
    /// The primary-key or unique constraint it backs: (name, `pg_get_constraintdef`).
    pub(crate) constraint: Option<(String, String)>,
}

impl Index {
    /// The statement that builds this index on `table` (an `ALTER TABLE … ADD CONSTRAINT`
    /// for a constraint's index).
    fn statement(&self, table: &str) -> anyhow::Result<String> {
        if let Some((name, def)) = &self.constraint {
            return Ok(format!("ALTER TABLE {table} ADD CONSTRAINT {} {def}", quote(name)));
        }
        // `CREATE [UNIQUE] INDEX name ON schema.table USING method (…) …`: keep all but the
        // table.
        let using =
            self.def.find(" USING ").with_context(|| format!("unexpected index definition {}", self.def))?;
        let unique = if self.def.starts_with("CREATE UNIQUE INDEX") { "UNIQUE " } else { "" };
        Ok(format!("CREATE {unique}INDEX {} ON {table}{}", quote(&self.name), &self.def[using..]))
    }
}

/// The table the indexer writes its rows to, and the indexes maintained on it.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// Schema-qualified name of the indexer's table.
    pub(crate) table: String,
    /// Its name without the schema.
    pub(crate) relname: String,
    pub(crate) indexes: Vec<Index>,
}

/// `"name"`, quoted for SQL.
pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The layout of the largest table of `schema` (the one the events go to), or `None` when
/// the schema holds no table yet.
pub(crate) async fn capture(client: &Client, schema: &str) -> anyhow::Result<Option<Layout>> {
    let Some(row) = client
        .query_opt(
            "SELECT c.oid::regclass::text, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relkind = 'r'
              ORDER BY pg_relation_size(c.oid) DESC, c.relname LIMIT 1",
            &[&schema],
        )
        .await?
    else {
        return Ok(None);
    };
    let (table, relname): (String, String) = (row.get(0), row.get(1));
    // Indexes that writes maintain (`indisready`; one being built concurrently is not yet).
    let rows = client
        .query(
            "SELECT i.relname::text, pg_get_indexdef(x.indexrelid), con.conname::text, pg_get_constraintdef(con.oid)
               FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
               LEFT JOIN pg_constraint con
                      ON con.conindid = x.indexrelid AND con.conrelid = x.indrelid AND con.contype IN ('p', 'u', 'x')
              WHERE x.indrelid = $1::text::regclass AND x.indisready
              ORDER BY con.contype NULLS LAST, i.relname",
            &[&table],
        )
        .await?;
    let indexes = rows
        .iter()
        .map(|r| Index {
            name: r.get(0),
            def: r.get(1),
            constraint: r.get::<_, Option<String>>(2).map(|name| (name, r.get(3))),
        })
        .collect();
    Ok(Some(Layout { table, relname, indexes }))
}

impl Layout {
    /// The indexes that back the primary key and unique constraints.
    pub(crate) fn constraints_only(&self) -> Layout {
        Layout {
            indexes: self.indexes.iter().filter(|i| i.constraint.is_some()).cloned().collect(),
            ..self.clone()
        }
    }

    /// The indexes of `self` that `other` lacks.
    pub(crate) fn missing_from(&self, other: &Layout) -> Vec<Index> {
        self.indexes.iter().filter(|i| !other.indexes.iter().any(|o| o.def == i.def)).cloned().collect()
    }

    /// `name, name, …` of the indexes, constraints marked.
    pub(crate) fn index_names(&self) -> String {
        let names: Vec<String> = self
            .indexes
            .iter()
            .map(|i| match &i.constraint {
                Some((_, def)) => format!("{} ({def})", i.name),
                None => i.name.clone(),
            })
            .collect();
        names.join(", ")
    }

    /// An empty table of the indexer's columns in the new schema `schema`, with the
    /// indexes of `self`; returns its qualified name. The indexer's table must still exist
    /// (its columns are copied with `LIKE`).
    pub(crate) async fn create_copy(&self, client: &Client, schema: &str) -> anyhow::Result<String> {
        let target = format!("{}.{}", quote(schema), quote(&self.relname));
        client
            .batch_execute(&format!(
                "CREATE SCHEMA {s}; CREATE TABLE {target} (LIKE {source} INCLUDING ALL EXCLUDING INDEXES)",
                s = quote(schema),
                source = self.table,
            ))
            .await
            .with_context(|| format!("copying the layout of {}", self.table))?;
        for index in &self.indexes {
            client.batch_execute(&index.statement(&target)?).await?;
        }
        // Layout 4 numbers event types in a table beside `events`: an empty one of its own.
        let types = self.table.rsplit_once('.').map(|(s, _)| format!("{s}.event_types"));
        if let Some(types) = types {
            let exists: bool =
                client.query_one("SELECT to_regclass($1) IS NOT NULL", &[&types]).await?.get(0);
            if exists {
                client
                    .batch_execute(&format!(
                        "CREATE TABLE {}.event_types (LIKE {types} INCLUDING ALL)",
                        quote(schema)
                    ))
                    .await?;
            }
        }
        Ok(target)
    }
}

/// Builds each of `indexes` on `table` in turn; the time of each.
pub(crate) async fn build_indexes(
    client: &Client,
    table: &str,
    indexes: &[Index],
) -> anyhow::Result<Vec<(String, Duration)>> {
    let mut out = Vec::new();
    for index in indexes {
        let statement = index.statement(table)?;
        let started = Instant::now();
        client.batch_execute(&statement).await.with_context(|| statement.clone())?;
        out.push((index.name.clone(), started.elapsed()));
    }
    Ok(out)
}

/// Sizes of a table after a backfill, in bytes.
#[derive(Debug, Clone)]
pub(crate) struct Sizes {
    pub(crate) rows: u64,
    /// The heap's main fork (`pg_relation_size`).
    pub(crate) heap: u64,
    /// TOAST, free space and visibility maps (`pg_table_size` − `pg_relation_size`).
    pub(crate) toast_and_maps: u64,
    /// Each index of the table (`pg_relation_size`), in the layout's order.
    pub(crate) indexes: Vec<(String, u64)>,
    /// All indexes (`pg_indexes_size`).
    pub(crate) all_indexes: u64,
    /// `pg_total_relation_size`.
    pub(crate) total: u64,
}

/// Rows and sizes of the layout's table and of each index it has now.
pub(crate) async fn sizes(client: &Client, layout: &Layout) -> anyhow::Result<Sizes> {
    let t = &layout.table;
    let row = client
        .query_one(
            &format!(
                "SELECT (SELECT count(*) FROM {t}), pg_relation_size($1::text::regclass),
                        pg_table_size($1::text::regclass) - pg_relation_size($1::text::regclass),
                        pg_indexes_size($1::text::regclass), pg_total_relation_size($1::text::regclass)"
            ),
            &[t],
        )
        .await?;
    let n = |i: usize| u64::try_from(row.get::<_, i64>(i)).unwrap_or(0);
    let rows = client
        .query(
            "SELECT i.relname::text, pg_relation_size(x.indexrelid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
              WHERE x.indrelid = $1::text::regclass",
            &[t],
        )
        .await?;
    let mut indexes: Vec<(String, u64)> =
        rows.iter().map(|r| (r.get(0), u64::try_from(r.get::<_, i64>(1)).unwrap_or(0))).collect();
    // In the layout's order (constraints first), then any other index.
    let rank = |name: &str| layout.indexes.iter().position(|i| i.name == name).unwrap_or(usize::MAX);
    indexes.sort_by(|a, b| (rank(&a.0), &a.0).cmp(&(rank(&b.0), &b.0)));
    if n(0) == 0 {
        bail!("{t} is empty");
    }
    Ok(Sizes { rows: n(0), heap: n(1), toast_and_maps: n(2), indexes, all_indexes: n(3), total: n(4) })
}
