//! The orchestrator's state as plain data, and the [`Change`] every decision returns.
//!
//! A decision (in `registry` and `strategy`) reads a [`State`] and answers a `Change`: the rows to
//! write, what to do once they are durable, and the API's answer. The actor applies it in one place:
//! it writes the ops, then [`State::apply`] makes the same ops true in memory, then it carries out
//! the follow-ups. So nothing is acted on, nor shown, before it is durable, and each decision is
//! tested on a `State` without actors.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use actix::{Addr, Recipient};
use dc_protocol::{Alarm, ErrorMessage, RootCaInfo, UpdateStatus};
use serde_json::Value;
use tokio::time::Instant;

use crate::error::ApiError;
use crate::model::{Group, LiveView, Step, Strategy, Subcloud, SubcloudStatus, SyncStatus};
use crate::options::OptionsEntry;
use crate::requests::GroupRef;
use crate::rules;
use crate::session::{FromAgent, Session};
use crate::store::{LastIds, Op, Snapshot};

/// An agent's current connection.
pub struct SessionRef {
    pub id: u64,
    pub addr: Addr<Session>,
    /// A heartbeat arrived on this session, so its update status is known.
    pub heartbeat_seen: bool,
    /// The running step (if any) has been given this session.
    pub attached: bool,
    /// The agent can roll back.
    pub can_roll_back: bool,
}

/// What the agent last reported.
#[derive(Default)]
pub struct Live {
    pub session: Option<SessionRef>,
    pub last_heartbeat: Option<Instant>,
    /// Kept as a time, formatted only when shown: heartbeats are the controller's most frequent message.
    pub last_heartbeat_at: Option<time::OffsetDateTime>,
    pub root_ca: Option<RootCaInfo>,
    pub alarms: Vec<Alarm>,
    pub update: Option<UpdateStatus>,
}

/// Every record the orchestrator owns, and the agents' live facts.
pub struct State {
    pub groups: BTreeMap<i64, Group>,
    pub subclouds: BTreeMap<String, Subcloud>,
    pub live: HashMap<String, Live>,
    pub strategy: Option<Strategy>,
    /// Ordered by id. Running steps keep the row of their start here: their progress is the
    /// progress writer's, and only their end comes back.
    pub steps: Vec<Step>,
    /// Position of each subcloud's step in `steps`.
    pub step_positions: HashMap<String, usize>,
    /// The highest id of each kind ever given, so a new record never reuses a deleted one's.
    pub last_ids: LastIds,
    /// Per subcloud: its agent certificates issued at or before this Unix time are refused.
    pub revoked: HashMap<String, i64>,
    /// A subcloud whose last heartbeat is older than this is offline.
    pub offline_after: Duration,
    /// A root CA expiring within this many days makes its subcloud out-of-sync.
    pub expiring_days: u32,
    /// The sw-update-options entries by `subcloud_id` (0: the default entry, when it was set).
    pub options: BTreeMap<i64, OptionsEntry>,
}

/// What to do once a change's ops are durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowUp {
    /// Start a step actor for each of these (running) steps.
    SpawnSteps(Vec<i64>),
    /// Tell every running step actor to finish its phase and stop.
    AbortRunning(String),
    /// Close the session of a deleted subcloud.
    CloseSession(String),
    /// Refill the window or settle the strategy's state.
    Drive,
}

/// A decision's outcome: `ops` written first (nothing else happens if that fails), then the
/// follow-ups, then `answer` goes to the API caller.
#[derive(Debug, Default)]
pub struct Change {
    pub ops: Vec<Op>,
    pub follow_ups: Vec<FollowUp>,
    pub answer: Value,
}

impl Change {
    /// Nothing to write or do; only an answer.
    pub fn answer(answer: Value) -> Self {
        Self {
            answer,
            ..Self::default()
        }
    }

    /// Writes `ops`, then answers `answer`.
    pub fn write(ops: Vec<Op>, answer: Value) -> Self {
        Self {
            ops,
            answer,
            ..Self::default()
        }
    }

