//! The simulated cluster's views as Kubernetes objects, encoded with k8s-openapi's own types so the wire
//! format is the real one.
//!
//! Everything is derived from one [`ApiView`]: names, labels and counts from the model; uids hashed from
//! identities (stable across requests, new for a recreated pod); timestamps from the model's clock.
//! Resource versions are stamped afterwards by [`super::versions::ResourceVersions`].

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use dc_agent::cluster::{
    LabelOperator, LabelSelector, UpdateStrategy, Workload, WorkloadKind, WorkloadRef,
};
use dc_agent::rollout::rollout_complete;
use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, DaemonSetStatus, DaemonSetUpdateStrategy, Deployment,
    DeploymentCondition, DeploymentSpec, DeploymentStatus, DeploymentStrategy,
    RollingUpdateDaemonSet, RollingUpdateDeployment, RollingUpdateStatefulSetStrategy, StatefulSet,
    StatefulSetSpec, StatefulSetStatus, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateWaiting, ContainerStatus, Namespace, NamespaceSpec,
    NamespaceStatus, Node, NodeCondition, NodeSpec, NodeStatus, Pod, PodCondition, PodSpec,
    PodStatus, PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector as K8sSelector, LabelSelectorRequirement, ObjectMeta, OwnerReference, Time,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::view::{ApiPod, ApiView, ApiWorkload};

/// The image every simulated container runs; nothing pulls it.
const IMAGE: &str = "registry.local/simulated:1";

/// Wall time at the simulated clock's zero: object timestamps are this plus the model's milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epoch(Timestamp);

impl Epoch {
    /// The epoch of a clock reading `clock_ms` at wall time `now`.
    pub fn at(now: Timestamp, clock_ms: u64) -> Self {
        let ms = i64::try_from(clock_ms).unwrap_or(i64::MAX);
        Self(
            now.checked_sub(SignedDuration::from_millis(ms))
                .unwrap_or(Timestamp::UNIX_EPOCH),
        )
    }

    pub(super) fn time(self, ms: u64) -> Time {
        let ms = i64::try_from(ms).unwrap_or(i64::MAX);
        // Whole seconds, as the API server serialises metav1.Time.
        let at = self
            .0
            .checked_add(SignedDuration::from_millis(ms))
            .unwrap_or(self.0);
        Time(Timestamp::from_second(at.as_second()).unwrap_or(at))
    }
}

/// A kind the server lists, gets and watches.
pub trait Served:
    k8s_openapi::ListableResource
    + k8s_openapi::Metadata<Ty = ObjectMeta>
    + serde::Serialize
    + Clone
    + Send
    + 'static
{
    /// Every object of the kind in the view.
    fn from_view(view: &ApiView, epoch: Epoch) -> Vec<Self>;
}

/// A workload kind, which can also be patched.
pub trait ServedWorkload: Served {
    const WORKLOAD: WorkloadKind;
}

impl Served for Deployment {
    fn from_view(view: &ApiView, epoch: Epoch) -> Vec<Self> {
        of_kind(view, WorkloadKind::Deployment)
            .map(|w| deployment(w, epoch))
            .collect()
    }
}
impl ServedWorkload for Deployment {
    const WORKLOAD: WorkloadKind = WorkloadKind::Deployment;
}

impl Served for DaemonSet {
    fn from_view(view: &ApiView, epoch: Epoch) -> Vec<Self> {
        of_kind(view, WorkloadKind::DaemonSet)
            .map(|w| daemon_set(w, epoch))
            .collect()
    }
}
impl ServedWorkload for DaemonSet {
    const WORKLOAD: WorkloadKind = WorkloadKind::DaemonSet;
}

impl Served for StatefulSet {
    fn from_view(view: &ApiView, epoch: Epoch) -> Vec<Self> {
        of_kind(view, WorkloadKind::StatefulSet)
            .map(|w| stateful_set(w, epoch))
            .collect()
    }
}
impl ServedWorkload for StatefulSet {
    const WORKLOAD: WorkloadKind = WorkloadKind::StatefulSet;
}

