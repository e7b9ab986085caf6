//! The seam between the update phases and the cluster they act on.
//!
//! The trait is shaped after what a real Kubernetes backend can do (namespaced workloads with label
//! selectors, the `kubectl rollout restart` annotation, rollout status fields, pods by selector, and host
//! files plus component restarts on each host), so the phases never depend on how the cluster is reached.
//! This module names no backend: the simulated one (`sim`) and the real one (`kube`) implement
//! [`Cluster`], and the agent picks one through the `backend` module's enum.

use std::collections::BTreeMap;
use std::future::Future;

use serde::{Deserialize, Serialize};

/// The template annotation `kubectl rollout restart` sets; changing it rolls every pod of a workload.
pub const RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";

/// A backend's failure, as the phases see it. Each backend keeps a typed error of its own and converts
/// it into this one where it implements [`Cluster`], so the phases (and this module) depend on no
/// backend. The message and the error's sources are the backend's, unchanged: they become the reason a
/// failed phase reports.
#[derive(Debug)]
pub struct ClusterError(Box<dyn std::error::Error + Send + Sync>);

impl ClusterError {
    /// Wraps a backend's error.
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Box::new(error))
    }
}

impl std::fmt::Display for ClusterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ClusterError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// A host's role: controllers run the control plane, workers only a kubelet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostRole {
    Controller,
    Worker,
}

/// A host of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    pub name: String,
    pub role: HostRole,
}

/// The directories of a host the update writes in, as kubeadm lays them out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HostDir {
    /// `/etc/kubernetes`: the PKI, the kubeconfigs and the static-pod manifests.
    Kubernetes,
    /// `/var/lib/kubelet/pki`: the kubelet's rotated client certificate.
    KubeletPki,
}

/// The kubeadm files a root CA update reads and writes on a host (paths relative to their [`HostDir`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum HostFile {
    /// `pki/ca.crt`: the trust bundle (apiserver client CA, kubelet client CA, pods' kube-root-ca.crt).
    CaCert,
    /// `pki/ca.key`: the key the controller-manager signs with outside an update.
    CaKey,
    /// `pki/ca_new.crt`: the new CA while the hosts trust both.
    CaNewCert,
    /// `pki/ca_new.key`.
    CaNewKey,
    /// `pki/ca_old.crt`: the old CA alone, which the controller-manager signs with while a rollback
    /// re-issues leaves from it (`ca.crt` is a bundle then, and a signing cert file holds one
    /// certificate).
    CaOldCert,
    /// `pki/apiserver.crt`: the apiserver's serving certificate.
    ApiserverCert,
    ApiserverKey,
    /// `pki/apiserver-kubelet-client.crt`: the apiserver's client certificate towards kubelets.
    ApiserverKubeletClientCert,
    ApiserverKubeletClientKey,
    /// `pki/front-proxy-ca.crt`: a separate CA the update leaves untouched.
    FrontProxyCaCert,
    /// `pki/front-proxy-client.crt`, issued by the front-proxy CA: untouched.
    FrontProxyClientCert,
    /// `pki/etcd/ca.crt`, a local etcd's own CA: untouched.
    EtcdCaCert,
    /// `pki/etcd/server.crt`, issued by the etcd CA: untouched.
    EtcdServerCert,
    /// `pki/etcd/peer.crt`, issued by the etcd CA: untouched.
    EtcdPeerCert,
    /// `pki/apiserver-etcd-client.crt`, issued by the etcd CA: untouched.
    ApiserverEtcdClientCert,
    /// A kubeconfig, embedding its CA data and (except kubeadm's `kubelet.conf`) its client certificate.
    Kubeconfig(KubeconfigFile),
    /// `manifests/kube-controller-manager.yaml`: carries the cluster-signing flags.
    ControllerManagerManifest,
    /// `/var/lib/kubelet/pki/kubelet-client-current.pem`: the kubelet's client certificate and key in one
    /// file, which kubeadm's `kubelet.conf` references instead of embedding them.
    KubeletClientCurrent,
}

