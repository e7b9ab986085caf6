//! The agent against a small fake controller over real mutual TLS on 127.0.0.1: Hello, heartbeats,
//! a start command, progress in order with percent and details, a dropped link redialled with the
//! update still running, and the heartbeat with the update status first after the reconnect; the
//! in-process link observer (what the fleet benchmark measures from) sees the same traffic.

use std::time::Duration;

use dc_agent::config::{ControllerConfig, PodsConfig, ReconnectConfig, TlsConfig};
use dc_agent::link::{LinkEvent, Traffic};
use dc_agent::sim::SimConfig;
use dc_agent::{AgentConfig, ClusterConfig};
use dc_certs::pki;
use dc_protocol::tls::{self, AgentAcceptor};
use dc_protocol::{
    AgentMessage, Command, Connection, ControllerMessage, HEARTBEAT_ACK, PROTOCOL_VERSION, Phase,
    PhaseOutcome, UpdateParams, Welcome,
};
use tokio::net::{TcpListener, TcpStream};

type Link = Connection<tokio_rustls::server::TlsStream<TcpStream>>;

const SUBJECT: &str = "O=WR CN=linked-root";

/// Accepts one agent, checks its Hello and welcomes it, promising no heartbeat acks.
async fn accept(listener: &TcpListener, acceptor: &AgentAcceptor) -> Link {
    accept_with(listener, acceptor, false).await
}

/// Accepts one agent, checks its Hello and welcomes it; `acks` promises a HeartbeatAck per heartbeat.
async fn accept_with(listener: &TcpListener, acceptor: &AgentAcceptor, acks: bool) -> Link {
    let (tcp, _) = listener.accept().await.unwrap();
    let (stream, agent) = acceptor.accept(tcp).await.unwrap();
    assert_eq!(agent.subcloud, "subcloud1");
    let mut link = Connection::new(stream);
    match link.recv::<AgentMessage>().await.unwrap() {
        Some(AgentMessage::Hello(hello)) => {
            assert_eq!(hello.subcloud, "subcloud1");
            assert_eq!(hello.protocol_version, PROTOCOL_VERSION);
            assert!(hello.capabilities.iter().any(|c| c == HEARTBEAT_ACK));
        }
        other => panic!("expected Hello, got {other:?}"),
    }
    link.send(&ControllerMessage::Welcome(Welcome {
        controller_version: "fake".into(),
        protocol_version: PROTOCOL_VERSION,
        heartbeat_interval_secs: 1,
        heartbeat_acks: acks,
        certificate_lifetime_secs: 0,
    }))
    .await
    .unwrap();
    link
}

async fn next(link: &mut Link) -> AgentMessage {
    link.recv::<AgentMessage>()
        .await
        .unwrap()
        .expect("the agent closed the link")
}

fn seq(m: &AgentMessage) -> Option<u64> {
    match m {
        AgentMessage::Progress(p) => Some(p.seq),
        AgentMessage::PhaseResult(r) => Some(r.seq),
        AgentMessage::Stopped(s) => Some(s.seq),
        _ => None,
    }
}

#[tokio::test]
async fn progress_streams_in_order_over_mtls_across_a_reconnect() {
    tokio::time::timeout(Duration::from_secs(120), scenario())
        .await
        .expect("the scenario timed out");
}

/// A fake controller with its listener, and an agent dialling it.
struct Harness {
    listener: TcpListener,
    acceptor: AgentAcceptor,
    stop: tokio::sync::oneshot::Sender<()>,
    agent: tokio::task::JoinHandle<Result<(), dc_agent::AgentError>>,
    /// What the agent's link observer reported.
    events: tokio::sync::mpsc::UnboundedReceiver<LinkEvent>,
    _pki: dc_test_support::TestPki,
    _data: tempfile::TempDir,
}