    pub fn then(mut self, follow_up: FollowUp) -> Self {
        self.follow_ups.push(follow_up);
        self
    }
}

/// Positions of each subcloud's step.
fn positions(steps: &[Step]) -> HashMap<String, usize> {
    steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.subcloud.clone(), i))
        .collect()
}

impl State {
    pub fn new(snapshot: Snapshot, offline_after: Duration, expiring_days: u32) -> Self {
        Self {
            // The rows bound the marks from below whatever the store kept.
            last_ids: LastIds {
                group: snapshot
                    .groups
                    .iter()
                    .map(|g| g.id)
                    .fold(snapshot.last_ids.group, i64::max),
                subcloud: snapshot
                    .subclouds
                    .iter()
                    .map(|s| s.id)
                    .fold(snapshot.last_ids.subcloud, i64::max),
                strategy: snapshot
                    .strategy
                    .as_ref()
                    .map_or(snapshot.last_ids.strategy, |s| {
                        s.id.max(snapshot.last_ids.strategy)
                    }),
            },
            revoked: snapshot.revoked.into_iter().collect(),
            options: snapshot
                .options
                .into_iter()
                .map(|o| (o.subcloud_id, o))
                .collect(),
            groups: snapshot.groups.into_iter().map(|g| (g.id, g)).collect(),
            subclouds: snapshot
                .subclouds
                .into_iter()
                .map(|s| (s.name.clone(), s))
                .collect(),
            live: HashMap::new(),
            strategy: snapshot.strategy,
            step_positions: positions(&snapshot.steps),
            steps: snapshot.steps,
            offline_after,
            expiring_days,
        }
    }

    /// Makes durable ops true in memory: the one place the records change.
    pub fn apply(&mut self, ops: Vec<Op>) {
        for op in ops {
            match op {
                Op::PutGroup(g) => {
                    self.last_ids.group = self.last_ids.group.max(g.id);
                    self.groups.insert(g.id, g);
                }
                Op::DeleteGroup(id) => {
                    self.groups.remove(&id);
                }
                Op::PutSubcloud(s) => {
                    self.last_ids.subcloud = self.last_ids.subcloud.max(s.id);
                    self.subclouds.insert(s.name.clone(), s);
                }
                Op::DeleteSubcloud(id) => {
                    // Its options entry goes with it, as the store's trigger removes the row.
                    self.options.remove(&id);
                    self.subclouds.retain(|_, s| s.id != id);
                }
                Op::PutOptions(o) => {
                    self.options.insert(o.subcloud_id, o);
                }
                Op::DeleteOptions(subcloud_id) => {
                    self.options.remove(&subcloud_id);
                }
                Op::PutStrategy(s) => {
                    self.last_ids.strategy = self.last_ids.strategy.max(s.id);
                    self.strategy = Some(s);
                }
                Op::DeleteStrategy => {
                    self.strategy = None;
                    self.steps.clear();
                    self.step_positions.clear();
                }
                Op::Revoke { subcloud, before } => {
                    let at = self.revoked.entry(subcloud).or_default();
                    *at = (*at).max(before);
                }
                Op::PutStep(row) => match self.step_positions.get(&row.subcloud) {
                    Some(&i) => {
                        if let Some(s) = self.steps.get_mut(i) {
                            *s = row;
                        }
                    }
                    None => {
                        self.step_positions
                            .insert(row.subcloud.clone(), self.steps.len());
                        self.steps.push(row);
                    }
                },
            }
        }
    }

    pub fn step(&self, subcloud: &str) -> Option<&Step> {
        self.steps.get(*self.step_positions.get(subcloud)?)
    }

    /// The subcloud's step while it runs.
    pub fn running_step(&self, subcloud: &str) -> Option<&Step> {
        self.step(subcloud).filter(|s| s.is_running())
    }

    pub fn online(&self, name: &str) -> bool {
        self.live.get(name).is_some_and(|l| {
            l.session.is_some()
                && l.last_heartbeat
                    .is_some_and(|t| t.elapsed() <= self.offline_after)
        })
    }