impl Served for Pod {
    fn from_view(view: &ApiView, epoch: Epoch) -> Vec<Self> {
        view.workloads
            .iter()
            .flat_map(|w| w.pods.iter().map(move |p| pod(w, p, epoch)))
            .collect()
    }
}

/// Every host as its node: Ready unless the simulated cluster says not, cordoned where it says.
impl Served for Node {
    fn from_view(view: &ApiView, epoch: Epoch) -> Vec<Self> {
        view.nodes
            .iter()
            .map(|n| Node {
                metadata: ObjectMeta {
                    name: Some(n.name.clone()),
                    uid: Some(uid(&["Node", &n.name])),
                    creation_timestamp: Some(epoch.time(0)),
                    ..ObjectMeta::default()
                },
                spec: Some(NodeSpec {
                    unschedulable: n.unschedulable.then_some(true),
                    ..NodeSpec::default()
                }),
                status: Some(NodeStatus {
                    conditions: Some(vec![NodeCondition {
                        type_: "Ready".to_owned(),
                        status: if n.ready { "True" } else { "False" }.to_owned(),
                        ..NodeCondition::default()
                    }]),
                    ..NodeStatus::default()
                }),
            })
            .collect()
    }
}

impl Served for Namespace {
    fn from_view(view: &ApiView, epoch: Epoch) -> Vec<Self> {
        view.namespaces
            .iter()
            .map(String::as_str)
            .map(|name| Namespace {
                metadata: ObjectMeta {
                    name: Some(name.to_owned()),
                    uid: Some(uid(&["Namespace", name])),
                    labels: Some(BTreeMap::from([(
                        "kubernetes.io/metadata.name".to_owned(),
                        name.to_owned(),
                    )])),
                    creation_timestamp: Some(epoch.time(0)),
                    ..ObjectMeta::default()
                },
                spec: Some(NamespaceSpec {
                    finalizers: Some(vec!["kubernetes".to_owned()]),
                }),
                status: Some(NamespaceStatus {
                    phase: Some("Active".to_owned()),
                    ..NamespaceStatus::default()
                }),
            })
            .collect()
    }
}

fn of_kind(view: &ApiView, kind: WorkloadKind) -> impl Iterator<Item = &ApiWorkload> {
    view.workloads
        .iter()
        .filter(move |w| w.workload.id.kind == kind)
}

/// The workload a served object stands for.
pub fn workload_ref(kind: WorkloadKind, namespace: &str, name: &str) -> WorkloadRef {
    WorkloadRef {
        kind,
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    }
}

