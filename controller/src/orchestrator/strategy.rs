//! The strategy's decisions: create, apply, abort and delete, the sliding window that starts steps,
//! a step's end, and the strategy's end state. Each reads the [`State`] and answers a [`Change`].

use dc_protocol::UpdateParams;
use serde_json::Value;

use crate::error::ApiError;
use crate::model::{
    STRATEGY_TYPE, Stage, Step, Strategy, StrategyState, Subcloud, clip_details, now_string,
    step_state,
};
use crate::requests::{Action, CreateStrategy};
use crate::rules::{self, Candidate, Scope};
use crate::store::Op;

use super::options;
use super::state::{Change, FollowUp, State};

fn not_found() -> ApiError {
    ApiError::not_found(format!("Strategy of type '{STRATEGY_TYPE}' not found"))
}

/// Digits of a datetime, for update ids.
fn datetime_digits(datetime: &str) -> String {
    datetime.chars().filter(char::is_ascii_digit).collect()
}

pub fn show(st: &State) -> Result<Value, ApiError> {
    st.strategy
        .as_ref()
        .map(Strategy::to_json)
        .ok_or_else(not_found)
}

pub fn create(st: &State, req: CreateStrategy) -> Result<Change, ApiError> {
    let group = match &req.subcloud_group {
        None => None,
        Some(r) => Some(
            st.group(r)
                .ok_or_else(|| ApiError::bad_request("Invalid group_id"))?,
        ),
    };
    let refuse = |why: &dyn std::fmt::Display| ApiError::strategy("create", why);
    if st.strategy.is_some() {
        return Err(refuse(&format!(
            "Strategy of type: '{STRATEGY_TYPE}' already exists"
        )));
    }
    let now = dc_certs::now();
    if req.rollback
        && (req.subject.is_some()
            || req.expiry_date.is_some()
            || req.cert_file.is_some()
            || req.force)
    {
        return Err(refuse(
            &"Invalid extra args. <rollback> cannot be specified along with <subject>, <expiry-date>, <cert-file> or <force>: a rollback goes back to each subcloud's old root CA.",
        ));
    }
    if req.cert_file.is_some() && (req.subject.is_some() || req.expiry_date.is_some()) {
        return Err(refuse(
            &"Invalid extra args. <cert-file> cannot be specified along with <subject> or <expiry-date>.",
        ));
    }
    if let Some(s) = &req.subject {
        dc_certs::Subject::parse(s).map_err(|e| refuse(&e))?;
    }
    if let Some(d) = &req.expiry_date {
        dc_certs::ExpiryDate::parse_valid_at(d, now).map_err(|e| refuse(&e))?;
    }
    if let Some(pem) = &req.cert_file {
        dc_certs::upload::validate(pem, now).map_err(|e| refuse(&e))?;
    }
    let scope = match (&req.cloud_name, group) {
        (Some(name), _) => Scope::Cloud(name.clone()),
        (None, Some(g)) => Scope::Group(g.id),
        (None, None) => Scope::All,
    };
    let candidates: Vec<Candidate> = st
        .subclouds
        .values()
        .map(|s| Candidate {
            name: s.name.clone(),
            group_id: s.group_id,
            managed: s.managed,
            online: st.online(&s.name),
            sync: st.sync_of(&s.name),
            unfinished: st.live_view(&s.name).unfinished.is_some(),
        })
        .collect();
    let mut targets = if req.rollback {
        rules::select_rollback_targets(&candidates, &scope)
    } else {
        rules::select_targets(&candidates, &scope, req.force)
    }
    .map_err(|e| refuse(&e))?;
    // Steps in registration order, as dcmanager orders them by subcloud id.
    targets.sort_by_key(|n| st.subclouds.get(n).map_or(i64::MAX, |s| s.id));
    let (apply_type, max_parallel) = rules::resolve_window(&req, group);
    let created_at = now_string();
    let strategy = Strategy {
        id: st.last_ids.strategy + 1,
        apply_type,
        max_parallel,
        stop_on_failure: req.stop_on_failure,
        state: StrategyState::Initial,
        subject: req.subject,
        expiry_date: req.expiry_date,
        cert_file: req.cert_file,
        proceed_with_stranded_pods: req.proceed_with_stranded_pods,
        rollback: req.rollback,
        created_at: created_at.clone(),
        updated_at: None,
    };
    let stamp = datetime_digits(&created_at);
    let answer = strategy.to_json();
    let mut ops = vec![Op::PutStrategy(strategy)];
    ops.extend(targets.into_iter().zip(1..).map(|(name, id)| {
        Op::PutStep(Step {
            id,
            update_id: format!("{stamp}-{name}"),
            subcloud: name,
            stage: Stage::Create,
            state: step_state::INITIAL.to_owned(),
            details: String::new(),
            started_at: None,
            finished_at: None,
            created_at: created_at.clone(),
            updated_at: None,
        })
    }));
    tracing::info!(steps = ops.len() - 1, "strategy created");
    Ok(Change::write(ops, answer))
}

