//! The update: its eight phases, run in order against a [`Cluster`], each recorded in the [`Journal`]
//! before it acts, so a restart at any instant resumes where it stopped without applying anything twice
//! in a harmful way.
//!
//! What makes each phase safe to repeat:
//! - host phases record each host as begun and done; a repeated host rewrites the same files (the trust
//!   bundle is computed from the recorded old CA and the stored new one, never appended) and restarts
//!   its components again, which is harmless;
//! - update-certs skips a certificate that already chains to the new CA;
//! - pods phases record the restartedAt value before patching; patching the same value again changes
//!   nothing, and OnDelete pods are deleted only while they still run the old revision.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dc_certs::CertifiedCa;
use dc_certs::authority::NewRootCa;
use dc_certs::files::{PRIVATE, PUBLIC, write_atomic};
use dc_certs::inspect::CertSummary;
use dc_certs::verify::Usage;
use dc_protocol::{
    AgentMessage, Phase, PhaseOutcome, PhaseResult, PhaseState, RunState, UpdateParams,
};
use futures::StreamExt;
use tokio::time::Instant;
use tracing::{Instrument, info, info_span, warn};

use crate::cluster::{
    Cluster, ClusterError, Component, Host, HostFile, HostRole, KubeconfigFile,
    RESTARTED_AT_ANNOTATION, UpdateStrategy, Workload,
};
use crate::journal::{Journal, JournalError};
use crate::kubeconfig::ClientCredentials;
use crate::manifest::set_signing_files;
use crate::rollout::{Pending, healthy, on_delete_complete, rollout_complete};
use crate::trust::{self, TrustError, trusts};

/// File names of the new CA in the update directory; the key never leaves the subcloud.
const NEW_CA_CERT: &str = "new-ca.crt";
const NEW_CA_KEY: &str = "new-ca.key";
const PKI: &str = "/etc/kubernetes/pki";

