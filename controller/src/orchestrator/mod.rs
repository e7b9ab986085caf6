//! The orchestrator actor: the registry of subclouds and groups, the agents' sessions, and the strategy
//! with its sliding window of step actors.
//!
//! One actor owns every record, so rules that span records (one strategy at a time, a subcloud in a
//! running step cannot be deleted) need no locks. Its decisions are plain functions over its
//! [`State`] ([`registry`], [`strategy`]) that answer a [`Change`]; [`Orchestrator::carry_out`] is
//! the one place a change happens: its ops go to the progress writer ([`persist`]) and are durable
//! *before* they are applied in memory and acted on (the write holds the mailbox), then the follow-ups
//! run (spawning steps, ordering an abort), then the API is answered.
//!
//! What reaches it: the API's requests, each agent's Hello, heartbeats and end of session (from the
//! sessions), and each step's end (from the step actors). A step's progress does not: the session
//! hands it to the step, and the step to the progress writer.

pub mod metrics;
pub mod options;
pub mod persist;
pub mod registry;
pub mod state;
pub mod strategy;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::fut::LocalBoxActorFuture;
use actix::{
    Actor, ActorContext, ActorFutureExt, Addr, AsyncContext, AtomicResponse, Context, Handler,
    Message, MessageResult, WrapFuture,
};
use dc_protocol::{Alarm, ErrorCode, ErrorMessage};
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::ControllerConfig;
use crate::error::ApiError;
use crate::events::{EventHub, Kind};
use crate::model::{DEFAULT_GROUP_ID, Group, Stage, Step, StrategyState, SubcloudStatus};
use crate::requests::{
    AddSubcloud, CreateStrategy, GroupBody, GroupRef, PatchSubcloud, StrategyAction, UpdateOptions,
};
use crate::session::{self, Accepted, Close, Closed, Heartbeat, Hello, Renew, Upstream};
use crate::step::{
    AbortStep, Attach, Detach, Halt, Observed, Reports, StepActor, StepFinished, StepSpec,
};
use crate::store::{Op, Snapshot};

use metrics::FleetFigures;
use persist::{Durable, Persist};
use state::{Change, FollowUp, SessionRef, State};

/// What tests and the demo can watch without polling the API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// The strategy's state, if one exists.
    pub strategy: Option<StrategyState>,
    /// How many subclouds have their agent connected and have sent a heartbeat on it.
    pub reporting: usize,
    /// Steps that ended (complete, failed or aborted).
    pub finished_steps: usize,
    /// Steps running now.
    pub running_steps: usize,
}

/// A REST request, typed by the API layer; answered with the JSON body or an error.
#[derive(Debug)]
pub enum ApiRequest {
    ListSubclouds,
    ShowSubcloud(String),
    AddSubcloud(AddSubcloud),
    PatchSubcloud(String, PatchSubcloud),
    DeleteSubcloud(String),
    ListGroups,
    ShowGroup(GroupRef),
    AddGroup(GroupBody),
    PatchGroup(GroupRef, GroupBody),
    DeleteGroup(GroupRef),
    GroupMembers(GroupRef),
    CreateStrategy(CreateStrategy),
    ShowStrategy,
    DeleteStrategy,
    Action(StrategyAction),
    ListOptions,
    ShowOptions(String),
    UpdateOptions(String, UpdateOptions),
    DeleteOptions(String),
}

#[derive(Message)]
#[rtype(result = "Result<Value, ApiError>")]
pub struct Api(pub ApiRequest);

/// The orchestrator's figures for `/metrics`.
#[derive(Message)]
#[rtype(result = "FleetFigures")]
pub struct Figures;

/// Stop step actors and sessions, then stop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// What the event stream's snapshot takes from the orchestrator: the strategy (`null` without one)
/// and every subcloud's status ([`crate::model::SubcloudStatus`]).
#[derive(Message)]
#[rtype(result = "Watched")]
pub struct WatchedState;

