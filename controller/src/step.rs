//! The subcloud actor: one light actor per running step. It drives its subcloud's agent through the
//! update (Start, Abort), turns the agent's pushed progress into step state and details, and waits a
//! bounded time for an agent that dropped.
//!
//! It is sent what the orchestrator orders ([`Attach`], [`Detach`], [`Observed`], [`AbortStep`],
//! [`Halt`]) and, straight from the agent's session, the agent's update messages. It reports upward
//! through the recipients it was given ([`Reports`]): progress to the writer that batches it
//! ([`StepProgress`]), the end to the orchestrator ([`StepFinished`]), the only report that changes
//! the strategy.

use std::time::Duration;

use actix::{Actor, ActorContext, AsyncContext, Context, Handler, Message, Recipient, SpawnHandle};
use dc_protocol::{
    AgentMessage, Command, ControllerMessage, Phase, PhaseOutcome, PhaseState, RunState,
    UpdateParams, UpdateStatus,
};
use tokio::time::Instant;

use crate::model::{WARNING, step_state};
use crate::rules::{phase_done_details, progress_details};
use crate::session::{FromAgent, ToAgent};

/// Upward: the running step's state or details changed. `urgent` asks for an immediate write (a
/// transition or something an operator must see), otherwise the write is coalesced.
#[derive(Message, Debug, Clone, PartialEq)]
#[rtype(result = "()")]
pub struct StepProgress {
    /// The step's id.
    pub id: i64,
    pub state: String,
    pub details: String,
    pub urgent: bool,
    /// A phase that just succeeded and how long it took, for `/metrics`.
    pub phase_done: Option<(Phase, f64)>,
}

/// Upward: the step ended: `complete`, `failed` or `aborted`.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
#[rtype(result = "()")]
pub struct StepFinished {
    pub subcloud: String,
    pub state: &'static str,
    pub details: String,
}

/// Where a step actor reports.
#[derive(Clone)]
pub struct Reports {
    pub progress: Recipient<StepProgress>,
    pub finished: Recipient<StepFinished>,
}

/// The agent's session is (again) available, with its last reported update status.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Attach {
    pub session: Recipient<ToAgent>,
    pub update: Option<UpdateStatus>,
    /// The agent said it can roll back: a rollback step sends an older one nothing.
    pub can_roll_back: bool,
}

/// The agent's session dropped.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Detach;

/// The update status of a later heartbeat: catches an end the step missed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Observed(pub Option<UpdateStatus>);

/// Finish the current phase and stop (an abort, or stop-on-failure): `reason` goes into the details.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AbortStep {
    pub reason: String,
}

/// Stop without reporting (controller shutdown); the store keeps the step running for the next start.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Halt;

/// What a step actor starts from.
pub struct StepSpec {
    /// The step's id.
    pub id: i64,
    pub subcloud: String,
    pub update_id: String,
    pub params: UpdateParams,
    pub abort: Option<String>,
    pub agent_wait: Duration,
    pub state: String,
    pub resumed: bool,
}

/// One running step.
pub struct StepActor {
    id: i64,
    subcloud: String,
    update_id: String,
    params: UpdateParams,
    reports: Reports,
    session: Option<Recipient<ToAgent>>,
    /// Set once an abort is ordered; survives reconnects so the agent hears it.
    abort: Option<String>,
    agent_wait: Duration,
    wait_timer: Option<SpawnHandle>,
    last_seq: u64,
    phase: Option<Phase>,
    phase_started: Instant,
    state: String,
    /// Re-driven after a controller restart rather than freshly started.
    resumed: bool,
    done: bool,
}

impl StepActor {
    pub fn new(spec: StepSpec, reports: Reports) -> Self {
        Self {
            id: spec.id,
            subcloud: spec.subcloud,
            update_id: spec.update_id,
            params: spec.params,
            reports,
            session: None,
            abort: spec.abort,
            agent_wait: spec.agent_wait,
            wait_timer: None,
            last_seq: 0,
            phase: None,
            phase_started: Instant::now(),
            state: spec.state,
            resumed: spec.resumed,
            done: false,
        }
    }

