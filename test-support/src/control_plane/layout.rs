//! A kubeadm 1.20 host laid out under a temporary directory instead of `/`: the PKI, kubeconfigs with
//! embedded credentials, `kubelet.conf` naming the symlinked `kubelet-client-current.pem`, and the
//! static-pod manifests with kubeadm 1.20's flags, every path the layout's real one. So the files are
//! not where kubeadm's defaults put them: a rotation that assumes `/etc/kubernetes` breaks here as it
//! would on any other layout.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use dc_agent::cluster::HostRole;
use dc_certs::leaf::{IssuedLeaf, LeafSpec};
use dc_certs::{CertifiedCa, KeyAlgorithm, UnixTime};

use super::{ControlPlaneError, Ports};
use crate::static_pods::Runner;

/// The Kubernetes version the manifests name (that of the binaries `build-control-plane.sh` builds).
pub const KUBERNETES_VERSION: &str = "v1.20.2";
/// kubeadm's default service range; its first address is the `kubernetes` Service.
const SERVICE_CIDR: &str = "10.96.0.0/12";

/// One host's root: `etc/kubernetes`, `var/lib/kubelet/pki`, `var/lib/etcd`, the kubelet's unit
/// (`units/kubelet.yaml`) and the runner's pid and log files (`run/`).
#[derive(Debug, Clone)]
pub struct HostLayout {
    pub name: String,
    pub role: HostRole,
    pub root: PathBuf,
}

impl HostLayout {
    pub fn kubernetes_dir(&self) -> PathBuf {
        self.root.join("etc/kubernetes")
    }
    pub fn kubelet_pki_dir(&self) -> PathBuf {
        self.root.join("var/lib/kubelet/pki")
    }
    /// Where the stand-in kubelet keeps its pod records.
    pub fn kubelet_state(&self) -> PathBuf {
        self.root.join("var/lib/kubelet")
    }
    pub fn pki(&self) -> PathBuf {
        self.kubernetes_dir().join("pki")
    }
    pub fn manifests(&self) -> PathBuf {
        self.kubernetes_dir().join("manifests")
    }
    pub fn units(&self) -> PathBuf {
        self.root.join("units")
    }
    pub fn run(&self) -> PathBuf {
        self.root.join("run")
    }
    /// The runner of the host's static pods (and, with `units()` as its manifests, of its kubelet).
    pub fn runner(&self, manifests: PathBuf, bin: &Path) -> Runner {
        Runner {
            manifests,
            bin: bin.to_owned(),
            state: self.run(),
        }
    }
}

/// The cluster's two CAs and when they were made.
pub struct Authorities {
    pub ca: CertifiedCa,
    pub front_proxy: CertifiedCa,
    pub now: UnixTime,
}

impl Authorities {
    /// A cluster CA expiring in `ca_days` (under the agent's 30-day threshold the subcloud is
    /// out-of-sync, so a strategy targets it) and a front-proxy CA.
    pub fn generate(ca_days: i64) -> Result<Self, ControlPlaneError> {
        let now = dc_certs::now();
        let dn = |cn: &str| {
            let mut dn = rcgen::DistinguishedName::new();
            dn.push(rcgen::DnType::CommonName, cn);
            dn
        };
        let ca = |cn: &str, days: i64| {
            CertifiedCa::generate(
                dn(cn),
                now - 86400,
                now + days * 86400,
                KeyAlgorithm::EcdsaP256,
            )
            .map_err(layout_error)
        };
        Ok(Self {
            ca: ca("kubernetes", ca_days)?,
            front_proxy: ca("front-proxy-ca", 3650)?,
            now,
        })
    }

    fn issue(&self, spec: &LeafSpec, front_proxy: bool) -> Result<IssuedLeaf, ControlPlaneError> {
        let ca = if front_proxy {
            &self.front_proxy
        } else {
            &self.ca
        };
        spec.issue(
            ca,
            self.now + dc_certs::leaf::MAX_LEAF_VALIDITY_SECS,
            self.now,
            KeyAlgorithm::EcdsaP256,
        )
        .map_err(layout_error)
    }
}

