//! Agent connections: a listener that runs the mutual-TLS handshake, and one session actor per
//! connection, bound to the subcloud named by the verified certificate.
//!
//! The session is the lowest actor of the controller: it imports no other. What it is sent
//! ([`ToAgent`], [`Close`], [`Route`]) is its own; what it reports upward ([`Hello`], [`Heartbeat`],
//! [`Closed`], and [`FromAgent`] for a step) goes through the recipients it was given ([`Upstream`]).
//! Once routed to a step, the agent's update messages go straight to that step, not through the
//! orchestrator.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix::io::{FramedWrite, WriteHandler};
use actix::{
    Actor, ActorContext, ActorFutureExt, Addr, AsyncContext, Context, Handler, Message, Recipient,
    StreamHandler, WrapFuture,
};
use bytes::{Bytes, BytesMut};
use dc_protocol::tls::{AgentAcceptor, AgentIdentity};
use dc_protocol::{AgentMessage, ControllerMessage, ErrorCode, ErrorMessage, Welcome, frame};
use tokio::io::WriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

type Stream = TlsStream<TcpStream>;

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// Send this message to the agent.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ToAgent(pub ControllerMessage);

/// Send this error, then close.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Close(pub ErrorMessage);

/// Deliver the agent's update messages (progress, phase results, stopped) to this step, or drop them
/// (`None`) when no step runs for the subcloud.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Route(pub Option<Recipient<FromAgent>>);

/// Upward: an agent said Hello on this session; answered with the session's terms or why it is refused.
#[derive(Message)]
#[rtype(result = "Result<Accepted, ErrorMessage>")]
pub struct Hello {
    pub subcloud: String,
    /// The agent certificate's `notBefore` (Unix seconds): one from before a revocation is refused.
    pub not_before: i64,
    pub session_id: u64,
    pub session: Addr<Session>,
    /// The agent said it can roll back ([`dc_protocol::ROLLBACK`]).
    pub can_roll_back: bool,
}

/// The answer to an accepted [`Hello`].
pub struct Accepted {
    /// Told to the agent in its Welcome.
    pub heartbeat_interval_secs: u32,
    /// The step running for the subcloud, if any: its update messages go there from the start.
    pub route: Option<Recipient<FromAgent>>,
}

/// Upward: may this session's agent have a renewed certificate? Refused (with the reason) unless the
/// subcloud is registered and this session is its live one.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct Renew {
    pub subcloud: String,
    pub session_id: u64,
}

/// How far ahead of now a renewed certificate is dated: certificates are ordered by their second of
/// issue, and the one it replaces may have been issued in this very second. Revocation marks reach as
/// far ahead, so one signed in the second of a deletion is revoked with it.
pub const RENEWAL_AHEAD_SECS: i64 = 1;

/// Signs a renewal for `subcloud`, dated [`RENEWAL_AHEAD_SECS`] ahead.
fn sign(
    renewal: &Renewal,
    subcloud: &str,
    csr_pem: &str,
) -> Result<String, dc_certs::pki::PkiError> {
    let issued = dc_certs::now() + RENEWAL_AHEAD_SECS;
    let lifetime = i64::try_from(renewal.lifetime.as_secs()).unwrap_or(i64::MAX);
    dc_certs::pki::sign_agent_request(
        &renewal.ca,
        subcloud,
        csr_pem,
        issued.saturating_add(lifetime),
        issued,
    )
}

/// Upward: a heartbeat of a greeted agent.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Heartbeat {
    pub subcloud: String,
    pub session_id: u64,
    pub heartbeat: dc_protocol::Heartbeat,
}

/// Upward: a greeted session ended.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Closed {
    pub subcloud: String,
    pub session_id: u64,
}

/// Upward, to the routed step: a progress, phase-result or stopped message from the agent.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FromAgent(pub AgentMessage);

/// Where a session reports.
#[derive(Clone)]
pub struct Upstream {
    pub hello: Recipient<Hello>,
    pub heartbeat: Recipient<Heartbeat>,
    pub closed: Recipient<Closed>,
    pub renew: Recipient<Renew>,
}

/// One agent connection.
pub struct Session {
    id: u64,
    subcloud: String,
    not_before: i64,
    upstream: Upstream,
    route: Option<Recipient<FromAgent>>,
    writer: FramedWrite<Bytes, WriteHalf<Stream>, LengthDelimitedCodec>,
    greeted: bool,
    /// The agent asked for a [`ControllerMessage::HeartbeatAck`] per heartbeat.
    heartbeat_acks: bool,
    closing: bool,
    last_seen: Instant,
    offline_after: Duration,
    renewal: Option<std::sync::Arc<Renewal>>,
    /// This session has asked for its renewal.
    renewed: bool,
}