pub struct Watched {
    pub strategy: Value,
    pub subclouds: Vec<Value>,
}

/// How often subclouds whose heartbeats stopped are looked for, to announce them offline.
const OFFLINE_SWEEP: Duration = Duration::from_secs(1);

/// Refill the window and settle the strategy's state.
#[derive(Message)]
#[rtype(result = "()")]
struct Drive;

/// The orchestrator.
pub struct Orchestrator {
    cfg: Arc<ControllerConfig>,
    persist: Addr<Persist>,
    state: State,
    running: HashMap<String, Addr<StepActor>>,
    status: watch::Sender<Status>,
    events: Arc<EventHub>,
    /// Each subcloud's status as last published, so only changes are.
    announced: HashMap<String, SubcloudStatus>,
}

impl Orchestrator {
    pub fn new(
        cfg: Arc<ControllerConfig>,
        persist: Addr<Persist>,
        snapshot: Snapshot,
        status: watch::Sender<Status>,
        events: Arc<EventHub>,
    ) -> Self {
        let state = State::new(
            snapshot,
            Duration::from_secs(cfg.offline_after_secs),
            cfg.audit.expiring_days,
        );
        Self {
            cfg,
            persist,
            state,
            running: Default::default(),
            status,
            events,
            announced: HashMap::new(),
        }
    }

    /// Where sessions report.
    pub fn upstream(addr: &Addr<Self>) -> Upstream {
        Upstream {
            hello: addr.clone().recipient(),
            heartbeat: addr.clone().recipient(),
            closed: addr.clone().recipient(),
            renew: addr.clone().recipient(),
        }
    }

    /// Writes the change's ops, then applies them and runs the follow-ups; the answer comes out once
    /// that is done. A failed write changes nothing. The caller holds the mailbox while it runs.
    fn carry_out(&mut self, change: Change) -> LocalBoxActorFuture<Self, Result<Value, ApiError>> {
        let Change {
            ops,
            follow_ups,
            answer,
        } = change;
        if ops.is_empty() {
            return Box::pin(actix::fut::ready(()).map(move |(), act: &mut Self, ctx| {
                act.follow_up(follow_ups, ctx);
                Ok(answer)
            }));
        }
        Box::pin(
            self.persist
                .send(Durable(ops.clone()))
                .into_actor(self)
                .map(
                    move |res, act, ctx| match res.map_err(|e| e.to_string()).and_then(|r| r) {
                        Ok(()) => {
                            let strategy = ops
                                .iter()
                                .any(|op| matches!(op, Op::PutStrategy(_) | Op::DeleteStrategy));
                            let subclouds = act.subclouds_named(&ops);
                            act.state.apply(ops);
                            if strategy {
                                act.announce_strategy();
                            }
                            for name in &subclouds {
                                act.announce_subcloud(name);
                            }
                            act.follow_up(follow_ups, ctx);
                            act.publish();
                            Ok(answer)
                        }
                        Err(e) => Err(ApiError::internal(format!(
                            "the change could not be stored: {e}"
                        ))),
                    },
                ),
        )
    }

    /// [`Self::carry_out`] for a change of the controller's own (no API caller), holding the mailbox
    /// until it is done.
    fn carry_out_now(&mut self, change: Change, ctx: &mut Context<Self>) {
        let fut = self.carry_out(change).map(|res, _, _| {
            if let Err(e) = res {
                tracing::error!(error = %e, "change not applied");
            }
        });
        ctx.wait(fut);
    }

    fn follow_up(&mut self, follow_ups: Vec<FollowUp>, ctx: &mut Context<Self>) {
        for f in follow_ups {
            match f {
                FollowUp::SpawnSteps(ids) => {
                    let rows: Vec<Step> = self
                        .state
                        .steps
                        .iter()
                        .filter(|s| ids.contains(&s.id))
                        .cloned()
                        .collect();
                    for row in &rows {
                        tracing::info!(subcloud = %row.subcloud, "step started");
                        self.spawn_step(row, false, ctx);
                    }
                }
                FollowUp::AbortRunning(reason) => {
                    for step in self.running.values() {
                        step.do_send(AbortStep {
                            reason: reason.clone(),
                        });
                    }
                }
                FollowUp::CloseSession(subcloud) => {
                    self.state
                        .close_session(&subcloud, registry::deleted(&subcloud));
                }
                FollowUp::Drive => ctx.notify(Drive),
            }
        }
    }

