//! Fuzz target: a filter policy, attributes and a body (split by NUL bytes):
//! compile, compile again from the stored text, match.
//! The check is `pubq::fuzzing`'s, which `cargo test` also runs over the
//! committed corpus (`tests/crash/fuzz_corpus.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pubq::fuzzing::filter_policy(data);
});
