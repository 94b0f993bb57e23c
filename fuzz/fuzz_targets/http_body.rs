//! Fuzz target: an HTTP request body; the first byte picks the endpoint (publish,
//! queue and topic settings, receive, ack/nack/visibility, subscribe, redrive).
//! The check is `pubq::fuzzing`'s, which `cargo test` also runs over the
//! committed corpus (`tests/crash/fuzz_corpus.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pubq::fuzzing::http_body(data);
});
