//! The `pubq` binary: starts logging, parses the command line and hands over to
//! [`pubq::cli::run`]. Everything else lives in the library, where tests reach it.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// mimalloc instead of the system allocator: the server allocates per
/// message and per frame, and glibc's malloc was a fifth of its CPU time
/// under WebSocket fan-out (`docs/performance.md`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    // Logs go to stderr so stdout stays clean JSON lines. An unset or
    // unparsable PUBQ_LOG falls back to `info` rather than refusing to start.
    let filter = EnvFilter::try_from_env("PUBQ_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person watching, not for a captured log.
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    // clap prints its own usage errors and exits with 2 (0 for --help).
    let cli = pubq::cli::Cli::parse();
    match pubq::cli::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(pubq::cli::exit_code(&err))
        }
    }
}
