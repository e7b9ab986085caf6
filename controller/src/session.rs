//! Agent connections: a listener that runs the mutual-TLS handshake, and one session actor per
//! connection, bound to the subcloud named by the verified certificate.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix::io::{FramedWrite, WriteHandler};
use actix::{
    Actor, ActorContext, ActorFutureExt, Addr, AsyncContext, Context, Handler, Message,
    StreamHandler, WrapFuture,
};
use bytes::{Bytes, BytesMut};
use dc_protocol::tls::AgentAcceptor;
use dc_protocol::{AgentMessage, ControllerMessage, ErrorCode, ErrorMessage, Welcome, frame};
use tokio::io::WriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

use crate::orchestrator::{AgentHello, AgentSaid, Orchestrator, SessionClosed};

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

/// One agent connection.
pub struct Session {
    id: u64,
    subcloud: String,
    orchestrator: Addr<Orchestrator>,
    writer: FramedWrite<Bytes, WriteHalf<Stream>, LengthDelimitedCodec>,
    greeted: bool,
    closing: bool,
    last_seen: Instant,
    offline_after: Duration,
}

impl Session {
    /// Binds a handshaken connection to a new session actor.
    pub fn start(
        stream: Stream,
        subcloud: String,
        orchestrator: Addr<Orchestrator>,
        offline_after: Duration,
    ) -> Addr<Session> {
        Session::create(move |ctx| {
            let (read, write) = tokio::io::split(stream);
            ctx.add_stream(FramedRead::new(read, frame::codec()));
            Session {
                id: NEXT_SESSION.fetch_add(1, Ordering::Relaxed),
                subcloud,
                orchestrator,
                writer: FramedWrite::new(write, frame::codec(), ctx),
                greeted: false,
                closing: false,
                last_seen: Instant::now(),
                offline_after,
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
        let ask = self.orchestrator.send(AgentHello {
            subcloud: self.subcloud.clone(),
            session_id: self.id,
            session: ctx.address(),
        });
        // Nothing else is read until the orchestrator has bound (or refused) this session.
        ctx.wait(ask.into_actor(self).map(|res, act, _| match res {
            Ok(Ok(heartbeat_interval_secs)) => {
                act.greeted = true;
                act.send(&ControllerMessage::Welcome(Welcome {
                    controller_version: env!("CARGO_PKG_VERSION").to_owned(),
                    protocol_version: dc_protocol::PROTOCOL_VERSION,
                    heartbeat_interval_secs,
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
            self.orchestrator.do_send(SessionClosed {
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
            (true, message) => self.orchestrator.do_send(AgentSaid {
                subcloud: self.subcloud.clone(),
                session_id: self.id,
                message,
            }),
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

impl Handler<Close> for Session {
    type Result = ();

    fn handle(&mut self, msg: Close, _: &mut Context<Self>) {
        self.close(msg.0);
    }
}

/// Accepts agents until the task is dropped. A failed handshake is logged and costs no one else.
pub async fn accept_loop(
    listener: TcpListener,
    acceptor: AgentAcceptor,
    orchestrator: Addr<Orchestrator>,
    offline_after: Duration,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        tcp.set_nodelay(true).ok();
        let acceptor = acceptor.clone();
        let orchestrator = orchestrator.clone();
        actix_rt::spawn(async move {
            match acceptor.accept(tcp).await {
                Ok((stream, subcloud)) => {
                    tracing::debug!(%peer, %subcloud, "agent handshake done");
                    Session::start(stream, subcloud, orchestrator, offline_after);
                }
                Err(e) => tracing::warn!(%peer, error = %e, "agent handshake refused"),
            }
        });
    }
}
