//! The simulated cluster's model: hosts, workloads and their pods, as persisted in `state.json`, and how
//! the phases see them through [`Cluster`](crate::cluster::Cluster): a workload's rollout status and a
//! pod's readiness are computed from the model at an instant of the simulated clock.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cluster::{
    Component, Host, LabelSelector, Pod, RolloutStatus, Workload, WorkloadKind, WorkloadRef,
};

use super::config::{Faults, WorkloadSpec};

/// A pod of the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimPod {
    pub name: String,
    /// The workload template revision it was created from (1 = the initial one).
    pub revision: u64,
    /// Simulated clock (milliseconds) when it was created and when it becomes ready.
    pub created_ms: u64,
    pub ready_ms: u64,
    /// The kube-root-ca.crt it mounted at start.
    pub trust_bundle: String,
}

/// A workload of the model with its pods and counters the tests read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimWorkload {
    pub spec: WorkloadSpec,
    pub generation: i64,
    /// The template revision; bumped by every template change.
    pub revision: u64,
    pub template_annotations: BTreeMap<String, String>,
    pub pods: Vec<SimPod>,
    /// Pods created so far (names Deployment pods).
    pub pods_created: u64,
    /// Template changes (rolling restarts) so far.
    pub restarts: u32,
    /// Pods deleted through the API so far.
    pub pods_deleted: u32,
}

/// The persisted model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimState {
    /// The simulated clock, milliseconds: as of the save on disk, as of the reading in a
    /// [`snapshot`](super::SimCluster::snapshot).
    pub clock_ms: u64,
    pub hosts: Vec<Host>,
    pub workloads: Vec<SimWorkload>,
    /// Component restarts per host.
    pub component_restarts: BTreeMap<String, BTreeMap<Component, u32>>,
    /// `kube-public/cluster-info`'s kubeconfig (kubeadm's join discovery).
    #[serde(default)]
    pub cluster_info: Option<String>,
    /// The trust bundle the controller-manager publishes for pods to mount.
    #[serde(default)]
    pub publication: Publication,
    /// Pods run by hand, without a controller (the stranded-pods check's case).
    #[serde(default)]
    pub bare_pods: Vec<Pod>,
    /// Restarted components not serving yet (`host/component`) and when they will (simulated clock, ms).
    #[serde(default)]
    pub restarting: BTreeMap<String, u64>,
    /// The most hosts that had a component restarting at one time.
    #[serde(default)]
    pub peak_hosts_restarting: usize,
}

/// What the controller-manager publishes as `kube-root-ca.crt`: its `--root-ca-file` as read when it
/// started, and only once it leads, a while after a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publication {
    /// The bundle published now. `None` in a cluster without a publication delay (or saved before
    /// publication was modelled): the first controller's `ca.crt` as it is now stands for it, so
    /// publication is immediate, as it must be where restarts happen outside the model (behind a fake
    /// Kubernetes API, whose restarts are shell commands).
    pub bundle: Option<String>,
    /// The bundle a restarted controller-manager will publish, and when (simulated clock, ms).
    pub pending: Option<(String, u64)>,
}

impl Publication {
    /// Adopts the pending bundle once its time has come; whether anything changed.
    pub fn settle(&mut self, now_ms: u64) -> bool {
        match self.pending.take() {
            Some((bundle, at)) if at <= now_ms => {
                self.bundle = Some(bundle);
                true
            }
            pending => {
                self.pending = pending;
                false
            }
        }
    }
}

impl SimState {
    /// Records a restart of `host/component` that serves again at `serving_at`, forgetting those that
    /// serve by `now_ms`, and counts the hosts restarting at once.
    pub fn restart(&mut self, host: &str, component: &str, now_ms: u64, serving_at: u64) {
        self.restarting.retain(|_, at| *at > now_ms);
        self.restarting
            .insert(format!("{host}/{component}"), serving_at);
        let hosts: std::collections::BTreeSet<&str> = self
            .restarting
            .keys()
            .filter_map(|k| k.split_once('/').map(|(h, _)| h))
            .collect();
        self.peak_hosts_restarting = self.peak_hosts_restarting.max(hosts.len());
    }

