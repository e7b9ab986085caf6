//! The progress writer: the one way to the store, and the steps as the API shows them.
//!
//! Two kinds of writes meet here, so their order is one:
//! - a transition the orchestrator acts on ([`Durable`]): written at once, and answered only when it
//!   is durable; the orchestrator holds its mailbox until then;
//! - a running step's progress ([`StepProgress`], straight from the step actor): nothing is acted on
//!   because of it, so it is kept here and written many steps per transaction. Details alone are
//!   coalesced and flushed every `progress_flush_ms`; a changed step state is written as soon as the
//!   store is free (one fsync per batch, not per message: thousands of agents report at once).
//!
//! Pending progress rides along with the next transition, in the same transaction and before it. The
//! store applies writes in the order sent, so a step's final row is never overtaken by its progress.
//!
//! A write that fails (disk full, I/O error) is fail-stop: the failure is announced on the channel the
//! writer was given, and the controller process stops, so that a restart recovers from what is durable
//! (steps re-driven from the agents' own records) instead of a strategy stranded by a dropped follow-up.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix::{
    Actor, ActorFutureExt, Addr, AsyncContext, Context, Handler, Message, MessageResult,
    ResponseActFuture, WrapFuture,
};
use tokio::sync::watch;

use crate::events::{EventHub, Kind};
use crate::model::{Step, clip_details, now_string};
use crate::step::StepProgress;
use crate::store::{Op, StoreActor, StoreError, Write};

use super::metrics::{self, StepFigures};

/// Write these ops (and the pending progress) now; answered once durable.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct Durable(pub Vec<Op>);

/// Write the pending progress and answer once durable (the controller is stopping).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Flush;

/// Every step, ordered by id, with its latest progress: the steps list turns it into JSON on the HTTP
/// worker (thousands of steps, read by a watching operator every few hundred ms).
#[derive(Message)]
#[rtype(result = "Vec<Step>")]
pub struct StepRows;

/// One subcloud's step.
#[derive(Message)]
#[rtype(result = "Option<Step>")]
pub struct StepOf(pub String);

/// The steps' figures for `/metrics`.
#[derive(Message)]
#[rtype(result = "StepFigures")]
pub struct Figures;

fn written(res: Result<Result<(), StoreError>, actix::MailboxError>) -> Result<(), String> {
    match res {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// The progress writer.
pub struct Persist {
    store: Addr<StoreActor>,
    /// Every step of the strategy, by id.
    rows: BTreeMap<i64, Step>,
    /// Steps whose progress changed since it was last written.
    dirty: BTreeSet<i64>,
    /// Steps whose final row is being written: their late progress is dropped.
    settling: HashSet<i64>,
    /// A progress write is with the store.
    flushing: bool,
    /// A step's state changed while a write was with the store: write again as soon as it is done.
    urgent: bool,
    flush_every: Duration,
    figures: StepFigures,
    /// Where a failed write is announced (the first one wins).
    failure: watch::Sender<Option<String>>,
    /// Every step change is published here as it becomes visible in the steps list.
    events: Arc<EventHub>,
}

impl Persist {
    pub fn new(
        store: Addr<StoreActor>,
        steps: Vec<Step>,
        flush_every: Duration,
        failure: watch::Sender<Option<String>>,
        events: Arc<EventHub>,
    ) -> Self {
        Self {
            store,
            rows: steps.into_iter().map(|s| (s.id, s)).collect(),
            dirty: BTreeSet::new(),
            settling: HashSet::new(),
            flushing: false,
            urgent: false,
            flush_every,
            figures: StepFigures::default(),
            failure,
            events,
        }
    }

    /// A write failed: nothing more may be acted on as if it were durable.
    fn failed(&self, what: &str, error: &str) {
        tracing::error!(
            error,
            "{what} failed: stopping, a restart recovers from what is durable"
        );
        self.failure.send_if_modified(|f| {
            let first = f.is_none();
            if first {
                *f = Some(format!("{what} failed: {error}"));
            }
            first
        });
    }

    fn dirty_ops(&mut self) -> Vec<Op> {
        std::mem::take(&mut self.dirty)
            .into_iter()
            .filter_map(|id| self.rows.get(&id))
            .map(|s| Op::PutStep(s.clone()))
            .collect()
    }

    /// Writes pending progress in one transaction without waiting for it; when a step's state changed
    /// meanwhile, writes again once the store is done.
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
                    act.failed("progress write", &e);
                }
                if act.urgent {
                    act.flush_progress(ctx);
                }
            });
        ctx.spawn(fut);
    }

    /// Makes durable ops true in the rows.
    fn apply(&mut self, ops: &[Op]) {
        for op in ops {
            match op {
                Op::PutStep(row) => {
                    self.settling.remove(&row.id);
                    self.rows.insert(row.id, row.clone());
                    self.events.publish(Kind::Step, &row.to_json());
                }
                Op::DeleteStrategy => self.rows.clear(),
                _ => {}
            }
        }
    }
}