    /// The subclouds `ops` put or delete, by name (taken before they apply: a deleted one's name is
    /// gone after).
    fn subclouds_named(&self, ops: &[Op]) -> Vec<String> {
        ops.iter()
            .filter_map(|op| match op {
                Op::PutSubcloud(s) => Some(s.name.clone()),
                Op::DeleteSubcloud(id) => self
                    .state
                    .subclouds
                    .values()
                    .find(|s| s.id == *id)
                    .map(|s| s.name.clone()),
                _ => None,
            })
            .collect()
    }

    fn announce_strategy(&self) {
        let strategy = self
            .state
            .strategy
            .as_ref()
            .map_or(Value::Null, crate::model::Strategy::to_json);
        self.events.publish(Kind::Strategy, &strategy);
    }

    /// Publishes the subcloud's status if it changed since it was last published.
    fn announce_subcloud(&mut self, name: &str) {
        let Some(s) = self.state.subclouds.get(name) else {
            self.announced.remove(name);
            self.events.publish(
                Kind::Subcloud,
                &serde_json::json!({"name": name, "deleted": true}),
            );
            return;
        };
        let status = self.state.subcloud_status(s);
        if self.announced.get(name) == Some(&status) {
            return;
        }
        self.events.publish(Kind::Subcloud, &status.to_json(name));
        self.announced.insert(name.to_owned(), status);
    }

    /// Announces the subclouds last announced online whose heartbeats have since stopped: nothing
    /// else happens when an agent goes quiet without closing its connection.
    fn sweep_offline(&mut self) {
        let quiet: Vec<String> = self
            .announced
            .iter()
            .filter(|(name, status)| status.online && !self.state.online(name))
            .map(|(name, _)| name.clone())
            .collect();
        for name in quiet {
            self.announce_subcloud(&name);
        }
    }

    fn publish(&self) {
        let st = &self.state;
        let status = Status {
            strategy: st.strategy.as_ref().map(|s| s.state),
            reporting: st
                .live
                .values()
                .filter(|l| l.session.as_ref().is_some_and(|s| s.heartbeat_seen))
                .count(),
            finished_steps: st
                .steps
                .iter()
                .filter(|s| s.stage == Stage::Complete)
                .count(),
            running_steps: self.running.len(),
        };
        self.status.send_if_modified(|old| {
            if *old == status {
                false
            } else {
                *old = status;
                true
            }
        });
    }

    /// Starts the step actor of a running step, and gives it the agent's session if there is one.
    fn spawn_step(&mut self, step: &Step, resumed: bool, ctx: &mut Context<Self>) {
        let spec = StepSpec {
            id: step.id,
            subcloud: step.subcloud.clone(),
            update_id: step.update_id.clone(),
            params: strategy::update_params(&self.state, &step.subcloud),
            abort: strategy::stop_reason(&self.state),
            agent_wait: Duration::from_secs(self.cfg.agent_wait_secs),
            state: step.state.clone(),
            resumed,
        };
        let reports = Reports {
            progress: self.persist.clone().recipient(),
            finished: ctx.address().recipient(),
        };
        let actor = StepActor::new(spec, reports).start();
        self.state
            .route(&step.subcloud, Some(actor.clone().recipient()));
        if let Some(live) = self.state.live.get_mut(&step.subcloud)
            && let Some(session) = live.session.as_mut()
        {
            session.attached = session.heartbeat_seen;
            if session.heartbeat_seen {
                actor.do_send(Attach {
                    session: session.addr.clone().recipient(),
                    update: live.update.clone(),
                    can_roll_back: session.can_roll_back,
                });
            }
        }
        self.running.insert(step.subcloud.clone(), actor);
    }
}

