//! The phases of a root CA update on one subcloud, in order, with sysinv's state names.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One phase of the update. The order is the safety argument: every pod and component must trust the new
/// CA (trust-both-cas) before anything is signed by it (update-certs), and nothing may stop trusting the
/// old CA (trust-new-ca) before everything has been re-issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Precheck and record the update (`update-started`).
    Start,
    /// Generate the new root CA on the subcloud, or take the uploaded one.
    NewRootCa,
    /// Hosts, one at a time, controllers first: trust bundle becomes old + new CA.
    HostsTrustBothCas,
    /// Rolling restart of every workload so pods mount the old + new bundle.
    PodsTrustBothCas,
    /// Hosts: re-issue every leaf certificate from the new CA.
    HostsUpdateCerts,
    /// Hosts: trust bundle becomes the new CA alone; ca.key is the new key.
    HostsTrustNewCa,
    /// Rolling restart again so pods mount the new CA alone.
    PodsTrustNewCa,
    /// Clean up and record the update as completed (`update-completed`).
    Complete,
}

/// Where a phase stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PhaseState {
    InProgress,
    Done,
    Failed,
}

impl Phase {
    /// Every phase in order.
    pub const ALL: [Phase; 8] = [
        Phase::Start,
        Phase::NewRootCa,
        Phase::HostsTrustBothCas,
        Phase::PodsTrustBothCas,
        Phase::HostsUpdateCerts,
        Phase::HostsTrustNewCa,
        Phase::PodsTrustNewCa,
        Phase::Complete,
    ];

    /// Position in [`Phase::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The phase after this one.
    pub fn next(self) -> Option<Phase> {
        Self::ALL.get(self.index() + 1).copied()
    }

    /// Phases that act on each host in turn.
    pub fn is_host_phase(self) -> bool {
        matches!(
            self,
            Phase::HostsTrustBothCas | Phase::HostsUpdateCerts | Phase::HostsTrustNewCa
        )
    }

    /// Phases that restart workloads.
    pub fn is_pods_phase(self) -> bool {
        matches!(self, Phase::PodsTrustBothCas | Phase::PodsTrustNewCa)
    }

    /// The operator's name of the phase, as used in step details: `hosts trust-both-cas`.
    pub fn label(self) -> &'static str {
        match self {
            Phase::Start => "start",
            Phase::NewRootCa => "new root CA",
            Phase::HostsTrustBothCas => "hosts trust-both-cas",
            Phase::PodsTrustBothCas => "pods trust-both-cas",
            Phase::HostsUpdateCerts => "hosts update-certs",
            Phase::HostsTrustNewCa => "hosts trust-new-ca",
            Phase::PodsTrustNewCa => "pods trust-new-ca",
            Phase::Complete => "complete",
        }
    }

    /// The sysinv state name of this phase in the given state. `uploaded` picks the uploaded-cert
    /// variant of the new root CA phase. Where sysinv has no name (a failed start, say), one is made in
    /// the same pattern.
    pub fn state_name(self, state: PhaseState, uploaded: bool) -> &'static str {
        use PhaseState::*;
        match (self, state) {
            (Phase::Start, InProgress | Done) => "update-started",
            (Phase::Start, Failed) => "update-start-failed",
            (Phase::NewRootCa, InProgress) if uploaded => "uploading-new-rootca-cert",
            (Phase::NewRootCa, InProgress) => "generating-new-rootca-cert",
            (Phase::NewRootCa, Done) if uploaded => "update-new-rootca-cert-uploaded",
            (Phase::NewRootCa, Done) => "update-new-rootca-cert-generated",
            (Phase::NewRootCa, Failed) if uploaded => "update-new-rootca-cert-upload-failed",
            (Phase::NewRootCa, Failed) => "update-new-rootca-cert-generate-failed",
            (Phase::HostsTrustBothCas, InProgress) => "updating-host-trust-both-cas",
            (Phase::HostsTrustBothCas, Done) => "updated-host-trust-both-cas",
            (Phase::HostsTrustBothCas, Failed) => "updating-host-trust-both-cas-failed",
            (Phase::PodsTrustBothCas, InProgress) => "updating-pods-trust-both-cas",
            (Phase::PodsTrustBothCas, Done) => "updated-pods-trust-both-cas",
            (Phase::PodsTrustBothCas, Failed) => "updating-pods-trust-both-cas-failed",
            (Phase::HostsUpdateCerts, InProgress) => "updating-host-update-certs",
            (Phase::HostsUpdateCerts, Done) => "updated-host-update-certs",
            (Phase::HostsUpdateCerts, Failed) => "updating-host-update-certs-failed",
            (Phase::HostsTrustNewCa, InProgress) => "updating-host-trust-new-ca",
            (Phase::HostsTrustNewCa, Done) => "updated-host-trust-new-ca",
            (Phase::HostsTrustNewCa, Failed) => "updating-host-trust-new-ca-failed",
            (Phase::PodsTrustNewCa, InProgress) => "updating-pods-trust-new-ca",
            (Phase::PodsTrustNewCa, Done) => "updated-pods-trust-new-ca",
            (Phase::PodsTrustNewCa, Failed) => "updating-pods-trust-new-ca-failed",
            (Phase::Complete, InProgress) => "updated-pods-trust-new-ca",
            (Phase::Complete, Done) => "update-completed",
            (Phase::Complete, Failed) => "update-complete-failed",
        }
    }
}

