//! What the real-control-plane tests share: the control plane with workloads rolled out and a fleet
//! whose one subcloud is driven by a `kind = "kubernetes"` agent pointed at it, and the end state a
//! complete update must leave there, checked against the real API server.

#![allow(dead_code, reason = "each test file uses its own subset")]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::common::*;
use dc_protocol::Phase;
use dc_test_support::control_plane::{ControlPlane, connect};
use dc_test_support::fleet::{Fleet, Shape, Site, wait_until};
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod, Secret};
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, Resource};
use serde_json::json;

pub const NAME: &str = "kubeadm-site";
pub const NAMESPACE: &str = "demo";
/// A whole update restarts each control-plane component three times; the controller-manager's leader
/// election takes up to ~20 s after each restart.
pub const UPDATE_TIMEOUT: Duration = Duration::from_secs(600);

/// The last lines of a log, for failure messages.
pub fn tail(path: &std::path::Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The certificates (DER) of a PEM bundle.
pub fn certs(pem: &str) -> Vec<Vec<u8>> {
    dc_certs::pem_certificates(pem).expect("PEM")
}

pub async fn create<K>(api: Api<K>, value: serde_json::Value)
where
    K: Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(value).expect("object JSON");
    api.create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("create {:?}: {e}", object.meta().name));
}

/// A Deployment rolling 1 pod at a time, a DaemonSet replaced only on delete and without an `app`
/// label, a StatefulSet: every kind and strategy the pods phases handle.
pub async fn create_workloads(client: &Client) {
    create(
        Api::<Namespace>::all(client.clone()),
        json!({"metadata": {"name": NAMESPACE}}),
    )
    .await;
    let template = |labels: serde_json::Value| {
        json!({
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "main", "image": "k8s.gcr.io/pause:3.2"}]},
        })
    };
    create(
        Api::<Deployment>::namespaced(client.clone(), NAMESPACE),
        json!({
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}},
                "template": template(json!({"app": "web"})),
            },
        }),
    )
    .await;
    create(
        Api::<DaemonSet>::namespaced(client.clone(), NAMESPACE),
        json!({
            "metadata": {"name": "node-agent"},
            "spec": {
                "selector": {"matchLabels": {"name": "node-agent"}},
                "updateStrategy": {"type": "OnDelete"},
                "template": template(json!({"name": "node-agent"})),
            },
        }),
    )
    .await;
    create(
        Api::<StatefulSet>::namespaced(client.clone(), NAMESPACE),
        json!({
            "metadata": {"name": "db"},
            "spec": {
                "replicas": 2,
                "serviceName": "db",
                "selector": {"matchLabels": {"app": "db"}},
                "template": template(json!({"app": "db"})),
            },
        }),
    )
    .await;
}

/// Whether every workload of the demo namespace has all its pods of the current template ready.
pub async fn rolled_out(client: &Client) -> Result<bool, kube::Error> {
    let d = Api::<Deployment>::namespaced(client.clone(), NAMESPACE)
        .get("web")
        .await?;
    let ds = Api::<DaemonSet>::namespaced(client.clone(), NAMESPACE)
        .get("node-agent")
        .await?;
    let ss = Api::<StatefulSet>::namespaced(client.clone(), NAMESPACE)
        .get("db")
        .await?;
    let d_ok = d.status.is_some_and(|s| {
        s.updated_replicas == Some(2) && s.available_replicas == Some(2) && s.replicas == Some(2)
    });
    let ds_ok = ds
        .status
        .is_some_and(|s| s.desired_number_scheduled == 2 && s.number_available == Some(2));
    let ss_ok = ss.status.is_some_and(|s| s.ready_replicas == Some(2));
    Ok(d_ok && ds_ok && ss_ok)
}

/// A running control plane with its workloads rolled out, and the fleet driving it. Fields drop in
/// order: the fleet's processes, the control plane, then the lock that lets the next test start one.
pub struct Started {
    pub fleet: Fleet,
    pub plane: ControlPlane,
    dir: Option<tempfile::TempDir>,
    _serial: MutexGuard<'static, ()>,
}

impl Drop for Started {
    fn drop(&mut self) {
        // A failing test's message names the agent's and controller's logs: keep them for reading,
        // as the control plane keeps its own.
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            let _ = dir.keep();
        }
    }
}

/// Held by each test while its control plane runs, so the tier's tests run one at a time: on two
/// cores, control planes side by side would compete for the seconds their leader elections and lease
/// renewals are given (a controller-manager losing leadership mid-update publishes nothing until it
/// leads again), as `kube_control_plane_stranded.rs` is a binary of its own for the same reason.
static SERIAL: Mutex<()> = Mutex::new(());

