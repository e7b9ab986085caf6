//! The simulated cluster: a product feature for demos, fleet benchmarks and fault injection.
//!
//! Hosts have real kubeadm PKI files under `<data_dir>/cluster/hosts/<host>/etc/kubernetes/` ([`layout`]).
//! Workloads and pods live in a model ([`model`]) persisted as JSON (`<data_dir>/cluster/state.json`,
//! atomic writes). [`SimCluster`] implements [`Cluster`] with exactly the operations the Kubernetes API
//! maps onto (get, list, patch the template annotation, list pods by selector, delete pod), so a fake
//! Kubernetes REST API (in `dc-test-support`) can serve it from a [`SimCluster::snapshot`].
//!
//! Rollouts progress lazily: every operation first advances the model to the current time (tokio time,
//! so tests can pause the clock), applying what the workload [`controllers`] do next. A pod mounts the
//! trust bundle the controller-manager publishes (the first controller's `ca.crt`) when it is created.
//!
//! # Layout
//! - [`config`]: [`SimConfig`], the shapes (`light`, `typical`) and the faults to inject.
//! - [`model`]: the persisted model and the phases' view of it; [`controllers`]: the rollout rules.
//! - [`layout`]: where the files live; [`pki`]: the kubeadm PKI created at first start.
//! - [`error`]: [`SimError`], which reaches the phases as a [`ClusterError`].

pub mod config;
pub mod controllers;
pub mod error;
pub mod layout;
pub mod model;
mod pki;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use dc_certs::files::create_private_dir;
use dc_protocol::Phase;
use tokio::time::Instant;

pub use config::{Faults, SimConfig, SlowPhase, WorkloadSpec};
pub use error::SimError;
pub use model::{Publication, SimPod, SimState, SimWorkload};
pub use pki::{client_identity, controller_manager_manifest};

use crate::cluster::{
    Cluster, ClusterError, Component, Host, HostDir, HostFile, HostRole, KubeconfigFile,
    LabelSelector, Node, Pod, PublishedBundle, RESTARTED_AT_ANNOTATION, Workload, WorkloadRef,
};
use crate::rollout::selector_matches;
use controllers::{RolloutAction, next_action};
use error::io_error;
use layout::{host_path, write_host_file};

/// A simulated cluster rooted in a directory.
#[derive(Debug)]
pub struct SimCluster {
    dir: PathBuf,
    faults: Faults,
    pod_ready_ms: u64,
    publish_delay_ms: u64,
    restart_ms: u64,
    state: Mutex<SimState>,
    /// The simulated clock is `base_ms` plus the tokio time elapsed since `started`.
    started: Instant,
    base_ms: u64,
}

