//! The health gate at start, before anything changes: the cluster's health as Kubernetes shows it,
//! under the subcloud's `alarm-restriction-type` (strict: any finding refuses the start; relaxed: the
//! findings are reported with every phase result and the update goes on).
//!
//! What the update itself depends on is not a finding but a refusal in both modes, checked elsewhere
//! in the start: every host reachable, every component the update restarts serving (it waits for each
//! to serve again after its restart), every workload it restarts healthy (it waits for each rollout).

use dc_certs::UnixTime;
use dc_certs::inspect::CertSummary;
use dc_protocol::AlarmRestrictionType;

use crate::cluster::{Cluster, Host, HostFile, HostRole, Node, Pod};

use super::context::{PhaseContext, PhaseError};

/// A certificate the update leaves alone that expires within this many days is a finding.
pub const EXPIRING_WITHIN_DAYS: i64 = 30;

/// Namespaces whose crash-looping pods are findings besides the excluded ones.
const SYSTEM_NAMESPACES: [&str; 1] = ["kube-system"];

/// One thing the health gate found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    NodeNotReady(String),
    NodeCordoned(String),
    CrashLooping {
        namespace: String,
        name: String,
    },
    Expiring {
        host: String,
        file: &'static str,
        days_left: i64,
    },
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NodeNotReady(node) => write!(f, "node {node} is not Ready"),
            Self::NodeCordoned(node) => write!(f, "node {node} is cordoned"),
            Self::CrashLooping { namespace, name } => {
                write!(f, "pod {namespace}/{name} is in CrashLoopBackOff")
            }
            Self::Expiring {
                host,
                file,
                days_left,
            } if *days_left < 0 => write!(
                f,
                "{host}: {file} expired {} day(s) ago (the update does not replace it)",
                -days_left
            ),
            Self::Expiring {
                host,
                file,
                days_left,
            } => write!(
                f,
                "{host}: {file} expires in {days_left} day(s) (the update does not replace it)"
            ),
        }
    }
}

/// A certificate the update leaves alone, where it was found, and when it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UntouchedCert {
    pub host: String,
    pub file: HostFile,
    pub not_after: UnixTime,
}

/// Everything unhealthy in what was read: nodes not Ready or cordoned, pods crash-looping in system
/// namespaces (`kube-system` and the excluded ones), untouched certificates ending within
/// [`EXPIRING_WITHIN_DAYS`].
pub fn findings(
    nodes: &[Node],
    pods: &[Pod],
    excluded: &[String],
    certs: &[UntouchedCert],
    now: UnixTime,
) -> Vec<Finding> {
    let system = |ns: &str| SYSTEM_NAMESPACES.contains(&ns) || excluded.iter().any(|e| e == ns);
    let nodes_found = nodes.iter().flat_map(|n| {
        let not_ready = (!n.ready).then(|| Finding::NodeNotReady(n.name.clone()));
        let cordoned = n
            .unschedulable
            .then(|| Finding::NodeCordoned(n.name.clone()));
        not_ready.into_iter().chain(cordoned)
    });
    let pods_found = pods
        .iter()
        .filter(|p| p.crash_looping && !p.finished && system(&p.namespace))
        .map(|p| Finding::CrashLooping {
            namespace: p.namespace.clone(),
            name: p.name.clone(),
        });
    let certs_found = certs
        .iter()
        .filter(|c| c.not_after - now <= EXPIRING_WITHIN_DAYS * 86400)
        .map(|c| Finding::Expiring {
            host: c.host.clone(),
            file: c.file.path(),
            days_left: (c.not_after - now).div_euclid(86400),
        });
    nodes_found.chain(pods_found).chain(certs_found).collect()
}

/// What the strict gate says when it refuses.
pub fn refusal(found: &[Finding]) -> String {
    format!(
        "health gate (alarm-restriction-type strict): {} finding(s): {}; resolve them, or set alarm-restriction-type relaxed for this subcloud (dcmanager strategy-config update) to go on with them reported",
        found.len(),
        lines(found)
    )
}

