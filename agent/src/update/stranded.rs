//! Pods that will lose trust: running pods that neither pods phase restarts, so they keep the bundle
//! they mounted (the old CA alone) and cannot verify the API server once update-certs re-issues its
//! certificate from the new CA. Restarting them is not ours to do (a paused rollout is the operator's,
//! a bare pod has nothing to recreate it), so the update names them at start and again before
//! update-certs, and refuses to go on unless the strategy says to proceed.
//!
//! A rollback from the middle of trust-new-ca mirrors it: a pod created while that phase ran mounted the
//! new CA alone, and the rollback re-issues the API server's certificate from the old CA. Its pods step
//! restarts the workloads; pods nothing restarts are named, and refused the same way, before the first
//! host's certificate goes back to the old CA ([`check_rollback`]).

use std::collections::BTreeSet;

use crate::cluster::{Cluster, Pod, Workload, WorkloadKind};

use super::context::{PhaseContext, PhaseError};
use super::new_ca;

/// A pod the update leaves on the bundle it mounted, and why nothing restarts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrandedPod {
    /// `namespace/name`.
    pub pod: String,
    pub why: String,
}

impl std::fmt::Display for StrandedPod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.pod, self.why)
    }
}

/// How many stranded pods a message names before it says "and N more".
const NAMED: usize = 10;

/// The running pods outside `exclude` that no pods phase restarts, unless what they mounted is known
/// to hold `next_ca` already (the CA the API server's certificate is about to be issued from).
pub fn stranded(
    pods: &[Pod],
    workloads: &[Workload],
    exclude: &[String],
    next_ca: Option<&[u8]>,
) -> Vec<StrandedPod> {
    let restarted: BTreeSet<(WorkloadKind, &str, &str)> = workloads
        .iter()
        .filter(|w| !w.paused)
        .map(|w| (w.id.kind, w.id.namespace.as_str(), w.id.name.as_str()))
        .collect();
    let paused: BTreeSet<(&str, &str)> = workloads
        .iter()
        .filter(|w| w.paused)
        .map(|w| (w.id.namespace.as_str(), w.id.name.as_str()))
        .collect();
    pods.iter()
        .filter(|p| !p.finished && !exclude.contains(&p.namespace))
        .filter(|p| !mounted(p, next_ca))
        .filter_map(|p| {
            let ns = p.namespace.as_str();
            let why = match &p.owner {
                None => "a bare pod: no controller recreates it".to_owned(),
                // A static pod's mirror: the host phases restart the component itself.
                Some(o) if o.kind == "Node" => return None,
                Some(o) => {
                    let (kind, name) = match (o.kind.as_str(), deployment_of(p, &o.name)) {
                        ("ReplicaSet", Some(deployment)) => (WorkloadKind::Deployment, deployment),
                        ("DaemonSet", _) => (WorkloadKind::DaemonSet, o.name.as_str()),
                        ("StatefulSet", _) => (WorkloadKind::StatefulSet, o.name.as_str()),
                        ("Deployment", _) => (WorkloadKind::Deployment, o.name.as_str()),
                        _ => {
                            return Some(StrandedPod {
                                pod: format!("{ns}/{}", p.name),
                                why: format!(
                                    "controlled by {} {}, which the update does not restart",
                                    o.kind, o.name
                                ),
                            });
                        }
                    };
                    if restarted.contains(&(kind, ns, name)) {
                        return None;
                    }
                    if paused.contains(&(ns, name)) {
                        format!("its Deployment {name} is paused")
                    } else {
                        format!(
                            "controlled by {} {}, which the update does not restart",
                            o.kind, o.name
                        )
                    }
                }
            };
            Some(StrandedPod {
                pod: format!("{ns}/{}", p.name),
                why,
            })
        })
        .collect()
}

/// Whether the pod is known to have mounted a bundle holding `ca`.
fn mounted(pod: &Pod, ca: Option<&[u8]>) -> bool {
    match (&pod.trust_bundle, ca) {
        (Some(bundle), Some(ca)) => dc_certs::pem_certificates(bundle)
            .is_ok_and(|ders| ders.iter().any(|d| d.as_slice() == ca)),
        _ => false,
    }
}