/// Why a phase failed; the message becomes the phase result's reason.
#[derive(Debug, thiserror::Error)]
pub enum PhaseError {
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Trust(#[from] TrustError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("{host}: {file} is missing or unreadable")]
    File { host: String, file: &'static str },
    #[error("{host}: {file}: {reason}")]
    Certificate {
        host: String,
        file: &'static str,
        reason: String,
    },
    #[error("new root CA: {0}")]
    NewCa(String),
    #[error("{workload}: rollout failed: {reason}")]
    RolloutFailed { workload: String, reason: String },
    #[error("{workload}: rollout not complete after {timeout:?}: {waiting}")]
    RolloutTimeout {
        workload: String,
        timeout: Duration,
        waiting: String,
    },
}

/// The settings the phases take from the agent's configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub exclude_namespaces: Vec<String>,
    pub concurrency: usize,
    pub poll: Duration,
    pub phase_timeout: Duration,
}

/// What a start command does, decided from the record.
#[derive(Debug, PartialEq, Eq)]
pub enum StartDecision {
    /// Run (a new update, or resume at the first unfinished phase).
    Run,
    /// This update already completed; its final result was sent again.
    AlreadyCompleted,
    /// Refused, with the reason sent to the controller.
    Refused(String),
}

/// Runs updates against one cluster.
#[derive(Debug)]
pub struct Updater<C> {
    cluster: C,
    journal: Journal,
    settings: Settings,
    abort: AtomicBool,
    /// Trust verdicts reached so far, reused by the checks after every step.
    verified: trust::Verified,
}

impl<C: Cluster> Updater<C> {
    pub fn new(cluster: C, journal: Journal, settings: Settings) -> Self {
        Self {
            cluster,
            journal,
            settings,
            abort: AtomicBool::new(false),
            verified: trust::Verified::default(),
        }
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    pub fn cluster(&self) -> &C {
        &self.cluster
    }

    /// Whether the recorded update should run now (it was running when the agent stopped).
    pub fn should_resume(&self) -> bool {
        self.journal
            .record()
            .is_some_and(|r| r.run == RunState::Running)
    }

    /// Handles a start command while no update runs.
    pub fn start(
        &self,
        update_id: &str,
        params: UpdateParams,
    ) -> Result<StartDecision, JournalError> {
        self.abort.store(false, Ordering::SeqCst);
        match self.journal.record() {
            Some(r) if r.update_id == update_id => {
                if r.run == RunState::Completed {
                    self.journal.update(
                        |_| {},
                        |r, seq| {
                            Some(AgentMessage::PhaseResult(PhaseResult {
                                update_id: r.update_id.clone(),
                                seq,
                                phase: Phase::Complete,
                                outcome: PhaseOutcome::Succeeded,
                                state: r.state().to_owned(),
                                percent: 100,
                            }))
                        },
                    )?;
                    return Ok(StartDecision::AlreadyCompleted);
                }
                info!(update_id, phase = %r.phase, "resuming the update at its first unfinished phase");
                self.journal.update(
                    |r| {
                        r.run = RunState::Running;
                        if r.phase_state == PhaseState::Failed {
                            r.phase_state = PhaseState::InProgress;
                        }
                    },
                    |_, _| None,
                )?;
                Ok(StartDecision::Run)
            }
            // Another update that already touched the hosts must finish first: its cluster trusts a
            // CA whose key only that update holds.
            Some(r) if r.run != RunState::Completed && r.phase > Phase::NewRootCa => {
                let reason = format!(
                    "another update ({}) is in progress at phase {} ({}); complete it first",
                    r.update_id,
                    r.phase,
                    r.state()
                );
                self.refuse(update_id, &reason);
                Ok(StartDecision::Refused(reason))
            }
            _ => {
                self.journal.begin(update_id, params)?;
                Ok(StartDecision::Run)
            }
        }
    }

    /// Refuses a start command for `update_id`: a failed start phase, outside the record (which belongs
    /// to another update).
    pub fn refuse(&self, update_id: &str, reason: &str) {
        warn!(update_id, reason, "start refused");
        self.journal
            .outbox
            .push(AgentMessage::PhaseResult(PhaseResult {
                update_id: update_id.to_owned(),
                seq: 1,
                phase: Phase::Start,
                outcome: PhaseOutcome::Failed {
                    reason: reason.to_owned(),
                },
                state: Phase::Start
                    .state_name(PhaseState::Failed, false)
                    .to_owned(),
                percent: 0,
            }));
    }

    /// Asks the running update to stop after the phase in progress.
    pub fn request_abort(&self) {
        self.abort.store(true, Ordering::SeqCst);
    }

    /// Stops an update that is not running (failed, or never resumed) at once.
    pub fn abort_idle(&self) -> Result<(), JournalError> {
        match self.journal.record() {
            Some(r) if !matches!(r.run, RunState::Completed | RunState::Aborted { .. }) => {
                self.journal.stop()
            }
            _ => Ok(()),
        }
    }

    /// Runs the recorded update from its first unfinished phase until it completes, fails or is
    /// aborted. Dropping the future at any await point is a crash the next run recovers from.
    pub async fn run(&self) -> Result<(), JournalError> {
        loop {
            let Some(record) = self.journal.record() else {
                return Ok(());
            };
            if record.run != RunState::Running {
                return Ok(());
            }
            if self.abort.swap(false, Ordering::SeqCst) {
                info!(next = %record.phase, "update aborted");
                return self.journal.stop();
            }
            let phase = record.phase;
            let span = info_span!("phase", phase = %phase, update_id = %record.update_id);
            let result = async {
                info!(state = record.state(), "phase begins");
                self.journal.progress(None, 0, "started".to_owned())?;
                let delay = self.cluster.phase_delay(phase);
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                self.run_phase(phase).await
            }
            .instrument(span)
            .await;
            match result {
                Ok(()) => {
                    info!(phase = %phase, "phase succeeded");
                    self.journal.finish_phase(phase, PhaseOutcome::Succeeded)?;
                }
                Err(PhaseError::Journal(e)) => return Err(e),
                Err(e) => {
                    let reason = format!("{phase}: {e}");
                    warn!(%reason, "phase failed");
                    self.journal
                        .finish_phase(phase, PhaseOutcome::Failed { reason })?;
                    return Ok(());
                }
            }
        }
    }

    async fn run_phase(&self, phase: Phase) -> Result<(), PhaseError> {
        match phase {
            Phase::Start => self.precheck().await,
            Phase::NewRootCa => self.new_root_ca().await,
            Phase::HostsTrustBothCas | Phase::HostsUpdateCerts | Phase::HostsTrustNewCa => {
                self.host_phase(phase).await
            }
            Phase::PodsTrustBothCas | Phase::PodsTrustNewCa => self.pods_phase().await,
            Phase::Complete => self.complete().await,
        }
    }

    fn record(&self) -> Result<crate::journal::UpdateRecord, PhaseError> {
        Ok(self.journal.record().ok_or(JournalError::NoUpdate)?)
    }

    // === start ===

    async fn precheck(&self) -> Result<(), PhaseError> {
        let record = self.record()?;
        check_params(&record.params)?;
        let hosts = self.sorted_hosts().await?;
        for host in &hosts {
            self.cluster.check_host(&host.name).await.map_err(|e| {
                PhaseError::Refused(format!("host {} is not reachable: {e}", host.name))
            })?;
        }
        for workload in self
            .cluster
            .list_workloads(&self.settings.exclude_namespaces)
            .await?
        {
            healthy(&workload).map_err(|why| {
                PhaseError::Refused(format!("workload {} is not healthy: {why}", workload.id))
            })?;
        }
        trust::check(&self.cluster, &self.verified).await?;
        if record.old_ca_pem.is_none() {
            let first = first_controller(&hosts)?;
            let bundle = self.read(&first.name, HostFile::CaCert).await?;
            let old = first_certificate(&bundle).ok_or_else(|| PhaseError::Certificate {
                host: first.name.clone(),
                file: HostFile::CaCert.path(),
                reason: "no certificate".into(),
            })?;
            self.journal
                .update(|r| r.old_ca_pem = Some(old), |_, _| None)?;
        }
        Ok(())
    }

    // === new root CA ===

    async fn new_root_ca(&self) -> Result<(), PhaseError> {
        let record = self.record()?;
        let now = dc_certs::now();
        // Key generation and validation are CPU work: off the async workers, so a fleet of agents in one
        // process keeps its links and heartbeats going meanwhile.
        let ca = tokio::task::spawn_blocking(move || match &record.params.cert_file {
            Some(file) => dc_certs::upload::validate(file, now)
                .map(|uploaded| uploaded.ca)
                .map_err(|e| PhaseError::NewCa(format!("cert-file refused: {e}"))),
            None => {
                let old = record.old_ca_pem.as_deref().unwrap_or_default();
                let validity = CertSummary::from_pem(old)
                    .map(|s| s.not_after - s.not_before)
                    .unwrap_or(0);
                new_ca_spec(&record.params)?
                    .generate(validity, now)
                    .map_err(|e| PhaseError::NewCa(e.to_string()))
            }
        })
        .await
        .map_err(|e| PhaseError::NewCa(format!("generation task failed: {e}")))??;
        let dir = self.journal.dir();
        // The key first: a certificate whose key is lost would be useless, a key without its
        // certificate is simply regenerated on resume.
        let write = |name: &str, contents: &str, mode: u32| {
            write_atomic(&dir.join(name), contents.as_bytes(), mode)
                .map_err(|e| PhaseError::NewCa(format!("cannot store {name}: {e}")))
        };
        write(NEW_CA_KEY, &ca.key_pem(), PRIVATE)?;
        write(NEW_CA_CERT, ca.cert_pem(), PUBLIC)?;
        let summary =
            CertSummary::from_der(ca.cert_der()).map_err(|e| PhaseError::NewCa(e.to_string()))?;
        self.journal.progress(
            None,
            100,
            format!(
                "new root CA {} serial {} ready",
                summary.subject, summary.serial
            ),
        )?;
        Ok(())
    }

    fn new_ca(&self) -> Result<CertifiedCa, PhaseError> {
        let dir = self.journal.dir();
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .map_err(|e| PhaseError::NewCa(format!("cannot read {name}: {e}")))
        };
        CertifiedCa::from_pem(&read(NEW_CA_CERT)?, &read(NEW_CA_KEY)?)
            .map_err(|e| PhaseError::NewCa(e.to_string()))
    }

