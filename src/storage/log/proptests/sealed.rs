//! Any record survives the sealed encoding: with a keyring it decodes to
//! itself; a record holding user data is sealed (keyless decoding names
//! its key id) and the rest stays in clear.

use proptest::prelude::*;

use super::records::record;
use crate::storage::record::{self as rec, DecodeError};
use crate::storage::{KeyId, Keyring};

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_record_round_trips_sealed(r in record()) {
        let ring = Keyring::new((KeyId::new("k1").expect("valid id"), [3; 32]), [])
            .expect("keyring");
        let mut buf = Vec::new();
        rec::encode_with(&r, &mut buf, Some(&ring));
        let (back, used) = rec::decode_with(&buf, Some(&ring)).expect("decodes");
        prop_assert_eq!(used, buf.len());
        prop_assert_eq!(&back, &r);
        match rec::decode(&buf) {
            Err(DecodeError::UnknownKey(id)) => {
                prop_assert!(rec::holds_user_data(&r));
                prop_assert_eq!(id, "k1");
            }
            Ok((clear, _)) => {
                prop_assert!(!rec::holds_user_data(&r));
                prop_assert_eq!(clear, r);
            }
            Err(e) => prop_assert!(false, "unexpected {e}"),
        }
    }
}
