//! `tidemark-bench`: benchmarks of Tidemark against the physical limits of the machine
//! (RPC fetch rate, PostgreSQL bulk-write rate, API latency against a bare handler).
//!
//! The harness is not built yet. Until it is, this binary says so and fails, rather than
//! printing figures it did not measure.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "tidemark-bench: the benchmark harness is not implemented yet; no figures are produced. \
         See bench/README.md."
    );
    ExitCode::from(2)
}