fn lines(found: &[Finding]) -> String {
    found
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Reads the cluster's health and applies the subcloud's restriction: refuses under strict, records
/// the findings for every later phase result under relaxed.
pub async fn gate<C: Cluster>(cx: &PhaseContext<'_, C>, hosts: &[Host]) -> Result<(), PhaseError> {
    let nodes = cx.cluster.nodes().await?;
    let pods = cx.cluster.all_pods().await?;
    let certs = untouched_certs(cx, hosts).await?;
    let found = findings(
        &nodes,
        &pods,
        &cx.settings.exclude_namespaces,
        &certs,
        dc_certs::now(),
    );
    let restriction = cx.record()?.params.options.alarm_restriction_type;
    if !found.is_empty() && restriction == AlarmRestrictionType::Strict {
        return Err(PhaseError::Refused(refusal(&found)));
    }
    if !found.is_empty() {
        tracing::warn!(findings = %lines(&found), "health gate: relaxed, going on");
    }
    let reported: Vec<String> = found
        .iter()
        .map(|f| format!("health gate (relaxed): {f}"))
        .collect();
    cx.journal.update(|r| r.health = reported, |_, _| None)?;
    Ok(())
}

/// The untouched certificates present on the controllers (an external etcd has none here).
async fn untouched_certs<C: Cluster>(
    cx: &PhaseContext<'_, C>,
    hosts: &[Host],
) -> Result<Vec<UntouchedCert>, PhaseError> {
    let mut certs = Vec::new();
    for host in hosts.iter().filter(|h| h.role == HostRole::Controller) {
        for file in HostFile::UNTOUCHED_CERTS {
            let Some(pem) = cx.cluster.read_file(&host.name, file).await? else {
                continue;
            };
            let summary = CertSummary::from_pem(&pem).map_err(|e| PhaseError::Certificate {
                host: host.name.clone(),
                file: file.path(),
                reason: e.to_string(),
            })?;
            certs.push(UntouchedCert {
                host: host.name.clone(),
                file,
                not_after: summary.not_after,
            });
        }
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixTime = 1_800_000_000;

    fn node(name: &str, ready: bool, unschedulable: bool) -> Node {
        Node {
            name: name.into(),
            ready,
            unschedulable,
        }
    }

    fn pod(namespace: &str, name: &str, crash_looping: bool) -> Pod {
        Pod {
            namespace: namespace.into(),
            name: name.into(),
            labels: Default::default(),
            revision: String::new(),
            ready: !crash_looping,
            trust_bundle: None,
            owner: None,
            finished: false,
            crash_looping,
        }
    }

    fn cert(file: HostFile, days: i64) -> UntouchedCert {
        UntouchedCert {
            host: "controller-0".into(),
            file,
            not_after: NOW + days * 86400 + 3600,
        }
    }

    #[test]
    fn a_healthy_cluster_has_no_findings() {
        let found = findings(
            &[node("controller-0", true, false)],
            &[pod("kube-system", "coredns-1", false)],
            &[],
            &[cert(HostFile::FrontProxyCaCert, 3000)],
            NOW,
        );
        assert_eq!(found, vec![]);
    }

    #[test]
    fn each_kind_of_finding_is_one_clear_line() {
        let found = findings(
            &[node("worker-0", false, false), node("worker-1", true, true)],
            &[
                pod("kube-system", "calico-node-x", true),
                pod("platform", "agent-y", true),
                pod("default", "web-z", true),
            ],
            &["platform".into()],
            &[
                cert(HostFile::FrontProxyClientCert, 12),
                cert(HostFile::EtcdServerCert, -3),
                cert(HostFile::EtcdCaCert, 31),
            ],
            NOW,
        );
        let lines: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "node worker-0 is not Ready",
                "node worker-1 is cordoned",
                "pod kube-system/calico-node-x is in CrashLoopBackOff",
                "pod platform/agent-y is in CrashLoopBackOff",
                "controller-0: pki/front-proxy-client.crt expires in 12 day(s) (the update does not replace it)",
                "controller-0: pki/etcd/server.crt expired 3 day(s) ago (the update does not replace it)",
            ]
        );
        assert!(refusal(&found).starts_with(
            "health gate (alarm-restriction-type strict): 6 finding(s): node worker-0 is not Ready; "
        ));
    }
}
