//! The update: its eight phases, run in order against a [`Cluster`], each recorded in the [`Journal`]
//! before it acts, so a restart at any instant resumes where it stopped without applying anything twice
//! in a harmful way. Each phase module says what makes it safe to repeat.
//!
//! # Layout
//! - this module: [`Updater`], which handles start and abort commands and runs the phases in order;
//! - [`admit`]: what a start command does with the recorded update (begin, resume, take over);
//! - [`context`]: what a phase acts through ([`PhaseContext`]) and how it fails ([`PhaseError`]);
//! - one module per phase or phase family: [`start`], [`new_ca`], [`hosts`] (the three host phases,
//!   driven by the [`plan`] table), [`pods`] (both pods phases), [`complete`];
//! - [`rollback`]: the steps that take an unfinished update back to the old root CA, run by the same
//!   executors (host plans, pods restarts), journaled and resumed the same way; [`old_ca`] keeps the
//!   old key they need.

pub mod admit;
pub mod apply_type;
pub mod complete;
pub mod context;
pub mod health;
pub mod hosts;
pub mod join;
pub mod new_ca;
pub mod old_ca;
pub mod plan;
pub mod pods;
pub mod published;
pub mod repair;
pub mod rollback;
pub mod start;
pub mod stranded;

use std::sync::atomic::{AtomicBool, Ordering};

use dc_protocol::{
    AgentMessage, Phase, PhaseOutcome, PhaseResult, PhaseState, Progress, ROLLING_BACK, RunState,
    UpdateParams,
};
use tracing::{Instrument, info, info_span, warn};

pub use admit::{Admission, admit, admit_rollback};
pub use context::{PhaseContext, PhaseError, Settings};

use crate::cluster::Cluster;
use crate::journal::{Journal, JournalError, RollbackStep, UpdateRecord};
use crate::trust;

/// What the engine does after a start command.
#[derive(Debug, PartialEq, Eq)]
pub enum StartDecision {
    /// Run the recorded update now: a new one, or one resumed or taken over at its first unfinished
    /// phase.
    Run,
    /// The recorded update already runs (now perhaps under the command's id): nothing more to start.
    Running,
    /// This update already completed; its final result was sent again.
    AlreadyCompleted,
    /// Refused (a rollback past the point of no return, say): the reason went to the controller as
    /// the command's failure; the recorded update is unchanged.
    Refused,
}
/// Runs updates against one cluster.
#[derive(Debug)]
pub struct Updater<C> {
    cluster: C,
    journal: Journal,
    settings: Settings,
    abort: AtomicBool,
    /// Trust verdicts reached so far, reused by the checks after every host and workload.
    verified: trust::Verified,
}