/// A stable UUID-shaped uid for an identity.
pub(super) fn uid(parts: &[&str]) -> String {
    let hash = |salt: u8| {
        let mut h = DefaultHasher::new();
        salt.hash(&mut h);
        parts.hash(&mut h);
        h.finish()
    };
    let (a, b) = (hash(1), hash(2));
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

/// A DaemonSet's template generation from the model's revision (`<name>-<n>`): the number.
fn template_generation(revision: &str) -> String {
    revision
        .rsplit_once('-')
        .map_or(revision, |(_, n)| n)
        .to_owned()
}

/// A pod-template-hash shaped value (10 characters of the controllers' safe alphabet) for a revision.
fn template_hash(revision: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut h = DefaultHasher::new();
    revision.hash(&mut h);
    let mut n = h.finish();
    (0..10)
        .map(|_| {
            let c = ALPHABET[(n % ALPHABET.len() as u64) as usize];
            n /= ALPHABET.len() as u64;
            char::from(c)
        })
        .collect()
}

fn int(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn workload_meta(w: &ApiWorkload, kind: &str, epoch: Epoch) -> ObjectMeta {
    let id = &w.workload.id;
    ObjectMeta {
        name: Some(id.name.clone()),
        namespace: Some(id.namespace.clone()),
        uid: Some(uid(&[kind, &id.namespace, &id.name])),
        generation: Some(w.workload.status.generation),
        labels: Some(w.spec.labels.clone()),
        creation_timestamp: Some(epoch.time(0)),
        ..ObjectMeta::default()
    }
}

/// The sim's selector as `spec.selector`.
pub fn selector(s: &LabelSelector) -> K8sSelector {
    let expressions: Vec<LabelSelectorRequirement> = s
        .match_expressions
        .iter()
        .map(|e| LabelSelectorRequirement {
            key: e.key.clone(),
            operator: match e.operator {
                LabelOperator::In => "In",
                LabelOperator::NotIn => "NotIn",
                LabelOperator::Exists => "Exists",
                LabelOperator::DoesNotExist => "DoesNotExist",
            }
            .to_owned(),
            values: (!e.values.is_empty()).then(|| e.values.clone()),
        })
        .collect();
    K8sSelector {
        match_labels: (!s.match_labels.is_empty()).then(|| s.match_labels.clone()),
        match_expressions: (!expressions.is_empty()).then_some(expressions),
    }
}

fn template(w: &ApiWorkload) -> PodTemplateSpec {
    let annotations = &w.workload.template_annotations;
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(w.spec.labels.clone()),
            annotations: (!annotations.is_empty()).then(|| annotations.clone()),
            ..ObjectMeta::default()
        }),
        spec: Some(pod_spec(&w.workload, None)),
    }
}

fn pod_spec(w: &Workload, node: Option<String>) -> PodSpec {
    PodSpec {
        containers: vec![Container {
            name: w.id.name.clone(),
            image: Some(IMAGE.to_owned()),
            ..Container::default()
        }],
        node_name: node,
        ..PodSpec::default()
    }
}

/// When the workload last progressed: its newest pod's creation (stable between requests).
fn last_progress(w: &ApiWorkload) -> u64 {
    w.pods.iter().map(|p| p.created_ms).max().unwrap_or(0)
}

/// The ReplicaSet a Deployment's pods of one revision belong to (not served, but named in owners and
/// conditions as the Deployment controller names it).
fn replica_set_name(w: &ApiWorkload, revision: &str) -> String {
    format!("{}-{}", w.workload.id.name, template_hash(revision))
}

pub fn deployment(w: &ApiWorkload, epoch: Epoch) -> Deployment {
    let s = &w.workload.status;
    let (strategy, max_unavailable) = match w.workload.strategy {
        UpdateStrategy::RollingUpdate {
            max_unavailable,
            max_surge,
        } => (
            DeploymentStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(int(max_unavailable))),
                    max_surge: Some(IntOrString::Int(int(max_surge))),
                }),
            },
            max_unavailable,
        ),
        // Deployments have no OnDelete in Kubernetes; the model's own name is served as is.
        UpdateStrategy::OnDelete => (
            DeploymentStrategy {
                type_: Some("OnDelete".to_owned()),
                rolling_update: None,
            },
            0,
        ),
    };
    let at = Some(epoch.time(last_progress(w)));
    let newest = w
        .pods
        .iter()
        .max_by_key(|p| p.created_ms)
        .map(|p| replica_set_name(w, &p.pod.revision))
        .unwrap_or_else(|| w.workload.id.name.clone());
    let available = s.available >= s.desired.saturating_sub(max_unavailable);
    let complete = rollout_complete(s).is_ok();
    let condition = |type_: &str, ok: bool, reason: &str, message: String| DeploymentCondition {
        type_: Some(type_.to_owned()),
        status: Some(if ok { "True" } else { "False" }.to_owned()),
        reason: Some(reason.to_owned()),
        message: Some(message),
        last_update_time: at.clone(),
        last_transition_time: at.clone(),
    };
    let conditions = vec![
        if available {
            condition(
                "Available",
                true,
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".to_owned(),
            )
        } else {
            condition(
                "Available",
                false,
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".to_owned(),
            )
        },
        if complete {
            condition(
                "Progressing",
                true,
                "NewReplicaSetAvailable",
                format!("ReplicaSet \"{newest}\" has successfully progressed."),
            )
        } else {
            condition(
                "Progressing",
                true,
                "ReplicaSetUpdated",
                format!("ReplicaSet \"{newest}\" is progressing."),
            )
        },
    ];
    Deployment {
        metadata: workload_meta(w, "Deployment", epoch),
        spec: DeploymentSpec {
            replicas: Some(int(s.desired)),
            selector: selector(&w.workload.selector),
            template: template(w),
            strategy: Some(strategy),
            paused: w.workload.paused.then_some(true),
            revision_history_limit: Some(10),
            progress_deadline_seconds: Some(600),
            ..DeploymentSpec::default()
        },
        status: Some(DeploymentStatus {
            observed_generation: Some(s.observed_generation),
            replicas: Some(int(s.replicas)),
            updated_replicas: Some(int(s.updated)),
            ready_replicas: Some(int(s.ready)),
            available_replicas: Some(int(s.available)),
            unavailable_replicas: (s.desired > s.available).then(|| int(s.desired - s.available)),
            conditions: Some(conditions),
            ..DeploymentStatus::default()
        }),
    }
}