    // === host phases ===

    async fn sorted_hosts(&self) -> Result<Vec<Host>, PhaseError> {
        let mut hosts = self.cluster.hosts().await?;
        // Controllers first, as the original requires.
        hosts.sort_by(|a, b| (a.role, &a.name).cmp(&(b.role, &b.name)));
        Ok(hosts)
    }

    async fn host_phase(&self, phase: Phase) -> Result<(), PhaseError> {
        let hosts = self.sorted_hosts().await?;
        let new_ca = self.new_ca()?;
        let old_pem = self.record()?.old_ca_pem.unwrap_or_default();
        let total = hosts.len();
        for (i, host) in hosts.iter().enumerate() {
            if self.record()?.hosts.get(&host.name) == Some(&PhaseState::Done) {
                continue;
            }
            let percent = percent_of(i, total);
            self.journal.update(
                |r| {
                    r.hosts.insert(host.name.clone(), PhaseState::InProgress);
                },
                |r, seq| {
                    Some(AgentMessage::Progress(dc_protocol::Progress {
                        update_id: r.update_id.clone(),
                        seq,
                        phase,
                        host: Some(host.name.clone()),
                        state: r.state().to_owned(),
                        phase_percent: percent,
                        percent: r.percent(percent),
                        details: format!("host {} of {total}", i + 1),
                    }))
                },
            )?;
            let span = info_span!("host", host = %host.name);
            async {
                match phase {
                    Phase::HostsTrustBothCas => self.trust_both_cas(host, &old_pem, &new_ca).await,
                    Phase::HostsUpdateCerts => self.update_certs(host, &old_pem, &new_ca).await,
                    _ => self.trust_new_ca(host, &new_ca).await,
                }?;
                trust::check(&self.cluster, &self.verified).await?;
                Ok::<(), PhaseError>(())
            }
            .instrument(span)
            .await?;
            self.journal.update(
                |r| {
                    r.hosts.insert(host.name.clone(), PhaseState::Done);
                },
                |_, _| None,
            )?;
        }
        Ok(())
    }

