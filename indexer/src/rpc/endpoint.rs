//! One configured RPC endpoint and what is known of it: whether it serves the configured
//! chain (checked before use and again every minute), and when each kind of rejected
//! answer was last logged (at most once a minute per endpoint and kind).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use alloy::providers::RootProvider;

/// How long a usable endpoint is trusted before it is checked again.
const RECHECK_USABLE: Duration = Duration::from_secs(60);
/// How long an endpoint on another chain is left alone.
const RECHECK_UNUSABLE: Duration = Duration::from_secs(10);
/// At most one log line per endpoint and kind of rejected answer in this time.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// What is known of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Not checked yet.
    Unchecked,
    /// Serves the configured chain.
    Usable,
    /// Serves another chain: another chain id, or another hash for the anchor block.
    WrongChain(String),
    /// Serves the chain but lacks blocks the index already has (a fresh or lagging node).
    Behind(String),
    /// Did not answer the check.
    Unreachable(String),
}

impl Standing {
    /// Short label for health reports and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Unchecked => "unchecked",
            Self::Usable => "usable",
            Self::WrongChain(_) => "wrong-chain",
            Self::Behind(_) => "behind",
            Self::Unreachable(_) => "unreachable",
        }
    }
}

impl std::fmt::Display for Standing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::WrongChain(why) | Self::Behind(why) | Self::Unreachable(why) => {
                write!(f, "{}: {why}", self.label())
            }
            _ => f.write_str(self.label()),
        }
    }
}

struct State {
    standing: Standing,
    checked_at: Option<Instant>,
}

/// Lets one log line per kind through per minute, counting what it held back.
#[derive(Default)]
pub(super) struct Limiter {
    /// Per kind: when it was last logged and how many since.
    logged: Mutex<HashMap<&'static str, (Option<Instant>, u64)>>,
}

impl Limiter {
    /// Counts one event of `kind`; `Some(n)` (events since the last line) when a line is due.
    pub(super) fn note_rejection(&self, kind: &'static str) -> Option<u64> {
        let mut logged = self.logged.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let entry = logged.entry(kind).or_insert((None, 0));
        entry.1 += 1;
        if entry.0.is_none_or(|at| now.duration_since(at) >= LOG_EVERY) {
            let n = entry.1;
            *entry = (Some(now), 0);
            Some(n)
        } else {
            None
        }
    }
}

/// An endpoint: its client, its name in logs (`rpc[i]`, never the URL) and its standing.
pub(super) struct Endpoint {
    /// The client.
    pub(super) provider: RootProvider,
    /// `rpc[i]`.
    pub(super) label: String,
    state: Mutex<State>,
    limiter: Limiter,
}

impl Endpoint {
    /// An endpoint not checked yet.
    pub(super) fn new(provider: RootProvider, label: String) -> Self {
        let state = State { standing: Standing::Unchecked, checked_at: None };
        Self { provider, label, state: Mutex::new(state), limiter: Limiter::default() }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current standing.
    pub(super) fn standing(&self) -> Standing {
        self.state().standing.clone()
    }

    /// Whether the endpoint is due for a check before its next use. Unreachable endpoints,
    /// and those behind the index, are checked on every use: the check is about the
    /// request that would have been made (and a load balancer's next node may be current).
    pub(super) fn needs_check(&self) -> bool {
        let s = self.state();
        let age = s.checked_at.map(|t| t.elapsed());
        match &s.standing {
            Standing::Unchecked | Standing::Unreachable(_) | Standing::Behind(_) => true,
            Standing::Usable => age.is_none_or(|a| a >= RECHECK_USABLE),
            Standing::WrongChain(_) => age.is_none_or(|a| a >= RECHECK_UNUSABLE),
        }
    }

    /// Forgets the last check, so the next use checks again (e.g. a new anchor).
    pub(super) fn invalidate(&self) {
        let mut s = self.state();
        if s.standing == Standing::Usable {
            s.standing = Standing::Unchecked;
        }
        s.checked_at = None;
    }

    /// Records a check's outcome; returns the previous standing when it changed.
    pub(super) fn set(&self, standing: Standing) -> Option<Standing> {
        let mut s = self.state();
        s.checked_at = Some(Instant::now());
        if s.standing.label() == standing.label() {
            s.standing = standing;
            return None;
        }
        Some(std::mem::replace(&mut s.standing, standing))
    }

    /// Counts one rejected answer of `kind`; `Some(n)` (answers of that kind since the
    /// last line) when a log line is due.
    pub(super) fn note_rejection(&self, kind: &'static str) -> Option<u64> {
        self.limiter.note_rejection(kind)
    }
}
