//! `tidemark-api` binary: parses the settings and runs [`tidemark_api::server::serve`].

use std::process::ExitCode;
use std::time::Duration;

use tidemark_api::cli::Cli;
use tidemark_api::server::Exit;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::parse_args() {
        Ok(cli) => cli,
        Err(e) => {
            // Usage errors exit 2; --help and --version exit 0.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { Exit::InvalidConfig.code() } else { 0 });
        }
    };
    tidemark_service_kit::init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(target: "tidemark_api", error = %e, "cannot start the async runtime");
            return ExitCode::from(Exit::Runtime.code());
        }
    };
    let exit = runtime.block_on(tidemark_api::server::serve(cli));
    runtime.shutdown_timeout(Duration::from_secs(1));
    ExitCode::from(exit.code())
}