impl ApiRequest {
    /// Whether it would change a record: only the leader takes those; a standby serves the rest from
    /// the database.
    pub fn changes(&self) -> bool {
        !matches!(
            self,
            Self::ListSubclouds
                | Self::ShowSubcloud(_)
                | Self::ListGroups
                | Self::ShowGroup(_)
                | Self::GroupMembers(_)
                | Self::ShowStrategy
                | Self::ListOptions
                | Self::ShowOptions(_)
        )
    }
}

/// What `req` does to `st`: the one decision for the leader's orchestrator and, for requests that
/// do not [`ApiRequest::changes`], a standby's view loaded from the database, so both answer alike.
pub fn decide(st: &State, req: ApiRequest) -> Result<Change, ApiError> {
    let answer = |v: Result<Value, ApiError>| v.map(Change::answer);
    match req {
        ApiRequest::ListSubclouds => answer(Ok(registry::list_subclouds(st))),
        ApiRequest::ShowSubcloud(r) => answer(registry::show_subcloud(st, &r)),
        ApiRequest::AddSubcloud(b) => registry::add_subcloud(st, b),
        ApiRequest::PatchSubcloud(r, b) => registry::patch_subcloud(st, &r, b),
        ApiRequest::DeleteSubcloud(r) => registry::delete_subcloud(st, &r),
        ApiRequest::ListGroups => answer(Ok(registry::list_groups(st))),
        ApiRequest::ShowGroup(r) => answer(registry::show_group(st, &r)),
        ApiRequest::AddGroup(b) => registry::add_group(st, b),
        ApiRequest::PatchGroup(r, b) => registry::patch_group(st, &r, b),
        ApiRequest::DeleteGroup(r) => registry::delete_group(st, &r),
        ApiRequest::GroupMembers(r) => answer(registry::group_members(st, &r)),
        ApiRequest::CreateStrategy(b) => strategy::create(st, b),
        ApiRequest::ShowStrategy => answer(strategy::show(st)),
        ApiRequest::DeleteStrategy => strategy::delete(st),
        ApiRequest::Action(b) => strategy::action(st, b.action()?),
        ApiRequest::ListOptions => answer(Ok(options::list(st))),
        ApiRequest::ShowOptions(r) => answer(options::show(st, &r)),
        ApiRequest::UpdateOptions(r, b) => options::update(st, &r, b),
        ApiRequest::DeleteOptions(r) => options::delete(st, &r),
    }
}

impl Actor for Orchestrator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(OFFLINE_SWEEP, |act, _| act.sweep_offline());
        if !self.state.groups.contains_key(&DEFAULT_GROUP_ID) {
            let change = Change::write(vec![Op::PutGroup(Group::default_group())], Value::Null);
            self.carry_out_now(change, ctx);
        }
        // Resume: steps that were running when the controller stopped are re-driven when their agents
        // reconnect; the window and the end state are settled from the store's records.
        if self
            .state
            .strategy
            .as_ref()
            .is_some_and(|s| s.state.is_active())
        {
            let running: Vec<Step> = self
                .state
                .steps
                .iter()
                .filter(|s| s.is_running())
                .cloned()
                .collect();
            tracing::info!(running = running.len(), "resuming the strategy");
            for step in &running {
                self.spawn_step(step, true, ctx);
            }
            ctx.notify(Drive);
        }
        self.publish();
    }
}

impl Handler<Drive> for Orchestrator {
    type Result = ();

    fn handle(&mut self, _: Drive, ctx: &mut Context<Self>) {
        if let Some(change) = strategy::drive(&self.state) {
            self.carry_out_now(change, ctx);
        }
    }
}

impl Handler<Api> for Orchestrator {
    type Result = AtomicResponse<Self, Result<Value, ApiError>>;

