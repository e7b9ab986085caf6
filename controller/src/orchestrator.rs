//! The orchestrator actor: the registry of subclouds and groups, the agents' sessions, and the strategy
//! with its sliding window of step actors.
//!
//! One actor owns every record, so rules that span records (one strategy at a time, a subcloud in a
//! running step cannot be deleted) need no locks. Every change of a record is written to the store
//! *before* it is acted on: the write runs with `ctx.wait`, which holds the mailbox, and the action
//! (spawning a step, ordering an abort, answering the API) happens in its continuation. The exception is
//! a running step's progress: nothing is acted on because of it, so it is written without holding the
//! mailbox, many steps per transaction. Details alone are coalesced and flushed every
//! `progress_flush_ms`; a changed step state is written as soon as the store is free (one fsync per
//! batch, not per message: thousands of agents report at once).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use actix::{
    Actor, ActorContext, ActorFutureExt, Addr, AsyncContext, AtomicResponse, Context, Handler,
    Message, WrapFuture,
};
use dc_protocol::{
    AgentMessage, Alarm, ErrorCode, ErrorMessage, Phase, RootCaInfo, UpdateParams, UpdateStatus,
};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::ControllerConfig;
use crate::error::ApiError;
use crate::model::{
    ApplyType, DEFAULT_GROUP_ID, Group, LiveView, MAX_PARALLEL_LIMIT, Stage, Step, Strategy,
    StrategyState, Subcloud, SyncStatus, clip_details, now_string, step_state,
};
use crate::rules::{self, Candidate, GroupRef, Scope};
use crate::session::{Close, Session};
use crate::step::{self, AbortStep, Attach, Detach, Halt, Observed, Report, StepActor, StepSpec};
use crate::store::{Op, Snapshot, StoreActor, StoreError, Write};

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

/// An agent's current connection.
struct SessionRef {
    id: u64,
    addr: Addr<Session>,
    /// A heartbeat arrived on this session, so its update status is known.
    heartbeat_seen: bool,
    /// The running step (if any) has been given this session.
    attached: bool,
}

/// What the agent last reported.
#[derive(Default)]
struct Live {
    session: Option<SessionRef>,
    last_heartbeat: Option<Instant>,
    last_heartbeat_at: Option<String>,
    root_ca: Option<RootCaInfo>,
    alarms: Vec<Alarm>,
    update: Option<UpdateStatus>,
}

/// The orchestrator.
pub struct Orchestrator {
    cfg: Arc<ControllerConfig>,
    store: Addr<StoreActor>,
    groups: BTreeMap<i64, Group>,
    subclouds: BTreeMap<String, Subcloud>,
    live: HashMap<String, Live>,
    strategy: Option<Strategy>,
    /// Ordered by id.
    steps: Vec<Step>,
    /// Position of each subcloud's step in `steps`: progress arrives per subcloud, thousands at a time.
    step_index: HashMap<String, usize>,
    running: HashMap<String, Addr<StepActor>>,
    /// Steps whose progress details changed since the last flush.
    dirty: BTreeSet<i64>,
    /// A progress write is with the store.
    flushing: bool,
    /// A step's state changed while a write was with the store: write again as soon as it is done.
    urgent: bool,
    last_strategy_id: i64,
    phase_durations: BTreeMap<Phase, (f64, u64)>,
    status: watch::Sender<Status>,
}

/// A REST request, answered with the JSON body or an error.
#[derive(Debug)]
pub enum ApiRequest {
    ListSubclouds,
    ShowSubcloud(String),
    AddSubcloud(Value),
    PatchSubcloud(String, Value),
    DeleteSubcloud(String),
    ListGroups,
    ShowGroup(String),
    AddGroup(Value),
    PatchGroup(String, Value),
    DeleteGroup(String),
    GroupMembers(String),
    CreateStrategy(Value),
    ShowStrategy,
    DeleteStrategy,
    Action(Value),
    Steps,
    Step(String),
}

#[derive(Message)]
#[rtype(result = "Result<Value, ApiError>")]
pub struct Api(pub ApiRequest);

/// `/metrics` text.
#[derive(Message)]
#[rtype(result = "String")]
pub struct Metrics;

/// An agent said Hello; answers the heartbeat interval or why it is refused.
#[derive(Message)]
#[rtype(result = "Result<u32, ErrorMessage>")]
pub struct AgentHello {
    pub subcloud: String,
    pub session_id: u64,
    pub session: Addr<Session>,
}

/// A message from a greeted agent.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AgentSaid {
    pub subcloud: String,
    pub session_id: u64,
    pub message: AgentMessage,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionClosed {
    pub subcloud: String,
    pub session_id: u64,
}

/// From a step actor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StepReport {
    pub subcloud: String,
    pub report: Report,
}

/// A copy of every step, ordered by id: the steps list turns it into JSON on the HTTP worker, off the
/// orchestrator's thread (thousands of steps, read by a watching operator every few hundred ms).
#[derive(Message)]
#[rtype(result = "Vec<Step>")]
pub struct StepRows;

/// Flush coalesced details, stop step actors and sessions, then stop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// Refill the window and settle the strategy's state.
#[derive(Message)]
#[rtype(result = "()")]
struct Drive;

type Then =
    Box<dyn FnOnce(&mut Orchestrator, &mut Context<Orchestrator>) -> Result<Value, ApiError>>;

/// An API request's outcome: an answer now, or one after the ops are durable.
enum Outcome {
    Now(Result<Value, ApiError>),
    Write(Vec<Op>, Then),
}

