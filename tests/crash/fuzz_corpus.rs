//! Runs every file of the fuzz corpus (`fuzz/corpus/*/`) through the record
//! decoder as the fuzz targets do, so the corpus, and the crashes it once
//! held, are checked on every `cargo test` without a nightly toolchain.

use std::path::PathBuf;

use pubq::storage::record;

fn corpus_files(target: &str) -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// What `fuzz_targets/record_decode.rs` checks.
fn decode_one(data: &[u8]) -> bool {
    let Ok((rec, used)) = record::decode(data) else {
        return false;
    };
    assert!(used > record::FRAME_HEADER && used <= data.len());
    let mut again = Vec::new();
    record::encode(&rec, &mut again);
    let (back, n) = record::decode(&again).expect("an encoded record decodes");
    assert_eq!((n, &back), (again.len(), &rec));
    true
}

/// What `fuzz_targets/log_scan.rs` checks: frames decoded one after another.
fn scan(data: &[u8]) -> usize {
    let mut off = 0;
    let mut n = 0;
    while off < data.len() {
        match record::decode(&data[off..]) {
            Ok((_, used)) => {
                assert!(decode_one(&data[off..off + used]));
                off += used;
                n += 1;
            }
            Err(_) => break,
        }
    }
    n
}

#[test]
fn every_record_decode_corpus_file_decodes_or_is_refused_without_panic() {
    let files = corpus_files("record_decode");
    assert!(!files.is_empty(), "the corpus is missing");
    let decoded = files
        .iter()
        .filter(|p| decode_one(&std::fs::read(p).expect("read corpus file")))
        .count();
    assert!(decoded > 0, "no corpus file is a valid frame");
}

#[test]
fn every_log_scan_corpus_file_scans_without_panic() {
    let files = corpus_files("log_scan");
    assert!(!files.is_empty(), "the corpus is missing");
    let frames: usize = files
        .iter()
        .map(|p| scan(&std::fs::read(p).expect("read corpus file")))
        .sum();
    assert!(frames > 0, "no corpus file holds a valid frame");
}

#[test]
fn every_record_payload_corpus_file_decodes_or_is_refused_without_panic() {
    let files = corpus_files("record_payload");
    assert!(!files.is_empty(), "the corpus is missing");
    let decoded = files
        .iter()
        .filter(|p| {
            // What `fuzz_targets/record_payload.rs` does: frame it first.
            let payload = std::fs::read(p).expect("read corpus file");
            let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
            frame.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
            frame.extend_from_slice(&payload);
            decode_one(&frame)
        })
        .count();
    assert!(decoded > 0, "no corpus file is a valid payload");
}
