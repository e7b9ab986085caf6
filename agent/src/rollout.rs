//! Backend-independent rules of the pods phases: which pods a selector picks and when a rollout is done.

use std::collections::BTreeMap;

use crate::cluster::{LabelOperator, LabelSelector, Pod, RolloutStatus, UpdateStrategy, Workload};

/// Whether `labels` satisfy the whole selector: every `matchLabels` pair and every expression. The
/// original selected OnDelete pods by the `app` label alone and so could hit another workload's pods.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    selector
        .match_labels
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
        && selector.match_expressions.iter().all(|e| {
            let value = labels.get(&e.key);
            match e.operator {
                LabelOperator::In => value.is_some_and(|v| e.values.contains(v)),
                LabelOperator::NotIn => value.is_none_or(|v| !e.values.contains(v)),
                LabelOperator::Exists => value.is_some(),
                LabelOperator::DoesNotExist => value.is_none(),
            }
        })
}

/// Why a rollout is not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Pending {
    /// Still in progress: what it waits for (progress details, timeout messages).
    #[error("{0}")]
    Waiting(String),
    /// The workload controller gave up; waiting longer cannot help.
    #[error("{0}")]
    Failed(String),
}

fn waiting(why: String) -> Result<(), Pending> {
    Err(Pending::Waiting(why))
}

/// `Ok` once the rollout is complete. The rules are `kubectl rollout status`'s: the controller has
/// observed the latest generation and not given up (`ProgressDeadlineExceeded`), every desired pod
/// runs the new template, no old pod remains, and all are ready and available; for StatefulSets the
/// current revision has caught up with the update revision.
pub fn rollout_complete(status: &RolloutStatus) -> Result<(), Pending> {
    if status.observed_generation < status.generation {
        return waiting(format!(
            "waiting for the controller to observe generation {} (observed {})",
            status.generation, status.observed_generation
        ));
    }
    // Only a verdict on the observed generation counts: an older rollout's failure is history.
    if let Some(failure) = &status.failure {
        return Err(Pending::Failed(failure.clone()));
    }
    if status.updated < status.desired {
        return waiting(format!(
            "{} of {} pods updated",
            status.updated, status.desired
        ));
    }
    if status.replicas > status.updated {
        return waiting(format!(
            "{} old pods pending termination",
            status.replicas - status.updated
        ));
    }
    if status.ready < status.desired || status.available < status.desired {
        return waiting(format!(
            "{} of {} updated pods ready, {} available",
            status.ready, status.desired, status.available
        ));
    }
    if let (Some(current), Some(update)) = (&status.current_revision, &status.update_revision)
        && current != update
    {
        return waiting(format!(
            "current revision {current} has not reached update revision {update}"
        ));
    }
    Ok(())
}

/// `Ok` once an OnDelete workload is replaced: its controller has observed the latest generation and
/// every pod its selector picks runs the update revision and is ready, as many as desired. (Neither
/// `kubectl rollout status` nor a StatefulSet's `currentRevision` follows OnDelete workloads.)
pub fn on_delete_complete(status: &RolloutStatus, pods: &[Pod]) -> Result<(), Pending> {
    if status.observed_generation < status.generation {
        return waiting(format!(
            "waiting for the controller to observe generation {} (observed {})",
            status.generation, status.observed_generation
        ));
    }
    let Some(update) = &status.update_revision else {
        return waiting("no update revision reported yet".to_owned());
    };
    let stale = pods.iter().filter(|p| &p.revision != update).count();
    if stale > 0 {
        return waiting(format!("{stale} pods still run an older template"));
    }
    let ready = pods.iter().filter(|p| p.ready).count();
    let desired = status.desired as usize;
    if pods.len() < desired || ready < pods.len() {
        return waiting(format!(
            "{ready} of {desired} pods of the new template ready"
        ));
    }
    Ok(())
}

