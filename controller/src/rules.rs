//! The strategy's rules as pure functions: the window a create request resolves to, target selection,
//! the sliding window, the final state, the kube-rootca sync audit and the step details. No actors, no I/O, so each rule is tested
//! on its own.

use crate::model::{
    ApplyType, DEFAULT_MAX_PARALLEL, Group, STRATEGY_TYPE, Step, StrategyState, SyncStatus,
    step_state,
};
use crate::requests::CreateStrategy;
use dc_protocol::{ALARM_ROOT_CA_EXPIRED, ALARM_ROOT_CA_EXPIRING_SOON, ROOT_CA_ALARM_ENTITY};

/// The effective apply type and window: the group's when a group is named; serial means one.
pub fn resolve_window(req: &CreateStrategy, group: Option<&Group>) -> (ApplyType, u32) {
    let (apply_type, max) = match group {
        Some(g) => (g.update_apply_type, g.max_parallel),
        None => (
            req.apply_type.unwrap_or(ApplyType::Parallel),
            req.max_parallel().unwrap_or(DEFAULT_MAX_PARALLEL),
        ),
    };
    match apply_type {
        ApplyType::Serial => (ApplyType::Serial, 1),
        ApplyType::Parallel => (ApplyType::Parallel, max),
    }
}

/// A subcloud as target selection sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub name: String,
    pub group_id: i64,
    pub managed: bool,
    pub online: bool,
    pub sync: SyncStatus,
    /// Its agent reports an unfinished update (or rollback): what a rollback strategy targets.
    pub unfinished: bool,
}

/// Which subclouds the strategy may touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Group(i64),
    Cloud(String),
}

/// Why target selection refuses (each becomes a 422 "Bad strategy request").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    #[error("Subcloud {0} does not exist")]
    NoSuchSubcloud(String),
    #[error("Subcloud {0} does not require {STRATEGY_TYPE}")]
    NotRequired(String),
    #[error("kube-rootca sync status is unknown for one or more subclouds")]
    UnknownSync,
    #[error("Strategy has no steps to apply")]
    NoSteps,
    #[error("Subcloud {0} has no unfinished {STRATEGY_TYPE} to roll back")]
    NothingToRollBack(String),
}

/// The candidates a strategy's scope names: all, a group's, or one subcloud by name.
fn in_scope<'a>(candidates: &'a [Candidate], scope: &Scope) -> Vec<&'a Candidate> {
    candidates
        .iter()
        .filter(|c| match scope {
            Scope::All => true,
            Scope::Group(g) => c.group_id == *g,
            Scope::Cloud(name) => &c.name == name,
        })
        .collect()
}

/// A strategy with no subcloud to work on is refused, whatever kind it is.
fn steps_for(targets: Vec<String>) -> Result<Vec<String>, SelectError> {
    if targets.is_empty() {
        Err(SelectError::NoSteps)
    } else {
        Ok(targets)
    }
}

/// dcmanager's selection: managed, online subclouds in scope that are out-of-sync (or in-sync too with
/// force), in the given order; offline ones are skipped silently.
pub fn select_targets(
    candidates: &[Candidate],
    scope: &Scope,
    force: bool,
) -> Result<Vec<String>, SelectError> {
    let in_scope = in_scope(candidates, scope);
    if let Scope::Cloud(name) = scope {
        let Some(c) = in_scope.first() else {
            return Err(SelectError::NoSuchSubcloud(name.clone()));
        };
        if c.online && c.sync == SyncStatus::InSync && !force {
            return Err(SelectError::NotRequired(name.clone()));
        }
    }
    let eligible: Vec<&&Candidate> = in_scope.iter().filter(|c| c.managed && c.online).collect();
    if eligible.iter().any(|c| c.sync == SyncStatus::Unknown) {
        return Err(SelectError::UnknownSync);
    }
    let targets: Vec<String> = eligible
        .into_iter()
        .filter(|c| c.sync == SyncStatus::OutOfSync || (force && c.sync == SyncStatus::InSync))
        .map(|c| c.name.clone())
        .collect();
    steps_for(targets)
}