    async fn read(&self, host: &str, file: HostFile) -> Result<String, PhaseError> {
        self.cluster
            .read_file(host, file)
            .await?
            .ok_or_else(|| PhaseError::File {
                host: host.to_owned(),
                file: file.path(),
            })
    }

    /// Sets the CA data of every kubeconfig of the host.
    async fn set_kubeconfig_ca(&self, host: &Host, ca_pem: &str) -> Result<(), PhaseError> {
        for &file in KubeconfigFile::of_role(host.role) {
            let Some(mut kubeconfig) =
                trust::read_kubeconfig(&self.cluster, &host.name, file).await?
            else {
                continue;
            };
            if kubeconfig.ca_pem() != ca_pem {
                kubeconfig.set_ca(ca_pem);
                self.cluster
                    .write_file(&host.name, HostFile::Kubeconfig(file), kubeconfig.text())
                    .await?;
            }
        }
        Ok(())
    }

    /// Points the controller-manager's cluster-signing flags at `cert`/`key` in its manifest, editing
    /// the host's own manifest in place.
    async fn set_signing_files(&self, host: &str, cert: &str, key: &str) -> Result<(), PhaseError> {
        let file = HostFile::ControllerManagerManifest;
        let manifest = self.read(host, file).await?;
        let edited =
            set_signing_files(&manifest, cert, key).map_err(|e| PhaseError::Certificate {
                host: host.to_owned(),
                file: file.path(),
                reason: e.to_string(),
            })?;
        if edited != manifest {
            self.cluster.write_file(host, file, &edited).await?;
        }
        Ok(())
    }

    async fn restart(&self, host: &Host, components: &[Component]) -> Result<(), PhaseError> {
        for &component in components {
            self.cluster
                .restart_component(&host.name, component)
                .await?;
        }
        Ok(())
    }

