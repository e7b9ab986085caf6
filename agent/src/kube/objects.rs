//! Pure conversions between Kubernetes API objects and the [`Cluster`](crate::cluster::Cluster)
//! seam's types: what a workload's spec and status say about its rollout, which revision a pod runs,
//! and the selector and patch the API takes.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Node as KubeNode, Pod as KubePod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector as KubeSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::cluster::{
    LabelExpression, LabelOperator, LabelSelector, Node, Pod, PodOwner, RolloutStatus,
    UpdateStrategy, Workload, WorkloadKind, WorkloadRef,
};

/// The DaemonSet annotation carrying its template generation; its pods carry the same number in the
/// `pod-template-generation` label, which is how a pod of the current template is told apart.
pub const DAEMONSET_TEMPLATE_GENERATION: &str = "deprecated.daemonset.template.generation";
/// Pod labels naming the template revision a pod was created from, most specific first: DaemonSet pods
/// carry `pod-template-generation` (and a `controller-revision-hash` that no DaemonSet status names),
/// StatefulSet pods `controller-revision-hash` (as in `status.updateRevision`), Deployment pods
/// `pod-template-hash`.
const REVISION_LABELS: [&str; 3] = [
    "pod-template-generation",
    "controller-revision-hash",
    "pod-template-hash",
];

/// Errors converting API objects.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("{kind:?} without {field}")]
    Missing {
        kind: WorkloadKind,
        field: &'static str,
    },
    #[error("unknown label selector operator '{0}'")]
    Operator(String),
    #[error("{kind:?} {namespace}/{name}: unknown update strategy '{strategy}'")]
    Strategy {
        kind: WorkloadKind,
        namespace: String,
        name: String,
        strategy: String,
    },
}

fn count(value: Option<i32>) -> u32 {
    u32::try_from(value.unwrap_or(0)).unwrap_or(0)
}

/// An `IntOrString` like `25%` or `1` resolved against `total` pods, rounding up or down as the
/// workload controllers do (maxSurge up, maxUnavailable down).
fn scaled(value: Option<&IntOrString>, total: u32, default: u32, round_up: bool) -> u32 {
    match value {
        None => default,
        Some(IntOrString::Int(n)) => u32::try_from(*n).unwrap_or(0),
        Some(IntOrString::String(s)) => match s.strip_suffix('%').map(str::parse::<u64>) {
            Some(Ok(percent)) => {
                let scaled = u64::from(total) * percent;
                let pods = if round_up {
                    scaled.div_ceil(100)
                } else {
                    scaled / 100
                };
                u32::try_from(pods).unwrap_or(u32::MAX)
            }
            _ => s.parse().unwrap_or(default),
        },
    }
}

fn workload_ref(kind: WorkloadKind, meta: &ObjectMeta) -> Result<WorkloadRef, ObjectError> {
    Ok(WorkloadRef {
        kind,
        namespace: meta.namespace.clone().ok_or(ObjectError::Missing {
            kind,
            field: "metadata.namespace",
        })?,
        name: meta.name.clone().ok_or(ObjectError::Missing {
            kind,
            field: "metadata.name",
        })?,
    })
}

fn strategy(
    id: &WorkloadRef,
    kind: Option<&str>,
    rolling: impl FnOnce() -> UpdateStrategy,
    other: Option<UpdateStrategy>,
) -> Result<UpdateStrategy, ObjectError> {
    match kind {
        None | Some("RollingUpdate") => Ok(rolling()),
        Some("OnDelete") => Ok(UpdateStrategy::OnDelete),
        Some(s) => other.ok_or_else(|| ObjectError::Strategy {
            kind: id.kind,
            namespace: id.namespace.clone(),
            name: id.name.clone(),
            strategy: s.to_owned(),
        }),
    }
}

fn annotations(template: &k8s_openapi::api::core::v1::PodTemplateSpec) -> BTreeMap<String, String> {
    template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default()
}