impl SimCluster {
    /// Opens the simulated cluster in `<data_dir>/cluster`, creating hosts, PKI files and workloads at
    /// the first start.
    pub fn open(data_dir: &Path, config: &SimConfig) -> Result<Self, SimError> {
        let dir = layout::cluster_dir(data_dir);
        let state_path = layout::state_file(&dir);
        let state = match std::fs::read(&state_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| SimError::Corrupt {
                path: state_path.clone(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create(&dir, config)?,
            Err(e) => return Err(io_error(&state_path)(e)),
        };
        let cluster = Self {
            dir,
            faults: config.faults.clone(),
            pod_ready_ms: config.pod_ready_ms,
            publish_delay_ms: config.publish_delay_ms,
            restart_ms: config.restart_ms,
            base_ms: state.clock_ms,
            state: Mutex::new(state),
            started: Instant::now(),
        };
        cluster.save(&cluster.lock())?;
        for entry in &config.faults.expiring {
            cluster.expire_soon(entry)?;
        }
        Ok(cluster)
    }

    /// The `expiring` fault: `host/path` of a certificate the update leaves alone, re-issued to end
    /// in a week.
    fn expire_soon(&self, entry: &str) -> Result<(), SimError> {
        let unknown = || {
            SimError::Config(format!(
                "faults.expiring: {entry:?} is not host/<an untouched certificate>"
            ))
        };
        let (host, path) = entry.split_once('/').ok_or_else(unknown)?;
        let file = HostFile::UNTOUCHED_CERTS
            .into_iter()
            .find(|f| f.path() == path)
            .ok_or_else(unknown)?;
        self.known_host(host)?;
        let pem = pki::expiring_soon(path, dc_certs::now())?;
        write_host_file(&host_path(&self.dir, host, file), &pem, false)
    }

    fn create(dir: &Path, config: &SimConfig) -> Result<SimState, SimError> {
        if config.controllers == 0 {
            return Err(SimError::Config("at least one controller is needed".into()));
        }
        let now = dc_certs::now();
        let (ca, front_proxy) = pki::current_cas(config.root_ca_expiry_days, now)?;
        // Leaves of an already expired CA were issued while it was still valid.
        let issued = now.min(now + config.root_ca_expiry_days * 86400 - 86400);
        let hosts: Vec<Host> = (0..config.controllers)
            .map(|i| Host {
                name: format!("controller-{i}"),
                role: HostRole::Controller,
            })
            .chain((0..config.workers).map(|i| Host {
                name: format!("worker-{i}"),
                role: HostRole::Worker,
            }))
            .collect();
        for (index, host) in hosts.iter().enumerate() {
            let files = pki::host_files(host, index, &ca, &front_proxy, issued)?;
            for (file, contents) in files {
                write_host_file(
                    &host_path(dir, &host.name, file),
                    &contents,
                    file.is_private(),
                )?;
            }
            if host.role == HostRole::Controller {
                write_host_file(
                    &layout::host_dir(dir, &host.name, HostDir::Kubernetes)
                        .join("pki/front-proxy-ca.key"),
                    &front_proxy.key_pem(),
                    true,
                )?;
            }
        }
        let workloads = config
            .workloads
            .iter()
            .map(|spec| SimWorkload::initial(spec, &hosts, ca.cert_pem()))
            .collect();
        let server = format!("https://{}:6443", hosts[0].name);
        Ok(SimState {
            clock_ms: 0,
            hosts,
            workloads,
            component_restarts: Default::default(),
            cluster_info: Some(crate::kubeconfig::render_discovery(&server, ca.cert_pem())),
            publication: Publication {
                bundle: (config.publish_delay_ms > 0).then(|| ca.cert_pem().to_owned()),
                pending: None,
            },
            bare_pods: Vec::new(),
            restarting: Default::default(),
            peak_hosts_restarting: 0,
        })
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        // A panic while holding the lock cannot leave the model half-changed in a way later calls would
        // misread (every change is saved whole), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now_ms(&self) -> u64 {
        self.base_ms + u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn save(&self, state: &SimState) -> Result<(), SimError> {
        create_private_dir(&self.dir).map_err(io_error(&self.dir))?;
        let path = layout::state_file(&self.dir);
        let mut state = state.clone();
        state.clock_ms = self.now_ms();
        let bytes = serde_json::to_vec(&state).map_err(|source| SimError::Corrupt {
            path: path.clone(),
            source,
        })?;
        // Atomic (rename) but not fsynced: the model only has to survive a killed agent, not a power
        // cut, and a fleet of simulated subclouds would otherwise spend its time in fsync.
        let tmp = layout::state_temp_file(&self.dir);
        std::fs::write(&tmp, &bytes).map_err(io_error(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_error(&path))
    }

    /// A copy of the model as it is now, with rollouts advanced and `clock_ms` the instant it was read
    /// at (for tests, the demo and a fake Kubernetes API, which builds its objects from one snapshot
    /// with [`Self::workload_view`] and [`Self::pod_view`] so a response never mixes two instants).
    pub fn snapshot(&self) -> Result<SimState, SimError> {
        let mut state = self.lock();
        self.advance(&mut state)?;
        let mut snapshot = state.clone();
        snapshot.clock_ms = self.now_ms();
        Ok(snapshot)
    }

    /// A workload of a [`Self::snapshot`] as the phases see it through [`Cluster`] at `now_ms`.
    pub fn workload_view(&self, w: &SimWorkload, hosts: &[Host], now_ms: u64) -> Workload {
        w.view(hosts, now_ms, &self.faults)
    }

    /// A pod of a [`Self::snapshot`] as the phases see it through [`Cluster`] at `now_ms`.
    pub fn pod_view(&self, w: &SimWorkload, pod: &SimPod, now_ms: u64) -> Pod {
        w.pod_view(pod, now_ms, &self.faults)
    }

    /// A host's node as the API server shows it (for a fake Kubernetes API too).
    pub fn node_view(&self, host: &str) -> Node {
        let named = |hosts: &[String]| hosts.iter().any(|h| h == host);
        Node {
            name: host.to_owned(),
            ready: !named(&self.faults.not_ready),
            unschedulable: named(&self.faults.cordoned),
        }
    }

    /// The bundle published as `kube-root-ca.crt` in a [`Self::snapshot`] (for a fake Kubernetes API).
    pub fn published_bundle_of(&self, state: &SimState) -> Result<String, SimError> {
        self.published_bundle(&state.publication, &state.hosts)
    }

    /// Runs a pod by hand, without a controller, that mounted `trust_bundle` (what an operator's
    /// `kubectl run` leaves, for tests of pods nothing restarts).
    pub fn add_bare_pod(
        &self,
        namespace: &str,
        name: &str,
        trust_bundle: &str,
    ) -> Result<(), SimError> {
        let mut state = self.lock();
        state.bare_pods.push(Pod {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            labels: Default::default(),
            revision: String::new(),
            ready: true,
            trust_bundle: Some(trust_bundle.to_owned()),
            owner: None,
            finished: false,
            crash_looping: false,
        });
        self.save(&state)
    }

    /// A kubelet rotates its client certificate, and the controller-manager of the first controller
    /// (the leader here) signs it with the files its manifest's signing flags name, as
    /// kube-controller-manager does: it cannot sign from a cert file holding more than one
    /// certificate. `host`'s `kubelet.conf` gets the new certificate, same identity, new key.
    pub fn rotate_kubelet_client(&self, host: &str) -> Result<(), SimError> {
        let leader = {
            let state = self.lock();
            state
                .hosts
                .iter()
                .find(|h| h.role == HostRole::Controller)
                .map(|h| h.name.clone())
                .ok_or_else(|| SimError::Config("no controller host".into()))?
        };
        let read = |path: PathBuf| std::fs::read_to_string(&path).map_err(io_error(&path));
        let manifest = read(host_path(
            &self.dir,
            &leader,
            HostFile::ControllerManagerManifest,
        ))?;
        let (cert, key) = crate::manifest::signing_files(&manifest)
            .ok_or_else(|| SimError::Config("the manifest names no signing files".into()))?;
        let on_leader = |path: &str| {
            self.host_dir(&leader)
                .join(path.trim_start_matches("/etc/kubernetes/"))
        };
        let cert_pem = read(on_leader(&cert))?;
        let key_pem = read(on_leader(&key))?;
        let count = dc_certs::pem_certificates(&cert_pem).map_or(0, |c| c.len());
        if count != 1 {
            return Err(SimError::Certificate(format!(
                "the controller-manager cannot sign: {cert} holds {count} certificates, not one"
            )));
        }
        let ca = dc_certs::CertifiedCa::from_pem(&cert_pem, &key_pem)
            .map_err(|e| SimError::Certificate(e.to_string()))?;
        let path = host_path(
            &self.dir,
            host,
            HostFile::Kubeconfig(KubeconfigFile::Kubelet),
        );
        let mut kubeconfig = crate::kubeconfig::Kubeconfig::parse(&read(path.clone())?)
            .map_err(|e| SimError::Certificate(e.to_string()))?;
        let crate::kubeconfig::ClientCredentials::Embedded { cert_pem, .. } = kubeconfig.client()
        else {
            return Err(SimError::Config(format!(
                "{host}: kubelet.conf names its credentials"
            )));
        };
        let leaf = dc_certs::leaf::reissue(cert_pem, &ca, dc_certs::now())
            .map_err(|e| SimError::Certificate(e.to_string()))?;
        kubeconfig
            .set_client(&leaf.cert_pem, &leaf.key_pem)
            .map_err(|e| SimError::Certificate(e.to_string()))?;
        write_host_file(&path, kubeconfig.text(), true)
    }

    /// The host directory standing for `/etc/kubernetes`.
    pub fn host_dir(&self, host: &str) -> PathBuf {
        layout::host_dir(&self.dir, host, HostDir::Kubernetes)
    }

    /// The host directory standing for `/var/lib/kubelet/pki`.
    pub fn kubelet_pki_dir(&self, host: &str) -> PathBuf {
        layout::host_dir(&self.dir, host, HostDir::KubeletPki)
    }

    fn known_host(&self, host: &str) -> Result<(), SimError> {
        if self.lock().hosts.iter().any(|h| h.name == host) {
            Ok(())
        } else {
            Err(SimError::UnknownHost(host.to_owned()))
        }
    }

    /// Advances every rollout to now, applying what each workload controller does next; saves when
    /// anything changed.
    fn advance(&self, state: &mut SimState) -> Result<(), SimError> {
        let now = self.now_ms();
        let mut bundle: Option<String> = None;
        let mut changed = state.publication.settle(now);
        let hosts = state.hosts.clone();
        let publication = state.publication.clone();
        for w in &mut state.workloads {
            loop {
                match next_action(w, &hosts, now, &self.faults) {
                    RolloutAction::CreatePod(name) => {
                        let bundle = match &bundle {
                            Some(b) => b.clone(),
                            None => {
                                let b = self.published_bundle(&publication, &hosts)?;
                                bundle = Some(b.clone());
                                b
                            }
                        };
                        w.pods_created += 1;
                        w.pods.push(SimPod {
                            name,
                            revision: w.revision,
                            created_ms: now,
                            ready_ms: now + self.pod_ready_ms,
                            trust_bundle: bundle,
                        });
                    }
                    RolloutAction::RemovePod(index) => {
                        w.pods.remove(index);
                    }
                    RolloutAction::Wait => break,
                }
                changed = true;
            }
        }
        if changed {
            self.save(state)?;
        }
        Ok(())
    }

    /// The kube-root-ca.crt the controller-manager publishes (without a publication delay: the first
    /// controller's `ca.crt` as it is now).
    fn published_bundle(
        &self,
        publication: &Publication,
        hosts: &[Host],
    ) -> Result<String, SimError> {
        if let Some(bundle) = &publication.bundle {
            return Ok(bundle.clone());
        }
        let first = hosts
            .iter()
            .find(|h| h.role == HostRole::Controller)
            .ok_or_else(|| SimError::Config("no controller host".into()))?;
        let path = self.host_dir(&first.name).join(HostFile::CaCert.path());
        std::fs::read_to_string(&path).map_err(io_error(&path))
    }

    fn workload_index(state: &SimState, id: &WorkloadRef) -> Result<usize, SimError> {
        state
            .workloads
            .iter()
            .position(|w| w.is(id))
            .ok_or_else(|| SimError::UnknownWorkload(id.clone()))
    }

    /// Every pod of the workloads `select` picks, as the phases see them, rollouts advanced.
    fn pods(&self, select: impl Fn(&SimWorkload) -> bool) -> Result<Vec<Pod>, SimError> {
        let mut state = self.lock();
        self.advance(&mut state)?;
        let now = self.now_ms();
        Ok(state
            .workloads
            .iter()
            .filter(|w| select(w))
            .flat_map(|w| w.pods.iter().map(move |p| (w, p)))
            .map(|(w, p)| w.pod_view(p, now, &self.faults))
            .collect())
    }
}

impl Cluster for SimCluster {
    async fn hosts(&self) -> Result<Vec<Host>, ClusterError> {
        api_call().await;
        Ok(self.lock().hosts.clone())
    }

    async fn check_host(&self, host: &str) -> Result<(), ClusterError> {
        api_call().await;
        self.known_host(host)?;
        if self.faults.unreachable.iter().any(|h| h == host) {
            return Err(SimError::Unreachable {
                host: host.to_owned(),
            }
            .into());
        }
        Ok(())
    }

    async fn read_file(&self, host: &str, file: HostFile) -> Result<Option<String>, ClusterError> {
        api_call().await;
        self.known_host(host)?;
        let path = host_path(&self.dir, host, file);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(&path)(e).into()),
        }
    }

    /// The simulated cluster writes atomically and keeps no backups.
    async fn read_backup(&self, host: &str, _: HostFile) -> Result<Option<String>, ClusterError> {
        api_call().await;
        self.known_host(host)?;
        Ok(None)
    }

    async fn remove_backup(&self, host: &str, _: HostFile) -> Result<(), ClusterError> {
        api_call().await;
        self.known_host(host)?;
        Ok(())
    }

    async fn write_file(
        &self,
        host: &str,
        file: HostFile,
        contents: &str,
    ) -> Result<(), ClusterError> {
        api_call().await;
        self.known_host(host)?;
        let path = host_path(&self.dir, host, file);
        Ok(write_host_file(&path, contents, file.is_private())?)
    }

    async fn remove_file(&self, host: &str, file: HostFile) -> Result<(), ClusterError> {
        api_call().await;
        self.known_host(host)?;
        let path = host_path(&self.dir, host, file);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error(&path)(e).into()),
            _ => Ok(()),
        }
    }