    fn progress(
        &self,
        state: String,
        details: String,
        urgent: bool,
        phase_done: Option<(Phase, f64)>,
    ) {
        self.reports.progress.do_send(StepProgress {
            id: self.id,
            state,
            details,
            urgent,
            phase_done,
        });
    }

    fn finish(&mut self, state: &'static str, details: String, ctx: &mut Context<Self>) {
        if self.done {
            return;
        }
        self.done = true;
        tracing::info!(subcloud = %self.subcloud, state, %details, "step finished");
        self.reports.finished.do_send(StepFinished {
            subcloud: self.subcloud.clone(),
            state,
            details,
        });
        ctx.stop();
    }

    fn send(&self, command: Command) {
        match &self.session {
            Some(s) => s.do_send(ToAgent(ControllerMessage::Command(command))),
            None => tracing::debug!(subcloud = %self.subcloud, "no session; command deferred"),
        }
    }

    /// Sends the start; a rollback to an agent that cannot roll back (an older version, which would
    /// finish the update instead) fails the step saying so.
    fn start_command(&mut self, can_roll_back: bool, ctx: &mut Context<Self>) {
        if self.params.rollback && !can_roll_back {
            self.finish(
                step_state::FAILED,
                format!("{CANNOT_ROLL_BACK}; upgrade dc-agent on {}", self.subcloud),
                ctx,
            );
            return;
        }
        self.send(Command::Start {
            update_id: self.update_id.clone(),
            params: self.params.clone(),
        });
    }

    fn abort_command(&self) {
        self.send(Command::Abort {
            update_id: self.update_id.clone(),
        });
    }

    /// Waits for the agent, telling the operator why when `why` is given, and fails the step when the
    /// wait runs out.
    fn wait_for_agent(&mut self, why: Option<&str>, ctx: &mut Context<Self>) {
        if let Some(h) = self.wait_timer.take() {
            ctx.cancel_future(h);
        }
        let secs = self.agent_wait.as_secs();
        if let Some(why) = why {
            let phase = self.phase.map_or("the update", Phase::label);
            self.progress(
                self.state.clone(),
                format!("{why} during {phase}; waiting up to {secs} s for it to reconnect"),
                true,
                None,
            );
        }
        self.wait_timer = Some(ctx.run_later(self.agent_wait, move |act, ctx| {
            let phase = act.phase.map_or("the update", Phase::label);
            act.finish(
                step_state::FAILED,
                format!("{phase}: the agent did not reconnect within {secs} s"),
                ctx,
            );
        }));
    }

    /// Takes an update's end reported by a heartbeat (the agent may have finished while we were away).
    /// Returns whether the status was an end.
    fn take_end(&mut self, status: &UpdateStatus, ctx: &mut Context<Self>) -> bool {
        match &status.run {
            RunState::Completed => {
                let details = self.completed_details(&status.warnings);
                self.finish(step_state::COMPLETE, details, ctx);
                true
            }
            RunState::Failed { phase, reason } => {
                let details = self.failed_details(*phase, reason);
                self.finish(step_state::FAILED, details, ctx);
                true
            }
            RunState::Aborted { next } if self.abort.is_some() => {
                let reason = self.abort.clone().unwrap_or_default();
                let details = self.stopped_details(&reason, *next);
                self.finish(step_state::ABORTED, details, ctx);
                true
            }
            RunState::Aborted { .. } | RunState::Running => false,
        }
    }
}

impl StepActor {
    /// A completed step's details: a rollback says so; an update names its options and warnings.
    fn completed_details(&self, warnings: &[String]) -> String {
        if self.params.rollback {
            return format!("{ROLLED_BACK_DETAILS}; rollback 100% complete");
        }
        completed_details(warnings, &self.params.options)
    }

