//! The controller killed between every pair of its transitions: a store that stops writing at its
//! `k`-th transition is what a SIGKILL right after the transition before leaves on disk (nothing later
//! is durable, and the failed write stops the controller acting on it). A transition is a write the
//! controller acts on: a strategy created, applied or ended, a step started or ended; the phase
//! progress between them is not one (it is rewritten from the agents after a restart). For every `k` a
//! strategy reaches, a new controller on the same database, with the same real agents (in this process,
//! over mutual TLS), completes the strategy and every subcloud ends with the new CA alone.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::Harness;
use dc_controller::model::{Stage, StrategyState};
use dc_controller::orchestrator::ApiRequest;
use dc_controller::store::{Database, Op, Snapshot, Store, StoreError};
use dc_test_support::postgres::TestPostgres;

const SUBJECT: &str = "O=crash-points CN=crash-points-root";
const NAMES: [&str; 2] = ["cp1", "cp2"];

/// A store that takes `left` more transitions (and the progress between them), then fails every write;
/// counts the transitions it wrote.
struct CrashAfter {
    inner: Box<dyn Store>,
    left: Option<usize>,
    crashed: bool,
    stages: HashMap<i64, Stage>,
    transitions: Arc<AtomicUsize>,
}

impl CrashAfter {
    /// Whether the write holds a transition (and remembers the steps' stages it writes).
    fn transition(&mut self, ops: &[Op]) -> bool {
        let mut any = false;
        for op in ops {
            any |= match op {
                Op::PutStep(s) => self.stages.insert(s.id, s.stage) != Some(s.stage),
                _ => true,
            };
        }
        any
    }
}

impl Store for CrashAfter {
    fn load(&mut self) -> Result<Snapshot, StoreError> {
        self.inner.load()
    }

