//! The names of each event type, cached by the reader.
//!
//! Layout 4 stores a type's contract, event and signature once, in `event_types`, and
//! each `events` row its `type_id`. A page selects the ids and the reader supplies the
//! names from this cache: looking them up in SQL per returned row (a subquery) took more
//! of the server's time than the rest of the row together.
//!
//! Invariant: an entry is keyed by the OID of the `events` table the id was read with
//! (`tableoid`) and the id. Within one `events` table an id's names never change or go
//! away (the migration's contract for `event_types`), so an entry is never stale; a
//! dropped and recreated instance has a new `events` table, whose rows miss the old
//! entries and reload them. A page with an unknown key reloads the whole table once (it
//! holds one row per type: a few, read in one statement).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use diesel::QueryableByName;
use diesel::sql_types::{Integer, Nullable, Oid, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tidemark_shared_types::SchemaName;

use crate::error::Result;

/// A type's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Names {
    pub(crate) contract: String,
    pub(crate) event: String,
    pub(crate) signature: String,
}

/// The event types of one `events` table, by id.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    /// The OID of the `events` table these ids belong to (`None`: no table).
    table: Option<u32>,
    names: HashMap<i32, Names>,
}

impl Loaded {
    /// The names of type `id` of the `events` table `table`.
    pub(crate) fn get(&self, table: u32, id: i32) -> Option<&Names> {
        if self.table == Some(table) { self.names.get(&id) } else { None }
    }

    fn covers(&self, keys: &[(u32, i32)]) -> bool {
        keys.iter().all(|&(t, id)| self.get(t, id).is_some())
    }
}

/// The cache: the types of the `events` table last seen.
#[derive(Debug, Default)]
pub(crate) struct EventTypes {
    loaded: RwLock<Arc<Loaded>>,
}

#[derive(QueryableByName)]
struct TypeRow {
    #[diesel(sql_type = Nullable<Oid>)]
    events_table: Option<u32>,
    #[diesel(sql_type = Integer)]
    id: i32,
    #[diesel(sql_type = Text)]
    contract: String,
    #[diesel(sql_type = Text)]
    event: String,
    #[diesel(sql_type = Text)]
    signature: String,
}

impl EventTypes {
    /// Types that hold every `(events table OID, type id)` of `keys`: the cached ones, or
    /// the table read afresh on `conn` (counted in `queries`) when one is missing. A key
    /// still missing after the reload is left to the caller (an `events` row whose type
    /// is not stored, or an instance dropped meanwhile).
    pub(crate) async fn covering(
        &self,
        conn: &mut AsyncPgConnection,
        schema: &SchemaName,
        keys: &[(u32, i32)],
        queries: Option<&AtomicU64>,
    ) -> Result<Arc<Loaded>> {
        let cached = self.current();
        if cached.covers(keys) {
            return Ok(cached);
        }
        let s = schema.quoted();
        let sql = format!(
            "SELECT to_regclass($1)::oid AS events_table, id, contract, event, signature FROM {s}.event_types"
        );
        let rows: Vec<TypeRow> =
            diesel::sql_query(sql).bind::<Text, _>(format!("{s}.events")).load(conn).await?;
        if let Some(q) = queries {
            q.fetch_add(1, Ordering::Relaxed);
        }
        let table = rows.iter().find_map(|r| r.events_table);
        let names = rows
            .into_iter()
            .map(|r| (r.id, Names { contract: r.contract, event: r.event, signature: r.signature }))
            .collect();
        let loaded = Arc::new(Loaded { table, names });
        *self.loaded.write().unwrap_or_else(std::sync::PoisonError::into_inner) = loaded.clone();
        Ok(loaded)
    }

    fn current(&self) -> Arc<Loaded> {
        self.loaded.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_belongs_to_its_events_table() {
        let names = Names { contract: "Token".into(), event: "Transfer".into(), signature: "s".into() };
        let loaded = Loaded { table: Some(7), names: HashMap::from([(1, names.clone())]) };
        assert_eq!(loaded.get(7, 1), Some(&names));
        assert_eq!(loaded.get(8, 1), None, "a recreated events table has a new OID");
        assert_eq!(loaded.get(7, 2), None);
        assert!(loaded.covers(&[(7, 1), (7, 1)]));
        assert!(!loaded.covers(&[(7, 1), (8, 1)]));
        assert!(Loaded::default().covers(&[]));
    }
}
