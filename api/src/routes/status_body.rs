//! The `/status` body ([`StatusBody`]) and its cache ([`StatusBodyCache`]): a body is
//! serialized once per second and set of cached values, whatever the request rate.

use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Bytes;
use tidemark_db_client::{EpochSummaries, Reason};
use tidemark_shared_types::{IndexingStatus, PublicConfig, RealtimeProjection};

/// `/status` body (shared with the indexer's HTTP server), reasons typed.
pub type StatusBody = tidemark_shared_types::StatusBody<Reason>;

/// What a successful `/status` body is made of. Two sets of parts with the same second,
/// the same cached values (by identity: the caches hand out a new `Arc` per value read)
/// and the same warnings serialize to the same body.
pub(crate) struct BodyParts {
    pub(crate) now: u64,
    pub(crate) config: Arc<PublicConfig>,
    pub(crate) status: Arc<IndexingStatus>,
    pub(crate) epochs: Option<Arc<EpochSummaries>>,
    pub(crate) warnings: Vec<Reason>,
}

impl BodyParts {
    fn same_as(&self, other: &Self) -> bool {
        self.now == other.now
            && Arc::ptr_eq(&self.config, &other.config)
            && Arc::ptr_eq(&self.status, &other.status)
            && match (&self.epochs, &other.epochs) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
            && self.warnings == other.warnings
    }

    fn serialize(&self) -> serde_json::Result<Bytes> {
        let body = StatusBody::ok(
            RealtimeProjection::project(IndexingStatus::clone(&self.status), self.now),
            PublicConfig::clone(&self.config),
            self.warnings.clone(),
            self.epochs.as_deref().cloned().unwrap_or_default(),
        );
        serde_json::to_vec(&body).map(Bytes::from)
    }
}

/// The last successful `/status` body, serialized once and served to every request of
/// the same second while the cached config, status, epoch summary and warnings are the
/// same values. The parts are held (not just their addresses), so a match is never a
/// reused allocation.
#[derive(Clone, Default)]
pub struct StatusBodyCache {
    last: Arc<Mutex<Option<(BodyParts, Bytes)>>>,
}

impl std::fmt::Debug for StatusBodyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusBodyCache").finish_non_exhaustive()
    }
}

impl StatusBodyCache {
    /// The body for `parts`: the cached one when it was built from the same parts,
    /// otherwise a new one (then cached).
    pub(crate) fn body(&self, parts: BodyParts) -> serde_json::Result<Bytes> {
        if let Some((cached, body)) = self.last.lock().unwrap_or_else(PoisonError::into_inner).as_ref()
            && cached.same_as(&parts)
        {
            return Ok(body.clone());
        }
        // Serialized outside the lock: concurrent misses each build the same body.
        let body = parts.serialize()?;
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some((parts, body.clone()));
        Ok(body)
    }
}