/// `{"<key>": [items]}`, the items moved in (`json!` would copy them all again).
fn list(key: &str, items: Vec<Value>) -> Value {
    let mut object = serde_json::Map::new();
    object.insert(key.to_owned(), Value::Array(items));
    Value::Object(object)
}

/// The steps list's JSON.
pub fn steps_json(steps: &[Step]) -> Value {
    list("strategy-steps", steps.iter().map(Step::to_json).collect())
}

fn now_outcome(r: Result<Value, ApiError>) -> Outcome {
    Outcome::Now(r)
}

fn written(res: Result<Result<(), StoreError>, actix::MailboxError>) -> Result<(), String> {
    match res {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

fn strategy_not_found() -> ApiError {
    ApiError::not_found(format!(
        "Strategy of type '{}' not found",
        crate::model::STRATEGY_TYPE
    ))
}

/// Digits of a datetime, for update ids.
fn compact(datetime: &str) -> String {
    datetime.chars().filter(char::is_ascii_digit).collect()
}

fn index(steps: &[Step]) -> HashMap<String, usize> {
    steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.subcloud.clone(), i))
        .collect()
}

fn obj(body: &Value) -> Result<&serde_json::Map<String, Value>, ApiError> {
    body.as_object()
        .filter(|m| !m.is_empty())
        .ok_or_else(|| ApiError::bad_request("Body required"))
}

fn opt_str(body: &Value, key: &str) -> Result<Option<String>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::bad_request(format!("{key} must be a string"))),
    }
}

impl Orchestrator {
    pub fn new(
        cfg: Arc<ControllerConfig>,
        store: Addr<StoreActor>,
        snapshot: Snapshot,
        status: watch::Sender<Status>,
    ) -> Self {
        let last_strategy_id = snapshot.strategy.as_ref().map_or(0, |s| s.id);
        Self {
            cfg,
            store,
            groups: snapshot.groups.into_iter().map(|g| (g.id, g)).collect(),
            subclouds: snapshot
                .subclouds
                .into_iter()
                .map(|s| (s.name.clone(), s))
                .collect(),
            live: HashMap::new(),
            strategy: snapshot.strategy,
            step_index: index(&snapshot.steps),
            steps: snapshot.steps,
            running: HashMap::new(),
            dirty: BTreeSet::new(),
            flushing: false,
            urgent: false,
            last_strategy_id,
            phase_durations: BTreeMap::new(),
            status,
        }
    }

    // === persistence ===

    /// Writes `ops`, holding the mailbox, then runs `then`. A failed write is logged and `then` is not
    /// run: nothing is acted on that is not durable.
    fn write(
        &mut self,
        ctx: &mut Context<Self>,
        ops: Vec<Op>,
        then: impl FnOnce(&mut Self, &mut Context<Self>) + 'static,
    ) {
        if ops.is_empty() {
            return then(self, ctx);
        }
        let fut = self
            .store
            .send(Write(ops))
            .into_actor(self)
            .map(move |res, act, ctx| match written(res) {
                Ok(()) => then(act, ctx),
                Err(e) => tracing::error!(error = %e, "store write failed; change not applied"),
            });
        ctx.wait(fut);
    }

    fn dirty_ops(&mut self) -> Vec<Op> {
        std::mem::take(&mut self.dirty)
            .into_iter()
            .filter_map(|id| self.step_by_id(id))
            .map(|s| Op::PutStep(s.clone()))
            .collect()
    }

    /// Writes coalesced progress and waits for it (shutdown).
    fn flush(&mut self, ctx: &mut Context<Self>) {
        let ops = self.dirty_ops();
        self.write(ctx, ops, |_, _| {});
    }

    /// Writes coalesced progress in one transaction without holding the mailbox; when a step's state
    /// changed meanwhile, writes again once the store is done. The store applies writes in the order
    /// sent, so a later transition written with [`Self::write`] is never overtaken.
    fn flush_progress(&mut self, ctx: &mut Context<Self>) {
        if self.flushing {
            return;
        }
        self.urgent = false;
        let ops = self.dirty_ops();
        if ops.is_empty() {
            return;
        }
        self.flushing = true;
        let fut = self
            .store
            .send(Write(ops))
            .into_actor(self)
            .map(|res, act, ctx| {
                act.flushing = false;
                if let Err(e) = written(res) {
                    tracing::error!(error = %e, "progress write failed");
                }
                if act.urgent {
                    act.flush_progress(ctx);
                }
            });
        ctx.spawn(fut);
    }

    fn step_by_id(&self, id: i64) -> Option<&Step> {
        self.steps
            .binary_search_by_key(&id, |s| s.id)
            .ok()
            .and_then(|i| self.steps.get(i))
    }

    /// The subcloud's step while it runs.
    fn running_step(&mut self, subcloud: &str) -> Option<&mut Step> {
        let i = *self.step_index.get(subcloud)?;
        self.steps.get_mut(i).filter(|s| s.is_running())
    }