impl Actor for Persist {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.flush_every, |act, ctx| act.flush_progress(ctx));
    }
}

impl Handler<StepProgress> for Persist {
    type Result = ();

    fn handle(&mut self, msg: StepProgress, ctx: &mut Context<Self>) {
        if self.settling.contains(&msg.id) {
            return;
        }
        let Some(step) = self.rows.get_mut(&msg.id).filter(|s| s.is_running()) else {
            return;
        };
        if let Some((phase, secs)) = msg.phase_done {
            metrics::observe_phase(&self.figures.phase_durations, phase, secs);
        }
        let urgent = msg.urgent || step.state != msg.state;
        let details = clip_details(msg.details);
        let changed = step.state != msg.state || step.details != details;
        step.state = msg.state;
        step.details = details;
        step.updated_at = Some(now_string());
        if changed {
            self.events.publish(Kind::Step, &step.to_json());
        }
        self.dirty.insert(msg.id);
        if urgent {
            self.urgent = true;
            self.flush_progress(ctx);
        }
    }
}

impl Handler<Durable> for Persist {
    type Result = ResponseActFuture<Self, Result<(), String>>;

    fn handle(&mut self, msg: Durable, _: &mut Context<Self>) -> Self::Result {
        for op in &msg.0 {
            match op {
                Op::PutStep(row) => {
                    // The change's row replaces the pending progress of its step.
                    self.dirty.remove(&row.id);
                    if !row.is_running() {
                        self.settling.insert(row.id);
                    }
                }
                Op::DeleteStrategy => self.dirty.clear(),
                _ => {}
            }
        }
        let mut ops = self.dirty_ops();
        ops.extend(msg.0.iter().cloned());
        let change = msg.0;
        Box::pin(
            self.store
                .send(Write(ops))
                .into_actor(self)
                .map(move |res, act, _| {
                    let res = written(res);
                    match &res {
                        Ok(()) => act.apply(&change),
                        Err(e) => act.failed("store write", e),
                    }
                    res
                }),
        )
    }
}

impl Handler<Flush> for Persist {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Flush, _: &mut Context<Self>) -> Self::Result {
        let ops = self.dirty_ops();
        if ops.is_empty() {
            return Box::pin(actix::fut::ready(()));
        }
        Box::pin(
            self.store
                .send(Write(ops))
                .into_actor(self)
                .map(|res, act, _| {
                    if let Err(e) = written(res) {
                        act.failed("progress write", &e);
                    }
                }),
        )
    }
}

impl Handler<StepRows> for Persist {
    type Result = Vec<Step>;

    fn handle(&mut self, _: StepRows, _: &mut Context<Self>) -> Vec<Step> {
        self.rows.values().cloned().collect()
    }
}

impl Handler<StepOf> for Persist {
    type Result = Option<Step>;

    fn handle(&mut self, msg: StepOf, _: &mut Context<Self>) -> Option<Step> {
        self.rows.values().find(|s| s.subcloud == msg.0).cloned()
    }
}

impl Handler<Figures> for Persist {
    type Result = MessageResult<Figures>;

