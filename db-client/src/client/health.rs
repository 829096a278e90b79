//! Health verdicts of a [`DbClient`](crate::DbClient).

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a reader is unhealthy, or what it warns about. Serialized as kebab-case codes
/// (`chain-stalled:<chainId>` for [`Reason::ChainStalled`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// Warning: the indexer reports this chain stalled — no progress while its head moved
    /// (`stalled` in the chain's status snapshot).
    ChainStalled(u64),
    /// Warning: the secondary indexes of `events` that a new instance builds after its
    /// first backfill are not all built yet (`indexBuild` of the status snapshot):
    /// filtered event pages are slower until they are.
    IndexesBuilding,
    /// Warning: sources added to an indexed chain (a compatible config change) are still
    /// backfilling (`sources` of their chain in the status snapshot): their older events
    /// are not all stored yet.
    BackfillingSources,
}

impl Reason {
    /// The code as served, e.g. `database-unreachable` or `chain-stalled:1`.
    pub fn code(self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Self::DatabaseUnreachable => "database-unreachable",
            Self::Uninitialized => "uninitialized",
            Self::NoStatus => "no-status",
            Self::Incompatible => "incompatible",
            Self::StatusStale => "status-stale",
            Self::IndexesBuilding => "indexes-building",
            Self::BackfillingSources => "backfilling-sources",
            Self::ChainStalled(id) => return Cow::Owned(format!("chain-stalled:{id}")),
        })
    }

    /// Parses a code as [`Reason::code`] writes it.
    pub fn from_code(code: &str) -> Option<Self> {
        Some(match code {
            "database-unreachable" => Self::DatabaseUnreachable,
            "uninitialized" => Self::Uninitialized,
            "no-status" => Self::NoStatus,
            "incompatible" => Self::Incompatible,
            "status-stale" => Self::StatusStale,
            "indexes-building" => Self::IndexesBuilding,
            "backfilling-sources" => Self::BackfillingSources,
            other => Self::ChainStalled(other.strip_prefix("chain-stalled:")?.parse().ok()?),
        })
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.code())
    }
}

impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.code())
    }
}

impl<'de> Deserialize<'de> for Reason {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = Cow::<str>::deserialize(d)?;
        Self::from_code(&code).ok_or_else(|| serde::de::Error::custom(format!("unknown reason {code:?}")))
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
            Reason::ChainStalled(8453),
            Reason::IndexesBuilding,
            Reason::BackfillingSources,
        ] {
            let json = serde_json::to_value(r).ok();
            assert_eq!(json, Some(serde_json::Value::from(r.code().into_owned())));
            assert_eq!(json.and_then(|j| serde_json::from_value::<Reason>(j).ok()), Some(r));
        }
        assert_eq!(Reason::ChainStalled(1).code(), "chain-stalled:1");
        assert_eq!(Reason::from_code("chain-stalled:x"), None);
    }
}
