//! The round-trip property of protocol messages, shared by the `frame` and `message` targets.

use std::fmt::Debug;

use dc_protocol::frame;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A decoded message encodes, decodes back to itself, and encodes to the same bytes again. (`m == m`
/// guards the equality: a heartbeat's `load_1m` may be NaN, which equals nothing, yet must still
/// re-encode to the same bytes.)
#[allow(clippy::eq_op)]
pub fn check<M: Serialize + DeserializeOwned + PartialEq + Debug>(m: &M) {
    let Ok(bytes) = frame::encode(m) else {
        // Only a message above the frame limit fails to encode, and the fuzzer's inputs are far smaller.
        panic!("a decoded message does not encode: {m:?}");
    };
    let again: M = frame::decode(&bytes).expect("an encoded message decodes");
    if m == m {
        assert_eq!(&again, m, "decode(encode(m)) != m");
    }
    let bytes_again = frame::encode(&again).expect("re-encodes");
    assert_eq!(bytes, bytes_again, "encoding is not stable");
}
