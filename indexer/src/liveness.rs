//! What this process knows about itself, for its `/health`: its role for the instance
//! (starting, standby, writer) and when the database last answered.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use crate::progress::unix_now;

/// This process's role for the instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Role {
    /// Connecting, migrating, or between writer terms.
    Starting = 0,
    /// Another process holds the writer lock.
    Standby = 1,
    /// This process writes.
    Writer = 2,
}

/// Liveness facts shared with the HTTP server.
#[derive(Debug, Default)]
pub struct Liveness {
    db_ok_at: AtomicU64,
    role: AtomicU8,
}

impl Liveness {
    /// Records a successful database round-trip.
    pub fn db_ok(&self) {
        self.db_ok_at.store(unix_now(), Ordering::Relaxed);
    }

    /// Sets the role.
    pub fn set_role(&self, role: Role) {
        self.role.store(role as u8, Ordering::Relaxed);
    }

    /// The role's name as served.
    pub fn role(&self) -> &'static str {
        match self.role.load(Ordering::Relaxed) {
            1 => "standby",
            2 => "writer",
            _ => "starting",
        }
    }

    /// Whether the database answered within the last 10 s.
    pub fn db_reachable(&self) -> bool {
        unix_now().saturating_sub(self.db_ok_at.load(Ordering::Relaxed)) <= 10
    }
}