pub fn delete(st: &State) -> Result<Change, ApiError> {
    let strategy = st.strategy.as_ref().ok_or_else(not_found)?;
    if !strategy.state.can_delete() {
        return Err(ApiError::strategy(
            "delete",
            format!(
                "Strategy in state {} cannot be deleted",
                strategy.state.as_str()
            ),
        ));
    }
    // Nothing runs in a deletable state, so the strategy goes at once; the answer says `deleting` as
    // dcmanager's did.
    let mut shown = strategy.clone();
    shown.state = StrategyState::Deleting;
    shown.updated_at = Some(now_string());
    Ok(Change::write(vec![Op::DeleteStrategy], shown.to_json()))
}

/// Apply from `initial`; abort while applying: every waiting step is aborted at once, running ones are
/// told to finish their phase, and [`drive`] moves the strategy on to `aborting`.
pub fn action(st: &State, action: Action) -> Result<Change, ApiError> {
    let verb = action.as_str();
    let strategy = st.strategy.as_ref().ok_or_else(|| {
        ApiError::refused(format!(
            "Unable to {verb} strategy of type '{STRATEGY_TYPE}': Strategy with type {STRATEGY_TYPE} doesn't exist."
        ))
    })?;
    let (allowed, next_state, past) = match action {
        Action::Apply => (
            strategy.state.can_apply(),
            StrategyState::Applying,
            "applied",
        ),
        Action::Abort => (
            strategy.state.can_abort(),
            StrategyState::AbortRequested,
            "aborted",
        ),
    };
    if !allowed {
        return Err(ApiError::strategy(
            verb,
            format!(
                "Strategy in state {} cannot be {past}",
                strategy.state.as_str()
            ),
        ));
    }
    let mut next = strategy.clone();
    next.state = next_state;
    next.updated_at = Some(now_string());
    let answer = next.to_json();
    let mut ops = vec![Op::PutStrategy(next)];
    if action == Action::Abort {
        ops.extend(abort_waiting(st, "aborted before it started"));
        tracing::info!(aborted = ops.len() - 1, "strategy abort requested");
        return Ok(Change::write(ops, answer)
            .then(FollowUp::AbortRunning("aborted".to_owned()))
            .then(FollowUp::Drive));
    }
    tracing::info!("strategy applying");
    Ok(Change::write(ops, answer).then(FollowUp::Drive))
}

/// The waiting steps as aborted rows, with `why` in their details.
fn abort_waiting(st: &State, why: &str) -> Vec<Op> {
    let now = now_string();
    st.steps
        .iter()
        .filter(|s| s.is_waiting())
        .map(|s| {
            Op::PutStep(Step {
                stage: Stage::Complete,
                state: step_state::ABORTED.to_owned(),
                details: why.to_owned(),
                finished_at: Some(now.clone()),
                updated_at: Some(now.clone()),
                ..s.clone()
            })
        })
        .collect()
}

/// Why running steps must stop and waiting ones must not start, if they must.
pub fn stop_reason(st: &State) -> Option<String> {
    let strategy = st.strategy.as_ref()?;
    match strategy.state {
        StrategyState::AbortRequested | StrategyState::Aborting => Some("aborted".to_owned()),
        _ if rules::stopped_by_failure(strategy.stop_on_failure, &st.steps) => {
            let failed = st
                .steps
                .iter()
                .find(|s| s.state == step_state::FAILED)
                .map_or("", |s| s.subcloud.as_str());
            Some(format!("stop-on-failure: subcloud {failed} failed"))
        }
        _ => None,
    }
}