/// A Deployment as the pods phases see it. A `Progressing` condition with reason
/// `ProgressDeadlineExceeded` is a failed rollout, as `kubectl rollout status` reports it.
pub fn deployment(d: &Deployment) -> Result<Workload, ObjectError> {
    let kind = WorkloadKind::Deployment;
    let id = workload_ref(kind, &d.metadata)?;
    let spec = &d.spec;
    let desired = count(Some(spec.replicas.unwrap_or(1)));
    let rolling = spec
        .strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref());
    let strategy = strategy(
        &id,
        spec.strategy.as_ref().and_then(|s| s.type_.as_deref()),
        || UpdateStrategy::RollingUpdate {
            max_unavailable: scaled(
                rolling.and_then(|r| r.max_unavailable.as_ref()),
                desired,
                desired / 4,
                false,
            ),
            max_surge: scaled(
                rolling.and_then(|r| r.max_surge.as_ref()),
                desired,
                desired.div_ceil(4),
                true,
            ),
        },
        // Recreate: every old pod goes before a new one comes.
        Some(UpdateStrategy::RollingUpdate {
            max_unavailable: desired,
            max_surge: 0,
        }),
    )?;
    let status = d.status.clone().unwrap_or_default();
    let failure = status
        .conditions
        .iter()
        .flatten()
        .find(|c| {
            c.type_.as_deref() == Some("Progressing")
                && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
        })
        .map(|c| {
            format!(
                "ProgressDeadlineExceeded: {}",
                c.message.as_deref().unwrap_or("progress deadline exceeded")
            )
        });
    Ok(Workload {
        id,
        strategy,
        paused: spec.paused.unwrap_or(false),
        selector: selector(&spec.selector)?,
        template_annotations: annotations(&spec.template),
        status: RolloutStatus {
            failure,
            generation: d.metadata.generation.unwrap_or(0),
            observed_generation: status.observed_generation.unwrap_or(0),
            desired,
            replicas: count(status.replicas),
            updated: count(status.updated_replicas),
            ready: count(status.ready_replicas),
            available: count(status.available_replicas),
            current_revision: None,
            update_revision: None,
        },
    })
}

/// A DaemonSet: desired pods are the scheduled nodes; its update revision is its template
/// generation, which its pods carry as `pod-template-generation`.
pub fn daemon_set(ds: &DaemonSet) -> Result<Workload, ObjectError> {
    let kind = WorkloadKind::DaemonSet;
    let id = workload_ref(kind, &ds.metadata)?;
    let spec = &ds.spec;
    let status = ds.status.clone().unwrap_or_default();
    let desired = count(Some(status.desired_number_scheduled));
    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref());
    let strategy = strategy(
        &id,
        spec.update_strategy
            .as_ref()
            .and_then(|s| s.type_.as_deref()),
        || UpdateStrategy::RollingUpdate {
            max_unavailable: scaled(
                rolling.and_then(|r| r.max_unavailable.as_ref()),
                desired,
                1,
                false,
            ),
            max_surge: scaled(rolling.and_then(|r| r.max_surge.as_ref()), desired, 0, true),
        },
        None,
    )?;
    Ok(Workload {
        id,
        strategy,
        paused: false,
        selector: selector(&spec.selector)?,
        template_annotations: annotations(&spec.template),
        status: RolloutStatus {
            failure: None,
            generation: ds.metadata.generation.unwrap_or(0),
            observed_generation: status.observed_generation.unwrap_or(0),
            desired,
            replicas: count(Some(status.current_number_scheduled)),
            updated: count(status.updated_number_scheduled),
            ready: count(Some(status.number_ready)),
            available: count(status.number_available),
            current_revision: None,
            update_revision: ds
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DAEMONSET_TEMPLATE_GENERATION))
                .cloned(),
        },
    })
}