fn layout_error(e: impl std::fmt::Display) -> ControlPlaneError {
    ControlPlaneError::Layout(e.to_string())
}

fn write(path: &Path, contents: &str, mode: u32) -> Result<(), ControlPlaneError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| layout_error(format!("{}: {e}", dir.display())))?;
    }
    dc_certs::files::write_atomic(path, contents.as_bytes(), mode)
        .map_err(|e| layout_error(format!("{}: {e}", path.display())))
}

fn write_pair(pki: &Path, name: &str, leaf: &IssuedLeaf) -> Result<(), ControlPlaneError> {
    write(&pki.join(format!("{name}.crt")), &leaf.cert_pem, 0o644)?;
    write(&pki.join(format!("{name}.key")), &leaf.key_pem, 0o600)
}

/// Lays out a controller: the whole PKI, every kubeconfig, the four static-pod manifests (etcd too,
/// though the update never touches it) and the kubelet.
pub fn controller(
    host: &HostLayout,
    cas: &Authorities,
    ports: &Ports,
    etcd: &Path,
    kubelet: &Path,
) -> Result<(), ControlPlaneError> {
    let pki = host.pki();
    write(&pki.join("ca.crt"), cas.ca.cert_pem(), 0o644)?;
    write(&pki.join("ca.key"), &cas.ca.key_pem(), 0o600)?;
    write(
        &pki.join("front-proxy-ca.crt"),
        cas.front_proxy.cert_pem(),
        0o644,
    )?;
    write(
        &pki.join("front-proxy-ca.key"),
        &cas.front_proxy.key_pem(),
        0o600,
    )?;
    let loopback: IpAddr = [127, 0, 0, 1].into();
    let service: IpAddr = [10, 96, 0, 1].into();
    let apiserver = LeafSpec::server(
        "kube-apiserver",
        &[
            &host.name,
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "localhost",
        ],
        &[service, loopback],
    );
    write_pair(&pki, "apiserver", &cas.issue(&apiserver, false)?)?;
    let kubelet_client = LeafSpec::client("kube-apiserver-kubelet-client", &["system:masters"]);
    write_pair(
        &pki,
        "apiserver-kubelet-client",
        &cas.issue(&kubelet_client, false)?,
    )?;
    let front_proxy_client = LeafSpec::client("front-proxy-client", &[]);
    write_pair(
        &pki,
        "front-proxy-client",
        &cas.issue(&front_proxy_client, true)?,
    )?;
    // The service-account signing pair: a key, not a certificate.
    let sa = KeyAlgorithm::EcdsaP256.generate().map_err(layout_error)?;
    write(&pki.join("sa.key"), &sa.serialize_pem(), 0o600)?;
    write(&pki.join("sa.pub"), &sa.public_key_pem(), 0o644)?;

    let server = ports.server();
    for (file, cn, orgs) in [
        ("admin.conf", "kubernetes-admin", &["system:masters"][..]),
        (
            "controller-manager.conf",
            "system:kube-controller-manager",
            &[][..],
        ),
        ("scheduler.conf", "system:kube-scheduler", &[][..]),
    ] {
        let leaf = cas.issue(&LeafSpec::client(cn, orgs), false)?;
        let text = dc_agent::kubeconfig::render(
            &server,
            cn,
            cas.ca.cert_pem(),
            &leaf.cert_pem,
            &leaf.key_pem,
        );
        write(&host.kubernetes_dir().join(file), &text, 0o600)?;
    }
    kubelet_files(host, cas, ports)?;

    let manifests = host.manifests();
    let k8s = host.kubernetes_dir();
    let p = |name: &str| pki.join(name).display().to_string();
    let conf = |name: &str| k8s.join(name).display().to_string();
    let etcd_data = host.root.join("var/lib/etcd");
    let peer = format!("http://127.0.0.1:{}", ports.etcd_peer);
    let etcd_command = vec![
        etcd.display().to_string(),
        format!("--name={}", host.name),
        format!("--data-dir={}", etcd_data.display()),
        format!("--listen-client-urls={}", ports.etcd()),
        format!("--advertise-client-urls={}", ports.etcd()),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster={}={peer}", host.name),
        "--snapshot-count=10000".to_owned(),
    ];
    write(
        &manifests.join("etcd.yaml"),
        &manifest("etcd", &etcd_command),
        0o644,
    )?;
    let apiserver = flags(
        "kube-apiserver",
        &[
            ("advertise-address", "127.0.0.1".to_owned()),
            ("allow-privileged", "true".to_owned()),
            ("authorization-mode", "Node,RBAC".to_owned()),
            ("bind-address", "127.0.0.1".to_owned()),
            ("client-ca-file", p("ca.crt")),
            ("enable-admission-plugins", "NodeRestriction".to_owned()),
            ("enable-bootstrap-token-auth", "true".to_owned()),
            ("etcd-servers", ports.etcd()),
            ("insecure-port", "0".to_owned()),
            (
                "kubelet-client-certificate",
                p("apiserver-kubelet-client.crt"),
            ),
            ("kubelet-client-key", p("apiserver-kubelet-client.key")),
            (
                "kubelet-preferred-address-types",
                "InternalIP,ExternalIP,Hostname".to_owned(),
            ),
            ("proxy-client-cert-file", p("front-proxy-client.crt")),
            ("proxy-client-key-file", p("front-proxy-client.key")),
            (
                "requestheader-allowed-names",
                "front-proxy-client".to_owned(),
            ),
            ("requestheader-client-ca-file", p("front-proxy-ca.crt")),
            (
                "requestheader-extra-headers-prefix",
                "X-Remote-Extra-".to_owned(),
            ),
            ("requestheader-group-headers", "X-Remote-Group".to_owned()),
            ("requestheader-username-headers", "X-Remote-User".to_owned()),
            ("secure-port", ports.apiserver.to_string()),
            (
                "service-account-issuer",
                "https://kubernetes.default.svc.cluster.local".to_owned(),
            ),
            ("service-account-key-file", p("sa.pub")),
            ("service-account-signing-key-file", p("sa.key")),
            ("service-cluster-ip-range", SERVICE_CIDR.to_owned()),
            ("tls-cert-file", p("apiserver.crt")),
            ("tls-private-key-file", p("apiserver.key")),
        ],
    );
    write(
        &manifests.join("kube-apiserver.yaml"),
        &manifest("kube-apiserver", &apiserver),
        0o644,
    )?;
    let controller_manager = flags(
        "kube-controller-manager",
        &[
            ("authentication-kubeconfig", conf("controller-manager.conf")),
            ("authorization-kubeconfig", conf("controller-manager.conf")),
            ("bind-address", "127.0.0.1".to_owned()),
            ("client-ca-file", p("ca.crt")),
            ("cluster-name", "kubernetes".to_owned()),
            ("cluster-signing-cert-file", p("ca.crt")),
            ("cluster-signing-key-file", p("ca.key")),
            ("controllers", "*,bootstrapsigner,tokencleaner".to_owned()),
            ("kubeconfig", conf("controller-manager.conf")),
            ("leader-elect", "true".to_owned()),
            ("port", "0".to_owned()),
            ("requestheader-client-ca-file", p("front-proxy-ca.crt")),
            ("root-ca-file", p("ca.crt")),
            ("secure-port", ports.controller_manager.to_string()),
            ("service-account-private-key-file", p("sa.key")),
            ("service-cluster-ip-range", SERVICE_CIDR.to_owned()),
            ("use-service-account-credentials", "true".to_owned()),
        ],
    );
    write(
        &manifests.join("kube-controller-manager.yaml"),
        &manifest("kube-controller-manager", &controller_manager),
        0o644,
    )?;
    let scheduler = flags(
        "kube-scheduler",
        &[
            ("authentication-kubeconfig", conf("scheduler.conf")),
            ("authorization-kubeconfig", conf("scheduler.conf")),
            ("bind-address", "127.0.0.1".to_owned()),
            ("kubeconfig", conf("scheduler.conf")),
            ("leader-elect", "true".to_owned()),
            ("port", "0".to_owned()),
            ("secure-port", ports.scheduler.to_string()),
        ],
    );
    write(
        &manifests.join("kube-scheduler.yaml"),
        &manifest("kube-scheduler", &scheduler),
        0o644,
    )?;
    kubelet_unit(host, kubelet)
}

