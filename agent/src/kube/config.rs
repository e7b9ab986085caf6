//! `[cluster] kind = "kubernetes"`: a real kubeadm subcloud.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::cluster::{Component, HostRole};

/// How the agent reaches a real cluster: its API and its hosts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// The kubeconfig the agent uses for the API (kubeadm's `/etc/kubernetes/admin.conf` on a
    /// controller). Absent: the in-cluster service account. The update rewrites admin.conf's CA and
    /// client certificate as it goes, and the agent reloads it for every API call's client when it
    /// changes, so pointing at admin.conf itself is fine.
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// The hosts whose files the update rewrites; controllers first is not required (the agent sorts).
    #[serde(default = "default_hosts")]
    pub hosts: Vec<HostConfig>,
    /// The shell commands that restart each component on a host so it reloads its files.
    #[serde(default)]
    pub restart: RestartCommands,
    /// The shell commands that succeed once a restarted component serves again.
    #[serde(default)]
    pub health: HealthCommands,
    /// Longest one host command (read, write, restart, health check) may take, seconds.
    #[serde(default = "default_command_timeout_secs")]
    pub command_timeout_secs: u64,
    /// How long an API call is retried (with backoff) while the API server is unreachable or
    /// overloaded, e.g. while it restarts during a host phase, seconds.
    #[serde(default = "default_api_retry_secs")]
    pub api_retry_secs: u64,
}

fn default_command_timeout_secs() -> u64 {
    120
}
fn default_api_retry_secs() -> u64 {
    120
}

/// The all-in-one default: the agent's own host, a kubeadm controller.
fn default_hosts() -> Vec<HostConfig> {
    vec![HostConfig {
        name: "localhost".to_owned(),
        role: HostRole::Controller,
        via: Vec::new(),
        kubernetes_dir: default_kubernetes_dir(),
        kubelet_pki_dir: default_kubelet_pki_dir(),
    }]
}

/// One host of the subcloud.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// The name the update reports progress under (the node name, say).
    pub name: String,
    #[serde(default = "default_role")]
    pub role: HostRole,
    /// Empty: the agent's own host, whose files it reads and writes directly. Otherwise the command
    /// prefix that runs one shell command line on that host, given as the last argument, e.g.
    /// `["ssh", "-o", "BatchMode=yes", "controller-1"]` (ssh hands that line to the remote shell).
    #[serde(default)]
    pub via: Vec<String>,
    /// kubeadm's `/etc/kubernetes` on that host (the PKI, the kubeconfigs, the static-pod manifests).
    #[serde(default = "default_kubernetes_dir")]
    pub kubernetes_dir: PathBuf,
    /// The kubelet's `/var/lib/kubelet/pki` (its client certificate file, which kubelet.conf names).
    #[serde(default = "default_kubelet_pki_dir")]
    pub kubelet_pki_dir: PathBuf,
}

fn default_role() -> HostRole {
    HostRole::Controller
}
fn default_kubernetes_dir() -> PathBuf {
    PathBuf::from("/etc/kubernetes")
}
fn default_kubelet_pki_dir() -> PathBuf {
    PathBuf::from("/var/lib/kubelet/pki")
}

/// A shell command line per component, run on the component's host (through its `via`). The
/// defaults suit a kubeadm host with containerd: the kubelet is a systemd service; the control plane
/// runs as static pods, whose containers are stopped with crictl so the kubelet starts them again
/// with the new files (the kubelet itself restarts the controller-manager when its manifest changes,
/// stopping it as well is harmless).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartCommands {
    #[serde(default = "default_apiserver")]
    pub apiserver: String,
    #[serde(default = "default_controller_manager")]
    pub controller_manager: String,
    #[serde(default = "default_scheduler")]
    pub scheduler: String,
    #[serde(default = "default_kubelet")]
    pub kubelet: String,
}

fn stop_static_pod(container: &str) -> String {
    format!("crictl ps -q --name '^{container}$' | xargs -r crictl stop")
}
fn default_apiserver() -> String {
    stop_static_pod("kube-apiserver")
}
fn default_controller_manager() -> String {
    stop_static_pod("kube-controller-manager")
}
fn default_scheduler() -> String {
    stop_static_pod("kube-scheduler")
}
fn default_kubelet() -> String {
    "systemctl restart kubelet".to_owned()
}

impl Default for RestartCommands {
    fn default() -> Self {
        Self {
            apiserver: default_apiserver(),
            controller_manager: default_controller_manager(),
            scheduler: default_scheduler(),
            kubelet: default_kubelet(),
        }
    }
}

impl RestartCommands {
    /// The command that restarts `component`.
    pub fn of(&self, component: Component) -> &str {
        match component {
            Component::Apiserver => &self.apiserver,
            Component::ControllerManager => &self.controller_manager,
            Component::Scheduler => &self.scheduler,
            Component::Kubelet => &self.kubelet,
        }
    }
}

/// A shell command line per component, run on the component's host (through its `via`), that exits 0
/// only while the component serves: after a restart the phase runs it until it does, and fails naming
/// the component and the command's last output when it never does. Without this a crash-looping
/// controller-manager went unnoticed until a rollout timed out with a misleading reason. The
/// defaults ask kubeadm's health endpoints on the host itself: the apiserver's `/readyz` and the
/// controller-manager's and scheduler's `/healthz` on their secure ports (open to anonymous requests in
/// kubeadm's configuration), the kubelet's local `/healthz`. An empty command skips the check.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCommands {
    #[serde(default = "default_apiserver_health")]
    pub apiserver: String,
    #[serde(default = "default_controller_manager_health")]
    pub controller_manager: String,
    #[serde(default = "default_scheduler_health")]
    pub scheduler: String,
    #[serde(default = "default_kubelet_health")]
    pub kubelet: String,
}

fn curl(url: &str) -> String {
    format!("curl -fsS --insecure --max-time 5 {url}")
}
fn default_apiserver_health() -> String {
    curl("https://127.0.0.1:6443/readyz")
}
fn default_controller_manager_health() -> String {
    curl("https://127.0.0.1:10257/healthz")
}
fn default_scheduler_health() -> String {
    curl("https://127.0.0.1:10259/healthz")
}
fn default_kubelet_health() -> String {
    curl("http://127.0.0.1:10248/healthz")
}

impl Default for HealthCommands {
    fn default() -> Self {
        Self {
            apiserver: default_apiserver_health(),
            controller_manager: default_controller_manager_health(),
            scheduler: default_scheduler_health(),
            kubelet: default_kubelet_health(),
        }
    }
}

impl HealthCommands {
    /// The command that checks `component`; empty when it is not checked.
    pub fn of(&self, component: Component) -> &str {
        match component {
            Component::Apiserver => &self.apiserver,
            Component::ControllerManager => &self.controller_manager,
            Component::Scheduler => &self.scheduler,
            Component::Kubelet => &self.kubelet,
        }
    }
}
