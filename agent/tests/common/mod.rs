//! What the agent's update tests share: a simulated cluster behind an updater, the messages it
//! queued, and the end state a complete update must leave.

#![allow(
    dead_code,
    unused_imports,
    reason = "each test file uses its own subset"
)]

pub use std::path::Path;
pub use std::time::Duration;

pub use dc_agent::backend::Backend;
pub use dc_agent::cluster::{HostFile, HostRole, KubeconfigFile, UpdateStrategy, WorkloadKind};
pub use dc_agent::journal::{Journal, UpdateRecord};
pub use dc_agent::kubeconfig::{ClientCredentials, Kubeconfig};
pub use dc_agent::sim::{SimCluster, SimConfig, SimState, SlowPhase};
pub use dc_agent::update::{Settings, StartDecision, Updater};
pub use dc_certs::inspect::CertSummary;
pub use dc_certs::verify::Usage;
pub use dc_protocol::{AgentMessage, Phase, PhaseOutcome, RunState, UpdateParams};

pub const SUBJECT: &str = "C=CA ST=ON L=OTT O=WR OU=STX CN=NEW-ROOT";
pub const EXPIRY: &str = "2031-06-30";

pub fn params() -> UpdateParams {
    UpdateParams {
        subject: Some(SUBJECT.into()),
        expiry_date: Some(EXPIRY.into()),
        ..UpdateParams::default()
    }
}

pub fn open(dir: &Path, sim: &SimConfig) -> Updater<Backend> {
    let cluster = Backend::Simulated(SimCluster::open(dir, sim).unwrap());
    let settings = Settings {
        exclude_namespaces: vec![],
        concurrency: 3,
        poll: Duration::from_millis(10),
        phase_timeout: Duration::from_secs(60),
        component_timeout: Duration::from_secs(45),
    };
    Updater::new(cluster, Journal::open(dir).unwrap(), settings)
}

pub fn sim(updater: &Updater<Backend>) -> &SimCluster {
    let Backend::Simulated(sim) = updater.cluster() else {
        panic!("these tests run on a simulated cluster");
    };
    sim
}

pub fn record(updater: &Updater<Backend>) -> UpdateRecord {
    updater.journal().record().unwrap()
}

/// Every message queued so far.
pub fn drain(updater: &Updater<Backend>) -> Vec<AgentMessage> {
    let mut out = Vec::new();
    while let Some(m) = updater.journal().outbox.front() {
        updater.journal().outbox.pop();
        out.push(m);
    }
    out
}

pub fn failures(messages: &[AgentMessage]) -> Vec<String> {
    messages
        .iter()
        .filter_map(|m| match m {
            AgentMessage::PhaseResult(r) => match &r.outcome {
                PhaseOutcome::Failed { reason } => Some(reason.clone()),
                PhaseOutcome::Succeeded => None,
            },
            _ => None,
        })
        .collect()
}

pub fn host_file(sim: &SimCluster, host: &str, file: HostFile) -> String {
    std::fs::read_to_string(sim.host_dir(host).join(file.path())).unwrap()
}

/// Checks the end state from the files and the model: only the new CA anywhere, every leaf chains to
/// it, every pod mounted the new CA alone, OnDelete pods were deleted and recreated, and every workload
/// was restarted exactly once per pods phase.
pub fn assert_updated(sim: &SimCluster, state: &SimState) {
    let first = &state.hosts[0].name;
    let ca_pem = host_file(sim, first, HostFile::CaCert);
    let ders = dc_certs::pem_certificates(&ca_pem).unwrap();
    assert_eq!(ders.len(), 1, "ca.crt holds the new CA alone");
    let ca = CertSummary::from_der(&ders[0]).unwrap();
    assert_eq!(ca.subject, SUBJECT);
    assert_eq!(
        ca.not_after,
        dc_certs::ExpiryDate::parse(EXPIRY).unwrap().not_after()
    );
    assert_eq!(ca.key_algorithm, "ECDSA P-384");
    assert_on_ca_alone(sim, state, &ca_pem);
    for w in &state.workloads {
        assert_eq!(
            w.restarts,
            2,
            "{} restarted once per pods phase",
            w.spec.key()
        );
        for pod in &w.pods {
            assert_eq!(pod.revision, 3, "pod {} runs the last template", pod.name);
        }
        if w.spec.strategy == UpdateStrategy::OnDelete {
            let desired = if w.spec.kind == WorkloadKind::DaemonSet {
                state.hosts.len()
            } else {
                w.spec.replicas as usize
            };
            assert_eq!(
                w.pods_deleted as usize,
                2 * desired,
                "{}: each OnDelete pod deleted exactly once per pods phase",
                w.spec.key()
            );
        } else {
            assert_eq!(w.pods_deleted, 0, "{}", w.spec.key());
        }
    }
}

