//! A real Kubernetes 1.20 control plane for the tests of the agent's `kubernetes` backend: etcd,
//! kube-apiserver, kube-controller-manager and kube-scheduler built from Debian's `kubernetes` source
//! package (`tests/kubeadm/build-control-plane.sh`), started as a kubelet starts kubeadm's static pods
//! ([`crate::static_pods`]) from manifests in a kubeadm-like host laid out in a temporary directory
//! ([`layout`]), with what `kubeadm init` creates in the API ([`bootstrap`]) and a stand-in kubelet
//! per host ([`crate::stand_in_kubelet`]): `controller-0` runs everything, `worker-0` only a kubelet
//! and is reached by the agent through `via = ["env", "DC_HOST=worker-0", "sh", "-c"]`, as ssh would.
//!
//! The binaries are found in `DC_KUBE_BIN`, else in the build script's cache
//! (`${DC_ROOTCA_CACHE:-~/.cache/dc-rootca}/kubernetes-1.20.2/bin`); when absent the script builds them
//! (once per machine: it holds a lock, so concurrent tests wait for one build). Everything is stopped
//! when the value is dropped; after a failing test the directory is kept for its logs.

pub mod bootstrap;
pub mod layout;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use dc_agent::cluster::HostRole;
use kube::Client;

pub use layout::HostLayout;

use crate::fleet::wait_until;
use crate::process::bin_path;

/// The binaries `build-control-plane.sh` builds.
pub const KUBE_COMPONENTS: [&str; 3] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];
/// The static pods of a controller, in the order they start.
pub const STATIC_PODS: [&str; 4] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];
/// Longest wait for the control plane to come up (a first start on a loaded 2-core machine).
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// Errors starting or reading the control plane; each says which component and where its log is.
#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    #[error("the Kubernetes binaries: {0}")]
    Binaries(String),
    #[error("laying out the host: {0}")]
    Layout(String),
    #[error("{component}: {reason} (log: {log})")]
    Component {
        component: String,
        reason: String,
        log: PathBuf,
    },
    #[error("Kubernetes API: {0}")]
    Api(String),
    #[error("the tokio runtime: {0}")]
    Runtime(std::io::Error),
}

/// The ports the control plane listens on, all on 127.0.0.1, all free when chosen.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub apiserver: u16,
    pub controller_manager: u16,
    pub scheduler: u16,
    pub etcd_client: u16,
    pub etcd_peer: u16,
}

impl Ports {
    /// Five ports the kernel picks; the listeners are held until all are picked, so they differ.
    fn pick() -> Result<Self, ControlPlaneError> {
        let listeners = (0..5)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ControlPlaneError::Layout(format!("free ports: {e}")))?;
        let port = |i: usize| listeners[i].local_addr().map_or(0, |a| a.port());
        Ok(Self {
            apiserver: port(0),
            controller_manager: port(1),
            scheduler: port(2),
            etcd_client: port(3),
            etcd_peer: port(4),
        })
    }

    /// The API server's URL, as every kubeconfig names it.
    pub fn server(&self) -> String {
        format!("https://127.0.0.1:{}", self.apiserver)
    }

    fn etcd(&self) -> String {
        format!("http://127.0.0.1:{}", self.etcd_client)
    }
}

/// A running control plane; see the module documentation.
pub struct ControlPlane {
    pub ports: Ports,
    /// `controller-0` first, then `worker-0`.
    pub hosts: Vec<HostLayout>,
    /// Where the Kubernetes binaries are.
    pub kube_bin: PathBuf,
    /// The cluster CA the layout was made with.
    pub original_ca_pem: String,
    runtime: tokio::runtime::Runtime,
    dir: Option<tempfile::TempDir>,
}

