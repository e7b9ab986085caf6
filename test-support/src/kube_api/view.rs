//! What the server shows of the simulated cluster at one instant: every workload with its pods, as the
//! phases see them through the agent's `Cluster` seam plus what only an API server shows (which pod
//! belongs to which workload, the spec it came from, when each pod was created). Read from one
//! [`SimCluster::snapshot`], so a response never mixes two instants of the model.

use dc_agent::cluster::{Node, Pod, Workload};
use dc_agent::sim::{SimCluster, SimError, WorkloadSpec};

/// Every workload with its pods, read at one instant of the simulated clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiView {
    /// The simulated clock (milliseconds) the view was read at.
    pub clock_ms: u64,
    pub workloads: Vec<ApiWorkload>,
    /// Every namespace of the cluster.
    pub namespaces: Vec<String>,
    /// Every host's node.
    pub nodes: Vec<Node>,
    /// What the controller-manager publishes as every namespace's `kube-root-ca.crt`.
    pub published_bundle: String,
    /// `kube-public/cluster-info`'s kubeconfig, when the cluster has one.
    pub cluster_info: Option<String>,
}

/// A workload as an API server shows it: the phases' view plus the spec it was created from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiWorkload {
    pub workload: Workload,
    pub spec: WorkloadSpec,
    pub pods: Vec<ApiPod>,
}

/// A pod as an API server shows it: the phases' view plus its model times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiPod {
    pub pod: Pod,
    /// Simulated clock (milliseconds) when it was created and when it becomes (or became) ready.
    pub created_ms: u64,
    pub ready_ms: u64,
}

impl ApiView {
    /// Reads the cluster now (advancing its rollouts, as every read of a real API server observes
    /// the controllers' progress).
    pub fn read(sim: &SimCluster) -> Result<Self, SimError> {
        let state = sim.snapshot()?;
        let now = state.clock_ms;
        let workloads = state
            .workloads
            .iter()
            .map(|w| ApiWorkload {
                workload: sim.workload_view(w, &state.hosts, now),
                spec: w.spec.clone(),
                pods: w
                    .pods
                    .iter()
                    .map(|p| ApiPod {
                        pod: sim.pod_view(w, p, now),
                        created_ms: p.created_ms,
                        ready_ms: p.ready_ms,
                    })
                    .collect(),
            })
            .collect();
        Ok(Self {
            clock_ms: now,
            workloads,
            namespaces: state.namespaces().into_iter().map(str::to_owned).collect(),
            nodes: state.hosts.iter().map(|h| sim.node_view(&h.name)).collect(),
            published_bundle: sim.published_bundle_of(&state)?,
            cluster_info: state.cluster_info.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use dc_agent::cluster::Cluster;
    use dc_agent::sim::SimConfig;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn api_view_gives_each_workload_its_own_pods_with_creation_times() {
        let dir = tempfile::tempdir().unwrap();
        let config = SimConfig {
            pod_ready_ms: 100,
            ..SimConfig::typical()
        };
        let sim = SimCluster::open(dir.path(), &config).unwrap();
        let view = ApiView::read(&sim).unwrap();
        assert_eq!(view.workloads.len(), config.workloads.len());
        // The two StatefulSets share the `app` label; each still owns only its own pods.
        let replica = view
            .workloads
            .iter()
            .find(|w| w.spec.name == "pg-replica")
            .unwrap();
        let names: Vec<&str> = replica.pods.iter().map(|p| p.pod.name.as_str()).collect();
        assert_eq!(names, ["pg-replica-0", "pg-replica-1"]);
        assert!(
            replica
                .pods
                .iter()
                .all(|p| p.created_ms == 0 && p.pod.ready)
        );

        tokio::time::sleep(Duration::from_secs(1)).await;
        sim.delete_pod("db", "pg-replica-1").await.unwrap();
        let view = ApiView::read(&sim).unwrap();
        let replica = view
            .workloads
            .iter()
            .find(|w| w.spec.name == "pg-replica")
            .unwrap();
        let recreated = replica
            .pods
            .iter()
            .find(|p| p.pod.name == "pg-replica-1")
            .unwrap();
        assert_eq!(recreated.created_ms, view.clock_ms);
        assert_eq!(recreated.ready_ms, view.clock_ms + 100);
        assert!(!recreated.pod.ready);
    }
}