    fn publish(&self) {
        let status = Status {
            strategy: self.strategy.as_ref().map(|s| s.state),
            reporting: self
                .live
                .values()
                .filter(|l| l.session.as_ref().is_some_and(|s| s.heartbeat_seen))
                .count(),
            finished_steps: self
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

    // === subcloud facts ===

    fn online(&self, name: &str) -> bool {
        self.live.get(name).is_some_and(|l| {
            l.session.is_some()
                && l.last_heartbeat.is_some_and(|t| {
                    t.elapsed() <= Duration::from_secs(self.cfg.offline_after_secs)
                })
        })
    }

    fn live_view(&self, name: &str) -> LiveView {
        let online = self.online(name);
        let Some(l) = self.live.get(name) else {
            return LiveView::default();
        };
        LiveView {
            online,
            sync: Some(rules::kube_rootca_sync(
                online,
                l.root_ca.as_ref(),
                &l.alarms,
                dc_certs::now(),
                self.cfg.audit.expiring_days,
            )),
            root_ca: l.root_ca.clone(),
            alarms: l.alarms.iter().map(|a| a.id.clone()).collect(),
            last_heartbeat_at: l.last_heartbeat_at.clone(),
        }
    }

    fn sync_of(&self, name: &str) -> SyncStatus {
        self.live_view(name).sync.unwrap_or(SyncStatus::Unknown)
    }

    fn subcloud_json(&self, s: &Subcloud, aggregate: bool) -> Value {
        s.to_json(&self.live_view(&s.name), aggregate)
    }

    fn find_subcloud(&self, r: &str) -> Result<&Subcloud, ApiError> {
        self.subclouds
            .get(r)
            .or_else(|| {
                r.parse::<i64>()
                    .ok()
                    .and_then(|id| self.subclouds.values().find(|s| s.id == id))
            })
            .ok_or_else(|| ApiError::not_found("Subcloud not found"))
    }

    fn find_group(&self, r: &str) -> Result<&Group, ApiError> {
        r.parse::<i64>()
            .ok()
            .and_then(|id| self.groups.get(&id))
            .or_else(|| self.groups.values().find(|g| g.name == r))
            .ok_or_else(|| ApiError::not_found("Subcloud Group not found"))
    }

    fn group_of_value(&self, v: &Value) -> Result<i64, ApiError> {
        let invalid = || ApiError::bad_request("Invalid group_id");
        let g = match v {
            Value::Number(n) => n.as_i64().and_then(|id| self.groups.get(&id)),
            Value::String(s) => self.find_group(s).ok(),
            _ => None,
        };
        g.map(|g| g.id).ok_or_else(invalid)
    }

    // === subclouds API ===

    fn add_subcloud(&self, body: &Value) -> Outcome {
        let parsed = (|| {
            obj(body)?;
            let name =
                opt_str(body, "name")?.ok_or_else(|| ApiError::bad_request("name required"))?;
            dc_certs::pki::validate_subcloud_name(&name)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            if self.subclouds.contains_key(&name) {
                return Err(ApiError::refused(format!(
                    "Subcloud with name {name} already exists"
                )));
            }
            let group_id = match body.get("group_id").or_else(|| body.get("group")) {
                None | Some(Value::Null) => DEFAULT_GROUP_ID,
                Some(v) => self.group_of_value(v)?,
            };
            Ok(Subcloud {
                id: self.subclouds.values().map(|s| s.id).max().unwrap_or(0) + 1,
                name,
                description: opt_str(body, "description")?.unwrap_or_default(),
                location: opt_str(body, "location")?.unwrap_or_default(),
                group_id,
                managed: true,
                created_at: now_string(),
                updated_at: None,
            })
        })();
        match parsed {
            Err(e) => now_outcome(Err(e)),
            Ok(s) => Outcome::Write(
                vec![Op::PutSubcloud(s.clone())],
                Box::new(move |act, _| {
                    tracing::info!(subcloud = %s.name, "subcloud registered");
                    let v = act.subcloud_json(&s, false);
                    act.subclouds.insert(s.name.clone(), s);
                    Ok(v)
                }),
            ),
        }
    }

    fn patch_subcloud(&self, r: &str, body: &Value) -> Outcome {
        let parsed = (|| {
            let mut s = self.find_subcloud(r)?.clone();
            obj(body)?;
            let mut changed = false;
            if let Some(m) = opt_str(body, "management-state")? {
                s.managed = match m.as_str() {
                    "managed" => true,
                    "unmanaged" => false,
                    _ => return Err(ApiError::bad_request("Invalid management-state")),
                };
                changed = true;
            }
            if let Some(d) = opt_str(body, "description")? {
                s.description = d;
                changed = true;
            }
            if let Some(l) = opt_str(body, "location")? {
                s.location = l;
                changed = true;
            }
            if let Some(g) = body
                .get("group_id")
                .or_else(|| body.get("group"))
                .filter(|v| !v.is_null())
            {
                s.group_id = self.group_of_value(g)?;
                changed = true;
            }
            if !changed {
                return Err(ApiError::bad_request("nothing to update"));
            }
            s.updated_at = Some(now_string());
            Ok(s)
        })();
        match parsed {
            Err(e) => now_outcome(Err(e)),
            Ok(s) => Outcome::Write(
                vec![Op::PutSubcloud(s.clone())],
                Box::new(move |act, _| {
                    let v = act.subcloud_json(&s, false);
                    act.subclouds.insert(s.name.clone(), s);
                    Ok(v)
                }),
            ),
        }
    }

    fn delete_subcloud(&self, r: &str) -> Outcome {
        let s = match self.find_subcloud(r) {
            Ok(s) => s.clone(),
            Err(e) => return now_outcome(Err(e)),
        };
        if self.strategy.is_some() && self.step_index.contains_key(&s.name) {
            return now_outcome(Err(ApiError::refused(format!(
                "Subcloud {} is part of the {} strategy; delete the strategy first",
                s.name,
                crate::model::STRATEGY_TYPE
            ))));
        }
        Outcome::Write(
            vec![Op::DeleteSubcloud(s.id)],
            Box::new(move |act, _| {
                let v = act.subcloud_json(&s, false);
                act.subclouds.remove(&s.name);
                if let Some(session) = act.live.remove(&s.name).and_then(|l| l.session) {
                    session.addr.do_send(Close(ErrorMessage::new(
                        ErrorCode::UnknownSubcloud,
                        format!("subcloud '{}' was deleted", s.name),
                    )));
                }
                act.publish();
                Ok(v)
            }),
        )
    }

    // === groups API ===

    fn group_fields(&self, g: &mut Group, body: &Value) -> Result<(), ApiError> {
        if let Some(d) = opt_str(body, "description")? {
            g.description = d;
        }
        if let Some(t) = opt_str(body, "update_apply_type")? {
            g.update_apply_type = ApplyType::parse(&t)
                .ok_or_else(|| ApiError::bad_request("Invalid group update_apply_type"))?;
        }
        if let Some(v) = body.get("max_parallel_subclouds").filter(|v| !v.is_null()) {
            let n = match v {
                Value::Number(n) => n.as_i64(),
                Value::String(s) => s.parse().ok(),
                _ => None,
            }
            .filter(|n| (1..=i64::from(MAX_PARALLEL_LIMIT)).contains(n))
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| ApiError::bad_request("Invalid group max_parallel_subclouds"))?;
            g.max_parallel = n;
        }
        Ok(())
    }

    fn add_group(&self, body: &Value) -> Outcome {
        let parsed = (|| {
            obj(body)?;
            let name = opt_str(body, "name")?
                .filter(|n| !n.is_empty())
                .ok_or_else(|| ApiError::bad_request("name required"))?;
            if name.parse::<i64>().is_ok() {
                return Err(ApiError::bad_request("Invalid group name"));
            }
            if self.groups.values().any(|g| g.name == name) {
                return Err(ApiError::refused(format!(
                    "A subcloud group with name {name} already exists"
                )));
            }
            let mut g = Group {
                id: self
                    .groups
                    .keys()
                    .max()
                    .copied()
                    .unwrap_or(DEFAULT_GROUP_ID)
                    + 1,
                name,
                description: String::new(),
                update_apply_type: ApplyType::Parallel,
                max_parallel: crate::model::DEFAULT_MAX_PARALLEL,
                created_at: now_string(),
                updated_at: None,
            };
            self.group_fields(&mut g, body)?;
            Ok(g)
        })();
        put_group(parsed)
    }

    fn patch_group(&self, r: &str, body: &Value) -> Outcome {
        let parsed = (|| {
            let mut g = self.find_group(r)?.clone();
            obj(body)?;
            if let Some(name) = opt_str(body, "name")?.filter(|n| *n != g.name) {
                if g.id == DEFAULT_GROUP_ID {
                    return Err(ApiError::refused("Default group name cannot be changed"));
                }
                if name.is_empty() || name.parse::<i64>().is_ok() {
                    return Err(ApiError::bad_request("Invalid group name"));
                }
                if self.groups.values().any(|o| o.name == name) {
                    return Err(ApiError::refused(format!(
                        "A subcloud group with name {name} already exists"
                    )));
                }
                g.name = name;
            }
            self.group_fields(&mut g, body)?;
            g.updated_at = Some(now_string());
            Ok(g)
        })();
        put_group(parsed)
    }

    fn delete_group(&self, r: &str) -> Outcome {
        let g = match self.find_group(r) {
            Ok(g) => g.clone(),
            Err(e) => return now_outcome(Err(e)),
        };
        if g.id == DEFAULT_GROUP_ID {
            return now_outcome(Err(ApiError::refused(
                "Default Subcloud Group may not be deleted",
            )));
        }
        if self.subclouds.values().any(|s| s.group_id == g.id) {
            return now_outcome(Err(ApiError::refused(format!(
                "Subcloud group {} has subclouds; move them to another group before deleting it",
                g.name
            ))));
        }
        Outcome::Write(
            vec![Op::DeleteGroup(g.id)],
            Box::new(move |act, _| {
                act.groups.remove(&g.id);
                Ok(g.to_json())
            }),
        )
    }

    fn group_members(&self, r: &str) -> Result<Value, ApiError> {
        let g = self.find_group(r)?;
        let members: Vec<Value> = self
            .subclouds
            .values()
            .filter(|s| s.group_id == g.id)
            .map(|s| self.subcloud_json(s, true))
            .collect();
        Ok(json!({ "subclouds": members }))
    }

    // === strategy API ===

    fn create_strategy(&self, body: &Value) -> Outcome {
        let parsed = (|| {
            let req = rules::parse_create(body)?;
            let group = match &req.group {
                None => None,
                Some(GroupRef::Id(id)) => Some(
                    self.groups
                        .get(id)
                        .ok_or_else(|| ApiError::bad_request("Invalid group_id"))?,
                ),
                Some(GroupRef::Name(n)) => Some(
                    self.groups
                        .values()
                        .find(|g| &g.name == n)
                        .ok_or_else(|| ApiError::bad_request("Invalid group_id"))?,
                ),
            };
            let refuse = |why: &dyn std::fmt::Display| ApiError::strategy("create", why);
            if self.strategy.is_some() {
                return Err(refuse(&format!(
                    "Strategy of type: '{}' already exists",
                    crate::model::STRATEGY_TYPE
                )));
            }
            let now = dc_certs::now();
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
            let candidates: Vec<Candidate> = self
                .subclouds
                .values()
                .map(|s| Candidate {
                    name: s.name.clone(),
                    group_id: s.group_id,
                    managed: s.managed,
                    online: self.online(&s.name),
                    sync: self.sync_of(&s.name),
                })
                .collect();
            let mut targets =
                rules::select_targets(&candidates, &scope, req.force).map_err(|e| refuse(&e))?;
            // Steps in registration order, as dcmanager orders them by subcloud id.
            targets.sort_by_key(|n| self.subclouds.get(n).map_or(i64::MAX, |s| s.id));
            let (apply_type, max_parallel) = rules::resolve_window(&req, group);
            let created_at = now_string();
            let strategy = Strategy {
                id: self.last_strategy_id + 1,
                apply_type,
                max_parallel,
                stop_on_failure: req.stop_on_failure,
                state: StrategyState::Initial,
                subject: req.subject,
                expiry_date: req.expiry_date,
                cert_file: req.cert_file,
                created_at: created_at.clone(),
                updated_at: None,
            };
            let stamp = compact(&created_at);
            let steps: Vec<Step> = targets
                .into_iter()
                .zip(1..)
                .map(|(name, id)| Step {
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
                .collect();
            Ok((strategy, steps))
        })();
        match parsed {
            Err(e) => now_outcome(Err(e)),
            Ok((strategy, steps)) => {
                let mut ops = vec![Op::PutStrategy(strategy.clone())];
                ops.extend(steps.iter().cloned().map(Op::PutStep));
                Outcome::Write(
                    ops,
                    Box::new(move |act, _| {
                        tracing::info!(steps = steps.len(), "strategy created");
                        let v = strategy.to_json();
                        act.last_strategy_id = strategy.id;
                        act.strategy = Some(strategy);
                        act.step_index = index(&steps);
                        act.steps = steps;
                        act.publish();
                        Ok(v)
                    }),
                )
            }
        }
    }

    fn delete_strategy(&self) -> Outcome {
        let Some(strategy) = &self.strategy else {
            return now_outcome(Err(strategy_not_found()));
        };
        if !strategy.state.can_delete() {
            return now_outcome(Err(ApiError::strategy(
                "delete",
                format!(
                    "Strategy in state {} cannot be deleted",
                    strategy.state.as_str()
                ),
            )));
        }
        let mut shown = strategy.clone();
        shown.state = StrategyState::Deleting;
        shown.updated_at = Some(now_string());
        // Nothing runs in a deletable state, so the strategy goes at once; the answer says `deleting`
        // as dcmanager's did.
        Outcome::Write(
            vec![Op::DeleteStrategy],
            Box::new(move |act, _| {
                act.strategy = None;
                act.steps.clear();
                act.step_index.clear();
                act.dirty.clear();
                act.publish();
                Ok(shown.to_json())
            }),
        )
    }

    fn action(&self, body: &Value) -> Outcome {
        let action = match body.get("action") {
            None | Some(Value::Null) => {
                return now_outcome(Err(ApiError::bad_request("action required")));
            }
            Some(Value::String(a)) => a.clone(),
            Some(_) => return now_outcome(Err(ApiError::bad_request("action invalid"))),
        };
        let verb = match action.as_str() {
            "apply" => "apply",
            "abort" => "abort",
            _ => {
                return now_outcome(Err(ApiError::bad_request(format!(
                    "action {action} invalid"
                ))));
            }
        };
        let Some(strategy) = &self.strategy else {
            return now_outcome(Err(ApiError::refused(format!(
                "Unable to {verb} strategy of type '{t}': Strategy with type {t} doesn't exist.",
                t = crate::model::STRATEGY_TYPE
            ))));
        };
        let mut next = strategy.clone();
        next.updated_at = Some(now_string());
        if verb == "apply" {
            if !strategy.state.can_apply() {
                return now_outcome(Err(ApiError::strategy(
                    "apply",
                    format!(
                        "Strategy in state {} cannot be applied",
                        strategy.state.as_str()
                    ),
                )));
            }
            next.state = StrategyState::Applying;
            return Outcome::Write(
                vec![Op::PutStrategy(next.clone())],
                Box::new(move |act, ctx| {
                    tracing::info!("strategy applying");
                    let v = next.to_json();
                    act.strategy = Some(next);
                    act.publish();
                    ctx.notify(Drive);
                    Ok(v)
                }),
            );
        }
        if !strategy.state.can_abort() {
            return now_outcome(Err(ApiError::strategy(
                "abort",
                format!(
                    "Strategy in state {} cannot be aborted",
                    strategy.state.as_str()
                ),
            )));
        }
        next.state = StrategyState::AbortRequested;
        let mut ops = vec![Op::PutStrategy(next.clone())];
        let aborted = self.abort_waiting("aborted before it started");
        ops.extend(aborted.iter().cloned().map(Op::PutStep));
        Outcome::Write(
            ops,
            Box::new(move |act, ctx| {
                tracing::info!(aborted = aborted.len(), "strategy abort requested");
                let v = next.to_json();
                act.replace_steps(aborted);
                act.strategy = Some(next.clone());
                for step in act.running.values() {
                    step.do_send(AbortStep {
                        reason: "aborted".to_owned(),
                    });
                }
                // Every waiting step is aborted now; only running ones remain to wind down.
                let mut aborting = next;
                aborting.state = StrategyState::Aborting;
                act.write(
                    ctx,
                    vec![Op::PutStrategy(aborting.clone())],
                    move |act, ctx| {
                        act.strategy = Some(aborting);
                        act.publish();
                        ctx.notify(Drive);
                    },
                );
                Ok(v)
            }),
        )
    }

    /// The waiting steps as aborted rows, with `why` in their details.
    fn abort_waiting(&self, why: &str) -> Vec<Step> {
        let now = now_string();
        self.steps
            .iter()
            .filter(|s| s.is_waiting())
            .map(|s| Step {
                stage: Stage::Complete,
                state: step_state::ABORTED.to_owned(),
                details: why.to_owned(),
                finished_at: Some(now.clone()),
                updated_at: Some(now.clone()),
                ..s.clone()
            })
            .collect()
    }

    fn replace_steps(&mut self, rows: Vec<Step>) {
        for row in rows {
            self.dirty.remove(&row.id);
            if let Some(i) = self.step_index.get(&row.subcloud).copied()
                && let Some(s) = self.steps.get_mut(i)
            {
                *s = row;
            }
        }
    }

    fn api(&mut self, req: ApiRequest) -> Outcome {
        let found = |s: Option<&Strategy>| s.map(Strategy::to_json).ok_or_else(strategy_not_found);
        match req {
            ApiRequest::ListSubclouds => now_outcome(Ok(list(
                "subclouds",
                self.subclouds
                    .values()
                    .map(|s| self.subcloud_json(s, true))
                    .collect(),
            ))),
            ApiRequest::ShowSubcloud(r) => {
                now_outcome(self.find_subcloud(&r).map(|s| self.subcloud_json(s, false)))
            }
            ApiRequest::AddSubcloud(b) => self.add_subcloud(&b),
            ApiRequest::PatchSubcloud(r, b) => self.patch_subcloud(&r, &b),
            ApiRequest::DeleteSubcloud(r) => self.delete_subcloud(&r),
            ApiRequest::ListGroups => now_outcome(Ok(json!({
                "subcloud_groups": self.groups.values().map(Group::to_json).collect::<Vec<_>>()
            }))),
            ApiRequest::ShowGroup(r) => now_outcome(self.find_group(&r).map(Group::to_json)),
            ApiRequest::AddGroup(b) => self.add_group(&b),
            ApiRequest::PatchGroup(r, b) => self.patch_group(&r, &b),
            ApiRequest::DeleteGroup(r) => self.delete_group(&r),
            ApiRequest::GroupMembers(r) => now_outcome(self.group_members(&r)),
            ApiRequest::CreateStrategy(b) => self.create_strategy(&b),
            ApiRequest::ShowStrategy => now_outcome(found(self.strategy.as_ref())),
            ApiRequest::DeleteStrategy => self.delete_strategy(),
            ApiRequest::Action(b) => self.action(&b),
            ApiRequest::Steps => now_outcome(Ok(steps_json(&self.steps))),
            ApiRequest::Step(cloud) => now_outcome(
                self.steps
                    .iter()
                    .find(|s| s.subcloud == cloud)
                    .map(Step::to_json)
                    .ok_or_else(|| ApiError::not_found("Strategy step not found")),
            ),
        }
    }

    // === the window ===

    /// Why running steps must stop and waiting ones must not start, if they must.
    fn stop_reason(&self) -> Option<String> {
        let strategy = self.strategy.as_ref()?;
        match strategy.state {
            StrategyState::AbortRequested | StrategyState::Aborting => Some("aborted".to_owned()),
            _ if rules::stopped_by_failure(strategy.stop_on_failure, &self.steps) => {
                let failed = self
                    .steps
                    .iter()
                    .find(|s| s.state == step_state::FAILED)
                    .map_or("", |s| s.subcloud.as_str());
                Some(format!("stop-on-failure: subcloud {failed} failed"))
            }
            _ => None,
        }
    }

    fn update_params(&self) -> UpdateParams {
        self.strategy
            .as_ref()
            .map(|s| UpdateParams {
                subject: s.subject.clone(),
                expiry_date: s.expiry_date.clone(),
                cert_file: s.cert_file.clone(),
            })
            .unwrap_or_default()
    }

    fn spawn_step(&mut self, step: &Step, resumed: bool, ctx: &mut Context<Self>) {
        let spec = StepSpec {
            subcloud: step.subcloud.clone(),
            update_id: step.update_id.clone(),
            params: self.update_params(),
            abort: self.stop_reason(),
            agent_wait: Duration::from_secs(self.cfg.agent_wait_secs),
            state: step.state.clone(),
            resumed,
        };
        let actor = StepActor::new(spec, ctx.address().recipient()).start();
        if let Some(live) = self.live.get_mut(&step.subcloud)
            && let Some(session) = live.session.as_mut()
        {
            session.attached = session.heartbeat_seen;
            if session.heartbeat_seen {
                actor.do_send(Attach {
                    session: session.addr.clone().recipient(),
                    update: live.update.clone(),
                });
            }
        }
        self.running.insert(step.subcloud.clone(), actor);
    }

    /// Fills the window, or settles the strategy's end state when nothing is left to do.
    fn drive(&mut self, ctx: &mut Context<Self>) {
        let Some(strategy) = &self.strategy else {
            return;
        };
        if !strategy.state.is_active() {
            return;
        }
        if strategy.state == StrategyState::Applying {
            match self.stop_reason() {
                // Stop-on-failure tripped: running steps finish their phase (the order is idempotent),
                // waiting ones will never start. Done here rather than where the failure is seen, so a
                // restart between the two writes still settles.
                Some(reason) => {
                    for step in self.running.values() {
                        step.do_send(AbortStep {
                            reason: reason.clone(),
                        });
                    }
                    let aborted = self.abort_waiting(&format!("not started: {reason}"));
                    if !aborted.is_empty() {
                        let ops = aborted.iter().cloned().map(Op::PutStep).collect();
                        return self.write(ctx, ops, move |act, ctx| {
                            act.replace_steps(aborted);
                            act.publish();
                            ctx.notify(Drive);
                        });
                    }
                }
                None => {
                    let ids = rules::steps_to_start(&self.steps, strategy.max_parallel);
                    if !ids.is_empty() {
                        return self.start_steps(&ids, ctx);
                    }
                }
            }
        }
        if let Some(end) = rules::final_state(&self.steps) {
            let mut next = strategy.clone();
            next.state = end;
            next.updated_at = Some(now_string());
            self.write(ctx, vec![Op::PutStrategy(next.clone())], move |act, _| {
                tracing::info!(state = next.state.as_str(), "strategy finished");
                act.strategy = Some(next);
                act.publish();
            });
        }
    }

    fn start_steps(&mut self, ids: &[i64], ctx: &mut Context<Self>) {
        let now = now_string();
        let rows: Vec<Step> = self
            .steps
            .iter()
            .filter(|s| ids.contains(&s.id))
            .map(|s| match self.subclouds.get(&s.subcloud) {
                Some(sc) if sc.managed => Step {
                    stage: Stage::Apply,
                    state: step_state::STARTING.to_owned(),
                    details: "start sent to the agent".to_owned(),
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
        let ops = rows.iter().cloned().map(Op::PutStep).collect();
        self.write(ctx, ops, move |act, ctx| {
            for row in &rows {
                if row.is_running() {
                    tracing::info!(subcloud = %row.subcloud, "step started");
                    act.spawn_step(row, false, ctx);
                }
            }
            act.replace_steps(rows);
            act.publish();
            ctx.notify(Drive);
        });
    }

    /// A step ended: record it, then let [`Self::drive`] refill the window or stop the strategy.
    fn finish_step(
        &mut self,
        subcloud: &str,
        state: &'static str,
        details: String,
        ctx: &mut Context<Self>,
    ) {
        let Some(step) = self.running_step(subcloud) else {
            return;
        };
        let now = now_string();
        let row = Step {
            stage: Stage::Complete,
            state: state.to_owned(),
            details: clip_details(details),
            finished_at: Some(now.clone()),
            updated_at: Some(now),
            ..step.clone()
        };
        self.write(ctx, vec![Op::PutStep(row.clone())], move |act, ctx| {
            act.running.remove(&row.subcloud);
            act.replace_steps(vec![row]);
            act.publish();
            ctx.notify(Drive);
        });
    }

    fn step_progress(
        &mut self,
        subcloud: &str,
        state: String,
        details: String,
        urgent: bool,
        ctx: &mut Context<Self>,
    ) {
        let Some(step) = self.running_step(subcloud) else {
            return;
        };
        let urgent = urgent || step.state != state;
        step.state = state;
        step.details = clip_details(details);
        step.updated_at = Some(now_string());
        let id = step.id;
        self.dirty.insert(id);
        if urgent {
            self.urgent = true;
            self.flush_progress(ctx);
        }
    }

    // === metrics ===

    fn metrics(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP dc_strategies Strategies by state.\n# TYPE dc_strategies gauge"
        );
        for st in StrategyState::ALL {
            let n = u8::from(self.strategy.as_ref().is_some_and(|s| s.state == st));
            let _ = writeln!(out, "dc_strategies{{state=\"{}\"}} {n}", st.as_str());
        }
        let _ = writeln!(
            out,
            "# HELP dc_steps Strategy steps by state.\n# TYPE dc_steps gauge"
        );
        let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
        for s in &self.steps {
            *by_state.entry(s.state.as_str()).or_default() += 1;
        }
        for (state, n) in by_state {
            let _ = writeln!(out, "dc_steps{{state=\"{state}\"}} {n}");
        }
        let connected = self.live.values().filter(|l| l.session.is_some()).count();
        let _ = writeln!(
            out,
            "# HELP dc_connected_agents Agents with an open session.\n# TYPE dc_connected_agents gauge\ndc_connected_agents {connected}"
        );
        let online = self.live.keys().filter(|name| self.online(name)).count();
        let _ = writeln!(
            out,
            "# HELP dc_online_subclouds Subclouds whose agent is connected and heartbeating.\n# TYPE dc_online_subclouds gauge\ndc_online_subclouds {online}"
        );
        let _ = writeln!(
            out,
            "# HELP dc_subclouds Registered subclouds.\n# TYPE dc_subclouds gauge\ndc_subclouds {}",
            self.subclouds.len()
        );
        let _ = writeln!(
            out,
            "# HELP dc_phase_duration_seconds Duration of succeeded update phases.\n# TYPE dc_phase_duration_seconds summary"
        );
        for (phase, (sum, count)) in &self.phase_durations {
            let _ = writeln!(
                out,
                "dc_phase_duration_seconds_sum{{phase=\"{}\"}} {sum}",
                phase.label()
            );
            let _ = writeln!(
                out,
                "dc_phase_duration_seconds_count{{phase=\"{}\"}} {count}",
                phase.label()
            );
        }
        out
    }
}

impl Actor for Orchestrator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if !self.groups.contains_key(&DEFAULT_GROUP_ID) {
            let g = Group::default_group();
            self.write(ctx, vec![Op::PutGroup(g.clone())], move |act, _| {
                act.groups.insert(g.id, g);
            });
        }
        ctx.run_interval(
            Duration::from_millis(self.cfg.progress_flush_ms.max(10)),
            |act, ctx| act.flush_progress(ctx),
        );
        // Resume: steps that were running when the controller stopped are re-driven when their agents
        // reconnect; the window and the end state are settled from the store's records.
        if self.strategy.as_ref().is_some_and(|s| s.state.is_active()) {
            let running: Vec<Step> = self
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
        self.drive(ctx);
    }
}

impl Handler<Api> for Orchestrator {
    type Result = AtomicResponse<Self, Result<Value, ApiError>>;

    fn handle(&mut self, msg: Api, _: &mut Context<Self>) -> Self::Result {
        match self.api(msg.0) {
            Outcome::Now(r) => AtomicResponse::new(Box::pin(actix::fut::ready(r))),
            Outcome::Write(ops, then) => {
                AtomicResponse::new(Box::pin(self.store.send(Write(ops)).into_actor(self).map(
                    move |res, act, ctx| match written(res) {
                        Ok(()) => then(act, ctx),
                        Err(e) => Err(ApiError::internal(format!(
                            "the change could not be stored: {e}"
                        ))),
                    },
                )))
            }
        }
    }
}

impl Handler<StepRows> for Orchestrator {
    type Result = Vec<Step>;

    fn handle(&mut self, _: StepRows, _: &mut Context<Self>) -> Vec<Step> {
        self.steps.clone()
    }
}

impl Handler<Metrics> for Orchestrator {
    type Result = String;

    fn handle(&mut self, _: Metrics, _: &mut Context<Self>) -> String {
        self.metrics()
    }
}

impl Handler<AgentHello> for Orchestrator {
    type Result = Result<u32, ErrorMessage>;

    fn handle(&mut self, msg: AgentHello, _: &mut Context<Self>) -> Self::Result {
        if !self.subclouds.contains_key(&msg.subcloud) {
            tracing::warn!(subcloud = %msg.subcloud, "agent refused: subcloud not registered");
            return Err(ErrorMessage::new(
                ErrorCode::UnknownSubcloud,
                format!("subcloud '{}' is not registered", msg.subcloud),
            ));
        }
        let live = self.live.entry(msg.subcloud.clone()).or_default();
        if let Some(old) = live.session.replace(SessionRef {
            id: msg.session_id,
            addr: msg.session,
            heartbeat_seen: false,
            attached: false,
        }) {
            tracing::info!(subcloud = %msg.subcloud, "a new connection replaces the old one");
            old.addr.do_send(Close(ErrorMessage::new(
                ErrorCode::Replaced,
                "replaced by a newer connection",
            )));
            if let Some(step) = self.running.get(&msg.subcloud) {
                step.do_send(Detach);
            }
        }
        tracing::info!(subcloud = %msg.subcloud, "agent connected");
        Ok(self.cfg.heartbeat_interval_secs)
    }
}

impl Handler<AgentSaid> for Orchestrator {
    type Result = ();

    fn handle(&mut self, msg: AgentSaid, _: &mut Context<Self>) {
        let Some(live) = self.live.get_mut(&msg.subcloud) else {
            return;
        };
        let Some(session) = live.session.as_mut().filter(|s| s.id == msg.session_id) else {
            return;
        };
        let step = self.running.get(&msg.subcloud);
        match msg.message {
            AgentMessage::Heartbeat(hb) => {
                let first = !session.heartbeat_seen;
                session.heartbeat_seen = true;
                live.last_heartbeat = Some(Instant::now());
                live.last_heartbeat_at = Some(now_string());
                live.root_ca = hb.root_ca;
                live.alarms = hb.alarms;
                live.update = hb.update;
                if let Some(step) = step {
                    if session.attached {
                        step.do_send(Observed(live.update.clone()));
                    } else {
                        session.attached = true;
                        step.do_send(Attach {
                            session: session.addr.clone().recipient(),
                            update: live.update.clone(),
                        });
                    }
                }
                if first {
                    self.publish();
                }
            }
            m @ (AgentMessage::Progress(_)
            | AgentMessage::PhaseResult(_)
            | AgentMessage::Stopped(_)) => {
                if let Some(step) = step {
                    step.do_send(step::FromAgent(m));
                }
            }
            AgentMessage::Hello(_) | AgentMessage::Error(_) => {}
        }
    }
}

impl Handler<SessionClosed> for Orchestrator {
    type Result = ();

    fn handle(&mut self, msg: SessionClosed, _: &mut Context<Self>) {
        let Some(live) = self.live.get_mut(&msg.subcloud) else {
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
            self.publish();
        }
    }
}

impl Handler<StepReport> for Orchestrator {
    type Result = ();

    fn handle(&mut self, msg: StepReport, ctx: &mut Context<Self>) {
        match msg.report {
            Report::Progress {
                state,
                details,
                urgent,
                phase_done,
            } => {
                if let Some((phase, secs)) = phase_done {
                    let e = self.phase_durations.entry(phase).or_default();
                    e.0 += secs;
                    e.1 += 1;
                }
                self.step_progress(&msg.subcloud, state, details, urgent, ctx);
            }
            Report::Finished { state, details } => {
                self.finish_step(&msg.subcloud, state, details, ctx)
            }
        }
    }
}

impl Handler<Shutdown> for Orchestrator {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) -> Self::Result {
        self.flush(ctx);
        for step in self.running.values() {
            step.do_send(Halt);
        }
        self.running.clear();
        for live in self.live.values_mut() {
            if let Some(s) = live.session.take() {
                s.addr.do_send(Close(ErrorMessage::new(
                    ErrorCode::Internal,
                    "the controller is stopping",
                )));
            }
        }
        AtomicResponse::new(Box::pin(
            actix::fut::ready(()).map(|(), _: &mut Self, ctx: &mut Context<Self>| ctx.stop()),
        ))
    }
}

/// Writes a created or changed group, then keeps it in memory and answers with its JSON.
fn put_group(parsed: Result<Group, ApiError>) -> Outcome {
    match parsed {
        Err(e) => now_outcome(Err(e)),
        Ok(g) => Outcome::Write(
            vec![Op::PutGroup(g.clone())],
            Box::new(move |act, _| {
                let v = g.to_json();
                act.groups.insert(g.id, g);
                Ok(v)
            }),
        ),
    }
}
