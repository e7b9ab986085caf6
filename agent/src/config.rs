//! The agent's configuration: a TOML file plus `DC_AGENT__...` environment variables (`__` separates
//! levels, e.g. `DC_AGENT__CONTROLLER__ADDRESS`), read by the loader the controller shares
//! (`dc-config`). Unknown keys are refused by name; `Serialize` lets tests build a config as a value
//! and write it for an agent process.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::kube::KubernetesConfig;
use crate::sim::SimConfig;

pub use dc_config::ConfigError;

/// Everything one agent needs. Many agents may run in one process, each with its own config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The subcloud this agent serves; must match the CN of its certificate.
    pub subcloud: String,
    /// Where the controller listens.
    pub controller: ControllerConfig,
    /// The agent's mutual-TLS material.
    pub tls: TlsConfig,
    /// Where the update record, the new CA key and (for a simulated cluster) the cluster live. Kept
    /// across restarts: it is what makes the update resumable.
    pub data_dir: PathBuf,
    /// Raise alarm 500.200 when the cluster's root CA expires within this many days.
    #[serde(default = "default_expiring_days")]
    pub root_ca_expiring_days: u32,
    /// How the agent redials a lost controller.
    #[serde(default)]
    pub reconnect: ReconnectConfig,
    /// The pods phases.
    #[serde(default)]
    pub pods: PodsConfig,
    /// Longest a single phase may take, in seconds, before it fails (and stays resumable).
    #[serde(default = "default_phase_timeout_secs")]
    pub phase_timeout_secs: u64,
    /// Longest a restarted component (apiserver, controller-manager, scheduler, kubelet) may take to
    /// serve again before its phase fails naming it, in seconds.
    #[serde(default = "default_component_timeout_secs")]
    pub component_timeout_secs: u64,
    /// The cluster the agent acts on.
    pub cluster: ClusterConfig,
}

fn default_expiring_days() -> u32 {
    30
}
fn default_phase_timeout_secs() -> u64 {
    1800
}
fn default_component_timeout_secs() -> u64 {
    300
}

/// The controller's address, or the addresses of controllers of which one leads.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerConfig {
    /// `host:port` of the controller's agent listener, e.g. `127.0.0.1:7443`.
    #[serde(default)]
    pub address: String,
    /// More controllers' agent listeners (high availability, one leader among them): the agent dials
    /// `address` (when set) then these in turn, moving on from one that cannot be reached or that
    /// answers "not the leader".
    #[serde(default)]
    pub addresses: Vec<String>,
    /// The name the controller's certificate must carry.
    #[serde(default = "default_server_name")]
    pub server_name: String,
    /// Longest time from dialling to the controller's Welcome (TCP connect, TLS handshake, Hello): a
    /// controller that accepts and then says nothing is left and redialled.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
}

impl ControllerConfig {
    /// Every address to try, in order: `address`, then `addresses`, without blanks or repeats.
    pub fn all_addresses(&self) -> Vec<&str> {
        let mut all: Vec<&str> = Vec::new();
        for a in std::iter::once(&self.address).chain(&self.addresses) {
            let a = a.trim();
            if !a.is_empty() && !all.contains(&a) {
                all.push(a);
            }
        }
        all
    }
}

fn default_server_name() -> String {
    "localhost".to_owned()
}

fn default_connect_timeout() -> u64 {
    10
}

/// The agent's certificate files (from `dc-certs issue-agent`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The system CA, the only CA the agent trusts for the controller.
    pub ca: PathBuf,
    /// The agent's client certificate (CN = subcloud).
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

/// Capped exponential backoff with jitter, so thousands of agents do not redial in lockstep.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconnectConfig {
    /// First delay, seconds.
    #[serde(default = "default_initial")]
    pub initial_secs: f64,
    /// Largest delay, seconds.
    #[serde(default = "default_max")]
    pub max_secs: f64,
    /// Share of each delay drawn at random (0 = none, 1 = anywhere from 0 to the delay).
    #[serde(default = "default_jitter")]
    pub jitter: f64,
}