    async fn restart_component(
        &self,
        host: &str,
        component: Component,
    ) -> Result<(), ClusterError> {
        api_call().await;
        self.known_host(host)?;
        if self.faults.restart_fails.iter().any(|h| h == host) {
            return Err(SimError::RestartFailed {
                host: host.to_owned(),
                component,
            }
            .into());
        }
        let mut state = self.lock();
        if component == Component::ControllerManager && self.publish_delay_ms > 0 {
            // The restarted controller-manager reads its --root-ca-file now and publishes it once
            // it leads.
            let path = host_path(&self.dir, host, HostFile::CaCert);
            let bundle = std::fs::read_to_string(&path).map_err(io_error(&path))?;
            state.publication.pending = Some((bundle, self.now_ms() + self.publish_delay_ms));
        }
        *state
            .component_restarts
            .entry(host.to_owned())
            .or_default()
            .entry(component)
            .or_default() += 1;
        let now = self.now_ms();
        state.restart(host, component.name(), now, now + self.restart_ms);
        Ok(self.save(&state)?)
    }

    async fn check_component(&self, host: &str, component: Component) -> Result<(), ClusterError> {
        api_call().await;
        self.known_host(host)?;
        let name = format!("{host}/{}", component.name());
        let (restarted, starting) = {
            let state = self.lock();
            let restarted = state
                .component_restarts
                .get(host)
                .is_some_and(|r| r.contains_key(&component));
            (
                restarted,
                state.starting(host, component.name(), self.now_ms()),
            )
        };
        if starting {
            return Err(SimError::Starting {
                host: host.to_owned(),
                component,
            }
            .into());
        }
        if restarted && self.faults.unhealthy.contains(&name) {
            return Err(SimError::Unhealthy {
                host: host.to_owned(),
                component,
            }
            .into());
        }
        Ok(())
    }

