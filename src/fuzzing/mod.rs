//! The checks behind the fuzz targets of `fuzz/`: one function per target,
//! taking the target's raw input, that must not panic on any input and that
//! asserts what its target promises (round trips, agreement with a reference).
//! They live in the library, not in the fuzz crate, so that `cargo test`
//! replays the committed corpus (`fuzz/corpus/<target>/`) through the very
//! same code without the nightly flags cargo-fuzz needs
//! (`tests/crash/fuzz_corpus.rs`). Not an API: hidden from the docs.
//!
//! Every function returns whether the input was accepted by the decoder it
//! aims at (so the replay can tell that the seeds reach past the refusals).

mod auth;
mod config;
mod filter;
mod http;
mod receipt;
mod record;
mod ws;

pub use auth::{auth_token, grant_pattern};
pub use config::config_file;
pub use filter::filter_policy;
pub use http::{http_body, publish};
pub use receipt::receipt;
pub use record::{log_scan, record_decode, record_payload};
pub use ws::ws_frame;

/// One fuzz target: its name in `fuzz/Cargo.toml` and its check.
#[derive(Clone, Copy)]
pub struct Target {
    pub name: &'static str,
    pub check: fn(&[u8]) -> bool,
}

/// Every target, in the order of `fuzz/README.md`.
pub const TARGETS: &[Target] = &[
    Target {
        name: "record_decode",
        check: record_decode,
    },
    Target {
        name: "record_payload",
        check: record_payload,
    },
    Target {
        name: "log_scan",
        check: log_scan,
    },
    Target {
        name: "http_body",
        check: http_body,
    },
    Target {
        name: "publish",
        check: publish,
    },
    Target {
        name: "ws_frame",
        check: ws_frame,
    },
    Target {
        name: "filter_policy",
        check: filter_policy,
    },
    Target {
        name: "config_file",
        check: config_file,
    },
    Target {
        name: "auth_token",
        check: auth_token,
    },
    Target {
        name: "grant_pattern",
        check: grant_pattern,
    },
    Target {
        name: "receipt",
        check: receipt,
    },
];

/// JSON equality that lets numbers differ in the last bit: serde_json
/// (without its `float_roundtrip` feature) may parse the shortest form of an
/// `f64` it printed one unit in the last place away.
fn json_close(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) if x.is_finite() && y.is_finite() => {
                x == y || (x - y).abs() <= 4.0 * f64::EPSILON * x.abs().max(y.abs())
            }
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_close(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_close(v, w)))
        }
        _ => a == b,
    }
}

/// A current-thread runtime for targets that drive a `Hub` (its queues
/// spawn timer tasks). One per input, so nothing carries over from one input
/// to the next; the hub's clock is a `ManualClock`, so no timer is due.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime builds")
}

/// The receipt codec of the targets: a fixed key, so an input that holds a
/// receipt stays valid from one run to the next.
fn codec() -> crate::api::receipt::ReceiptCodec {
    crate::api::receipt::ReceiptCodec::with_key(&[7; 32])
}
