//! The whole update with the Kubernetes backend: the real dc-controller and a real dc-agent process with
//! `[cluster] kind = "kubernetes"`, pointed at a Kubernetes API served over a simulated cluster (in this
//! test process) and at the simulated hosts' kubeadm directories, some reached through a `via` command
//! prefix. The real kubectl reads the served API back.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::*;
use dc_agent::cluster::{HostFile, UpdateStrategy, WorkloadKind};
use dc_agent::kubeconfig::{ClientCredentials, Kubeconfig};
use dc_agent::sim::{SimCluster, SimConfig};
use dc_test_support::fleet::{Fleet, Shape, Site, wait_until};
use dc_test_support::kube_api::KubeApi;
use dc_test_support::kubectl::kubectl;
use serde_json::Value;

/// A fleet of one subcloud whose agent drives a served Kubernetes API.
struct KubeFleet {
    fleet: Fleet,
    api: KubeApi,
    restarts_log: PathBuf,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for KubeFleet {
    type Target = Fleet;
    fn deref(&self) -> &Fleet {
        &self.fleet
    }
}

impl std::ops::DerefMut for KubeFleet {
    fn deref_mut(&mut self) -> &mut Fleet {
        &mut self.fleet
    }
}

impl KubeFleet {
    fn sim(&self) -> &SimCluster {
        self.api.sim()
    }

