//! The three host phases as one plan table: the sequence a host goes through is written once
//! ([`HostPlan::actions`]); what differs between trust-both-cas, update-certs and trust-new-ca is data
//! ([`HOST_PLANS`]). Pure values: the executor is `hosts`.

use dc_protocol::Phase;

use crate::cluster::{Component, HostFile, HostRole};

/// Where kubeadm keeps the PKI: the signing files' directory when the controller-manager's manifest
/// names no PKI file to take it from.
pub const KUBEADM_PKI_DIR: &str = "/etc/kubernetes/pki";

/// The order the control plane of a controller restarts in, after its files changed.
///
/// The apiserver first: the other two authenticate to it, so it must already trust (and, after
/// update-certs, present) what they will present and expect. The controller-manager next: it is the
/// component whose restart changes what the cluster does (it signs kubelet CSRs with the CA its manifest
/// names, and publishes the `kube-root-ca.crt` bundle that pods mount, after waiting up to a lease
/// duration for leadership), so it should start as early as it can; the scheduler last, since it only
/// reloads its kubeconfig. This is also the order kubeadm brings the control plane up in. The original
/// used this order in trust-new-ca and apiserver, scheduler, controller-manager in the two phases
/// before it, for no stated reason; any order is safe, one order is easier to reason about.
pub const CONTROL_PLANE_RESTART_ORDER: [Component; 3] = [
    Component::Apiserver,
    Component::ControllerManager,
    Component::Scheduler,
];

/// Which part of a root CA a file receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaPart {
    /// The new CA's certificate.
    NewCert,
    /// The new CA's key: written to controllers only (workers sign nothing), as every key.
    NewKey,
    /// The old CA's key, put back into `ca.key` by a rollback of hosts trust-new-ca.
    OldKey,
    /// The old CA's certificate alone, which a rollback signs with while it re-issues leaves.
    OldCert,
}

impl CaPart {
    /// Whether it is a key, which only controllers receive.
    pub fn is_key(self) -> bool {
        matches!(self, Self::NewKey | Self::OldKey)
    }
}

/// The CA that re-issued leaves come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Issuer {
    /// The new root CA (update-certs).
    New,
    /// The old root CA (a rollback of update-certs).
    Old,
}

/// The trust bundle a phase writes to `ca.crt` and to every kubeconfig's CA data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bundle {
    /// The old CA, then the new: everything keeps verifying old certificates and starts accepting new
    /// ones.
    OldThenNew,
    /// The new CA first: tools that read only the first CA of the bundle (cert-mon) see the new one.
    NewThenOld,
    /// The new CA alone: the old one is no longer trusted.
    NewOnly,
    /// The old CA alone: where a rollback ends, as before the update.
    OldOnly,
}

impl Bundle {
    /// The bundle's PEM text.
    pub fn pem(self, old: &str, new: &str) -> String {
        match self {
            Self::OldThenNew => format!("{old}{new}"),
            Self::NewThenOld => format!("{new}{old}"),
            Self::NewOnly => new.to_owned(),
            Self::OldOnly => old.to_owned(),
        }
    }
}

/// The files the controller-manager signs with (its `--cluster-signing-*-file` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigningFiles {
    pub cert: HostFile,
    pub key: HostFile,
}

impl SigningFiles {
    /// The flags' values: the files in `pki_dir`, the directory the manifest already names its PKI
    /// files in (the path the controller-manager sees, which need not be the host's).
    pub fn paths(self, pki_dir: &str) -> (String, String) {
        let dir = pki_dir.trim_end_matches('/');
        (
            format!("{dir}/{}", file_name(self.cert)),
            format!("{dir}/{}", file_name(self.key)),
        )
    }
}

/// A PKI file's name inside the PKI directory.
fn file_name(file: HostFile) -> &'static str {
    file.path().trim_start_matches("pki/")
}

