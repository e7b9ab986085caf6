//! A scripted fake agent over real mutual TLS, and a controller harness on port 0 with a temporary
//! system PKI and database.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the harness"
)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dc_controller::orchestrator::ApiRequest;
use dc_controller::{ControllerConfig, RunningController, Status};
use dc_protocol::{
    AgentMessage, Command, ControllerMessage, Heartbeat, Hello, HostFacts, Phase, PhaseOutcome,
    PhaseResult, PhaseState, Progress, RootCaInfo, RunState, Stopped, UpdateStatus,
};
use dc_test_support::pki::TestPki;
use serde_json::Value;
use tokio::sync::{Notify, Semaphore, mpsc, watch};

pub const TIMEOUT: Duration = Duration::from_secs(30);

/// What fake agents tell the test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Connected,
    Refused(dc_protocol::ErrorCode),
    Started,
    AbortReceived,
    PhaseDone(Phase),
    Completed,
    Failed,
    Stopped,
    Disconnected,
}

/// The agent's durable state, which survives its reconnects (as the real agent's state file does).
#[derive(Default)]
struct AgentState {
    update: Option<UpdateStatus>,
    params_seen: u32,
    running: bool,
    abort: bool,
    played: Vec<Phase>,
}

/// A fake agent: plays one phase per permit.
pub struct FakeAgent {
    pub name: String,
    permits: Arc<Semaphore>,
    drop_now: Arc<Notify>,
    state: Arc<Mutex<AgentState>>,
}

impl FakeAgent {
    /// Lets the agent play `n` more phases.
    pub fn allow(&self, n: usize) {
        self.permits.add_permits(n);
    }

    /// Drops the current connection; the agent reconnects at once.
    pub fn drop_connection(&self) {
        self.drop_now.notify_one();
    }

    /// Every phase it played, in order.
    pub fn played(&self) -> Vec<Phase> {
        self.state
            .lock()
            .map(|s| s.played.clone())
            .unwrap_or_default()
    }
}

pub struct Harness {
    pub pki: TestPki,
    /// The `database` setting: a SQLite file, or a PostgreSQL URL.
    pub db: PathBuf,
    /// The CA of the PostgreSQL server's certificate (`database_ca`).
    pub db_ca: Option<PathBuf>,
    pub controller: Option<RunningController>,
    pub agents_addr: watch::Sender<String>,
    pub events: mpsc::UnboundedReceiver<(String, Event)>,
    events_tx: mpsc::UnboundedSender<(String, Event)>,
    backlog: Vec<(String, Event)>,
    pub agent_wait_secs: u64,
    /// Applied to the controller's configuration at every (re)start.
    adjust: fn(&mut ControllerConfig),
}

/// A request body as the API layer types it (the same parsing, without HTTP).
pub fn body<T: dc_controller::requests::Body>(v: Value) -> T {
    dc_controller::requests::parse(v.to_string().as_bytes()).expect("a valid body")
}

pub fn config(pki: &TestPki, db: &std::path::Path, agent_wait_secs: u64) -> ControllerConfig {
    let mut c = ControllerConfig::default();
    c.api.listen = "127.0.0.1:0".into();
    c.api.workers = 1;
    c.agents.listen = "127.0.0.1:0".into();
    c.pki = dc_controller::config::PkiConfig::from_dir(&pki.dir());
    c.database = db.to_owned();
    c.heartbeat_interval_secs = 1;
    c.offline_after_secs = 30;
    c.agent_wait_secs = agent_wait_secs;
    c.progress_flush_ms = 50;
    c
}

impl Harness {
    pub async fn new(agent_wait_secs: u64) -> Self {
        Self::with(agent_wait_secs, |_| {}).await
    }

    /// [`Self::new`] with `adjust` applied to the controller's configuration at every (re)start.
    pub async fn with(agent_wait_secs: u64, adjust: fn(&mut ControllerConfig)) -> Self {
        let pki = TestPki::new().expect("pki");
        let db = pki.root().join("controller.sqlite");
        Self::start(pki, db, None, agent_wait_secs, adjust).await
    }

    /// [`Self::with`] on a PostgreSQL database (`url`, its server's certificate signed by `ca`).
    pub async fn on_postgres(
        agent_wait_secs: u64,
        url: String,
        ca: PathBuf,
        adjust: fn(&mut ControllerConfig),
    ) -> Self {
        let pki = TestPki::new().expect("pki");
        Self::start(pki, PathBuf::from(url), Some(ca), agent_wait_secs, adjust).await
    }

