//! The simulated workload controllers: what a Deployment, DaemonSet or StatefulSet controller does next
//! to bring a workload's pods to its current template, within its update strategy's limits. Pure: the
//! cluster applies the actions and advances the clock.

use crate::cluster::{Host, UpdateStrategy, WorkloadKind};

use super::config::Faults;
use super::model::{SimPod, SimWorkload};

/// The next thing a workload controller does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutAction {
    /// Create a pod of the current template with this name.
    CreatePod(String),
    /// Remove the pod at this index of [`SimWorkload::pods`].
    RemovePod(usize),
    /// Nothing until the clock moves (a pod becomes ready) or someone deletes a pod (OnDelete).
    Wait,
}

/// The next action of `w`'s controller at `now`: create a pod of the current template, remove an old
/// pod, or wait, within the strategy's limits.
pub fn next_action(w: &SimWorkload, hosts: &[Host], now: u64, faults: &Faults) -> RolloutAction {
    let n = w.desired(hosts) as usize;
    let total = w.pods.len();
    let new = w.pods.iter().filter(|p| p.revision == w.revision).count();
    let (max_unavailable, surge) = match w.spec.strategy {
        UpdateStrategy::OnDelete => (0, 0),
        UpdateStrategy::RollingUpdate {
            max_unavailable,
            max_surge,
        } => {
            let surge = if w.spec.kind == WorkloadKind::Deployment {
                max_surge as usize
            } else {
                0
            };
            let unavailable = max_unavailable as usize;
            // Both zero is invalid in Kubernetes; it would never progress.
            (
                if surge == 0 {
                    unavailable.max(1)
                } else {
                    unavailable
                },
                surge,
            )
        }
    };
    if total < n + surge && new < n {
        let name = match w.spec.kind {
            WorkloadKind::Deployment => {
                Some(format!("{}-{}-{}", w.spec.name, w.revision, w.pods_created))
            }
            _ => w
                .slot_names(hosts)
                .into_iter()
                .find(|slot| !w.pods.iter().any(|p| &p.name == slot)),
        };
        if let Some(name) = name {
            return RolloutAction::CreatePod(name);
        }
    }
    if w.spec.strategy == UpdateStrategy::OnDelete {
        return RolloutAction::Wait;
    }
    let old: Vec<(usize, &SimPod)> = w
        .pods
        .iter()
        .enumerate()
        .filter(|(_, p)| p.revision != w.revision)
        .collect();
    if let Some((i, _)) = old.iter().find(|(_, p)| !w.pod_ready(p, now, faults)) {
        return RolloutAction::RemovePod(*i);
    }
    let ready = w
        .pods
        .iter()
        .filter(|p| w.pod_ready(p, now, faults))
        .count();
    // Highest name first, as a StatefulSet goes from the highest ordinal down.
    if let Some((i, _)) = old.iter().max_by(|a, b| a.1.name.cmp(&b.1.name))
        && ready > n.saturating_sub(max_unavailable)
    {
        return RolloutAction::RemovePod(*i);
    }
    RolloutAction::Wait
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::HostRole;
    use crate::sim::config::WorkloadSpec;

    const ROLLING: UpdateStrategy = UpdateStrategy::RollingUpdate {
        max_unavailable: 1,
        max_surge: 0,
    };

    fn controller() -> Vec<Host> {
        vec![Host {
            name: "controller-0".to_owned(),
            role: HostRole::Controller,
        }]
    }

    /// A workload of `replicas` ready pods whose template just changed (revision 2).
    fn restarted(kind: WorkloadKind, replicas: u32, strategy: UpdateStrategy) -> SimWorkload {
        let spec = WorkloadSpec::new(kind, "default", "w", replicas, strategy);
        let mut w = SimWorkload::initial(&spec, &controller(), "ca");
        w.revision = 2;
        w.generation = 2;
        w
    }

    fn apply(w: &mut SimWorkload, action: &RolloutAction, now: u64) {
        match action {
            RolloutAction::CreatePod(name) => {
                w.pods_created += 1;
                w.pods.push(SimPod {
                    name: name.clone(),
                    revision: w.revision,
                    created_ms: now,
                    ready_ms: now + 10,
                    trust_bundle: "ca".to_owned(),
                });
            }
            RolloutAction::RemovePod(i) => {
                w.pods.remove(*i);
            }
            RolloutAction::Wait => {}
        }
    }

    #[test]
    fn a_deployment_with_surge_creates_before_it_removes() {
        let strategy = UpdateStrategy::RollingUpdate {
            max_unavailable: 0,
            max_surge: 1,
        };
        let mut w = restarted(WorkloadKind::Deployment, 2, strategy);
        let hosts = controller();
        let faults = Faults::default();
        let first = next_action(&w, &hosts, 0, &faults);
        assert_eq!(first, RolloutAction::CreatePod("w-2-2".to_owned()));
        apply(&mut w, &first, 0);
        // The surge pod is not ready yet: with max_unavailable 0 nothing old may go.
        assert_eq!(next_action(&w, &hosts, 5, &faults), RolloutAction::Wait);
        // Ready: one old pod goes.
        assert!(matches!(
            next_action(&w, &hosts, 10, &faults),
            RolloutAction::RemovePod(_)
        ));
    }

    #[test]
    fn a_stateful_set_replaces_the_highest_ordinal_first() {
        let mut w = restarted(WorkloadKind::StatefulSet, 3, ROLLING);
        let hosts = controller();
        let action = next_action(&w, &hosts, 0, &Faults::default());
        assert_eq!(action, RolloutAction::RemovePod(2), "pod w-2 goes first");
        apply(&mut w, &action, 0);
        assert_eq!(
            next_action(&w, &hosts, 0, &Faults::default()),
            RolloutAction::CreatePod("w-2".to_owned()),
            "and comes back in its own slot"
        );
    }

    #[test]
    fn on_delete_waits_until_someone_deletes_an_old_pod() {
        let mut w = restarted(WorkloadKind::StatefulSet, 2, UpdateStrategy::OnDelete);
        let hosts = controller();
        assert_eq!(
            next_action(&w, &hosts, 1000, &Faults::default()),
            RolloutAction::Wait
        );
        w.pods.remove(0);
        assert_eq!(
            next_action(&w, &hosts, 1000, &Faults::default()),
            RolloutAction::CreatePod("w-0".to_owned())
        );
    }
}