impl Session {
    /// Binds a handshaken connection to a new session actor.
    pub fn start(
        stream: Stream,
        agent: AgentIdentity,
        upstream: Upstream,
        offline_after: Duration,
        renewal: Option<std::sync::Arc<Renewal>>,
    ) -> Addr<Session> {
        Session::create(move |ctx| {
            let (read, write) = tokio::io::split(stream);
            ctx.add_stream(FramedRead::new(read, frame::codec()));
            Session {
                id: NEXT_SESSION.fetch_add(1, Ordering::Relaxed),
                subcloud: agent.subcloud,
                not_before: agent.not_before,
                upstream,
                route: None,
                writer: FramedWrite::new(write, frame::codec(), ctx),
                greeted: false,
                heartbeat_acks: false,
                closing: false,
                last_seen: Instant::now(),
                offline_after,
                renewal,
                renewed: false,
            }
        })
    }

    fn send(&mut self, message: &ControllerMessage) {
        match frame::encode(message) {
            Ok(bytes) => self.writer.write(bytes),
            Err(e) => {
                tracing::error!(subcloud = %self.subcloud, error = %e, "cannot encode a message")
            }
        }
    }

    /// Sends the error and closes once it is written (the writer's end stops the actor).
    fn close(&mut self, error: ErrorMessage) {
        if self.closing {
            return;
        }
        self.closing = true;
        self.send(&ControllerMessage::Error(error));
        self.writer.close();
    }

    /// Signs the agent's request for the subcloud this session's certificate names. A request the
    /// controller cannot sign is refused and the session closed: the agent keeps its certificate.
    fn renew(&mut self, csr_pem: String, ctx: &mut Context<Self>) {
        let refuse = |act: &mut Self, reason: String| {
            tracing::warn!(subcloud = %act.subcloud, %reason, "agent certificate not renewed");
            act.send(&ControllerMessage::CertificateRefused { reason });
        };
        let Some(renewal) = self.renewal.clone() else {
            return refuse(
                self,
                "this controller does not renew agent certificates".to_owned(),
            );
        };
        if std::mem::replace(&mut self.renewed, true) {
            return refuse(self, "one renewal per connection".to_owned());
        }
        // Upstream decides whether this session still speaks for a registered subcloud: a renewal
        // queued behind the subcloud's deletion must not outlive it.
        let ask = self.upstream.renew.send(Renew {
            subcloud: self.subcloud.clone(),
            session_id: self.id,
        });
        ctx.wait(ask.into_actor(self).map(move |res, act, _| {
            match res.map_err(|e| e.to_string()).and_then(|r| r) {
                Ok(()) => match sign(&renewal, &act.subcloud, &csr_pem) {
                    Ok(cert_pem) => {
                        tracing::info!(subcloud = %act.subcloud, "agent certificate renewed");
                        act.send(&ControllerMessage::Certificate { cert_pem });
                    }
                    Err(e) => refuse(act, e.to_string()),
                },
                Err(reason) => refuse(act, reason),
            }
        }));
    }

    fn on_hello(&mut self, hello: dc_protocol::Hello, ctx: &mut Context<Self>) {
        if let Err(e) = dc_protocol::check_protocol_version(hello.protocol_version) {
            tracing::warn!(subcloud = %self.subcloud, error = %e, "agent refused");
            return self.close(e);
        }
        if hello.subcloud != self.subcloud {
            tracing::warn!(certificate = %self.subcloud, claimed = %hello.subcloud, "agent refused: Hello claims another subcloud");
            return self.close(ErrorMessage::new(
                ErrorCode::IdentityMismatch,
                format!(
                    "this certificate is for subcloud '{}', not '{}'",
                    self.subcloud, hello.subcloud
                ),
            ));
        }
        let acks = hello
            .capabilities
            .iter()
            .any(|c| c == dc_protocol::HEARTBEAT_ACK);
        let ask = self.upstream.hello.send(Hello {
            subcloud: self.subcloud.clone(),
            not_before: self.not_before,
            session_id: self.id,
            session: ctx.address(),
            can_roll_back: hello
                .capabilities
                .iter()
                .any(|c| c == dc_protocol::ROLLBACK),
        });
        // Nothing else is read until upstream has bound (or refused) this session.
        ctx.wait(ask.into_actor(self).map(move |res, act, _| match res {
            Ok(Ok(accepted)) => {
                act.greeted = true;
                act.heartbeat_acks = acks;
                act.route = accepted.route;
                act.send(&ControllerMessage::Welcome(Welcome {
                    controller_version: env!("CARGO_PKG_VERSION").to_owned(),
                    protocol_version: dc_protocol::PROTOCOL_VERSION,
                    heartbeat_interval_secs: accepted.heartbeat_interval_secs,
                    heartbeat_acks: acks,
                    certificate_lifetime_secs: act
                        .renewal
                        .as_ref()
                        .map_or(0, |r| r.lifetime.as_secs()),
                }));
            }
            Ok(Err(e)) => act.close(e),
            Err(e) => act.close(ErrorMessage::new(ErrorCode::Internal, e.to_string())),
        }));
    }
}