    async fn start(
        pki: TestPki,
        db: PathBuf,
        db_ca: Option<PathBuf>,
        agent_wait_secs: u64,
        adjust: fn(&mut ControllerConfig),
    ) -> Self {
        let mut c = config(&pki, &db, agent_wait_secs);
        c.database_ca = db_ca.clone();
        adjust(&mut c);
        let controller = dc_controller::start(c).await.expect("start");
        let (agents_addr, _) = watch::channel(controller.agents_addr.to_string());
        let (events_tx, events) = mpsc::unbounded_channel();
        Self {
            pki,
            db,
            db_ca,
            controller: Some(controller),
            agents_addr,
            events,
            events_tx,
            backlog: Vec::new(),
            agent_wait_secs,
            adjust,
        }
    }

    /// A controller's configuration on this harness's PKI and database (adjusted as at every start).
    pub fn config(&self) -> ControllerConfig {
        let mut c = config(&self.pki, &self.db, self.agent_wait_secs);
        c.database_ca = self.db_ca.clone();
        (self.adjust)(&mut c);
        c
    }

    pub fn ctl(&self) -> &RunningController {
        self.controller.as_ref().expect("controller running")
    }

    /// Stops the controller and starts a new one on the same database; agents follow to the new port.
    pub async fn restart(&mut self) {
        if let Some(c) = self.controller.take() {
            c.stop().await;
        }
        let c = dc_controller::start(self.config()).await.expect("restart");
        self.agents_addr.send_replace(c.agents_addr.to_string());
        self.controller = Some(c);
    }

    pub async fn api(&self, req: ApiRequest) -> Result<Value, dc_controller::ApiError> {
        self.ctl().actors().ask(req).await
    }

    pub async fn register(&self, name: &str) {
        self.api(ApiRequest::AddSubcloud(body(
            serde_json::json!({"name": name}),
        )))
        .await
        .expect("register");
    }

    /// Waits until the controller's status satisfies `f`.
    pub async fn wait_status(&self, f: impl Fn(&Status) -> bool) -> Status {
        let mut rx = self.ctl().status();
        tokio::time::timeout(TIMEOUT, rx.wait_for(|s| f(s)))
            .await
            .expect("status timeout")
            .expect("status channel")
            .clone()
    }

