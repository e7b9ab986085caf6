//! The link to the controller: mutual TLS, Hello/Welcome, heartbeats, queued messages in order, and
//! commands passed to the update engine. A lost link is redialled with capped exponential backoff and
//! jitter; the update keeps running meanwhile.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use dc_protocol::frame::{decode, encode};
use dc_protocol::tls::{self, TlsError};
use dc_protocol::{
    AgentMessage, Command, ControllerMessage, ErrorCode, ErrorMessage, FrameError, Heartbeat,
    Hello, PROTOCOL_VERSION, RunState, UpdateStatus, check_protocol_version,
};
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::backend::Backend;
use crate::config::{AgentConfig, ReconnectConfig};
use crate::credentials::{Credentials, CredentialsError};
use crate::facts;
use crate::update::Updater;

/// Why a session with the controller ended.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    #[error("the controller closed the connection")]
    Closed,
    #[error("the controller refused the agent: {0}")]
    Refused(ErrorMessage),
    #[error("unexpected message from the controller: {0}")]
    Unexpected(String),
    #[error("no Welcome from the controller within {0} s")]
    NoWelcome(u64),
    #[error("no heartbeat acknowledged by the controller for {0:?}")]
    Silent(Duration),
    #[error("the controller took no message for {0:?}")]
    NotReading(Duration),
    #[error("certificate renewal: {0}")]
    Renewal(String),
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
}

/// How long the link may go without a word from the controller, or a write may wait for it to read:
/// three heartbeat periods. A live controller acknowledges every heartbeat, so this is two lost in a
/// row plus a period's slack, and a hung or vanished controller is redialled within seconds.
fn liveness_limit(heartbeat_period: Duration) -> Duration {
    heartbeat_period * 3
}

/// What crossed the link, with the instant it did, for an in-process observer: the benchmark measures
/// from it how long the controller takes to show an agent's progress.
#[derive(Debug, Clone)]
pub struct LinkEvent {
    pub subcloud: String,
    pub at: std::time::Instant,
    pub traffic: Traffic,
}

/// The direction and content of a [`LinkEvent`].
#[derive(Debug, Clone)]
pub enum Traffic {
    /// A queued message (progress, phase result, stopped) was written to the controller.
    Sent(Box<AgentMessage>),
    /// A command arrived from the controller.
    Received(Command),
}

/// Where an observed agent reports its [`LinkEvent`]s.
pub type LinkObserver = mpsc::UnboundedSender<LinkEvent>;

fn observe(observer: Option<&LinkObserver>, subcloud: &str, traffic: Traffic) {
    if let Some(observer) = observer {
        // The observer going away must not stop the agent.
        let _ = observer.send(LinkEvent {
            subcloud: subcloud.to_owned(),
            at: std::time::Instant::now(),
            traffic,
        });
    }
}

/// Capped exponential backoff with jitter.
#[derive(Debug)]
pub struct Backoff {
    config: ReconnectConfig,
    attempt: u32,
}

impl Backoff {
    pub fn new(config: ReconnectConfig) -> Self {
        Self { config, attempt: 0 }
    }

    /// The delay before the next attempt: `initial * 2^attempt`, capped at `max`, less a random share
    /// of up to `jitter`.
    pub fn next_delay(&mut self) -> Duration {
        let base = (self.config.initial_secs * 2f64.powi(self.attempt.min(30) as i32))
            .min(self.config.max_secs)
            .max(0.0);
        self.attempt = self.attempt.saturating_add(1);
        let jitter = self.config.jitter.clamp(0.0, 1.0) * random_unit();
        // A nonsensical configuration (NaN, infinite) falls back to the cap of the defaults.
        Duration::try_from_secs_f64(base * (1.0 - jitter)).unwrap_or(Duration::from_secs(30))
    }