    fn handle(&mut self, msg: Api, _: &mut Context<Self>) -> Self::Result {
        match decide(&self.state, msg.0) {
            Ok(change) => AtomicResponse::new(self.carry_out(change)),
            Err(e) => AtomicResponse::new(Box::pin(actix::fut::ready(Err(e)))),
        }
    }
}

impl Handler<StepFinished> for Orchestrator {
    type Result = ();

    fn handle(&mut self, msg: StepFinished, ctx: &mut Context<Self>) {
        let Some(change) =
            strategy::finish_step(&self.state, &msg.subcloud, msg.state, msg.details)
        else {
            return;
        };
        if self.running.remove(&msg.subcloud).is_some() {
            self.state.route(&msg.subcloud, None);
        }
        self.carry_out_now(change, ctx);
    }
}

impl Handler<WatchedState> for Orchestrator {
    type Result = MessageResult<WatchedState>;

    fn handle(&mut self, _: WatchedState, _: &mut Context<Self>) -> Self::Result {
        let st = &self.state;
        MessageResult(Watched {
            strategy: st
                .strategy
                .as_ref()
                .map_or(Value::Null, crate::model::Strategy::to_json),
            subclouds: st
                .subclouds
                .values()
                .map(|s| st.subcloud_status(s).to_json(&s.name))
                .collect(),
        })
    }
}

impl Handler<Figures> for Orchestrator {
    type Result = MessageResult<Figures>;

    fn handle(&mut self, _: Figures, _: &mut Context<Self>) -> Self::Result {
        let st = &self.state;
        MessageResult(FleetFigures {
            strategy: st.strategy.as_ref().map(|s| s.state),
            connected_agents: st.live.values().filter(|l| l.session.is_some()).count(),
            online_subclouds: st.live.keys().filter(|name| st.online(name)).count(),
            subclouds: st.subclouds.len(),
        })
    }
}

impl Handler<Hello> for Orchestrator {
    type Result = Result<Accepted, ErrorMessage>;

    fn handle(&mut self, msg: Hello, ctx: &mut Context<Self>) -> Self::Result {
        match registry::admit_agent(&self.state, &msg.subcloud, msg.not_before, dc_certs::now()) {
            Err(e) => {
                tracing::warn!(subcloud = %msg.subcloud, reason = %e.message, "agent refused");
                return Err(e);
            }
            Ok(Some(retire_older)) => {
                tracing::info!(subcloud = %msg.subcloud, "a newer agent certificate revokes the older ones");
                self.carry_out_now(retire_older, ctx);
            }
            Ok(None) => {}
        }
        let live = self.state.live.entry(msg.subcloud.clone()).or_default();
        let step = self.running.get(&msg.subcloud);
        if let Some(old) = live.session.replace(SessionRef {
            id: msg.session_id,
            addr: msg.session,
            heartbeat_seen: false,
            attached: false,
            can_roll_back: msg.can_roll_back,
        }) {
            tracing::info!(subcloud = %msg.subcloud, "a new connection replaces the old one");
            old.addr.do_send(Close(ErrorMessage::new(
                ErrorCode::Replaced,
                "replaced by a newer connection",
            )));
            if let Some(step) = step {
                step.do_send(Detach);
            }
        }
        tracing::info!(subcloud = %msg.subcloud, "agent connected");
        // A recent heartbeat may make it online again at once: say so, or a later disconnect that
        // ends where the last event left it would publish nothing.
        let route = step.map(|s| s.clone().recipient());
        self.announce_subcloud(&msg.subcloud);
        Ok(Accepted {
            heartbeat_interval_secs: self.cfg.heartbeat_interval_secs,
            route,
        })
    }
}

impl Handler<Renew> for Orchestrator {
    type Result = Result<(), String>;

