//! The controller–agent protocol of dc-rootca.
//!
//! - [`message`]: what the two sides say, as serde types. Encoded with `rmp_serde::to_vec_named`
//!   (structs as maps), so a newer peer may add fields and an older one ignores them.
//! - [`phase`]: the update's phases and the state names operators know from sysinv.
//! - [`frame`]: length-delimited frames with a size limit, and the connection that sends and receives
//!   messages over them.
//! - [`tls`]: the mutual-TLS transport. The server learns the agent's subcloud name from its verified
//!   client certificate; the client pins the system CA.
//!
//! Every connection starts with the agent's [`message::Hello`], carrying [`PROTOCOL_VERSION`]; the
//! controller answers [`message::Welcome`] or an [`message::ErrorMessage`] and closes.

pub mod frame;
pub mod message;
pub mod options;
pub mod phase;
pub mod tls;

pub use frame::{Connection, FrameError, MAX_FRAME_LEN};
pub use message::*;
pub use options::{
    AlarmRestrictionType, DefaultInstanceAction, StorageApplyType, SubcloudOptions, WorkerApplyType,
};
pub use phase::{
    Phase, PhaseState, ROLLBACK_PAST_POINT_OF_NO_RETURN, ROLLING_BACK, STATE_ROLLBACK_FAILED,
    STATE_ROLLED_BACK, STATE_ROLLING_BACK,
};

/// The protocol version this build speaks. Bump it for any change an older peer cannot ignore.
pub const PROTOCOL_VERSION: u32 = 1;

/// The oldest peer version this build still understands.
pub const MIN_PROTOCOL_VERSION: u32 = 1;

/// Checks that a peer speaking `version` can talk to this build.
pub fn check_protocol_version(version: u32) -> Result<(), ErrorMessage> {
    if (MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&version) {
        Ok(())
    } else {
        Err(ErrorMessage::new(
            ErrorCode::IncompatibleProtocol,
            format!(
                "incompatible protocol version {version}: this side speaks versions {MIN_PROTOCOL_VERSION} to {PROTOCOL_VERSION}; upgrade the older of the two"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert!(check_protocol_version(PROTOCOL_VERSION).is_ok());
        let err = check_protocol_version(PROTOCOL_VERSION + 1).unwrap_err();
        assert_eq!(err.code, ErrorCode::IncompatibleProtocol);
        assert!(
            err.message.contains("incompatible protocol version 2"),
            "{}",
            err.message
        );
        assert!(check_protocol_version(0).is_err());
    }
}