    pub fn live_view(&self, name: &str) -> LiveView {
        let online = self.online(name);
        let Some(l) = self.live.get(name) else {
            return LiveView::default();
        };
        LiveView {
            online,
            sync: Some(self.sync(online, l)),
            root_ca: l.root_ca.clone(),
            alarms: l.alarms.iter().map(|a| a.id.clone()).collect(),
            last_heartbeat_at: l.last_heartbeat_at.map(crate::model::format_datetime),
            unfinished: l.update.clone().filter(UpdateStatus::unfinished),
        }
    }

    /// The kube-rootca audit of an agent's live facts: one rule for the list, the stream and the
    /// strategy.
    fn sync(&self, online: bool, l: &Live) -> SyncStatus {
        rules::kube_rootca_sync(
            online,
            l.root_ca.as_ref(),
            &l.alarms,
            l.update.as_ref(),
            dc_certs::now(),
            self.expiring_days,
        )
    }

    /// What the event stream says of a subcloud, without building its whole view.
    pub fn subcloud_status(&self, s: &Subcloud) -> SubcloudStatus {
        let online = self.online(&s.name);
        let live = self.live.get(&s.name);
        SubcloudStatus {
            id: s.id,
            online,
            sync: live.map_or(SyncStatus::Unknown, |l| self.sync(online, l)),
            expiry: live.and_then(|l| l.root_ca.as_ref()).map(|c| c.not_after),
        }
    }

    pub fn sync_of(&self, name: &str) -> SyncStatus {
        self.live_view(name).sync.unwrap_or(SyncStatus::Unknown)
    }

    pub fn subcloud_json(&self, s: &Subcloud, aggregate: bool) -> Value {
        s.to_json(&self.live_view(&s.name), aggregate)
    }

    /// A subcloud by name, or by id.
    pub fn find_subcloud(&self, r: &str) -> Result<&Subcloud, ApiError> {
        self.subclouds
            .get(r)
            .or_else(|| {
                r.parse::<i64>()
                    .ok()
                    .and_then(|id| self.subclouds.values().find(|s| s.id == id))
            })
            .ok_or_else(|| ApiError::not_found("Subcloud not found"))
    }

    /// The group a reference names, if it exists.
    pub fn group(&self, r: &GroupRef) -> Option<&Group> {
        match r {
            GroupRef::Id(id) => self.groups.get(id),
            GroupRef::Name(name) => self.groups.values().find(|g| &g.name == name),
        }
    }

    /// The session of a subcloud, if its agent is connected.
    pub fn session(&self, subcloud: &str) -> Option<&SessionRef> {
        self.live.get(subcloud)?.session.as_ref()
    }

    /// Closes a subcloud's session with `error`, forgetting its live facts.
    pub fn close_session(&mut self, subcloud: &str, error: ErrorMessage) {
        if let Some(session) = self.live.remove(subcloud).and_then(|l| l.session) {
            session.addr.do_send(crate::session::Close(error));
        }
    }