    async fn cluster_info(&self) -> Result<Option<String>, ClusterError> {
        api_call().await;
        Ok(self.lock().cluster_info.clone())
    }

    async fn set_cluster_info(&self, kubeconfig: &str) -> Result<(), ClusterError> {
        api_call().await;
        let mut state = self.lock();
        state.cluster_info = Some(kubeconfig.to_owned());
        Ok(self.save(&state)?)
    }

    /// Every namespace holds `kube-root-ca.crt`; the model has no token Secrets.
    async fn published_bundles(&self) -> Result<Vec<PublishedBundle>, ClusterError> {
        api_call().await;
        let mut state = self.lock();
        self.advance(&mut state)?;
        let ca_pem = self.published_bundle(&state.publication, &state.hosts)?;
        Ok(state
            .namespaces()
            .into_iter()
            .map(|ns| PublishedBundle {
                place: format!("ConfigMap {ns}/kube-root-ca.crt"),
                ca_pem: ca_pem.clone(),
            })
            .collect())
    }

    async fn list_workloads(
        &self,
        exclude_namespaces: &[String],
    ) -> Result<Vec<Workload>, ClusterError> {
        api_call().await;
        let mut state = self.lock();
        self.advance(&mut state)?;
        let now = self.now_ms();
        Ok(state
            .workloads
            .iter()
            .filter(|w| !exclude_namespaces.contains(&w.spec.namespace))
            .map(|w| w.view(&state.hosts, now, &self.faults))
            .collect())
    }

