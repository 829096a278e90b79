//! `tidemark-service-kit`: what the indexer, the API and the traffic generator do the same
//! way — logging set-up ([`logging`]), SIGINT/SIGTERM to a cancellation token
//! ([`signals`]), the database pool's gauges ([`pool_metrics`]) and the exit codes
//! operators script against ([`Exit`]).

pub mod logging;
pub mod pool_metrics;
pub mod signals;

pub use logging::{LogFormat, init_logging};
pub use pool_metrics::record_pool_usage;
pub use signals::{cancel_on_signal, shutdown_signal};

/// How a Tidemark program ends; [`Exit::code`] is its exit status, the same for every
/// program (docs/operations.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Clean shutdown, e.g. on SIGINT/SIGTERM (0).
    Clean,
    /// Runtime failure (1).
    Runtime,
    /// Invalid configuration or arguments (2).
    InvalidConfig,
    /// The persisted public config is incompatible (3).
    Incompatible,
}

impl Exit {
    /// The process exit status.
    pub fn code(self) -> u8 {
        match self {
            Self::Clean => 0,
            Self::Runtime => 1,
            Self::InvalidConfig => 2,
            Self::Incompatible => 3,
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        Self::from(exit.code())
    }
}

/// Runs `main` on a new multi-threaded runtime (`worker_threads` or one per core) and
/// maps its outcome to the exit status: `Ok` is [`Exit::Clean`]; an error is logged
/// with its whole context chain and mapped by `classify`.
pub fn block_on<E: std::fmt::Display + std::fmt::Debug>(
    worker_threads: Option<usize>,
    main: impl std::future::Future<Output = Result<(), E>>,
    classify: impl FnOnce(&E) -> Exit,
) -> std::process::ExitCode {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = worker_threads {
        builder.worker_threads(n);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return Exit::Runtime.into();
        }
    };
    match runtime.block_on(main) {
        Ok(()) => Exit::Clean.into(),
        Err(e) => {
            let exit = classify(&e);
            tracing::error!(exit_code = exit.code(), "{e:#}");
            exit.into()
        }
    }
}
