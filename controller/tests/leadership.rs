//! Two controllers on one real PostgreSQL database (in this process): the standby answers agents "not
//! the leader"; the leader cut off from the database (its role refused and its sessions ended: the
//! server stops accepting it) stops leading before the standby takes over, within the bound, and the
//! agent (given both addresses) ends connected to the new leader; the old leader, back, is a standby
//! until the new leader stops, and then leads again.

mod common;

use std::time::{Duration, Instant};

use common::Harness;
use dc_controller::ControllerConfig;
use dc_protocol::{ControllerMessage, ErrorCode};
use dc_test_support::postgres::TestPostgres;
use futures::{SinkExt, StreamExt};

/// Short leases keep the test short; the rules are the same at the default 5 s.
const LEASE_SECS: u64 = 2;

fn short_lease(c: &mut ControllerConfig) {
    c.leadership.lease_secs = LEASE_SECS;
}

/// The lease row: (epoch, holder).
fn lease(pg: &TestPostgres) -> (i64, String) {
    let row = pg
        .psql_in("dc", "SELECT epoch, holder FROM leader_lease")
        .expect("lease");
    let (epoch, holder) = row.split_once('|').expect("two columns");
    (epoch.parse().expect("epoch"), holder.to_owned())
}

/// Dials `addr` as agent `name` and answers the controller's first message.
async fn hello(h: &Harness, name: &str, addr: &str) -> ControllerMessage {
    let dir = h.pki.agent(name).expect("agent cert");
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).expect("read");
    let client =
        dc_protocol::tls::client_config(&read("ca.crt"), &read("agent.crt"), &read("agent.key"))
            .expect("client config");
    let stream = dc_protocol::tls::connect(client, addr, "localhost")
        .await
        .expect("connect");
    let (mut sink, mut frames) = dc_protocol::Connection::new(stream).into_inner().split();
    let hello = dc_protocol::AgentMessage::Hello(dc_protocol::Hello {
        subcloud: name.to_owned(),
        agent_version: "test".to_owned(),
        protocol_version: dc_protocol::PROTOCOL_VERSION,
        capabilities: Vec::new(),
    });
    sink.send(dc_protocol::frame::encode(&hello).expect("encode"))
        .await
        .expect("send");
    let frame = frames.next().await.expect("an answer").expect("frame");
    dc_protocol::frame::decode(&frame).expect("decode")
}

fn free_address() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").to_string()
}

#[actix_web::test]
async fn a_leader_cut_off_from_the_database_steps_down_before_the_standby_takes_over() {
    let pg = TestPostgres::start().expect("postgresql");
    let url = pg.create_database("dc").expect("database");
    // One role per controller, so the server can refuse one of them.
    for role in ["leader_a", "leader_b"] {
        pg.psql(&format!("CREATE ROLE {role} LOGIN SUPERUSER"))
            .expect("role");
    }
    let url_as = |role: &str| url.replace("postgresql://dc@", &format!("postgresql://{role}@"));
    let mut h = Harness::on_postgres(600, url_as("leader_a"), pg.ca(), short_lease).await;
    let (epoch_a, _) = lease(&pg);

    h.register("ha1").await;
    let b_agents = free_address();
    let mut agent = common::in_process_agent(&h, "ha1", &h.ctl().agents_addr.to_string(), false);
    agent.controller.addresses = vec![b_agents.clone()];
    let agents = common::run_agents(vec![agent]);
    h.wait_status(|s| s.reporting == 1).await;

    let mut config_b = h.config();
    config_b.database = url_as("leader_b").into();
    config_b.agents.listen = b_agents.clone();
    config_b.leadership.name = Some("controller-b".into());
    let standby = actix_rt::spawn(async move {
        let running = dc_controller::start(config_b).await.expect("standby start");
        (Instant::now(), running)
    });
    // The standby answers an agent "not the leader" (once its listener is bound).
    let refused = loop {
        if tokio::net::TcpStream::connect(&b_agents).await.is_ok() {
            break hello(&h, "ha1", &b_agents).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        matches!(&refused, ControllerMessage::Error(e) if e.code == ErrorCode::NotLeader),
        "{refused:?}"
    );

    // The server stops accepting the leader: its role may not log in and its sessions are ended.
    pg.psql("ALTER ROLE leader_a NOLOGIN").expect("alter");
    pg.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'leader_a'")
        .expect("terminate");
    let cut = Instant::now();

    let mut lost = h.ctl().leadership_lost();
    let why = tokio::time::timeout(Duration::from_secs(30), lost.wait_for(Option::is_some))
        .await
        .expect("the leader steps down")
        .expect("channel")
        .clone();
    // The order of the two events that matter: when the leader has stepped down (its lost-leadership
    // signal, observed here just after), the standby has not taken the lease yet (still the leader's
    // epoch). Not the standby's start returning, which comes later still (it loads and binds first).
    assert_eq!(
        lease(&pg).0,
        epoch_a,
        "the standby took over before the old leader stepped down"
    );
    assert!(
        why.is_some_and(|w| w.contains("in time")),
        "{:?}",
        lost.borrow()
    );
    // It stopped leading: its agent listener is closed.
    assert!(
        tokio::net::TcpStream::connect(h.ctl().agents_addr)
            .await
            .is_err(),
        "a deposed leader takes no agent"
    );

    let (took_over, b) = tokio::time::timeout(Duration::from_secs(30), standby)
        .await
        .expect("the standby takes over")
        .expect("task");
    let failover = took_over - cut;
    assert!(
        failover < Duration::from_secs(10),
        "failover took {failover:?}"
    );
    let (epoch_b, holder) = lease(&pg);
    assert_eq!((epoch_b, holder.as_str()), (epoch_a + 1, "controller-b"));
    // The agent moved on to the new leader.
    let mut status = b.status();
    tokio::time::timeout(common::TIMEOUT, status.wait_for(|s| s.reporting == 1))
        .await
        .expect("the agent connects to the new leader")
        .expect("status");
    common::stop_agents(agents).await;

    // The old leader comes back: a standby while B leads...
    if let Some(a) = h.controller.take() {
        a.stop().await;
    }
    pg.psql("ALTER ROLE leader_a LOGIN").expect("alter");
    let mut config_a = h.config();
    config_a.leadership.name = Some("controller-a".into());
    let mut back = actix_rt::spawn(dc_controller::start(config_a));
    // Two whole leases on: B still leads at its epoch, and A still waits.
    let deadline = Instant::now() + Duration::from_secs(2 * LEASE_SECS);
    while Instant::now() < deadline {
        assert_eq!(lease(&pg), (epoch_b, "controller-b".to_owned()));
        assert!(!back.is_finished(), "the old leader must wait as a standby");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // ...and leads once B stops (it releases its lease).
    b.stop().await;
    let a = tokio::time::timeout(Duration::from_secs(10), &mut back)
        .await
        .expect("the standby leads after a release")
        .expect("task")
        .expect("start");
    assert_eq!(lease(&pg), (epoch_b + 1, "controller-a".to_owned()));
    a.stop().await;
}
