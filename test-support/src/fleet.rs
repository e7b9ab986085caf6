//! A local fleet of real processes: one `dc-controller` with SQLite (or PostgreSQL, with standbys beside
//! it), one `dc-agent` per subcloud with a simulated cluster, and the real `dcmanager` CLI to drive them.
//! The demo, the integration tests and the benchmark all build their fleet here, so the configuration
//! each process gets is written in one place.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use dc_agent::config::{
    AgentConfig, ClusterConfig, ControllerConfig as AgentController, PodsConfig, ReconnectConfig,
    TlsConfig,
};
use dc_agent::sim::{SimConfig, SlowPhase};
use dc_certs::inspect::CertSummary;
use dc_config::logging::LogFormat;
use dc_controller::config::{
    AgentsConfig, ApiConfig, AuthConfig, ControllerConfig, PkiConfig, Role, TokenConfig,
};

use crate::process::{Child, bin_path, wait_for_json};

/// The admin token of every fleet's controller.
pub const ADMIN_TOKEN: &str = "fleet-admin-token";
/// A reader token, for the authorisation checks.
pub const READER_TOKEN: &str = "fleet-reader-token";

/// Errors while running a fleet; the message says which process or file and where its log is.
#[derive(Debug)]
pub struct FleetError(pub String);

impl std::fmt::Display for FleetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FleetError {}

pub type Result<T, E = FleetError> = std::result::Result<T, E>;

fn err(e: impl std::fmt::Display) -> FleetError {
    FleetError(e.to_string())
}

/// A simulated cluster's shape: one of the simulated cluster's own, so a fleet's subclouds look like the
/// clusters the agent's tests use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// [`SimConfig::light`]: one controller host, two workloads, pods ready in 20 ms.
    Light,
    /// [`SimConfig::typical`]: two controllers and two workers, every workload kind, RollingUpdate and
    /// OnDelete.
    Typical,
    /// [`SimConfig::wide`]: two controllers and fifty workers whose restarts take a second.
    Wide,
    /// [`SimConfig::light`] with this many workers besides its controller, whose restarted
    /// components take `restart_ms` to serve again (so workers updated at once overlap).
    Workers { workers: u32, restart_ms: u64 },
}

impl Shape {
    /// The simulated cluster of this shape.
    pub fn sim_config(self) -> SimConfig {
        match self {
            Self::Light => SimConfig::light(),
            Self::Typical => SimConfig::typical(),
            Self::Wide => SimConfig::wide(),
            Self::Workers {
                workers,
                restart_ms,
            } => SimConfig {
                workers,
                restart_ms,
                ..SimConfig::light()
            },
        }
    }
}

/// One subcloud of a fleet.
#[derive(Debug, Clone)]
pub struct Site {
    pub name: String,
    /// Days the current root CA has left (negative: expired). Over 30 days the subcloud is in-sync.
    pub ca_days: i64,
    pub shape: Shape,
    /// Workloads (`namespace/name`) whose new pods never become ready.
    pub never_ready: Vec<String>,
    /// Extra milliseconds `slow_phase` takes (to catch a subcloud mid-phase).
    pub slow_pods_ms: u64,
    /// The phase `slow_pods_ms` slows: pods trust-both-cas unless a test needs another.
    pub slow_phase: dc_protocol::Phase,
    /// The agent's whole `[cluster]` table (e.g. `kind = "kubernetes"` pointed at a served API),
    /// replacing the simulated cluster of `shape`.
    pub cluster: Option<String>,
    /// The agent's `phase_timeout_secs`: short for simulated clusters, longer for a real control
    /// plane, whose components take seconds to restart.
    pub phase_timeout_secs: u64,
    /// The agent's `component_timeout_secs`: how long a restarted component may take to serve again
    /// (and the controller-manager to publish a new trust bundle). Apart from the phase timeout so a
    /// test can see a component that does not come back fail the phase soon, while slow rollouts of a
    /// real control plane keep their long phase timeout.
    pub component_timeout_secs: u64,
}

impl Site {
    /// An out-of-sync subcloud (its CA expires in 10 days) of the given shape.
    pub fn new(name: &str, shape: Shape) -> Self {
        Self {
            name: name.to_owned(),
            ca_days: 10,
            shape,
            never_ready: Vec::new(),
            slow_pods_ms: 0,
            slow_phase: dc_protocol::Phase::PodsTrustBothCas,
            cluster: None,
            phase_timeout_secs: 15,
            component_timeout_secs: 15,
        }
    }

    /// Whether the controller's audit should call it in-sync.
    pub fn in_sync(&self) -> bool {
        self.ca_days > 30
    }
}