/// Starts the control plane, creates the workloads and waits for them, then starts the controller
/// and an agent with `kind = "kubernetes"` pointed at it, its site as `configure` leaves it.
pub fn start_with_workloads(configure: impl FnOnce(&mut Site)) -> Started {
    // A test that panicked released the lock poisoned; the next test's control plane is its own.
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let plane = ControlPlane::start().unwrap_or_else(|e| panic!("the control plane: {e}"));
    let admin = plane.admin_client().expect("admin client");
    plane.block_on(create_workloads(&admin));
    wait_until(TIMEOUT, || {
        Ok(plane.block_on(rolled_out(&admin)).unwrap_or(false))
    })
    .unwrap_or_else(|e| {
        panic!(
            "workloads not rolled out: {e}\nscheduler:\n{}\ncontroller-manager:\n{}",
            tail(&plane.log("controller-0", "kube-scheduler"), 20),
            tail(&plane.log("controller-0", "kube-controller-manager"), 20)
        )
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let mut site = Site::new(NAME, Shape::Light);
    site.cluster = Some(plane.agent_cluster());
    site.phase_timeout_secs = 300;
    // The controller-manager publishes a new bundle only once it leads again, 15-20 s after its
    // restart on an idle machine.
    site.component_timeout_secs = 120;
    configure(&mut site);
    let fleet = Fleet::start(dir.path(), vec![site]).unwrap_or_else(|e| panic!("{e}"));
    fleet.wait_online(TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    Started {
        fleet,
        plane,
        dir: Some(dir),
        _serial: serial,
    }
}

/// Waits for the strategy to end and returns its state, with the steps and logs on a timeout.
pub fn final_state(plane: &ControlPlane, fleet: &Fleet) -> String {
    let strategy = fleet
        .wait_strategy(&["complete", "failed", "aborted"], UPDATE_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}\n{:#?}\n{}", steps(fleet), logs(plane, fleet)));
    strategy["state"].as_str().unwrap_or_default().to_owned()
}

/// Asserts the strategy ended in `expected`, with the steps and logs otherwise.
pub fn assert_state(plane: &ControlPlane, fleet: &Fleet, state: &str, expected: &str) {
    assert_eq!(
        state,
        expected,
        "{:#?}\n{}",
        steps(fleet),
        logs(plane, fleet)
    );
}

/// Asserts nothing differs from what a complete update must leave, with the logs otherwise.
pub fn assert_nothing_wrong(plane: &ControlPlane, fleet: &Fleet, wrong: &[String]) {
    assert!(
        wrong.is_empty(),
        "after the update:\n- {}\n{}",
        wrong.join("\n- "),
        logs(plane, fleet)
    );
}

/// Asserts the strategy completed and left the end state a complete update must leave.
pub fn assert_completed(plane: &ControlPlane, fleet: &Fleet, before: &Before, not_after: i64) {
    assert_state(plane, fleet, &final_state(plane, fleet), "complete");
    assert_nothing_wrong(
        plane,
        fleet,
        &end_state_violations(plane, before, not_after),
    );
}

/// controller-0's CA bundle as the update left it.
pub fn new_ca_pem(plane: &ControlPlane) -> String {
    std::fs::read_to_string(plane.host("controller-0").pki().join("ca.crt")).expect("ca.crt")
}

/// The component logs that say why an update failed.
pub fn logs(plane: &ControlPlane, fleet: &Fleet) -> String {
    let mut out = String::new();
    for component in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kubelet",
    ] {
        out.push_str(&format!(
            "--- controller-0 {component}:\n{}\n",
            tail(&plane.log("controller-0", component), 15)
        ));
    }
    out.push_str(&format!("--- agent:\n{}\n", tail(&fleet.log(NAME), 30)));
    out.push_str(&format!(
        "(everything under {} and {})",
        plane.dir().display(),
        fleet.dir.display()
    ));
    out
}

/// How many template revisions a workload has had (its first, plus one per restart).
pub async fn revisions(client: &Client, kind: &str, name: &str) -> usize {
    if kind == "Deployment" {
        let d = Api::<Deployment>::namespaced(client.clone(), NAMESPACE)
            .get(name)
            .await
            .expect("deployment");
        return d
            .metadata
            .annotations
            .and_then(|a| a.get("deployment.kubernetes.io/revision").cloned())
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
    }
    Api::<ControllerRevision>::namespaced(client.clone(), NAMESPACE)
        .list(&ListParams::default())
        .await
        .expect("controller revisions")
        .items
        .iter()
        .filter(|r| {
            r.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.kind == kind && o.name == name)
        })
        .count()
}

/// What a test captured before the update, to check the end state against.
pub struct Before {
    pub ca_pem: String,
    pub admin_conf: String,
}

impl Before {
    pub fn capture(plane: &ControlPlane) -> Self {
        Self {
            ca_pem: plane.original_ca_pem.clone(),
            admin_conf: std::fs::read_to_string(plane.admin_conf()).expect("admin.conf"),
        }
    }
}

/// Everything that differs from what a complete update must leave, one line each (empty: all
/// right). Checked all at once, so one run of this slow tier shows every defect it meets.
pub fn end_state_violations(plane: &ControlPlane, before: &Before, not_after: i64) -> Vec<String> {
    let mut wrong = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            wrong.push(what);
        }
    };

    // Every host's ca.crt holds the new CA alone.
    let new_ca =
        std::fs::read_to_string(plane.host("controller-0").pki().join("ca.crt")).expect("ca.crt");
    let alone = certs(&new_ca);
    for host in &plane.hosts {
        let pem = std::fs::read_to_string(host.pki().join("ca.crt")).expect("ca.crt");
        let summary = dc_certs::inspect::CertSummary::from_pem(&pem).expect("ca.crt parses");
        check(
            certs(&pem).len() == 1 && summary.subject == SUBJECT && summary.not_after == not_after,
            format!(
                "{}'s ca.crt is not the new CA alone: {} certificate(s), first {summary:?}",
                host.name,
                certs(&pem).len()
            ),
        );
    }

    // The API server serves a certificate from the new CA alone.
    if let Err(e) = plane.serving_certificate_chains_to(&new_ca) {
        check(
            false,
            format!("the API server's certificate does not chain to the new CA: {e}"),
        );
    }
    check(
        plane.serving_certificate_chains_to(&before.ca_pem).is_err(),
        "the API server's certificate still chains to the old CA".to_owned(),
    );

    // The old admin credentials are refused; the new admin.conf works.
    let old = dc_agent::kubeconfig::Kubeconfig::parse(&before.admin_conf).expect("old admin.conf");
    let dc_agent::kubeconfig::ClientCredentials::Embedded { cert_pem, key_pem } =
        old.client().clone()
    else {
        panic!("admin.conf embeds its credentials");
    };
    let old_client = plane
        .client_of(&dc_agent::kubeconfig::render(
            &plane.ports.server(),
            "kubernetes-admin",
            &new_ca,
            &cert_pem,
            &key_pem,
        ))
        .expect("client");
    let refused = plane.block_on(Api::<Namespace>::all(old_client).list(&ListParams::default()));
    check(
        matches!(&refused, Err(kube::Error::Api(s)) if s.code == 401),
        format!("the old admin certificate was not refused with 401: {refused:?}"),
    );
    let admin = plane.admin_client().expect("the new admin.conf");
    let namespaces = plane
        .block_on(Api::<Namespace>::all(admin.clone()).list(&ListParams::default()))
        .expect("the new admin.conf works");

    // What pods and joining nodes are given to trust: the new CA alone.
    for ns in namespaces
        .items
        .iter()
        .filter_map(|n| n.metadata.name.as_deref())
    {
        let map = plane
            .block_on(Api::<ConfigMap>::namespaced(admin.clone(), ns).get_opt("kube-root-ca.crt"));
        let pem = map
            .ok()
            .flatten()
            .and_then(|m| m.data?.remove("ca.crt"))
            .unwrap_or_default();
        check(
            certs(&pem) == alone,
            format!("{ns}/kube-root-ca.crt does not hold the new CA alone"),
        );
    }
    let tokens = plane
        .block_on(
            Api::<Secret>::all(admin.clone())
                .list(&ListParams::default().fields("type=kubernetes.io/service-account-token")),
        )
        .expect("token secrets");
    for secret in tokens.items {
        let ca = secret
            .data
            .and_then(|mut d| d.remove("ca.crt"))
            .unwrap_or_default();
        check(
            certs(&String::from_utf8_lossy(&ca.0)) == alone,
            format!(
                "token Secret {}/{} does not hold the new CA alone",
                secret.metadata.namespace.unwrap_or_default(),
                secret.metadata.name.unwrap_or_default()
            ),
        );
    }
    let join = plane
        .block_on(Api::<ConfigMap>::namespaced(admin.clone(), "kube-public").get("cluster-info"))
        .expect("cluster-info")
        .data
        .and_then(|mut d| d.remove("kubeconfig"))
        .unwrap_or_default();
    let join_ca = kube::config::Kubeconfig::from_yaml(&join)
        .ok()
        .and_then(|k| {
            k.clusters
                .first()?
                .cluster
                .as_ref()?
                .certificate_authority_data
                .clone()
        })
        .and_then(|data| {
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, data).ok()
        })
        .map(|pem| String::from_utf8_lossy(&pem).into_owned())
        .unwrap_or_default();
    check(
        certs(&join_ca) == alone,
        format!(
            "kube-public/cluster-info (kubeadm join's discovery) does not hold the new CA alone ({} certificate(s), the old CA: {})",
            certs(&join_ca).len(),
            certs(&join_ca).contains(&certs(&before.ca_pem)[0])
        ),
    );

    // Every node is still Ready: the kubelets authenticate with what the update wrote.
    let nodes = plane
        .block_on(Api::<Node>::all(admin.clone()).list(&ListParams::default()))
        .expect("nodes");
    for node in &nodes.items {
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        check(
            ready,
            format!(
                "node {} is not Ready",
                node.metadata.name.clone().unwrap_or_default()
            ),
        );
    }

    // The controller-manager signs with the new CA, and the kubelets' own rotation still works.
    for host in ["controller-0", "worker-0"] {
        match plane.rotate_kubelet(host) {
            Ok(issuer) => check(
                issuer == SUBJECT,
                format!(
                    "{host}'s renewed kubelet certificate was issued by {issuer}, not the new CA"
                ),
            ),
            Err(e) => check(
                false,
                format!("{host}'s kubelet cannot rotate its certificate: {e}"),
            ),
        }
    }

    // Every pod running now mounted the new CA alone when its kubelet started it.
    let records: Vec<_> = plane
        .hosts
        .iter()
        .flat_map(|h| plane.pod_records(&h.name).expect("pod records"))
        .collect();
    let pods = plane
        .block_on(Api::<Pod>::namespaced(admin.clone(), NAMESPACE).list(&ListParams::default()))
        .expect("pods");
    check(
        pods.items.len() == 6,
        format!(
            "{} pods in {NAMESPACE}, not 2 web, 2 node-agent, 2 db",
            pods.items.len()
        ),
    );
    for pod in &pods.items {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        match records.iter().rev().find(|r| r.uid == uid) {
            Some(r) => check(
                certs(r.ca_pem.as_deref().unwrap_or_default()) == alone,
                format!(
                    "pod {NAMESPACE}/{name} mounted a bundle other than the new CA alone (from {})",
                    r.source
                ),
            ),
            None => check(false, format!("no kubelet started pod {NAMESPACE}/{name}")),
        }
    }

    // Every workload restarted once per pods phase: its first template and two more.
    for (kind, name) in [
        ("Deployment", "web"),
        ("DaemonSet", "node-agent"),
        ("StatefulSet", "db"),
    ] {
        let n = plane.block_on(revisions(&admin, kind, name));
        check(
            n == 3,
            format!(
                "{kind} {NAMESPACE}/{name} has {n} template revisions, not 3 (one restart per pods phase)"
            ),
        );
    }
    wrong
}