impl ControlPlane {
    /// Lays out `controller-0` and `worker-0`, starts etcd, the control plane and both kubelets,
    /// creates kubeadm's objects, and returns once both nodes are Ready and the controller-manager
    /// has published the service-account credentials pods need.
    pub fn start() -> Result<Self, ControlPlaneError> {
        let kube_bin = kube_binaries()?;
        let etcd = on_path("etcd").ok_or_else(|| {
            ControlPlaneError::Binaries(
                "no etcd on the PATH (tests/kubeadm/build-control-plane.sh installs etcd-server)"
                    .to_owned(),
            )
        })?;
        let kubelet = own_binary("dc-stand-in-kubelet")?;
        own_binary("dc-static-pods")?;
        let dir = tempfile::tempdir().map_err(|e| ControlPlaneError::Layout(e.to_string()))?;
        let host = |name: &str, role| HostLayout {
            name: name.to_owned(),
            role,
            root: dir.path().join("hosts").join(name),
        };
        let hosts = vec![
            host("controller-0", HostRole::Controller),
            host("worker-0", HostRole::Worker),
        ];
        let ports = Ports::pick()?;
        let cas = layout::Authorities::generate(10)?;
        layout::controller(&hosts[0], &cas, &ports, &etcd, &kubelet)?;
        layout::worker(&hosts[1], &cas, &ports, &kubelet)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ControlPlaneError::Runtime)?;
        let plane = Self {
            ports,
            hosts,
            kube_bin,
            original_ca_pem: cas.ca.cert_pem().to_owned(),
            runtime,
            dir: Some(dir),
        };
        for component in STATIC_PODS {
            plane.runner_command("start", component, "controller-0")?;
        }
        plane.wait_healthy("kube-apiserver", "controller-0")?;
        let admin = plane.admin_client()?;
        plane.block_on(bootstrap::kubeadm_objects(
            admin.clone(),
            &ports.server(),
            &plane.original_ca_pem,
        ))?;
        for host in ["controller-0", "worker-0"] {
            plane.runner_command("start", "kubelet", host)?;
        }
        plane.wait_healthy("kube-controller-manager", "controller-0")?;
        plane.wait_healthy("kube-scheduler", "controller-0")?;
        plane.block_on(bootstrap::wait_ready(
            admin,
            &["controller-0", "worker-0"],
            START_TIMEOUT,
        ))?;
        Ok(plane)
    }

    /// The temporary root of every host.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().map_or(Path::new(""), |d| d.path())
    }

    pub fn host(&self, name: &str) -> &HostLayout {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name} in the control plane"))
    }

    /// `controller-0`'s admin.conf: the agent's kubeconfig and the tests' credentials.
    pub fn admin_conf(&self) -> PathBuf {
        self.hosts[0].kubernetes_dir().join("admin.conf")
    }

    /// Runs a future on the control plane's runtime (its clients live there).
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// A client with the credentials of the kubeconfig `text`.
    pub fn client_of(&self, text: &str) -> Result<Client, ControlPlaneError> {
        self.block_on(connect(text))
    }

    /// A client with admin.conf's credentials as they are now.
    pub fn admin_client(&self) -> Result<Client, ControlPlaneError> {
        let path = self.admin_conf();
        let text = std::fs::read_to_string(&path)
            .map_err(|e| ControlPlaneError::Api(format!("{}: {e}", path.display())))?;
        self.client_of(&text)
    }

    /// The agent's `[cluster]` table for this control plane: the API through admin.conf, both hosts
    /// (`worker-0` through its `via`), and the runner as every component's restart command.
    pub fn agent_cluster(&self) -> String {
        let mut table = format!(
            "[cluster]\nkind = \"kubernetes\"\nkubeconfig = \"{}\"\napi_retry_secs = 60\ncommand_timeout_secs = 60\n",
            self.admin_conf().display()
        );
        for host in &self.hosts {
            let role = match host.role {
                HostRole::Controller => "controller",
                HostRole::Worker => "worker",
            };
            table.push_str(&format!(
                "[[cluster.hosts]]\nname = \"{}\"\nrole = \"{role}\"\nkubernetes_dir = \"{}\"\nkubelet_pki_dir = \"{}\"\n",
                host.name,
                host.kubernetes_dir().display(),
                host.kubelet_pki_dir().display(),
            ));
            if host.name != "controller-0" {
                table.push_str(&format!(
                    "via = [\"env\", \"DC_HOST={}\", \"sh\", \"-c\"]\n",
                    host.name
                ));
            }
        }
        const COMPONENTS: [(&str, &str); 4] = [
            ("apiserver", "kube-apiserver"),
            ("controller_manager", "kube-controller-manager"),
            ("scheduler", "kube-scheduler"),
            ("kubelet", "kubelet"),
        ];
        table.push_str("[cluster.restart]\n");
        for (key, component) in COMPONENTS {
            table.push_str(&format!("{key} = '{}'\n", self.restart_command(component)));
        }
        table.push_str("[cluster.health]\n");
        for (key, component) in COMPONENTS {
            table.push_str(&format!("{key} = '{}'\n", self.health_command(component)));
        }
        table
    }

    /// The shell command line that restarts `component` on the host the agent runs it on (`DC_HOST`,
    /// set by a worker's `via`; the agent's own host is `controller-0`), as the agent's
    /// `[cluster.restart]` gives it.
    pub fn restart_command(&self, component: &str) -> String {
        self.runner_line("restart", component)
    }

    /// A shell command line that exits 0 only while `component` is healthy on the host it runs on:
    /// the API server's `/readyz`, the controller-manager's and scheduler's `/healthz` on their
    /// secure ports (anonymous access to them is kubeadm's default), the kubelet's process running.
    pub fn health_command(&self, component: &str) -> String {
        let port = match component {
            "kube-apiserver" => Some((self.ports.apiserver, "readyz")),
            "kube-controller-manager" => Some((self.ports.controller_manager, "healthz")),
            "kube-scheduler" => Some((self.ports.scheduler, "healthz")),
            _ => None,
        };
        match port {
            Some((port, path)) => {
                format!("curl -fsSk --max-time 5 https://127.0.0.1:{port}/{path}")
            }
            None => self.runner_line("status", component),
        }
    }

    fn runner_line(&self, action: &str, component: &str) -> String {
        let host = format!("{}/hosts/${{DC_HOST:-controller-0}}", self.dir().display());
        let manifests = if component == "kubelet" {
            format!("{host}/units")
        } else {
            format!("{host}/etc/kubernetes/manifests")
        };
        format!(
            "{runner} {action} {component} --manifests {manifests} --bin {bin} --state {host}/run",
            runner = bin_path("dc-static-pods").display(),
            bin = self.kube_bin.display(),
        )
    }

    /// Runs the runner's `action` for `component` on `host` as the agent would.
    fn runner_command(
        &self,
        action: &str,
        component: &str,
        host: &str,
    ) -> Result<(), ControlPlaneError> {
        let out = Command::new("sh")
            .arg("-c")
            .arg(self.runner_line(action, component))
            .env("DC_HOST", host)
            .output()
            .map_err(|e| self.component_error(component, host, &e.to_string()))?;
        if out.status.success() {
            return Ok(());
        }
        Err(self.component_error(component, host, String::from_utf8_lossy(&out.stderr).trim()))
    }

    fn component_error(&self, component: &str, host: &str, reason: &str) -> ControlPlaneError {
        ControlPlaneError::Component {
            component: format!("{component} on {host}"),
            reason: reason.to_owned(),
            log: self.log(host, component),
        }
    }

    /// Whether `component`'s health command succeeds on `host` now.
    pub fn healthy(&self, component: &str, host: &str) -> bool {
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{} >/dev/null 2>&1",
                self.health_command(component)
            ))
            .env("DC_HOST", host)
            .status()
            .is_ok_and(|s| s.success())
    }

    fn wait_healthy(&self, component: &str, host: &str) -> Result<(), ControlPlaneError> {
        wait_until(START_TIMEOUT, || Ok(self.healthy(component, host)))
            .map_err(|e| self.component_error(component, host, &format!("not healthy: {e}")))
    }

    /// The log of `component` (`kube-apiserver`, `kubelet`, ...) on `host`.
    pub fn log(&self, host: &str, component: &str) -> PathBuf {
        self.host(host).run().join(format!("{component}.log"))
    }

    /// The pods `host`'s kubelet started, oldest first, with the trust bundle each mounted.
    pub fn pod_records(
        &self,
        host: &str,
    ) -> Result<Vec<crate::stand_in_kubelet::PodRecord>, ControlPlaneError> {
        crate::stand_in_kubelet::read_records(&self.host(host).kubelet_state())
            .map_err(|e| ControlPlaneError::Api(e.to_string()))
    }

    /// Renews `host`'s kubelet client certificate as client-go would (a separate process with the
    /// kubelet's credentials); returns the new certificate's issuer, or the command's error output.
    pub fn rotate_kubelet(&self, host: &str) -> Result<String, String> {
        let layout = self.host(host);
        let out = Command::new(bin_path("dc-stand-in-kubelet"))
            .arg("rotate")
            .arg("--kubeconfig")
            .arg(layout.kubernetes_dir().join("kubelet.conf"))
            .arg("--node-name")
            .arg(host)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    /// Completes a TLS handshake with the API server trusting only `ca_pem`: `Ok` when the server's
    /// certificate chains to it, the TLS error otherwise.
    pub fn serving_certificate_chains_to(&self, ca_pem: &str) -> Result<(), String> {
        let mut roots = rustls::RootCertStore::empty();
        for der in dc_certs::pem_certificates(ca_pem).map_err(|e| e.to_string())? {
            roots.add(der.into()).map_err(|e| e.to_string())?;
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
        let mut conn =
            rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
        let mut socket = std::net::TcpStream::connect(("127.0.0.1", self.ports.apiserver))
            .map_err(|e| e.to_string())?;
        while conn.is_handshaking() {
            conn.complete_io(&mut socket).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        for host in self.hosts.iter().rev() {
            let runner = host.runner(host.manifests(), &self.kube_bin);
            for component in runner.recorded() {
                let _ = runner.stop(&component);
            }
        }
        // A failing test's message names files under the directory: keep them for reading.
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            let _ = dir.keep();
        }
    }
}

/// A client with the credentials of the kubeconfig `text`, for code already running on the runtime
/// (where [`ControlPlane::client_of`] cannot block).
pub async fn connect(text: &str) -> Result<Client, ControlPlaneError> {
    let api = |e: &dyn std::fmt::Display| ControlPlaneError::Api(e.to_string());
    let parsed = kube::config::Kubeconfig::from_yaml(text).map_err(|e| api(&e))?;
    let config = kube::Config::from_custom_kubeconfig(parsed, &Default::default())
        .await
        .map_err(|e| api(&e))?;
    Client::try_from(config).map_err(|e| api(&e))
}

/// The directory of the three Kubernetes binaries: `DC_KUBE_BIN`, else the build script's cache,
/// built there first when missing (the script takes a lock, so concurrent callers build once).
fn kube_binaries() -> Result<PathBuf, ControlPlaneError> {
    let complete = |dir: &Path| KUBE_COMPONENTS.iter().all(|c| dir.join(c).is_file());
    if let Some(dir) = std::env::var_os("DC_KUBE_BIN").map(PathBuf::from) {
        return if complete(&dir) {
            Ok(dir)
        } else {
            Err(ControlPlaneError::Binaries(format!(
                "DC_KUBE_BIN={} lacks one of {KUBE_COMPONENTS:?}",
                dir.display()
            )))
        };
    }
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/kubeadm/build-control-plane.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .map_err(|e| ControlPlaneError::Binaries(format!("{}: {e}", script.display())))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dir = stdout.lines().last().map(PathBuf::from).unwrap_or_default();
    if out.status.success() && complete(&dir) {
        return Ok(dir);
    }
    Err(ControlPlaneError::Binaries(format!(
        "{} failed ({}): {}",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

/// A binary of this crate, built beside the test (`cargo build --bins`, which `cargo test --workspace`
/// does first).
fn own_binary(name: &str) -> Result<PathBuf, ControlPlaneError> {
    let path = bin_path(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(ControlPlaneError::Binaries(format!(
            "{} is missing: build it first (cargo build -p dc-test-support --bins)",
            path.display()
        )))
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}
