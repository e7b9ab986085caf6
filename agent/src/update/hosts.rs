//! The host phases' executor: each host (controllers one at a time first, then the workers as the
//! subcloud's `worker-apply-type` says) goes through its [`HostPlan`]'s actions, recorded as begun
//! and done on its own so a resumed phase skips exactly the finished hosts, and the trust invariants
//! are checked after every host.
//!
//! Safe to repeat: a repeated host rewrites the same files (the bundle is computed from the recorded
//! old CA and the stored new one, never appended), re-issues only leaves that do not chain to the new
//! CA yet, and restarts its components again, which is harmless.

use std::sync::Mutex;

use dc_certs::CertifiedCa;
use dc_certs::verify::Usage;
use dc_protocol::{AgentMessage, Phase, PhaseState};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tracing::{Instrument, info_span};

use crate::cluster::{Cluster, Host, HostFile, KubeconfigFile};
use crate::journal::RollbackStep;
use crate::kubeconfig::ClientCredentials;
use crate::manifest::set_signing_files;
use crate::trust::{self, trusts};

use super::apply_type;
use super::context::{PhaseContext, PhaseError, percent_of};
use super::join;
use super::new_ca;
use super::old_ca;
use super::plan::{Bundle, CaPart, HostAction, HostPlan, Issuer, KUBEADM_PKI_DIR, SigningFiles};
use super::repair;
use super::stranded;

/// Runs a host phase on every host not done yet: the controllers one at a time, then the workers as
/// the subcloud's `worker-apply-type` says.
pub async fn run<C: Cluster>(cx: &PhaseContext<'_, C>, phase: Phase) -> Result<(), PhaseError> {
    let plan = HostPlan::of(phase)
        .ok_or_else(|| PhaseError::Refused(format!("{phase} is not a host phase")))?;
    if plan.bundle == Bundle::NewOnly {
        // The last moment the old key is surely on a controller: a rollback from here on needs it.
        old_ca::keep(cx).await?;
    }
    walk(cx, plan).await
}

/// Takes every host not done yet through `plan`: a host phase, or a rollback's host step.
pub async fn walk<C: Cluster>(cx: &PhaseContext<'_, C>, plan: &HostPlan) -> Result<(), PhaseError> {
    let phase = plan.phase;
    let hosts = cx.sorted_hosts().await?;
    let record = cx.record()?;
    if let Some(why) = apply_type::refusal(record.params.options, &hosts) {
        return Err(PhaseError::Refused(why));
    }
    let new_ca = new_ca::load(cx.journal)?;
    let old_ca = if plan.reissue == Some(Issuer::Old) {
        Some(old_ca::load(cx).await?)
    } else {
        None
    };
    let old_key = if plan.needs_old_key() {
        Some(old_ca::key_text(cx).await?)
    } else {
        None
    };
    let old_pem = record.old_ca_pem.unwrap_or_default();
    if plan.reissue == Some(Issuer::New) && record.hosts.is_empty() {
        // The last moment: this phase re-issues the apiserver's certificate from the new CA, which a
        // pod trusting the old CA alone cannot verify. Once a host of it changed, there is no going
        // back to check.
        stranded::check(cx).await?;
    }
    let trust_new_ca_began = record
        .rollback
        .as_ref()
        .is_some_and(|b| b.steps.contains(&RollbackStep::PodsTrustBothCasAgain));
    if plan.reissue == Some(Issuer::Old) && trust_new_ca_began && record.hosts.is_empty() {
        // The mirror, before a rollback re-issues it from the old CA: a pod created while
        // trust-new-ca ran mounted the new CA alone, and the pods step restarted only workloads.
        stranded::check_rollback(cx).await?;
    }
    let order = apply_type::order(&hosts, record.params.options);
    let walk = Walk {
        cx,
        phase,
        plan,
        old_pem: &old_pem,
        cas: Cas {
            new: &new_ca,
            old: old_ca.as_ref(),
            old_key: old_key.as_deref(),
        },
        total: hosts.len(),
        tally: Mutex::new(Tally::default()),
    };
    for controller in order.controllers {
        walk.host(controller).await?;
    }
    walk.workers(&order.workers, order.workers_at_once).await?;
    join::publish_ca(cx, &plan.bundle.pem(&old_pem, new_ca.cert_pem())).await
}