    async fn get_workload(&self, id: &WorkloadRef) -> Result<Workload, ClusterError> {
        api_call().await;
        let mut state = self.lock();
        self.advance(&mut state)?;
        let i = Self::workload_index(&state, id)?;
        Ok(state.workloads[i].view(&state.hosts, self.now_ms(), &self.faults))
    }

    async fn patch_template_annotation(
        &self,
        id: &WorkloadRef,
        key: &str,
        value: &str,
    ) -> Result<(), ClusterError> {
        api_call().await;
        let mut state = self.lock();
        self.advance(&mut state)?;
        let i = Self::workload_index(&state, id)?;
        let w = &mut state.workloads[i];
        if w.template_annotations.get(key).map(String::as_str) == Some(value) {
            // The same template again: Kubernetes changes nothing, so no new rollout.
            return Ok(());
        }
        w.template_annotations
            .insert(key.to_owned(), value.to_owned());
        w.generation += 1;
        w.revision += 1;
        if key == RESTARTED_AT_ANNOTATION {
            w.restarts += 1;
        }
        self.advance(&mut state)?;
        Ok(self.save(&state)?)
    }

    async fn list_pods(
        &self,
        namespace: &str,
        selector: &LabelSelector,
    ) -> Result<Vec<Pod>, ClusterError> {
        api_call().await;
        Ok(self.pods(|w| {
            w.spec.namespace == namespace && selector_matches(selector, &w.spec.labels)
        })?)
    }

