//! The simulated cluster: a product feature for demos, fleet benchmarks and fault injection.
//!
//! Hosts have real kubeadm PKI files under `<data_dir>/cluster/hosts/<host>/etc/kubernetes/`. Workloads
//! and pods live in a model ([`SimState`]) persisted as JSON (`<data_dir>/cluster/state.json`, atomic
//! writes). The model offers exactly the operations the Kubernetes API maps onto (get, list, patch the
//! template annotation, list pods by selector, delete pod), so a fake Kubernetes REST API can serve it.
//!
//! Rollouts progress lazily: every operation first advances the model to the current time (tokio time,
//! so tests can pause the clock), replacing pods within each strategy's limits. A pod mounts the trust
//! bundle the controller-manager publishes (the first controller's `ca.crt`) when it is created.

pub mod config;
mod pki;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use dc_certs::files::{PRIVATE, PUBLIC, create_private_dir, write_atomic};
use dc_protocol::Phase;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

pub use config::{Faults, SimConfig, SlowPhase, WorkloadSpec};
pub use pki::{client_identity, controller_manager_manifest};

use crate::cluster::{
    Component, Host, HostDir, HostFile, HostRole, LabelSelector, Pod, RESTARTED_AT_ANNOTATION,
    RolloutStatus, UpdateStrategy, Workload, WorkloadKind, WorkloadRef,
};
use crate::rollout::selector_matches;

/// Errors of the simulated cluster.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("simulated cluster: {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("simulated cluster state {path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("simulated cluster: certificate generation failed: {0}")]
    Certificate(String),
    #[error("simulated cluster config: {0}")]
    Config(String),
    #[error("no host {0}")]
    UnknownHost(String),
    #[error("no {0}")]
    UnknownWorkload(WorkloadRef),
    #[error("no pod {0}")]
    UnknownPod(String),
    #[error("host {host} is unreachable (injected fault)")]
    Unreachable { host: String },
    #[error("restarting {component:?} on {host} failed (injected fault)")]
    RestartFailed { host: String, component: Component },
}

/// A pod of the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimPod {
    pub name: String,
    /// The workload template revision it was created from (1 = the initial one).
    pub revision: u64,
    /// Simulated clock (milliseconds) when it was created and when it becomes ready.
    pub created_ms: u64,
    pub ready_ms: u64,
    /// The kube-root-ca.crt it mounted at start.
    pub trust_bundle: String,
}

/// A workload of the model with its pods and counters the tests read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimWorkload {
    pub spec: WorkloadSpec,
    pub generation: i64,
    /// The template revision; bumped by every template change.
    pub revision: u64,
    pub template_annotations: BTreeMap<String, String>,
    pub pods: Vec<SimPod>,
    /// Pods created so far (names Deployment pods).
    pub pods_created: u64,
    /// Template changes (rolling restarts) so far.
    pub restarts: u32,
    /// Pods deleted through the API so far.
    pub pods_deleted: u32,
}

/// The persisted model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimState {
    /// The simulated clock, milliseconds, as of the last save.
    pub clock_ms: u64,
    pub hosts: Vec<Host>,
    pub workloads: Vec<SimWorkload>,
    /// Component restarts per host.
    pub component_restarts: BTreeMap<String, BTreeMap<Component, u32>>,
}

/// Every workload with its pods, read at one instant of the simulated clock: what a Kubernetes API
/// server serving the model shows beyond the phases' views (which pod belongs to which workload, when
/// each was created), taken under one lock so a response never mixes two instants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiView {
    /// The simulated clock (milliseconds) the view was read at.
    pub clock_ms: u64,
    pub workloads: Vec<ApiWorkload>,
}

/// A workload as an API server shows it: the phases' view plus the spec it was created from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiWorkload {
    pub workload: Workload,
    pub spec: WorkloadSpec,
    pub pods: Vec<ApiPod>,
}

/// A pod as an API server shows it: the phases' view plus its model times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiPod {
    pub pod: Pod,
    /// Simulated clock (milliseconds) when it was created and when it becomes (or became) ready.
    pub created_ms: u64,
    pub ready_ms: u64,
}

/// A simulated cluster rooted in a directory.
#[derive(Debug)]
pub struct SimCluster {
    dir: PathBuf,
    faults: Faults,
    pod_ready_ms: u64,
    state: Mutex<SimState>,
    /// The simulated clock is `base_ms` plus the tokio time elapsed since `started`.
    started: Instant,
    base_ms: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SimError + '_ {
    move |source| SimError::Io {
        path: path.to_owned(),
        source,
    }
}

