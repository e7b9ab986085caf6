//! The rollback: where an unfinished update stands decides the steps that take the subcloud back to its
//! old root CA alone, the mirror of the phases it went through, in reverse. Pure values: the updater
//! runs them, the host steps through the same executor as the host phases ([`HostPlan`]s with the old
//! and new CAs' roles swapped), the pods step through the pods phases' executor.
//!
//! The point of no return is a completed `hosts trust-new-ca`: from then on no trust bundle holds the
//! old CA and the controllers sign with the new key, so going back is a trust change like any other (a
//! new update, to a new CA). Before it, every host still trusts the old CA or held it a step ago, and
//! the old key is kept (on the controllers, and in the agent's data dir from trust-new-ca on), so a
//! rollback is always possible.
//!
//! Why the steps keep the trust invariant, in the order they run:
//! 1. [`RollbackStep::HostsTrustBothCasAgain`] (only when trust-new-ca touched a host): every host
//!    trusts both CAs again, new first, its controllers' `ca.key` the old key again and the
//!    controller-manager signing with the new CA's files, as after update-certs. Nothing anyone presents
//!    changes, and bundles only grow.
//! 2. [`RollbackStep::PodsTrustBothCasAgain`] (with step 1): a pod created while trust-new-ca ran
//!    mounted the new CA alone, and step 3 re-issues the apiserver's certificate from the old CA. So
//!    workloads restart once both CAs are published again, and pods that nothing restarts (bare pods,
//!    paused rollouts) are refused at the start of step 3 unless what they mounted holds the old CA
//!    ([`super::stranded::check_rollback`]), as the update refuses them before update-certs.
//! 3. [`RollbackStep::HostsReissueFromOldCa`]: every leaf not chained to the old CA (those of
//!    update-certs, and any the controller-manager signed with the new CA since trust-both-cas) is
//!    re-issued from the old CA, with the bundle old first, and the controller-manager signs with the
//!    old CA again (`ca_old.crt`, `ca.key`), so a kubelet certificate it signs meanwhile is not refused
//!    at step 4. Every host and every pod already trusts both CAs, so nothing presented is refused;
//!    only once it finished on every host does any host drop the new CA. Run whenever a host was
//!    touched, since such leaves can exist before update-certs.
//! 4. [`RollbackStep::HostsTrustOldCa`]: the old CA alone, signing with `ca.crt`/`ca.key`, the new CA's
//!    files removed. Everything presented now chains to the old CA, which every pod still trusts. Where
//!    the backend kept the files the update replaced (the Kubernetes backend's `.dc-rootca-backup`)
//!    and they hold that same trust, they are put back byte for byte (`ca.crt`, the kubeconfigs with
//!    their original client certificates, the controller-manager's manifest).
//! 5. [`RollbackStep::PodsTrustOldCa`] (only when pods trust-both-cas began): workloads restarted once
//!    the controller-manager published the old CA alone, so pods mount it again.
//! 6. [`RollbackStep::RemoveNewCa`]: the new CA's certificate and key (and the kept old key) leave the
//!    agent's data dir, once every host's `ca.crt` holds the old CA alone.

use dc_protocol::{Phase, ROLLBACK_PAST_POINT_OF_NO_RETURN, RunState};

use crate::cluster::HostFile;
use crate::journal::{RollbackStep, UpdateRecord};

use super::plan::{Bundle, CaPart, HostPlan, Issuer, SigningFiles};

/// The host plan of trust-both-cas again: the state update-certs left, with the old key back in
/// `ca.key` (trust-new-ca had put the new one there).
const TRUST_BOTH_CAS_AGAIN: HostPlan = HostPlan {
    phase: Phase::HostsTrustNewCa,
    install: &[
        (HostFile::CaNewCert, CaPart::NewCert),
        (HostFile::CaNewKey, CaPart::NewKey),
        (HostFile::CaKey, CaPart::OldKey),
    ],
    reissue: None,
    bundle: Bundle::NewThenOld,
    signing: Some(SigningFiles {
        cert: HostFile::CaNewCert,
        key: HostFile::CaNewKey,
    }),
    remove: &[],
    restore_originals: false,
};