    /// A stopped step's details: an update names the phase it resumes at; a rollback's next step
    /// undoes a phase, whose name would mislead, so it says what resumes it.
    fn stopped_details(&self, reason: &str, next: Phase) -> String {
        if self.params.rollback {
            return format!(
                "{reason}: the rollback stopped after its step in progress; a rollback strategy resumes it"
            );
        }
        stopped_details(reason, next)
    }

    /// A failed step's details: a rollback's reason as the agent words it (`rolling back: <step>: …`,
    /// or why it cannot roll back at all), an update's after its phase.
    fn failed_details(&self, phase: Phase, reason: &str) -> String {
        if self.params.rollback {
            return reason.to_owned();
        }
        format!("{} failed: {reason}", phase.label())
    }

    /// The state an agent reported, if sysinv knows it for that phase; otherwise the phase's own
    /// in-progress state, and a warning: an agent's text is never stored, shown or used as a metrics
    /// label unchecked.
    fn checked_state(&self, phase: Phase, reported: &str) -> String {
        match phase.known_state(reported) {
            Some(state) => state.to_owned(),
            None => {
                let clipped: String = reported.chars().take(80).collect();
                tracing::warn!(subcloud = %self.subcloud, %phase, reported = %clipped, "unknown step state from the agent; replaced");
                phase.state_name(PhaseState::InProgress, false).to_owned()
            }
        }
    }
}

fn stopped_details(reason: &str, next: Phase) -> String {
    format!("{reason}: stopped before {}; resumable", next.label())
}

impl Actor for StepActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Until the orchestrator attaches a session, the agent is away; after a restart, say so.
        let why = self
            .resumed
            .then_some("the controller restarted; waiting for the agent");
        self.wait_for_agent(why, ctx);
    }
}

impl Handler<Attach> for StepActor {
    type Result = ();

    fn handle(&mut self, msg: Attach, ctx: &mut Context<Self>) {
        if let Some(h) = self.wait_timer.take() {
            ctx.cancel_future(h);
        }
        self.session = Some(msg.session);
        let ours = msg.update.filter(|u| u.update_id == self.update_id);
        match ours {
            Some(status) => {
                self.phase = Some(status.phase);
                self.last_seq = self.last_seq.max(status.last_seq);
                if self.take_end(&status, ctx) {
                    return;
                }
                if matches!(status.run, RunState::Aborted { .. }) {
                    // Stopped by an earlier abort that this strategy no longer wants: resume.
                    self.start_command(msg.can_roll_back, ctx);
                } else if self.abort.is_some() {
                    self.abort_command();
                }
                self.progress(
                    self.checked_state(status.phase, &status.state),
                    format!(
                        "agent connected; {} in progress; update {}% complete",
                        status.phase.label(),
                        status.percent
                    ),
                    true,
                    None,
                );
            }
            None if self.abort.is_some() => {
                let reason = self.abort.clone().unwrap_or_default();
                self.finish(
                    step_state::ABORTED,
                    format!("{reason}: the agent had not started the update"),
                    ctx,
                );
            }
            None => {
                tracing::info!(subcloud = %self.subcloud, update_id = %self.update_id, "starting the update");
                self.start_command(msg.can_roll_back, ctx);
            }
        }
    }
}

impl Handler<Detach> for StepActor {
    type Result = ();

    fn handle(&mut self, _: Detach, ctx: &mut Context<Self>) {
        self.session = None;
        self.wait_for_agent(Some("the agent disconnected"), ctx);
    }
}

impl Handler<Observed> for StepActor {
    type Result = ();

    fn handle(&mut self, msg: Observed, ctx: &mut Context<Self>) {
        if let Some(status) = msg.0.filter(|u| u.update_id == self.update_id) {
            self.take_end(&status, ctx);
        }
    }
}

impl Handler<AbortStep> for StepActor {
    type Result = ();

    fn handle(&mut self, msg: AbortStep, _: &mut Context<Self>) {
        if self.abort.is_none() {
            self.abort = Some(msg.reason);
            self.abort_command();
        }
    }
}

impl Handler<Halt> for StepActor {
    type Result = ();

