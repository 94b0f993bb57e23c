//! Fuzz target: one WebSocket text frame from a client, and the answer to it.
//! The check is `pubq::fuzzing`'s, which `cargo test` also runs over the
//! committed corpus (`tests/crash/fuzz_corpus.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pubq::fuzzing::ws_frame(data);
});