/// A workload's pod template seen with a new `kubectl.kubernetes.io/restartedAt` value for the first
/// time, and what every namespace's `kube-root-ca.crt` held just before: the bundle the pods this
/// restart creates can mount.
#[derive(Debug)]
pub struct Sighting {
    pub workload: String,
    pub restarted_at: String,
    /// `(namespace, ca.crt)` of every `kube-root-ca.crt` ConfigMap.
    pub published: Vec<(String, String)>,
}

/// Runs `during` (the update) while another thread watches the demo workloads' restartedAt and the
/// published bundles through the API, with admin.conf as it is at each look (the update rewrites it);
/// returns what `during` returned and every new restartedAt value seen, in order. Looks the API cannot
/// answer (its server restarting) are skipped.
pub fn observing_restarts<T>(
    plane: &ControlPlane,
    during: impl FnOnce() -> T,
) -> (T, Vec<Sighting>) {
    /// Stops the observer when `during` returns or panics (the scope would wait for it otherwise).
    struct Stop<'a>(&'a AtomicBool);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let observer = scope.spawn(|| {
            let mut last: BTreeMap<String, String> = BTreeMap::new();
            let mut sightings = Vec::new();
            let _ = wait_until(UPDATE_TIMEOUT + TIMEOUT, || {
                if let Some(look) = plane.block_on(look(plane)) {
                    let (published, templates) = look;
                    for (workload, value) in templates {
                        if last.get(&workload) != Some(&value) {
                            last.insert(workload.clone(), value.clone());
                            sightings.push(Sighting {
                                workload,
                                restarted_at: value,
                                published: published.clone(),
                            });
                        }
                    }
                }
                Ok(stop.load(Ordering::SeqCst))
            });
            sightings
        });
        let result = {
            let _stop = Stop(&stop);
            during()
        };
        (result, observer.join().expect("the observer thread"))
    })
}