    fn handle(&mut self, _: Halt, ctx: &mut Context<Self>) {
        self.done = true;
        ctx.stop();
    }
}

impl Handler<FromAgent> for StepActor {
    type Result = ();

    fn handle(&mut self, msg: FromAgent, ctx: &mut Context<Self>) {
        let (update_id, seq) = match &msg.0 {
            AgentMessage::Progress(p) => (&p.update_id, p.seq),
            AgentMessage::PhaseResult(r) => (&r.update_id, r.seq),
            AgentMessage::Stopped(s) => (&s.update_id, s.seq),
            _ => return,
        };
        if *update_id != self.update_id || seq <= self.last_seq {
            return;
        }
        self.last_seq = seq;
        match msg.0 {
            AgentMessage::Progress(p) => {
                let span =
                    tracing::debug_span!("phase", subcloud = %self.subcloud, phase = %p.phase);
                let _enter = span.enter();
                if self.phase != Some(p.phase) {
                    self.phase = Some(p.phase);
                    self.phase_started = Instant::now();
                }
                let state = self.checked_state(p.phase, &p.state);
                let urgent = state != self.state;
                self.state = state.clone();
                let details = progress_details(&p);
                self.progress(state, details, urgent, None);
            }
            AgentMessage::PhaseResult(r) => match r.outcome {
                PhaseOutcome::Succeeded
                    if r.phase == Phase::Complete || r.state == dc_protocol::STATE_ROLLED_BACK =>
                {
                    let details = self.completed_details(&r.warnings);
                    self.finish(step_state::COMPLETE, details, ctx);
                }
                PhaseOutcome::Succeeded => {
                    let took = if self.phase == Some(r.phase) {
                        self.phase_started.elapsed().as_secs_f64()
                    } else {
                        0.0
                    };
                    self.phase = r.phase.next();
                    self.phase_started = Instant::now();
                    self.state = self.checked_state(r.phase, &r.state);
                    let details = phase_done_details(&r);
                    self.progress(self.state.clone(), details, true, Some((r.phase, took)));
                }
                PhaseOutcome::Failed { reason } => {
                    let details = self.failed_details(r.phase, &reason);
                    self.finish(step_state::FAILED, details, ctx);
                }
            },
            AgentMessage::Stopped(s) => {
                let reason = self
                    .abort
                    .clone()
                    .unwrap_or_else(|| "stopped by the agent".to_owned());
                let details = self.stopped_details(&reason, s.next);
                self.finish(step_state::ABORTED, details, ctx);
            }
            _ => {}
        }
    }
}

/// Why a rollback step is not sent to an agent that did not say it can roll back.
pub const CANNOT_ROLL_BACK: &str = "cannot roll back: the subcloud's agent does not support rollback (an older version would finish the update instead)";

/// What a completed rollback step says.
pub const ROLLED_BACK_DETAILS: &str = "rolled back to the old root CA";

