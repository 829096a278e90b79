//! Health verdicts of a [`DbClient`](crate::DbClient).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a reader is unhealthy, or what it warns about. Serialized as kebab-case codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// The database has not answered recently (10 s by default).
    DatabaseUnreachable,
    /// The database answered but holds no public config for the instance (nothing was
    /// ever indexed, or the instance was reset).
    Uninitialized,
    /// A public config is cached but no status snapshot is.
    NoStatus,
    /// The stored status does not describe the cached config's chains.
    Incompatible,
    /// Warning: no new status snapshot for 30 s by the database clock (the indexer is
    /// probably down); stored data can still be served.
    StatusStale,
}

impl Reason {
    /// The code as served, e.g. `database-unreachable`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DatabaseUnreachable => "database-unreachable",
            Self::Uninitialized => "uninitialized",
            Self::NoStatus => "no-status",
            Self::Incompatible => "incompatible",
            Self::StatusStale => "status-stale",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The health of a reader: healthy iff the database answered recently, a public config
/// and a status snapshot are cached, and they are compatible.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    /// True when `reasons` is empty.
    pub healthy: bool,
    /// Why it is unhealthy (empty when healthy).
    pub reasons: Vec<Reason>,
    /// Conditions worth knowing that do not make it unhealthy (`status-stale`).
    pub warnings: Vec<Reason>,
}

impl Health {
    pub(crate) fn from_parts(reasons: Vec<Reason>, warnings: Vec<Reason>) -> Self {
        Self { healthy: reasons.is_empty(), reasons, warnings }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_kebab_case() {
        for r in [
            Reason::DatabaseUnreachable,
            Reason::Uninitialized,
            Reason::NoStatus,
            Reason::Incompatible,
            Reason::StatusStale,
        ] {
            assert_eq!(serde_json::to_value(r).ok(), Some(serde_json::Value::from(r.as_str())));
        }
    }
}