impl HostFile {
    /// The files an update or a rollback may replace on a host of `role` (a backend that keeps
    /// backups keeps one of each).
    pub fn replaced(role: HostRole) -> Vec<HostFile> {
        let mut files = vec![
            Self::CaCert,
            Self::CaKey,
            Self::CaNewCert,
            Self::CaNewKey,
            Self::CaOldCert,
            Self::ApiserverCert,
            Self::ApiserverKey,
            Self::ApiserverKubeletClientCert,
            Self::ApiserverKubeletClientKey,
            Self::ControllerManagerManifest,
            Self::KubeletClientCurrent,
        ];
        files.extend(
            KubeconfigFile::of_role(role)
                .iter()
                .map(|&k| Self::Kubeconfig(k)),
        );
        files
    }

    /// The certificates of a controller the update does not replace (where present: an external etcd
    /// has none of its own here); the health gate warns of their expiry, since a cluster whose
    /// front-proxy or etcd certificate runs out fails whatever its root CA.
    pub const UNTOUCHED_CERTS: [HostFile; 6] = [
        Self::FrontProxyCaCert,
        Self::FrontProxyClientCert,
        Self::EtcdCaCert,
        Self::EtcdServerCert,
        Self::EtcdPeerCert,
        Self::ApiserverEtcdClientCert,
    ];

    /// The directory the file lives in.
    pub fn dir(self) -> HostDir {
        match self {
            Self::KubeletClientCurrent => HostDir::KubeletPki,
            _ => HostDir::Kubernetes,
        }
    }

    /// The path relative to [`Self::dir`].
    pub fn path(self) -> &'static str {
        match self {
            Self::CaCert => "pki/ca.crt",
            Self::CaKey => "pki/ca.key",
            Self::CaNewCert => "pki/ca_new.crt",
            Self::CaNewKey => "pki/ca_new.key",
            Self::CaOldCert => "pki/ca_old.crt",
            Self::ApiserverCert => "pki/apiserver.crt",
            Self::ApiserverKey => "pki/apiserver.key",
            Self::ApiserverKubeletClientCert => "pki/apiserver-kubelet-client.crt",
            Self::ApiserverKubeletClientKey => "pki/apiserver-kubelet-client.key",
            Self::FrontProxyCaCert => "pki/front-proxy-ca.crt",
            Self::FrontProxyClientCert => "pki/front-proxy-client.crt",
            Self::EtcdCaCert => "pki/etcd/ca.crt",
            Self::EtcdServerCert => "pki/etcd/server.crt",
            Self::EtcdPeerCert => "pki/etcd/peer.crt",
            Self::ApiserverEtcdClientCert => "pki/apiserver-etcd-client.crt",
            Self::Kubeconfig(k) => k.path(),
            Self::ControllerManagerManifest => "manifests/kube-controller-manager.yaml",
            Self::KubeletClientCurrent => "kubelet-client-current.pem",
        }
    }

    /// Private keys are written owner-only.
    pub fn is_private(self) -> bool {
        matches!(
            self,
            Self::CaKey
                | Self::CaNewKey
                | Self::ApiserverKey
                | Self::ApiserverKubeletClientKey
                | Self::Kubeconfig(_)
                | Self::KubeletClientCurrent
        )
    }
}

/// A Kubernetes component on a host: restarted when its trust or credentials change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Component {
    Apiserver,
    ControllerManager,
    Scheduler,
    Kubelet,
}

impl Component {
    /// The name operators know it by (and the configuration's `host/component` fault entries use).
    pub fn name(self) -> &'static str {
        match self {
            Self::Apiserver => "apiserver",
            Self::ControllerManager => "controller-manager",
            Self::Scheduler => "scheduler",
            Self::Kubelet => "kubelet",
        }
    }
}

impl std::fmt::Display for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A kubeconfig file kubeadm writes (the apiserver has none: it reads the PKI files directly).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KubeconfigFile {
    /// `admin.conf`: the operators' credentials; nothing to restart.
    Admin,
    /// `super-admin.conf` (kubeadm 1.29 and later, first control-plane host only): the break-glass
    /// credentials; updated when present.
    SuperAdmin,
    ControllerManager,
    Scheduler,
    Kubelet,
}