    /// After a good session the next failure starts from the initial delay again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A number in [0, 1) from the standard library's randomly keyed hasher: enough to spread redials.
fn random_unit() -> f64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Keeps a link to the controller up for as long as the agent runs.
pub async fn maintain(
    config: &AgentConfig,
    mut credentials: Credentials,
    updater: &Updater<Backend>,
    commands: mpsc::Sender<Command>,
    observer: Option<&LinkObserver>,
) {
    let mut backoff = Backoff::new(config.reconnect.clone());
    let addresses = config.controller.all_addresses();
    let mut at = 0;
    loop {
        let Some(address) = addresses.get(at).copied() else {
            warn!("no controller address configured ([controller] address or addresses)");
            tokio::time::sleep(backoff.next_delay()).await;
            continue;
        };
        match session(
            config,
            address,
            &mut credentials,
            updater,
            &commands,
            &mut backoff,
            observer,
        )
        .await
        {
            Ok(()) => info!(%address, "controller link closed"),
            Err(LinkError::Refused(e)) if e.code == ErrorCode::NotLeader => {
                info!(%address, reason = %e.message, "not the leader: trying the next controller");
            }
            Err(e) => warn!(%address, error = %e, "controller link lost"),
        }
        let wrapped;
        (at, wrapped) = next_address(at, addresses.len());
        // Every address is tried once before the backoff: a standby costs no wait.
        if wrapped {
            let delay = backoff.next_delay();
            debug!(?delay, "redialling the controller");
            tokio::time::sleep(delay).await;
        }
    }
}

/// The address to dial after `at` among `n`, and whether the list starts over (then the backoff
/// applies). With one address, every redial starts over.
fn next_address(at: usize, n: usize) -> (usize, bool) {
    let next = at + 1;
    if next >= n { (0, true) } else { (next, false) }
}

async fn session(
    config: &AgentConfig,
    address: &str,
    credentials: &mut Credentials,
    updater: &Updater<Backend>,
    commands: &mpsc::Sender<Command>,
    backoff: &mut Backoff,
    observer: Option<&LinkObserver>,
) -> Result<(), LinkError> {
    let client = credentials.client_config()?;
    let deadline = config.controller.connect_timeout_secs.max(1);
    let greeted = tokio::time::timeout(Duration::from_secs(deadline), async {
        let stream = tls::connect(client, address, &config.controller.server_name).await?;
        let (mut sink, mut frames) = dc_protocol::Connection::new(stream).into_inner().split();
        sink.send(encode(&AgentMessage::Hello(Hello {
            subcloud: config.subcloud.clone(),
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            protocol_version: PROTOCOL_VERSION,
            capabilities: vec![
                "simulated".to_owned(),
                "cert-file".to_owned(),
                dc_protocol::HEARTBEAT_ACK.to_owned(),
                dc_protocol::ROLLBACK.to_owned(),
            ],
        }))?)
        .await?;
        let welcome = match frames.next().await {
            None => return Err(LinkError::Closed),
            Some(frame) => match decode::<ControllerMessage>(&frame?)? {
                ControllerMessage::Welcome(w) => w,
                ControllerMessage::Error(e) => return Err(LinkError::Refused(e)),
                other => return Err(LinkError::Unexpected(format!("{other:?} before Welcome"))),
            },
        };
        Ok((sink, frames, welcome))
    })
    .await;
    let (mut sink, mut frames, welcome) = greeted.map_err(|_| LinkError::NoWelcome(deadline))??;
    check_protocol_version(welcome.protocol_version).map_err(LinkError::Refused)?;
    info!(controller = %welcome.controller_version, "connected to the controller");
    backoff.reset();
    let journal = updater.journal();
    let period = Duration::from_secs(u64::from(welcome.heartbeat_interval_secs.max(1)));
    let limit = liveness_limit(period);
    // Only a controller that acknowledges heartbeats is expected to answer: silence is an ack overdue
    // by the limit since the oldest heartbeat it has not answered. Measured from a heartbeat sent, never
    // from a quiet spell, so facts slow to gather cannot pass for a dead controller.
    let acks = welcome.heartbeat_acks;
    let mut awaiting_ack: Option<tokio::time::Instant> = None;
    // A write that waits longer than the limit is to a controller that no longer reads.
    let send = async |sink: &mut _, message: &AgentMessage| -> Result<(), LinkError> {
        let frame = encode(message)?;
        tokio::time::timeout(limit, SinkExt::send(sink, frame))
            .await
            .map_err(|_| LinkError::NotReading(limit))?
            .map_err(LinkError::from)
    };
    // The heartbeat with the update status goes first, so the controller reconciles before any queued
    // result arrives; then whatever was queued while the link was down.
    let first = AgentMessage::Heartbeat(Box::new(heartbeat(config, updater).await));
    send(&mut sink, &first).await?;
    awaiting_ack = awaiting_ack.or(acks.then(tokio::time::Instant::now));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    // A change of the update's run state (stopped, failed, completed, resumed, taken over) is heartbeated
    // at once, after the messages queued with it (the journal saves, then queues, both without an await,
    // so the queue is drained first on the next turn): what the controller shows (sync status,
    // `subcloud show`) must not lag a heartbeat period behind an abort or a failure.
    // A certificate due for renewal is asked for at once and then checked at every heartbeat (a link
    // may stay up longer than a certificate lives); the key of the request waits for the answer.
    let lifetime = welcome.certificate_lifetime_secs;
    let mut renewing_with: Option<String> = None;
    let mut renewal_due = true;
    let mut status = journal.status();
    let mut reported_run = update_and_run(&status.borrow_and_update());
    let mut heartbeat_due = false;
    loop {
        // A message leaves the outbox only once written, so a link lost mid-send loses nothing.
        while let Some(message) = journal.outbox.front() {
            send(&mut sink, &message).await?;
            journal.outbox.pop();
            observe(observer, &config.subcloud, Traffic::Sent(Box::new(message)));
        }
        // Periodic or due to a run-state change, a heartbeat goes after the messages queued before it.
        if std::mem::take(&mut heartbeat_due) {
            let heartbeat = heartbeat(config, updater).await;
            reported_run = update_and_run(&heartbeat.update);
            send(&mut sink, &AgentMessage::Heartbeat(Box::new(heartbeat))).await?;
            awaiting_ack = awaiting_ack.or(acks.then(tokio::time::Instant::now));
        }
        if std::mem::take(&mut renewal_due)
            && renewing_with.is_none()
            && credentials.needs_renewal(lifetime, dc_certs::now())
        {
            let (csr_pem, key_pem) = dc_certs::pki::agent_request(&config.subcloud)
                .map_err(|e| LinkError::Renewal(e.to_string()))?;
            send(&mut sink, &AgentMessage::RenewCertificate { csr_pem }).await?;
            info!("certificate renewal requested");
            renewing_with = Some(key_pem);
        }
        tokio::select! {
            biased;
            frame = frames.next() => {
                let message = match frame {
                    None => return Ok(()),
                    Some(frame) => decode::<ControllerMessage>(&frame?)?,
                };
                awaiting_ack = None;
                match message {
                    ControllerMessage::HeartbeatAck => {}
                    ControllerMessage::Certificate { cert_pem } => {
                        let key_pem = renewing_with.take().ok_or_else(|| {
                            LinkError::Unexpected("a certificate nobody asked for".to_owned())
                        })?;
                        // A certificate that cannot be used is logged and asked for again later; the
                        // link and the current certificate stay.
                        match credentials.renewed(&config.subcloud, &cert_pem, &key_pem, lifetime) {
                            Ok(next) => {
                                *credentials = next;
                                info!("certificate renewed; redialling with it");
                                return Ok(());
                            }
                            Err(e) => {
                                warn!(error = %e, "renewed certificate not taken; keeping the current one");
                                credentials.defer_renewal(dc_certs::now());
                            }
                        }
                    }
                    ControllerMessage::CertificateRefused { reason } => {
                        renewing_with = None;
                        warn!(%reason, "the controller did not renew the certificate; keeping the current one");
                        credentials.defer_renewal(dc_certs::now());
                    }
                    ControllerMessage::Command(command) => {
                        debug!(?command, "command received");
                        observe(observer, &config.subcloud, Traffic::Received(command.clone()));
                        if commands.send(command).await.is_err() {
                            return Ok(());
                        }
                    }
                    ControllerMessage::Error(e) => return Err(LinkError::Refused(e)),
                    ControllerMessage::Welcome(_) => {
                        return Err(LinkError::Unexpected("a second Welcome".to_owned()));
                    }
                }
            }
            _ = ticker.tick() => {
                heartbeat_due = true;
                renewal_due = true;
            }
            () = tokio::time::sleep_until(awaiting_ack.unwrap_or_else(tokio::time::Instant::now) + limit), if awaiting_ack.is_some() => {
                return Err(LinkError::Silent(limit));
            }
            Ok(()) = status.changed() => {
                if update_and_run(&status.borrow_and_update()) != reported_run {
                    // Sent after the messages queued meanwhile, on the next turn.
                    heartbeat_due = true;
                }
            }
            () = journal.outbox.notify.notified() => {}
        }
    }
}

/// What makes a heartbeat due when it changes: the update's id (a take-over renames a running update)
/// and its run state.
fn update_and_run(status: &Option<UpdateStatus>) -> Option<(String, RunState)> {
    status
        .as_ref()
        .map(|s| (s.update_id.clone(), s.run.clone()))
}

async fn heartbeat(config: &AgentConfig, updater: &Updater<Backend>) -> Heartbeat {
    let now = dc_certs::now();
    let root_ca = facts::root_ca(updater.cluster()).await;
    Heartbeat {
        sent_at: now,
        host: facts::host_facts(),
        alarms: root_ca
            .as_ref()
            .map(|ca| facts::alarms(ca.not_after, now, config.root_ca_expiring_days))
            .unwrap_or_default(),
        root_ca: root_ca.as_ref().map(facts::root_ca_info),
        update: updater.journal().status().borrow().clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_address_is_tried_in_turn_and_the_backoff_applies_once_per_round() {
        assert_eq!(next_address(0, 3), (1, false));
        assert_eq!(next_address(1, 3), (2, false));
        assert_eq!(next_address(2, 3), (0, true));
        assert_eq!(next_address(0, 1), (0, true));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_below_the_delay() {
        let mut backoff = Backoff::new(ReconnectConfig {
            initial_secs: 0.5,
            max_secs: 30.0,
            jitter: 0.0,
        });
        let delays: Vec<f64> = (0..10)
            .map(|_| backoff.next_delay().as_secs_f64())
            .collect();
        assert_eq!(&delays[..4], &[0.5, 1.0, 2.0, 4.0]);
        assert_eq!(delays[9], 30.0);
        backoff.reset();
        assert_eq!(backoff.next_delay().as_secs_f64(), 0.5);
        let mut jittered = Backoff::new(ReconnectConfig {
            initial_secs: 8.0,
            max_secs: 8.0,
            jitter: 0.5,
        });
        for _ in 0..50 {
            let d = jittered.next_delay().as_secs_f64();
            assert!((4.0..=8.0).contains(&d), "{d}");
        }
    }
}