impl Actor for Session {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let every = (self.offline_after / 2).max(Duration::from_millis(100));
        ctx.run_interval(every, |act, ctx| {
            if act.last_seen.elapsed() > act.offline_after {
                tracing::warn!(subcloud = %act.subcloud, "no heartbeat; closing the session");
                ctx.stop();
            }
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        if self.greeted {
            self.upstream.closed.do_send(Closed {
                subcloud: self.subcloud.clone(),
                session_id: self.id,
            });
        }
    }
}

impl WriteHandler<io::Error> for Session {}

impl StreamHandler<Result<BytesMut, io::Error>> for Session {
    fn handle(&mut self, item: Result<BytesMut, io::Error>, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        let body = match item {
            Ok(body) => body,
            Err(e) => {
                tracing::info!(subcloud = %self.subcloud, error = %e, "agent connection failed");
                return ctx.stop();
            }
        };
        self.last_seen = Instant::now();
        let message: AgentMessage = match frame::decode(&body) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(subcloud = %self.subcloud, error = %e, "undecodable message");
                return self.close(ErrorMessage::new(ErrorCode::BadMessage, e.to_string()));
            }
        };
        match (self.greeted, message) {
            (false, AgentMessage::Hello(hello)) => self.on_hello(hello, ctx),
            (false, _) => self.close(ErrorMessage::new(
                ErrorCode::BadMessage,
                "the first message must be a Hello",
            )),
            (true, AgentMessage::Hello(_)) => {
                self.close(ErrorMessage::new(ErrorCode::BadMessage, "Hello sent twice"))
            }
            (true, AgentMessage::Error(e)) => {
                tracing::warn!(subcloud = %self.subcloud, error = %e, "agent reported an error");
            }
            (true, AgentMessage::Heartbeat(heartbeat)) => {
                if self.heartbeat_acks {
                    self.send(&ControllerMessage::HeartbeatAck);
                }
                self.upstream.heartbeat.do_send(Heartbeat {
                    subcloud: self.subcloud.clone(),
                    session_id: self.id,
                    heartbeat: *heartbeat,
                })
            }
            (true, AgentMessage::RenewCertificate { csr_pem }) => self.renew(csr_pem, ctx),
            (true, message) => match &self.route {
                Some(step) => step.do_send(FromAgent(message)),
                None => {
                    tracing::debug!(subcloud = %self.subcloud, "no step runs; update message dropped")
                }
            },
        }
    }
}

impl Handler<ToAgent> for Session {
    type Result = ();

    fn handle(&mut self, msg: ToAgent, _: &mut Context<Self>) {
        if !self.closing {
            self.send(&msg.0);
        }
    }
}

impl Handler<Route> for Session {
    type Result = ();

    fn handle(&mut self, msg: Route, _: &mut Context<Self>) {
        self.route = msg.0;
    }
}

impl Handler<Close> for Session {
    type Result = ();

    fn handle(&mut self, msg: Close, _: &mut Context<Self>) {
        self.close(msg.0);
    }
}

/// What the agent listener allows a connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A session without a heartbeat for this long is offline.
    pub offline_after: Duration,
    /// Longest time for the mutual-TLS handshake.
    pub handshake_timeout: Duration,
    /// Most handshakes in progress at once.
    pub max_handshakes: usize,
}

/// What every session of the listener shares.
#[derive(Clone)]
pub struct Terms {
    pub limits: Limits,
    /// Renewal of agent certificates, when the controller holds the system CA's key.
    pub renewal: Option<std::sync::Arc<Renewal>>,
}

/// What signs renewed agent certificates: the system CA and how long a renewed certificate lives.
pub struct Renewal {
    pub ca: dc_certs::CertifiedCa,
    pub lifetime: Duration,
}