impl KubeconfigFile {
    /// The file name (relative to `/etc/kubernetes`).
    pub fn path(self) -> &'static str {
        match self {
            Self::Admin => "admin.conf",
            Self::SuperAdmin => "super-admin.conf",
            Self::ControllerManager => "controller-manager.conf",
            Self::Scheduler => "scheduler.conf",
            Self::Kubelet => "kubelet.conf",
        }
    }

    /// Whether kubeadm may leave it out; a missing optional kubeconfig is skipped.
    pub fn optional(self) -> bool {
        self == Self::SuperAdmin
    }

    /// The kubeconfigs on a host of this role, as kubeadm lays them out.
    pub fn of_role(role: HostRole) -> &'static [KubeconfigFile] {
        match role {
            HostRole::Controller => &[
                Self::Admin,
                Self::SuperAdmin,
                Self::ControllerManager,
                Self::Scheduler,
                Self::Kubelet,
            ],
            HostRole::Worker => &[Self::Kubelet],
        }
    }
}

/// The kinds of workloads the pods phases restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum WorkloadKind {
    Deployment,
    DaemonSet,
    StatefulSet,
}

/// A workload's identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WorkloadRef {
    pub kind: WorkloadKind,
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for WorkloadRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// How a workload replaces its pods when its template changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum UpdateStrategy {
    /// The workload controller replaces pods itself. For Deployments `max_surge` extra pods may exist;
    /// DaemonSets and StatefulSets never surge.
    RollingUpdate {
        max_unavailable: u32,
        #[serde(default)]
        max_surge: u32,
    },
    /// Pods are replaced only when deleted: the pods phases delete them.
    OnDelete,
}

/// A label selector: every `match_labels` pair and every expression must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelSelector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub match_expressions: Vec<LabelExpression>,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelExpression {
    pub key: String,
    pub operator: LabelOperator,
    #[serde(default)]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LabelOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// The rollout status fields of a workload, as the Kubernetes API reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutStatus {
    /// Why the workload controller gave up on the rollout (a Deployment's `Progressing` condition with
    /// reason `ProgressDeadlineExceeded`): the rollout fails instead of waiting on.
    #[serde(default)]
    pub failure: Option<String>,
    pub generation: i64,
    pub observed_generation: i64,
    /// Desired pods (`spec.replicas`, or the scheduled nodes of a DaemonSet).
    pub desired: u32,
    /// Pods that exist, old and new.
    pub replicas: u32,
    /// Pods of the current template.
    pub updated: u32,
    pub ready: u32,
    pub available: u32,
    /// The revision of the pods that are not updated yet (StatefulSets); equal to `update_revision`
    /// once every pod runs it. `None` where the API reports none (Deployments, DaemonSets).
    pub current_revision: Option<String>,
    /// The revision of the current template, as pods carry it in [`Pod::revision`] (StatefulSets,
    /// DaemonSets); OnDelete pods of another revision are replaced.
    pub update_revision: Option<String>,
}

/// A workload as the pods phases see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    pub id: WorkloadRef,
    pub strategy: UpdateStrategy,
    /// `spec.paused` (Deployments): a paused rollout never completes, so it is refused up front.
    pub paused: bool,
    pub selector: LabelSelector,
    /// The pod template's annotations (holds [`RESTARTED_AT_ANNOTATION`]).
    pub template_annotations: BTreeMap<String, String>,
    pub status: RolloutStatus,
}

/// A pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// The template revision the pod was created from (`pod-template-hash`/`controller-revision-hash`).
    pub revision: String,
    pub ready: bool,
    /// The kube-root-ca.crt the pod mounted when it started, when the backend knows it.
    pub trust_bundle: Option<String>,
    /// Its controller, as its controller `ownerReference` names it (a Deployment's pods name their
    /// ReplicaSet); `None` for a bare pod.
    #[serde(default)]
    pub owner: Option<PodOwner>,
    /// Succeeded or Failed: it runs no more, so it trusts nothing.
    #[serde(default)]
    pub finished: bool,
    /// A container of it waits in `CrashLoopBackOff` (the health gate's finding in system namespaces).
    #[serde(default)]
    pub crash_looping: bool,
}

/// A node as the API server shows it, for the health gate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    /// Its `Ready` condition is `True`.
    pub ready: bool,
    /// Cordoned (`spec.unschedulable`).
    pub unschedulable: bool,
}

/// A pod's controlling owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodOwner {
    pub kind: String,
    pub name: String,
}

/// A copy of the trust bundle the controller-manager publishes for pods to mount: a namespace's
/// `kube-root-ca.crt` ConfigMap, or a service-account token Secret's `ca.crt`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedBundle {
    /// Where it is, as an operator would look it up (`ConfigMap demo/kube-root-ca.crt`).
    pub place: String,
    pub ca_pem: String,
}