/// Lays out a worker: the cluster CA, `kubelet.conf` and the kubelet's certificate, the kubelet.
pub fn worker(
    host: &HostLayout,
    cas: &Authorities,
    ports: &Ports,
    kubelet: &Path,
) -> Result<(), ControlPlaneError> {
    write(&host.pki().join("ca.crt"), cas.ca.cert_pem(), 0o644)?;
    kubelet_files(host, cas, ports)?;
    kubelet_unit(host, kubelet)
}

/// `kubelet.conf` as it is after the kubelet's TLS bootstrap: the CA embedded, the credentials in
/// `kubelet-client-current.pem` (certificate and key in one file), a symlink to a dated file.
fn kubelet_files(
    host: &HostLayout,
    cas: &Authorities,
    ports: &Ports,
) -> Result<(), ControlPlaneError> {
    let user = format!("system:node:{}", host.name);
    let leaf = cas.issue(&LeafSpec::client(&user, &["system:nodes"]), false)?;
    let pki = host.kubelet_pki_dir();
    let dated =
        crate::stand_in_kubelet::rotate::dated_client_file(&pki, cas.now).map_err(layout_error)?;
    write(&dated, &format!("{}{}", leaf.cert_pem, leaf.key_pem), 0o600)?;
    let current = pki.join("kubelet-client-current.pem");
    std::os::unix::fs::symlink(&dated, &current)
        .map_err(|e| layout_error(format!("{}: {e}", current.display())))?;
    let ca_data = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        cas.ca.cert_pem(),
    );
    let text = format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {ca_data}\n    server: {server}\n  name: default-cluster\ncontexts:\n- context:\n    cluster: default-cluster\n    namespace: default\n    user: default-auth\n  name: default-context\ncurrent-context: default-context\nkind: Config\npreferences: {{}}\nusers:\n- name: default-auth\n  user:\n    client-certificate: {current}\n    client-key: {current}\n",
        server = ports.server(),
        current = current.display(),
    );
    write(&host.kubernetes_dir().join("kubelet.conf"), &text, 0o600)
}

