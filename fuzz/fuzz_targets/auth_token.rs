//! Fuzz target: a token (API key or JWT, raw, signed claims, an `Authorization`
//! header, a `?token=` query).
//! The check is `pubq::fuzzing`'s, which `cargo test` also runs over the
//! committed corpus (`tests/crash/fuzz_corpus.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pubq::fuzzing::auth_token(data);
});