impl<C: Cluster> Updater<C> {
    pub fn new(cluster: C, journal: Journal, settings: Settings) -> Self {
        backfill_new_ca(&journal);
        Self {
            cluster,
            journal,
            settings,
            abort: AtomicBool::new(false),
            verified: trust::Verified::default(),
        }
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    pub fn cluster(&self) -> &C {
        &self.cluster
    }

    /// Whether the recorded update should run now (it was running when the agent stopped).
    pub fn should_resume(&self) -> bool {
        self.journal
            .record()
            .is_some_and(|r| r.run == RunState::Running)
    }

    /// Handles a start command as [`admit`] decides; `running` tells whether the recorded update runs
    /// now. A rollback that could not finish is refused here, before it changes anything.
    pub async fn start(
        &self,
        update_id: &str,
        params: UpdateParams,
        running: bool,
    ) -> Result<StartDecision, JournalError> {
        let record = self.journal.record();
        let mut admission = if params.rollback {
            admit_rollback(record.as_ref(), update_id, running)
        } else {
            admit(record.as_ref(), update_id, running)
        };
        if let Admission::BeginRollback { steps, .. } = &admission
            && let Some(why) = self.rollback_cannot_finish(steps).await
        {
            admission = Admission::Refuse(why);
        }
        // A command that (re)starts or takes over an update decides anew: an abort requested earlier no
        // longer holds. A repeated start of the running update leaves a pending abort alone.
        if matches!(
            admission,
            Admission::Begin
                | Admission::Resume
                | Admission::TakeOver { .. }
                | Admission::BeginRollback { .. }
        ) {
            self.abort.store(false, Ordering::SeqCst);
        }
        match admission {
            Admission::Begin => {
                self.journal.begin(update_id, params)?;
                Ok(StartDecision::Run)
            }
            Admission::Resume => {
                info!(
                    update_id,
                    "resuming the update at its first unfinished phase"
                );
                self.journal.update(
                    |r| {
                        resume(r);
                        adopt_consent(r, &params);
                    },
                    |_, _| None,
                )?;
                Ok(StartDecision::Run)
            }
            Admission::AlreadyRunning => {
                self.journal.progress(
                    None,
                    0,
                    "start acknowledged: the update is already running".to_owned(),
                )?;
                Ok(StartDecision::Running)
            }
            Admission::AlreadyCompleted => {
                self.journal.update(
                    |_| {},
                    |r, seq| {
                        Some(AgentMessage::PhaseResult(PhaseResult {
                            update_id: r.update_id.clone(),
                            seq,
                            phase: Phase::Complete,
                            outcome: PhaseOutcome::Succeeded,
                            state: r.state().to_owned(),
                            percent: 100,
                            warnings: r.all_warnings(),
                        }))
                    },
                )?;
                Ok(StartDecision::AlreadyCompleted)
            }
            Admission::Refuse(reason) => {
                warn!(update_id, %reason, "start refused");
                self.journal.refuse(update_id, reason)?;
                Ok(StartDecision::Refused)
            }
            Admission::BeginRollback { previous, steps } => {
                info!(
                    update_id,
                    previous,
                    ?steps,
                    "rolling the unfinished update back"
                );
                self.journal.begin_rollback(update_id, steps)?;
                Ok(StartDecision::Run)
            }
            Admission::TakeOver { previous } => {
                let details = record
                    .as_ref()
                    .map(|r| match r.rollback {
                        Some(_) => format!("continuing the rollback of {previous}"),
                        None => take_over_details(&previous, r, &params),
                    })
                    .unwrap_or_default();
                info!(update_id, previous, "taking over the unfinished update");
                self.journal.update(
                    |r| {
                        r.update_id = update_id.to_owned();
                        resume(r);
                        adopt_consent(r, &params);
                    },
                    |r, seq| {
                        Some(AgentMessage::Progress(Progress {
                            update_id: r.update_id.clone(),
                            seq,
                            phase: r.phase,
                            host: None,
                            state: r.state().to_owned(),
                            phase_percent: 0,
                            percent: r.percent(0),
                            details,
                        }))
                    },
                )?;
                Ok(if running {
                    StartDecision::Running
                } else {
                    StartDecision::Run
                })
            }
        }
    }

    /// Why a rollback with these steps could not finish, found before it begins: each host step
    /// re-issues from the old CA or puts its key back, so without that key the rollback would fail
    /// at its first host after changing the subcloud, and an update over it is refused.
    async fn rollback_cannot_finish(&self, steps: &[RollbackStep]) -> Option<String> {
        if !steps.iter().any(|&s| rollback::host_plan(s).is_some()) {
            return None;
        }
        let loaded = old_ca::load(&self.context()).await;
        loaded
            .err()
            .map(|e| format!("{}: {e}", admit::ROLLBACK_WITHOUT_OLD_KEY))
    }

    /// Asks the running update to stop after the phase in progress.
    pub fn request_abort(&self) {
        self.abort.store(true, Ordering::SeqCst);
    }

    /// Stops an update that is not running (failed, or never resumed) at once.
    pub fn abort_idle(&self) -> Result<(), JournalError> {
        match self.journal.record() {
            Some(r) if !matches!(r.run, RunState::Completed | RunState::Aborted { .. }) => {
                self.journal.stop()
            }
            _ => Ok(()),
        }
    }

    /// Runs the recorded update from its first unfinished phase until it completes, fails or is
    /// aborted. Dropping the future at any await point is a crash the next run recovers from.
    pub async fn run(&self) -> Result<(), JournalError> {
        loop {
            let Some(record) = self.journal.record() else {
                return Ok(());
            };
            if record.run != RunState::Running {
                return Ok(());
            }
            if self.abort.swap(false, Ordering::SeqCst) {
                info!(next = %record.phase, "update aborted");
                return self.journal.stop();
            }
            if let Some(step) = record.rollback.as_ref().and_then(|b| b.current()) {
                self.run_rollback_step(step, &record.update_id).await?;
                continue;
            }
            let phase = record.phase;
            let span = info_span!("phase", phase = %phase, update_id = %record.update_id);
            let result = async {
                info!(state = record.state(), "phase begins");
                self.journal.progress(None, 0, "started".to_owned())?;
                let delay = self.cluster.phase_delay(phase);
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                self.run_phase(phase).await
            }
            .instrument(span)
            .await;
            match result {
                Ok(()) => {
                    info!(phase = %phase, "phase succeeded");
                    self.journal.finish_phase(phase, PhaseOutcome::Succeeded)?;
                }
                Err(PhaseError::Journal(e)) => return Err(e),
                Err(e) => {
                    let reason = format!("{phase}: {e}");
                    warn!(%reason, "phase failed");
                    self.journal
                        .finish_phase(phase, PhaseOutcome::Failed { reason })?;
                    return Ok(());
                }
            }
        }
    }

    /// Runs one step of a rollback and records its end, as [`Self::run`] does a phase.
    async fn run_rollback_step(
        &self,
        step: RollbackStep,
        update_id: &str,
    ) -> Result<(), JournalError> {
        let span = info_span!("rollback", step = step.label(), update_id);
        let result = async {
            info!("rollback step begins");
            self.journal.progress(None, 0, "started".to_owned())?;
            self.rollback_step(step).await
        }
        .instrument(span)
        .await;
        match result {
            Ok(()) => {
                info!(step = step.label(), "rollback step succeeded");
                self.journal.finish_rollback_step(PhaseOutcome::Succeeded)
            }
            Err(PhaseError::Journal(e)) => Err(e),
            Err(e) => {
                let reason = format!("{ROLLING_BACK}{}: {e}", step.label());
                warn!(%reason, "rollback step failed");
                self.journal
                    .finish_rollback_step(PhaseOutcome::Failed { reason })
            }
        }
    }

    async fn rollback_step(&self, step: RollbackStep) -> Result<(), PhaseError> {
        let cx = self.context();
        match (rollback::host_plan(step), rollback::pods_bundle(step)) {
            (Some(plan), _) => hosts::walk(&cx, plan).await,
            (None, Some(bundle)) => pods::restart_with(&cx, bundle).await,
            (None, None) => {
                // Remove the new CA: only once every host holds the old CA alone again (when a
                // host was touched; before that nothing but the data dir changed).
                let record = cx.record()?;
                let touched = record
                    .rollback
                    .as_ref()
                    .is_some_and(|b| b.steps.contains(&RollbackStep::HostsTrustOldCa));
                if let (true, Some(old)) = (touched, record.old_ca_pem) {
                    complete::holds_alone(&cx, &old, "the old root CA").await?;
                }
                new_ca::remove(cx.journal)?;
                old_ca::forget(cx.journal)
            }
        }
    }

    fn context(&self) -> PhaseContext<'_, C> {
        PhaseContext {
            cluster: &self.cluster,
            journal: &self.journal,
            settings: &self.settings,
            verified: &self.verified,
        }
    }

