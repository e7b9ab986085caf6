//! Backend-independent rules of the pods phases: which pods a selector picks and when a rollout is done.

use std::collections::BTreeMap;

use crate::cluster::{LabelOperator, LabelSelector, RolloutStatus, Workload};

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

/// `Ok` once the rollout is complete; otherwise what it still waits for, for progress details and
/// timeout messages. The rules are `kubectl rollout status`'s: the controller has observed the latest
/// generation, every desired pod runs the new template, no old pod remains, and all are ready and
/// available; for revisioned workloads the current revision has caught up with the update revision.
pub fn rollout_complete(status: &RolloutStatus) -> Result<(), String> {
    if status.observed_generation < status.generation {
        return Err(format!(
            "waiting for the controller to observe generation {} (observed {})",
            status.generation, status.observed_generation
        ));
    }
    if status.updated < status.desired {
        return Err(format!(
            "{} of {} pods updated",
            status.updated, status.desired
        ));
    }
    if status.replicas > status.updated {
        return Err(format!(
            "{} old pods pending termination",
            status.replicas - status.updated
        ));
    }
    if status.ready < status.desired || status.available < status.desired {
        return Err(format!(
            "{} of {} updated pods ready, {} available",
            status.ready, status.desired, status.available
        ));
    }
    if status.current_revision != status.update_revision {
        return Err(format!(
            "current revision {:?} has not reached update revision {:?}",
            status.current_revision, status.update_revision
        ));
    }
    Ok(())
}

/// Whether a workload is healthy enough to start an update: not paused and fully rolled out.
pub fn healthy(workload: &Workload) -> Result<(), String> {
    if workload.paused {
        return Err("its rollout is paused".to_owned());
    }
    rollout_complete(&workload.status)
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
            assert!(rollout_complete(&case).is_err(), "{case:?}");
        }
    }
}
