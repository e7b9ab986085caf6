//! What a start command does, decided from the recorded update alone: the rule that makes every
//! interrupted update finishable by a later strategy.
//!
//! An update that already touched a host cannot be dropped: that host trusts a CA whose key only this
//! update holds (it was generated here and never left the subcloud). So a start for another update id
//! takes the unfinished one over and finishes it with its own CA, as StarlingX's VIM resumes the update
//! in progress; the parameters of the new command do not apply to it (the step's details say so). An
//! update that touched no host yet is simply replaced, so a new subject or expiry takes effect.

use dc_protocol::{Phase, RunState};

use crate::journal::UpdateRecord;

/// The decision for a start command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// No update, one that completed, or one that touched no host: record a new update with the
    /// command's parameters.
    Begin,
    /// The same update, stopped or failed: resume at its first unfinished phase (and host).
    Resume,
    /// The same update, still running: acknowledge.
    AlreadyRunning,
    /// The same update, completed: report its end again.
    AlreadyCompleted,
    /// Another update that is running or already touched a host: continue it under the new id.
    TakeOver {
        /// The unfinished update's id.
        previous: String,
    },
}

/// Decides a start command for `update_id`, `running` telling whether the recorded update runs now.
pub fn admit(record: Option<&UpdateRecord>, update_id: &str, running: bool) -> Admission {
    let Some(r) = record else {
        return Admission::Begin;
    };
    if r.update_id == update_id {
        return match (&r.run, running) {
            (RunState::Completed, _) => Admission::AlreadyCompleted,
            (_, true) => Admission::AlreadyRunning,
            _ => Admission::Resume,
        };
    }
    if r.run == RunState::Completed || !(running || hosts_touched(r)) {
        return Admission::Begin;
    }
    Admission::TakeOver {
        previous: r.update_id.clone(),
    }
}

/// Whether a host may already trust the update's new CA: a host phase after the first began, or the
/// first one recorded a host (hosts are recorded before they are changed).
pub fn hosts_touched(r: &UpdateRecord) -> bool {
    r.phase > Phase::HostsTrustBothCas
        || (r.phase == Phase::HostsTrustBothCas && !r.hosts.is_empty())
}

#[cfg(test)]
mod tests {
    use dc_protocol::{PhaseState, UpdateParams};

    use super::*;

    fn record(phase: Phase, run: RunState, hosts: &[&str]) -> UpdateRecord {
        UpdateRecord {
            update_id: "old".into(),
            params: UpdateParams::default(),
            uploaded: false,
            phase,
            phase_state: PhaseState::InProgress,
            run,
            last_seq: 9,
            hosts: hosts
                .iter()
                .map(|h| ((*h).to_owned(), PhaseState::InProgress))
                .collect(),
            restarted_at: None,
            old_ca_pem: None,
            since: None,
            new_ca: None,
            warnings: Vec::new(),
            health: Vec::new(),
        }
    }

    fn aborted(next: Phase) -> RunState {
        RunState::Aborted { next }
    }

    #[test]
    fn nothing_recorded_begins() {
        assert_eq!(admit(None, "new", false), Admission::Begin);
    }

    #[test]
    fn the_same_update_resumes_acknowledges_or_reports_its_end() {
        let stopped = record(
            Phase::PodsTrustBothCas,
            aborted(Phase::PodsTrustBothCas),
            &[],
        );
        assert_eq!(admit(Some(&stopped), "old", false), Admission::Resume);
        let running = record(Phase::HostsUpdateCerts, RunState::Running, &[]);
        assert_eq!(
            admit(Some(&running), "old", true),
            Admission::AlreadyRunning
        );
        // Recorded as running but not running (the agent just restarted): resume.
        assert_eq!(admit(Some(&running), "old", false), Admission::Resume);
        let done = record(Phase::Complete, RunState::Completed, &[]);
        assert_eq!(
            admit(Some(&done), "old", false),
            Admission::AlreadyCompleted
        );
    }

    #[test]
    fn another_update_that_touched_a_host_is_taken_over_whatever_stopped_it() {
        let take_over = Admission::TakeOver {
            previous: "old".into(),
        };
        let failed = RunState::Failed {
            phase: Phase::HostsUpdateCerts,
            reason: "x".into(),
        };
        for r in [
            record(
                Phase::PodsTrustBothCas,
                aborted(Phase::PodsTrustBothCas),
                &[],
            ),
            record(Phase::HostsUpdateCerts, failed, &[]),
            record(
                Phase::HostsTrustBothCas,
                aborted(Phase::HostsTrustBothCas),
                &["c0"],
            ),
            record(Phase::Complete, RunState::Running, &[]),
        ] {
            assert_eq!(admit(Some(&r), "new", false), take_over, "{r:?}");
        }
    }

    #[test]
    fn another_update_that_touched_no_host_is_replaced_unless_it_runs() {
        let before_hosts = record(
            Phase::HostsTrustBothCas,
            aborted(Phase::HostsTrustBothCas),
            &[],
        );
        assert_eq!(admit(Some(&before_hosts), "new", false), Admission::Begin);
        let failed_new_ca = RunState::Failed {
            phase: Phase::NewRootCa,
            reason: "x".into(),
        };
        let new_ca = record(Phase::NewRootCa, failed_new_ca, &[]);
        assert_eq!(admit(Some(&new_ca), "new", false), Admission::Begin);
        let running = record(Phase::NewRootCa, RunState::Running, &[]);
        assert_eq!(
            admit(Some(&running), "new", true),
            Admission::TakeOver {
                previous: "old".into()
            }
        );
    }

    #[test]
    fn a_completed_update_gives_way_to_a_new_one() {
        let done = record(Phase::Complete, RunState::Completed, &[]);
        assert_eq!(admit(Some(&done), "new", false), Admission::Begin);
    }
}