    async fn run_phase(&self, phase: Phase) -> Result<(), PhaseError> {
        let cx = self.context();
        match phase {
            Phase::Start => start::precheck(&cx).await,
            Phase::NewRootCa => new_ca::generate(&cx).await,
            Phase::HostsTrustBothCas | Phase::HostsUpdateCerts | Phase::HostsTrustNewCa => {
                hosts::run(&cx, phase).await
            }
            Phase::PodsTrustBothCas | Phase::PodsTrustNewCa => pods::restart_all(&cx, phase).await,
            Phase::Complete => {
                complete::verify(&cx).await?;
                // No rollback after this: the kept old key has no use left.
                old_ca::forget(cx.journal)
            }
        }
    }
}

/// A record written before the journal carried the new CA (the agent upgraded in the middle of an
/// update) gets it from the stored certificate, so `subcloud show` and a take-over can name it. Best
/// effort: without it only the explanation is poorer.
fn backfill_new_ca(journal: &Journal) {
    let Some(record) = journal.record() else {
        return;
    };
    if record.new_ca.is_some() || record.phase <= Phase::NewRootCa {
        return;
    }
    let filled = new_ca::stored_info(journal)
        .map_err(|e| e.to_string())
        .and_then(|info| {
            journal
                .update(|r| r.new_ca = Some(info), |_, _| None)
                .map_err(|e| e.to_string())
        });
    if let Err(e) = filled {
        warn!(error = %e, "the recorded update's new CA could not be read back");
    }
}

/// Marks a stopped or failed update as running again; a failed phase is retried.
fn resume(r: &mut UpdateRecord) {
    r.run = RunState::Running;
    if r.phase_state == PhaseState::Failed {
        r.phase_state = PhaseState::InProgress;
    }
}