    /// Whether `host/component` is still starting at `now_ms`.
    pub fn starting(&self, host: &str, component: &str, now_ms: u64) -> bool {
        self.restarting
            .get(&format!("{host}/{component}"))
            .is_some_and(|at| *at > now_ms)
    }

    /// Every namespace: those holding workloads and the three every kubeadm cluster has.
    pub fn namespaces(&self) -> std::collections::BTreeSet<&str> {
        ["default", "kube-public", "kube-system"]
            .into_iter()
            .chain(self.workloads.iter().map(|w| w.spec.namespace.as_str()))
            .collect()
    }
}

impl SimWorkload {
    /// A workload as the cluster starts with it: every pod of the first revision, ready, mounting
    /// `bundle`.
    pub fn initial(spec: &WorkloadSpec, hosts: &[Host], bundle: &str) -> Self {
        let mut w = SimWorkload {
            spec: spec.clone(),
            generation: 1,
            revision: 1,
            template_annotations: BTreeMap::new(),
            pods: Vec::new(),
            pods_created: 0,
            restarts: 0,
            pods_deleted: 0,
        };
        for name in w
            .slot_names(hosts)
            .into_iter()
            .take(w.desired(hosts) as usize)
        {
            w.pods_created += 1;
            w.pods.push(SimPod {
                name,
                revision: 1,
                created_ms: 0,
                ready_ms: 0,
                trust_bundle: bundle.to_owned(),
            });
        }
        w
    }

    /// Its identity.
    pub fn id(&self) -> WorkloadRef {
        WorkloadRef {
            kind: self.spec.kind,
            namespace: self.spec.namespace.clone(),
            name: self.spec.name.clone(),
        }
    }

    /// Whether it is the workload `id` names.
    pub fn is(&self, id: &WorkloadRef) -> bool {
        self.spec.kind == id.kind
            && self.spec.namespace == id.namespace
            && self.spec.name == id.name
    }

    /// Desired pods: replicas, or one per host for a DaemonSet.
    pub fn desired(&self, hosts: &[Host]) -> u32 {
        match self.spec.kind {
            WorkloadKind::DaemonSet => u32::try_from(hosts.len()).unwrap_or(u32::MAX),
            _ => self.spec.replicas,
        }
    }

    /// The fixed pod names of DaemonSets (one per host) and StatefulSets (ordinals); Deployments have
    /// none.
    pub fn slot_names(&self, hosts: &[Host]) -> Vec<String> {
        match self.spec.kind {
            WorkloadKind::DaemonSet => hosts
                .iter()
                .map(|h| format!("{}-{}", self.spec.name, h.name))
                .collect(),
            _ => (0..self.spec.replicas)
                .map(|i| format!("{}-{i}", self.spec.name))
                .collect(),
        }
    }

    /// Whether `pod` is ready at `now`; the new pods of a workload in [`Faults::never_ready`] never are.
    pub fn pod_ready(&self, pod: &SimPod, now: u64, faults: &Faults) -> bool {
        let stuck = pod.revision > 1 && faults.never_ready.contains(&self.spec.key());
        pod.ready_ms <= now && !stuck
    }

    /// The workload as the phases see it at `now`.
    pub fn view(&self, hosts: &[Host], now: u64, faults: &Faults) -> Workload {
        let n = self.desired(hosts);
        let count = |f: &dyn Fn(&SimPod) -> bool| {
            u32::try_from(self.pods.iter().filter(|p| f(p)).count()).unwrap_or(u32::MAX)
        };
        let updated = count(&|p| p.revision == self.revision);
        let ready = count(&|p| self.pod_ready(p, now, faults));
        let revisioned = self.spec.kind != WorkloadKind::Deployment;
        let current = if updated == n && self.pods.len() == n as usize {
            self.revision
        } else {
            self.revision.saturating_sub(1)
        };
        Workload {
            id: self.id(),
            strategy: self.spec.strategy,
            paused: false,
            selector: LabelSelector {
                match_labels: self.spec.labels.clone(),
                match_expressions: Vec::new(),
            },
            template_annotations: self.template_annotations.clone(),
            status: RolloutStatus {
                failure: None,
                generation: self.generation,
                observed_generation: self.generation,
                desired: n,
                replicas: count(&|_| true),
                updated,
                ready,
                available: ready,
                current_revision: revisioned.then(|| format!("{}-{current}", self.spec.name)),
                update_revision: revisioned
                    .then(|| format!("{}-{}", self.spec.name, self.revision)),
            },
        }
    }