impl Phase {
    /// `name` if it is a state sysinv knows for this phase, else `None`: a state an agent reports is
    /// checked against this before it is stored, shown or used as a metrics label.
    pub fn known_state(self, name: &str) -> Option<&'static str> {
        [PhaseState::InProgress, PhaseState::Done, PhaseState::Failed]
            .into_iter()
            .flat_map(|s| [self.state_name(s, false), self.state_name(s, true)])
            .chain(ROLLBACK_STATES)
            .find(|known| *known == name)
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The state name of an update stopped by an abort, as in sysinv.
pub const STATE_ABORTED: &str = "update-aborted";

/// How every progress detail of a rollback begins, so a step's details, the CLI and the dashboard tell
/// a rollback from an update.
pub const ROLLING_BACK: &str = "rolling back: ";

/// The state of a rollback while it runs, whichever phase it undoes (sysinv has no rollback, so no
/// name of its own for one).
pub const STATE_ROLLING_BACK: &str = "rolling-back";
/// The state of a rollback one of whose steps failed; a later rollback resumes it.
pub const STATE_ROLLBACK_FAILED: &str = "rollback-failed";
/// The state of a subcloud taken back to its old root CA alone.
pub const STATE_ROLLED_BACK: &str = "rolled-back";
/// The rollback's states, known for every phase (a rollback step reports the phase it undoes).
pub const ROLLBACK_STATES: [&str; 3] =
    [STATE_ROLLING_BACK, STATE_ROLLBACK_FAILED, STATE_ROLLED_BACK];

/// What a rollback that targets a subcloud past the point of no return fails with, word for word: once
/// `hosts trust-new-ca` completed, no trust bundle holds the old root CA any more, and going back to it
/// is a trust change like any other.
pub const ROLLBACK_PAST_POINT_OF_NO_RETURN: &str = "cannot roll back: the subcloud completed hosts trust-new-ca, the point of no return (no trust bundle holds the old root CA any more); rolling back now is a new update to a new root CA";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_states_sysinv_knows_for_a_phase_are_known() {
        assert_eq!(
            Phase::PodsTrustBothCas.known_state("updating-pods-trust-both-cas"),
            Some("updating-pods-trust-both-cas")
        );
        assert_eq!(
            Phase::NewRootCa.known_state("update-new-rootca-cert-uploaded"),
            Some("update-new-rootca-cert-uploaded")
        );
        assert_eq!(
            Phase::Start.known_state("updating-pods-trust-both-cas"),
            None
        );
        assert_eq!(
            Phase::Start.known_state("x\"} 1\ninjected_metric 666"),
            None
        );
        assert_eq!(
            Phase::HostsUpdateCerts.known_state(STATE_ROLLING_BACK),
            Some("rolling-back")
        );
    }

    #[test]
    fn order_and_names() {
        assert_eq!(Phase::Start.next(), Some(Phase::NewRootCa));
        assert_eq!(Phase::Complete.next(), None);
        assert!(Phase::HostsUpdateCerts > Phase::PodsTrustBothCas);
        assert_eq!(
            Phase::PodsTrustBothCas.state_name(PhaseState::Failed, false),
            "updating-pods-trust-both-cas-failed"
        );
        assert_eq!(
            Phase::NewRootCa.state_name(PhaseState::Done, true),
            "update-new-rootca-cert-uploaded"
        );
        assert_eq!(
            Phase::Complete.state_name(PhaseState::Done, false),
            "update-completed"
        );
        for (i, p) in Phase::ALL.iter().enumerate() {
            assert_eq!(p.index(), i);
        }
    }
}
