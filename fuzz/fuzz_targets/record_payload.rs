//! Fuzz target: a record's type and payload, framed with the right length
//! and checksum before decoding. Random bytes almost never carry a matching
//! CRC-32C, so `record_decode` spends most inputs on the checksum; this one
//! reaches the payload decoder with every input.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pubq::storage::record;

fuzz_target!(|payload: &[u8]| {
    let mut frame = Vec::with_capacity(payload.len() + record::FRAME_HEADER);
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    frame.extend_from_slice(payload);
    if let Ok((rec, used)) = record::decode(&frame) {
        assert_eq!(used, frame.len());
        let mut again = Vec::new();
        record::encode(&rec, &mut again);
        let (back, n) = record::decode(&again).expect("an encoded record decodes");
        assert_eq!(n, again.len());
        assert_eq!(back, rec);
    }
});