    /// Routes the subcloud's update messages to `step` (or drops them), if its agent is connected.
    pub fn route(&self, subcloud: &str, step: Option<Recipient<FromAgent>>) {
        if let Some(session) = self.session(subcloud) {
            session.addr.do_send(crate::session::Route(step));
        }
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::model::{ApplyType, Stage, StrategyState, now_string, step_state};

    /// A state with the Default group and subclouds `s1..=sN`, none connected.
    pub fn state(subclouds: usize) -> State {
        let snapshot = Snapshot {
            groups: vec![Group::default_group()],
            subclouds: (1..=subclouds)
                .map(|i| Subcloud {
                    id: i as i64,
                    name: format!("s{i}"),
                    description: String::new(),
                    location: String::new(),
                    group_id: crate::model::DEFAULT_GROUP_ID,
                    managed: true,
                    created_at: now_string(),
                    updated_at: None,
                    error_description: None,
                })
                .collect(),
            ..Snapshot::default()
        };
        State::new(snapshot, Duration::from_secs(35), 30)
    }

    /// A strategy in `state` over `steps` (subcloud `s<id>`, in the given stage and state).
    pub fn with_strategy(
        mut st: State,
        state: StrategyState,
        max_parallel: u32,
        steps: &[(Stage, &str)],
    ) -> State {
        let mut ops = vec![Op::PutStrategy(Strategy {
            id: 1,
            apply_type: ApplyType::Parallel,
            max_parallel,
            stop_on_failure: false,
            state,
            subject: None,
            expiry_date: None,
            cert_file: None,
            proceed_with_stranded_pods: false,
            rollback: false,
            created_at: now_string(),
            updated_at: None,
        })];
        ops.extend(steps.iter().zip(1..).map(|((stage, state), id)| {
            Op::PutStep(Step {
                id,
                subcloud: format!("s{id}"),
                update_id: format!("u-s{id}"),
                stage: *stage,
                state: (*state).to_owned(),
                details: String::new(),
                started_at: None,
                finished_at: None,
                created_at: now_string(),
                updated_at: None,
            })
        }));
        st.apply(ops);
        st
    }

    #[test]
    fn applied_ops_are_the_records_in_memory() {
        let mut st = with_strategy(
            state(2),
            StrategyState::Applying,
            2,
            &[(Stage::Create, step_state::INITIAL)],
        );
        assert_eq!(st.last_ids.strategy, 1);
        let mut row = st.steps[0].clone();
        row.stage = Stage::Apply;
        st.apply(vec![Op::PutStep(row)]);
        assert!(st.running_step("s1").is_some());
        assert_eq!(st.steps.len(), 1, "a put of a known step replaces it");
        st.apply(vec![Op::DeleteSubcloud(2), Op::DeleteStrategy]);
        assert!(st.strategy.is_none() && st.steps.is_empty() && st.step("s1").is_none());
        assert_eq!(st.subclouds.keys().collect::<Vec<_>>(), ["s1"]);
        assert_eq!(
            st.last_ids.subcloud, 2,
            "a deleted subcloud's id stays taken"
        );
        assert_eq!(
            st.last_ids.strategy, 1,
            "a deleted strategy's id is not reused"
        );
    }

    #[test]
    fn subclouds_are_found_by_name_or_id_and_groups_by_reference() {
        let st = state(2);
        assert_eq!(st.find_subcloud("2").map(|s| s.name.as_str()), Ok("s2"));
        assert_eq!(st.find_subcloud("s1").map(|s| s.id), Ok(1));
        assert_eq!(
            st.find_subcloud("zz").map_err(|e| e.message),
            Err("Subcloud not found".to_owned())
        );
        assert!(st.group(&GroupRef::Id(1)).is_some());
        assert!(st.group(&GroupRef::Name("Default".into())).is_some());
        assert!(st.group(&GroupRef::Name("edge".into())).is_none());
        assert!(!st.online("s1"), "no agent has connected");
        assert_eq!(st.sync_of("s1"), SyncStatus::Unknown);
    }

    #[test]
    fn a_subclouds_stream_status_is_its_list_entry_in_brief() {
        let mut st = state(2);
        st.live.insert(
            "s2".into(),
            Live {
                root_ca: Some(RootCaInfo {
                    subject: "CN=root".into(),
                    serial: "01".into(),
                    not_before: 0,
                    not_after: 1_700_000_000,
                }),
                last_heartbeat_at: Some(time::OffsetDateTime::now_utc()),
                ..Live::default()
            },
        );
        for s in st.subclouds.values() {
            let list = st.subcloud_json(s, true);
            let status = st.subcloud_status(s).to_json(&s.name);
            let keys = [
                "id",
                "name",
                "availability-status",
                "sync_status",
                "kube-rootca-expiry",
            ];
            let brief: serde_json::Map<String, Value> = keys
                .iter()
                .map(|k| ((*k).to_owned(), list[*k].clone()))
                .collect();
            assert_eq!(status, Value::Object(brief), "{}", s.name);
        }
        assert_eq!(
            st.subcloud_status(&st.subclouds["s2"]).to_json("s2")["kube-rootca-expiry"],
            "2023-11-14 22:13:20.000000"
        );
    }
}