    async fn trust_both_cas(
        &self,
        host: &Host,
        old_pem: &str,
        new_ca: &CertifiedCa,
    ) -> Result<(), PhaseError> {
        let name = &host.name;
        let bundle = format!("{old_pem}{}", new_ca.cert_pem());
        self.cluster
            .write_file(name, HostFile::CaNewCert, new_ca.cert_pem())
            .await?;
        if host.role == HostRole::Controller {
            self.cluster
                .write_file(name, HostFile::CaNewKey, &new_ca.key_pem())
                .await?;
        }
        self.cluster
            .write_file(name, HostFile::CaCert, &bundle)
            .await?;
        self.set_kubeconfig_ca(host, &bundle).await?;
        if host.role == HostRole::Controller {
            // From now on the controller-manager signs (kubelet CSRs, say) with the new CA.
            self.set_signing_files(
                name,
                &format!("{PKI}/ca_new.crt"),
                &format!("{PKI}/ca_new.key"),
            )
            .await?;
            self.restart(
                host,
                &[
                    Component::Apiserver,
                    Component::Scheduler,
                    Component::ControllerManager,
                ],
            )
            .await?;
        }
        self.restart(host, &[Component::Kubelet]).await
    }

    async fn update_certs(
        &self,
        host: &Host,
        old_pem: &str,
        new_ca: &CertifiedCa,
    ) -> Result<(), PhaseError> {
        let name = &host.name;
        let now = dc_certs::now();
        let new_pem = new_ca.cert_pem();
        let reissue = |file: HostFile, pem: &str| {
            dc_certs::leaf::reissue(pem, new_ca, now).map_err(|e| PhaseError::Certificate {
                host: name.clone(),
                file: file.path(),
                reason: e.to_string(),
            })
        };
        if host.role == HostRole::Controller {
            for (cert, key, usage) in [
                (
                    HostFile::ApiserverCert,
                    HostFile::ApiserverKey,
                    Usage::Server,
                ),
                (
                    HostFile::ApiserverKubeletClientCert,
                    HostFile::ApiserverKubeletClientKey,
                    Usage::Client,
                ),
            ] {
                let pem = self.read(name, cert).await?;
                if trusts(&pem, new_pem, usage).is_err() {
                    let leaf = reissue(cert, &pem)?;
                    // Key first: a certificate never points at a key that is not there yet.
                    self.cluster.write_file(name, key, &leaf.key_pem).await?;
                    self.cluster.write_file(name, cert, &leaf.cert_pem).await?;
                }
            }
        }
        for &file in KubeconfigFile::of_role(host.role) {
            let Some(mut kubeconfig) = trust::read_kubeconfig(&self.cluster, name, file).await?
            else {
                continue;
            };
            let cert_pem = trust::client_cert_pem(&self.cluster, name, file, &kubeconfig).await?;
            if trusts(&cert_pem, new_pem, Usage::Client).is_ok() {
                continue;
            }
            match kubeconfig.client() {
                ClientCredentials::Embedded { .. } => {
                    let leaf = reissue(HostFile::Kubeconfig(file), &cert_pem)?;
                    kubeconfig
                        .set_client(&leaf.cert_pem, &leaf.key_pem)
                        .map_err(|e| PhaseError::Certificate {
                            host: name.clone(),
                            file: file.path(),
                            reason: e.to_string(),
                        })?;
                    self.cluster
                        .write_file(name, HostFile::Kubeconfig(file), kubeconfig.text())
                        .await?;
                }
                ClientCredentials::Files { cert, key } => {
                    // kubeadm's kubelet.conf: certificate and key together in the file it names.
                    let pem_file = trust::credentials_file(file, cert, key).map_err(|reason| {
                        PhaseError::Certificate {
                            host: name.clone(),
                            file: file.path(),
                            reason,
                        }
                    })?;
                    let leaf = reissue(pem_file, &cert_pem)?;
                    self.cluster
                        .write_file(
                            name,
                            pem_file,
                            &format!("{}{}", leaf.cert_pem, leaf.key_pem),
                        )
                        .await?;
                }
            }
        }
        // The new CA first: tools that read only the first CA of the bundle (cert-mon) see the new one.
        let bundle = format!("{new_pem}{old_pem}");
        self.cluster
            .write_file(name, HostFile::CaCert, &bundle)
            .await?;
        self.set_kubeconfig_ca(host, &bundle).await?;
        if host.role == HostRole::Controller {
            self.restart(
                host,
                &[
                    Component::Apiserver,
                    Component::Scheduler,
                    Component::ControllerManager,
                ],
            )
            .await?;
        }
        self.restart(host, &[Component::Kubelet]).await
    }

