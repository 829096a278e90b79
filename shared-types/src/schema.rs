//! Validated PostgreSQL schema names for per-instance tables.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a schema name was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid schema name {name:?}: {reason}")]
pub struct InvalidSchemaName {
    /// The rejected name.
    pub name: String,
    /// What rule it broke.
    pub reason: &'static str,
}

/// A schema name that matches `^[a-z_][a-z0-9_]{0,62}$` and is not reserved
/// (`pg_*`, `public`, `tidemark`, `information_schema`).
///
/// Invariant: a `SchemaName` is always safe to splice into SQL as a quoted identifier;
/// it can only be built through [`SchemaName::new`] (or deserialization, which validates).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SchemaName(String);

impl SchemaName {
    /// Validates `name`.
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidSchemaName> {
        let name = name.into();
        let reject = |reason| Err(InvalidSchemaName { name: name.clone(), reason });
        let mut chars = name.chars();
        match chars.next() {
            None => return reject("must not be empty"),
            Some(c) if !(c.is_ascii_lowercase() || c == '_') => {
                return reject("must start with a lowercase letter or '_'");
            }
            Some(_) => {}
        }
        if name.len() > 63 {
            return reject("must be at most 63 characters");
        }
        if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
            return reject("may contain only lowercase letters, digits and '_'");
        }
        if name.starts_with("pg_") {
            return reject("the pg_ prefix is reserved by PostgreSQL");
        }
        if matches!(name.as_str(), "public" | "tidemark" | "information_schema") {
            return reject("this schema is reserved");
        }
        Ok(Self(name))
    }

    /// The bare name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as a double-quoted SQL identifier (`"tidemark_demo"`).
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }
}

impl fmt::Display for SchemaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for SchemaName {
    type Error = InvalidSchemaName;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<SchemaName> for String {
    fn from(value: SchemaName) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names() {
        for ok in ["tidemark_demo", "_x", "a", &"a".repeat(63)] {
            assert!(SchemaName::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_bad_names() {
        for bad in
            ["", "Demo", "1abc", "a-b", "a b", "pg_x", "public", "tidemark", "x\"; drop", &"a".repeat(64)]
        {
            assert!(SchemaName::new(bad).is_err(), "{bad}");
        }
    }
}