/// What one host phase does to a host, as data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostPlan {
    pub phase: Phase,
    /// Parts of a CA written first, in this order (key parts on controllers only).
    pub install: &'static [(HostFile, CaPart)],
    /// Whether the leaves not yet chained to a CA are re-issued from it, and from which (the
    /// apiserver's on controllers, every kubeconfig's client certificate).
    pub reissue: Option<Issuer>,
    pub bundle: Bundle,
    /// Where the controller-manager's signing flags point from this phase on (controllers), when they
    /// move.
    pub signing: Option<SigningFiles>,
    /// Files removed last.
    pub remove: &'static [HostFile],
    /// Whether the files kept before the update first replaced them (`ca.crt`, the kubeconfigs, the
    /// controller-manager's manifest) are put back, byte for byte, where they hold what the plan wrote
    /// (a rollback's last host step: the old CA alone, signing with `ca.crt`/`ca.key`).
    pub restore_originals: bool,
}

/// One thing a host phase does to a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostAction {
    /// Writes part of a CA to a file.
    Install(HostFile, CaPart),
    /// Re-issues the apiserver's serving and kubelet-client certificates from that CA.
    ReissueApiserverCerts(Issuer),
    /// Re-issues every kubeconfig's client certificate (embedded, or the file it names) from that CA.
    ReissueKubeconfigClients(Issuer),
    /// Writes the bundle to `ca.crt` and every kubeconfig's CA data.
    WriteBundle(Bundle),
    /// Points the controller-manager's signing flags at these files.
    PointSigningAt(SigningFiles),
    /// Puts back the files kept before the update first replaced them, where they hold the same trust.
    RestoreOriginals,
    Restart(Component),
    Remove(HostFile),
}

/// The host phases, in the order they run.
pub const HOST_PLANS: [HostPlan; 3] = [
    HostPlan {
        phase: Phase::HostsTrustBothCas,
        install: &[
            (HostFile::CaNewCert, CaPart::NewCert),
            (HostFile::CaNewKey, CaPart::NewKey),
        ],
        reissue: None,
        bundle: Bundle::OldThenNew,
        // From now on the controller-manager signs (kubelet CSRs, say) with the new CA.
        signing: Some(SigningFiles {
            cert: HostFile::CaNewCert,
            key: HostFile::CaNewKey,
        }),
        remove: &[],
        restore_originals: false,
    },
    HostPlan {
        phase: Phase::HostsUpdateCerts,
        install: &[],
        reissue: Some(Issuer::New),
        bundle: Bundle::NewThenOld,
        signing: None,
        remove: &[],
        restore_originals: false,
    },
    HostPlan {
        phase: Phase::HostsTrustNewCa,
        install: &[(HostFile::CaKey, CaPart::NewKey)],
        reissue: None,
        bundle: Bundle::NewOnly,
        signing: Some(SigningFiles {
            cert: HostFile::CaCert,
            key: HostFile::CaKey,
        }),
        remove: &[HostFile::CaNewCert, HostFile::CaNewKey],
        restore_originals: false,
    },
];

/// The bundle a pods phase's new pods must mount: the one the host phase before it wrote, which the
/// controller-manager republishes once it leads again. `None` for the other phases.
pub fn pods_bundle(phase: Phase) -> Option<Bundle> {
    let host_phase = match phase {
        Phase::PodsTrustBothCas => Phase::HostsTrustBothCas,
        Phase::PodsTrustNewCa => Phase::HostsTrustNewCa,
        _ => return None,
    };
    HostPlan::of(host_phase).map(|plan| plan.bundle)
}

impl HostPlan {
    /// Whether the plan puts the old CA's key back.
    pub fn needs_old_key(&self) -> bool {
        self.install.iter().any(|&(_, part)| part == CaPart::OldKey)
    }