/// One look: every `kube-root-ca.crt` (namespace, bundle), then each demo workload's restartedAt
/// (workloads without one left out). The bundles are read first: a restart seen afterwards was made
/// no earlier than they were read, so what they held then was published before that restart.
async fn look(plane: &ControlPlane) -> Option<(Vec<(String, String)>, Vec<(String, String)>)> {
    let admin = std::fs::read_to_string(plane.admin_conf()).ok()?;
    let client = connect(&admin).await.ok()?;
    let maps = Api::<ConfigMap>::all(client.clone())
        .list(&ListParams::default().fields("metadata.name=kube-root-ca.crt"))
        .await
        .ok()?;
    let published = maps
        .items
        .into_iter()
        .map(|m| {
            let ca = m.data.and_then(|mut d| d.remove("ca.crt"));
            (
                m.metadata.namespace.unwrap_or_default(),
                ca.unwrap_or_default(),
            )
        })
        .collect();
    let restarted_at = |meta: Option<
        k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    >| { meta.and_then(|m| m.annotations?.remove(RESTARTED_AT)) };
    let web = Api::<Deployment>::namespaced(client.clone(), NAMESPACE)
        .get("web")
        .await
        .ok()?;
    let node_agent = Api::<DaemonSet>::namespaced(client.clone(), NAMESPACE)
        .get("node-agent")
        .await
        .ok()?;
    let db = Api::<StatefulSet>::namespaced(client, NAMESPACE)
        .get("db")
        .await
        .ok()?;
    let templates = [
        ("Deployment web", restarted_at(web.spec.template.metadata)),
        (
            "DaemonSet node-agent",
            restarted_at(node_agent.spec.template.metadata),
        ),
        ("StatefulSet db", restarted_at(db.spec.template.metadata)),
    ];
    Some((
        published,
        templates
            .into_iter()
            .filter_map(|(w, v)| Some((w.to_owned(), v?)))
            .collect(),
    ))
}