/// The controller settings a fleet varies. The defaults suit tests: fast heartbeats and short waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControllerSettings {
    pub heartbeat_interval_secs: u32,
    pub offline_after_secs: u64,
    pub agent_wait_secs: u64,
    pub progress_flush_ms: u64,
    /// `[agents] handshake_timeout_secs`.
    pub handshake_timeout_secs: u64,
    /// `[api] metrics_require_token`.
    pub metrics_require_token: bool,
}

impl Default for ControllerSettings {
    fn default() -> Self {
        Self {
            heartbeat_interval_secs: 1,
            offline_after_secs: 5,
            agent_wait_secs: 60,
            progress_flush_ms: 200,
            handshake_timeout_secs: AgentsConfig::default().handshake_timeout_secs,
            metrics_require_token: false,
        }
    }
}

/// A running fleet. Every process is killed when it is dropped.
pub struct Fleet {
    pub dir: PathBuf,
    pub sites: Vec<Site>,
    pub api: String,
    pub agents_addr: String,
    /// Used by every (re)start of the controller.
    pub controller_settings: ControllerSettings,
    /// The controller's SQLite file (set before [`Self::launch`] to put it on another filesystem), or a
    /// PostgreSQL URL.
    pub database: PathBuf,
    /// The CA of the PostgreSQL server's certificate (`database_ca`).
    pub database_ca: Option<PathBuf>,
    /// More controllers' agent addresses (standbys), written into every agent's `[controller]
    /// addresses` after the fleet's controller: set before [`Self::launch`].
    pub standby_agent_addresses: Vec<String>,
    /// The controller's `[auth]`: [`ADMIN_TOKEN`] and [`READER_TOKEN`] unless a test sets another (the
    /// Keystone tests point it at a real Keystone before [`Self::start_controller`]).
    pub auth: AuthConfig,
    /// The `--log-format` of the controller and the agents started after it is set.
    pub log_format: LogFormat,
    controller: Option<Child>,
    agents: Vec<Option<Child>>,
}

impl Fleet {
    /// Creates the PKI, starts the controller, registers every site and starts its agent.
    pub fn start(dir: &Path, sites: Vec<Site>) -> Result<Self> {
        let mut fleet = Self::prepare(dir, sites)?;
        fleet.launch()?;
        Ok(fleet)
    }

    /// Starts a prepared fleet: the controller, the subclouds registered, their agents.
    pub fn launch(&mut self) -> Result<()> {
        let fleet = self;
        fleet.start_controller()?;
        // Register first: the controller refuses agents it does not know.
        for site in &fleet.sites {
            fleet.dcmanager_ok(&[
                "subcloud",
                "add",
                "--name",
                &site.name,
                "--description",
                "fleet site",
                "--location",
                "lab",
            ])?;
        }
        for i in 0..fleet.sites.len() {
            let child = fleet.spawn_agent(i)?;
            fleet.agents.push(Some(child));
        }
        Ok(())
    }