    /// The plan of a host phase; `None` for the other phases.
    pub fn of(phase: Phase) -> Option<&'static HostPlan> {
        HOST_PLANS.iter().find(|p| p.phase == phase)
    }

    /// What the phase does to a host of `role`, in order: the new CA's files, the re-issued leaves,
    /// the bundle, the signing flags, the restarts (the control plane, then the kubelet, which must
    /// reach a restarted apiserver), and last the files no longer needed.
    pub fn actions(&self, role: HostRole) -> Vec<HostAction> {
        let controller = role == HostRole::Controller;
        let mut actions: Vec<HostAction> = self
            .install
            .iter()
            .filter(|(_, part)| controller || !part.is_key())
            .map(|&(file, part)| HostAction::Install(file, part))
            .collect();
        if let Some(issuer) = self.reissue {
            if controller {
                actions.push(HostAction::ReissueApiserverCerts(issuer));
            }
            actions.push(HostAction::ReissueKubeconfigClients(issuer));
        }
        actions.push(HostAction::WriteBundle(self.bundle));
        if controller {
            actions.extend(self.signing.map(HostAction::PointSigningAt));
        }
        if self.restore_originals {
            actions.push(HostAction::RestoreOriginals);
        }
        if controller {
            actions.extend(CONTROL_PLANE_RESTART_ORDER.map(HostAction::Restart));
        }
        actions.push(HostAction::Restart(Component::Kubelet));
        actions.extend(self.remove.iter().map(|&file| HostAction::Remove(file)));
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use HostAction::*;

    fn plan(phase: Phase) -> &'static HostPlan {
        HostPlan::of(phase).unwrap()
    }

    #[test]
    fn pods_mount_both_cas_then_the_new_one_alone() {
        assert_eq!(
            pods_bundle(Phase::PodsTrustBothCas),
            Some(Bundle::OldThenNew)
        );
        assert_eq!(pods_bundle(Phase::PodsTrustNewCa), Some(Bundle::NewOnly));
        assert_eq!(pods_bundle(Phase::HostsUpdateCerts), None);
    }

    #[test]
    fn only_the_three_host_phases_have_a_plan_in_the_order_they_run() {
        let phases: Vec<Phase> = HOST_PLANS.iter().map(|p| p.phase).collect();
        assert_eq!(
            phases,
            [
                Phase::HostsTrustBothCas,
                Phase::HostsUpdateCerts,
                Phase::HostsTrustNewCa
            ]
        );
        assert!(phases.windows(2).all(|w| w[0] < w[1]));
        for phase in [
            Phase::Start,
            Phase::NewRootCa,
            Phase::PodsTrustBothCas,
            Phase::PodsTrustNewCa,
            Phase::Complete,
        ] {
            assert!(HostPlan::of(phase).is_none(), "{phase}");
        }
    }

    #[test]
    fn trust_both_cas_on_a_controller() {
        let signing = SigningFiles {
            cert: HostFile::CaNewCert,
            key: HostFile::CaNewKey,
        };
        assert_eq!(
            plan(Phase::HostsTrustBothCas).actions(HostRole::Controller),
            [
                Install(HostFile::CaNewCert, CaPart::NewCert),
                Install(HostFile::CaNewKey, CaPart::NewKey),
                WriteBundle(Bundle::OldThenNew),
                PointSigningAt(signing),
                Restart(Component::Apiserver),
                Restart(Component::ControllerManager),
                Restart(Component::Scheduler),
                Restart(Component::Kubelet),
            ]
        );
        assert_eq!(
            signing.paths(KUBEADM_PKI_DIR),
            (
                "/etc/kubernetes/pki/ca_new.crt".to_owned(),
                "/etc/kubernetes/pki/ca_new.key".to_owned()
            )
        );
    }

    #[test]
    fn update_certs_on_a_controller_and_on_a_worker() {
        let update_certs = plan(Phase::HostsUpdateCerts);
        assert_eq!(
            update_certs.actions(HostRole::Controller),
            [
                ReissueApiserverCerts(Issuer::New),
                ReissueKubeconfigClients(Issuer::New),
                WriteBundle(Bundle::NewThenOld),
                Restart(Component::Apiserver),
                Restart(Component::ControllerManager),
                Restart(Component::Scheduler),
                Restart(Component::Kubelet),
            ]
        );
        assert_eq!(
            update_certs.actions(HostRole::Worker),
            [
                ReissueKubeconfigClients(Issuer::New),
                WriteBundle(Bundle::NewThenOld),
                Restart(Component::Kubelet),
            ]
        );
    }

    #[test]
    fn trust_new_ca_on_a_worker_and_on_a_controller() {
        let trust_new_ca = plan(Phase::HostsTrustNewCa);
        assert_eq!(
            trust_new_ca.actions(HostRole::Worker),
            [
                WriteBundle(Bundle::NewOnly),
                Restart(Component::Kubelet),
                Remove(HostFile::CaNewCert),
                Remove(HostFile::CaNewKey),
            ]
        );
        let controller = trust_new_ca.actions(HostRole::Controller);
        assert_eq!(controller[0], Install(HostFile::CaKey, CaPart::NewKey));
        assert!(controller.contains(&PointSigningAt(SigningFiles {
            cert: HostFile::CaCert,
            key: HostFile::CaKey,
        })));
        assert_eq!(
            SigningFiles {
                cert: HostFile::CaCert,
                key: HostFile::CaKey
            }
            .paths("/srv/k8s/pki/")
            .0,
            "/srv/k8s/pki/ca.crt"
        );
    }

    #[test]
    fn no_worker_ever_receives_a_ca_key_or_restarts_the_control_plane() {
        for plan in &HOST_PLANS {
            for action in plan.actions(HostRole::Worker) {
                assert!(
                    !matches!(
                        action,
                        Install(_, CaPart::NewKey | CaPart::OldKey)
                            | PointSigningAt(_)
                            | ReissueApiserverCerts(_)
                            | Restart(
                                Component::Apiserver
                                    | Component::ControllerManager
                                    | Component::Scheduler
                            )
                    ),
                    "{}: {action:?}",
                    plan.phase
                );
            }
        }
    }

    #[test]
    fn every_phase_restarts_after_its_files_in_one_order_and_removes_last() {
        for plan in &HOST_PLANS {
            for role in [HostRole::Controller, HostRole::Worker] {
                let actions = plan.actions(role);
                let restarts: Vec<Component> = actions
                    .iter()
                    .filter_map(|a| match a {
                        Restart(c) => Some(*c),
                        _ => None,
                    })
                    .collect();
                let expected: &[Component] = match role {
                    HostRole::Controller => &[
                        Component::Apiserver,
                        Component::ControllerManager,
                        Component::Scheduler,
                        Component::Kubelet,
                    ],
                    HostRole::Worker => &[Component::Kubelet],
                };
                assert_eq!(restarts, expected, "{} on a {role:?}", plan.phase);
                let first_restart = actions.iter().position(|a| matches!(a, Restart(_)));
                let last_write = actions
                    .iter()
                    .rposition(|a| !matches!(a, Restart(_) | Remove(_)));
                assert!(last_write < first_restart, "{}: {actions:?}", plan.phase);
                let last_restart = actions.iter().rposition(|a| matches!(a, Restart(_)));
                let first_remove = actions.iter().position(|a| matches!(a, Remove(_)));
                assert!(
                    first_remove.is_none_or(|r| Some(r) > last_restart),
                    "{}: {actions:?}",
                    plan.phase
                );
            }
        }
    }

    #[test]
    fn the_bundle_moves_from_old_first_to_new_first_to_new_alone() {
        let bundles: Vec<String> = HOST_PLANS.iter().map(|p| p.bundle.pem("O", "N")).collect();
        assert_eq!(bundles, ["ON", "NO", "N"]);
    }
}
