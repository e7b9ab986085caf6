//! What a simulated cluster looks like and which faults it injects.

use std::collections::BTreeMap;

use dc_protocol::Phase;
use serde::{Deserialize, Serialize};

use crate::cluster::{UpdateStrategy, WorkloadKind};

/// The shape of a simulated cluster (`[cluster] kind = "simulated"`). Hosts and workloads are created
/// at the first start and then persist in the data dir; faults are read at every start, so removing a
/// fault from the config and restarting lets a failed phase succeed on resume.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    /// Controller hosts (`controller-0`, ...); at least one.
    #[serde(default = "default_controllers")]
    pub controllers: u32,
    /// Worker hosts (`worker-0`, ...).
    #[serde(default)]
    pub workers: u32,
    /// Days until the generated "current" root CA expires; negative means it already expired (for the
    /// 500.210 alarm).
    #[serde(default = "default_root_ca_expiry_days")]
    pub root_ca_expiry_days: i64,
    /// How long a new pod takes to become ready, in milliseconds (tokio time, so paused-clock tests
    /// run instantly).
    #[serde(default = "default_pod_ready_ms")]
    pub pod_ready_ms: u64,
    /// How long a restarted controller-manager takes before it publishes its `--root-ca-file` as every
    /// namespace's `kube-root-ca.crt` (the leader election a real one waits through, 15-20 s), in
    /// milliseconds: pods created before then mount the previous bundle. 0: published at once.
    #[serde(default)]
    pub publish_delay_ms: u64,
    /// How long a restarted component takes to serve again, in milliseconds (a kubelet on a loaded
    /// node takes seconds); the host phases wait for it, so it is what parallel workers save.
    #[serde(default)]
    pub restart_ms: u64,
    /// The workloads, in every namespace.
    #[serde(default)]
    pub workloads: Vec<WorkloadSpec>,
    /// Faults to inject.
    #[serde(default)]
    pub faults: Faults,
}

fn default_controllers() -> u32 {
    1
}
fn default_root_ca_expiry_days() -> i64 {
    3650
}
fn default_pod_ready_ms() -> u64 {
    20
}

/// One workload of the simulated cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    pub kind: WorkloadKind,
    pub namespace: String,
    pub name: String,
    /// Pods of a Deployment or StatefulSet; a DaemonSet runs one pod per host and ignores it.
    #[serde(default = "default_replicas")]
    pub replicas: u32,
    pub strategy: UpdateStrategy,
    /// The pods' labels; the workload's selector is exactly these labels (`matchLabels`).
    pub labels: BTreeMap<String, String>,
}

fn default_replicas() -> u32 {
    1
}

/// Fault injection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Workloads (`namespace/name`) whose new pods never become ready.
    #[serde(default)]
    pub never_ready: Vec<String>,
    /// Hosts whose component restarts fail.
    #[serde(default)]
    pub restart_fails: Vec<String>,
    /// Components that never come back after a restart (healthy until then), as `host/component`
    /// (`controller-0/scheduler`).
    #[serde(default)]
    pub unhealthy: Vec<String>,
    /// Hosts that cannot be reached (the start precheck refuses).
    #[serde(default)]
    pub unreachable: Vec<String>,
    /// A phase that takes this much longer.
    #[serde(default)]
    pub slow_phase: Option<SlowPhase>,
    /// Hosts whose node is not Ready (a health-gate finding).
    #[serde(default)]
    pub not_ready: Vec<String>,
    /// Hosts whose node is cordoned (a health-gate finding).
    #[serde(default)]
    pub cordoned: Vec<String>,
    /// Workloads (`namespace/name`) whose pods are in CrashLoopBackOff (a health-gate finding in a
    /// system namespace).
    #[serde(default)]
    pub crash_looping: Vec<String>,
    /// Certificates the update does not replace, as `host/path` (`controller-0/pki/front-proxy-ca.crt`),
    /// re-issued at open to expire in a week (a health-gate finding).
    #[serde(default)]
    pub expiring: Vec<String>,
}

/// A phase slowed down by `delay_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlowPhase {
    pub phase: Phase,
    pub delay_ms: u64,
}

impl WorkloadSpec {
    /// A workload whose pods carry `app=<name>`.
    pub fn new(
        kind: WorkloadKind,
        namespace: &str,
        name: &str,
        replicas: u32,
        strategy: UpdateStrategy,
    ) -> Self {
        Self {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            replicas,
            strategy,
            labels: BTreeMap::from([("app".to_owned(), name.to_owned())]),
        }
    }