/// The pod-template annotation `kubectl rollout restart` sets, as the pods phases do.
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

/// What differs from restarts that each came only once its pods phase's bundle was published (empty:
/// all right): each workload restarted twice, at its first restart every `kube-root-ca.crt` held the
/// old CA and the new one (`new_ca_pem`), at its second the new CA alone.
pub fn restart_order_violations(
    sightings: &[Sighting],
    before: &Before,
    new_ca_pem: &str,
) -> Vec<String> {
    let old = certs(&before.ca_pem);
    let new = certs(new_ca_pem);
    let both: BTreeSet<Vec<u8>> = old.iter().chain(&new).cloned().collect();
    let mut wrong = Vec::new();
    for workload in ["Deployment web", "DaemonSet node-agent", "StatefulSet db"] {
        let seen: Vec<&Sighting> = sightings
            .iter()
            .filter(|s| s.workload == workload)
            .collect();
        if seen.len() != 2 {
            wrong.push(format!(
                "{workload}: {} restartedAt values seen, not 2 (one per pods phase): {seen:#?}",
                seen.len()
            ));
            continue;
        }
        for (sighting, phase) in seen
            .iter()
            .zip(["pods trust-both-cas", "pods trust-new-ca"])
        {
            if sighting.published.is_empty() {
                wrong.push(format!(
                    "{workload}: no kube-root-ca.crt at all when {phase} restarted it"
                ));
            }
            for (namespace, pem) in &sighting.published {
                let held = certs(pem);
                let right = if phase == "pods trust-both-cas" {
                    held.len() == 2 && held.iter().cloned().collect::<BTreeSet<_>>() == both
                } else {
                    held == new
                };
                if !right {
                    wrong.push(format!(
                        "{workload} restarted by {phase} (restartedAt {}) while {namespace}/kube-root-ca.crt held {} certificate(s){}",
                        sighting.restarted_at,
                        held.len(),
                        if held.contains(&old[0]) { ", the old CA among them" } else { "" }
                    ));
                }
            }
        }
    }
    wrong
}

/// The phase a running step's details name (`hosts trust-both-cas on controller-0: ...`), none once
/// it says the phase is done (`... done; update 40% complete`) or names no phase.
pub fn running_phase(step: &serde_json::Value) -> Option<Phase> {
    let details = step["details"].as_str()?;
    Phase::ALL.into_iter().find(|phase| {
        let label = phase.label();
        details.starts_with(&format!("{label}:")) || details.starts_with(&format!("{label} on "))
    })
}
