//! Fuzz target: a publish body carried through a hub (filters of both scopes, a
//! FIFO queue) and back out of a receive, acked.
//! The check is `pubq::fuzzing`'s, which `cargo test` also runs over the
//! committed corpus (`tests/crash/fuzz_corpus.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pubq::fuzzing::publish(data);
});