    /// Creates (or reuses) the system PKI and issues every site's agent certificate into
    /// `agents/<name>/tls`; starts nothing. Issuing runs on every core: thousands of sites take a while.
    pub fn prepare(dir: &Path, sites: Vec<Site>) -> Result<Self> {
        std::fs::create_dir_all(dir.join("logs")).map_err(err)?;
        let pki = dir.join("pki");
        let ca = if pki.join(dc_certs::pki::CA_KEY).exists() {
            dc_certs::pki::load_ca(&pki).map_err(err)?
        } else {
            dc_certs::pki::init(&pki, &[], false, dc_certs::now()).map_err(err)?
        };
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = sites.len().div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            let workers: Vec<_> = sites
                .chunks(chunk)
                .map(|part| {
                    let ca = &ca;
                    scope.spawn(move || {
                        part.iter().try_for_each(|site| {
                            dc_certs::pki::write_agent(
                                ca,
                                &site.name,
                                &dir.join("agents").join(&site.name).join("tls"),
                                dc_certs::now(),
                            )
                            .map_err(err)
                        })
                    })
                })
                .collect();
            workers.into_iter().try_for_each(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(FleetError("issuing panicked".to_owned())))
            })
        })?;
        Ok(Self {
            dir: dir.to_owned(),
            sites,
            api: String::new(),
            agents_addr: String::new(),
            controller_settings: ControllerSettings::default(),
            database: dir.join("controller.sqlite"),
            database_ca: None,
            standby_agent_addresses: Vec::new(),
            auth: AuthConfig {
                tokens: vec![
                    TokenConfig {
                        token: ADMIN_TOKEN.to_owned(),
                        role: Role::Admin,
                    },
                    TokenConfig {
                        token: READER_TOKEN.to_owned(),
                        role: Role::Reader,
                    },
                ],
                ..AuthConfig::default()
            },
            log_format: LogFormat::default(),
            controller: None,
            agents: Vec::new(),
        })
    }

    /// Starts (or restarts) the controller on the same database and ports it had, if any.
    pub fn start_controller(&mut self) -> Result<()> {
        let ready = self.dir.join("controller.ready.json");
        let _ = std::fs::remove_file(&ready);
        let listen = |addr: &str| {
            if addr.is_empty() {
                "127.0.0.1:0".to_owned()
            } else {
                addr.to_owned()
            }
        };
        let (api, agents) = (listen(&self.api), listen(&self.agents_addr));
        let child = self.spawn_controller("controller", &api, &agents)?;
        self.controller = Some(child);
        self.await_controller(&ready, "controller", Duration::from_secs(30))
    }

    /// Starts another controller on the same database (with PostgreSQL: a standby, whose agent
    /// listener on `agents_listen` answers "not the leader" while the fleet's controller leads, and whose
    /// API listens once it leads). [`Self::fail_over`] makes it the fleet's.
    pub fn start_standby(&self, label: &str, agents_listen: &str) -> Result<Child> {
        self.spawn_controller(label, "127.0.0.1:0", agents_listen)
    }

    /// SIGKILLs the leading controller and waits until `standby` leads (it announces its ports once it
    /// does); answers how long that took.
    pub fn fail_over(
        &mut self,
        standby: Child,
        label: &str,
        timeout: Duration,
    ) -> Result<Duration> {
        let ready = self.dir.join("controller.ready.json");
        self.kill_controller();
        let killed = Instant::now();
        let _ = std::fs::remove_file(&ready);
        self.controller = Some(standby);
        self.await_controller(&ready, label, timeout)?;
        Ok(killed.elapsed())
    }

    /// Writes `<label>.toml` and starts a controller on it, listening on `api` and `agents`.
    fn spawn_controller(&self, label: &str, api: &str, agents: &str) -> Result<Child> {
        let ready = self.dir.join("controller.ready.json");
        let config = self.dir.join(format!("{label}.toml"));
        let settings = self.controller_settings;
        let values = ControllerConfig {
            api: ApiConfig {
                listen: api.to_owned(),
                metrics_require_token: settings.metrics_require_token,
                ..ApiConfig::default()
            },
            agents: AgentsConfig {
                listen: agents.to_owned(),
                handshake_timeout_secs: settings.handshake_timeout_secs,
                ..AgentsConfig::default()
            },
            pki: PkiConfig::from_dir(&self.dir.join("pki")),
            database: self.database.clone(),
            database_ca: self.database_ca.clone(),
            auth: self.auth.clone(),
            heartbeat_interval_secs: settings.heartbeat_interval_secs,
            offline_after_secs: settings.offline_after_secs,
            agent_wait_secs: settings.agent_wait_secs,
            progress_flush_ms: settings.progress_flush_ms,
            ready_file: Some(ready),
            ..ControllerConfig::default()
        };
        write_toml(&config, &values)?;
        Child::spawn(
            &bin_path("dc-controller"),
            [
                "--config".as_ref(),
                config.as_os_str(),
                "--log-format".as_ref(),
                self.log_format.as_str().as_ref(),
            ],
            &self.log(label),
        )
        .map_err(err)
    }

    /// Waits for the controller's ready file and takes its ports.
    fn await_controller(&mut self, ready: &Path, label: &str, timeout: Duration) -> Result<()> {
        let announced = wait_for_json(ready, timeout).map_err(|e| {
            FleetError(format!(
                "controller did not start ({e}); see {}",
                self.log(label).display()
            ))
        })?;
        self.api = announced["api"].as_str().unwrap_or_default().to_owned();
        self.agents_addr = announced["agents"].as_str().unwrap_or_default().to_owned();
        Ok(())
    }

    /// The controller's process id, while it runs.
    pub fn controller_pid(&self) -> Option<u32> {
        self.controller.as_ref().map(Child::id)
    }

    /// How the controller exited, once it has (`None` while it runs or when it was never started).
    pub fn controller_exit(&mut self) -> Option<std::process::ExitStatus> {
        self.controller.as_mut().and_then(Child::exit_status)
    }

    /// Kills the controller with SIGKILL.
    pub fn kill_controller(&mut self) {
        if let Some(mut c) = self.controller.take() {
            let _ = c.kill9();
        }
    }

    /// The directory of site `i`'s agent: `tls/` (its certificate), `data/`, `agent.toml`.
    pub fn agent_dir(&self, i: usize) -> PathBuf {
        self.dir.join("agents").join(&self.sites[i].name)
    }

    /// The data directory of site `i`'s agent (the update record and the simulated cluster).
    pub fn agent_data(&self, i: usize) -> PathBuf {
        self.agent_dir(i).join("data")
    }

    fn spawn_agent(&self, i: usize) -> Result<Child> {
        self.spawn_agent_with(&self.sites[i], &self.agent_dir(i), &self.sites[i].name)
    }

    /// Writes the configuration of an agent for `site` in `dir` (its `tls/` holds the certificate it
    /// presents, `data/` its state), pointed at this fleet's controller, and returns the file's path.
    pub fn write_agent_config(&self, site: &Site, dir: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(dir).map_err(err)?;
        let config = dir.join("agent.toml");
        write_toml(
            &config,
            &agent_config(site, dir, &self.agents_addr, &self.standby_agent_addresses)?,
        )?;
        Ok(config)
    }

    /// Starts an agent for `site` in `dir` (see [`Self::write_agent_config`]), logging to
    /// `logs/<label>.log`. Tests start impostors this way.
    pub fn spawn_agent_with(&self, site: &Site, dir: &Path, label: &str) -> Result<Child> {
        let config = self.write_agent_config(site, dir)?;
        Child::spawn(
            &bin_path("dc-agent"),
            [
                "--config".as_ref(),
                config.as_os_str(),
                "--log-format".as_ref(),
                self.log_format.as_str().as_ref(),
            ],
            &self.log(label),
        )
        .map_err(err)
    }

    /// The log file of a process of the fleet (`controller`, a subcloud name, an impostor's label).
    pub fn log(&self, label: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{label}.log"))
    }

    /// Kills site `i`'s agent with SIGKILL.
    pub fn kill_agent(&mut self, i: usize) {
        if let Some(mut a) = self.agents[i].take() {
            let _ = a.kill9();
        }
    }

    /// Starts site `i`'s agent again (with the site's current settings, e.g. a fault removed).
    pub fn restart_agent(&mut self, i: usize) -> Result<()> {
        self.kill_agent(i);
        let child = self.spawn_agent(i)?;
        self.agents[i] = Some(child);
        Ok(())
    }

    /// A `dcmanager` command pointed at this fleet's controller with the admin token.
    pub fn dcmanager(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin_path("dcmanager"));
        cmd.args(args)
            .env("DCMANAGER_URL", format!("http://{}/v1.0", self.api))
            .env("OS_AUTH_TOKEN", ADMIN_TOKEN)
            .env_remove("CLI_CONFIRMATIONS");
        cmd
    }

    /// Runs `dcmanager` and returns its output, whatever the exit status.
    pub fn dcmanager_output(&self, args: &[&str]) -> Result<Output> {
        self.dcmanager(args)
            .output()
            .map_err(|e| FleetError(format!("running dcmanager: {e}")))
    }

    /// Runs `dcmanager`, fails with its error text on a non-zero exit, returns its stdout.
    pub fn dcmanager_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.dcmanager_output(args)?;
        if !out.status.success() {
            return Err(FleetError(format!(
                "dcmanager {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `dcmanager ... -f json` and parses the output.
    pub fn dcmanager_json(&self, args: &[&str]) -> Result<serde_json::Value> {
        let mut all = args.to_vec();
        all.extend(["-f", "json"]);
        serde_json::from_str(&self.dcmanager_ok(&all)?).map_err(err)
    }

    /// Waits until every subcloud is online and its kube-rootca sync status is known.
    pub fn wait_online(&self, timeout: Duration) -> Result<serde_json::Value> {
        let n = self.sites.len();
        let mut last = serde_json::Value::Null;
        wait_until(timeout, || {
            last = self.dcmanager_json(&["subcloud", "list"])?;
            Ok(last.as_array().is_some_and(|rows| {
                rows.len() == n
                    && rows
                        .iter()
                        .all(|r| r["availability"] == "online" && r["sync"] != "unknown")
            }))
        })
        .map_err(|e| FleetError(format!("{e}; last subcloud list: {last}")))?;
        Ok(last)
    }

    /// Waits until the strategy reaches one of `states` and returns it.
    pub fn wait_strategy(&self, states: &[&str], timeout: Duration) -> Result<serde_json::Value> {
        let mut last = serde_json::Value::Null;
        wait_until(timeout, || {
            last = self.dcmanager_json(&["kube-rootca-update-strategy", "show"])?;
            Ok(states.iter().any(|s| last["state"] == *s))
        })
        .map_err(|e| FleetError(format!("{e}; last strategy: {last}")))?;
        Ok(last)
    }

    /// Checks every host's `ca.crt` of site `i`: exactly one certificate; with `subject`, the new CA with
    /// that subject and `not_after`; without, not that subject. Returns the number of hosts checked.
    pub fn verify_site(
        &self,
        i: usize,
        expected: Option<(&str, i64)>,
        not_subject: &str,
    ) -> Result<usize> {
        let hosts = self.agent_data(i).join("cluster").join("hosts");
        let mut count = 0;
        for host in std::fs::read_dir(&hosts)
            .map_err(|e| FleetError(format!("{}: {e}", hosts.display())))?
        {
            let ca_crt = host.map_err(err)?.path().join("etc/kubernetes/pki/ca.crt");
            let pem = std::fs::read_to_string(&ca_crt)
                .map_err(|e| FleetError(format!("{}: {e}", ca_crt.display())))?;
            let certs = dc_certs::pem_certificates(&pem).map_err(err)?;
            if certs.len() != 1 {
                return Err(FleetError(format!(
                    "{} holds {} certificates, not one",
                    ca_crt.display(),
                    certs.len()
                )));
            }
            let ca = CertSummary::from_der(&certs[0]).map_err(err)?;
            match expected {
                Some((subject, not_after))
                    if ca.subject != subject || ca.not_after != not_after =>
                {
                    return Err(FleetError(format!(
                        "{} holds '{}' expiring {}, not '{subject}' expiring {not_after}",
                        ca_crt.display(),
                        ca.subject,
                        ca.not_after
                    )));
                }
                None if ca.subject == not_subject => {
                    return Err(FleetError(format!(
                        "{} was updated although it was not targeted",
                        ca_crt.display()
                    )));
                }
                _ => {}
            }
            count += 1;
        }
        if count == 0 {
            return Err(FleetError(format!("no hosts under {}", hosts.display())));
        }
        Ok(count)
    }
}

/// Polls `done` until it holds or `timeout` passes. The fleet's processes are other programs, so their
/// state is observed through the API; there is no in-process event to await.
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match done() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_error = Some(e),
        }
        if Instant::now() > deadline {
            return Err(FleetError(format!(
                "timed out after {timeout:?}{}",
                last_error
                    .map(|e| format!(" (last error: {e})"))
                    .unwrap_or_default()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn write_toml(path: &Path, config: &impl serde::Serialize) -> Result<()> {
    let text = toml::to_string(config).map_err(err)?;
    std::fs::write(path, text).map_err(err)
}

/// The `[cluster]` table a site gives as TOML text.
#[derive(serde::Deserialize)]
struct ClusterTable {
    cluster: ClusterConfig,
}

/// An agent's configuration for `site` in `dir`, pointed at `controller`: quick reconnects and polls,
/// short phase timeouts.
fn agent_config(
    site: &Site,
    dir: &Path,
    controller: &str,
    standbys: &[String],
) -> Result<AgentConfig> {
    let cluster = match &site.cluster {
        Some(table) => {
            toml::from_str::<ClusterTable>(table)
                .map_err(|e| FleetError(format!("{}'s [cluster]: {e}", site.name)))?
                .cluster
        }
        None => ClusterConfig::Simulated(simulated(site)),
    };
    let tls = dir.join("tls");
    Ok(AgentConfig {
        subcloud: site.name.clone(),
        controller: AgentController {
            address: controller.to_owned(),
            addresses: standbys.to_vec(),
            server_name: "localhost".to_owned(),
            connect_timeout_secs: 10,
        },
        tls: TlsConfig {
            ca: tls.join("ca.crt"),
            cert: tls.join("agent.crt"),
            key: tls.join("agent.key"),
        },
        data_dir: dir.join("data"),
        root_ca_expiring_days: 30,
        reconnect: ReconnectConfig {
            initial_secs: 0.2,
            max_secs: 1.0,
            ..ReconnectConfig::default()
        },
        pods: PodsConfig {
            poll_ms: 50,
            ..PodsConfig::default()
        },
        phase_timeout_secs: site.phase_timeout_secs,
        component_timeout_secs: site.component_timeout_secs,
        cluster,
    })
}

/// The simulated cluster of a site: its shape, its CA's age and its faults.
fn simulated(site: &Site) -> SimConfig {
    let mut sim = site.shape.sim_config();
    sim.root_ca_expiry_days = site.ca_days;
    sim.faults.never_ready = site.never_ready.clone();
    sim.faults.slow_phase = (site.slow_pods_ms > 0).then_some(SlowPhase {
        phase: site.slow_phase,
        delay_ms: site.slow_pods_ms,
    });
    sim
}