    fn apply(&mut self, ops: &[Op]) -> Result<(), StoreError> {
        let stages = self.stages.clone();
        let transition = self.transition(ops);
        if transition && self.left == Some(0) {
            self.crashed = true;
        }
        if self.crashed {
            self.stages = stages;
            return Err(StoreError::Closed);
        }
        self.inner.apply(ops)?;
        if transition {
            self.left = self.left.map(|n| n - 1);
            self.transitions.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

/// Where a run keeps its records: a SQLite file, or a new database on a PostgreSQL server.
#[derive(Clone, Copy)]
enum Backend<'a> {
    Sqlite,
    Postgres(&'a TestPostgres),
}

/// Runs one strategy with the controller's store failing at transition `crash_after` (never, with
/// `None`); when it fails, a new controller on the same database takes over. Returns how many
/// transitions the first controller wrote.
async fn run(backend: Backend<'_>, crash_after: Option<usize>) -> usize {
    let mut h = match backend {
        Backend::Sqlite => Harness::new(600).await,
        Backend::Postgres(server) => {
            let name = format!("crash_after_{}", crash_after.map_or(-1, |k| k as i64));
            let url = server.create_database(&name).expect("database");
            Harness::on_postgres(600, url, server.ca(), |_| {}).await
        }
    };
    for n in NAMES {
        h.register(n).await;
    }
    let agents_addr = h.ctl().agents_addr.to_string();
    // The controller under test: same database, same agent port, the crashing store.
    if let Some(c) = h.controller.take() {
        c.stop().await;
    }
    let mut first = h.config();
    first.agents.listen = agents_addr.clone();
    let written = Arc::new(AtomicUsize::new(0));
    let store = CrashAfter {
        inner: open(&h).await,
        left: crash_after,
        crashed: false,
        stages: HashMap::new(),
        transitions: written.clone(),
    };
    h.controller = Some(
        dc_controller::start_with_store(first, Box::new(store))
            .await
            .expect("start"),
    );
    let agents = common::spawn_agents(&h, &NAMES, &agents_addr, |_| false);
    h.wait_status(|s| s.reporting == NAMES.len()).await;

    let expiry = dc_certs::ExpiryDate::of(dc_certs::now() + 400 * 86400).expect("date");
    // The create or the apply may be the write that fails: each answer is what an operator would see.
    let created = h.api(common::create_request(SUBJECT, &expiry)).await;
    let applied = match created {
        Ok(_) => h.api(common::apply_request()).await.is_ok(),
        Err(_) => false,
    };

    // Either the strategy completes, or the store fails: then the controller is replaced.
    let failure = Arc::new(Mutex::new(None));
    {
        let mut failed = h.ctl().store_failure();
        let mut status = h.ctl().status();
        let failure = failure.clone();
        tokio::time::timeout(common::TIMEOUT, async move {
            tokio::select! {
                f = failed.wait_for(Option::is_some) => {
                    *failure.lock().expect("lock") = f.ok().and_then(|f| f.clone());
                }
                _ = status.wait_for(|s| s.strategy == Some(StrategyState::Complete)) => {}
            }
        })
        .await
        .expect("the strategy neither completed nor failed a write");
    }
    let made = written.load(Ordering::SeqCst);
    if failure.lock().expect("lock").is_some() {
        if let Some(c) = h.controller.take() {
            c.stop().await;
        }
        let mut again = h.config();
        again.agents.listen = agents_addr.clone();
        h.controller = Some(dc_controller::start(again).await.expect("restart"));
        h.wait_status(|s| s.reporting == NAMES.len()).await;
        // What the operator does next depends on what became durable before the crash.
        let state = h
            .api(ApiRequest::ShowStrategy)
            .await
            .ok()
            .and_then(|s| s["state"].as_str().map(str::to_owned));
        match state.as_deref() {
            None => {
                h.api(common::create_request(SUBJECT, &expiry))
                    .await
                    .expect("create after the crash");
                h.api(common::apply_request())
                    .await
                    .expect("apply after the crash");
            }
            Some("initial") => {
                h.api(common::apply_request())
                    .await
                    .expect("apply after the crash");
            }
            Some(_) => {}
        }
        h.wait_status(|s| s.strategy == Some(StrategyState::Complete))
            .await;
    } else {
        assert!(applied, "without a crash, create and apply succeed");
    }
    let steps = h.steps().await;
    for n in NAMES {
        assert_eq!(
            steps[n]["state"], "complete",
            "crash at transition {crash_after:?}: {n}: {}",
            steps[n]
        );
        common::assert_new_ca(&h, n, SUBJECT, expiry.not_after());
    }
    common::stop_all(&mut h, agents).await;
    made
}

/// The harness's database, opened off the actix thread (a server's client blocks).
async fn open(h: &Harness) -> Box<dyn Store> {
    let (db, ca) = (Database::of(&h.db), h.db_ca.clone());
    tokio::task::spawn_blocking(move || db.open(ca.as_deref()))
        .await
        .expect("open")
        .expect("database")
}

async fn killed_between_any_two_transitions(backend: Backend<'_>) {
    let transitions = run(backend, None).await;
    // Created, applied, the steps started and ended (two at once may share a write), completed.
    assert!(transitions >= 5, "{transitions} transitions");
    for k in 0..transitions {
        run(backend, Some(k)).await;
    }
}

#[actix_web::test]
async fn a_controller_killed_between_any_two_transitions_is_replaced_and_the_strategy_completes() {
    killed_between_any_two_transitions(Backend::Sqlite).await;
}

/// The same on PostgreSQL (a real server, a database per run): what the SQLite store makes durable
/// before the controller acts, the PostgreSQL store does too.
#[actix_web::test]
async fn on_postgresql_a_controller_killed_between_any_two_transitions_is_replaced_and_the_strategy_completes()
 {
    let server = TestPostgres::start().expect("postgresql");
    killed_between_any_two_transitions(Backend::Postgres(&server)).await;
}