pub fn daemon_set(w: &ApiWorkload, epoch: Epoch) -> DaemonSet {
    let s = &w.workload.status;
    let update_strategy = match w.workload.strategy {
        UpdateStrategy::RollingUpdate {
            max_unavailable,
            max_surge,
        } => DaemonSetUpdateStrategy {
            type_: Some("RollingUpdate".to_owned()),
            rolling_update: Some(RollingUpdateDaemonSet {
                max_unavailable: Some(IntOrString::Int(int(max_unavailable))),
                max_surge: Some(IntOrString::Int(int(max_surge))),
            }),
        },
        UpdateStrategy::OnDelete => DaemonSetUpdateStrategy {
            type_: Some("OnDelete".to_owned()),
            rolling_update: None,
        },
    };
    // The template generation a real DaemonSet carries as an annotation and stamps on its pods as
    // `pod-template-generation`: how a pod of the current template is told apart.
    let mut metadata = workload_meta(w, "DaemonSet", epoch);
    if let Some(generation) = s.update_revision.as_deref().map(template_generation) {
        metadata.annotations = Some(BTreeMap::from([(
            "deprecated.daemonset.template.generation".to_owned(),
            generation,
        )]));
    }
    DaemonSet {
        metadata,
        spec: DaemonSetSpec {
            selector: selector(&w.workload.selector),
            template: template(w),
            update_strategy: Some(update_strategy),
            revision_history_limit: Some(10),
            ..DaemonSetSpec::default()
        },
        status: Some(DaemonSetStatus {
            observed_generation: Some(s.observed_generation),
            desired_number_scheduled: int(s.desired),
            current_number_scheduled: int(s.replicas.min(s.desired)),
            number_misscheduled: 0,
            number_ready: int(s.ready),
            number_available: Some(int(s.available)),
            number_unavailable: (s.desired > s.available).then(|| int(s.desired - s.available)),
            updated_number_scheduled: Some(int(s.updated)),
            ..DaemonSetStatus::default()
        }),
    }
}