/// A StatefulSet: complete once `currentRevision` reaches `updateRevision` (RollingUpdate); its pods
/// carry their revision as `controller-revision-hash`.
pub fn stateful_set(ss: &StatefulSet) -> Result<Workload, ObjectError> {
    let kind = WorkloadKind::StatefulSet;
    let id = workload_ref(kind, &ss.metadata)?;
    let spec = &ss.spec;
    let desired = count(Some(spec.replicas.unwrap_or(1)));
    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref());
    let strategy = strategy(
        &id,
        spec.update_strategy
            .as_ref()
            .and_then(|s| s.type_.as_deref()),
        || UpdateStrategy::RollingUpdate {
            max_unavailable: scaled(
                rolling.and_then(|r| r.max_unavailable.as_ref()),
                desired,
                1,
                false,
            ),
            max_surge: 0,
        },
        None,
    )?;
    let status = ss.status.clone().unwrap_or_default();
    let ready = count(status.ready_replicas);
    Ok(Workload {
        id,
        strategy,
        paused: false,
        selector: selector(&spec.selector)?,
        template_annotations: annotations(&spec.template),
        status: RolloutStatus {
            failure: None,
            generation: ss.metadata.generation.unwrap_or(0),
            observed_generation: status.observed_generation.unwrap_or(0),
            desired,
            replicas: count(Some(status.replicas)),
            updated: count(status.updated_replicas),
            ready,
            // Older API servers leave it out; ready is then the best they say.
            available: status.available_replicas.map_or(ready, |a| count(Some(a))),
            current_revision: status.current_revision,
            update_revision: status.update_revision,
        },
    })
}

/// A pod: its revision label and whether its `Ready` condition is true. The backend cannot see which
/// trust bundle a real pod loaded, so `trust_bundle` is `None`.
pub fn pod(p: &KubePod) -> Pod {
    let labels = p.metadata.labels.clone().unwrap_or_default();
    let revision = REVISION_LABELS
        .iter()
        .find_map(|key| labels.get(*key))
        .cloned()
        .unwrap_or_default();
    let ready = ready(
        p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .map(|c| (c.type_.as_str(), c.status.as_str())),
    );
    Pod {
        namespace: p.metadata.namespace.clone().unwrap_or_default(),
        name: p.metadata.name.clone().unwrap_or_default(),
        labels,
        revision,
        ready,
        trust_bundle: None,
        owner: p
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| PodOwner {
                kind: o.kind.clone(),
                name: o.name.clone(),
            }),
        finished: p
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|phase| matches!(phase, "Succeeded" | "Failed")),
        crash_looping: p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.as_deref())
            .any(|reason| reason == "CrashLoopBackOff"),
    }
}

/// Whether the `Ready` condition (of a pod or a node; given as type and status) is `True`.
fn ready<'a>(mut conditions: impl Iterator<Item = (&'a str, &'a str)>) -> bool {
    conditions.any(|(type_, status)| type_ == "Ready" && status == "True")
}

/// A node as the health gate sees it.
pub fn node(n: &KubeNode) -> Node {
    Node {
        name: n.metadata.name.clone().unwrap_or_default(),
        ready: ready(
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .map(|c| (c.type_.as_str(), c.status.as_str())),
        ),
        unschedulable: n
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false),
    }
}