    async fn trust_new_ca(&self, host: &Host, new_ca: &CertifiedCa) -> Result<(), PhaseError> {
        let name = &host.name;
        let new_pem = new_ca.cert_pem();
        if host.role == HostRole::Controller {
            self.cluster
                .write_file(name, HostFile::CaKey, &new_ca.key_pem())
                .await?;
        }
        self.cluster
            .write_file(name, HostFile::CaCert, new_pem)
            .await?;
        self.set_kubeconfig_ca(host, new_pem).await?;
        if host.role == HostRole::Controller {
            self.set_signing_files(name, &format!("{PKI}/ca.crt"), &format!("{PKI}/ca.key"))
                .await?;
            self.restart(
                host,
                &[
                    Component::Apiserver,
                    Component::ControllerManager,
                    Component::Scheduler,
                ],
            )
            .await?;
        }
        self.restart(host, &[Component::Kubelet]).await?;
        self.cluster.remove_file(name, HostFile::CaNewCert).await?;
        self.cluster.remove_file(name, HostFile::CaNewKey).await?;
        Ok(())
    }

    // === pods phases ===

    async fn pods_phase(&self) -> Result<(), PhaseError> {
        let restarted_at = match self.record()?.restarted_at {
            Some(value) => value,
            None => {
                let value = restart_stamp();
                self.journal
                    .update(|r| r.restarted_at = Some(value.clone()), |_, _| None)?;
                value
            }
        };
        let deadline = Instant::now() + self.settings.phase_timeout;
        let workloads = self
            .cluster
            .list_workloads(&self.settings.exclude_namespaces)
            .await?;
        let total = workloads.len();
        let mut results = futures::stream::iter(workloads)
            .map(|w| {
                let span = info_span!("workload", workload = %w.id);
                self.restart_workload(w, &restarted_at, deadline)
                    .instrument(span)
            })
            .buffer_unordered(self.settings.concurrency.max(1));
        let mut done = 0;
        while let Some(result) = results.next().await {
            let outcome = result?;
            done += 1;
            trust::check(&self.cluster, &self.verified).await?;
            let percent = percent_of(done, total);
            self.journal.progress(
                None,
                percent,
                format!("restarted {done} of {total} workloads ({outcome})"),
            )?;
        }
        Ok(())
    }

    /// Restarts one workload (idempotently) and waits for its rollout. Returns what to report.
    async fn restart_workload(
        &self,
        workload: Workload,
        restarted_at: &str,
        deadline: Instant,
    ) -> Result<String, PhaseError> {
        let id = workload.id.clone();
        if workload.paused {
            // `kubectl rollout restart` refuses paused Deployments too; resuming one is the
            // operator's decision, so it is skipped and reported.
            warn!(workload = %id, "paused: skipped; its pods keep the trust bundle they mounted");
            return Ok(format!(
                "{id} skipped: its rollout is paused (resume it and restart it by hand)"
            ));
        }
        if workload
            .template_annotations
            .get(RESTARTED_AT_ANNOTATION)
            .map(String::as_str)
            != Some(restarted_at)
        {
            self.cluster
                .patch_template_annotation(&id, RESTARTED_AT_ANNOTATION, restarted_at)
                .await?;
        }
        let on_delete = workload.strategy == UpdateStrategy::OnDelete;
        let mut deleted = false;
        // Polls back off from `poll` to eight times it: quick for fast rollouts, light on a real API
        // server for slow ones.
        let mut poll = self.settings.poll;
        loop {
            let current = self.cluster.get_workload(&id).await?;
            let verdict = if on_delete {
                // The whole selector, not just the `app` label, so no other workload's pod is touched.
                let pods = self
                    .cluster
                    .list_pods(&id.namespace, &current.selector)
                    .await?;
                // Once the controller has observed the new template, delete every pod of another
                // revision (once; a resumed phase deletes only what still runs the old template).
                if let Some(update_revision) = current
                    .status
                    .update_revision
                    .as_deref()
                    .filter(|_| current.status.observed_generation >= current.status.generation)
                    .filter(|_| !deleted)
                {
                    for pod in pods.iter().filter(|p| p.revision != update_revision) {
                        self.cluster.delete_pod(&pod.namespace, &pod.name).await?;
                    }
                    deleted = true;
                    continue;
                }
                on_delete_complete(&current.status, &pods)
            } else {
                rollout_complete(&current.status)
            };
            let waiting = match verdict {
                Ok(()) => return Ok(format!("{id} rolled out")),
                Err(Pending::Failed(reason)) => {
                    return Err(PhaseError::RolloutFailed {
                        workload: id.to_string(),
                        reason,
                    });
                }
                Err(Pending::Waiting(waiting)) => waiting,
            };
            if Instant::now() >= deadline {
                return Err(PhaseError::RolloutTimeout {
                    workload: id.to_string(),
                    timeout: self.settings.phase_timeout,
                    waiting,
                });
            }
            tokio::time::sleep(poll.min(deadline.saturating_duration_since(Instant::now()))).await;
            poll = (poll * 2).min(self.settings.poll * 8);
        }
    }

