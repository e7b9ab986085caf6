//! The byte stream a peer sends, cut into frames by the codec both sides use and decoded as either
//! side's messages: no panic, no frame above the limit, and every message that decodes survives an
//! encode and decode unchanged (see `message`).
#![no_main]

use bytes::BytesMut;
use dc_protocol::frame::{self, codec};
use dc_protocol::{AgentMessage, ControllerMessage, MAX_FRAME_LEN};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

#[path = "common/roundtrip.rs"]
mod roundtrip;

fuzz_target!(|data: &[u8]| {
    let mut codec = codec();
    let mut buffer = BytesMut::from(data);
    // As the connection reads: frames until the buffer holds no complete one, then end of stream.
    loop {
        match codec.decode(&mut buffer) {
            Ok(Some(body)) => {
                assert!(body.len() <= MAX_FRAME_LEN);
                if let Ok(m) = frame::decode::<AgentMessage>(&body) {
                    roundtrip::check(&m);
                }
                if let Ok(m) = frame::decode::<ControllerMessage>(&body) {
                    roundtrip::check(&m);
                }
            }
            Ok(None) => break,
            // A frame header above the limit: the connection is dropped.
            Err(_) => return,
        }
    }
    let _ = codec.decode_eof(&mut buffer);
});
