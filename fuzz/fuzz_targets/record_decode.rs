//! Fuzz target: one frame of the log's record format: `decode` never panics or
//! reads past its input, and what it accepts survives `encode` unchanged.
//! The check is `pubq::fuzzing`'s, which `cargo test` also runs over the
//! committed corpus (`tests/crash/fuzz_corpus.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pubq::fuzzing::record_decode(data);
});
