//! The backend an agent runs against, chosen by its configuration: an enum with one variant per backend
//! (no dynamic dispatch) that forwards every [`Cluster`] call to its variant.
//!
//! This is the one module that names both backends; the [`Cluster`] seam they implement names neither.

use std::path::Path;
use std::time::Duration;

use crate::cluster::{
    Cluster, ClusterError, Component, Host, HostFile, LabelSelector, Node, Pod, PublishedBundle,
    Workload, WorkloadRef,
};
use crate::config::ClusterConfig;
use crate::kube::{KubeCluster, KubeError};
use crate::sim::{SimCluster, SimError};

/// The backend an agent runs against.
#[derive(Debug)]
pub enum Backend {
    Simulated(SimCluster),
    Kubernetes(KubeCluster),
}

/// Why the configured backend could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Sim(#[from] SimError),
    #[error(transparent)]
    Kube(#[from] KubeError),
}

impl Backend {
    /// Opens the configured backend: the simulated cluster in `data_dir` (created at the first start),
    /// or the API client and host accessors of a real one (which reach nothing yet).
    pub async fn open(config: &ClusterConfig, data_dir: &Path) -> Result<Self, OpenError> {
        Ok(match config {
            ClusterConfig::Simulated(sim) => Self::Simulated(SimCluster::open(data_dir, sim)?),
            ClusterConfig::Kubernetes(real) => Self::Kubernetes(KubeCluster::connect(real).await?),
        })
    }
}

/// Forwards a call to the variant's backend.
macro_rules! forward {
    ($self:ident, $backend:ident => $call:expr) => {
        match $self {
            Backend::Simulated($backend) => $call,
            Backend::Kubernetes($backend) => $call,
        }
    };
}

impl Cluster for Backend {
    async fn hosts(&self) -> Result<Vec<Host>, ClusterError> {
        forward!(self, b => b.hosts().await)
    }
    async fn check_host(&self, host: &str) -> Result<(), ClusterError> {
        forward!(self, b => b.check_host(host).await)
    }
    async fn read_file(&self, host: &str, file: HostFile) -> Result<Option<String>, ClusterError> {
        forward!(self, b => b.read_file(host, file).await)
    }
    async fn read_backup(
        &self,
        host: &str,
        file: HostFile,
    ) -> Result<Option<String>, ClusterError> {
        forward!(self, b => b.read_backup(host, file).await)
    }
    async fn remove_backup(&self, host: &str, file: HostFile) -> Result<(), ClusterError> {
        forward!(self, b => b.remove_backup(host, file).await)
    }
    async fn write_file(
        &self,
        host: &str,
        file: HostFile,
        contents: &str,
    ) -> Result<(), ClusterError> {
        forward!(self, b => b.write_file(host, file, contents).await)
    }
    async fn remove_file(&self, host: &str, file: HostFile) -> Result<(), ClusterError> {
        forward!(self, b => b.remove_file(host, file).await)
    }
    async fn restart_component(
        &self,
        host: &str,
        component: Component,
    ) -> Result<(), ClusterError> {
        forward!(self, b => b.restart_component(host, component).await)
    }
    async fn check_component(&self, host: &str, component: Component) -> Result<(), ClusterError> {
        forward!(self, b => b.check_component(host, component).await)
    }
    async fn cluster_info(&self) -> Result<Option<String>, ClusterError> {
        forward!(self, b => b.cluster_info().await)
    }
    async fn set_cluster_info(&self, kubeconfig: &str) -> Result<(), ClusterError> {
        forward!(self, b => b.set_cluster_info(kubeconfig).await)
    }
    async fn published_bundles(&self) -> Result<Vec<PublishedBundle>, ClusterError> {
        forward!(self, b => b.published_bundles().await)
    }
    async fn list_workloads(&self, exclude: &[String]) -> Result<Vec<Workload>, ClusterError> {
        forward!(self, b => b.list_workloads(exclude).await)
    }
    async fn get_workload(&self, id: &WorkloadRef) -> Result<Workload, ClusterError> {
        forward!(self, b => b.get_workload(id).await)
    }
    async fn patch_template_annotation(
        &self,
        id: &WorkloadRef,
        key: &str,
        value: &str,
    ) -> Result<(), ClusterError> {
        forward!(self, b => b.patch_template_annotation(id, key, value).await)
    }
    async fn list_pods(
        &self,
        namespace: &str,
        selector: &LabelSelector,
    ) -> Result<Vec<Pod>, ClusterError> {
        forward!(self, b => b.list_pods(namespace, selector).await)
    }
    async fn delete_pod(&self, namespace: &str, name: &str) -> Result<(), ClusterError> {
        forward!(self, b => b.delete_pod(namespace, name).await)
    }
    async fn all_pods(&self) -> Result<Vec<Pod>, ClusterError> {
        forward!(self, b => b.all_pods().await)
    }
    async fn nodes(&self) -> Result<Vec<Node>, ClusterError> {
        forward!(self, b => b.nodes().await)
    }
    fn phase_delay(&self, phase: dc_protocol::Phase) -> Duration {
        forward!(self, b => b.phase_delay(phase))
    }
}