/// A completed step's details: the options it ran with (so `strategy-step show` says which were used
/// once progress has replaced the start's details), then the warnings the update completed with.
fn completed_details(warnings: &[String], options: &dc_protocol::SubcloudOptions) -> String {
    let mut details = format!("update completed; update 100% complete; options: {options}");
    for warning in warnings {
        details.push_str(&format!("; {WARNING}{warning}"));
    }
    details
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    /// What the step reported, in order, whichever recipient it went to.
    #[derive(Debug)]
    enum Report {
        Progress {
            state: String,
            details: String,
            urgent: bool,
        },
        Finished {
            state: &'static str,
            details: String,
        },
    }

    /// Stands in for the progress writer, the orchestrator and the agent's session.
    struct Collector {
        reports: mpsc::UnboundedSender<Report>,
        commands: mpsc::UnboundedSender<Command>,
    }

    impl Actor for Collector {
        type Context = Context<Self>;
    }

    impl Handler<StepProgress> for Collector {
        type Result = ();
        fn handle(&mut self, msg: StepProgress, _: &mut Context<Self>) {
            let _ = self.reports.send(Report::Progress {
                state: msg.state,
                details: msg.details,
                urgent: msg.urgent,
            });
        }
    }

    impl Handler<StepFinished> for Collector {
        type Result = ();
        fn handle(&mut self, msg: StepFinished, _: &mut Context<Self>) {
            let _ = self.reports.send(Report::Finished {
                state: msg.state,
                details: msg.details,
            });
        }
    }

    impl Handler<ToAgent> for Collector {
        type Result = ();
        fn handle(&mut self, msg: ToAgent, _: &mut Context<Self>) {
            if let ControllerMessage::Command(c) = msg.0 {
                let _ = self.commands.send(c);
            }
        }
    }

    struct Rig {
        step: actix::Addr<StepActor>,
        agent: Recipient<ToAgent>,
        reports: mpsc::UnboundedReceiver<Report>,
        commands: mpsc::UnboundedReceiver<Command>,
    }

    fn rig(abort: Option<&str>) -> Rig {
        rig_with(abort, UpdateParams::default())
    }

    fn rig_with(abort: Option<&str>, params: UpdateParams) -> Rig {
        let (rt, reports) = mpsc::unbounded_channel();
        let (ct, commands) = mpsc::unbounded_channel();
        let c = Collector {
            reports: rt,
            commands: ct,
        }
        .start();
        let spec = StepSpec {
            id: 1,
            subcloud: "s1".into(),
            update_id: "u1".into(),
            params,
            abort: abort.map(str::to_owned),
            agent_wait: Duration::from_secs(600),
            state: step_state::STARTING.into(),
            resumed: false,
        };
        Rig {
            step: StepActor::new(
                spec,
                Reports {
                    progress: c.clone().recipient(),
                    finished: c.clone().recipient(),
                },
            )
            .start(),
            agent: c.recipient(),
            reports,
            commands,
        }
    }

    fn status(run: RunState) -> UpdateStatus {
        UpdateStatus {
            update_id: "u1".into(),
            phase: Phase::HostsTrustBothCas,
            state: "updating-host-trust-both-cas".into(),
            percent: 30,
            run,
            last_seq: 5,
            since: None,
            new_ca: None,
            warnings: Vec::new(),
            rollback: false,
        }
    }

    #[actix::test]
    async fn a_dropped_agent_is_awaited_for_the_configured_time_then_failed() {
        tokio::time::pause();
        let mut r = rig(None);
        r.step.do_send(Attach {
            session: r.agent.clone(),
            update: None,
            can_roll_back: true,
        });
        assert!(matches!(
            r.commands.recv().await,
            Some(Command::Start { .. })
        ));
        r.step.do_send(Detach);
        let t0 = Instant::now();
        match r.reports.recv().await {
            Some(Report::Progress {
                details,
                urgent: true,
                ..
            }) => assert_eq!(
                details,
                "the agent disconnected during the update; waiting up to 600 s for it to reconnect"
            ),
            other => panic!("{other:?}"),
        }
        // The paused clock jumps to the timer.
        match r.reports.recv().await {
            Some(Report::Finished { state, details }) => {
                assert_eq!(state, step_state::FAILED);
                assert_eq!(
                    details,
                    "the update: the agent did not reconnect within 600 s"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(t0.elapsed() >= Duration::from_secs(600));
    }

    #[actix::test]
    async fn reconnect_in_time_cancels_the_wait_and_takes_the_agents_end() {
        tokio::time::pause();
        let mut r = rig(None);
        r.step.do_send(Detach);
        let _ = r.reports.recv().await;
        tokio::time::advance(Duration::from_secs(300)).await;
        // The agent finished while it was away, with a warning: the step says it too.
        r.step.do_send(Attach {
            session: r.agent.clone(),
            update: Some(UpdateStatus {
                warnings: vec!["1 running pod(s) would keep the old root CA alone".into()],
                ..status(RunState::Completed)
            }),
            can_roll_back: true,
        });
        match r.reports.recv().await {
            Some(Report::Finished { state, details }) => {
                assert_eq!(state, step_state::COMPLETE);
                assert_eq!(
                    details,
                    "update completed; update 100% complete; options: worker-apply-type parallel, \
                     max-parallel-workers 10, alarm-restriction-type relaxed; \
                     warning: 1 running pod(s) would keep the old root CA alone"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[actix::test]
    async fn abort_is_sent_on_reconnect_and_stopped_ends_aborted() {
        let mut r = rig(Some("aborted"));
        r.step.do_send(Attach {
            session: r.agent.clone(),
            update: Some(status(RunState::Running)),
            can_roll_back: true,
        });
        assert_eq!(
            r.commands.recv().await,
            Some(Command::Abort {
                update_id: "u1".into()
            })
        );
        let _connected = r.reports.recv().await;
        // A stale (already seen) sequence number is ignored; the next one counts.
        let stopped = |seq| {
            FromAgent(AgentMessage::Stopped(dc_protocol::Stopped {
                update_id: "u1".into(),
                seq,
                next: Phase::PodsTrustBothCas,
            }))
        };
        r.step.do_send(stopped(5));
        r.step.do_send(stopped(6));
        match r.reports.recv().await {
            Some(Report::Finished { state, details }) => {
                assert_eq!(state, step_state::ABORTED);
                assert_eq!(
                    details,
                    "aborted: stopped before pods trust-both-cas; resumable"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    /// An agent that did not say it can roll back (an older version) is never sent a rollback's start:
    /// it would finish the update instead. One that did gets the start.
    #[actix::test]
    async fn a_rollback_is_sent_only_to_an_agent_that_can_roll_back() {
        let rollback = UpdateParams {
            rollback: true,
            ..UpdateParams::default()
        };
        let mut r = rig_with(None, rollback.clone());
        r.step.do_send(Attach {
            session: r.agent.clone(),
            update: None,
            can_roll_back: false,
        });
        match r.reports.recv().await {
            Some(Report::Finished { state, details }) => {
                assert_eq!(state, step_state::FAILED);
                assert_eq!(
                    details,
                    format!("{CANNOT_ROLL_BACK}; upgrade dc-agent on s1")
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(r.commands.try_recv().is_err());
        let mut r = rig_with(None, rollback);
        r.step.do_send(Attach {
            session: r.agent.clone(),
            update: None,
            can_roll_back: true,
        });
        assert!(matches!(
            r.commands.recv().await,
            Some(Command::Start { params, .. }) if params.rollback
        ));
    }

    #[actix::test]
    async fn an_aborted_step_whose_agent_never_started_ends_aborted() {
        let mut r = rig(Some("aborted"));
        r.step.do_send(Attach {
            session: r.agent.clone(),
            update: None,
            can_roll_back: true,
        });
        match r.reports.recv().await {
            Some(Report::Finished { state, .. }) => assert_eq!(state, step_state::ABORTED),
            other => panic!("{other:?}"),
        }
        assert!(r.commands.try_recv().is_err());
    }

    #[actix::test]
    async fn a_state_the_agent_makes_up_is_replaced_by_its_phases_own() {
        let mut r = rig(None);
        r.step.do_send(Attach {
            session: r.agent.clone(),
            update: Some(status(RunState::Running)),
            can_roll_back: true,
        });
        let _connected = r.reports.recv().await;
        let progress = |seq, state: &str| {
            FromAgent(AgentMessage::Progress(dc_protocol::Progress {
                update_id: "u1".into(),
                seq,
                phase: Phase::PodsTrustBothCas,
                host: None,
                state: state.into(),
                phase_percent: 10,
                percent: 40,
                details: String::new(),
            }))
        };
        r.step
            .do_send(progress(6, "x\"} 1\ninjected_metric{by=\"agent\"} 666"));
        r.step.do_send(progress(7, "updating-pods-trust-both-cas"));
        for _ in 0..2 {
            match r.reports.recv().await {
                Some(Report::Progress { state, .. }) => {
                    assert_eq!(state, "updating-pods-trust-both-cas");
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