/// A rollback strategy's selection: managed, online subclouds in scope whose agent reports an unfinished
/// update (or rollback), in the given order. One past the point of no return is selected too: its step
/// fails with the agent's exact reason, which is what the operator must read.
pub fn select_rollback_targets(
    candidates: &[Candidate],
    scope: &Scope,
) -> Result<Vec<String>, SelectError> {
    let in_scope = in_scope(candidates, scope);
    if let Scope::Cloud(name) = scope {
        let Some(c) = in_scope.first() else {
            return Err(SelectError::NoSuchSubcloud(name.clone()));
        };
        if c.online && !c.unfinished {
            return Err(SelectError::NothingToRollBack(name.clone()));
        }
    }
    let targets: Vec<String> = in_scope
        .into_iter()
        .filter(|c| c.managed && c.online && c.unfinished)
        .map(|c| c.name.clone())
        .collect();
    steps_for(targets)
}

/// The sliding window: the ids of the waiting steps to start now, the lowest ids first, so that at most
/// `max_parallel` steps run. Called on every finish, so a freed place is refilled at once.
pub fn steps_to_start(steps: &[Step], max_parallel: u32) -> Vec<i64> {
    let running = steps.iter().filter(|s| s.is_running()).count();
    let free = (max_parallel as usize).saturating_sub(running);
    let mut waiting: Vec<i64> = steps
        .iter()
        .filter(|s| s.is_waiting())
        .map(|s| s.id)
        .collect();
    waiting.sort_unstable();
    waiting.truncate(free);
    waiting
}

/// The strategy's end state once no step runs or waits: failed if any failed, else aborted if any was
/// aborted, else complete. `None` while something is still to do.
pub fn final_state(steps: &[Step]) -> Option<StrategyState> {
    if steps.iter().any(|s| s.is_running() || s.is_waiting()) {
        return None;
    }
    if steps.iter().any(|s| s.state == step_state::FAILED) {
        Some(StrategyState::Failed)
    } else if steps.iter().any(|s| s.state == step_state::ABORTED) {
        Some(StrategyState::Aborted)
    } else {
        Some(StrategyState::Complete)
    }
}

/// Whether stop-on-failure has tripped: no new subcloud may start.
pub fn stopped_by_failure(stop_on_failure: bool, steps: &[Step]) -> bool {
    stop_on_failure && steps.iter().any(|s| s.state == step_state::FAILED)
}

/// The kube-rootca audit: out-of-sync when an update is unfinished in or past the host phases (its
/// hosts may trust two CAs: only a finished update brings them back to one), when the root CA alarms are raised or the root CA
/// expires within `expiring_days`; unknown while offline or when the agent cannot read its root CA.
pub fn kube_rootca_sync(
    online: bool,
    root_ca: Option<&dc_protocol::RootCaInfo>,
    alarms: &[dc_protocol::Alarm],
    update: Option<&dc_protocol::UpdateStatus>,
    now: i64,
    expiring_days: u32,
) -> SyncStatus {
    if !online {
        return SyncStatus::Unknown;
    }
    if update.is_some_and(dc_protocol::UpdateStatus::holds_hosts) {
        return SyncStatus::OutOfSync;
    }
    let alarmed = alarms.iter().any(|a| {
        (a.id == ALARM_ROOT_CA_EXPIRING_SOON || a.id == ALARM_ROOT_CA_EXPIRED)
            && a.entity == ROOT_CA_ALARM_ENTITY
    });
    if alarmed {
        return SyncStatus::OutOfSync;
    }
    match root_ca {
        None => SyncStatus::Unknown,
        Some(ca) if ca.not_after <= now + i64::from(expiring_days) * 86_400 => {
            SyncStatus::OutOfSync
        }
        Some(_) => SyncStatus::InSync,
    }
}

/// A running step's details: the phase, its host, the agent's words, and the update's percent, e.g.
/// "pods trust-both-cas: 12 of 40 workloads restarted; update 45% complete".
pub fn progress_details(p: &dc_protocol::Progress) -> String {
    if p.details.starts_with(dc_protocol::ROLLING_BACK) {
        // A rollback's details name its step and host already; the phase it undoes would mislead.
        return format!("{}; rollback {}% complete", p.details, p.percent);
    }
    let mut out = p.phase.label().to_owned();
    if let Some(host) = &p.host {
        out.push_str(" on ");
        out.push_str(host);
    }
    if p.details.is_empty() {
        out.push_str(&format!(": {}% of phase", p.phase_percent));
    } else {
        out.push_str(": ");
        out.push_str(&p.details);
    }
    out.push_str(&format!("; update {}% complete", p.percent));
    out
}