    /// One of its pods as the phases see it at `now`.
    pub fn pod_view(&self, pod: &SimPod, now: u64, faults: &Faults) -> Pod {
        Pod {
            namespace: self.spec.namespace.clone(),
            name: pod.name.clone(),
            labels: self.spec.labels.clone(),
            revision: format!("{}-{}", self.spec.name, pod.revision),
            ready: self.pod_ready(pod, now, faults),
            trust_bundle: Some(pod.trust_bundle.clone()),
            owner: Some(crate::cluster::PodOwner {
                kind: format!("{:?}", self.spec.kind),
                name: self.spec.name.clone(),
            }),
            finished: false,
            crash_looping: faults.crash_looping.contains(&self.spec.key()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{HostRole, UpdateStrategy};

    fn hosts() -> Vec<Host> {
        ["controller-0", "worker-0"]
            .iter()
            .zip([HostRole::Controller, HostRole::Worker])
            .map(|(name, role)| Host {
                name: (*name).to_owned(),
                role,
            })
            .collect()
    }

    #[test]
    fn a_daemon_set_starts_with_one_pod_per_host_and_a_stateful_set_with_ordinals() {
        let hosts = hosts();
        let ds = WorkloadSpec::new(
            WorkloadKind::DaemonSet,
            "kube-system",
            "proxy",
            1,
            UpdateStrategy::OnDelete,
        );
        let names: Vec<String> = SimWorkload::initial(&ds, &hosts, "ca")
            .pods
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, ["proxy-controller-0", "proxy-worker-0"]);
        let ss = WorkloadSpec::new(
            WorkloadKind::StatefulSet,
            "db",
            "pg",
            3,
            UpdateStrategy::OnDelete,
        );
        let pg = SimWorkload::initial(&ss, &hosts, "ca");
        let names: Vec<&str> = pg.pods.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["pg-0", "pg-1", "pg-2"]);
        let status = pg.view(&hosts, 0, &Faults::default()).status;
        assert_eq!((status.desired, status.ready, status.updated), (3, 3, 3));
        assert_eq!(status.update_revision.as_deref(), Some("pg-1"));
    }

    #[test]
    fn a_pending_publication_is_adopted_once_its_time_has_come() {
        let mut p = Publication {
            bundle: Some("old".into()),
            pending: Some(("both".into(), 1_000)),
        };
        assert!(!p.settle(999));
        assert_eq!(p.bundle.as_deref(), Some("old"));
        assert!(p.settle(1_000));
        assert_eq!(
            (p.bundle.as_deref(), p.pending.as_ref()),
            (Some("both"), None)
        );
        assert!(!p.settle(5_000), "nothing pending any more");
    }

    #[test]
    fn new_pods_of_a_never_ready_workload_stay_unready() {
        let spec = WorkloadSpec::new(
            WorkloadKind::Deployment,
            "default",
            "web",
            1,
            UpdateStrategy::OnDelete,
        );
        let w = SimWorkload::initial(&spec, &hosts(), "ca");
        let faults = Faults {
            never_ready: vec!["default/web".to_owned()],
            ..Faults::default()
        };
        let mut new = w.pods[0].clone();
        new.revision = 2;
        assert!(
            w.pod_ready(&w.pods[0], 0, &faults),
            "the initial pod is ready"
        );
        assert!(!w.pod_ready(&new, 1_000_000, &faults));
        assert!(w.pod_ready(&new, 1_000_000, &Faults::default()));
    }
}