    /// `namespace/name`, as faults name workloads.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

const ROLLING: UpdateStrategy = UpdateStrategy::RollingUpdate {
    max_unavailable: 1,
    max_surge: 0,
};

impl SimConfig {
    /// The cheapest useful cluster, for the fleet benchmark and most fleet tests: one controller, a
    /// Deployment and a StatefulSet, pods ready in 20 ms. The benchmark's published figures were
    /// measured with this shape.
    pub fn light() -> Self {
        Self {
            controllers: 1,
            workers: 0,
            root_ca_expiry_days: default_root_ca_expiry_days(),
            pod_ready_ms: default_pod_ready_ms(),
            publish_delay_ms: 0,
            restart_ms: 0,
            workloads: vec![
                WorkloadSpec::new(WorkloadKind::Deployment, "default", "web", 2, ROLLING),
                WorkloadSpec::new(WorkloadKind::StatefulSet, "default", "cache", 1, ROLLING),
            ],
            faults: Faults::default(),
        }
    }

    /// A typical subcloud, for the demo and end-to-end tests: two controllers, two workers, seven
    /// workloads of every kind with both update strategies, Deployments with surge, and two
    /// StatefulSets whose pods share the `app` label (only the whole selector tells them apart).
    pub fn typical() -> Self {
        let mut primary = WorkloadSpec::new(
            WorkloadKind::StatefulSet,
            "db",
            "pg-primary",
            1,
            UpdateStrategy::OnDelete,
        );
        primary.labels = BTreeMap::from([
            ("app".into(), "pg".into()),
            ("role".into(), "primary".into()),
        ]);
        let mut replica = WorkloadSpec::new(
            WorkloadKind::StatefulSet,
            "db",
            "pg-replica",
            2,
            UpdateStrategy::OnDelete,
        );
        replica.labels = BTreeMap::from([
            ("app".into(), "pg".into()),
            ("role".into(), "replica".into()),
        ]);
        Self {
            controllers: 2,
            workers: 2,
            root_ca_expiry_days: default_root_ca_expiry_days(),
            pod_ready_ms: 50,
            publish_delay_ms: 0,
            restart_ms: 0,
            workloads: vec![
                WorkloadSpec::new(
                    WorkloadKind::Deployment,
                    "default",
                    "web",
                    3,
                    UpdateStrategy::RollingUpdate {
                        max_unavailable: 0,
                        max_surge: 1,
                    },
                ),
                WorkloadSpec::new(
                    WorkloadKind::Deployment,
                    "monitoring",
                    "grafana",
                    2,
                    ROLLING,
                ),
                WorkloadSpec::new(
                    WorkloadKind::DaemonSet,
                    "kube-system",
                    "kube-proxy",
                    1,
                    ROLLING,
                ),
                WorkloadSpec::new(
                    WorkloadKind::DaemonSet,
                    "monitoring",
                    "node-exporter",
                    1,
                    UpdateStrategy::OnDelete,
                ),
                WorkloadSpec::new(WorkloadKind::StatefulSet, "default", "cache", 2, ROLLING),
                primary,
                replica,
            ],
            faults: Faults::default(),
        }
    }

    /// A standard subcloud at the wide end: two controllers and fifty workers whose restarted
    /// components take a second to serve again (a kubelet on a busy node), with the light shape's
    /// workloads and a DaemonSet on every host. Where `worker-apply-type` matters.
    pub fn wide() -> Self {
        let mut wide = Self::light();
        wide.controllers = 2;
        wide.workers = 50;
        wide.restart_ms = 1000;
        wide.workloads.push(WorkloadSpec::new(
            WorkloadKind::DaemonSet,
            "default",
            "node-exporter",
            1,
            ROLLING,
        ));
        wide
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the README says of the benchmark's shapes.
    #[test]
    fn light_is_one_controller_and_two_workloads_typical_four_hosts_and_seven_wide_fifty_two() {
        let light = SimConfig::light();
        assert_eq!((light.controllers, light.workers), (1, 0));
        assert_eq!(light.workloads.len(), 2);
        let wide = SimConfig::wide();
        assert_eq!(
            (wide.controllers, wide.workers, wide.restart_ms),
            (2, 50, 1000)
        );
        let typical = SimConfig::typical();
        assert_eq!((typical.controllers, typical.workers), (2, 2));
        assert_eq!(typical.workloads.len(), 7);
        let kinds: std::collections::BTreeSet<WorkloadKind> =
            typical.workloads.iter().map(|w| w.kind).collect();
        assert_eq!(kinds.len(), 3, "every workload kind");
        assert!(
            typical
                .workloads
                .iter()
                .any(|w| w.strategy == UpdateStrategy::OnDelete)
        );
    }
}
