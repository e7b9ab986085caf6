//! Length-delimited frames (a 4-byte big-endian length, then a MessagePack body) with a size limit.
//!
//! The limit is checked on the length header before any buffer is reserved, so a peer announcing a huge
//! frame costs nothing but the connection.

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// Largest frame either side accepts: 4 MiB, far above any message (a cert-file is a few KiB).
pub const MAX_FRAME_LEN: usize = 4 * 1024 * 1024;

/// Errors of the framed transport.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    #[error("message does not decode: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    #[error("message does not encode: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    #[error("message of {0} bytes exceeds the {MAX_FRAME_LEN}-byte frame limit")]
    TooLarge(usize),
}

/// The codec both sides use.
pub fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME_LEN)
        .new_codec()
}

/// Encodes a message body (structs as maps, so fields can be added later).
pub fn encode<M: Serialize>(message: &M) -> Result<Bytes, FrameError> {
    let body = rmp_serde::to_vec_named(message)?;
    if body.len() > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(body.len()));
    }
    Ok(Bytes::from(body))
}

/// Decodes a message body.
pub fn decode<M: DeserializeOwned>(body: &[u8]) -> Result<M, FrameError> {
    Ok(rmp_serde::from_slice(body)?)
}

/// A framed connection that sends `Out` messages and receives `In` messages.
pub struct Connection<S> {
    framed: Framed<S, LengthDelimitedCodec>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    pub fn new(stream: S) -> Self {
        Self {
            framed: Framed::new(stream, codec()),
        }
    }

    /// Sends one message.
    pub async fn send<M: Serialize>(&mut self, message: &M) -> Result<(), FrameError> {
        self.framed.send(encode(message)?).await?;
        Ok(())
    }

    /// Receives one message; `None` when the peer closed the connection cleanly.
    pub async fn recv<M: DeserializeOwned>(&mut self) -> Result<Option<M>, FrameError> {
        match self.framed.next().await {
            None => Ok(None),
            Some(frame) => Ok(Some(decode(&frame?)?)),
        }
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        self.framed.get_ref()
    }