/// Checks from the files and the model that `ca_pem` is the one root CA everywhere: every host's
/// `ca.crt`, the controllers' `ca.key` and signing flags, every leaf, every kubeconfig's CA data and
/// client certificate, kubeadm join's discovery kubeconfig, every pod's mounted bundle; no `ca_new`
/// file left.
pub fn assert_on_ca_alone(sim: &SimCluster, state: &SimState, ca_pem: &str) {
    let check = |leaf: &str, usage: Usage, what: &str| {
        dc_agent::trust::trusts(leaf, ca_pem, usage)
            .unwrap_or_else(|e| panic!("{what} does not chain to the root CA: {e}"));
    };
    for host in &state.hosts {
        let name = &host.name;
        assert_eq!(
            host_file(sim, name, HostFile::CaCert),
            ca_pem,
            "{name} ca.crt"
        );
        assert!(!sim.host_dir(name).join(HostFile::CaNewCert.path()).exists());
        assert!(!sim.host_dir(name).join(HostFile::CaNewKey.path()).exists());
        if host.role == HostRole::Controller {
            let key = host_file(sim, name, HostFile::CaKey);
            dc_certs::CertifiedCa::from_pem(ca_pem, &key).expect("ca.key is the root CA's key");
            check(
                &host_file(sim, name, HostFile::ApiserverCert),
                Usage::Server,
                "apiserver.crt",
            );
            check(
                &host_file(sim, name, HostFile::ApiserverKubeletClientCert),
                Usage::Client,
                "apiserver-kubelet-client.crt",
            );
            assert!(
                host_file(sim, name, HostFile::ControllerManagerManifest)
                    .contains("--cluster-signing-cert-file=/etc/kubernetes/pki/ca.crt")
            );
            // Untouched by the update.
            assert!(
                dc_agent::trust::trusts(
                    &host_file(sim, name, HostFile::ApiserverCert),
                    &host_file(sim, name, HostFile::FrontProxyCaCert),
                    Usage::Server
                )
                .is_err()
            );
        }
        for &file in KubeconfigFile::of_role(host.role) {
            let path = sim.host_dir(name).join(file.path());
            if file.optional() && !path.exists() {
                continue;
            }
            let k = Kubeconfig::parse(&host_file(sim, name, HostFile::Kubeconfig(file))).unwrap();
            assert_eq!(k.ca_pem(), ca_pem, "{name} {file:?} CA data");
            let ClientCredentials::Embedded { cert_pem, .. } = k.client() else {
                panic!("{name} {file:?}: the simulated cluster embeds credentials");
            };
            check(cert_pem, Usage::Client, file.path());
        }
    }
    // kubeadm join's discovery kubeconfig carries the root CA alone.
    let cluster_info = state
        .cluster_info
        .as_deref()
        .expect("kube-public/cluster-info");
    assert_eq!(
        dc_agent::kubeconfig::discovery_ca(cluster_info).unwrap(),
        ca_pem,
        "cluster-info CA data"
    );
    for w in &state.workloads {
        for pod in &w.pods {
            assert_eq!(
                pod.trust_bundle,
                ca_pem,
                "pod {} of {} trusts only the root CA",
                pod.name,
                w.spec.key()
            );
        }
    }
}

pub fn other_params() -> UpdateParams {
    UpdateParams {
        subject: Some("C=CA ST=ON L=OTT O=WR OU=STX CN=OTHER".into()),
        expiry_date: None,
        ..UpdateParams::default()
    }
}