/// The Deployment of a ReplicaSet's pod: the Deployment controller names its ReplicaSets
/// `<deployment>-<pod-template-hash>`.
fn deployment_of<'a>(pod: &Pod, replica_set: &'a str) -> Option<&'a str> {
    let hash = pod.labels.get("pod-template-hash")?;
    replica_set.strip_suffix(hash.as_str())?.strip_suffix('-')
}

/// Which way the API server's certificate is about to move, and so what a pod must have mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Update-certs: from the old CA to the new one.
    Update,
    /// A rollback's re-issue from the old CA, after trust-new-ca had begun.
    Rollback,
}

/// Finds the stranded pods now, before update-certs; refuses when there are any and the strategy did
/// not say to proceed, and otherwise records them as the update's warning.
pub async fn check<C: Cluster>(cx: &PhaseContext<'_, C>) -> Result<(), PhaseError> {
    let new_ca = match cx.record()?.new_ca {
        Some(_) => new_ca::load(cx.journal)
            .ok()
            .and_then(|ca| first_der(ca.cert_pem())),
        None => None,
    };
    guard(cx, Direction::Update, new_ca).await
}

/// The same before a rollback re-issues the API server's certificate from the old CA: refuses pods
/// that nothing restarts unless they are known to have mounted the old CA.
pub async fn check_rollback<C: Cluster>(cx: &PhaseContext<'_, C>) -> Result<(), PhaseError> {
    let old_ca = cx.record()?.old_ca_pem.as_deref().and_then(first_der);
    guard(cx, Direction::Rollback, old_ca).await
}

fn first_der(pem: &str) -> Option<Vec<u8>> {
    dc_certs::pem_certificates(pem)
        .ok()
        .and_then(|ders| ders.into_iter().next())
}

async fn guard<C: Cluster>(
    cx: &PhaseContext<'_, C>,
    direction: Direction,
    next_ca: Option<Vec<u8>>,
) -> Result<(), PhaseError> {
    let record = cx.record()?;
    let exclude = &cx.settings.exclude_namespaces;
    let workloads = cx.cluster.list_workloads(exclude).await?;
    let pods = cx.cluster.all_pods().await?;
    let found = stranded(&pods, &workloads, exclude, next_ca.as_deref());
    let warning =
        (!found.is_empty()).then(|| format!("{}: {}", headline(&found, direction), list(&found)));
    if let Some(warning) = &warning {
        if !record.params.proceed_with_stranded_pods {
            // The way on before the list: details are cut at 1000 characters, the list may be long.
            return Err(PhaseError::Refused(format!(
                "{}; resume or restart their controllers, delete them, or create the strategy with proceed-with-stranded-pods to go on without them: {}",
                headline(&found, direction),
                list(&found)
            )));
        }
        tracing::warn!(%warning, "proceeding as the strategy says");
    }
    cx.journal
        .update(|r| r.warnings = warning.into_iter().collect(), |_, _| None)?;
    Ok(())
}

/// What stranded pods mean, for the operator.
fn headline(found: &[StrandedPod], direction: Direction) -> String {
    match direction {
        Direction::Update => format!(
            "{} running pod(s) would keep the old root CA alone and stop trusting the API server at update-certs, since nothing the update does restarts them",
            found.len()
        ),
        Direction::Rollback => format!(
            "{} running pod(s) may have mounted the new root CA alone and would stop trusting the API server when the rollback re-issues its certificate from the old root CA, since nothing the rollback does restarts them",
            found.len()
        ),
    }
}

