//! The log's record format (disk input): one frame, one payload framed with
//! the right length and checksum, and a segment body scanned as recovery
//! scans it.

use crate::storage::record;

/// `record_decode`: `decode` never panics or reads past its input, and what
/// it accepts survives a round trip through `encode` unchanged.
pub fn record_decode(data: &[u8]) -> bool {
    let Ok((rec, used)) = record::decode(data) else {
        return false;
    };
    assert!(used > record::FRAME_HEADER && used <= data.len());
    let mut again = Vec::new();
    record::encode(&rec, &mut again);
    let (back, n) = record::decode(&again).expect("an encoded record decodes");
    assert_eq!(n, again.len());
    assert_eq!(back, rec);
    true
}

/// `record_payload`: a type byte and payload, framed with the right length
/// and CRC-32C first, so every input reaches the payload decoder (random
/// bytes almost never carry a matching checksum).
pub fn record_payload(payload: &[u8]) -> bool {
    let Ok(len) = u32::try_from(payload.len()) else {
        return false;
    };
    let mut frame = Vec::with_capacity(payload.len() + record::FRAME_HEADER);
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    frame.extend_from_slice(payload);
    let accepted = record_decode(&frame);
    if accepted {
        let (_, used) = record::decode(&frame).expect("it was accepted");
        assert_eq!(used, frame.len());
    }
    accepted
}

/// `log_scan`: frames decoded one after another, as recovery does. The scan
/// stops at the first bad frame, offsets only move forward within the input,
/// and the records re-encode to frames that decode to the same records.
pub fn log_scan(data: &[u8]) -> bool {
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
    !records.is_empty()
}