/// Whether a workload is healthy enough to start an update: fully rolled out (OnDelete workloads: all
/// desired pods ready, whatever template they run). A paused Deployment is not judged: the pods phases
/// skip it, as `kubectl rollout restart` refuses it, and say so.
pub fn healthy(workload: &Workload) -> Result<(), String> {
    if workload.paused {
        return Ok(());
    }
    if workload.strategy == UpdateStrategy::OnDelete {
        let s = &workload.status;
        if s.observed_generation < s.generation || s.ready < s.desired {
            return Err(format!("{} of {} pods ready", s.ready, s.desired));
        }
        return Ok(());
    }
    rollout_complete(&workload.status).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::LabelExpression;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn selector_needs_every_label_and_expression() {
        let selector = LabelSelector {
            match_labels: labels(&[("app", "db"), ("tier", "primary")]),
            match_expressions: vec![
                LabelExpression {
                    key: "zone".into(),
                    operator: LabelOperator::In,
                    values: vec!["a".into(), "b".into()],
                },
                LabelExpression {
                    key: "canary".into(),
                    operator: LabelOperator::DoesNotExist,
                    values: vec![],
                },
            ],
        };
        assert!(selector_matches(
            &selector,
            &labels(&[("app", "db"), ("tier", "primary"), ("zone", "a")])
        ));
        // The `app` label alone is not enough: this is another workload's pod.
        assert!(!selector_matches(
            &selector,
            &labels(&[("app", "db"), ("tier", "replica"), ("zone", "a")])
        ));
        assert!(!selector_matches(
            &selector,
            &labels(&[("app", "db"), ("tier", "primary"), ("zone", "c")])
        ));
        assert!(!selector_matches(
            &selector,
            &labels(&[
                ("app", "db"),
                ("tier", "primary"),
                ("zone", "a"),
                ("canary", "1")
            ])
        ));
        let not_in = LabelSelector {
            match_expressions: vec![
                LabelExpression {
                    key: "x".into(),
                    operator: LabelOperator::NotIn,
                    values: vec!["1".into()],
                },
                LabelExpression {
                    key: "y".into(),
                    operator: LabelOperator::Exists,
                    values: vec![],
                },
            ],
            ..LabelSelector::default()
        };
        assert!(selector_matches(&not_in, &labels(&[("y", "")])));
        assert!(!selector_matches(
            &not_in,
            &labels(&[("x", "1"), ("y", "")])
        ));
    }

    #[test]
    fn rollout_completion_rules() {
        let done = RolloutStatus {
            failure: None,
            generation: 3,
            observed_generation: 3,
            desired: 3,
            replicas: 3,
            updated: 3,
            ready: 3,
            available: 3,
            current_revision: Some("r2".into()),
            update_revision: Some("r2".into()),
        };
        assert_eq!(rollout_complete(&done), Ok(()));
        let cases = [
            RolloutStatus {
                observed_generation: 2,
                ..done.clone()
            },
            RolloutStatus {
                updated: 2,
                ..done.clone()
            },
            RolloutStatus {
                replicas: 4,
                ..done.clone()
            },
            RolloutStatus {
                ready: 2,
                ..done.clone()
            },
            RolloutStatus {
                available: 2,
                ..done.clone()
            },
            RolloutStatus {
                current_revision: Some("r1".into()),
                ..done.clone()
            },
        ];
        for case in cases {
            assert!(
                matches!(rollout_complete(&case), Err(Pending::Waiting(_))),
                "{case:?}"
            );
        }
        // A DaemonSet reports its template generation but no current revision.
        let daemonset = RolloutStatus {
            current_revision: None,
            ..done.clone()
        };
        assert_eq!(rollout_complete(&daemonset), Ok(()));
        // A Deployment past its progress deadline fails, even while counts look fine.
        let stuck = RolloutStatus {
            failure: Some(
                "ProgressDeadlineExceeded: ReplicaSet \"web-1\" has timed out progressing".into(),
            ),
            ..done
        };
        assert!(
            matches!(rollout_complete(&stuck), Err(Pending::Failed(m)) if m.contains("timed out"))
        );
    }

    fn pod(name: &str, revision: &str, ready: bool) -> Pod {
        Pod {
            namespace: "db".into(),
            name: name.into(),
            labels: BTreeMap::new(),
            revision: revision.into(),
            ready,
            trust_bundle: None,
            owner: None,
            finished: false,
            crash_looping: false,
        }
    }

    #[test]
    fn on_delete_completes_when_every_selected_pod_is_new_and_ready() {
        let status = RolloutStatus {
            generation: 2,
            observed_generation: 2,
            desired: 2,
            // OnDelete StatefulSets never move currentRevision: it is not looked at.
            current_revision: Some("pg-1".into()),
            update_revision: Some("pg-2".into()),
            ..RolloutStatus::default()
        };
        let new = [pod("pg-0", "pg-2", true), pod("pg-1", "pg-2", true)];
        assert_eq!(on_delete_complete(&status, &new), Ok(()));
        let cases: [&[Pod]; 3] = [
            &[pod("pg-0", "pg-2", true), pod("pg-1", "pg-1", true)],
            &[pod("pg-0", "pg-2", true), pod("pg-1", "pg-2", false)],
            &[pod("pg-0", "pg-2", true)],
        ];
        for pods in cases {
            assert!(on_delete_complete(&status, pods).is_err(), "{pods:?}");
        }
        let unobserved = RolloutStatus {
            generation: 3,
            ..status
        };
        assert!(on_delete_complete(&unobserved, &new).is_err());
    }

    #[test]
    fn unready_workloads_are_not_healthy_and_paused_ones_are_not_judged() {
        let status = RolloutStatus {
            generation: 1,
            observed_generation: 1,
            desired: 1,
            replicas: 1,
            updated: 1,
            ready: 1,
            available: 1,
            ..RolloutStatus::default()
        };
        let mut w = Workload {
            id: crate::cluster::WorkloadRef {
                kind: crate::cluster::WorkloadKind::Deployment,
                namespace: "default".into(),
                name: "web".into(),
            },
            strategy: UpdateStrategy::RollingUpdate {
                max_unavailable: 1,
                max_surge: 0,
            },
            paused: false,
            selector: LabelSelector::default(),
            template_annotations: BTreeMap::new(),
            status,
        };
        assert_eq!(healthy(&w), Ok(()));
        w.status.observed_generation = 0;
        assert!(healthy(&w).is_err());
        w.paused = true;
        assert_eq!(healthy(&w), Ok(()));
        w.paused = false;
        w.status.observed_generation = 1;
        w.strategy = UpdateStrategy::OnDelete;
        w.status.update_revision = Some("2".into());
        w.status.current_revision = Some("1".into());
        assert_eq!(
            healthy(&w),
            Ok(()),
            "an OnDelete workload may run an older template"
        );
        w.status.ready = 0;
        assert!(healthy(&w).is_err());
    }
}