    /// Splits into the framed stream for callers that drive reads and writes separately.
    pub fn into_inner(self) -> Framed<S, LengthDelimitedCodec> {
        self.framed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::*;
    use tokio::io::AsyncWriteExt;

    fn sample_messages() -> Vec<AgentMessage> {
        vec![
            AgentMessage::RenewCertificate {
                csr_pem: "CSR".into(),
            },
            AgentMessage::Hello(Hello {
                subcloud: "subcloud1".into(),
                agent_version: "0.1.0".into(),
                protocol_version: PROTOCOL_VERSION,
                capabilities: vec!["simulated".into()],
            }),
            AgentMessage::Heartbeat(Box::new(Heartbeat {
                sent_at: 1,
                host: HostFacts {
                    hostname: "controller-0".into(),
                    load_1m: 0.5,
                    ..HostFacts::default()
                },
                root_ca: Some(RootCaInfo {
                    subject: "CN=kubernetes".into(),
                    serial: "0a".into(),
                    not_before: 0,
                    not_after: 10,
                }),
                alarms: vec![Alarm {
                    id: ALARM_ROOT_CA_EXPIRED.into(),
                    entity: ROOT_CA_ALARM_ENTITY.into(),
                    severity: AlarmSeverity::Critical,
                    reason: "expired".into(),
                }],
                update: Some(UpdateStatus {
                    update_id: "u1".into(),
                    phase: Phase::PodsTrustBothCas,
                    state: "updating-pods-trust-both-cas".into(),
                    percent: 40,
                    run: RunState::Failed {
                        phase: Phase::PodsTrustBothCas,
                        reason: "timeout".into(),
                    },
                    last_seq: 7,
                    since: Some(5),
                    new_ca: None,
                    warnings: vec!["3 pods".into()],
                    rollback: false,
                }),
            })),
            AgentMessage::Progress(Progress {
                update_id: "u1".into(),
                seq: 3,
                phase: Phase::HostsTrustBothCas,
                host: Some("controller-1".into()),
                state: "updating-host-trust-both-cas".into(),
                phase_percent: 50,
                percent: 25,
                details: "host controller-1".into(),
            }),
            AgentMessage::PhaseResult(PhaseResult {
                update_id: "u1".into(),
                seq: 4,
                phase: Phase::Start,
                outcome: PhaseOutcome::Failed {
                    reason: "pod x not ready".into(),
                },
                state: "update-start-failed".into(),
                percent: 0,
                warnings: Vec::new(),
            }),
            AgentMessage::Stopped(Stopped {
                update_id: "u1".into(),
                seq: 9,
                next: Phase::HostsUpdateCerts,
            }),
            AgentMessage::Error(ErrorMessage::new(ErrorCode::Refused, "busy")),
        ]
    }

    #[tokio::test]
    async fn every_message_round_trips_through_frames() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let (mut tx, mut rx) = (Connection::new(a), Connection::new(b));
        let messages = sample_messages();
        for m in &messages {
            tx.send(m).await.unwrap();
        }
        let commands = vec![
            ControllerMessage::Welcome(Welcome {
                controller_version: "0.1.0".into(),
                protocol_version: 1,
                heartbeat_interval_secs: 10,
                heartbeat_acks: true,
                certificate_lifetime_secs: 0,
            }),
            ControllerMessage::HeartbeatAck,
            ControllerMessage::Certificate {
                cert_pem: "PEM".into(),
            },
            ControllerMessage::Command(Command::Start {
                update_id: "u1".into(),
                params: UpdateParams {
                    subject: Some("C=CA CN=x".into()),
                    expiry_date: Some("2030-01-01".into()),
                    cert_file: None,
                    proceed_with_stranded_pods: true,
                    options: crate::SubcloudOptions {
                        worker_apply_type: crate::WorkerApplyType::Serial,
                        max_parallel_workers: 3,
                        alarm_restriction_type: crate::AlarmRestrictionType::Strict,
                    },
                    rollback: true,
                },
            }),
            ControllerMessage::Command(Command::Abort {
                update_id: "u1".into(),
            }),
        ];
        for m in &commands {
            tx.send(m).await.unwrap();
        }
        drop(tx);
        for m in &messages {
            assert_eq!(&rx.recv::<AgentMessage>().await.unwrap().unwrap(), m);
        }
        for m in &commands {
            assert_eq!(&rx.recv::<ControllerMessage>().await.unwrap().unwrap(), m);
        }
        assert!(rx.recv::<AgentMessage>().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn oversized_frame_is_rejected_from_its_header() {
        let (mut a, b) = tokio::io::duplex(64);
        let mut rx = Connection::new(b);
        // Announce a 1 GiB frame and send nothing more: the reader must fail on the header alone,
        // without waiting for (or reserving room for) the body.
        a.write_all(&(1u32 << 30).to_be_bytes()).await.unwrap();
        let err = rx.recv::<AgentMessage>().await.unwrap_err();
        match err {
            FrameError::Io(e) => assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn oversized_message_is_refused_before_sending() {
        let (a, _b) = tokio::io::duplex(64);
        let mut tx = Connection::new(a);
        let huge = UpdateParams {
            cert_file: Some("x".repeat(MAX_FRAME_LEN + 1)),
            ..UpdateParams::default()
        };
        assert!(matches!(tx.send(&huge).await, Err(FrameError::TooLarge(_))));
    }

    #[tokio::test]
    async fn garbage_frame_is_an_error_not_a_panic() {
        let (mut a, b) = tokio::io::duplex(256);
        let mut rx = Connection::new(b);
        let garbage = [0xc1u8, 0xff, 0x00, 0x13, 0x37, 0x92];
        a.write_all(&(garbage.len() as u32).to_be_bytes())
            .await
            .unwrap();
        a.write_all(&garbage).await.unwrap();
        // A valid MessagePack map that is not any message.
        let other =
            rmp_serde::to_vec_named(&std::collections::BTreeMap::from([("type", "nonsense")]))
                .unwrap();
        a.write_all(&(other.len() as u32).to_be_bytes())
            .await
            .unwrap();
        a.write_all(&other).await.unwrap();
        assert!(matches!(
            rx.recv::<AgentMessage>().await,
            Err(FrameError::Decode(_))
        ));
        assert!(matches!(
            rx.recv::<AgentMessage>().await,
            Err(FrameError::Decode(_))
        ));
    }

    #[test]
    fn newer_peer_fields_are_ignored_and_missing_ones_defaulted() {
        // A Hello from a newer agent with an extra field, and one from an older agent without capabilities.
        #[derive(serde::Serialize)]
        struct NewerHello<'a> {
            r#type: &'a str,
            subcloud: &'a str,
            agent_version: &'a str,
            protocol_version: u32,
            capabilities: Vec<&'a str>,
            shiny_new_field: u64,
        }
        let body = rmp_serde::to_vec_named(&NewerHello {
            r#type: "hello",
            subcloud: "s",
            agent_version: "9",
            protocol_version: 1,
            capabilities: vec![],
            shiny_new_field: 42,
        })
        .unwrap();
        assert!(
            matches!(decode::<AgentMessage>(&body).unwrap(), AgentMessage::Hello(h) if h.subcloud == "s")
        );
        #[derive(serde::Serialize)]
        struct OlderHello<'a> {
            r#type: &'a str,
            subcloud: &'a str,
            agent_version: &'a str,
            protocol_version: u32,
        }
        let body = rmp_serde::to_vec_named(&OlderHello {
            r#type: "hello",
            subcloud: "s",
            agent_version: "0",
            protocol_version: 1,
        })
        .unwrap();
        assert!(
            matches!(decode::<AgentMessage>(&body).unwrap(), AgentMessage::Hello(h) if h.capabilities.is_empty())
        );
    }
}