fn default_initial() -> f64 {
    0.5
}
fn default_max() -> f64 {
    30.0
}
fn default_jitter() -> f64 {
    0.5
}

impl Default for ReconnectConfig {
    fn default() -> Self {
        Self {
            initial_secs: default_initial(),
            max_secs: default_max(),
            jitter: default_jitter(),
        }
    }
}

/// The pods phases' settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodsConfig {
    /// Workloads restarted at the same time.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Namespaces whose workloads are left alone.
    #[serde(default)]
    pub exclude_namespaces: Vec<String>,
    /// How often a rollout's status is read while waiting, milliseconds.
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
}

fn default_concurrency() -> usize {
    4
}
fn default_poll_ms() -> u64 {
    1000
}

impl Default for PodsConfig {
    fn default() -> Self {
        Self {
            concurrency: default_concurrency(),
            exclude_namespaces: Vec::new(),
            poll_ms: default_poll_ms(),
        }
    }
}

/// Which cluster backend the agent drives.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ClusterConfig {
    /// A simulated cluster in `data_dir/cluster` (`kind = "simulated"` plus [`SimConfig`]'s fields).
    Simulated(SimConfig),
    /// A real kubeadm cluster (`kind = "kubernetes"` plus [`KubernetesConfig`]'s fields).
    Kubernetes(KubernetesConfig),
}

impl AgentConfig {
    /// Loads a TOML file overlaid with `DC_AGENT__...` environment variables
    /// (`DC_AGENT__CONTROLLER__ADDRESSES=a:1,b:2` for the list), and refuses one that names no
    /// controller to dial.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let config: Self = dc_config::load(file, "DC_AGENT", &["controller.addresses"])?;
        if config.controller.all_addresses().is_empty() {
            return Err(ConfigError::invalid(
                file,
                "[controller] names no controller: set `address` or `addresses`",
            ));
        }
        Ok(config)
    }

    /// The per-phase timeout.
    pub fn phase_timeout(&self) -> Duration {
        Duration::from_secs(self.phase_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_naming_no_controller_is_refused_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("agent.toml");
        let toml = |controller: &str| {
            format!(
                "subcloud = \"subcloud1\"\ndata_dir = \"/var/lib/dc-agent\"\n[controller]\n{controller}\n\
                 [tls]\nca = \"ca.crt\"\ncert = \"agent.crt\"\nkey = \"agent.key\"\n\
                 [cluster]\nkind = \"simulated\"\n"
            )
        };
        for empty in ["", "addresses = []", "address = \" \"\naddresses = [\"\"]"] {
            std::fs::write(&file, toml(empty)).unwrap();
            let e = AgentConfig::load(&file).expect_err("refused");
            assert!(
                e.to_string()
                    .contains("names no controller: set `address` or `addresses`"),
                "{e}"
            );
        }
        std::fs::write(&file, toml("addresses = [\"a:1\", \"b:2\"]")).unwrap();
        let config = AgentConfig::load(&file).unwrap();
        assert_eq!(config.controller.all_addresses(), ["a:1", "b:2"]);
    }

    #[test]
    fn loads_toml_with_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("agent.toml");
        std::fs::write(
            &file,
            r#"
subcloud = "subcloud1"
data_dir = "/var/lib/dc-agent"
[controller]
address = "127.0.0.1:7443"
[tls]
ca = "ca.crt"
cert = "agent.crt"
key = "agent.key"
[pods]
exclude_namespaces = ["kube-system"]
[cluster]
kind = "simulated"
controllers = 2
workers = 1
[[cluster.workloads]]
kind = "StatefulSet"
namespace = "db"
name = "pg"
replicas = 2
strategy = { type = "OnDelete" }
labels = { app = "pg" }
[cluster.faults]
never_ready = ["db/pg"]
"#,
        )
        .unwrap();
        let config = AgentConfig::load(&file).unwrap();
        assert_eq!(config.controller.server_name, "localhost");
        assert_eq!(config.root_ca_expiring_days, 30);
        assert_eq!(config.reconnect.initial_secs, 0.5);
        assert_eq!(config.pods.exclude_namespaces, ["kube-system"]);
        let ClusterConfig::Simulated(sim) = config.cluster else {
            panic!("simulated config expected");
        };
        assert_eq!((sim.controllers, sim.workers), (2, 1));
        assert_eq!(sim.workloads[0].replicas, 2);
        assert_eq!(sim.faults.never_ready, ["db/pg"]);
    }

    const MINIMAL: &str = r#"