impl Harness {
    async fn start() -> Self {
        let pki = dc_test_support::TestPki::new().unwrap();
        let agent_dir = pki.agent("subcloud1").unwrap();
        let read = |name: &str| std::fs::read_to_string(pki.file(name)).unwrap();
        let acceptor = AgentAcceptor::new(
            tls::server_config(
                &read(pki::CA_CERT),
                &read(pki::CONTROLLER_CERT),
                &read(pki::CONTROLLER_KEY),
            )
            .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let data = tempfile::tempdir().unwrap();
        let config = AgentConfig {
            subcloud: "subcloud1".into(),
            controller: ControllerConfig {
                address: listener.local_addr().unwrap().to_string(),
                addresses: Vec::new(),
                server_name: "localhost".into(),
                connect_timeout_secs: 1,
            },
            tls: TlsConfig {
                ca: agent_dir.join(pki::CA_CERT),
                cert: agent_dir.join(pki::AGENT_CERT),
                key: agent_dir.join(pki::AGENT_KEY),
            },
            data_dir: data.path().to_owned(),
            root_ca_expiring_days: 30,
            reconnect: ReconnectConfig {
                initial_secs: 0.05,
                max_secs: 0.2,
                jitter: 0.5,
            },
            pods: PodsConfig {
                concurrency: 2,
                exclude_namespaces: vec![],
                poll_ms: 10,
            },
            phase_timeout_secs: 60,
            component_timeout_secs: 30,
            cluster: ClusterConfig::Simulated(SimConfig::light()),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (observer, events) = tokio::sync::mpsc::unbounded_channel();
        let options = dc_agent::RunOptions {
            observer: Some(observer),
        };
        let agent = tokio::spawn(dc_agent::run_with(config, options, async {
            let _ = stopped.await;
        }));
        Self {
            listener,
            acceptor,
            stop,
            agent,
            events,
            _pki: pki,
            _data: data,
        }
    }

    async fn accept(&self) -> Link {
        accept(&self.listener, &self.acceptor).await
    }

    /// Stops the agent and returns what its link observer reported.
    async fn shutdown(mut self) -> Vec<LinkEvent> {
        self.stop.send(()).unwrap();
        self.agent.await.unwrap().unwrap();
        let mut events = Vec::new();
        while let Ok(event) = self.events.try_recv() {
            events.push(event);
        }
        events
    }
}

/// Reads until `last` matches, returning everything but heartbeats.
async fn until(link: &mut Link, last: impl Fn(&AgentMessage) -> bool) -> Vec<AgentMessage> {
    let mut messages = Vec::new();
    loop {
        let m = next(link).await;
        let done = last(&m);
        if !matches!(m, AgentMessage::Heartbeat(_)) {
            messages.push(m);
        }
        if done {
            return messages;
        }
    }
}

fn start_command() -> ControllerMessage {
    ControllerMessage::Command(Command::Start {
        update_id: "u1".into(),
        params: UpdateParams {
            subject: Some(SUBJECT.into()),
            expiry_date: None,
            ..UpdateParams::default()
        },
    })
}

async fn scenario() {
    let harness = Harness::start().await;
    // First link: the heartbeat comes at once, with the current CA and no update.
    let mut link = harness.accept().await;
    let AgentMessage::Heartbeat(first) = next(&mut link).await else {
        panic!("the first message after Welcome must be a heartbeat");
    };
    assert_eq!(first.update, None);
    assert_eq!(first.root_ca.as_ref().unwrap().subject, "CN=kubernetes");
    assert!(first.alarms.is_empty());
    let start = start_command();
    link.send(&start).await.unwrap();
    // A second start for the running update is acknowledged, not restarted.
    link.send(&start).await.unwrap();
    let mut messages = Vec::new();
    loop {
        let m = next(&mut link).await;
        let done =
            matches!(&m, AgentMessage::PhaseResult(r) if r.phase == Phase::HostsTrustBothCas);
        messages.push(m);
        if done {
            break;
        }
    }
    // The controller goes away mid-update; the agent keeps working and redials.
    drop(link);
    let mut link = harness.accept().await;
    let m = next(&mut link).await;
    let AgentMessage::Heartbeat(reconnected) = m else {
        panic!("after a reconnect the heartbeat must come first: {m:?}");
    };
    let status = reconnected
        .update
        .expect("the heartbeat carries the update status");
    assert_eq!(status.update_id, "u1");
    messages.extend(
        until(
            &mut link,
            |m| matches!(m, AgentMessage::PhaseResult(r) if r.phase == Phase::Complete),
        )
        .await,
    );
    // Once complete, heartbeats report the new CA.
    loop {
        if let AgentMessage::Heartbeat(h) = next(&mut link).await
            && h.root_ca.as_ref().is_some_and(|ca| ca.subject == SUBJECT)
        {
            assert_eq!(h.update.unwrap().state, "update-completed");
            break;
        }
    }

    let seqs: Vec<u64> = messages.iter().filter_map(seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "sequence numbers increase: {seqs:?}"
    );
    assert!(status.last_seq >= seqs[0]);
    let mut percent = 0;
    for m in &messages {
        match m {
            AgentMessage::Progress(p) => {
                assert!(!p.details.is_empty());
                assert!(p.percent >= percent, "percent goes back: {m:?}");
                percent = p.percent;
            }
            AgentMessage::PhaseResult(r) => {
                assert_eq!(r.outcome, PhaseOutcome::Succeeded, "{m:?}");
                percent = r.percent;
            }
            _ => {}
        }
    }
    assert_eq!(percent, 100);
    assert!(messages.iter().any(|m| matches!(m,
        AgentMessage::Progress(p) if p.details.contains("already running"))));
    // Pods progress counts the light shape's workloads.
    let of_all = format!("of {} workloads", SimConfig::light().workloads.len());
    assert!(messages.iter().any(|m| matches!(m,
        AgentMessage::Progress(p) if p.phase == Phase::PodsTrustBothCas && p.details.contains(&of_all))));
    let results: Vec<Phase> = messages
        .iter()
        .filter_map(|m| match m {
            AgentMessage::PhaseResult(r) => Some(r.phase),
            _ => None,
        })
        .collect();
    assert_eq!(results, Phase::ALL);

    harness.shutdown().await;
}

#[tokio::test]
async fn abort_over_the_link_stops_after_the_phase_and_start_resumes() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let harness = Harness::start().await;
        let mut link = harness.accept().await;
        link.send(&start_command()).await.unwrap();
        let mut received = until(&mut link, |m| {
            matches!(m, AgentMessage::Progress(p) if p.phase == Phase::PodsTrustBothCas)
        })
        .await;
        link.send(&ControllerMessage::Command(Command::Abort {
            update_id: "u1".into(),
        }))
        .await
        .unwrap();
        let stopped = until(&mut link, |m| matches!(m, AgentMessage::Stopped(_))).await;
        received.extend(stopped.iter().cloned());
        assert!(matches!(
            stopped.last(),
            Some(AgentMessage::Stopped(s)) if s.next == Phase::HostsUpdateCerts
        ));
        assert!(stopped.iter().any(|m| matches!(m,
            AgentMessage::PhaseResult(r) if r.phase == Phase::PodsTrustBothCas && r.outcome == PhaseOutcome::Succeeded)));
        // The heartbeat says where it stopped.
        let status = loop {
            if let AgentMessage::Heartbeat(h) = next(&mut link).await {
                break h.update.unwrap();
            }
        };
        assert_eq!(
            status.run,
            dc_protocol::RunState::Aborted {
                next: Phase::HostsUpdateCerts
            }
        );
        link.send(&start_command()).await.unwrap();
        let resumed = until(&mut link, |m| {
            matches!(m, AgentMessage::PhaseResult(r) if r.phase == Phase::Complete)
        })
        .await;
        let phases: Vec<Phase> = resumed
            .iter()
            .filter_map(|m| match m {
                AgentMessage::PhaseResult(r) => Some(r.phase),
                _ => None,
            })
            .collect();
        assert_eq!(phases, &Phase::ALL[4..]);
        received.extend(resumed.iter().cloned());

        // The observer saw the three commands in order, and every message written to the controller
        // before the final result, in the order the controller read them.
        let events = harness.shutdown().await;
        let commands: Vec<&str> = events
            .iter()
            .filter_map(|e| match &e.traffic {
                Traffic::Received(Command::Start { .. }) => Some("start"),
                Traffic::Received(Command::Abort { .. }) => Some("abort"),
                _ => None,
            })
            .collect();
        assert_eq!(commands, ["start", "abort", "start"]);
        let sent: Vec<u64> = events
            .iter()
            .filter_map(|e| match &e.traffic {
                Traffic::Sent(m) => seq(m),
                Traffic::Received(_) => None,
            })
            .collect();
        let read: Vec<u64> = received.iter().filter_map(seq).collect();
        assert_eq!(sent[..read.len()], read[..], "observed {sent:?}, read {read:?}");
        assert!(events.iter().all(|e| e.subcloud == "subcloud1"));
    })
    .await
    .expect("the scenario timed out");
}

