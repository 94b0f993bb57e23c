//! The connection layer between the listening socket and the router: the
//! accept loop (`accept.rs`), TLS with reload on SIGHUP (`tls.rs`), the
//! connection limits (`--max-connections`, `--header-timeout`,
//! `--tls-handshake-timeout`) and their counters (`stats.rs`), and
//! development certificates (`devcert.rs`). It knows HTTP only as far as
//! handing sockets to hyper; what a request means is `api`'s and `ws`'s.

mod accept;
pub mod devcert;
mod stats;
mod stream;
pub mod tls;

pub use accept::Endpoint;
pub use stats::{ConnEvent, ConnStats};
pub use tls::{Tls, TlsError};