/// The host plan that undoes update-certs: leaves from the old CA, the old CA first in the bundle, and
/// the controller-manager signing with the old CA again (its certificate alone in `ca_old.crt`, since
/// `ca.crt` is a bundle until the next step), so a kubelet certificate it signs from now on is still
/// trusted once the hosts trust the old CA alone.
const REISSUE_FROM_OLD_CA: HostPlan = HostPlan {
    phase: Phase::HostsUpdateCerts,
    install: &[(HostFile::CaOldCert, CaPart::OldCert)],
    reissue: Some(Issuer::Old),
    bundle: Bundle::OldThenNew,
    signing: Some(SigningFiles {
        cert: HostFile::CaOldCert,
        key: HostFile::CaKey,
    }),
    remove: &[],
    restore_originals: false,
};

/// The host plan that undoes trust-both-cas: the old CA alone, signing with it, the new CA's files gone.
const TRUST_OLD_CA: HostPlan = HostPlan {
    phase: Phase::HostsTrustBothCas,
    install: &[],
    reissue: None,
    bundle: Bundle::OldOnly,
    signing: Some(SigningFiles {
        cert: HostFile::CaCert,
        key: HostFile::CaKey,
    }),
    remove: &[HostFile::CaNewCert, HostFile::CaNewKey, HostFile::CaOldCert],
    restore_originals: true,
};

/// The host plan of a host step; `None` for the others.
pub fn host_plan(step: RollbackStep) -> Option<&'static HostPlan> {
    match step {
        RollbackStep::HostsTrustBothCasAgain => Some(&TRUST_BOTH_CAS_AGAIN),
        RollbackStep::HostsReissueFromOldCa => Some(&REISSUE_FROM_OLD_CA),
        RollbackStep::HostsTrustOldCa => Some(&TRUST_OLD_CA),
        RollbackStep::PodsTrustBothCasAgain
        | RollbackStep::PodsTrustOldCa
        | RollbackStep::RemoveNewCa => None,
    }
}

/// The bundle a pods step's pods must mount: the one the host step before it wrote, which the
/// controller-manager republishes. `None` for the other steps.
pub fn pods_bundle(step: RollbackStep) -> Option<Bundle> {
    match step {
        RollbackStep::PodsTrustBothCasAgain => Some(TRUST_BOTH_CAS_AGAIN.bundle),
        RollbackStep::PodsTrustOldCa => Some(TRUST_OLD_CA.bundle),
        _ => None,
    }
}

/// Whether the update went past the point of no return: `hosts trust-new-ca` completed.
pub fn past_point_of_no_return(r: &UpdateRecord) -> bool {
    r.rollback.is_none() && (r.run == RunState::Completed || r.phase > Phase::HostsTrustNewCa)
}

/// Why a completed update is not rolled back: its subcloud trusts the new CA alone, and its old key
/// is gone from the agent's data dir.
pub const ROLLBACK_OF_COMPLETED_UPDATE: &str = "cannot roll back: the subcloud's update completed, and it trusts its new root CA alone; going back to the old root CA now is a new update to a new root CA (kube-rootca-update-strategy create with --cert-file holding it)";

