//! One frame body, as `frame::decode` gets it after the codec: decoded as an agent message and as a
//! controller message. No panic, and whatever decodes round-trips (decode(encode(m)) == m).
#![no_main]

use dc_protocol::frame;
use dc_protocol::{AgentMessage, ControllerMessage};
use libfuzzer_sys::fuzz_target;

#[path = "common/roundtrip.rs"]
mod roundtrip;

fuzz_target!(|body: &[u8]| {
    if let Ok(m) = frame::decode::<AgentMessage>(body) {
        roundtrip::check(&m);
    }
    if let Ok(m) = frame::decode::<ControllerMessage>(body) {
        roundtrip::check(&m);
    }
});