/// What the update phases need from a cluster.
pub trait Cluster: Sync {
    /// Every controller and worker host (storage hosts are not part of the update).
    fn hosts(&self) -> impl Future<Output = Result<Vec<Host>, ClusterError>> + Send;
    /// Fails when the host cannot be reached (precheck).
    fn check_host(&self, host: &str) -> impl Future<Output = Result<(), ClusterError>> + Send;
    /// Reads a host file; `None` when it does not exist.
    fn read_file(
        &self,
        host: &str,
        file: HostFile,
    ) -> impl Future<Output = Result<Option<String>, ClusterError>> + Send;
    /// The file as it was before the update first replaced it (its backup); `None` when there is none.
    fn read_backup(
        &self,
        host: &str,
        file: HostFile,
    ) -> impl Future<Output = Result<Option<String>, ClusterError>> + Send;
    /// Drops the file's backup, if any: the next write keeps the file as it is then.
    fn remove_backup(
        &self,
        host: &str,
        file: HostFile,
    ) -> impl Future<Output = Result<(), ClusterError>> + Send;
    /// Writes a host file atomically and durably.
    fn write_file(
        &self,
        host: &str,
        file: HostFile,
        contents: &str,
    ) -> impl Future<Output = Result<(), ClusterError>> + Send;
    /// Removes a host file; absent is fine.
    fn remove_file(
        &self,
        host: &str,
        file: HostFile,
    ) -> impl Future<Output = Result<(), ClusterError>> + Send;
    /// Restarts a component so it reloads its files.
    fn restart_component(
        &self,
        host: &str,
        component: Component,
    ) -> impl Future<Output = Result<(), ClusterError>> + Send;
    /// Fails while `component` on `host` is not serving (after a restart, until it is back); the error
    /// is what the check last saw, which becomes the reason when the component never comes back.
    fn check_component(
        &self,
        host: &str,
        component: Component,
    ) -> impl Future<Output = Result<(), ClusterError>> + Send;
    /// kubeadm's join discovery kubeconfig (`kube-public/cluster-info`, key `kubeconfig`); `None` where
    /// the cluster has none (not built by kubeadm).
    fn cluster_info(&self) -> impl Future<Output = Result<Option<String>, ClusterError>> + Send;
    /// Replaces the discovery kubeconfig (the controller-manager's bootstrap signer re-signs it).
    fn set_cluster_info(
        &self,
        kubeconfig: &str,
    ) -> impl Future<Output = Result<(), ClusterError>> + Send;
    /// Every copy of the trust bundle published for pods, as the cluster holds them now.
    fn published_bundles(
        &self,
    ) -> impl Future<Output = Result<Vec<PublishedBundle>, ClusterError>> + Send;
    /// Every Deployment, DaemonSet and StatefulSet outside the excluded namespaces.
    fn list_workloads(
        &self,
        exclude_namespaces: &[String],
    ) -> impl Future<Output = Result<Vec<Workload>, ClusterError>> + Send;
    fn get_workload(
        &self,
        id: &WorkloadRef,
    ) -> impl Future<Output = Result<Workload, ClusterError>> + Send;
    /// Sets a pod template annotation (a strategic merge patch); the same value again changes nothing.
    fn patch_template_annotation(
        &self,
        id: &WorkloadRef,
        key: &str,
        value: &str,
    ) -> impl Future<Output = Result<(), ClusterError>> + Send;
    fn list_pods(
        &self,
        namespace: &str,
        selector: &LabelSelector,
    ) -> impl Future<Output = Result<Vec<Pod>, ClusterError>> + Send;
    fn delete_pod(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<(), ClusterError>> + Send;
    /// Every pod of the cluster (the trust invariant checks each running pod).
    fn all_pods(&self) -> impl Future<Output = Result<Vec<Pod>, ClusterError>> + Send;
    /// Every node (the health gate).
    fn nodes(&self) -> impl Future<Output = Result<Vec<Node>, ClusterError>> + Send;
    /// Extra time a phase takes (fault injection); zero for real clusters.
    fn phase_delay(&self, phase: dc_protocol::Phase) -> std::time::Duration;
}