/// The operator's consent to leave pods that nothing restarts behind, and the subcloud's options, are
/// the latest strategy's: they are decisions about the cluster now, not part of the CA the update
/// generated. Without this, a refusal in the middle of an update could never be overcome by the option
/// it names.
fn adopt_consent(r: &mut UpdateRecord, params: &UpdateParams) {
    r.params.proceed_with_stranded_pods = params.proceed_with_stranded_pods;
    r.params.options = params.options;
}

/// The parameters that make the new CA: a later strategy cannot change them once the update has its CA.
fn ca_params(p: &UpdateParams) -> (&Option<String>, &Option<String>, &Option<String>) {
    (&p.subject, &p.expiry_date, &p.cert_file)
}

/// What the operator reads when a strategy takes over an unfinished update: which update, where it
/// continues, with which CA, and that the requested parameters do not apply to it.
fn take_over_details(previous: &str, r: &UpdateRecord, params: &UpdateParams) -> String {
    let mut out = format!(
        "finishing unfinished update {previous} from {}",
        r.phase.label()
    );
    if let Some(ca) = &r.new_ca {
        out.push_str(&format!(
            " with its new root CA {} (expires {})",
            ca.subject,
            dc_certs::upload::format_time(ca.not_after)
        ));
    }
    if ca_params(params) != ca_params(&r.params)
        && ca_params(params) != ca_params(&UpdateParams::default())
    {
        out.push_str(if r.hosts_touched() {
            "; the requested subject, expiry or cert-file do not apply: hosts already trust that CA"
        } else {
            "; the requested subject, expiry or cert-file do not apply: the update in progress keeps its own"
        });
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use super::*;
    use crate::sim::{SimCluster, SimConfig};

    /// A typical simulated cluster with an update begun, its start and new-root-CA phases done: what
    /// the later phases start from.
    pub struct Fixture {
        pub sim: SimCluster,
        pub journal: Journal,
        settings: Settings,
        verified: trust::Verified,
        _dir: tempfile::TempDir,
    }

    impl Fixture {
        pub async fn new() -> Self {
            Self::with(|_| {}).await
        }

        pub async fn with(change: impl FnOnce(&mut SimConfig)) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let mut config = SimConfig::typical();
            change(&mut config);
            let fixture = Self {
                sim: SimCluster::open(dir.path(), &config).unwrap(),
                journal: Journal::open(dir.path()).unwrap(),
                settings: Settings {
                    exclude_namespaces: vec![],
                    concurrency: 3,
                    poll: Duration::from_millis(10),
                    phase_timeout: Duration::from_secs(60),
                    component_timeout: Duration::from_secs(30),
                },
                verified: trust::Verified::default(),
                _dir: dir,
            };
            let params = UpdateParams {
                subject: Some("CN=fixture".into()),
                ..UpdateParams::default()
            };
            fixture.journal.begin("u1", params).unwrap();
            start::precheck(&fixture.context()).await.unwrap();
            new_ca::generate(&fixture.context()).await.unwrap();
            fixture
        }

        pub fn context(&self) -> PhaseContext<'_, SimCluster> {
            PhaseContext {
                cluster: &self.sim,
                journal: &self.journal,
                settings: &self.settings,
                verified: &self.verified,
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_record_from_before_the_new_ca_was_journaled_gets_it_back_at_start() {
        let f = Fixture::new().await;
        let recorded = f
            .journal
            .record()
            .unwrap()
            .new_ca
            .expect("recorded by the phase");
        // As an older agent left it: past the new-root-CA phase, its CA only on disk.
        f.journal
            .update(
                |r| {
                    r.new_ca = None;
                    r.phase = Phase::HostsTrustBothCas;
                },
                |_, _| None,
            )
            .unwrap();
        let dir = f.journal.dir().parent().unwrap().to_owned();
        let updater = Updater::new(f.sim, Journal::open(&dir).unwrap(), f.settings.clone());
        assert_eq!(updater.journal().record().unwrap().new_ca, Some(recorded));
    }

    #[tokio::test(start_paused = true)]
    async fn the_fixture_recorded_the_current_root_ca_and_stored_a_new_one() {
        let f = Fixture::new().await;
        let old = f.journal.record().unwrap().old_ca_pem.unwrap();
        let new = new_ca::load(&f.journal).unwrap();
        assert_ne!(old, new.cert_pem());
        assert!(
            complete::verify(&f.context()).await.is_err(),
            "not updated yet"
        );
    }
}