pub fn stateful_set(w: &ApiWorkload, epoch: Epoch) -> StatefulSet {
    let s = &w.workload.status;
    let update_strategy = match w.workload.strategy {
        UpdateStrategy::RollingUpdate {
            max_unavailable, ..
        } => StatefulSetUpdateStrategy {
            type_: Some("RollingUpdate".to_owned()),
            rolling_update: Some(RollingUpdateStatefulSetStrategy {
                partition: Some(0),
                max_unavailable: Some(IntOrString::Int(int(max_unavailable))),
            }),
        },
        UpdateStrategy::OnDelete => StatefulSetUpdateStrategy {
            type_: Some("OnDelete".to_owned()),
            rolling_update: None,
        },
    };
    let current = w
        .pods
        .iter()
        .filter(|p| Some(&p.pod.revision) == s.current_revision.as_ref())
        .count();
    StatefulSet {
        metadata: workload_meta(w, "StatefulSet", epoch),
        spec: StatefulSetSpec {
            replicas: Some(int(s.desired)),
            selector: selector(&w.workload.selector),
            service_name: Some(w.workload.id.name.clone()),
            template: template(w),
            update_strategy: Some(update_strategy),
            pod_management_policy: Some("OrderedReady".to_owned()),
            revision_history_limit: Some(10),
            ..StatefulSetSpec::default()
        },
        status: Some(StatefulSetStatus {
            observed_generation: Some(s.observed_generation),
            replicas: int(s.replicas),
            ready_replicas: Some(int(s.ready)),
            available_replicas: Some(int(s.available)),
            current_replicas: Some(i32::try_from(current).unwrap_or(i32::MAX)),
            updated_replicas: Some(int(s.updated)),
            current_revision: s.current_revision.clone(),
            update_revision: s.update_revision.clone(),
            ..StatefulSetStatus::default()
        }),
    }
}

