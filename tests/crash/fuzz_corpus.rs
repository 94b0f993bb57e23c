//! Runs every file of the committed fuzz corpus (`fuzz/corpus/<target>/`)
//! through its target's check, `pubq::fuzzing`, the very code the fuzz
//! targets call, so the corpus, and the crashes it once held, are checked on
//! every `cargo test` without a nightly toolchain.

use std::path::{Path, PathBuf};

use pubq::fuzzing::{Target, TARGETS};

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn corpus_files(target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join("corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs one file, naming it if the check panics.
fn run(t: &Target, file: &Path) -> bool {
    let data = std::fs::read(file).expect("read corpus file");
    std::panic::catch_unwind(|| (t.check)(&data))
        .unwrap_or_else(|_| panic!("{} fails on {}", t.name, file.display()))
}

/// Every file of a target's corpus passes its check, and some get past the
/// decoder's refusals (a corpus of refusals would test little).
fn replay(name: &str) {
    let t = TARGETS
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no target {name}"));
    let files = corpus_files(name);
    assert!(!files.is_empty(), "the corpus of {name} is missing");
    let accepted = files.iter().filter(|f| run(t, f)).count();
    assert!(accepted > 0, "no file of the {name} corpus is accepted");
}

#[test]
fn every_record_decode_corpus_file_decodes_or_is_refused_without_panic() {
    replay("record_decode");
}

#[test]
fn every_log_scan_corpus_file_scans_without_panic() {
    replay("log_scan");
}

#[test]
fn every_record_payload_corpus_file_decodes_or_is_refused_without_panic() {
    replay("record_payload");
}

#[test]
fn every_http_body_corpus_file_parses_or_is_a_client_error() {
    replay("http_body");
}

#[test]
fn every_publish_corpus_file_goes_through_a_hub_and_back_intact() {
    replay("publish");
}

#[test]
fn every_ws_frame_corpus_file_parses_or_is_refused_with_its_ref() {
    replay("ws_frame");
}

#[test]
fn every_filter_policy_corpus_file_compiles_the_same_twice_and_matches() {
    replay("filter_policy");
}

#[test]
fn every_config_file_corpus_file_resolves_and_declares_without_panic() {
    replay("config_file");
}

#[test]
fn every_auth_token_corpus_file_authenticates_or_is_a_401() {
    replay("auth_token");
}

#[test]
fn every_grant_pattern_corpus_file_matches_as_the_reference_glob() {
    replay("grant_pattern");
}

#[test]
fn every_receipt_corpus_file_has_one_text_form_and_forgeries_fail() {
    replay("receipt");
}

/// The targets of `fuzz/Cargo.toml`, the checks of `pubq::fuzzing` and the
/// corpus directories are the same list, so none is left unreplayed.
#[test]
fn every_fuzz_target_has_a_check_and_a_corpus() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz manifest");
    let mut bins: Vec<&str> = manifest
        .split("[[bin]]")
        .skip(1)
        .filter_map(|b| b.lines().find_map(|l| l.trim().strip_prefix("name = ")))
        .map(|n| n.trim_matches('"'))
        .collect();
    bins.sort_unstable();
    let mut checks: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
    checks.sort_unstable();
    assert_eq!(bins, checks);
    let mut dirs: Vec<String> = std::fs::read_dir(fuzz_dir().join("corpus"))
        .expect("fuzz/corpus")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort_unstable();
    assert_eq!(dirs, checks);
}
