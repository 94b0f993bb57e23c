//! Fuzz target: a record's type and payload, framed with the right length and
//! CRC-32C before decoding, so every input reaches the payload decoder.
//! The check is `pubq::fuzzing`'s, which `cargo test` also runs over the
//! committed corpus (`tests/crash/fuzz_corpus.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pubq::fuzzing::record_payload(data);
});