pub fn pod(w: &ApiWorkload, p: &ApiPod, epoch: Epoch) -> Pod {
    let id = &w.workload.id;
    let mut labels = p.pod.labels.clone();
    let (owner_kind, owner_name) = match id.kind {
        WorkloadKind::Deployment => {
            labels.insert(
                "pod-template-hash".to_owned(),
                template_hash(&p.pod.revision),
            );
            ("ReplicaSet", replica_set_name(w, &p.pod.revision))
        }
        WorkloadKind::DaemonSet => {
            labels.insert(
                "controller-revision-hash".to_owned(),
                template_hash(&p.pod.revision),
            );
            labels.insert(
                "pod-template-generation".to_owned(),
                template_generation(&p.pod.revision),
            );
            ("DaemonSet", id.name.clone())
        }
        WorkloadKind::StatefulSet => {
            // The same value as the StatefulSet's currentRevision/updateRevision, as the real one.
            labels.insert(
                "controller-revision-hash".to_owned(),
                p.pod.revision.clone(),
            );
            labels.insert(
                "statefulset.kubernetes.io/pod-name".to_owned(),
                p.pod.name.clone(),
            );
            ("StatefulSet", id.name.clone())
        }
    };
    // A DaemonSet pod is named after its host.
    let node = (id.kind == WorkloadKind::DaemonSet)
        .then(|| p.pod.name.strip_prefix(&format!("{}-", id.name)))
        .flatten()
        .map(str::to_owned);
    let created = p.created_ms.to_string();
    let ready = if p.pod.ready { "True" } else { "False" };
    let condition = |type_: &str, status: &str, at: u64| PodCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        last_transition_time: Some(epoch.time(at)),
        ..PodCondition::default()
    };
    let ready_at = if p.pod.ready {
        p.ready_ms
    } else {
        p.created_ms
    };
    Pod {
        metadata: ObjectMeta {
            name: Some(p.pod.name.clone()),
            namespace: Some(p.pod.namespace.clone()),
            // A recreated pod keeps its name (DaemonSets, StatefulSets) but is a new object.
            uid: Some(uid(&["Pod", &p.pod.namespace, &p.pod.name, &created])),
            labels: Some(labels),
            creation_timestamp: Some(epoch.time(p.created_ms)),
            owner_references: Some(vec![OwnerReference {
                api_version: "apps/v1".to_owned(),
                kind: owner_kind.to_owned(),
                uid: uid(&[owner_kind, &id.namespace, &owner_name]),
                name: owner_name,
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(pod_spec(&w.workload, node)),
        status: Some(PodStatus {
            phase: Some("Running".to_owned()),
            start_time: Some(epoch.time(p.created_ms)),
            conditions: Some(vec![
                condition("PodScheduled", "True", p.created_ms),
                condition("Initialized", "True", p.created_ms),
                condition("ContainersReady", ready, ready_at),
                condition("Ready", ready, ready_at),
            ]),
            container_statuses: p.pod.crash_looping.then(|| {
                vec![ContainerStatus {
                    name: "main".to_owned(),
                    image: IMAGE.to_owned(),
                    restart_count: 5,
                    state: Some(ContainerState {
                        waiting: Some(ContainerStateWaiting {
                            reason: Some("CrashLoopBackOff".to_owned()),
                            ..ContainerStateWaiting::default()
                        }),
                        ..ContainerState::default()
                    }),
                    ..ContainerStatus::default()
                }]
            }),
            ..PodStatus::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dc_agent::cluster::{LabelExpression, Pod as SimPodView, RolloutStatus};
    use dc_agent::sim::WorkloadSpec;

    fn epoch() -> Epoch {
        Epoch::at(Timestamp::from_second(1_800_000_000).unwrap(), 0)
    }

    fn workload(
        kind: WorkloadKind,
        strategy: UpdateStrategy,
        status: RolloutStatus,
    ) -> ApiWorkload {
        let spec = WorkloadSpec::new(kind, "default", "web", 3, strategy);
        ApiWorkload {
            workload: Workload {
                id: workload_ref(kind, "default", "web"),
                strategy,
                paused: false,
                selector: LabelSelector {
                    match_labels: spec.labels.clone(),
                    match_expressions: vec![LabelExpression {
                        key: "tier".into(),
                        operator: LabelOperator::In,
                        values: vec!["a".into(), "b".into()],
                    }],
                },
                template_annotations: BTreeMap::from([(
                    "kubectl.kubernetes.io/restartedAt".to_owned(),
                    "t1".to_owned(),
                )]),
                status,
            },
            pods: vec![ApiPod {
                pod: SimPodView {
                    namespace: "default".into(),
                    name: "web-2-4".into(),
                    labels: spec.labels.clone(),
                    revision: "web-2".into(),
                    ready: true,
                    trust_bundle: None,
                    owner: None,
                    finished: false,
                    crash_looping: false,
                },
                created_ms: 1500,
                ready_ms: 1600,
            }],
            spec,
        }
    }

    fn complete() -> RolloutStatus {
        RolloutStatus {
            failure: None,
            generation: 2,
            observed_generation: 2,
            desired: 3,
            replicas: 3,
            updated: 3,
            ready: 3,
            available: 3,
            current_revision: None,
            update_revision: None,
        }
    }

    #[test]
    fn deployment_has_selector_strategy_status_and_conditions() {
        let strategy = UpdateStrategy::RollingUpdate {
            max_unavailable: 0,
            max_surge: 1,
        };
        let d = deployment(
            &workload(WorkloadKind::Deployment, strategy, complete()),
            epoch(),
        );
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["apiVersion"], "apps/v1");
        assert_eq!(json["kind"], "Deployment");
        assert_eq!(json["metadata"]["generation"], 2);
        assert_eq!(
            json["metadata"]["creationTimestamp"],
            "2027-01-15T08:00:00Z"
        );
        assert_eq!(json["spec"]["selector"]["matchLabels"]["app"], "web");
        assert_eq!(
            json["spec"]["selector"]["matchExpressions"][0],
            serde_json::json!({"key": "tier", "operator": "In", "values": ["a", "b"]})
        );
        assert_eq!(
            json["spec"]["strategy"],
            serde_json::json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}})
        );
        assert_eq!(
            json["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"],
            "t1"
        );
        let status = &json["status"];
        assert_eq!(status["observedGeneration"], 2);
        assert_eq!(status["updatedReplicas"], 3);
        assert_eq!(status["availableReplicas"], 3);
        assert!(status.get("unavailableReplicas").is_none());
        let progressing = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Progressing")
            .unwrap();
        assert_eq!(progressing["reason"], "NewReplicaSetAvailable");

        let mut rolling = complete();
        rolling.updated = 1;
        rolling.replicas = 4;
        let d = deployment(
            &workload(WorkloadKind::Deployment, strategy, rolling),
            epoch(),
        );
        let conditions = d.status.unwrap().conditions.unwrap();
        assert_eq!(conditions[1].reason.as_deref(), Some("ReplicaSetUpdated"));
    }

    #[test]
    fn stateful_set_and_daemon_set_carry_revisions_and_strategies() {
        let mut status = complete();
        status.current_revision = Some("web-1".into());
        status.update_revision = Some("web-2".into());
        status.updated = 1;
        let s = stateful_set(
            &workload(WorkloadKind::StatefulSet, UpdateStrategy::OnDelete, status),
            epoch(),
        );
        assert_eq!(
            s.spec.update_strategy.unwrap().type_.as_deref(),
            Some("OnDelete")
        );
        let status = s.status.unwrap();
        assert_eq!(status.current_revision.as_deref(), Some("web-1"));
        assert_eq!(status.update_revision.as_deref(), Some("web-2"));
        assert_eq!(status.current_replicas, Some(0), "the one pod is at web-2");
        assert_eq!(status.updated_replicas, Some(1));

        let mut status = complete();
        status.ready = 2;
        status.available = 2;
        let strategy = UpdateStrategy::RollingUpdate {
            max_unavailable: 1,
            max_surge: 0,
        };
        let d = daemon_set(
            &workload(WorkloadKind::DaemonSet, strategy, status),
            epoch(),
        );
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["kind"], "DaemonSet");
        assert_eq!(
            json["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"],
            1
        );
        assert_eq!(json["status"]["desiredNumberScheduled"], 3);
        assert_eq!(json["status"]["numberReady"], 2);
        assert_eq!(json["status"]["numberUnavailable"], 1);
        assert_eq!(json["status"]["updatedNumberScheduled"], 3);

        // The template generation, as the annotation real DaemonSets carry.
        let mut status = complete();
        status.update_revision = Some("proxy-3".to_owned());
        let d = daemon_set(
            &workload(WorkloadKind::DaemonSet, UpdateStrategy::OnDelete, status),
            epoch(),
        );
        assert_eq!(
            d.metadata.annotations.unwrap()["deprecated.daemonset.template.generation"],
            "3"
        );
        assert_eq!(template_generation("node-exporter-12"), "12");
    }

    #[test]
    fn pods_carry_revision_labels_owners_and_readiness() {
        let w = workload(
            WorkloadKind::Deployment,
            UpdateStrategy::OnDelete,
            complete(),
        );
        let p = pod(&w, &w.pods[0], epoch());
        let labels = p.metadata.labels.as_ref().unwrap();
        let hash = &labels["pod-template-hash"];
        assert_eq!(hash.len(), 10);
        let owner = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(owner.kind, "ReplicaSet");
        assert_eq!(owner.name, format!("web-{hash}"));
        let status = p.status.unwrap();
        assert_eq!(status.phase.as_deref(), Some("Running"));
        let ready = status
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "True");
        assert_eq!(
            status.start_time.unwrap().0,
            Timestamp::from_second(1_800_000_001).unwrap()
        );

        // The same name recreated later is another object.
        let mut later = w.pods[0].clone();
        later.created_ms = 9000;
        assert_ne!(pod(&w, &later, epoch()).metadata.uid, p.metadata.uid);

        let w = workload(
            WorkloadKind::StatefulSet,
            UpdateStrategy::OnDelete,
            complete(),
        );
        let p = pod(&w, &w.pods[0], epoch());
        assert_eq!(
            p.metadata.labels.unwrap()["controller-revision-hash"],
            "web-2"
        );
        assert_eq!(p.metadata.owner_references.unwrap()[0].kind, "StatefulSet");
    }
}