/// The CAs a walk writes and issues from; the old one, and its key's file as it was, only when the
/// plan needs them.
#[derive(Clone, Copy)]
struct Cas<'a> {
    new: &'a CertifiedCa,
    old: Option<&'a CertifiedCa>,
    old_key: Option<&'a str>,
}

impl Cas<'_> {
    fn old(&self) -> Result<&CertifiedCa, PhaseError> {
        self.old
            .ok_or_else(|| PhaseError::Refused("the old root CA was not loaded".into()))
    }

    fn old_key(&self) -> Result<&str, PhaseError> {
        self.old_key
            .ok_or_else(|| PhaseError::Refused("the old root CA's key was not loaded".into()))
    }

    fn issuer(&self, issuer: Issuer) -> Result<&CertifiedCa, PhaseError> {
        match issuer {
            Issuer::New => Ok(self.new),
            Issuer::Old => self.old(),
        }
    }
}

/// One host phase's walk over the hosts.
struct Walk<'a, C> {
    cx: &'a PhaseContext<'a, C>,
    phase: Phase,
    plan: &'a HostPlan,
    old_pem: &'a str,
    cas: Cas<'a>,
    total: usize,
    tally: Mutex<Tally>,
}

/// Hosts done and in flight, for progress.
#[derive(Debug, Default)]
struct Tally {
    done: usize,
    in_flight: Vec<String>,
}

impl<C: Cluster> Walk<'_, C> {
    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Up to `at_once` workers in flight. The first failure starts no new worker; those in flight
    /// finish first, so none is left half-written, and the phase fails naming the failed host.
    async fn workers(&self, workers: &[&Host], at_once: usize) -> Result<(), PhaseError> {
        let mut waiting = workers.iter();
        let mut in_flight = FuturesUnordered::new();
        let mut failed: Option<(String, PhaseError)> = None;
        loop {
            while failed.is_none() && in_flight.len() < at_once {
                let Some(&host) = waiting.next() else { break };
                in_flight.push(async move { (host, self.host(host).await) });
            }
            match in_flight.next().await {
                None => break,
                Some((_, Ok(()))) => {}
                Some((host, Err(e))) if failed.is_none() => failed = Some((host.name.clone(), e)),
                Some((host, Err(e))) => {
                    tracing::warn!(host = %host.name, error = %e, "a worker in flight also failed");
                }
            }
        }
        match failed {
            None => Ok(()),
            Some((host, error)) => Err(PhaseError::Host {
                host,
                error: Box::new(error),
            }),
        }
    }

    /// One host through the plan's actions, journaled as begun and done, the trust invariants checked
    /// after it.
    async fn host(&self, host: &Host) -> Result<(), PhaseError> {
        let (cx, phase) = (self.cx, self.phase);
        let mut actions = self.plan.actions(host.role);
        match cx.record()?.hosts.get(&host.name) {
            Some(PhaseState::Done) => {
                self.tally().done += 1;
                return Ok(());
            }
            // The agent stopped while writing this host: what it left must decode before anything
            // is read from it again.
            Some(PhaseState::InProgress) => {
                let restored = repair::damaged_files(cx, self.plan, host).await?;
                if restored && self.plan.bundle == Bundle::NewOnly {
                    // What was put back predates update-certs: its leaves are issued again from the
                    // new CA before the host trusts that CA alone.
                    actions.insert(0, HostAction::ReissueKubeconfigClients(Issuer::New));
                    if host.role == crate::cluster::HostRole::Controller {
                        actions.insert(0, HostAction::ReissueApiserverCerts(Issuer::New));
                    }
                }
            }
            _ => {}
        }
        let (percent, details) = {
            let mut tally = self.tally();
            tally.in_flight.push(host.name.clone());
            (
                percent_of(tally.done, self.total),
                apply_type::progress_details(tally.done, self.total, &tally.in_flight),
            )
        };
        cx.journal.update(
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
                    details,
                }))
            },
        )?;
        let span = info_span!("host", host = %host.name);
        let outcome = async {
            let target = Target {
                cx,
                host,
                old_pem: self.old_pem,
                cas: self.cas,
            };
            for action in actions {
                target.apply(action).await?;
            }
            cx.check_trust().await
        }
        .instrument(span)
        .await;
        self.tally().in_flight.retain(|h| *h != host.name);
        outcome?;
        cx.journal.update(
            |r| {
                r.hosts.insert(host.name.clone(), PhaseState::Done);
            },
            |_, _| None,
        )?;
        self.tally().done += 1;
        Ok(())
    }
}

