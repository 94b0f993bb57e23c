//! Crash tests of the real `pubq` binary: `kill_restart` kills the server
//! with SIGKILL at random moments under load and restarts it on the same data
//! directory, keeping a client-side ledger of what was acknowledged; and
//! `fuzz_corpus` runs the committed fuzz corpus of every target through its
//! check (`pubq::fuzzing`), so CI exercises it without a nightly toolchain. Its own test binary
//! (`cargo test --test crash`).

mod fuzz_corpus;
mod kill_restart;
mod ledger;
mod server;