/// What the subcloud's agent is told to do: the strategy's CA, and the subcloud's effective
/// sw-update-options read now, when its step starts (as dcmanager reads them when it creates the
/// subcloud's VIM strategy).
pub fn update_params(st: &State, subcloud: &str) -> UpdateParams {
    st.strategy
        .as_ref()
        .map(|s| UpdateParams {
            subject: s.subject.clone(),
            expiry_date: s.expiry_date.clone(),
            cert_file: s.cert_file.clone(),
            proceed_with_stranded_pods: s.proceed_with_stranded_pods,
            options: options::effective_for(st, subcloud).subcloud_options(),
            rollback: s.rollback,
        })
        .unwrap_or_default()
}

/// The next move of an active strategy: ask an abort's running steps to wind down, stop on failure,
/// fill the window, or settle the end state. `None` when there is nothing to do now.
pub fn drive(st: &State) -> Option<Change> {
    let strategy = st.strategy.as_ref().filter(|s| s.state.is_active())?;
    match strategy.state {
        // Every waiting step was aborted with the request; only running ones remain to wind down.
        StrategyState::AbortRequested => {
            let mut aborting = strategy.clone();
            aborting.state = StrategyState::Aborting;
            return Some(
                Change::write(vec![Op::PutStrategy(aborting)], Value::Null).then(FollowUp::Drive),
            );
        }
        StrategyState::Applying => match stop_reason(st) {
            // Stop-on-failure tripped: running steps finish their phase (the order is idempotent),
            // waiting ones will never start. Done here rather than where the failure is seen, so a
            // restart between the two writes still settles.
            Some(reason) => {
                let aborted = abort_waiting(st, &format!("not started: {reason}"));
                let stop = FollowUp::AbortRunning(reason);
                if !aborted.is_empty() {
                    return Some(
                        Change::write(aborted, Value::Null)
                            .then(stop)
                            .then(FollowUp::Drive),
                    );
                }
                if st.steps.iter().any(Step::is_running) {
                    return Some(Change::default().then(stop));
                }
            }
            None => {
                let ids = rules::steps_to_start(&st.steps, strategy.max_parallel);
                if !ids.is_empty() {
                    return Some(start_steps(st, &ids));
                }
            }
        },
        _ => {}
    }
    let end = rules::final_state(&st.steps)?;
    let mut next = strategy.clone();
    next.state = end;
    if end == StrategyState::Complete {
        // Every subcloud has its new CA: the uploaded private key is needed no more, so it is not kept.
        next.cert_file = next.cert_file.as_deref().map(without_private_key);
    }
    next.updated_at = Some(now_string());
    tracing::info!(state = end.as_str(), "strategy finished");
    Some(Change::write(vec![Op::PutStrategy(next)], Value::Null))
}

/// The certificates of an uploaded cert-file, without its private key.
fn without_private_key(cert_file: &str) -> String {
    let certs = dc_certs::pem_certificates(cert_file).unwrap_or_default();
    dc_certs::certificates_pem(certs.iter().map(Vec::as_slice))
}

/// Starts the steps `ids`: managed subclouds get a step actor once the start is durable; an unmanaged
/// or deleted one fails at once.
fn start_steps(st: &State, ids: &[i64]) -> Change {
    let now = now_string();
    let rows: Vec<Step> = st
        .steps
        .iter()
        .filter(|s| ids.contains(&s.id))
        .map(|s| match st.subclouds.get(&s.subcloud) {
            Some(sc) if sc.managed => Step {
                stage: Stage::Apply,
                state: step_state::STARTING.to_owned(),
                details: format!(
                    "start sent to the agent; options: {}",
                    options::effective_for(st, &s.subcloud).subcloud_options()
                ),
                started_at: Some(now.clone()),
                updated_at: Some(now.clone()),
                ..s.clone()
            },
            found => Step {
                stage: Stage::Complete,
                state: step_state::FAILED.to_owned(),
                details: if found.is_some() {
                    format!("Subcloud {} is unmanaged.", s.subcloud)
                } else {
                    format!("Subcloud {} was deleted.", s.subcloud)
                },
                started_at: Some(now.clone()),
                finished_at: Some(now.clone()),
                updated_at: Some(now.clone()),
                ..s.clone()
            },
        })
        .collect();
    let started = rows
        .iter()
        .filter(|r| r.is_running())
        .map(|r| r.id)
        .collect();
    // A step failed here explains itself on its (unmanaged) subcloud like any other failure.
    let explained: Vec<Op> = rows
        .iter()
        .filter(|r| !r.is_running())
        .filter_map(|r| explain(st, &r.subcloud, &r.state, &r.details))
        .map(Op::PutSubcloud)
        .collect();
    let mut ops: Vec<Op> = rows.into_iter().map(Op::PutStep).collect();
    ops.extend(explained);
    Change::write(ops, Value::Null)
        .then(FollowUp::SpawnSteps(started))
        .then(FollowUp::Drive)
}