/// The delay after consecutive accept errors: none after a success, then 5 ms doubling to 1 s. A failing
/// accept (no descriptors left) must not spin: it would starve the REST API sharing the descriptor
/// table and flood the log.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    failures: u32,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_secs(1);

    /// An accept failed: how long to wait before the next, and whether to log this one (the first of
    /// a run, then once the delay reaches its cap and every 60 failures after).
    pub fn failed(&mut self) -> (Duration, bool) {
        self.failures = self.failures.saturating_add(1);
        let delay = Self::FIRST
            .saturating_mul(1 << (self.failures - 1).min(16))
            .min(Self::MAX);
        let log = self.failures == 1 || (delay == Self::MAX && self.failures.is_multiple_of(60));
        (delay, log)
    }

    pub fn succeeded(&mut self) {
        self.failures = 0;
    }
}

/// Accepts agent connections until dropped: each handshake bounded in time and in number, accept
/// errors backed off.
pub async fn accept_loop(
    listener: TcpListener,
    acceptor: AgentAcceptor,
    upstream: Upstream,
    terms: Terms,
) {
    let limits = terms.limits;
    let handshakes = std::sync::Arc::new(tokio::sync::Semaphore::new(limits.max_handshakes));
    let mut backoff = AcceptBackoff::default();
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => {
                backoff.succeeded();
                c
            }
            Err(e) => {
                let (delay, log) = backoff.failed();
                if log {
                    tracing::warn!(error = %e, retry_in = ?delay, "accept failed");
                }
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many handshakes in progress; connection closed");
            continue;
        };
        tcp.set_nodelay(true).ok();
        dc_protocol::tls::keepalive(&tcp);
        let acceptor = acceptor.clone();
        let upstream = upstream.clone();
        let renewal = terms.renewal.clone();
        actix_rt::spawn(async move {
            let handshake = tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp));
            let result = handshake.await;
            drop(permit);
            match result {
                Ok(Ok((stream, agent))) => {
                    tracing::debug!(%peer, subcloud = %agent.subcloud, "agent handshake done");
                    Session::start(stream, agent, upstream, limits.offline_after, renewal);
                }
                Ok(Err(e)) => tracing::warn!(%peer, error = %e, "agent handshake refused"),
                Err(_) => tracing::warn!(%peer, "agent handshake timed out; connection closed"),
            }
        });
    }
}

/// What a standby tells every agent that reaches it.
pub const NOT_THE_LEADER: &str =
    "this controller is a standby: another controller leads; try the next address";

/// A standby's agent listener: every agent that completes its handshake and says Hello is answered
/// [`ErrorCode::NotLeader`] and closed, so it moves on to its next controller address. Answers the
/// listener when `leading` fires, for the leader's own accept loop on the same socket.
pub async fn refuse_as_standby(
    listener: TcpListener,
    acceptor: AgentAcceptor,
    handshake_timeout: Duration,
    mut leading: tokio::sync::oneshot::Receiver<()>,
) -> TcpListener {
    use futures::{SinkExt as _, StreamExt as _};
    loop {
        let tcp = tokio::select! {
            _ = &mut leading => return listener,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    tracing::warn!(error = %e, "standby: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        actix_rt::spawn(async move {
            let refused = tokio::time::timeout(handshake_timeout, async {
                let (stream, agent) = acceptor.accept(tcp).await.ok()?;
                let (mut sink, mut frames) =
                    dc_protocol::Connection::new(stream).into_inner().split();
                // The Hello first: an agent still writing it would see a reset, not the answer.
                frames.next().await?.ok()?;
                let answer = ControllerMessage::Error(ErrorMessage::new(
                    ErrorCode::NotLeader,
                    NOT_THE_LEADER,
                ));
                sink.send(frame::encode(&answer).ok()?).await.ok()?;
                sink.close().await.ok()?;
                Some(agent.subcloud)
            })
            .await;
            if let Ok(Some(subcloud)) = refused {
                tracing::debug!(%subcloud, "standby: agent told this controller does not lead");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_errors_back_off_to_a_second_and_are_logged_sparingly() {
        let mut b = AcceptBackoff::default();
        let runs: Vec<(Duration, bool)> = (0..300).map(|_| b.failed()).collect();
        assert_eq!(runs[0], (Duration::from_millis(5), true));
        assert_eq!(runs[1], (Duration::from_millis(10), false));
        assert_eq!(runs[8].0, Duration::from_millis(1000));
        assert!(runs.iter().all(|(d, _)| *d <= Duration::from_secs(1)));
        assert_eq!(runs.iter().filter(|(_, log)| *log).count(), 1 + 300 / 60);
        b.succeeded();
        assert_eq!(b.failed(), (Duration::from_millis(5), true));
    }
}