#[tokio::test]
async fn a_controller_that_never_welcomes_is_left_and_redialled() {
    let h = Harness::start().await;
    tokio::time::timeout(Duration::from_secs(60), async {
        // The first connection completes TLS and gets a Hello, but no Welcome ever comes.
        let (tcp, _) = h.listener.accept().await.unwrap();
        let (stream, _) = h.acceptor.accept(tcp).await.unwrap();
        let mut silent = Connection::new(stream);
        assert!(matches!(
            silent.recv::<AgentMessage>().await.unwrap(),
            Some(AgentMessage::Hello(_))
        ));
        // The agent gives up on it (connect_timeout_secs = 1) and dials again; this time it is welcomed
        // and heartbeats.
        let mut link = h.accept().await;
        assert!(matches!(next(&mut link).await, AgentMessage::Heartbeat(_)));
        assert!(matches!(
            silent.recv::<AgentMessage>().await,
            Ok(None) | Err(_)
        ));
    })
    .await
    .expect("the agent did not leave the silent controller");
    h.shutdown().await;
}

#[tokio::test]
async fn a_controller_that_falls_silent_after_welcome_is_left_and_redialled() {
    let h = Harness::start().await;
    tokio::time::timeout(Duration::from_secs(60), async {
        // Welcomed with a promise of acks, then nothing: no ack, no read. The agent leaves it after
        // three heartbeat periods (1 s here) and dials again.
        let mut silent = accept_with(&h.listener, &h.acceptor, true).await;
        let mut link = accept_with(&h.listener, &h.acceptor, true).await;
        // A controller that acks keeps the link well past that limit: six heartbeats on one connection.
        for _ in 0..6 {
            loop {
                if matches!(next(&mut link).await, AgentMessage::Heartbeat(_)) {
                    break;
                }
            }
            link.send(&ControllerMessage::HeartbeatAck).await.unwrap();
        }
        // The silent connection was closed by the agent.
        while let Ok(Some(_)) = silent.recv::<AgentMessage>().await {}
    })
    .await
    .expect("the agent did not leave the silent controller");
    h.shutdown().await;
}