    /// Waits for an agent's event; other events are kept for later waits.
    pub async fn wait_event(&mut self, who: &str, what: Event) {
        if let Some(i) = self.backlog.iter().position(|e| e.0 == who && e.1 == what) {
            self.backlog.remove(i);
            return;
        }
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let e = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!("timeout waiting for {who} {what:?}; saw {:?}", self.backlog)
                })
                .expect("events");
            if e.0 == who && e.1 == what {
                return;
            }
            self.backlog.push(e);
        }
    }

    /// Starts a fake agent with a certificate for `cert_name` that says Hello as `hello_name`.
    pub fn agent_as(&self, cert_name: &str, hello_name: &str, fail_at: Option<Phase>) -> FakeAgent {
        let dir = self.pki.agent(cert_name).expect("agent cert");
        self.agent_with(&dir, hello_name, fail_at)
    }

    /// Starts a fake agent with the certificate files of `dir` (`ca.crt`, `agent.crt`, `agent.key`).
    pub fn agent_with(
        &self,
        dir: &std::path::Path,
        hello_name: &str,
        fail_at: Option<Phase>,
    ) -> FakeAgent {
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).expect("read");
        let client = dc_protocol::tls::client_config(
            &read("ca.crt"),
            &read("agent.crt"),
            &read("agent.key"),
        )
        .expect("client config");
        let agent = FakeAgent {
            name: hello_name.to_owned(),
            permits: Arc::new(Semaphore::new(0)),
            drop_now: Arc::new(Notify::new()),
            state: Arc::new(Mutex::new(AgentState::default())),
        };
        let ctx = AgentCtx {
            name: hello_name.to_owned(),
            client,
            addr: self.agents_addr.subscribe(),
            events: self.events_tx.clone(),
            permits: agent.permits.clone(),
            drop_now: agent.drop_now.clone(),
            state: agent.state.clone(),
            fail_at,
        };
        tokio::spawn(ctx.run());
        agent
    }

    pub fn agent(&self, name: &str) -> FakeAgent {
        self.agent_as(name, name, None)
    }

    /// Waits until `cloud`'s step satisfies `f` (the API has no push, so this polls it briefly).
    pub async fn wait_step(&self, cloud: &str, f: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let step = self
                .ctl()
                .actors()
                .step(cloud.to_owned())
                .await
                .expect("step");
            if f(&step) {
                return step;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timeout; step {step}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn steps(&self) -> HashMap<String, Value> {
        let list = self.ctl().actors().steps().await.expect("steps");
        let v = serde_json::to_value(list).expect("the steps list is JSON");
        v["strategy-steps"]
            .as_array()
            .expect("array")
            .iter()
            .map(|s| {
                (
                    s["cloud"].as_str().unwrap_or_default().to_owned(),
                    s.clone(),
                )
            })
            .collect()
    }
}

struct AgentCtx {
    name: String,
    client: Arc<rustls::ClientConfig>,
    addr: watch::Receiver<String>,
    events: mpsc::UnboundedSender<(String, Event)>,
    permits: Arc<Semaphore>,
    drop_now: Arc<Notify>,
    state: Arc<Mutex<AgentState>>,
    fail_at: Option<Phase>,
}

type Conn = dc_protocol::Connection<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

impl AgentCtx {
    fn emit(&self, e: Event) {
        let _ = self.events.send((self.name.clone(), e));
    }

    fn heartbeat(&self) -> AgentMessage {
        let now = dc_certs::now();
        let update = self.state.lock().ok().and_then(|s| s.update.clone());
        let done = update
            .as_ref()
            .is_some_and(|u| u.run == RunState::Completed);
        AgentMessage::Heartbeat(Box::new(Heartbeat {
            sent_at: now,
            host: HostFacts {
                hostname: "controller-0".into(),
                ..HostFacts::default()
            },
            // Expiring in 10 days (out-of-sync) until the update completed.
            root_ca: Some(RootCaInfo {
                subject: "CN=kubernetes".into(),
                serial: if done { "02".into() } else { "01".into() },
                not_before: now - 86_400,
                not_after: now + if done { 3650 } else { 10 } * 86_400,
            }),
            alarms: vec![],
            update,
        }))
    }

    async fn run(mut self) {
        loop {
            let addr = self.addr.borrow_and_update().clone();
            if let Ok(stream) =
                dc_protocol::tls::connect(self.client.clone(), &addr, "localhost").await
            {
                let conn = dc_protocol::Connection::new(stream);
                match self.session(conn).await {
                    Ok(()) => return,
                    Err(()) => self.emit(Event::Disconnected),
                }
            }
            // Reconnect at once if the address changed, else after a short backoff.
            let _ = tokio::time::timeout(Duration::from_millis(50), self.addr.changed()).await;
        }
    }

    /// Runs one connection. `Ok` ends the agent (refused); `Err` asks for a reconnect.
    async fn session(&mut self, mut conn: Conn) -> Result<(), ()> {
        let hello = AgentMessage::Hello(Hello {
            subcloud: self.name.clone(),
            agent_version: "fake".into(),
            protocol_version: dc_protocol::PROTOCOL_VERSION,
            capabilities: vec![],
        });
        conn.send(&hello).await.map_err(|_| ())?;
        match conn.recv::<ControllerMessage>().await {
            Ok(Some(ControllerMessage::Welcome(_))) => {}
            Ok(Some(ControllerMessage::Error(e))) => {
                self.emit(Event::Refused(e.code));
                return Ok(());
            }
            _ => return Err(()),
        }
        conn.send(&self.heartbeat()).await.map_err(|_| ())?;
        self.emit(Event::Connected);
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            let running = self.state.lock().map(|s| s.running).unwrap_or(false);
            tokio::select! {
                msg = conn.recv::<ControllerMessage>() => match msg {
                    Ok(Some(ControllerMessage::Command(c))) => self.command(c),
                    Ok(Some(_)) => {}
                    _ => return Err(()),
                },
                permit = self.permits.acquire(), if running => {
                    if let Ok(p) = permit { p.forget(); }
                    for m in self.play() {
                        conn.send(&m).await.map_err(|_| ())?;
                    }
                }
                _ = tick.tick() => conn.send(&self.heartbeat()).await.map_err(|_| ())?,
                () = self.drop_now.notified() => return Err(()),
            }
        }
    }

    fn command(&self, c: Command) {
        let Ok(mut s) = self.state.lock() else { return };
        match c {
            Command::Start { update_id, params } => {
                s.params_seen += u32::from(params != dc_protocol::UpdateParams::default());
                let same = s.update.as_ref().is_some_and(|u| u.update_id == update_id);
                if same && s.running {
                    return;
                }
                let phase = match s.update.as_ref().filter(|_| same).map(|u| &u.run) {
                    Some(RunState::Aborted { next }) => *next,
                    Some(RunState::Failed { phase, .. }) => *phase,
                    _ => Phase::Start,
                };
                s.update = Some(UpdateStatus {
                    update_id,
                    phase,
                    state: phase.state_name(PhaseState::InProgress, false).into(),
                    percent: 0,
                    run: RunState::Running,
                    last_seq: s.update.as_ref().filter(|_| same).map_or(0, |u| u.last_seq),
                    since: None,
                    new_ca: None,
                    warnings: Vec::new(),
                    rollback: false,
                });
                s.running = true;
                s.abort = false;
                drop(s);
                self.emit(Event::Started);
            }
            Command::Abort { update_id } => {
                if s.update.as_ref().is_some_and(|u| u.update_id == update_id) && s.running {
                    s.abort = true;
                    drop(s);
                    self.emit(Event::AbortReceived);
                }
            }
        }
    }

    /// Plays the current phase: a progress, then its result; then stops if an abort is pending.
    fn play(&self) -> Vec<AgentMessage> {
        let Ok(mut s) = self.state.lock() else {
            return vec![];
        };
        let abort = s.abort;
        let Some(u) = s.update.as_mut() else {
            return vec![];
        };
        let phase = u.phase;
        let percent = u8::try_from((phase.index() + 1) * 100 / Phase::ALL.len()).unwrap_or(100);
        let mut out = Vec::new();
        u.last_seq += 1;
        out.push(AgentMessage::Progress(Progress {
            update_id: u.update_id.clone(),
            seq: u.last_seq,
            phase,
            host: phase.is_host_phase().then(|| "controller-0".to_owned()),
            state: phase.state_name(PhaseState::InProgress, false).into(),
            phase_percent: 50,
            percent,
            details: "half way".into(),
        }));
        u.last_seq += 1;
        let mut events = vec![];
        if self.fail_at == Some(phase) {
            u.run = RunState::Failed {
                phase,
                reason: "scripted failure".into(),
            };
            u.state = phase.state_name(PhaseState::Failed, false).into();
            out.push(AgentMessage::PhaseResult(PhaseResult {
                update_id: u.update_id.clone(),
                seq: u.last_seq,
                phase,
                outcome: PhaseOutcome::Failed {
                    reason: "scripted failure".into(),
                },
                state: u.state.clone(),
                percent,
                warnings: Vec::new(),
            }));
            s.running = false;
            events.push(Event::Failed);
        } else {
            u.state = phase.state_name(PhaseState::Done, false).into();
            u.percent = percent;
            out.push(AgentMessage::PhaseResult(PhaseResult {
                update_id: u.update_id.clone(),
                seq: u.last_seq,
                phase,
                outcome: PhaseOutcome::Succeeded,
                state: u.state.clone(),
                percent,
                warnings: Vec::new(),
            }));
            events.push(Event::PhaseDone(phase));
            match phase.next() {
                None => {
                    u.run = RunState::Completed;
                    s.running = false;
                    events.push(Event::Completed);
                }
                Some(next) if abort => {
                    u.phase = next;
                    u.run = RunState::Aborted { next };
                    u.last_seq += 1;
                    out.push(AgentMessage::Stopped(Stopped {
                        update_id: u.update_id.clone(),
                        seq: u.last_seq,
                        next,
                    }));
                    s.running = false;
                    events.push(Event::Stopped);
                }
                Some(next) => u.phase = next,
            }
            s.played.push(phase);
        }
        drop(s);
        for e in events {
            self.emit(e);
        }
        out
    }
}