    async fn delete_pod(&self, namespace: &str, name: &str) -> Result<(), ClusterError> {
        api_call().await;
        let mut state = self.lock();
        self.advance(&mut state)?;
        if let Some(i) = state
            .bare_pods
            .iter()
            .position(|p| p.namespace == namespace && p.name == name)
        {
            state.bare_pods.remove(i);
            return Ok(self.save(&state)?);
        }
        let found = state.workloads.iter_mut().find_map(|w| {
            let i = w.pods.iter().position(|p| p.name == name)?;
            (w.spec.namespace == namespace).then_some((w, i))
        });
        let (w, i) = found.ok_or_else(|| SimError::UnknownPod(format!("{namespace}/{name}")))?;
        w.pods.remove(i);
        w.pods_deleted += 1;
        // The workload controller recreates it at once.
        self.advance(&mut state)?;
        Ok(self.save(&state)?)
    }

    async fn all_pods(&self) -> Result<Vec<Pod>, ClusterError> {
        api_call().await;
        let mut pods = self.pods(|_| true)?;
        pods.extend(self.lock().bare_pods.iter().cloned());
        Ok(pods)
    }

    async fn nodes(&self) -> Result<Vec<Node>, ClusterError> {
        api_call().await;
        Ok(self
            .lock()
            .hosts
            .iter()
            .map(|h| self.node_view(&h.name))
            .collect())
    }

    fn phase_delay(&self, phase: Phase) -> Duration {
        match self.faults.slow_phase {
            Some(slow) if slow.phase == phase => Duration::from_millis(slow.delay_ms),
            _ => Duration::ZERO,
        }
    }
}

