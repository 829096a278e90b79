//! How hard the suite pushes: `TIDEMARK_RELIABILITY=full|reduced`.

/// The run's scale. `Reduced` (the default) is part of `cargo test --workspace` and must
/// stay within a few minutes on two cores; `Full` is the long run of `reliability/README.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Few iterations, short pauses.
    Reduced,
    /// The numbers of the issue: 20 crash points, 50 reorgs, 30 s outages, 50,000 requests.
    Full,
}

impl Scale {
    /// Reads `TIDEMARK_RELIABILITY` (`full` or `reduced`, default `reduced`).
    ///
    /// # Panics
    /// On any other value, so that a typo never silently runs the small suite.
    pub fn from_env() -> Self {
        match std::env::var("TIDEMARK_RELIABILITY").ok().as_deref().map(str::trim) {
            None | Some("") | Some("reduced") => Self::Reduced,
            Some("full") => Self::Full,
            Some(other) => panic!("TIDEMARK_RELIABILITY={other:?}: expected `full` or `reduced`"),
        }
    }

    /// `reduced` when reduced, `full` when full.
    pub fn pick<T>(self, reduced: T, full: T) -> T {
        match self {
            Self::Reduced => reduced,
            Self::Full => full,
        }
    }

    /// Whether this is the full run.
    pub fn is_full(self) -> bool {
        self == Self::Full
    }

    /// The name as written in `TIDEMARK_RELIABILITY`.
    pub fn name(self) -> &'static str {
        self.pick("reduced", "full")
    }
}

/// The random seed of a scenario: `TIDEMARK_RELIABILITY_SEED` when set (to replay a run),
/// else taken from the clock. Scenarios print it in their figures.
///
/// # Panics
/// When `TIDEMARK_RELIABILITY_SEED` is not a number.
pub fn seed() -> u64 {
    match std::env::var("TIDEMARK_RELIABILITY_SEED").ok().filter(|s| !s.trim().is_empty()) {
        Some(s) => {
            s.trim().parse().unwrap_or_else(|_| panic!("TIDEMARK_RELIABILITY_SEED={s:?} is not a number"))
        }
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    }
}