/// The first stranded pods by name, and how many more.
fn list(found: &[StrandedPod]) -> String {
    let named: Vec<String> = found.iter().take(NAMED).map(ToString::to_string).collect();
    let more = found.len().saturating_sub(NAMED);
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    format!("{}{more}", named.join(", "))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::cluster::{LabelSelector, PodOwner, RolloutStatus, UpdateStrategy, WorkloadRef};

    fn pod(ns: &str, name: &str, owner: Option<(&str, &str)>, hash: Option<&str>) -> Pod {
        Pod {
            namespace: ns.into(),
            name: name.into(),
            labels: hash
                .map(|h| BTreeMap::from([("pod-template-hash".to_owned(), h.to_owned())]))
                .unwrap_or_default(),
            revision: String::new(),
            ready: true,
            trust_bundle: None,
            owner: owner.map(|(kind, name)| PodOwner {
                kind: kind.into(),
                name: name.into(),
            }),
            finished: false,
            crash_looping: false,
        }
    }

    fn workload(kind: WorkloadKind, ns: &str, name: &str, paused: bool) -> Workload {
        Workload {
            id: WorkloadRef {
                kind,
                namespace: ns.into(),
                name: name.into(),
            },
            strategy: UpdateStrategy::OnDelete,
            paused,
            selector: LabelSelector::default(),
            template_annotations: BTreeMap::new(),
            status: RolloutStatus::default(),
        }
    }

    #[test]
    fn only_pods_that_no_pods_phase_restarts_are_stranded() {
        let workloads = [
            workload(WorkloadKind::Deployment, "demo", "web", false),
            workload(WorkloadKind::Deployment, "demo", "frozen", true),
            workload(WorkloadKind::DaemonSet, "demo", "agent", false),
        ];
        let mut done = pod("demo", "job-1-xyz", Some(("Job", "job-1")), None);
        done.finished = true;
        let pods = [
            pod(
                "demo",
                "web-5d8f-abc",
                Some(("ReplicaSet", "web-5d8f")),
                Some("5d8f"),
            ),
            pod("demo", "agent-x", Some(("DaemonSet", "agent")), None),
            pod(
                "kube-system",
                "kube-apiserver-c0",
                Some(("Node", "c0")),
                None,
            ),
            pod(
                "demo",
                "frozen-77aa-q",
                Some(("ReplicaSet", "frozen-77aa")),
                Some("77aa"),
            ),
            pod("demo", "debug", None, None),
            pod("demo", "job-2-abc", Some(("Job", "job-2")), None),
            pod(
                "demo",
                "orphan-rs-1",
                Some(("ReplicaSet", "orphan-rs")),
                Some("1234"),
            ),
            pod("skip", "bare", None, None),
            done,
        ];
        let found = stranded(&pods, &workloads, &["skip".to_owned()], None);
        let shown: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "demo/frozen-77aa-q (its Deployment frozen is paused)",
                "demo/debug (a bare pod: no controller recreates it)",
                "demo/job-2-abc (controlled by Job job-2, which the update does not restart)",
                "demo/orphan-rs-1 (controlled by ReplicaSet orphan-rs, which the update does not restart)",
            ]
        );
        assert!(
            headline(&found, Direction::Update)
                .starts_with("4 running pod(s) would keep the old root CA alone")
        );
        let many: Vec<StrandedPod> = (0..12)
            .map(|i| StrandedPod {
                pod: format!("demo/p{i}"),
                why: "a bare pod".into(),
            })
            .collect();
        assert!(
            list(&many).ends_with("demo/p9 (a bare pod) and 2 more"),
            "{}",
            list(&many)
        );
    }

    #[test]
    fn a_pod_known_to_have_mounted_the_new_ca_is_not_stranded() {
        let new = dc_certs::authority::NewRootCa {
            subject: Some(dc_certs::Subject::parse("CN=new").unwrap()),
            expiry: None,
        }
        .generate(86400, dc_certs::now())
        .unwrap();
        let der = dc_certs::pem_certificates(new.cert_pem())
            .unwrap()
            .remove(0);
        let mut bare = pod("demo", "debug", None, None);
        bare.trust_bundle = Some(new.cert_pem().to_owned());
        assert!(stranded(&[bare.clone()], &[], &[], Some(&der)).is_empty());
        bare.trust_bundle = Some(String::new());
        assert_eq!(stranded(&[bare], &[], &[], Some(&der)).len(), 1);
    }
}
