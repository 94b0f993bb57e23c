//! Fuzz target: a segment body decoded frame after frame, as recovery scans it.
//! The check is `pubq::fuzzing`'s, which `cargo test` also runs over the
//! committed corpus (`tests/crash/fuzz_corpus.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pubq::fuzzing::log_scan(data);
});