/// The configuration of a REAL agent (`dc_agent::run`) in this process for subcloud `name` of the
/// harness's PKI, on a light simulated cluster whose root CA expires in 10 days, dialling
/// `agents_addr`; `slow` keeps it in pods trust-both-cas for 2 s, long enough to be caught there.
pub fn in_process_agent(
    h: &Harness,
    name: &str,
    agents_addr: &str,
    slow: bool,
) -> dc_agent::config::AgentConfig {
    let tls = h.pki.agent(name).expect("agent certificate");
    let mut cluster = serde_json::to_value(dc_agent::sim::SimConfig::light()).expect("sim config");
    cluster["kind"] = serde_json::json!("simulated");
    cluster["root_ca_expiry_days"] = serde_json::json!(10);
    if slow {
        cluster["faults"]["slow_phase"] =
            serde_json::json!({"phase": "pods-trust-both-cas", "delay_ms": 2000});
    }
    serde_json::from_value(serde_json::json!({
        "subcloud": name,
        "data_dir": h.pki.root().join("agents").join(name).join("data"),
        "controller": {"address": agents_addr},
        "tls": {"ca": tls.join("ca.crt"), "cert": tls.join("agent.crt"), "key": tls.join("agent.key")},
        "reconnect": {"initial_secs": 0.05, "max_secs": 0.5},
        "pods": {"poll_ms": 10},
        "cluster": cluster,
    }))
    .expect("agent config")
}

