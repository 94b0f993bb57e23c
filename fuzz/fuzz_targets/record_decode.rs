//! Fuzz target: one frame of the log's record format. `decode` must never
//! panic or read past its input, and whatever it accepts must survive a
//! round trip through `encode` unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pubq::storage::record;

fuzz_target!(|data: &[u8]| {
    if let Ok((rec, used)) = record::decode(data) {
        assert!(used > record::FRAME_HEADER && used <= data.len());
        let mut again = Vec::new();
        record::encode(&rec, &mut again);
        let (back, n) = record::decode(&again).expect("an encoded record decodes");
        assert_eq!(n, again.len());
        assert_eq!(back, rec);
    }
});
