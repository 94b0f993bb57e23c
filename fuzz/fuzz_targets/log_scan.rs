//! Fuzz target: a segment body decoded frame after frame, as recovery scans
//! it. The scan must stop at the first bad frame without panicking, each
//! offset must move forward within the input, and re-encoding the decoded
//! records must give frames that decode to the same records.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pubq::storage::record;

fuzz_target!(|data: &[u8]| {
    let mut off = 0;
    let mut records = Vec::new();
    while off < data.len() {
        match record::decode(&data[off..]) {
            Ok((rec, used)) => {
                assert!(used > record::FRAME_HEADER && off + used <= data.len());
                off += used;
                records.push(rec);
            }
            Err(_) => break,
        }
    }
    let mut again = Vec::new();
    for r in &records {
        record::encode(r, &mut again);
    }
    let mut off = 0;
    for r in &records {
        let (back, used) = record::decode(&again[off..]).expect("an encoded record decodes");
        assert_eq!(&back, r);
        off += used;
    }
    assert_eq!(off, again.len());
});