/// The steps that take the recorded update back to the old CA, or why there is none: a completed
/// update gets [`ROLLBACK_OF_COMPLETED_UPDATE`], one past the point of no return
/// [`ROLLBACK_PAST_POINT_OF_NO_RETURN`], word for word.
pub fn plan(r: &UpdateRecord) -> Result<Vec<RollbackStep>, String> {
    if r.rollback.is_none() && r.run == RunState::Completed {
        return Err(ROLLBACK_OF_COMPLETED_UPDATE.to_owned());
    }
    if past_point_of_no_return(r) {
        return Err(ROLLBACK_PAST_POINT_OF_NO_RETURN.to_owned());
    }
    if r.rollback.is_some() {
        return Err("a rollback is already recorded".to_owned());
    }
    let mut steps = Vec::new();
    if r.phase == Phase::HostsTrustNewCa && !r.hosts.is_empty() {
        steps.push(RollbackStep::HostsTrustBothCasAgain);
        steps.push(RollbackStep::PodsTrustBothCasAgain);
    }
    if r.hosts_touched() {
        steps.push(RollbackStep::HostsReissueFromOldCa);
        steps.push(RollbackStep::HostsTrustOldCa);
    }
    if r.phase >= Phase::PodsTrustBothCas {
        steps.push(RollbackStep::PodsTrustOldCa);
    }
    steps.push(RollbackStep::RemoveNewCa);
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use dc_protocol::{PhaseState, UpdateParams};

    use super::*;
    use crate::cluster::{Component, HostRole};
    use crate::journal::RollbackRecord;
    use crate::journal::RollbackStep::*;
    use crate::update::plan::{HOST_PLANS, HostAction};

    fn record(phase: Phase, hosts: &[&str], run: RunState) -> UpdateRecord {
        UpdateRecord {
            update_id: "u1".into(),
            params: UpdateParams::default(),
            uploaded: false,
            phase,
            phase_state: PhaseState::InProgress,
            run,
            last_seq: 3,
            hosts: hosts
                .iter()
                .map(|h| ((*h).to_owned(), PhaseState::Done))
                .collect::<BTreeMap<_, _>>(),
            restarted_at: None,
            old_ca_pem: None,
            since: None,
            new_ca: None,
            warnings: Vec::new(),
            health: Vec::new(),
            rollback: None,
        }
    }

    fn stopped(phase: Phase, hosts: &[&str]) -> UpdateRecord {
        record(phase, hosts, RunState::Aborted { next: phase })
    }

    #[test]
    fn before_any_host_changed_only_the_new_ca_goes() {
        for phase in [Phase::Start, Phase::NewRootCa, Phase::HostsTrustBothCas] {
            assert_eq!(plan(&stopped(phase, &[])), Ok(vec![RemoveNewCa]), "{phase}");
        }
    }

    #[test]
    fn each_phase_gone_through_is_undone_in_reverse() {
        let hosts = [HostsReissueFromOldCa, HostsTrustOldCa];
        assert_eq!(
            plan(&stopped(Phase::HostsTrustBothCas, &["controller-0"])).unwrap(),
            [&hosts[..], &[RemoveNewCa]].concat()
        );
        for phase in [Phase::PodsTrustBothCas, Phase::HostsUpdateCerts] {
            assert_eq!(
                plan(&stopped(phase, &[])).unwrap(),
                [&hosts[..], &[PodsTrustOldCa, RemoveNewCa]].concat(),
                "{phase}"
            );
        }
        // Trust-new-ca not begun on any host: as from update-certs.
        assert_eq!(
            plan(&stopped(Phase::HostsTrustNewCa, &[])).unwrap(),
            [&hosts[..], &[PodsTrustOldCa, RemoveNewCa]].concat()
        );
        let failed = RunState::Failed {
            phase: Phase::HostsTrustNewCa,
            reason: "x".into(),
        };
        assert_eq!(
            plan(&record(Phase::HostsTrustNewCa, &["controller-0"], failed)).unwrap(),
            [
                HostsTrustBothCasAgain,
                PodsTrustBothCasAgain,
                HostsReissueFromOldCa,
                HostsTrustOldCa,
                PodsTrustOldCa,
                RemoveNewCa
            ]
        );
    }

    #[test]
    fn past_trust_new_ca_the_rollback_is_refused_with_the_exact_message() {
        assert_eq!(
            plan(&record(Phase::Complete, &[], RunState::Completed)),
            Err(ROLLBACK_OF_COMPLETED_UPDATE.to_owned())
        );
        for r in [
            stopped(Phase::PodsTrustNewCa, &[]),
            stopped(Phase::Complete, &[]),
        ] {
            assert_eq!(
                plan(&r),
                Err(ROLLBACK_PAST_POINT_OF_NO_RETURN.to_owned()),
                "{r:?}"
            );
        }
        assert!(ROLLBACK_PAST_POINT_OF_NO_RETURN.contains("new update to a new root CA"));
    }

    #[test]
    fn a_recorded_rollback_is_not_planned_again() {
        let mut r = stopped(Phase::HostsUpdateCerts, &[]);
        r.rollback = Some(RollbackRecord {
            from: Phase::HostsUpdateCerts,
            steps: vec![RemoveNewCa],
            step: 0,
        });
        assert!(plan(&r).is_err());
        // A rolled-back record completed, yet is not past the point of no return.
        r.run = RunState::Completed;
        assert!(!past_point_of_no_return(&r));
    }

    #[test]
    fn the_host_steps_mirror_the_bundles_and_end_on_the_old_ca_alone() {
        let bundles: Vec<String> = [
            HostsTrustBothCasAgain,
            HostsReissueFromOldCa,
            HostsTrustOldCa,
        ]
        .iter()
        .map(|&s| host_plan(s).unwrap().bundle.pem("O", "N"))
        .collect();
        // The reverse of the update's "ON", "NO", "N", from where trust-new-ca left the hosts.
        assert_eq!(bundles, ["NO", "ON", "O"]);
        assert!(TRUST_BOTH_CAS_AGAIN.needs_old_key());
        assert!(!REISSUE_FROM_OLD_CA.needs_old_key() && !TRUST_OLD_CA.needs_old_key());
        assert_eq!(REISSUE_FROM_OLD_CA.reissue, Some(Issuer::Old));
        assert_eq!(
            TRUST_OLD_CA.actions(HostRole::Worker),
            [
                HostAction::WriteBundle(Bundle::OldOnly),
                HostAction::RestoreOriginals,
                HostAction::Restart(Component::Kubelet),
                HostAction::Remove(HostFile::CaNewCert),
                HostAction::Remove(HostFile::CaNewKey),
                HostAction::Remove(HostFile::CaOldCert),
            ]
        );
        // Signing moves to the old CA alone in the same host step that re-issues from it.
        let old_alone = SigningFiles {
            cert: HostFile::CaOldCert,
            key: HostFile::CaKey,
        };
        assert_eq!(
            REISSUE_FROM_OLD_CA.actions(HostRole::Controller)[..5],
            [
                HostAction::Install(HostFile::CaOldCert, CaPart::OldCert),
                HostAction::ReissueApiserverCerts(Issuer::Old),
                HostAction::ReissueKubeconfigClients(Issuer::Old),
                HostAction::WriteBundle(Bundle::OldThenNew),
                HostAction::PointSigningAt(old_alone),
            ]
        );
    }

    #[test]
    fn no_worker_ever_receives_a_key_and_every_step_restarts_after_writing() {
        let plans = [&TRUST_BOTH_CAS_AGAIN, &REISSUE_FROM_OLD_CA, &TRUST_OLD_CA];
        for plan in plans.into_iter().chain(&HOST_PLANS) {
            let worker = plan.actions(HostRole::Worker);
            assert!(
                !worker
                    .iter()
                    .any(|a| matches!(a, HostAction::Install(_, part) if part.is_key())),
                "{worker:?}"
            );
            for role in [HostRole::Controller, HostRole::Worker] {
                let actions = plan.actions(role);
                let first_restart = actions
                    .iter()
                    .position(|a| matches!(a, HostAction::Restart(_)));
                let last_write = actions
                    .iter()
                    .rposition(|a| !matches!(a, HostAction::Restart(_) | HostAction::Remove(_)));
                assert!(last_write < first_restart, "{actions:?}");
            }
        }
    }

    #[test]
    fn percent_counts_steps() {
        let r = RollbackRecord {
            from: Phase::HostsUpdateCerts,
            steps: vec![
                HostsReissueFromOldCa,
                HostsTrustOldCa,
                PodsTrustOldCa,
                RemoveNewCa,
            ],
            step: 1,
        };
        assert_eq!(r.percent(0), 25);
        assert_eq!(r.percent(100), 50);
        assert_eq!(r.current(), Some(HostsTrustOldCa));
    }
}