    fn handle(&mut self, _: Figures, _: &mut Context<Self>) -> Self::Result {
        let mut figures = self.figures.clone();
        for s in self.rows.values() {
            *figures.steps_by_state.entry(s.state.clone()).or_default() += 1;
        }
        MessageResult(figures)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::model::{Stage, step_state};
    use crate::store::{Snapshot, Store, start_store};

    /// Keeps every transaction's ops.
    struct Recorder(Arc<Mutex<Vec<Vec<Op>>>>);

    impl Store for Recorder {
        fn load(&mut self) -> Result<Snapshot, StoreError> {
            Ok(Snapshot::default())
        }
        fn apply(&mut self, ops: &[Op]) -> Result<(), StoreError> {
            if let Ok(mut t) = self.0.lock() {
                t.push(ops.to_vec());
            }
            Ok(())
        }
    }

    fn running(id: i64) -> Step {
        Step {
            id,
            subcloud: format!("s{id}"),
            update_id: "u".into(),
            stage: Stage::Apply,
            state: step_state::STARTING.into(),
            details: String::new(),
            started_at: None,
            finished_at: None,
            created_at: now_string(),
            updated_at: None,
        }
    }

    fn progress(id: i64, state: &str, details: &str) -> StepProgress {
        StepProgress {
            id,
            state: state.into(),
            details: details.into(),
            urgent: false,
            phase_done: None,
        }
    }

    fn details(ops: &[Op]) -> Vec<(i64, String)> {
        ops.iter()
            .filter_map(|op| match op {
                Op::PutStep(s) => Some((s.id, s.details.clone())),
                _ => None,
            })
            .collect()
    }

    #[actix::test]
    async fn progress_is_batched_and_never_overtakes_a_final_row() {
        let written = Arc::new(Mutex::new(Vec::new()));
        let store = start_store(Box::new(Recorder(written.clone())));
        let hour = Duration::from_secs(3600);
        let (failure, _) = watch::channel(None);
        let persist = Persist::new(
            store,
            vec![running(1), running(2)],
            hour,
            failure,
            EventHub::new(),
        )
        .start();
        let taken = || std::mem::take(&mut *written.lock().expect("lock"));
        // Details alone are coalesced: a hundred messages, one row per step, in one transaction.
        for i in 0..100 {
            persist.do_send(progress(1, step_state::STARTING, &format!("d{i}")));
            persist.do_send(progress(2, step_state::STARTING, &format!("e{i}")));
        }
        persist.send(Flush).await.expect("flushed");
        let transactions = taken();
        assert_eq!(transactions.len(), 1, "{transactions:?}");
        assert_eq!(
            details(&transactions[0]),
            [(1, "d99".into()), (2, "e99".into())]
        );

        // Pending progress rides with the next transition, before it; the step's own final row
        // replaces its progress, and progress arriving after it is dropped.
        persist.do_send(progress(1, step_state::STARTING, "late for 1"));
        persist.do_send(progress(2, step_state::STARTING, "pending for 2"));
        let mut end = running(1);
        end.stage = Stage::Complete;
        end.state = step_state::COMPLETE.into();
        end.details = "done".into();
        persist
            .send(Durable(vec![Op::PutStep(end)]))
            .await
            .expect("answered")
            .expect("durable");
        persist.do_send(progress(1, step_state::STARTING, "after the end"));
        persist.send(Flush).await.expect("flushed");
        let transactions = taken();
        assert_eq!(
            transactions.len(),
            1,
            "nothing left to flush: {transactions:?}"
        );
        assert_eq!(
            details(&transactions[0]),
            [(2, "pending for 2".into()), (1, "done".into())]
        );
        let rows = persist.send(StepRows).await.expect("rows");
        assert_eq!(rows[0].details, "done");
        assert_eq!(rows[1].details, "pending for 2");
    }

    #[actix::test]
    async fn each_visible_step_change_is_published_once_as_the_steps_list_shows_it() {
        let store = start_store(Box::new(Recorder(Arc::new(Mutex::new(Vec::new())))));
        let (failure, _) = watch::channel(None);
        let events = EventHub::with("e".into(), 100, 100);
        let persist = Persist::new(
            store,
            vec![running(1)],
            Duration::from_secs(3600),
            failure,
            events.clone(),
        )
        .start();
        persist.do_send(progress(1, step_state::STARTING, "10% complete"));
        persist.do_send(progress(1, step_state::STARTING, "10% complete"));
        persist.do_send(progress(1, "updating-host-trust-both-cas", "20% complete"));
        let mut end = running(1);
        end.stage = Stage::Complete;
        end.state = step_state::COMPLETE.into();
        persist
            .send(Durable(vec![Op::PutStep(end)]))
            .await
            .expect("answered")
            .expect("durable");
        let Some(crate::events::Subscription {
            start: crate::events::Start::Backlog(frames),
            ..
        }) = events.subscribe(Some("e-0"))
        else {
            panic!("every event is still in the ring")
        };
        let shown: Vec<(String, String)> = frames
            .iter()
            .map(|f| {
                let text = std::str::from_utf8(&f.bytes).expect("utf-8");
                let data = text
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .expect("data");
                let step: serde_json::Value = serde_json::from_str(data).expect("JSON");
                assert!(text.contains("\nevent: step\n"), "{text}");
                (
                    step["state"].as_str().unwrap_or_default().to_owned(),
                    step["details"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                (step_state::STARTING.to_owned(), "10% complete".to_owned()),
                (
                    "updating-host-trust-both-cas".to_owned(),
                    "20% complete".to_owned()
                ),
                (step_state::COMPLETE.to_owned(), String::new()),
            ],
            "the repeated progress is not published again"
        );
    }

    /// A store whose disk is full.
    struct Full;

    impl Store for Full {
        fn load(&mut self) -> Result<Snapshot, StoreError> {
            Ok(Snapshot::default())
        }
        fn apply(&mut self, _: &[Op]) -> Result<(), StoreError> {
            Err(StoreError::Sqlite(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                None,
            )))
        }
    }

    #[actix::test]
    async fn a_failed_write_is_refused_to_the_caller_and_announced_once() {
        let store = start_store(Box::new(Full));
        let (failure, mut announced) = watch::channel(None);
        let persist = Persist::new(
            store,
            vec![running(1)],
            Duration::from_secs(3600),
            failure,
            EventHub::new(),
        )
        .start();
        let mut end = running(1);
        end.state = step_state::COMPLETE.into();
        let answer = persist
            .send(Durable(vec![Op::PutStep(end)]))
            .await
            .expect("answered");
        assert!(answer.is_err(), "not durable, not applied");
        let rows = persist.send(StepRows).await.expect("rows");
        assert_eq!(rows[0].state, step_state::STARTING);
        let why = announced
            .wait_for(Option::is_some)
            .await
            .expect("announced")
            .clone();
        assert!(
            why.is_some_and(|w| w.starts_with("store write failed: database")),
            "names the write and the reason"
        );
    }
}