/// One host and what its actions write.
struct Target<'a, C> {
    cx: &'a PhaseContext<'a, C>,
    host: &'a Host,
    old_pem: &'a str,
    cas: Cas<'a>,
}

impl<C: Cluster> Target<'_, C> {
    async fn apply(&self, action: HostAction) -> Result<(), PhaseError> {
        let cluster = self.cx.cluster;
        let name = &self.host.name;
        match action {
            HostAction::Install(file, part) => {
                let contents = match part {
                    CaPart::NewCert => self.cas.new.cert_pem().to_owned(),
                    CaPart::NewKey => self.cas.new.key_pem(),
                    CaPart::OldKey => self.cas.old_key()?.to_owned(),
                    CaPart::OldCert => self.old_pem.to_owned(),
                };
                cluster.write_file(name, file, &contents).await?;
            }
            HostAction::ReissueApiserverCerts(issuer) => {
                self.reissue_apiserver_certs(self.cas.issuer(issuer)?)
                    .await?;
            }
            HostAction::ReissueKubeconfigClients(issuer) => {
                self.reissue_kubeconfig_clients(self.cas.issuer(issuer)?)
                    .await?;
            }
            HostAction::WriteBundle(bundle) => {
                let pem = bundle.pem(self.old_pem, self.cas.new.cert_pem());
                cluster.write_file(name, HostFile::CaCert, &pem).await?;
                self.set_kubeconfig_ca(&pem).await?;
            }
            HostAction::PointSigningAt(files) => self.point_signing_at(files).await?,
            HostAction::RestoreOriginals => self.restore_originals().await?,
            HostAction::Restart(component) => {
                cluster.restart_component(name, component).await?;
                self.cx.wait_serving(name, component).await?;
            }
            HostAction::Remove(file) => {
                // Its backup too: a file the update created was backed up only when written twice
                // (a resumed host, or a rollback's trust-both-cas again), and then holds a CA's key.
                cluster.remove_file(name, file).await?;
                cluster.remove_backup(name, file).await?;
            }
        }
        Ok(())
    }

    fn certificate_error(&self, file: &'static str, reason: impl ToString) -> PhaseError {
        PhaseError::Certificate {
            host: self.host.name.clone(),
            file,
            reason: reason.to_string(),
        }
    }

    /// A leaf with the same identity, issued by `ca`.
    fn reissue(
        &self,
        ca: &CertifiedCa,
        file: HostFile,
        pem: &str,
    ) -> Result<dc_certs::leaf::IssuedLeaf, PhaseError> {
        dc_certs::leaf::reissue(pem, ca, dc_certs::now())
            .map_err(|e| self.certificate_error(file.path(), e))
    }

    async fn reissue_apiserver_certs(&self, ca: &CertifiedCa) -> Result<(), PhaseError> {
        let (cluster, name) = (self.cx.cluster, &self.host.name);
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
            let pem = self.cx.read(name, cert).await?;
            if trusts(&pem, ca.cert_pem(), usage).is_err() {
                let leaf = self.reissue(ca, cert, &pem)?;
                // Key first: a certificate never points at a key that is not there yet.
                cluster.write_file(name, key, &leaf.key_pem).await?;
                cluster.write_file(name, cert, &leaf.cert_pem).await?;
            }
        }
        Ok(())
    }

    async fn reissue_kubeconfig_clients(&self, ca: &CertifiedCa) -> Result<(), PhaseError> {
        let (cluster, name) = (self.cx.cluster, &self.host.name);
        for &file in KubeconfigFile::of_role(self.host.role) {
            let Some(mut kubeconfig) = trust::read_kubeconfig(cluster, name, file).await? else {
                continue;
            };
            let cert_pem = trust::client_cert_pem(cluster, name, file, &kubeconfig).await?;
            if trusts(&cert_pem, ca.cert_pem(), Usage::Client).is_ok() {
                continue;
            }
            match kubeconfig.client() {
                ClientCredentials::Embedded { .. } => {
                    let leaf = self.reissue(ca, HostFile::Kubeconfig(file), &cert_pem)?;
                    kubeconfig
                        .set_client(&leaf.cert_pem, &leaf.key_pem)
                        .map_err(|e| self.certificate_error(file.path(), e))?;
                    cluster
                        .write_file(name, HostFile::Kubeconfig(file), kubeconfig.text())
                        .await?;
                }
                ClientCredentials::Files { cert, key } => {
                    // kubeadm's kubelet.conf: certificate and key together in the file it names.
                    let pem_file = trust::credentials_file(file, cert, key)
                        .map_err(|reason| self.certificate_error(file.path(), reason))?;
                    let leaf = self.reissue(ca, pem_file, &cert_pem)?;
                    let contents = format!("{}{}", leaf.cert_pem, leaf.key_pem);
                    cluster.write_file(name, pem_file, &contents).await?;
                }
            }
        }
        Ok(())
    }

    /// Sets the CA data of every kubeconfig of the host.
    async fn set_kubeconfig_ca(&self, ca_pem: &str) -> Result<(), PhaseError> {
        let (cluster, name) = (self.cx.cluster, &self.host.name);
        for &file in KubeconfigFile::of_role(self.host.role) {
            let Some(mut kubeconfig) = trust::read_kubeconfig(cluster, name, file).await? else {
                continue;
            };
            if kubeconfig.ca_pem() != ca_pem {
                kubeconfig.set_ca(ca_pem);
                cluster
                    .write_file(name, HostFile::Kubeconfig(file), kubeconfig.text())
                    .await?;
            }
        }
        Ok(())
    }

    /// Puts back, byte for byte, each file kept before the update first replaced it whose backup holds
    /// the trust the host has now: `ca.crt` with the old CA alone; a kubeconfig whose CA data is the old
    /// CA alone and whose embedded client certificate chains to it; the controller-manager's manifest
    /// signing with `ca.crt`/`ca.key`. Without a backup (the simulated cluster) the rewritten file
    /// stays, equivalent.
    async fn restore_originals(&self) -> Result<(), PhaseError> {
        let (cluster, name) = (self.cx.cluster, &self.host.name);
        let old = dc_certs::pem_certificates(self.old_pem).unwrap_or_default();
        let old_alone = |pem: &str| dc_certs::pem_certificates(pem).is_ok_and(|c| c == old);
        let mut files = vec![HostFile::CaCert];
        files.extend(
            KubeconfigFile::of_role(self.host.role)
                .iter()
                .map(|&f| HostFile::Kubeconfig(f)),
        );
        if self.host.role == crate::cluster::HostRole::Controller {
            files.push(HostFile::ControllerManagerManifest);
        }
        for file in files {
            let Some(original) = cluster.read_backup(name, file).await? else {
                continue;
            };
            let same_trust = match file {
                HostFile::CaCert => old_alone(&original),
                HostFile::Kubeconfig(_) => crate::kubeconfig::Kubeconfig::parse(&original)
                    .is_ok_and(|k| {
                        old_alone(k.ca_pem())
                            && match k.client() {
                                ClientCredentials::Embedded { cert_pem, .. } => {
                                    trusts(cert_pem, self.old_pem, Usage::Client).is_ok()
                                }
                                // The file it names was re-issued from the old CA.
                                ClientCredentials::Files { .. } => true,
                            }
                    }),
                _ => {
                    let dir = crate::manifest::pki_dir(&original);
                    let (cert, key) = SigningFiles {
                        cert: HostFile::CaCert,
                        key: HostFile::CaKey,
                    }
                    .paths(dir.as_deref().unwrap_or(KUBEADM_PKI_DIR));
                    set_signing_files(&original, &cert, &key).is_ok_and(|s| s == original)
                }
            };
            if same_trust && cluster.read_file(name, file).await?.as_deref() != Some(&original) {
                cluster.write_file(name, file, &original).await?;
            }
        }
        Ok(())
    }

    /// Points the controller-manager's cluster-signing flags at `files` in its manifest, editing the
    /// host's own manifest in place.
    async fn point_signing_at(&self, files: SigningFiles) -> Result<(), PhaseError> {
        let name = &self.host.name;
        let file = HostFile::ControllerManagerManifest;
        let manifest = self.cx.read(name, file).await?;
        let pki_dir = crate::manifest::pki_dir(&manifest);
        let (cert, key) = files.paths(pki_dir.as_deref().unwrap_or(KUBEADM_PKI_DIR));
        let edited = set_signing_files(&manifest, &cert, &key)
            .map_err(|e| self.certificate_error(file.path(), e))?;
        if edited != manifest {
            self.cx.cluster.write_file(name, file, &edited).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::HostRole;
    use crate::update::tests::Fixture;

    fn file(f: &Fixture, host: &str, file: HostFile) -> Option<String> {
        std::fs::read_to_string(f.sim.host_dir(host).join(file.path())).ok()
    }

    #[tokio::test(start_paused = true)]
    async fn trust_both_cas_gives_every_host_both_cas_and_the_key_to_controllers_only() {
        let f = Fixture::new().await;
        run(&f.context(), Phase::HostsTrustBothCas).await.unwrap();
        let old = f.journal.record().unwrap().old_ca_pem.unwrap();
        let new = new_ca::load(&f.journal).unwrap();
        for host in f.sim.snapshot().unwrap().hosts {
            let name = &host.name;
            assert_eq!(
                file(&f, name, HostFile::CaCert).unwrap(),
                format!("{old}{}", new.cert_pem()),
                "{name}"
            );
            assert_eq!(
                file(&f, name, HostFile::CaNewKey).is_some(),
                (host.role == HostRole::Controller),
                "{name}"
            );
            if host.role == HostRole::Controller {
                let manifest = file(&f, name, HostFile::ControllerManagerManifest).unwrap();
                assert!(
                    manifest.contains("--cluster-signing-cert-file=/etc/kubernetes/pki/ca_new.crt")
                );
            }
            assert_eq!(
                f.journal.record().unwrap().hosts.get(name),
                Some(&PhaseState::Done)
            );
        }
        let restarts = f.sim.snapshot().unwrap().component_restarts;
        assert_eq!(restarts["controller-0"].len(), 4, "{restarts:?}");
        assert_eq!(restarts["worker-0"].len(), 1, "{restarts:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_host_already_done_is_skipped_on_resume() {
        let f = Fixture::new().await;
        f.journal
            .update(
                |r| {
                    r.hosts.insert("controller-0".into(), PhaseState::Done);
                },
                |_, _| None,
            )
            .unwrap();
        run(&f.context(), Phase::HostsTrustBothCas).await.unwrap();
        assert!(file(&f, "controller-0", HostFile::CaNewCert).is_none());
        for host in ["controller-1", "worker-0", "worker-1"] {
            assert!(file(&f, host, HostFile::CaNewCert).is_some(), "{host}");
        }
    }

    /// The simulated cluster keeps no backups: a damaged file on the host the agent stopped inside
    /// cannot be put back, and the phase says which file and what to do instead of reading it.
    #[tokio::test(start_paused = true)]
    async fn a_damaged_file_without_a_backup_fails_the_phase_naming_it() {
        let f = Fixture::new().await;
        f.journal
            .update(
                |r| {
                    r.hosts
                        .insert("controller-0".into(), PhaseState::InProgress);
                },
                |_, _| None,
            )
            .unwrap();
        let admin = f
            .sim
            .host_dir("controller-0")
            .join(HostFile::Kubeconfig(KubeconfigFile::Admin).path());
        let whole = std::fs::read_to_string(&admin).unwrap();
        std::fs::write(&admin, &whole[..whole.len() / 2]).unwrap();
        let e = run(&f.context(), Phase::HostsTrustBothCas)
            .await
            .expect_err("a damaged file without a backup");
        let message = e.to_string();
        assert!(message.contains("controller-0: admin.conf"), "{message}");
        assert!(message.contains("no whole backup"), "{message}");
        assert!(
            file(&f, "controller-0", HostFile::CaNewCert).is_none(),
            "nothing written"
        );
    }
}
