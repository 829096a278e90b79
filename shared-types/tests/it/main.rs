//! Tests of the shared JSON contract (DESIGN §2–§4):
//!
//! - `fixtures`: golden files in `tests/fixtures` round-trip exactly, and the snapshots in
//!   `tests/fixtures/invalid` are rejected with an error naming the broken invariant;
//! - `unknown_fields`: readers ignore JSON fields they do not know;
//! - `status_props`: property tests of the status derivation and the realtime projection;
//! - `compat_props`: property tests of the compatibility rules.

mod compat_props;
mod fixtures;
mod generators;
mod status_props;
mod unknown_fields;