/// The stand-in kubelet's unit: a fixed command line, restarted by the same runner as the static pods.
fn kubelet_unit(host: &HostLayout, kubelet: &Path) -> Result<(), ControlPlaneError> {
    let command = vec![
        kubelet.display().to_string(),
        "run".to_owned(),
        format!(
            "--kubeconfig={}",
            host.kubernetes_dir().join("kubelet.conf").display()
        ),
        format!("--node-name={}", host.name),
        format!("--state={}", host.kubelet_state().display()),
    ];
    write(
        &host.units().join("kubelet.yaml"),
        &manifest("kubelet", &command),
        0o644,
    )
}

fn flags(command: &str, flags: &[(&str, String)]) -> Vec<String> {
    std::iter::once(command.to_owned())
        .chain(flags.iter().map(|(k, v)| format!("--{k}={v}")))
        .collect()
}

/// A static-pod manifest in kubeadm's shape: one container whose command is `command`.
fn manifest(name: &str, command: &[String]) -> String {
    let mut text = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  creationTimestamp: null\n  labels:\n    component: {name}\n    tier: control-plane\n  name: {name}\n  namespace: kube-system\nspec:\n  containers:\n  - command:\n"
    );
    for word in command {
        text.push_str(&format!("    - {word}\n"));
    }
    text.push_str(&format!(
        "    image: k8s.gcr.io/{name}:{KUBERNETES_VERSION}\n    imagePullPolicy: IfNotPresent\n    name: {name}\n  hostNetwork: true\n  priorityClassName: system-node-critical\nstatus: {{}}\n"
    ));
    text
}