/// Every operation is an await point, as a call to a real API server is, so an agent killed (its future
/// dropped) stops between two calls, never inside one.
async fn api_call() {
    tokio::task::yield_now().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{UpdateStrategy, WorkloadKind};
    use crate::rollout::rollout_complete;

    fn cluster(dir: &Path, spec: WorkloadSpec, workers: u32) -> (SimCluster, WorkloadRef) {
        let config = SimConfig {
            controllers: 1,
            workers,
            pod_ready_ms: 100,
            workloads: vec![spec.clone()],
            ..SimConfig::light()
        };
        let id = WorkloadRef {
            kind: spec.kind,
            namespace: spec.namespace,
            name: spec.name,
        };
        (SimCluster::open(dir, &config).unwrap(), id)
    }

    /// Restarts the workload and follows the rollout, checking the strategy's limits at every poll.
    async fn follow(sim: &SimCluster, id: &WorkloadRef, min_ready: u32, max_pods: u32) {
        sim.patch_template_annotation(id, RESTARTED_AT_ANNOTATION, "now")
            .await
            .unwrap();
        for _ in 0..100 {
            let status = sim.get_workload(id).await.unwrap().status;
            assert!(status.ready >= min_ready, "{status:?}");
            assert!(status.replicas <= max_pods, "{status:?}");
            if rollout_complete(&status).is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        panic!("the rollout never completed");
    }

    #[tokio::test(start_paused = true)]
    async fn deployment_surges_without_losing_a_ready_pod() {
        let dir = tempfile::tempdir().unwrap();
        let strategy = UpdateStrategy::RollingUpdate {
            max_unavailable: 0,
            max_surge: 1,
        };
        let spec = WorkloadSpec::new(WorkloadKind::Deployment, "default", "web", 3, strategy);
        let (sim, id) = cluster(dir.path(), spec, 0);
        follow(&sim, &id, 3, 4).await;
        let state = sim.snapshot().unwrap();
        assert!(state.workloads[0].pods.iter().all(|p| p.revision == 2));
        // The same value again is no new rollout.
        sim.patch_template_annotation(&id, RESTARTED_AT_ANNOTATION, "now")
            .await
            .unwrap();
        assert_eq!(sim.snapshot().unwrap().workloads[0].restarts, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn daemonset_replaces_one_host_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let spec = WorkloadSpec::new(
            WorkloadKind::DaemonSet,
            "kube-system",
            "proxy",
            1,
            UpdateStrategy::RollingUpdate {
                max_unavailable: 1,
                max_surge: 0,
            },
        );
        let (sim, id) = cluster(dir.path(), spec, 2);
        follow(&sim, &id, 2, 3).await;
        let names: Vec<String> = sim.snapshot().unwrap().workloads[0]
            .pods
            .iter()
            .map(|p| p.name.clone())
            .collect();
        assert_eq!(names.len(), 3);
        assert!(names.contains(&"proxy-worker-1".to_owned()));
    }

    #[tokio::test(start_paused = true)]
    async fn on_delete_waits_for_deletions_and_state_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let spec = WorkloadSpec::new(
            WorkloadKind::StatefulSet,
            "db",
            "pg",
            2,
            UpdateStrategy::OnDelete,
        );
        let (sim, id) = cluster(dir.path(), spec.clone(), 0);
        sim.patch_template_annotation(&id, RESTARTED_AT_ANNOTATION, "now")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let status = sim.get_workload(&id).await.unwrap().status;
        assert_eq!(status.updated, 0, "OnDelete never replaces pods by itself");
        assert!(rollout_complete(&status).is_err());
        sim.delete_pod("db", "pg-1").await.unwrap();
        let pods = sim
            .list_pods("db", &sim.get_workload(&id).await.unwrap().selector)
            .await
            .unwrap();
        assert_eq!(pods.len(), 2, "the deleted pod is recreated at once");
        drop(sim);
        let (sim, _) = cluster(dir.path(), spec, 0);
        let state = sim.snapshot().unwrap();
        assert_eq!(state.workloads[0].pods_deleted, 1);
        assert_eq!(state.workloads[0].revision, 2);
    }
}