/// A running step's details once a phase (other than the last) succeeded.
pub fn phase_done_details(r: &dc_protocol::PhaseResult) -> String {
    format!("{} done; update {}% complete", r.phase.label(), r.percent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Stage;
    use crate::requests::GroupRef;
    use serde_json::json;

    fn create(body: serde_json::Value) -> CreateStrategy {
        crate::requests::parse(body.to_string().as_bytes()).expect("valid")
    }

    #[test]
    fn window_resolution_serial_parallel_groups() {
        let req = create(json!({"type": STRATEGY_TYPE}));
        assert_eq!(resolve_window(&req, None), (ApplyType::Parallel, 2));
        let req = create(
            json!({"type": STRATEGY_TYPE, "subcloud-apply-type": "serial", "max-parallel-subclouds": 9}),
        );
        assert_eq!(resolve_window(&req, None), (ApplyType::Serial, 1));
        let req = create(json!({"type": STRATEGY_TYPE, "max-parallel-subclouds": "7"}));
        assert_eq!(resolve_window(&req, None), (ApplyType::Parallel, 7));
        let mut g = Group::default_group();
        g.max_parallel = 40;
        let req = create(json!({"type": STRATEGY_TYPE, "subcloud_group": "Default"}));
        assert_eq!(req.subcloud_group, Some(GroupRef::Name("Default".into())));
        assert_eq!(resolve_window(&req, Some(&g)), (ApplyType::Parallel, 40));
        g.update_apply_type = ApplyType::Serial;
        assert_eq!(resolve_window(&req, Some(&g)), (ApplyType::Serial, 1));
    }

    fn cand(name: &str, group: i64, managed: bool, online: bool, sync: SyncStatus) -> Candidate {
        Candidate {
            name: name.into(),
            group_id: group,
            managed,
            online,
            sync,
            unfinished: false,
        }
    }

    #[test]
    fn rollback_target_selection_takes_the_unfinished_updates() {
        use SyncStatus::*;
        let unfinished = |name: &str, group: i64, managed: bool, online: bool| Candidate {
            unfinished: true,
            ..cand(name, group, managed, online, OutOfSync)
        };
        let all = vec![
            unfinished("a", 1, true, true),
            cand("b", 1, true, true, OutOfSync),
            unfinished("c", 2, true, true),
            unfinished("d", 1, false, true),
            unfinished("e", 1, true, false),
        ];
        assert_eq!(
            select_rollback_targets(&all, &Scope::All),
            Ok(vec!["a".into(), "c".into()])
        );
        assert_eq!(
            select_rollback_targets(&all, &Scope::Group(2)),
            Ok(vec!["c".into()])
        );
        assert_eq!(
            select_rollback_targets(&all, &Scope::Cloud("b".into())),
            Err(SelectError::NothingToRollBack("b".into()))
        );
        assert_eq!(
            select_rollback_targets(&all, &Scope::Cloud("e".into())),
            Err(SelectError::NoSteps)
        );
        assert_eq!(
            select_rollback_targets(&all, &Scope::Cloud("z".into())),
            Err(SelectError::NoSuchSubcloud("z".into()))
        );
        assert_eq!(
            SelectError::NothingToRollBack("b".into()).to_string(),
            "Subcloud b has no unfinished kube-rootca-update to roll back"
        );
    }

    #[test]
    fn a_rollback_s_progress_keeps_its_own_words() {
        let p = dc_protocol::Progress {
            update_id: "r1".into(),
            seq: 3,
            phase: dc_protocol::Phase::HostsUpdateCerts,
            host: Some("controller-0".into()),
            state: dc_protocol::STATE_ROLLING_BACK.into(),
            phase_percent: 25,
            percent: 10,
            details: "rolling back: hosts trust-old-ca: host 1 of 4: controller-0".into(),
        };
        assert_eq!(
            progress_details(&p),
            "rolling back: hosts trust-old-ca: host 1 of 4: controller-0; rollback 10% complete"
        );
    }

    #[test]
    fn target_selection() {
        use SyncStatus::*;
        let all = vec![
            cand("a", 1, true, true, OutOfSync),
            cand("b", 1, true, true, InSync),
            cand("c", 2, true, true, OutOfSync),
            cand("d", 1, false, true, OutOfSync),
            cand("e", 1, true, false, Unknown),
        ];
        assert_eq!(
            select_targets(&all, &Scope::All, false),
            Ok(vec!["a".into(), "c".into()])
        );
        assert_eq!(
            select_targets(&all, &Scope::All, true),
            Ok(vec!["a".into(), "b".into(), "c".into()])
        );
        assert_eq!(
            select_targets(&all, &Scope::Group(2), false),
            Ok(vec!["c".into()])
        );
        assert_eq!(
            select_targets(&all, &Scope::Cloud("b".into()), false),
            Err(SelectError::NotRequired("b".into()))
        );
        assert_eq!(
            select_targets(&all, &Scope::Cloud("b".into()), true),
            Ok(vec!["b".into()])
        );
        assert_eq!(
            select_targets(&all, &Scope::Cloud("e".into()), false),
            Err(SelectError::NoSteps)
        );
        assert_eq!(
            select_targets(&all, &Scope::Cloud("z".into()), false),
            Err(SelectError::NoSuchSubcloud("z".into()))
        );
        assert_eq!(
            select_targets(&all, &Scope::Group(3), false),
            Err(SelectError::NoSteps)
        );
        let unknown = vec![
            cand("a", 1, true, true, OutOfSync),
            cand("u", 1, true, true, Unknown),
        ];
        assert_eq!(
            select_targets(&unknown, &Scope::All, false),
            Err(SelectError::UnknownSync)
        );
        assert_eq!(
            SelectError::NotRequired("x".into()).to_string(),
            "Subcloud x does not require kube-rootca-update"
        );
    }

    fn step(id: i64, stage: Stage, state: &str) -> Step {
        Step {
            id,
            subcloud: format!("s{id}"),
            update_id: String::new(),
            stage,
            state: state.into(),
            details: String::new(),
            started_at: None,
            finished_at: None,
            created_at: String::new(),
            updated_at: None,
        }
    }

    #[test]
    fn sliding_window_serial_and_parallel() {
        let mut steps: Vec<Step> = (1..=5).map(|i| step(i, Stage::Create, "initial")).collect();
        assert_eq!(steps_to_start(&steps, 1), vec![1]);
        assert_eq!(steps_to_start(&steps, 2), vec![1, 2]);
        steps[0].stage = Stage::Apply;
        steps[1].stage = Stage::Apply;
        assert!(steps_to_start(&steps, 2).is_empty());
        // One finishes: its place is refilled at once with the next id.
        steps[0].stage = Stage::Complete;
        steps[0].state = "complete".into();
        assert_eq!(steps_to_start(&steps, 2), vec![3]);
        assert_eq!(steps_to_start(&steps, 10), vec![3, 4, 5]);
    }

    #[test]
    fn final_states_abort_and_stop_on_failure() {
        let mut steps = vec![
            step(1, Stage::Complete, "complete"),
            step(2, Stage::Apply, "updating-pods-trust-both-cas"),
            step(3, Stage::Create, "aborted"),
        ];
        assert_eq!(final_state(&steps), None);
        steps[1] = step(2, Stage::Complete, "aborted");
        assert_eq!(final_state(&steps), Some(StrategyState::Aborted));
        steps[2] = step(3, Stage::Complete, "failed");
        assert_eq!(final_state(&steps), Some(StrategyState::Failed));
        assert!(stopped_by_failure(true, &steps));
        assert!(!stopped_by_failure(false, &steps));
        let done = vec![step(1, Stage::Complete, "complete")];
        assert_eq!(final_state(&done), Some(StrategyState::Complete));
        // A stopped strategy starts nothing more: steps_to_start is not consulted, and the waiting steps are
        // aborted, which final_state then counts.
        let aborted_waiting = vec![
            step(1, Stage::Complete, "failed"),
            step(2, Stage::Create, "aborted"),
        ];
        assert_eq!(final_state(&aborted_waiting), Some(StrategyState::Failed));
    }

    #[test]
    fn sync_audit() {
        use dc_protocol::{Alarm, AlarmSeverity, RootCaInfo};
        let now = 1_000_000_000;
        let ca = |days: i64| RootCaInfo {
            subject: "CN=kubernetes".into(),
            serial: "01".into(),
            not_before: 0,
            not_after: now + days * 86_400,
        };
        assert_eq!(
            kube_rootca_sync(false, Some(&ca(400)), &[], None, now, 30),
            SyncStatus::Unknown
        );
        assert_eq!(
            kube_rootca_sync(true, None, &[], None, now, 30),
            SyncStatus::Unknown
        );
        assert_eq!(
            kube_rootca_sync(true, Some(&ca(400)), &[], None, now, 30),
            SyncStatus::InSync
        );
        assert_eq!(
            kube_rootca_sync(true, Some(&ca(10)), &[], None, now, 30),
            SyncStatus::OutOfSync
        );
        assert_eq!(
            kube_rootca_sync(true, Some(&ca(-1)), &[], None, now, 30),
            SyncStatus::OutOfSync
        );
        let alarm = |entity: &str| Alarm {
            id: ALARM_ROOT_CA_EXPIRING_SOON.into(),
            entity: entity.into(),
            severity: AlarmSeverity::Major,
            reason: String::new(),
        };
        assert_eq!(
            kube_rootca_sync(
                true,
                Some(&ca(400)),
                &[alarm(ROOT_CA_ALARM_ENTITY)],
                None,
                now,
                30
            ),
            SyncStatus::OutOfSync
        );
        // An unfinished update is out-of-sync however fresh the CA it reports; a completed one is not.
        let update = |run| dc_protocol::UpdateStatus {
            update_id: "u1".into(),
            phase: dc_protocol::Phase::PodsTrustBothCas,
            state: String::new(),
            percent: 60,
            run,
            last_seq: 1,
            since: None,
            new_ca: None,
            warnings: Vec::new(),
            rollback: false,
        };
        let stopped = update(dc_protocol::RunState::Aborted {
            next: dc_protocol::Phase::PodsTrustBothCas,
        });
        assert_eq!(
            kube_rootca_sync(true, Some(&ca(400)), &[], Some(&stopped), now, 30),
            SyncStatus::OutOfSync
        );
        // One that failed before the host phases changed nothing: the CA decides.
        let refused = dc_protocol::UpdateStatus {
            phase: dc_protocol::Phase::Start,
            ..update(dc_protocol::RunState::Failed {
                phase: dc_protocol::Phase::Start,
                reason: "workload not healthy".into(),
            })
        };
        assert_eq!(
            kube_rootca_sync(true, Some(&ca(400)), &[], Some(&refused), now, 30),
            SyncStatus::InSync
        );
        let done = update(dc_protocol::RunState::Completed);
        assert_eq!(
            kube_rootca_sync(true, Some(&ca(400)), &[], Some(&done), now, 30),
            SyncStatus::InSync
        );
        assert_eq!(
            kube_rootca_sync(false, Some(&ca(400)), &[], Some(&stopped), now, 30),
            SyncStatus::Unknown
        );
        // Another certificate's alarm does not count (dcmanager's LP#1949085).
        assert_eq!(
            kube_rootca_sync(
                true,
                Some(&ca(400)),
                &[alarm("system.certificate.ssl")],
                None,
                now,
                30
            ),
            SyncStatus::InSync
        );
    }

    #[test]
    fn details_name_phase_host_and_percent() {
        let p = dc_protocol::Progress {
            update_id: "u".into(),
            seq: 1,
            phase: dc_protocol::Phase::PodsTrustBothCas,
            host: None,
            state: "updating-pods-trust-both-cas".into(),
            phase_percent: 30,
            percent: 45,
            details: "12 of 40 workloads restarted".into(),
        };
        assert_eq!(
            progress_details(&p),
            "pods trust-both-cas: 12 of 40 workloads restarted; update 45% complete"
        );
    }
}