impl SimCluster {
    /// Opens the simulated cluster in `<data_dir>/cluster`, creating hosts, PKI files and workloads at
    /// the first start.
    pub fn open(data_dir: &Path, config: &SimConfig) -> Result<Self, SimError> {
        let dir = data_dir.join("cluster");
        let state_path = dir.join("state.json");
        let state = match std::fs::read(&state_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| SimError::Corrupt {
                path: state_path.clone(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create(&dir, config)?,
            Err(e) => return Err(io(&state_path)(e)),
        };
        let cluster = Self {
            dir,
            faults: config.faults.clone(),
            pod_ready_ms: config.pod_ready_ms,
            base_ms: state.clock_ms,
            state: Mutex::new(state),
            started: Instant::now(),
        };
        cluster.save(&cluster.lock())?;
        Ok(cluster)
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
                    &hosts_dir(dir, &host.name, HostDir::Kubernetes).join("pki/front-proxy-ca.key"),
                    &front_proxy.key_pem(),
                    true,
                )?;
            }
        }
        let bundle = ca.cert_pem().to_owned();
        let workloads = config
            .workloads
            .iter()
            .map(|spec| {
                let mut w = SimWorkload {
                    spec: spec.clone(),
                    generation: 1,
                    revision: 1,
                    template_annotations: BTreeMap::new(),
                    pods: Vec::new(),
                    pods_created: 0,
                    restarts: 0,
                    pods_deleted: 0,
                };
                for name in slot_names(&w, &hosts)
                    .into_iter()
                    .take(desired(&w, &hosts) as usize)
                {
                    w.pods_created += 1;
                    w.pods.push(SimPod {
                        name,
                        revision: 1,
                        created_ms: 0,
                        ready_ms: 0,
                        trust_bundle: bundle.clone(),
                    });
                }
                w
            })
            .collect();
        Ok(SimState {
            clock_ms: 0,
            hosts,
            workloads,
            component_restarts: BTreeMap::new(),
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
        create_private_dir(&self.dir).map_err(io(&self.dir))?;
        let path = self.dir.join("state.json");
        let mut state = state.clone();
        state.clock_ms = self.now_ms();
        let bytes = serde_json::to_vec(&state).map_err(|source| SimError::Corrupt {
            path: path.clone(),
            source,
        })?;
        // Atomic (rename) but not fsynced: the model only has to survive a killed agent, not a power
        // cut, and a fleet of simulated subclouds would otherwise spend its time in fsync.
        let tmp = self.dir.join(".state.json.tmp");
        std::fs::write(&tmp, &bytes).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))
    }

    /// A copy of the model as it is now, with rollouts advanced (for tests, the demo and a fake API).
    pub fn snapshot(&self) -> Result<SimState, SimError> {
        let mut state = self.lock();
        self.advance(&mut state)?;
        Ok(state.clone())
    }

    /// The host directory standing for `/etc/kubernetes`.
    pub fn host_dir(&self, host: &str) -> PathBuf {
        hosts_dir(&self.dir, host, HostDir::Kubernetes)
    }

    /// The host directory standing for `/var/lib/kubelet/pki`.
    pub fn kubelet_pki_dir(&self, host: &str) -> PathBuf {
        hosts_dir(&self.dir, host, HostDir::KubeletPki)
    }

    fn known_host(&self, host: &str) -> Result<(), SimError> {
        if self.lock().hosts.iter().any(|h| h.name == host) {
            Ok(())
        } else {
            Err(SimError::UnknownHost(host.to_owned()))
        }
    }

    fn pod_ready(&self, w: &SimWorkload, pod: &SimPod, now: u64) -> bool {
        let stuck = pod.revision > 1 && self.faults.never_ready.contains(&w.spec.key());
        pod.ready_ms <= now && !stuck
    }

    /// Advances every rollout to now; saves when anything changed.
    fn advance(&self, state: &mut SimState) -> Result<(), SimError> {
        let now = self.now_ms();
        let mut bundle: Option<String> = None;
        let mut changed = false;
        let hosts = state.hosts.clone();
        for w in &mut state.workloads {
            loop {
                let step = self.rollout_step(w, &hosts, now);
                match step {
                    Step::Create(name) => {
                        let bundle = match &bundle {
                            Some(b) => b.clone(),
                            None => {
                                let b = self.published_bundle(&hosts)?;
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
                    Step::Delete(index) => {
                        w.pods.remove(index);
                    }
                    Step::Wait => break,
                }
                changed = true;
            }
        }
        if changed {
            self.save(state)?;
        }
        Ok(())
    }

    /// The kube-root-ca.crt the controller-manager publishes: the first controller's `ca.crt`.
    fn published_bundle(&self, hosts: &[Host]) -> Result<String, SimError> {
        let first = hosts
            .iter()
            .find(|h| h.role == HostRole::Controller)
            .ok_or_else(|| SimError::Config("no controller host".into()))?;
        let path = self.host_dir(&first.name).join(HostFile::CaCert.path());
        std::fs::read_to_string(&path).map_err(io(&path))
    }

    /// The next thing the workload's controller does: create a pod of the current template, remove an
    /// old pod, or wait, within the strategy's limits.
    fn rollout_step(&self, w: &SimWorkload, hosts: &[Host], now: u64) -> Step {
        let n = desired(w, hosts) as usize;
        let total = w.pods.len();
        let new = w.pods.iter().filter(|p| p.revision == w.revision).count();
        let (max_unavailable, surge) = match w.spec.strategy {
            UpdateStrategy::OnDelete => (0, 0),
            UpdateStrategy::RollingUpdate {
                max_unavailable,
                max_surge,
            } => {
                let surge = if w.spec.kind == WorkloadKind::Deployment {
                    max_surge as usize
                } else {
                    0
                };
                let unavailable = max_unavailable as usize;
                // Both zero is invalid in Kubernetes; it would never progress.
                (
                    if surge == 0 {
                        unavailable.max(1)
                    } else {
                        unavailable
                    },
                    surge,
                )
            }
        };
        if total < n + surge && new < n {
            let name = match w.spec.kind {
                WorkloadKind::Deployment => {
                    Some(format!("{}-{}-{}", w.spec.name, w.revision, w.pods_created))
                }
                _ => slot_names(w, hosts)
                    .into_iter()
                    .find(|slot| !w.pods.iter().any(|p| &p.name == slot)),
            };
            if let Some(name) = name {
                return Step::Create(name);
            }
        }
        if w.spec.strategy == UpdateStrategy::OnDelete {
            return Step::Wait;
        }
        let old: Vec<(usize, &SimPod)> = w
            .pods
            .iter()
            .enumerate()
            .filter(|(_, p)| p.revision != w.revision)
            .collect();
        if let Some((i, _)) = old.iter().find(|(_, p)| !self.pod_ready(w, p, now)) {
            return Step::Delete(*i);
        }
        let ready = w.pods.iter().filter(|p| self.pod_ready(w, p, now)).count();
        // Highest name first, as a StatefulSet goes from the highest ordinal down.
        if let Some((i, _)) = old.iter().max_by(|a, b| a.1.name.cmp(&b.1.name))
            && ready > n.saturating_sub(max_unavailable)
        {
            return Step::Delete(*i);
        }
        Step::Wait
    }

    fn workload_index(state: &SimState, id: &WorkloadRef) -> Result<usize, SimError> {
        state
            .workloads
            .iter()
            .position(|w| {
                w.spec.kind == id.kind && w.spec.namespace == id.namespace && w.spec.name == id.name
            })
            .ok_or_else(|| SimError::UnknownWorkload(id.clone()))
    }

    fn workload_view(&self, w: &SimWorkload, hosts: &[Host], now: u64) -> Workload {
        let n = desired(w, hosts);
        let count = |f: &dyn Fn(&SimPod) -> bool| {
            u32::try_from(w.pods.iter().filter(|p| f(p)).count()).unwrap_or(u32::MAX)
        };
        let updated = count(&|p| p.revision == w.revision);
        let ready = count(&|p| self.pod_ready(w, p, now));
        let revisioned = w.spec.kind != WorkloadKind::Deployment;
        let current = if updated == n && w.pods.len() == n as usize {
            w.revision
        } else {
            w.revision.saturating_sub(1)
        };
        Workload {
            id: workload_ref(w),
            strategy: w.spec.strategy,
            paused: false,
            selector: LabelSelector {
                match_labels: w.spec.labels.clone(),
                match_expressions: Vec::new(),
            },
            template_annotations: w.template_annotations.clone(),
            status: RolloutStatus {
                failure: None,
                generation: w.generation,
                observed_generation: w.generation,
                desired: n,
                replicas: count(&|_| true),
                updated,
                ready,
                available: ready,
                current_revision: revisioned.then(|| format!("{}-{current}", w.spec.name)),
                update_revision: revisioned.then(|| format!("{}-{}", w.spec.name, w.revision)),
            },
        }
    }

    fn pod_view(&self, w: &SimWorkload, p: &SimPod, now: u64) -> Pod {
        Pod {
            namespace: w.spec.namespace.clone(),
            name: p.name.clone(),
            labels: w.spec.labels.clone(),
            revision: format!("{}-{}", w.spec.name, p.revision),
            ready: self.pod_ready(w, p, now),
            trust_bundle: Some(p.trust_bundle.clone()),
        }
    }

    // === The operations behind the Cluster trait ===

    pub async fn hosts(&self) -> Result<Vec<Host>, SimError> {
        api_call().await;
        Ok(self.lock().hosts.clone())
    }

    pub async fn check_host(&self, host: &str) -> Result<(), SimError> {
        api_call().await;
        self.known_host(host)?;
        if self.faults.unreachable.iter().any(|h| h == host) {
            return Err(SimError::Unreachable {
                host: host.to_owned(),
            });
        }
        Ok(())
    }

    pub async fn read_file(&self, host: &str, file: HostFile) -> Result<Option<String>, SimError> {
        api_call().await;
        self.known_host(host)?;
        let path = host_path(&self.dir, host, file);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    pub async fn write_file(
        &self,
        host: &str,
        file: HostFile,
        contents: &str,
    ) -> Result<(), SimError> {
        api_call().await;
        self.known_host(host)?;
        write_host_file(
            &host_path(&self.dir, host, file),
            contents,
            file.is_private(),
        )
    }

    pub async fn remove_file(&self, host: &str, file: HostFile) -> Result<(), SimError> {
        api_call().await;
        self.known_host(host)?;
        let path = host_path(&self.dir, host, file);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&path)(e)),
            _ => Ok(()),
        }
    }

    pub async fn restart_component(
        &self,
        host: &str,
        component: Component,
    ) -> Result<(), SimError> {
        api_call().await;
        self.known_host(host)?;
        if self.faults.restart_fails.iter().any(|h| h == host) {
            return Err(SimError::RestartFailed {
                host: host.to_owned(),
                component,
            });
        }
        let mut state = self.lock();
        *state
            .component_restarts
            .entry(host.to_owned())
            .or_default()
            .entry(component)
            .or_default() += 1;
        self.save(&state)
    }

    pub async fn list_workloads(
        &self,
        exclude_namespaces: &[String],
    ) -> Result<Vec<Workload>, SimError> {
        api_call().await;
        let mut state = self.lock();
        self.advance(&mut state)?;
        let now = self.now_ms();
        Ok(state
            .workloads
            .iter()
            .filter(|w| !exclude_namespaces.contains(&w.spec.namespace))
            .map(|w| self.workload_view(w, &state.hosts, now))
            .collect())
    }

    pub async fn get_workload(&self, id: &WorkloadRef) -> Result<Workload, SimError> {
        api_call().await;
        let mut state = self.lock();
        self.advance(&mut state)?;
        let i = Self::workload_index(&state, id)?;
        Ok(self.workload_view(&state.workloads[i], &state.hosts, self.now_ms()))
    }

    pub async fn patch_template_annotation(
        &self,
        id: &WorkloadRef,
        key: &str,
        value: &str,
    ) -> Result<(), SimError> {
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
        self.save(&state)
    }

    pub async fn list_pods(
        &self,
        namespace: &str,
        selector: &LabelSelector,
    ) -> Result<Vec<Pod>, SimError> {
        api_call().await;
        let mut state = self.lock();
        self.advance(&mut state)?;
        let now = self.now_ms();
        Ok(state
            .workloads
            .iter()
            .filter(|w| w.spec.namespace == namespace && selector_matches(selector, &w.spec.labels))
            .flat_map(|w| w.pods.iter().map(move |p| (w, p)))
            .map(|(w, p)| self.pod_view(w, p, now))
            .collect())
    }

    pub async fn delete_pod(&self, namespace: &str, name: &str) -> Result<(), SimError> {
        api_call().await;
        let mut state = self.lock();
        self.advance(&mut state)?;
        let found = state.workloads.iter_mut().find_map(|w| {
            let i = w.pods.iter().position(|p| p.name == name)?;
            (w.spec.namespace == namespace).then_some((w, i))
        });
        let (w, i) = found.ok_or_else(|| SimError::UnknownPod(format!("{namespace}/{name}")))?;
        w.pods.remove(i);
        w.pods_deleted += 1;
        // The workload controller recreates it at once.
        self.advance(&mut state)?;
        self.save(&state)
    }

    pub async fn all_pods(&self) -> Result<Vec<Pod>, SimError> {
        api_call().await;
        let mut state = self.lock();
        self.advance(&mut state)?;
        let now = self.now_ms();
        Ok(state
            .workloads
            .iter()
            .flat_map(|w| w.pods.iter().map(move |p| (w, p)))
            .map(|(w, p)| self.pod_view(w, p, now))
            .collect())
    }

    /// Every workload with its pods, advanced to now, for a fake Kubernetes API.
    pub async fn api_view(&self) -> Result<ApiView, SimError> {
        api_call().await;
        let mut state = self.lock();
        self.advance(&mut state)?;
        let now = self.now_ms();
        let workloads = state
            .workloads
            .iter()
            .map(|w| ApiWorkload {
                workload: self.workload_view(w, &state.hosts, now),
                spec: w.spec.clone(),
                pods: w
                    .pods
                    .iter()
                    .map(|p| ApiPod {
                        pod: self.pod_view(w, p, now),
                        created_ms: p.created_ms,
                        ready_ms: p.ready_ms,
                    })
                    .collect(),
            })
            .collect();
        Ok(ApiView {
            clock_ms: now,
            workloads,
        })
    }

    pub fn phase_delay(&self, phase: Phase) -> Duration {
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

enum Step {
    Create(String),
    Delete(usize),
    Wait,
}

fn workload_ref(w: &SimWorkload) -> WorkloadRef {
    WorkloadRef {
        kind: w.spec.kind,
        namespace: w.spec.namespace.clone(),
        name: w.spec.name.clone(),
    }
}

/// Desired pods: replicas, or one per host for a DaemonSet.
fn desired(w: &SimWorkload, hosts: &[Host]) -> u32 {
    match w.spec.kind {
        WorkloadKind::DaemonSet => u32::try_from(hosts.len()).unwrap_or(u32::MAX),
        _ => w.spec.replicas,
    }
}

/// The fixed pod names of DaemonSets (one per host) and StatefulSets (ordinals); Deployments have none.
fn slot_names(w: &SimWorkload, hosts: &[Host]) -> Vec<String> {
    match w.spec.kind {
        WorkloadKind::DaemonSet => hosts
            .iter()
            .map(|h| format!("{}-{}", w.spec.name, h.name))
            .collect(),
        _ => (0..w.spec.replicas)
            .map(|i| format!("{}-{i}", w.spec.name))
            .collect(),
    }
}

/// Where a host's directory lives in the simulated cluster: `hosts/<host>/` plus the real path.
fn hosts_dir(dir: &Path, host: &str, which: HostDir) -> PathBuf {
    let host = dir.join("hosts").join(host);
    match which {
        HostDir::Kubernetes => host.join("etc/kubernetes"),
        HostDir::KubeletPki => host.join("var/lib/kubelet/pki"),
    }
}

fn host_path(dir: &Path, host: &str, file: HostFile) -> PathBuf {
    hosts_dir(dir, host, file.dir()).join(file.path())
}

fn write_host_file(path: &Path, contents: &str, private: bool) -> Result<(), SimError> {
    if let Some(parent) = path.parent() {
        create_private_dir(parent).map_err(io(parent))?;
    }
    write_atomic(
        path,
        contents.as_bytes(),
        if private { PRIVATE } else { PUBLIC },
    )
    .map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;
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

    /// Restarts the workload and follows the rollout, checking the strategy's limits at every step.
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
    async fn api_view_gives_each_workload_its_own_pods_with_creation_times() {
        let dir = tempfile::tempdir().unwrap();
        let config = SimConfig {
            pod_ready_ms: 100,
            ..SimConfig::typical()
        };
        let sim = SimCluster::open(dir.path(), &config).unwrap();
        let view = sim.api_view().await.unwrap();
        assert_eq!(view.workloads.len(), config.workloads.len());
        // The two StatefulSets share the `app` label; each still owns only its own pods.
        let replica = view
            .workloads
            .iter()
            .find(|w| w.spec.name == "pg-replica")
            .unwrap();
        let names: Vec<&str> = replica.pods.iter().map(|p| p.pod.name.as_str()).collect();
        assert_eq!(names, ["pg-replica-0", "pg-replica-1"]);
        assert!(
            replica
                .pods
                .iter()
                .all(|p| p.created_ms == 0 && p.pod.ready)
        );

        tokio::time::sleep(Duration::from_secs(1)).await;
        sim.delete_pod("db", "pg-replica-1").await.unwrap();
        let view = sim.api_view().await.unwrap();
        let replica = view
            .workloads
            .iter()
            .find(|w| w.spec.name == "pg-replica")
            .unwrap();
        let recreated = replica
            .pods
            .iter()
            .find(|p| p.pod.name == "pg-replica-1")
            .unwrap();
        assert_eq!(recreated.created_ms, view.clock_ms);
        assert_eq!(recreated.ready_ms, view.clock_ms + 100);
        assert!(!recreated.pod.ready);
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