/// The API's selector as the seam's.
pub fn selector(s: &KubeSelector) -> Result<LabelSelector, ObjectError> {
    let match_expressions = s
        .match_expressions
        .iter()
        .flatten()
        .map(|e| {
            let operator = match e.operator.as_str() {
                "In" => LabelOperator::In,
                "NotIn" => LabelOperator::NotIn,
                "Exists" => LabelOperator::Exists,
                "DoesNotExist" => LabelOperator::DoesNotExist,
                other => return Err(ObjectError::Operator(other.to_owned())),
            };
            Ok(LabelExpression {
                key: e.key.clone(),
                operator,
                values: e.values.clone().unwrap_or_default(),
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(LabelSelector {
        match_labels: s.match_labels.clone().unwrap_or_default(),
        match_expressions,
    })
}

/// The `labelSelector` query value for a selector: every `matchLabels` pair and every expression, so
/// the API returns exactly the pods the workload owns. An empty selector selects everything, as the
/// API's empty string does.
pub fn selector_query(s: &LabelSelector) -> String {
    let pairs = s.match_labels.iter().map(|(k, v)| format!("{k}={v}"));
    let expressions = s.match_expressions.iter().map(|e| {
        let values = || e.values.join(",");
        match e.operator {
            LabelOperator::In => format!("{} in ({})", e.key, values()),
            LabelOperator::NotIn => format!("{} notin ({})", e.key, values()),
            LabelOperator::Exists => e.key.clone(),
            LabelOperator::DoesNotExist => format!("!{}", e.key),
        }
    });
    pairs.chain(expressions).collect::<Vec<_>>().join(",")
}

/// The strategic merge patch `kubectl rollout restart` sends: one pod template annotation.
pub fn template_annotation_patch(key: &str, value: &str) -> serde_json::Value {
    serde_json::json!({
        "spec": { "template": { "metadata": { "annotations": { key: value } } } }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::RESTARTED_AT_ANNOTATION;

    fn parse<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn deployment_status_and_progress_deadline() {
        let mut d: Deployment = parse(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default", "generation": 4},
            "spec": {
                "replicas": 4,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "30%"}},
                "template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: "t1"}}}
            },
            "status": {
                "observedGeneration": 4, "replicas": 5, "updatedReplicas": 3,
                "readyReplicas": 4, "availableReplicas": 4,
                "conditions": [{"type": "Available", "status": "True"}]
            }
        }));
        let w = deployment(&d).unwrap();
        assert_eq!(w.id.to_string(), "Deployment default/web");
        assert_eq!(
            w.strategy,
            UpdateStrategy::RollingUpdate {
                max_unavailable: 1,
                max_surge: 1
            }
        );
        assert_eq!(w.template_annotations[RESTARTED_AT_ANNOTATION], "t1");
        assert_eq!(
            (w.status.desired, w.status.replicas, w.status.updated),
            (4, 5, 3)
        );
        assert_eq!(w.status.failure, None);
        assert!(!w.paused);
        d.status.as_mut().unwrap().conditions = Some(vec![parse(serde_json::json!({
            "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
            "message": "ReplicaSet \"web-7d\" has timed out progressing."
        }))]);
        d.spec.paused = Some(true);
        let w = deployment(&d).unwrap();
        assert!(w.paused);
        assert!(w.status.failure.unwrap().contains("web-7d\" has timed out"));
    }

    #[test]
    fn daemon_set_on_delete_uses_its_template_generation() {
        let ds: DaemonSet = parse(serde_json::json!({
            "metadata": {"name": "exporter", "namespace": "monitoring", "generation": 3,
                          "annotations": {DAEMONSET_TEMPLATE_GENERATION: "3"}},
            "spec": {
                "selector": {"matchLabels": {"app": "exporter"}},
                "updateStrategy": {"type": "OnDelete"},
                "template": {}
            },
            "status": {
                "observedGeneration": 3, "desiredNumberScheduled": 4, "currentNumberScheduled": 4,
                "updatedNumberScheduled": 1, "numberReady": 4, "numberAvailable": 4, "numberMisscheduled": 0
            }
        }));
        let w = daemon_set(&ds).unwrap();
        assert_eq!(w.strategy, UpdateStrategy::OnDelete);
        assert_eq!(w.status.update_revision.as_deref(), Some("3"));
        assert_eq!(w.status.current_revision, None);
        assert_eq!(
            (w.status.desired, w.status.updated, w.status.ready),
            (4, 1, 4)
        );
        let pod_json = |generation: &str, ready: &str| -> KubePod {
            parse(serde_json::json!({
                "metadata": {"name": "exporter-x", "namespace": "monitoring",
                    "labels": {"app": "exporter", "controller-revision-hash": "5d8f", "pod-template-generation": generation}},
                "status": {"conditions": [{"type": "Ready", "status": ready}]}
            }))
        };
        let p = pod(&pod_json("3", "True"));
        assert_eq!((p.revision.as_str(), p.ready), ("3", true));
        assert!(!pod(&pod_json("2", "False")).ready);
    }

    #[test]
    fn stateful_set_revisions_and_defaults() {
        let ss: StatefulSet = parse(serde_json::json!({
            "metadata": {"name": "pg", "namespace": "db", "generation": 2},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "pg"},
                             "matchExpressions": [{"key": "role", "operator": "In", "values": ["primary", "replica"]}]},
                "template": {},
                "serviceName": "pg"
            },
            "status": {"observedGeneration": 2, "replicas": 3, "readyReplicas": 3, "updatedReplicas": 1,
                       "currentRevision": "pg-5d", "updateRevision": "pg-6f"}
        }));
        let w = stateful_set(&ss).unwrap();
        assert_eq!(
            w.strategy,
            UpdateStrategy::RollingUpdate {
                max_unavailable: 1,
                max_surge: 0
            }
        );
        assert_eq!(w.status.available, 3, "available defaults to ready");
        assert_eq!(w.status.update_revision.as_deref(), Some("pg-6f"));
        assert_eq!(
            selector_query(&w.selector),
            "app=pg,role in (primary,replica)"
        );
        let p: KubePod = parse(serde_json::json!({
            "metadata": {"name": "pg-0", "namespace": "db",
                         "labels": {"app": "pg", "controller-revision-hash": "pg-6f"}}
        }));
        assert_eq!(pod(&p).revision, "pg-6f");
        assert!(!pod(&p).ready, "no Ready condition is not ready");
    }

    #[test]
    fn unknown_strategy_and_operator_are_refused() {
        let ss: StatefulSet = parse(serde_json::json!({
            "metadata": {"name": "x", "namespace": "y"},
            "spec": {"selector": {}, "template": {}, "serviceName": "x",
                     "updateStrategy": {"type": "Blue"}}
        }));
        assert!(
            stateful_set(&ss)
                .unwrap_err()
                .to_string()
                .contains("unknown update strategy 'Blue'")
        );
        let bad: KubeSelector = parse(serde_json::json!({
            "matchExpressions": [{"key": "a", "operator": "Near"}]
        }));
        assert!(matches!(selector(&bad), Err(ObjectError::Operator(_))));
    }

    #[test]
    fn selector_query_covers_every_operator() {
        let s = LabelSelector {
            match_labels: BTreeMap::from([
                ("app".into(), "db".into()),
                ("tier".into(), "a".into()),
            ]),
            match_expressions: vec![
                LabelExpression {
                    key: "zone".into(),
                    operator: LabelOperator::NotIn,
                    values: vec!["x".into(), "y".into()],
                },
                LabelExpression {
                    key: "canary".into(),
                    operator: LabelOperator::DoesNotExist,
                    values: vec![],
                },
                LabelExpression {
                    key: "owner".into(),
                    operator: LabelOperator::Exists,
                    values: vec![],
                },
            ],
        };
        assert_eq!(
            selector_query(&s),
            "app=db,tier=a,zone notin (x,y),!canary,owner"
        );
        assert_eq!(selector_query(&LabelSelector::default()), "");
    }

    #[test]
    fn restart_patch_is_kubectls() {
        assert_eq!(
            template_annotation_patch(RESTARTED_AT_ANNOTATION, "2026-01-01T00:00:00Z"),
            serde_json::json!({"spec": {"template": {"metadata": {"annotations": {
                "kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"
            }}}}})
        );
    }

    #[test]
    fn percentages_round_like_the_controllers() {
        let pct = |s: &str| IntOrString::String(s.into());
        assert_eq!(scaled(Some(&pct("25%")), 3, 0, true), 1);
        assert_eq!(scaled(Some(&pct("25%")), 3, 0, false), 0);
        assert_eq!(scaled(Some(&IntOrString::Int(2)), 3, 0, false), 2);
        assert_eq!(scaled(None, 3, 7, false), 7);
    }
}