    // === complete ===

    async fn complete(&self) -> Result<(), PhaseError> {
        let new_ca = self.new_ca()?;
        let new = dc_certs::pem_certificates(new_ca.cert_pem()).unwrap_or_default();
        for host in self.sorted_hosts().await? {
            let bundle = self.read(&host.name, HostFile::CaCert).await?;
            if dc_certs::pem_certificates(&bundle).unwrap_or_default() != new {
                return Err(PhaseError::Certificate {
                    host: host.name,
                    file: HostFile::CaCert.path(),
                    reason: "does not hold the new root CA alone".into(),
                });
            }
        }
        trust::check(&self.cluster, &self.verified).await?;
        Ok(())
    }
}

/// Validates the operator's parameters before anything changes.
pub fn check_params(params: &UpdateParams) -> Result<(), PhaseError> {
    match &params.cert_file {
        Some(file) => {
            if params.subject.is_some() || params.expiry_date.is_some() {
                return Err(PhaseError::Refused(
                    "a cert-file excludes subject and expiry-date".into(),
                ));
            }
            dc_certs::upload::validate(file, dc_certs::now())
                .map(|_| ())
                .map_err(|e| PhaseError::Refused(format!("invalid cert-file: {e}")))
        }
        None => new_ca_spec(params).map(|_| ()),
    }
}

fn new_ca_spec(params: &UpdateParams) -> Result<NewRootCa, PhaseError> {
    let subject = params
        .subject
        .as_deref()
        .map(dc_certs::Subject::parse)
        .transpose()
        .map_err(|e| PhaseError::Refused(format!("invalid subject: {e}")))?;
    let expiry = params
        .expiry_date
        .as_deref()
        .map(|d| dc_certs::ExpiryDate::parse_valid_at(d, dc_certs::now()))
        .transpose()
        .map_err(|e| PhaseError::Refused(format!("invalid expiry-date: {e}")))?;
    Ok(NewRootCa { subject, expiry })
}

fn first_controller(hosts: &[Host]) -> Result<&Host, PhaseError> {
    hosts
        .iter()
        .find(|h| h.role == HostRole::Controller)
        .ok_or_else(|| PhaseError::Refused("the cluster has no controller host".into()))
}

fn first_certificate(bundle: &str) -> Option<String> {
    let ders = dc_certs::pem_certificates(bundle).ok()?;
    ders.first()
        .map(|d| dc_certs::certificates_pem([d.as_slice()]))
}

fn percent_of(done: usize, total: usize) -> u8 {
    if total == 0 {
        return 100;
    }
    u8::try_from(done * 100 / total).unwrap_or(100)
}

/// The current time in RFC 3339, as `kubectl rollout restart` writes it, with sub-second precision so
/// two pods phases never pick the same value (which would restart nothing the second time).
fn restart_stamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| now.unix_timestamp_nanos().to_string())
}