/// Checks that subcloud `name`'s simulated controller-0 trusts the new CA alone, with `subject` and
/// `not_after`.
pub fn assert_new_ca(h: &Harness, name: &str, subject: &str, not_after: i64) {
    let ca_crt = h
        .pki
        .root()
        .join("agents")
        .join(name)
        .join("data/cluster/hosts/controller-0/etc/kubernetes/pki/ca.crt");
    let pem = std::fs::read_to_string(&ca_crt).expect("ca.crt");
    let certs = dc_certs::pem_certificates(&pem).expect("pem");
    assert_eq!(certs.len(), 1, "{name}: only the new CA is trusted");
    let ca = dc_certs::inspect::CertSummary::from_der(&certs[0]).expect("cert");
    assert_eq!(ca.subject, subject, "{name}");
    assert_eq!(ca.not_after, not_after, "{name}");
}

/// Real agents running in this process until [`stop_all`].
pub struct InProcessAgents {
    stop: watch::Sender<bool>,
    tasks: Vec<actix_rt::task::JoinHandle<Result<(), dc_agent::AgentError>>>,
}

/// Starts a real agent per name (see [`in_process_agent`]), `slow(name)` choosing the slowed ones.
pub fn spawn_agents(
    h: &Harness,
    names: &[&str],
    agents_addr: &str,
    slow: impl Fn(&str) -> bool,
) -> InProcessAgents {
    run_agents(
        names
            .iter()
            .map(|n| in_process_agent(h, n, agents_addr, slow(n)))
            .collect(),
    )
}

/// Runs a real agent per configuration in this process until [`stop_agents`].
pub fn run_agents(configs: Vec<dc_agent::config::AgentConfig>) -> InProcessAgents {
    let (stop, stopped) = watch::channel(false);
    let tasks = configs
        .into_iter()
        .map(|config| {
            let mut stopped = stopped.clone();
            actix_rt::spawn(dc_agent::run(config, async move {
                let _ = stopped.wait_for(|s| *s).await;
            }))
        })
        .collect();
    InProcessAgents { stop, tasks }
}

/// The strategy's create request with `subject` and `expiry`, two subclouds at a time.
pub fn create_request(subject: &str, expiry: &dc_certs::ExpiryDate) -> ApiRequest {
    ApiRequest::CreateStrategy(body(serde_json::json!({
        "type": "kube-rootca-update", "max-parallel-subclouds": 2,
        "subject": subject, "expiry-date": expiry.to_string(),
    })))
}

/// The strategy's apply request.
pub fn apply_request() -> ApiRequest {
    ApiRequest::Action(body(serde_json::json!({"action": "apply"})))
}

/// Stops the in-process agents.
pub async fn stop_agents(agents: InProcessAgents) {
    agents.stop.send_replace(true);
    for a in agents.tasks {
        a.await.expect("agent task").expect("agent ended cleanly");
    }
}

/// Stops the in-process agents and the harness's controller.
pub async fn stop_all(h: &mut Harness, agents: InProcessAgents) {
    stop_agents(agents).await;
    if let Some(c) = h.controller.take() {
        c.stop().await;
    }
}