/// A running step ended: its final row, then [`drive`] refills the window or stops the strategy.
pub fn finish_step(
    st: &State,
    subcloud: &str,
    state: &'static str,
    details: String,
) -> Option<Change> {
    let step = st.running_step(subcloud)?;
    let now = now_string();
    let explained = explain(st, subcloud, state, &details);
    let row = Step {
        stage: Stage::Complete,
        state: state.to_owned(),
        details: clip_details(details),
        finished_at: Some(now.clone()),
        updated_at: Some(now),
        ..step.clone()
    };
    let mut ops = vec![Op::PutStep(row)];
    ops.extend(explained.map(Op::PutSubcloud));
    Some(Change::write(ops, Value::Null).then(FollowUp::Drive))
}

/// The subcloud's `error-description` after its step ended, when it changes: a failure's details stay
/// until an update completes (an abort changes nothing; dcmanager's own reset at create would hide the
/// reason while the update is still unfinished); a completed update clears it, or leaves the warning
/// it completed with.
fn explain(st: &State, subcloud: &str, state: &str, details: &str) -> Option<Subcloud> {
    let sc = st.subclouds.get(subcloud)?;
    let error = match state {
        step_state::FAILED => Some(clip_details(details.to_owned())),
        step_state::COMPLETE => details
            .find(crate::model::WARNING)
            .map(|at| clip_details(details[at..].to_owned())),
        _ => return None,
    };
    (sc.error_description != error).then(|| Subcloud {
        error_description: error,
        ..sc.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::super::state::tests::{state, with_strategy};
    use super::*;
    use crate::requests::GroupRef;

    fn put_steps(c: &Change) -> Vec<&Step> {
        c.ops
            .iter()
            .filter_map(|op| match op {
                Op::PutStep(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    fn put_strategy(c: &Change) -> Option<StrategyState> {
        c.ops.iter().find_map(|op| match op {
            Op::PutStrategy(s) => Some(s.state),
            _ => None,
        })
    }

    /// A step that completed with a warning (pods left on the old CA because the strategy said to
    /// proceed) leaves that warning as the subcloud's description; a clean completion clears it.
    #[test]
    fn a_completion_with_a_warning_keeps_it_as_the_subclouds_description() {
        let st = state(1);
        let details = "update completed; update 100% complete; warning: 1 running pod(s) would keep the old root CA alone";
        let explained = explain(&st, "s1", step_state::COMPLETE, details).unwrap();
        assert_eq!(
            explained.error_description.as_deref(),
            Some("warning: 1 running pod(s) would keep the old root CA alone")
        );
        let mut st = st;
        st.subclouds.insert("s1".into(), explained);
        let cleared = explain(&st, "s1", step_state::COMPLETE, "update completed").unwrap();
        assert_eq!(cleared.error_description, None);
    }

    #[test]
    fn create_refuses_a_second_strategy_and_an_unknown_group() {
        let st = with_strategy(state(1), StrategyState::Initial, 2, &[]);
        let e = create(&st, CreateStrategy::default()).expect_err("refused");
        assert_eq!(
            e.message,
            "Unable to create strategy of type 'kube-rootca-update': Bad strategy request: Strategy of type: 'kube-rootca-update' already exists"
        );
        let req = CreateStrategy {
            subcloud_group: Some(GroupRef::Name("nope".into())),
            ..CreateStrategy::default()
        };
        assert_eq!(
            create(&state(1), req).expect_err("refused").message,
            "Invalid group_id"
        );
        // No agent reports, so the sync of every subcloud is unknown and offline ones are skipped.
        let e = create(&state(1), CreateStrategy::default()).expect_err("refused");
        assert!(e.message.ends_with("Strategy has no steps to apply"), "{e}");
    }

    #[test]
    fn the_window_starts_the_lowest_waiting_steps_and_spawns_them_once_durable() {
        use crate::model::Stage::*;
        let st = with_strategy(
            state(4),
            StrategyState::Applying,
            2,
            &[
                (Complete, step_state::COMPLETE),
                (Create, step_state::INITIAL),
                (Create, step_state::INITIAL),
                (Create, step_state::INITIAL),
            ],
        );
        let c = drive(&st).expect("a move");
        let started: Vec<i64> = put_steps(&c).iter().map(|s| s.id).collect();
        assert_eq!(started, [2, 3]);
        assert!(put_steps(&c).iter().all(|s| s.is_running()));
        assert_eq!(
            c.follow_ups,
            [FollowUp::SpawnSteps(vec![2, 3]), FollowUp::Drive]
        );
    }

    #[test]
    fn each_subcloud_starts_with_its_options_read_at_its_start_and_says_which() {
        use crate::options::OptionsEntry;
        use dc_protocol::WorkerApplyType;
        let mut st = with_strategy(
            state(2),
            StrategyState::Applying,
            1,
            &[
                (Stage::Create, step_state::INITIAL),
                (Stage::Create, step_state::INITIAL),
            ],
        );
        let own = |id, subcloud_id, worker, max| OptionsEntry {
            id,
            subcloud_id,
            worker_apply_type: worker,
            max_parallel_workers: max,
            ..OptionsEntry {
                id: 0,
                subcloud_id: 0,
                storage_apply_type: Default::default(),
                worker_apply_type: Default::default(),
                max_parallel_workers: 10,
                alarm_restriction_type: Default::default(),
                default_instance_action: Default::default(),
                created_at: now_string(),
                updated_at: None,
            }
        };
        st.apply(vec![Op::PutOptions(own(1, 1, WorkerApplyType::Serial, 10))]);
        let c = drive(&st).expect("s1 starts");
        assert_eq!(
            put_steps(&c)[0].details,
            "start sent to the agent; options: worker-apply-type serial, alarm-restriction-type relaxed"
        );
        assert_eq!(
            update_params(&st, "s1").options.worker_apply_type,
            WorkerApplyType::Serial
        );
        st.apply(c.ops);
        // s2 has no entry of its own: the default entry set after the strategy was created applies.
        st.apply(vec![Op::PutOptions(own(
            2,
            0,
            WorkerApplyType::Parallel,
            4,
        ))]);
        assert_eq!(update_params(&st, "s2").options.max_parallel_workers, 4);
    }

    #[test]
    fn an_unmanaged_subcloud_fails_its_step_instead_of_starting() {
        let mut st = with_strategy(
            state(1),
            StrategyState::Applying,
            1,
            &[(Stage::Create, step_state::INITIAL)],
        );
        if let Some(s) = st.subclouds.get_mut("s1") {
            s.managed = false;
        }
        let c = drive(&st).expect("a move");
        let rows = put_steps(&c);
        assert_eq!(rows[0].state, step_state::FAILED);
        assert_eq!(rows[0].details, "Subcloud s1 is unmanaged.");
        assert_eq!(c.follow_ups[0], FollowUp::SpawnSteps(vec![]));
        st.apply(c.ops);
        assert_eq!(
            st.subclouds["s1"].error_description.as_deref(),
            Some("Subcloud s1 is unmanaged.")
        );
    }

    #[test]
    fn abort_aborts_waiting_steps_stops_running_ones_then_settles_aborting() {
        use crate::model::Stage::*;
        let mut st = with_strategy(
            state(2),
            StrategyState::Applying,
            1,
            &[(Apply, step_state::STARTING), (Create, step_state::INITIAL)],
        );
        let c = action(&st, Action::Abort).expect("abort");
        assert_eq!(put_strategy(&c), Some(StrategyState::AbortRequested));
        assert_eq!(put_steps(&c)[0].subcloud, "s2");
        assert_eq!(put_steps(&c)[0].details, "aborted before it started");
        assert_eq!(
            c.follow_ups,
            [FollowUp::AbortRunning("aborted".into()), FollowUp::Drive]
        );
        st.apply(c.ops);
        let c = drive(&st).expect("a move");
        assert_eq!(put_strategy(&c), Some(StrategyState::Aborting));
        st.apply(c.ops);
        assert!(drive(&st).is_none(), "s1 still runs");
        let c = finish_step(&st, "s1", step_state::ABORTED, "stopped".into()).expect("running");
        st.apply(c.ops);
        let c = drive(&st).expect("the end");
        assert_eq!(put_strategy(&c), Some(StrategyState::Aborted));
        assert!(finish_step(&st, "s2", step_state::FAILED, String::new()).is_none());
    }

    #[test]
    fn stop_on_failure_aborts_the_waiting_and_stops_the_running() {
        use crate::model::Stage::*;
        let mut st = with_strategy(
            state(3),
            StrategyState::Applying,
            2,
            &[
                (Complete, step_state::FAILED),
                (Apply, step_state::STARTING),
                (Create, step_state::INITIAL),
            ],
        );
        if let Some(s) = st.strategy.as_mut() {
            s.stop_on_failure = true;
        }
        let reason = "stop-on-failure: subcloud s1 failed";
        assert_eq!(stop_reason(&st).as_deref(), Some(reason));
        let c = drive(&st).expect("a move");
        assert_eq!(put_steps(&c)[0].details, format!("not started: {reason}"));
        assert_eq!(
            c.follow_ups,
            [FollowUp::AbortRunning(reason.into()), FollowUp::Drive]
        );
        st.apply(c.ops);
        let c = drive(&st).expect("the running one is told again");
        assert!(c.ops.is_empty());
        st.apply(
            finish_step(&st, "s2", step_state::COMPLETE, String::new())
                .expect("running")
                .ops,
        );
        assert_eq!(
            put_strategy(&drive(&st).expect("the end")),
            Some(StrategyState::Failed)
        );
    }

    #[test]
    fn a_failed_step_explains_itself_on_its_subcloud_until_an_update_completes() {
        use crate::model::Stage::*;
        let error = |st: &State| st.subclouds["s1"].error_description.clone();
        let running = |st: State| {
            with_strategy(
                st,
                StrategyState::Applying,
                1,
                &[(Apply, step_state::STARTING)],
            )
        };
        let mut st = running(state(1));
        let why = "hosts update-certs failed: disk full";
        st.apply(
            finish_step(&st, "s1", step_state::FAILED, why.into())
                .expect("running")
                .ops,
        );
        assert_eq!(error(&st).as_deref(), Some(why));
        // An abort leaves the explanation; a completed update clears it.
        let mut st = running(st);
        st.apply(
            finish_step(&st, "s1", step_state::ABORTED, "aborted".into())
                .expect("running")
                .ops,
        );
        assert_eq!(error(&st).as_deref(), Some(why));
        let mut st = running(st);
        st.apply(
            finish_step(&st, "s1", step_state::COMPLETE, String::new())
                .expect("running")
                .ops,
        );
        assert_eq!(error(&st), None);
    }

    #[test]
    fn apply_and_delete_follow_the_strategy_state() {
        let st = with_strategy(state(1), StrategyState::Complete, 1, &[]);
        assert_eq!(
            action(&st, Action::Apply).expect_err("refused").message,
            "Unable to apply strategy of type 'kube-rootca-update': Bad strategy request: Strategy in state complete cannot be applied"
        );
        let c = delete(&st).expect("deletable");
        assert!(matches!(c.ops.as_slice(), [Op::DeleteStrategy]));
        assert_eq!(c.answer["state"], "deleting");
        let st = with_strategy(state(1), StrategyState::Applying, 1, &[]);
        assert!(delete(&st).is_err());
        assert_eq!(
            action(&state(1), Action::Abort).expect_err("none").message,
            "Unable to abort strategy of type 'kube-rootca-update': Strategy with type kube-rootca-update doesn't exist."
        );
        let st = with_strategy(state(1), StrategyState::Initial, 1, &[]);
        let c = action(&st, Action::Apply).expect("applied");
        assert_eq!(put_strategy(&c), Some(StrategyState::Applying));
        assert_eq!(c.follow_ups, [FollowUp::Drive]);
        assert_eq!(
            datetime_digits("2026-12-01 08:05:40.123456"),
            "20261201080540123456"
        );
    }
}