    fn handle(&mut self, msg: Renew, _: &mut Context<Self>) -> Self::Result {
        let live = self
            .state
            .live
            .get(&msg.subcloud)
            .and_then(|l| l.session.as_ref())
            .is_some_and(|s| s.id == msg.session_id);
        if !self.state.subclouds.contains_key(&msg.subcloud) {
            Err(format!("subcloud '{}' is not registered", msg.subcloud))
        } else if !live {
            Err("this connection no longer speaks for the subcloud".to_owned())
        } else {
            Ok(())
        }
    }
}

/// Most alarms kept from one heartbeat: an agent reports two kinds at most; a flood is cut, not shown.
const MAX_ALARMS: usize = 8;

/// An agent's alarms as the controller keeps them: at most [`MAX_ALARMS`], each id and reason clipped.
fn bounded_alarms(alarms: Vec<Alarm>) -> Vec<Alarm> {
    let clip = |s: String, n: usize| s.chars().take(n).collect::<String>();
    alarms
        .into_iter()
        .take(MAX_ALARMS)
        .map(|a| Alarm {
            id: clip(a.id, 16),
            entity: clip(a.entity, 64),
            reason: clip(a.reason, 256),
            ..a
        })
        .collect()
}

impl Handler<Heartbeat> for Orchestrator {
    type Result = ();

    fn handle(&mut self, msg: Heartbeat, _: &mut Context<Self>) {
        let Some(live) = self.state.live.get_mut(&msg.subcloud) else {
            return;
        };
        let Some(session) = live.session.as_mut().filter(|s| s.id == msg.session_id) else {
            return;
        };
        let first = !session.heartbeat_seen;
        session.heartbeat_seen = true;
        let hb = msg.heartbeat;
        live.last_heartbeat = Some(Instant::now());
        live.last_heartbeat_at = Some(time::OffsetDateTime::now_utc());
        live.root_ca = hb.root_ca;
        live.alarms = bounded_alarms(hb.alarms);
        live.update = hb.update;
        if let Some(step) = self.running.get(&msg.subcloud) {
            if session.attached {
                step.do_send(Observed(live.update.clone()));
            } else {
                session.attached = true;
                step.do_send(Attach {
                    session: session.addr.clone().recipient(),
                    update: live.update.clone(),
                    can_roll_back: session.can_roll_back,
                });
            }
        }
        self.announce_subcloud(&msg.subcloud);
        if first {
            self.publish();
        }
    }
}

impl Handler<Closed> for Orchestrator {
    type Result = ();

    fn handle(&mut self, msg: Closed, _: &mut Context<Self>) {
        let Some(live) = self.state.live.get_mut(&msg.subcloud) else {
            return;
        };
        if live
            .session
            .as_ref()
            .is_some_and(|s| s.id == msg.session_id)
        {
            tracing::info!(subcloud = %msg.subcloud, "agent disconnected");
            live.session = None;
            if let Some(step) = self.running.get(&msg.subcloud) {
                step.do_send(Detach);
            }
            self.announce_subcloud(&msg.subcloud);
            self.publish();
        }
    }
}

impl Handler<Shutdown> for Orchestrator {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        for step in self.running.values() {
            step.do_send(Halt);
        }
        self.running.clear();
        for live in self.state.live.values_mut() {
            if let Some(s) = live.session.take() {
                s.addr.do_send(session::Close(ErrorMessage::new(
                    ErrorCode::Internal,
                    "the controller is stopping",
                )));
            }
        }
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use dc_protocol::AlarmSeverity;

    use super::*;

    #[test]
    fn a_flood_of_alarms_is_cut_and_each_clipped() {
        let alarm = |i: usize| Alarm {
            id: format!("500.{i}{}", "9".repeat(100)),
            entity: "e".repeat(1000),
            severity: AlarmSeverity::Major,
            reason: "r".repeat(10_000),
        };
        let kept = bounded_alarms((0..70_000).map(alarm).collect());
        assert_eq!(kept.len(), MAX_ALARMS);
        assert!(
            kept.iter().all(|a| a.id.chars().count() == 16
                && a.entity.len() == 64
                && a.reason.len() == 256)
        );
        assert_eq!(kept[1].id, "500.199999999999");
    }
}
