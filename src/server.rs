//! Binding, running and draining the HTTP server. PLACEHOLDER.

use crate::config::ServerConfig;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Startup(String),
}

/// Runs the server until SIGINT/SIGTERM. Prints `listening on http://ADDR` on
/// stdout once bound (tests and scripts read the port from that line).
pub async fn run(config: ServerConfig) -> Result<(), ServerError> {
    let _ = config;
    Ok(())
}