subcloud = "subcloud1"
data_dir = "/var/lib/dc-agent"
[controller]
address = "127.0.0.1:7443"
[tls]
ca = "ca.crt"
cert = "agent.crt"
key = "agent.key"
[cluster]
kind = "simulated"
"#;

    #[test]
    fn an_unknown_section_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("agent.toml");
        std::fs::write(&file, format!("{MINIMAL}[apii]\nlisten = \"x\"\n")).unwrap();
        let e = AgentConfig::load(&file).expect_err("an unknown section must be refused");
        assert!(e.to_string().contains("unknown field `apii`"), "{e}");
    }

    #[test]
    fn a_config_serialized_to_toml_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("agent.toml");
        std::fs::write(&file, MINIMAL).unwrap();
        let mut config = AgentConfig::load(&file).unwrap();
        config.pods.poll_ms = 50;
        config.reconnect.max_secs = 1.0;
        std::fs::write(&file, toml::to_string(&config).unwrap()).unwrap();
        let back = AgentConfig::load(&file).unwrap();
        assert_eq!((back.pods.poll_ms, back.reconnect.max_secs), (50, 1.0));
        assert!(matches!(back.cluster, ClusterConfig::Simulated(_)));
    }

    #[test]
    fn kubernetes_cluster_defaults_to_one_kubeadm_host() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("agent.toml");
        std::fs::write(
            &file,
            r#"
subcloud = "subcloud1"
data_dir = "/var/lib/dc-agent"
[controller]
address = "127.0.0.1:7443"
[tls]
ca = "ca.crt"
cert = "agent.crt"
key = "agent.key"
[cluster]
kind = "kubernetes"
"#,
        )
        .unwrap();
        let ClusterConfig::Kubernetes(k) = AgentConfig::load(&file).unwrap().cluster else {
            panic!("kubernetes config expected");
        };
        assert_eq!(k.kubeconfig, None, "in-cluster by default");
        let [host] = k.hosts.as_slice() else {
            panic!("one host by default: {:?}", k.hosts);
        };
        assert_eq!(
            (host.name.as_str(), host.role, host.via.len()),
            ("localhost", crate::cluster::HostRole::Controller, 0)
        );
        assert_eq!(host.kubernetes_dir, Path::new("/etc/kubernetes"));
        assert_eq!(host.kubelet_pki_dir, Path::new("/var/lib/kubelet/pki"));
        assert_eq!(k.restart.kubelet, "systemctl restart kubelet");
        assert!(k.restart.apiserver.contains("crictl"));
    }

    #[test]
    fn the_kubeadm_example_loads() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/agent-kubeadm.example.toml");
        let config = AgentConfig::load(&path).unwrap();
        let ClusterConfig::Kubernetes(k) = config.cluster else {
            panic!("kubernetes config expected");
        };
        assert_eq!(
            k.kubeconfig.as_deref(),
            Some(Path::new("/etc/kubernetes/admin.conf"))
        );
        assert_eq!(k.hosts.len(), 3);
        assert!(k.hosts[0].via.is_empty(), "the agent's own host is local");
        assert_eq!(k.hosts[1].via[0], "ssh");
        assert_eq!(k.hosts[2].role, crate::cluster::HostRole::Worker);
    }

    #[test]
    fn the_example_file_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("dc-agent.example.toml");
        let config = AgentConfig::load(&path).unwrap();
        let ClusterConfig::Simulated(sim) = config.cluster else {
            panic!("simulated config expected");
        };
        assert_eq!(sim.workloads.len(), 3);
    }
}
