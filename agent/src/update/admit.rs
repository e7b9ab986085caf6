//! What a start command does, decided from the recorded update alone: the rule that makes every
//! interrupted update finishable by a later strategy.
//!
//! An update that already touched a host cannot be dropped: that host trusts a CA whose key only this
//! update holds (it was generated here and never left the subcloud). So a start for another update id
//! takes the unfinished one over and finishes it with its own CA, as StarlingX's VIM resumes the update
//! in progress; the parameters of the new command do not apply to it (the step's details say so). An
//! update that touched no host yet is simply replaced, so a new subject or expiry takes effect.
//!
//! A rollback start ([`admit_rollback`]) takes the unfinished update back to the old CA instead, with
//! the steps [`super::rollback::plan`] chooses, unless it went past the point of no return. An
//! unfinished rollback is finished by a rollback only: an update over it would start from hosts whose
//! files are half-way back, so it is refused, with the way out in the reason.

use dc_protocol::RunState;

use crate::journal::{RollbackStep, UpdateRecord};

use super::rollback;

/// Why a rollback start finds nothing to do.
pub const NOTHING_TO_ROLL_BACK: &str =
    "cannot roll back: the subcloud has no unfinished update (nothing to roll back)";
/// Why a rollback start is refused while the update runs.
pub const UPDATE_STILL_RUNNING: &str =
    "cannot roll back: the update is still running on the subcloud; abort it first";
/// Why a rollback start is refused when the old root CA's key cannot be had (followed by the reason):
/// checked before anything changes, so the update stays finishable by a plain strategy.
pub const ROLLBACK_WITHOUT_OLD_KEY: &str = "cannot roll back: the rollback could not finish without the old root CA's key, which it re-issues certificates from; nothing was changed, and a plain strategy (kube-rootca-update-strategy create) finishes the update";
/// Why an update start is refused over an unfinished rollback.
pub const ROLLBACK_UNFINISHED: &str = "the subcloud's rollback to its old root CA is unfinished: finish it with a rollback strategy (kube-rootca-update-strategy create --rollback) before a new update";

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
    /// Roll the unfinished update back with these steps, under the command's id.
    BeginRollback {
        previous: String,
        steps: Vec<RollbackStep>,
    },
    /// Refused: the reason is the command's failure, and the recorded update stays as it is.
    Refuse(String),
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
    if r.run == RunState::Completed || !(running || r.hosts_touched() || r.rollback.is_some()) {
        return Admission::Begin;
    }
    if r.rollback.is_some() {
        return Admission::Refuse(ROLLBACK_UNFINISHED.to_owned());
    }
    Admission::TakeOver {
        previous: r.update_id.clone(),
    }
}

/// What a rollback start does with the recorded update.
pub fn admit_rollback(record: Option<&UpdateRecord>, update_id: &str, running: bool) -> Admission {
    let Some(r) = record else {
        return Admission::Refuse(NOTHING_TO_ROLL_BACK.to_owned());
    };
    if r.rollback.is_some() {
        return match (&r.run, running) {
            (RunState::Completed, _) if r.update_id == update_id => Admission::AlreadyCompleted,
            (RunState::Completed, _) => Admission::Refuse(NOTHING_TO_ROLL_BACK.to_owned()),
            (_, true) if r.update_id == update_id => Admission::AlreadyRunning,
            _ if r.update_id == update_id => Admission::Resume,
            _ => Admission::TakeOver {
                previous: r.update_id.clone(),
            },
        };
    }
    match rollback::plan(r) {
        Err(why) => Admission::Refuse(why),
        Ok(_) if running => Admission::Refuse(UPDATE_STILL_RUNNING.to_owned()),
        Ok(steps) => Admission::BeginRollback {
            previous: r.update_id.clone(),
            steps,
        },
    }
}

#[cfg(test)]
mod tests {
    use dc_protocol::{Phase, PhaseState, UpdateParams};

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
            rollback: None,
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

    fn rolling_back(run: RunState) -> UpdateRecord {
        let mut r = record(Phase::HostsUpdateCerts, run, &[]);
        r.rollback = Some(crate::journal::RollbackRecord {
            from: Phase::HostsTrustNewCa,
            steps: vec![
                RollbackStep::HostsReissueFromOldCa,
                RollbackStep::RemoveNewCa,
            ],
            step: 0,
        });
        r
    }

    #[test]
    fn a_rollback_begins_over_an_unfinished_update_and_continues_itself() {
        let stopped = record(
            Phase::PodsTrustBothCas,
            aborted(Phase::PodsTrustBothCas),
            &[],
        );
        assert!(matches!(
            admit_rollback(Some(&stopped), "r1", false),
            Admission::BeginRollback { previous, steps } if previous == "old" && steps.len() == 4
        ));
        let failed = rolling_back(RunState::Failed {
            phase: Phase::HostsUpdateCerts,
            reason: "x".into(),
        });
        assert_eq!(
            admit_rollback(Some(&failed), "old", false),
            Admission::Resume
        );
        assert_eq!(
            admit_rollback(Some(&failed), "r2", false),
            Admission::TakeOver {
                previous: "old".into()
            }
        );
        let running = rolling_back(RunState::Running);
        assert_eq!(
            admit_rollback(Some(&running), "old", true),
            Admission::AlreadyRunning
        );
        let done = rolling_back(RunState::Completed);
        assert_eq!(
            admit_rollback(Some(&done), "old", false),
            Admission::AlreadyCompleted
        );
    }

    #[test]
    fn a_rollback_is_refused_past_the_point_of_no_return_with_nothing_recorded_or_while_running() {
        let refuse = |s: &str| Admission::Refuse(s.to_owned());
        let done = record(Phase::Complete, RunState::Completed, &[]);
        assert_eq!(
            admit_rollback(Some(&done), "r1", false),
            refuse(rollback::ROLLBACK_OF_COMPLETED_UPDATE)
        );
        let pods_new = record(Phase::PodsTrustNewCa, aborted(Phase::PodsTrustNewCa), &[]);
        assert_eq!(
            admit_rollback(Some(&pods_new), "r1", false),
            refuse(dc_protocol::ROLLBACK_PAST_POINT_OF_NO_RETURN)
        );
        assert_eq!(
            admit_rollback(None, "r1", false),
            refuse(NOTHING_TO_ROLL_BACK)
        );
        let running = record(Phase::HostsUpdateCerts, RunState::Running, &[]);
        assert_eq!(
            admit_rollback(Some(&running), "r1", true),
            refuse(UPDATE_STILL_RUNNING)
        );
        let rolled_back = rolling_back(RunState::Completed);
        assert_eq!(
            admit_rollback(Some(&rolled_back), "r2", false),
            refuse(NOTHING_TO_ROLL_BACK)
        );
    }

    #[test]
    fn an_update_waits_for_an_unfinished_rollback_and_follows_a_finished_one() {
        let stopped = rolling_back(aborted(Phase::HostsUpdateCerts));
        assert_eq!(
            admit(Some(&stopped), "new", false),
            Admission::Refuse(ROLLBACK_UNFINISHED.to_owned())
        );
        let done = rolling_back(RunState::Completed);
        assert_eq!(admit(Some(&done), "new", false), Admission::Begin);
    }
}