    /// Runs the real kubectl against the served API; fails the test (never skips it) when kubectl is
    /// missing or exits non-zero.
    fn kubectl(&self, args: &[&str]) -> String {
        let out = kubectl(&self.fleet.dir.join("kubeconfig"), args)
            .unwrap_or_else(|e| panic!("this test needs kubectl: {e}"));
        assert!(
            out.status.success(),
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

const NAME: &str = "kube-site";

/// Starts the controller, a simulated cluster (in the agent's data dir, where the fleet's checks look),
/// the API over it, and an agent with `kind = "kubernetes"`: controller-0 is the agent's own host, every
/// other host is reached through `via = ["env", "DC_HOST=<host>", "sh", "-c"]`, which runs one shell
/// command line as ssh would. Restart commands append `<host> <component>` to a log.
fn start_kube(config: SimConfig, prepare: impl FnOnce(&SimCluster)) -> KubeFleet {
    start_kube_with(config, prepare, &[], None)
}

/// [`start_kube`] with `unreachable` hosts, whose `via` fails as ssh does when it cannot connect, and
/// an optional `gate` directory: while `<gate>/armed` exists, every component restart writes its host
/// to `<gate>/reached` and waits, holding the agent inside that host's actions; while
/// `<gate>/fail-<host>` holds that host's PKI directory, a restart there fails whenever its `ca.crt`
/// is its `ca_new.crt` (inside hosts trust-new-ca, before the phase removes `ca_new.crt`).
fn start_kube_with(
    mut config: SimConfig,
    prepare: impl FnOnce(&SimCluster),
    unreachable: &[&str],
    gate: Option<&std::path::Path>,
) -> KubeFleet {
    let dir = tempfile::tempdir().expect("tempdir");
    config.root_ca_expiry_days = 10;
    let data = dir.path().join("agents").join(NAME).join("data");
    let sim = Arc::new(SimCluster::open(&data, &config).expect("simulated cluster"));
    prepare(&sim);
    let api = KubeApi::start(sim.clone()).expect("Kubernetes API over the simulated cluster");
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    let restarts_log = dir.path().join("restarts.log");
    let health_log = dir.path().join("health.log");
    let hold = gate.map_or(String::new(), |g| {
        format!(
            "while [ -e {g}/armed ]; do echo ${{DC_HOST:-controller-0}} > {g}/reached; sleep 0.05; done; \
             f={g}/fail-${{DC_HOST:-controller-0}}; \
             if [ -e $f ] && cmp -s $(cat $f)/ca.crt $(cat $f)/ca_new.crt; then exit 1; fi; ",
            g = g.display()
        )
    });
    let restart = |component: &str| {
        format!(
            "{component} = '{hold}echo \"${{DC_HOST:-controller-0}} {component}\" >> {}'\n",
            restarts_log.display()
        )
    };
    let mut cluster = format!(
        "[cluster]\nkind = \"kubernetes\"\nkubeconfig = \"{}\"\napi_retry_secs = 10\ncommand_timeout_secs = 30\n",
        kubeconfig.display()
    );
    for host in sim.snapshot().expect("snapshot").hosts {
        let role = serde_json::to_value(host.role).expect("role");
        cluster.push_str(&format!(
            "[[cluster.hosts]]\nname = \"{name}\"\nrole = {role}\nkubernetes_dir = \"{k8s}\"\nkubelet_pki_dir = \"{kubelet}\"\n",
            name = host.name,
            k8s = sim.host_dir(&host.name).display(),
            kubelet = sim.kubelet_pki_dir(&host.name).display(),
        ));
        if unreachable.contains(&host.name.as_str()) {
            cluster.push_str(&format!(
                "via = [\"sh\", \"-c\", \"echo 'ssh: connect to host {} port 22: Connection refused' >&2; exit 255\"]\n",
                host.name
            ));
        } else if host.name != "controller-0" {
            cluster.push_str(&format!(
                "via = [\"env\", \"DC_HOST={}\", \"sh\", \"-c\"]\n",
                host.name
            ));
        }
    }
    cluster.push_str("[cluster.restart]\n");
    for component in ["apiserver", "controller_manager", "scheduler", "kubelet"] {
        cluster.push_str(&restart(component));
    }
    // Health checks log as restarts do, so the test sees each restart followed by its check.
    cluster.push_str("[cluster.health]\n");
    for component in ["apiserver", "controller_manager", "scheduler", "kubelet"] {
        cluster.push_str(&format!(
            "{component} = 'echo \"${{DC_HOST:-controller-0}} {component}\" >> {}'\n",
            health_log.display()
        ));
    }
    let mut site = Site::new(NAME, Shape::Typical);
    site.cluster = Some(cluster);
    let fleet = Fleet::start(dir.path(), vec![site]).unwrap_or_else(|e| panic!("{e}"));
    fleet.wait_online(TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    KubeFleet {
        fleet,
        api,
        restarts_log,
        _dir: dir,
    }
}

/// Turns a host's kubelet.conf into the form `kubeadm join` writes: credentials in
/// `/var/lib/kubelet/pki/kubelet-client-current.pem` (certificate and key in one file), named by the
/// kubeconfig instead of embedded.
fn kubelet_conf_with_a_client_file(sim: &SimCluster, host: &str) {
    let path = sim
        .host_dir(host)
        .join(HostFile::Kubeconfig(dc_agent::cluster::KubeconfigFile::Kubelet).path());
    let text = std::fs::read_to_string(&path).expect("kubelet.conf");
    let ClientCredentials::Embedded { cert_pem, key_pem } = Kubeconfig::parse(&text)
        .expect("kubelet.conf parses")
        .client()
        .clone()
    else {
        panic!("the simulated kubelet.conf embeds its credentials");
    };
    let pem = "/var/lib/kubelet/pki/kubelet-client-current.pem";
    let text: String = text
        .lines()
        .map(|line| {
            let indent = &line[..line.len() - line.trim_start().len()];
            if line.trim_start().starts_with("client-certificate-data:") {
                format!("{indent}client-certificate: {pem}\n")
            } else if line.trim_start().starts_with("client-key-data:") {
                format!("{indent}client-key: {pem}\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    std::fs::write(&path, text).expect("write kubelet.conf");
    // As the kubelet keeps it: a dated file, and `-current` a symlink to it.
    let dir = sim.kubelet_pki_dir(host);
    std::fs::create_dir_all(&dir).expect("kubelet pki dir");
    let dated = dir.join("kubelet-client-2025-01-01-00-00-00.pem");
    std::fs::write(&dated, format!("{cert_pem}{key_pem}")).expect("kubelet client pem");
    std::os::unix::fs::symlink(&dated, dir.join("kubelet-client-current.pem"))
        .expect("kubelet-client-current.pem");
}

fn workloads_json(fleet: &KubeFleet) -> Vec<Value> {
    let out = fleet.kubectl(&[
        "get",
        "deployments,daemonsets,statefulsets",
        "-A",
        "-o",
        "json",
    ]);
    let list: Value = serde_json::from_str(&out).expect("kubectl prints JSON");
    list["items"].as_array().cloned().unwrap_or_default()
}

#[test]
fn kubernetes_backend_runs_the_whole_update() {
    let fleet = start_kube(SimConfig::typical(), |sim| {
        kubelet_conf_with_a_client_file(sim, "worker-1")
    });
    let original_ca = std::fs::read_to_string(fleet.sim().host_dir("worker-0").join("pki/ca.crt"))
        .expect("ca.crt");
    let not_after = create_and_apply(&fleet, &[]);
    let (state, steps) = finish(&fleet);
    assert_eq!(state, "complete", "{steps:#?}");
    assert_eq!(steps[0]["state"], "complete", "{steps:#?}");

    // Every host holds the new CA alone.
    assert_new_ca(&fleet, 0, not_after);
    let snapshot = fleet.sim().snapshot().expect("snapshot");
    // Workloads: restarted once per pods phase, OnDelete pods replaced, every pod on the last template.
    for w in &snapshot.workloads {
        assert_eq!(
            w.restarts,
            2,
            "{}: restarted once per pods phase",
            w.spec.key()
        );
        assert!(
            w.pods.iter().all(|p| p.revision == w.revision),
            "{}: every pod runs the last template",
            w.spec.key()
        );
        if w.spec.strategy == UpdateStrategy::OnDelete {
            let desired = match w.spec.kind {
                WorkloadKind::DaemonSet => snapshot.hosts.len(),
                _ => w.spec.replicas as usize,
            };
            assert_eq!(
                w.pods_deleted as usize,
                2 * desired,
                "{}: each OnDelete pod deleted once per pods phase",
                w.spec.key()
            );
        }
    }
    // Restart commands ran on every host, through its via where it has one: the kubelet once per host
    // phase, the control plane on controllers only.
    let log = std::fs::read_to_string(&fleet.restarts_log).expect("restart log");
    for host in &snapshot.hosts {
        let kubelet = format!("{} kubelet", host.name);
        assert_eq!(
            log.lines().filter(|l| *l == kubelet).count(),
            3,
            "{kubelet}:\n{log}"
        );
    }
    assert!(log.lines().any(|l| l == "controller-1 apiserver"), "{log}");
    // kubeadm join's discovery kubeconfig, read back with kubectl, carries the new CA alone; so does
    // every namespace's kube-root-ca.crt.
    let cluster_info = fleet.kubectl(&[
        "get",
        "configmap",
        "-n",
        "kube-public",
        "cluster-info",
        "-o",
        "jsonpath={.data.kubeconfig}",
    ]);
    let new_ca_pem =
        std::fs::read_to_string(fleet.sim().host_dir("controller-0").join("pki/ca.crt"))
            .expect("ca.crt");
    assert_eq!(
        dc_agent::kubeconfig::discovery_ca(&cluster_info).expect("a discovery kubeconfig"),
        new_ca_pem
    );
    let roots: Value = serde_json::from_str(&fleet.kubectl(&[
        "get",
        "configmaps",
        "-A",
        "--field-selector",
        "metadata.name=kube-root-ca.crt",
        "-o",
        "json",
    ]))
    .expect("kubectl prints JSON");
    let roots = roots["items"].as_array().cloned().unwrap_or_default();
    assert!(roots.len() >= 3, "{roots:?}");
    for map in roots {
        assert_eq!(
            map["data"]["ca.crt"],
            new_ca_pem.as_str(),
            "{}",
            map["metadata"]
        );
    }
    // The start tried each health check once (four components on each of two controllers, the
    // kubelet on each of two workers), then every restart was followed by its check on the same host.
    // Workers are updated in parallel (upstream's default options), so only each host's own sequence
    // has an order.
    let health = std::fs::read_to_string(fleet.restarts_log.with_file_name("health.log"))
        .expect("health log");
    let health: Vec<&str> = health.lines().collect();
    let (preflight, checks) = health.split_at((2 * 4 + 2).min(health.len()));
    let mut preflight = preflight.to_vec();
    preflight.sort_unstable();
    let mut expected: Vec<String> = ["controller-0", "controller-1"]
        .iter()
        .flat_map(|h| {
            ["apiserver", "controller_manager", "scheduler", "kubelet"].map(|c| format!("{h} {c}"))
        })
        .chain(["worker-0 kubelet".to_owned(), "worker-1 kubelet".to_owned()])
        .collect();
    expected.sort_unstable();
    assert_eq!(preflight, expected, "the start's checks:\n{health:#?}");
    for host in &snapshot.hosts {
        let on_host = |l: &&str| l.split(' ').next() == Some(host.name.as_str());
        let restarts: Vec<&str> = log.lines().filter(on_host).collect();
        let checked: Vec<&str> = checks.iter().copied().filter(on_host).collect();
        assert_eq!(
            checked, restarts,
            "{}: one health check per restart, in order",
            host.name
        );
    }
    assert_eq!(checks.len(), log.lines().count(), "{health:#?}");
    assert!(!log.lines().any(|l| l == "worker-0 apiserver"), "{log}");
    // The kubelet client file kubelet.conf names was re-issued from the new CA; kubelet.conf still
    // names it.
    let worker1 = fleet.sim().host_dir("worker-1");
    let new_ca = std::fs::read_to_string(worker1.join("pki/ca.crt")).expect("ca.crt");
    let pem = std::fs::read_to_string(
        fleet
            .sim()
            .kubelet_pki_dir("worker-1")
            .join("kubelet-client-current.pem"),
    )
    .expect("kubelet client pem");
    dc_agent::trust::trusts(&pem, &new_ca, dc_certs::verify::Usage::Client)
        .expect("the kubelet's client certificate chains to the new CA");
    // Still a symlink, to a new dated file: the kubelet's own rotation goes on working.
    let pki = fleet.sim().kubelet_pki_dir("worker-1");
    let target = std::fs::read_link(pki.join("kubelet-client-current.pem"))
        .expect("kubelet-client-current.pem is still a symlink");
    assert_ne!(target, pki.join("kubelet-client-2025-01-01-00-00-00.pem"));
    assert_eq!(target.parent(), Some(pki.as_path()));
    assert!(
        pem.contains("PRIVATE KEY"),
        "certificate and key in one file"
    );
    let conf = std::fs::read_to_string(worker1.join("kubelet.conf")).expect("kubelet.conf");
    assert!(conf.contains("client-certificate: /var/lib/kubelet/pki/kubelet-client-current.pem"));
    // The files replaced first are kept once, as they were before the update.
    let backup = fleet
        .sim()
        .host_dir("worker-0")
        .join("pki/ca.crt.dc-rootca-backup");
    assert_eq!(
        std::fs::read_to_string(&backup).expect("backup of ca.crt"),
        original_ca
    );

    // kubectl reads the served API back: every workload carries the restartedAt annotation, and the
    // rollouts kubectl can follow (RollingUpdate) report complete.
    let items = workloads_json(&fleet);
    assert_eq!(items.len(), snapshot.workloads.len(), "{items:#?}");
    for item in &items {
        let annotations = &item["spec"]["template"]["metadata"]["annotations"];
        assert!(
            annotations["kubectl.kubernetes.io/restartedAt"].is_string(),
            "{}/{} has no restartedAt: {annotations}",
            item["metadata"]["namespace"],
            item["metadata"]["name"]
        );
    }
    for w in &snapshot.workloads {
        if w.spec.strategy == UpdateStrategy::OnDelete {
            continue;
        }
        let kind = match w.spec.kind {
            WorkloadKind::Deployment => "deployment",
            WorkloadKind::DaemonSet => "daemonset",
            WorkloadKind::StatefulSet => "statefulset",
        };
        let target = format!("{kind}/{}", w.spec.name);
        let out = fleet.kubectl(&[
            "rollout",
            "status",
            &target,
            "-n",
            &w.spec.namespace,
            "--timeout=30s",
        ]);
        assert!(
            out.contains("successfully rolled out") || out.contains("complete"),
            "{target}: {out}"
        );
    }
}

#[test]
fn an_agent_killed_in_a_pods_phase_restarts_no_workload_twice() {
    let config = SimConfig {
        // Slow pods keep the pods phase running long enough to kill the agent inside it.
        pod_ready_ms: 1500,
        ..SimConfig::typical()
    };
    let mut fleet = start_kube(config, |_| {});
    let not_after = create_and_apply(&fleet, &[]);
    wait_until(TIMEOUT, || {
        Ok(in_phase(&fleet, NAME, "pods-trust-both-cas"))
    })
    .unwrap_or_else(|e| panic!("{e}"));
    // At least one workload restarted by the agent about to be killed.
    wait_until(TIMEOUT, || {
        Ok(fleet
            .sim()
            .snapshot()
            .is_ok_and(|s| s.workloads.iter().any(|w| w.restarts == 1)))
    })
    .unwrap_or_else(|e| panic!("{e}"));

    fleet.kill_agent(0);
    fleet.restart_agent(0).unwrap_or_else(|e| panic!("{e}"));

    let (state, steps) = finish(&fleet);
    assert_eq!(state, "complete", "{steps:#?}");
    assert_new_ca(&fleet, 0, not_after);
    for w in fleet.sim().snapshot().expect("snapshot").workloads {
        assert_eq!(
            w.restarts,
            2,
            "{}: once per pods phase, the resumed phase reused its restartedAt",
            w.spec.key()
        );
    }
}

/// An agent stopped inside a host's actions left a damaged kubeconfig there (what an interrupted
/// transfer of an older agent or a lost disk write leaves): the resumed phase puts it back from its
/// backup, writes it anew, and the update completes.
#[test]
fn a_damaged_file_on_the_host_in_progress_is_put_back_and_the_update_completes() {
    let gate = tempfile::tempdir().expect("gate");
    let mut fleet = start_kube_with(SimConfig::typical(), |_| {}, &[], Some(gate.path()));
    // Held at the first restart: trust-both-cas, after the host's kubeconfigs were rewritten.
    std::fs::write(gate.path().join("armed"), "").expect("arm");
    let not_after = create_and_apply(&fleet, &[]);
    let reached = gate.path().join("reached");
    wait_until(TIMEOUT, || Ok(reached.exists())).unwrap_or_else(|e| panic!("{e}"));
    fleet.kill_agent(0);
    std::fs::remove_file(gate.path().join("armed")).expect("disarm");

    // The host it was in holds half a kubelet.conf now.
    let host = std::fs::read_to_string(&reached).expect("reached");
    let kubelet_conf = fleet.sim().host_dir(host.trim()).join("kubelet.conf");
    let whole = std::fs::read_to_string(&kubelet_conf).expect("kubelet.conf");
    std::fs::write(&kubelet_conf, &whole[..whole.len() / 2]).expect("damage");

    fleet.restart_agent(0).unwrap_or_else(|e| panic!("{e}"));
    let (state, steps) = finish(&fleet);
    assert_eq!(state, "complete", "{steps:#?}");
    assert_new_ca(&fleet, 0, not_after);
    let repaired = std::fs::read_to_string(&kubelet_conf).expect("kubelet.conf");
    Kubeconfig::parse(&repaired).expect("kubelet.conf is whole again");
}

#[test]
fn a_rollout_that_never_completes_fails_the_pods_phase_naming_the_workload() {
    let mut config = SimConfig::typical();
    config.faults.never_ready = vec!["default/web".to_owned()];
    let fleet = start_kube(config, |_| {});
    create_and_apply(&fleet, &[]);
    let (state, steps) = finish(&fleet);
    assert_eq!(state, "failed", "{steps:#?}");
    let step = &steps[0];
    assert_eq!(step["state"], "failed", "{step:#}");
    let details = step["details"].as_str().unwrap_or_default();
    assert!(
        details.contains("Deployment default/web") && details.contains("not complete after"),
        "the failure names the workload and the timeout: {details}"
    );
}

#[test]
fn an_unreachable_host_refuses_the_start_and_changes_nothing() {
    let fleet = start_kube_with(SimConfig::typical(), |_| {}, &["worker-0"], None);
    create_and_apply(&fleet, &[]);
    let (state, steps) = finish(&fleet);
    assert_eq!(state, "failed", "{steps:#?}");
    let details = steps[0]["details"].as_str().unwrap_or_default();
    assert!(
        details.contains("worker-0 is not reachable") && details.contains("Connection refused"),
        "the refusal names the host and why: {details}"
    );
    assert_untouched(&fleet, 0);
    let snapshot = fleet.sim().snapshot().expect("snapshot");
    assert!(snapshot.workloads.iter().all(|w| w.restarts == 0));
}

/// The health gate read from the Kubernetes API and the hosts' files: a not-Ready node, a cordoned
/// one, a crash-looping system pod and an expiring front-proxy CA each refuse a strict start with a
/// line of their own, before anything changes. The way on that an operator takes without repairing
/// them: `alarm-restriction-type relaxed` for that subcloud, and the update finishes, reporting them.
#[test]
fn the_health_gate_reads_the_api_strict_refuses_and_relaxed_finishes() {
    let mut config = SimConfig::typical();
    config.workloads.push(dc_agent::sim::WorkloadSpec::new(
        WorkloadKind::DaemonSet,
        "kube-system",
        "calico-node",
        1,
        UpdateStrategy::OnDelete,
    ));
    config.faults.not_ready = vec!["worker-1".into()];
    config.faults.cordoned = vec!["worker-0".into()];
    config.faults.crash_looping = vec!["kube-system/calico-node".into()];
    config.faults.expiring = vec!["controller-1/pki/front-proxy-ca.crt".into()];
    let fleet = start_kube(config, |_| {});
    // What the API itself shows, read back with the real kubectl.
    let nodes: Value = serde_json::from_str(&fleet.kubectl(&["get", "nodes", "-o", "json"]))
        .expect("kubectl prints JSON");
    let node = |name: &str| {
        nodes["items"]
            .as_array()
            .and_then(|items| items.iter().find(|n| n["metadata"]["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("node {name} in {nodes:#}"))
    };
    assert_eq!(node("worker-0")["spec"]["unschedulable"], true);
    let ready = node("worker-1")["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .map(|c| c["status"].clone());
    assert_eq!(ready, Some(Value::from("False")));

    let lines = [
        "node worker-1 is not Ready",
        "node worker-0 is cordoned",
        "pod kube-system/calico-node-controller-0 is in CrashLoopBackOff",
        "controller-1: pki/front-proxy-ca.crt expires in 7 day(s) (the update does not replace it)",
    ];
    fleet
        .dcmanager_ok(&[
            "strategy-config",
            "update",
            "--alarm-restriction-type",
            "strict",
            NAME,
        ])
        .unwrap_or_else(|e| panic!("{e}"));
    create_and_apply(&fleet, &[]);
    let (state, steps) = finish(&fleet);
    assert_eq!(state, "failed", "{steps:#?}");
    let details = steps[0]["details"].as_str().unwrap_or_default();
    assert!(
        details.contains("health gate (alarm-restriction-type strict)")
            && lines.iter().all(|line| details.contains(line)),
        "every finding is a line of the refusal: {details}"
    );
    assert_untouched(&fleet, 0);
    let snapshot = fleet.sim().snapshot().expect("snapshot");
    assert!(snapshot.workloads.iter().all(|w| w.restarts == 0));

    // The way on: relaxed for this subcloud, a new strategy, the update finishes and says what it found.
    delete_strategy(&fleet);
    fleet
        .dcmanager_ok(&[
            "strategy-config",
            "update",
            "--alarm-restriction-type",
            "relaxed",
            NAME,
        ])
        .unwrap_or_else(|e| panic!("{e}"));
    let not_after = create_and_apply(&fleet, &[]);
    let (state, steps) = finish(&fleet);
    assert_eq!(state, "complete", "{steps:#?}");
    let details = steps[0]["details"].as_str().unwrap_or_default();
    assert!(
        lines
            .iter()
            .all(|line| details.contains(&format!("health gate (relaxed): {line}"))),
        "the finished step reports every finding: {details}"
    );
    assert_new_ca(&fleet, 0, not_after);
}

/// Where site file `file` of `host` lives in the simulated cluster the served API and the agent share.
fn host_path(sim: &SimCluster, host: &str, file: HostFile) -> PathBuf {
    match file {
        HostFile::KubeletClientCurrent => sim.kubelet_pki_dir(host).join(file.path()),
        _ => sim.host_dir(host).join(file.path()),
    }
}

/// A rollback with the Kubernetes backend: an update aborted after hosts update-certs (every leaf and
/// kubeconfig client re-issued from the new CA, the hosts trusting both) is rolled back by a
/// `create --rollback` strategy. The files the update replaced end byte-identical to the backups it
/// kept (`ca.crt`, every kubeconfig, the controller-manager's manifest; `ca.key` was never replaced),
/// and the leaves that
/// had to be re-issued (the apiserver's, the kubelet's client file of a `kubeadm join`ed worker) are
/// signed by the old CA again, with their subjects and SANs.
#[test]
fn a_rollback_puts_the_replaced_files_back_from_their_backups_and_reissues_leaves_from_the_old_ca()
{
    use dc_agent::cluster::{HostRole, KubeconfigFile};
    use dc_certs::inspect::CertSummary;
    use dc_certs::verify::Usage;

    let config = SimConfig {
        // Slow pods keep the update in its pods phase long enough to see it and abort in update-certs.
        pod_ready_ms: 500,
        ..SimConfig::typical()
    };
    let fleet = start_kube(config, |sim| {
        kubelet_conf_with_a_client_file(sim, "worker-1")
    });
    let hosts = fleet.sim().snapshot().expect("snapshot").hosts;
    let mut restored = Vec::new();
    let mut reissued = Vec::new();
    for host in &hosts {
        let mut files = vec![HostFile::CaCert];
        files.extend(
            KubeconfigFile::of_role(host.role)
                .iter()
                .map(|&k| HostFile::Kubeconfig(k))
                .filter(|&f| host_path(fleet.sim(), &host.name, f).exists()),
        );
        if host.role == HostRole::Controller {
            files.extend([HostFile::CaKey, HostFile::ControllerManagerManifest]);
            reissued.extend([
                (host.name.clone(), HostFile::ApiserverCert, Usage::Server),
                (
                    host.name.clone(),
                    HostFile::ApiserverKubeletClientCert,
                    Usage::Client,
                ),
            ]);
        }
        for file in files {
            let path = host_path(fleet.sim(), &host.name, file);
            let text = std::fs::read_to_string(&path).expect("original");
            restored.push((host.name.clone(), file, path, text));
        }
    }
    reissued.push((
        "worker-1".to_owned(),
        HostFile::KubeletClientCurrent,
        Usage::Client,
    ));
    let originals: Vec<(PathBuf, CertSummary)> = reissued
        .iter()
        .map(|(host, file, _)| {
            let path = host_path(fleet.sim(), host, *file);
            let pem = std::fs::read_to_string(&path).expect("leaf");
            (path, CertSummary::from_pem(&pem).expect("leaf"))
        })
        .collect();
    let old_ca = std::fs::read_to_string(host_path(fleet.sim(), "controller-0", HostFile::CaCert))
        .expect("ca.crt");

    create_and_apply(&fleet, &[]);
    wait_until(TIMEOUT, || Ok(in_phase(&fleet, NAME, "update-certs")))
        .unwrap_or_else(|e| panic!("{e}: {:#?}", steps(&fleet)));
    fleet
        .dcmanager_ok(&["kube-rootca-update-strategy", "abort"])
        .unwrap_or_else(|e| panic!("{e}"));
    let (state, steps) = finish(&fleet);
    assert_eq!(state, "aborted", "{steps:#?}");
    // Stopped after update-certs: the apiserver presents a certificate of the new CA.
    let apiserver = &originals[0];
    let now = std::fs::read_to_string(&apiserver.0).expect("apiserver.crt");
    assert_ne!(
        CertSummary::from_pem(&now).expect("leaf").issuer,
        apiserver.1.issuer
    );
    delete_strategy(&fleet);

    create_with_and_apply(&fleet, &["--rollback"]);
    let (state, steps) = finish(&fleet);
    assert_eq!(state, "complete", "{steps:#?}");
    assert_eq!(
        steps[0]["details"], "rolled back to the old root CA; rollback 100% complete",
        "{steps:#?}"
    );
    for (host, file, path, original) in &restored {
        let now = std::fs::read_to_string(path).expect("restored");
        assert!(
            now == *original,
            "{host} {} is not byte-identical to its original",
            file.path()
        );
        if *file == HostFile::CaKey {
            // Never replaced before trust-new-ca: nothing to back up.
            continue;
        }
        let backup = std::fs::read_to_string(format!(
            "{}{}",
            path.display(),
            dc_agent::kube::host::BACKUP_SUFFIX
        ))
        .expect("the update kept a backup");
        assert_eq!(&backup, original, "{host} {}: the backup", file.path());
    }
    for (path, before) in &originals {
        let pem = std::fs::read_to_string(path).expect("leaf");
        let after = CertSummary::from_pem(&pem).expect("leaf");
        dc_agent::trust::trusts(&pem, &old_ca, Usage::Client)
            .or_else(|_| dc_agent::trust::trusts(&pem, &old_ca, Usage::Server))
            .unwrap_or_else(|e| panic!("{} is not signed by the old CA: {e}", path.display()));
        assert_eq!(
            (&after.subject, &after.dns_names, &after.ip_addresses),
            (&before.subject, &before.dns_names, &before.ip_addresses),
            "{}",
            path.display()
        );
        assert_ne!(
            after.serial,
            before.serial,
            "{} was re-issued",
            path.display()
        );
    }
    for host in &hosts {
        for file in [HostFile::CaNewCert, HostFile::CaNewKey] {
            assert!(!host_path(fleet.sim(), &host.name, file).exists());
        }
    }
    assert_untouched(&fleet, 0);
}

/// Backups belong to the update that took them (the review's F6). A first update completes, its
/// backups holding the files from before it; then the controller-manager's manifest changes (a kubeadm
/// upgrade, say). A second update, aborted after update-certs, is rolled back: `ca.crt`, every
/// kubeconfig and the manifest end byte-identical to what the second update replaced, never to the
/// first update's older copies, and the backups are the second update's.
#[test]
fn a_rollback_of_a_second_update_puts_back_what_that_update_replaced() {
    use dc_agent::cluster::{HostRole, KubeconfigFile};
    use dc_certs::verify::Usage;

    let config = SimConfig {
        pod_ready_ms: 500,
        ..SimConfig::typical()
    };
    let fleet = start_kube(config, |_| {});
    create_and_apply(&fleet, &[]);
    let (state, shown) = finish(&fleet);
    assert_eq!(state, "complete", "{shown:#?}");
    delete_strategy(&fleet);

    let hosts = fleet.sim().snapshot().expect("snapshot").hosts;
    let mut replaced = Vec::new();
    for host in &hosts {
        let mut files = vec![HostFile::CaCert];
        files.extend(
            KubeconfigFile::of_role(host.role)
                .iter()
                .map(|&k| HostFile::Kubeconfig(k))
                .filter(|&f| host_path(fleet.sim(), &host.name, f).exists()),
        );
        if host.role == HostRole::Controller {
            let manifest = host_path(fleet.sim(), &host.name, HostFile::ControllerManagerManifest);
            let mut text = std::fs::read_to_string(&manifest).expect("manifest");
            text.push_str("# upgraded after the first update\n");
            std::fs::write(&manifest, text).expect("manifest");
            files.push(HostFile::ControllerManagerManifest);
        }
        for file in files {
            let path = host_path(fleet.sim(), &host.name, file);
            let text = std::fs::read_to_string(&path).expect("file");
            replaced.push((host.name.clone(), file, path, text));
        }
    }
    let first_ca =
        std::fs::read_to_string(host_path(fleet.sim(), "controller-0", HostFile::CaCert))
            .expect("ca.crt");

    // In sync now: the second update is forced.
    create_and_apply(&fleet, &["--force"]);
    wait_until(TIMEOUT, || Ok(in_phase(&fleet, NAME, "update-certs")))
        .unwrap_or_else(|e| panic!("{e}: {:#?}", steps(&fleet)));
    fleet
        .dcmanager_ok(&["kube-rootca-update-strategy", "abort"])
        .unwrap_or_else(|e| panic!("{e}"));
    let (state, shown) = finish(&fleet);
    assert_eq!(state, "aborted", "{shown:#?}");
    delete_strategy(&fleet);

    create_with_and_apply(&fleet, &["--rollback"]);
    let (state, shown) = finish(&fleet);
    assert_eq!(state, "complete", "{shown:#?}");
    for (host, file, path, before) in &replaced {
        let now = std::fs::read_to_string(path).expect("file");
        assert!(
            now == *before,
            "{host} {} is not what the second update replaced",
            file.path()
        );
    }
    for (host, file, path, before) in &replaced {
        let backup = std::fs::read_to_string(format!(
            "{}{}",
            path.display(),
            dc_agent::kube::host::BACKUP_SUFFIX
        ))
        .expect("the second update kept a backup");
        assert_eq!(&backup, before, "{host} {}: the backup", file.path());
    }
    for host in hosts.iter().filter(|h| h.role == HostRole::Controller) {
        let pem =
            std::fs::read_to_string(host_path(fleet.sim(), &host.name, HostFile::ApiserverCert))
                .expect("apiserver.crt");
        dc_agent::trust::trusts(&pem, &first_ca, Usage::Server)
            .unwrap_or_else(|e| panic!("{}: not signed by the first update's CA: {e}", host.name));
        for file in [HostFile::CaNewCert, HostFile::CaNewKey] {
            assert!(!host_path(fleet.sim(), &host.name, file).exists());
        }
    }
}

/// A rollback from inside hosts trust-new-ca with the Kubernetes backend: the update fails on the
/// second controller's restart in that phase (the first controller already holds the new key and
/// trusts the new CA alone). The rollback puts every replaced file back byte for byte (`ca.key` from
/// the agent's kept copy), and leaves no `ca_new`/`ca_old` file nor any backup of one, though trust
/// both CAs again rewrote `ca_new.key` where it still was (a backup holding the new CA's key).
#[test]
fn a_rollback_from_inside_hosts_trust_new_ca_restores_every_file_and_leaves_no_key_backup() {
    use dc_agent::cluster::{HostRole, KubeconfigFile};

    let gate = tempfile::tempdir().expect("gate");
    let fleet = start_kube_with(
        SimConfig {
            pod_ready_ms: 500,
            ..SimConfig::typical()
        },
        |_| {},
        &[],
        Some(gate.path()),
    );
    let pki = fleet.sim().host_dir("controller-1").join("pki");
    std::fs::write(
        gate.path().join("fail-controller-1"),
        pki.display().to_string(),
    )
    .expect("arm");
    let hosts = fleet.sim().snapshot().expect("snapshot").hosts;
    let mut originals = Vec::new();
    for host in &hosts {
        let mut files = vec![HostFile::CaCert];
        files.extend(
            KubeconfigFile::of_role(host.role)
                .iter()
                .map(|&k| HostFile::Kubeconfig(k))
                .filter(|&f| host_path(fleet.sim(), &host.name, f).exists()),
        );
        if host.role == HostRole::Controller {
            files.extend([HostFile::CaKey, HostFile::ControllerManagerManifest]);
        }
        for file in files {
            let path = host_path(fleet.sim(), &host.name, file);
            let text = std::fs::read_to_string(&path).expect("original");
            originals.push((host.name.clone(), file, path, text));
        }
    }

    create_and_apply(&fleet, &[]);
    let (state, shown) = finish(&fleet);
    assert_eq!(state, "failed", "{shown:#?}");
    let details = shown[0]["details"].as_str().unwrap_or_default().to_owned();
    assert!(
        details.contains("trust-new-ca") && details.contains("controller-1"),
        "{shown:#?}"
    );
    // The first controller signs with the new key alone now.
    let key0 = host_path(fleet.sim(), "controller-0", HostFile::CaKey);
    assert_ne!(
        std::fs::read_to_string(&key0).expect("ca.key"),
        originals
            .iter()
            .find(|(h, f, _, _)| h == "controller-0" && *f == HostFile::CaKey)
            .expect("ca.key")
            .3
    );
    delete_strategy(&fleet);
    std::fs::remove_file(gate.path().join("fail-controller-1")).expect("disarm");

    create_with_and_apply(&fleet, &["--rollback"]);
    let (state, shown) = finish(&fleet);
    assert_eq!(state, "complete", "{shown:#?}");
    for (host, file, path, original) in &originals {
        let now = std::fs::read_to_string(path).expect("restored");
        assert!(
            now == *original,
            "{host} {} is not byte-identical to its original",
            file.path()
        );
    }
    for host in &hosts {
        for file in [HostFile::CaNewCert, HostFile::CaNewKey, HostFile::CaOldCert] {
            let path = host_path(fleet.sim(), &host.name, file);
            assert!(!path.exists(), "{} left", path.display());
            let backup = format!("{}{}", path.display(), dc_agent::kube::host::BACKUP_SUFFIX);
            assert!(!std::path::Path::new(&backup).exists(), "{backup} left");
        }
    }
}
