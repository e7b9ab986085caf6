//! The durable record of the update and the ordered messages it produces.
//!
//! Every transition is written (atomically, fsynced) before the agent acts on it, so a restart resumes at
//! the first unfinished phase and, within host phases, at the first unfinished host. Each message gets
//! the next sequence number and the record carries the last one, so numbers keep increasing across
//! restarts. Messages wait in the [`Outbox`] until the link delivers them; the heartbeat's
//! [`UpdateStatus`] lets a controller that missed some of them reconcile.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use dc_certs::files::{PRIVATE, create_private_dir, write_atomic};
use dc_protocol::{
    AgentMessage, Phase, PhaseOutcome, PhaseResult, PhaseState, Progress, ROLLING_BACK, RootCaInfo,
    RunState, STATE_ROLLBACK_FAILED, STATE_ROLLED_BACK, STATE_ROLLING_BACK, Stopped, UnixTime,
    UpdateParams, UpdateStatus,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

/// Most messages kept while the controller is unreachable; beyond it the oldest progress messages are
/// dropped (results and stops are always kept, and the heartbeat carries the state anyway).
pub const OUTBOX_LIMIT: usize = 1024;

/// Errors of the journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot write the update record {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the update record {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("update record {path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("no update is recorded")]
    NoUpdate,
}

/// The durable state of one update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateRecord {
    pub update_id: String,
    pub params: UpdateParams,
    /// The new CA came as a cert-file (changes the sysinv state names).
    pub uploaded: bool,
    /// The phase in progress, or the next one to run.
    pub phase: Phase,
    pub phase_state: PhaseState,
    pub run: RunState,
    pub last_seq: u64,
    /// Hosts of the current host phase and where each stands.
    #[serde(default)]
    pub hosts: BTreeMap<String, PhaseState>,
    /// The restartedAt value of the current pods phase, chosen once so a resume restarts nothing twice.
    #[serde(default)]
    pub restarted_at: Option<String>,
    /// The root CA the cluster trusted when the update started (PEM).
    #[serde(default)]
    pub old_ca_pem: Option<String>,
    /// When `run` last changed.
    #[serde(default)]
    pub since: Option<UnixTime>,
    /// The new root CA, once the new-root-CA phase stored it.
    #[serde(default)]
    pub new_ca: Option<RootCaInfo>,
    /// What the operator should know although the update goes on (pods left on the old CA because
    /// the strategy said to proceed); sent with every phase result, so it reaches the step's details.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The health gate's findings under `alarm-restriction-type relaxed`, reported the same way.
    #[serde(default)]
    pub health: Vec<String>,
    /// Set once a rollback began: from then on `run` is the rollback's, and `phase` the phase its
    /// current step undoes.
    #[serde(default)]
    pub rollback: Option<RollbackRecord>,
}

impl UpdateRecord {
    /// What every phase result tells the operator besides its outcome.
    pub fn all_warnings(&self) -> Vec<String> {
        self.health.iter().chain(&self.warnings).cloned().collect()
    }

    /// Whether a host may already trust the update's new CA: a host phase after the first began, or the
    /// first one recorded a host (hosts are recorded before they are changed).
    pub fn hosts_touched(&self) -> bool {
        self.phase > Phase::HostsTrustBothCas
            || (self.phase == Phase::HostsTrustBothCas && !self.hosts.is_empty())
    }

    /// Share of the whole update done.
    pub fn percent(&self, phase_percent: u8) -> u8 {
        if self.run == RunState::Completed {
            return 100;
        }
        if let Some(rollback) = &self.rollback {
            return rollback.percent(phase_percent);
        }
        let done = self.phase.index() * 100 + usize::from(phase_percent.min(100));
        u8::try_from(done / Phase::ALL.len()).unwrap_or(100)
    }

    /// The sysinv state name, or the rollback's.
    pub fn state(&self) -> &'static str {
        if self.rollback.is_some() {
            return match (&self.run, self.phase_state) {
                (RunState::Completed, _) => STATE_ROLLED_BACK,
                (_, PhaseState::Failed) => STATE_ROLLBACK_FAILED,
                _ => STATE_ROLLING_BACK,
            };
        }
        self.phase.state_name(self.phase_state, self.uploaded)
    }

    /// What a progress message says: during a rollback, `rolling back: <step>: <details>`, so the
    /// step's details, the CLI and the dashboard tell a rollback from an update.
    fn details(&self, details: String) -> String {
        match self.rollback.as_ref().and_then(RollbackRecord::current) {
            Some(step) if !details.starts_with(ROLLING_BACK) => {
                format!("{ROLLING_BACK}{}: {details}", step.label())
            }
            _ => details,
        }
    }

    fn status(&self) -> UpdateStatus {
        UpdateStatus {
            update_id: self.update_id.clone(),
            phase: self.phase,
            state: self.state().to_owned(),
            percent: self.percent(if self.phase_state == PhaseState::Done {
                100
            } else {
                0
            }),
            run: self.run.clone(),
            last_seq: self.last_seq,
            since: self.since,
            new_ca: self.new_ca.clone(),
            warnings: self.all_warnings(),
            rollback: self.rollback.is_some(),
        }
    }
}

/// One step of a rollback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RollbackStep {
    HostsTrustBothCasAgain,
    PodsTrustBothCasAgain,
    HostsReissueFromOldCa,
    HostsTrustOldCa,
    PodsTrustOldCa,
    RemoveNewCa,
}

/// A rollback under way, as the journal keeps it. The record's host progress and restart stamp belong
/// to the step in progress, as they belong to the phase in progress during an update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackRecord {
    /// Where the update stood when the rollback began.
    pub from: Phase,
    pub steps: Vec<RollbackStep>,
    /// Index of the step in progress, or the next one to run; `steps.len()` once rolled back.
    pub step: usize,
}

impl RollbackRecord {
    /// The step in progress, or the next one; `None` once rolled back.
    pub fn current(&self) -> Option<RollbackStep> {
        self.steps.get(self.step).copied()
    }

    /// Share of the rollback done.
    pub fn percent(&self, step_percent: u8) -> u8 {
        if self.steps.is_empty() {
            return 100;
        }
        let done = self.step * 100 + usize::from(step_percent.min(100));
        u8::try_from(done / self.steps.len()).unwrap_or(100)
    }
}

impl RollbackStep {
    /// The phase this step undoes: what its progress reports, and where an update that takes over an
    /// unfinished rollback has to start again.
    pub fn undoes(self) -> Phase {
        match self {
            // Both undo what trust-new-ca did: to the hosts, and to the pods it created.
            Self::HostsTrustBothCasAgain | Self::PodsTrustBothCasAgain => Phase::HostsTrustNewCa,
            Self::HostsReissueFromOldCa => Phase::HostsUpdateCerts,
            Self::HostsTrustOldCa => Phase::HostsTrustBothCas,
            Self::PodsTrustOldCa => Phase::PodsTrustBothCas,
            Self::RemoveNewCa => Phase::NewRootCa,
        }
    }

    /// What the operator reads: `rolling back: <label>: ...`.
    pub fn label(self) -> &'static str {
        match self {
            Self::HostsTrustBothCasAgain => "hosts trust-both-cas again",
            Self::PodsTrustBothCasAgain => "pods trust-both-cas again",
            Self::HostsReissueFromOldCa => "hosts re-issue certificates from the old CA",
            Self::HostsTrustOldCa => "hosts trust-old-ca",
            Self::PodsTrustOldCa => "pods trust-old-ca",
            Self::RemoveNewCa => "remove the new CA",
        }
    }
}

/// Messages waiting for the controller, in order.
#[derive(Debug, Default)]
pub struct Outbox {
    queue: Mutex<VecDeque<AgentMessage>>,
    pub(crate) notify: Notify,
}

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, VecDeque<AgentMessage>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a message for the controller.
    pub fn push(&self, message: AgentMessage) {
        let mut queue = self.lock();
        if queue.len() >= OUTBOX_LIMIT
            && let Some(i) = queue
                .iter()
                .position(|m| matches!(m, AgentMessage::Progress(_)))
        {
            queue.remove(i);
        }
        queue.push_back(message);
        drop(queue);
        self.notify.notify_one();
    }

    /// The oldest message, left in place until [`Outbox::pop`] confirms it was sent.
    pub fn front(&self) -> Option<AgentMessage> {
        self.lock().front().cloned()
    }

    /// Removes the oldest message once sent.
    pub fn pop(&self) {
        self.lock().pop_front();
    }
}

/// The record on disk, its current status for heartbeats, and the outbox.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    record: Mutex<Option<UpdateRecord>>,
    status: watch::Sender<Option<UpdateStatus>>,
    pub outbox: Outbox,
}

impl Journal {
    /// Opens the journal in `<data_dir>/update/`.
    pub fn open(data_dir: &Path) -> Result<Self, JournalError> {
        let dir = data_dir.join("update");
        create_private_dir(&dir).map_err(|source| JournalError::Write {
            path: dir.clone(),
            source,
        })?;
        let path = dir.join("record.json");
        let record: Option<UpdateRecord> =
            match std::fs::read(&path) {
                Ok(bytes) => Some(serde_json::from_slice(&bytes).map_err(|source| {
                    JournalError::Corrupt {
                        path: path.clone(),
                        source,
                    }
                })?),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(source) => return Err(JournalError::Read { path, source }),
            };
        let (status, _) = watch::channel(record.as_ref().map(UpdateRecord::status));
        Ok(Self {
            path,
            record: Mutex::new(record),
            status,
            outbox: Outbox::default(),
        })
    }

    /// The directory the update keeps its files in (record, new CA).
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    fn lock(&self) -> MutexGuard<'_, Option<UpdateRecord>> {
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the record.
    pub fn record(&self) -> Option<UpdateRecord> {
        self.lock().clone()
    }

    /// The status heartbeats report; changes with every transition.
    pub fn status(&self) -> watch::Receiver<Option<UpdateStatus>> {
        self.status.subscribe()
    }

    fn save(&self, record: &UpdateRecord) -> Result<(), JournalError> {
        let bytes = serde_json::to_vec_pretty(record).map_err(|source| JournalError::Corrupt {
            path: self.path.clone(),
            source,
        })?;
        write_atomic(&self.path, &bytes, PRIVATE).map_err(|source| JournalError::Write {
            path: self.path.clone(),
            source,
        })?;
        self.status.send_replace(Some(record.status()));
        Ok(())
    }

    /// Changes the record durably; `message` builds a message from the changed record, which gets the
    /// next sequence number and is saved with it before it is queued.
    pub fn update(
        &self,
        change: impl FnOnce(&mut UpdateRecord),
        message: impl FnOnce(&UpdateRecord, u64) -> Option<AgentMessage>,
    ) -> Result<(), JournalError> {
        let mut guard = self.lock();
        let record = guard.as_mut().ok_or(JournalError::NoUpdate)?;
        let mut next = record.clone();
        change(&mut next);
        if next.run != record.run {
            next.since = Some(dc_certs::now());
        }
        let message = message(&next, next.last_seq + 1).map(|m| match m {
            AgentMessage::Progress(p) => AgentMessage::Progress(Progress {
                details: next.details(p.details),
                ..p
            }),
            other => other,
        });
        if message.is_some() {
            next.last_seq += 1;
        }
        self.save(&next)?;
        *record = next;
        drop(guard);
        if let Some(message) = message {
            self.outbox.push(message);
        }
        Ok(())
    }

    /// Records a new update, replacing the recorded one ([`crate::update::admit`] says when that is safe:
    /// finished, or no host touched).
    pub fn begin(&self, update_id: &str, params: UpdateParams) -> Result<(), JournalError> {
        let record = UpdateRecord {
            update_id: update_id.to_owned(),
            uploaded: params.cert_file.is_some(),
            params,
            phase: Phase::Start,
            phase_state: PhaseState::InProgress,
            run: RunState::Running,
            last_seq: 0,
            hosts: BTreeMap::new(),
            restarted_at: None,
            old_ca_pem: None,
            since: Some(dc_certs::now()),
            new_ca: None,
            warnings: Vec::new(),
            health: Vec::new(),
            rollback: None,
        };
        let mut guard = self.lock();
        self.save(&record)?;
        *guard = Some(record);
        Ok(())
    }

    /// Sends a progress message for the current phase.
    pub fn progress(
        &self,
        host: Option<&str>,
        phase_percent: u8,
        details: String,
    ) -> Result<(), JournalError> {
        self.update(
            |_| {},
            |r, seq| {
                Some(AgentMessage::Progress(Progress {
                    update_id: r.update_id.clone(),
                    seq,
                    phase: r.phase,
                    host: host.map(str::to_owned),
                    state: r.state().to_owned(),
                    phase_percent,
                    percent: r.percent(phase_percent),
                    details,
                }))
            },
        )
    }

    /// A phase ended: the result is recorded and reported; on success the record moves to the next
    /// phase (or completes), on failure the update stops, resumable at this phase.
    pub fn finish_phase(&self, phase: Phase, outcome: PhaseOutcome) -> Result<(), JournalError> {
        self.update(
            |r| {
                match &outcome {
                    // Host progress and the restartedAt value stay on failure: a resume continues at
                    // the first unfinished host and restarts no workload a second time.
                    PhaseOutcome::Succeeded => {
                        r.hosts.clear();
                        r.restarted_at = None;
                        match phase.next() {
                            Some(next) => {
                                r.phase = next;
                                r.phase_state = PhaseState::InProgress;
                            }
                            None => {
                                r.phase_state = PhaseState::Done;
                                r.run = RunState::Completed;
                            }
                        }
                    }
                    PhaseOutcome::Failed { reason } => {
                        r.phase_state = PhaseState::Failed;
                        r.run = RunState::Failed {
                            phase,
                            reason: reason.clone(),
                        };
                    }
                }
            },
            |r, seq| {
                let done = r.phase != phase || r.run == RunState::Completed;
                Some(AgentMessage::PhaseResult(PhaseResult {
                    update_id: r.update_id.clone(),
                    seq,
                    phase,
                    outcome: outcome.clone(),
                    state: phase
                        .state_name(
                            if done {
                                PhaseState::Done
                            } else {
                                PhaseState::Failed
                            },
                            r.uploaded,
                        )
                        .to_owned(),
                    percent: r.percent(0),
                    warnings: r.all_warnings(),
                }))
            },
        )
    }

    /// Begins rolling the recorded update back under `update_id` (the rollback strategy's), with the
    /// steps [`crate::update::rollback::plan`] chose; the record keeps the CAs and the update's
    /// parameters, and its host progress and restart stamp start afresh for the first step.
    pub fn begin_rollback(
        &self,
        update_id: &str,
        steps: Vec<RollbackStep>,
    ) -> Result<(), JournalError> {
        self.update(
            |r| {
                let from = r.phase;
                r.update_id = update_id.to_owned();
                r.run = RunState::Running;
                r.phase_state = PhaseState::InProgress;
                r.hosts.clear();
                r.restarted_at = None;
                r.phase = steps.first().map_or(from, |s| s.undoes());
                r.rollback = Some(RollbackRecord {
                    from,
                    steps,
                    step: 0,
                });
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
                    details: format!(
                        "{ROLLING_BACK}the update from {} to the old root CA: {}",
                        r.rollback.as_ref().map_or(r.phase, |b| b.from).label(),
                        r.rollback
                            .as_ref()
                            .map(|b| b.steps.iter().map(|s| s.label()).collect::<Vec<_>>())
                            .unwrap_or_default()
                            .join(", ")
                    ),
                }))
            },
        )
    }

    /// A rollback step ended: on success the next one is recorded (or the rollback completed, the
    /// subcloud on its old CA alone), on failure the rollback stops, resumable at this step.
    pub fn finish_rollback_step(&self, outcome: PhaseOutcome) -> Result<(), JournalError> {
        let phase = self.record().ok_or(JournalError::NoUpdate)?.phase;
        self.update(
            |r| {
                let Some(rollback) = r.rollback.as_mut() else {
                    return;
                };
                match &outcome {
                    PhaseOutcome::Succeeded => {
                        r.hosts.clear();
                        r.restarted_at = None;
                        rollback.step += 1;
                        match rollback.current() {
                            Some(next) => {
                                r.phase = next.undoes();
                                r.phase_state = PhaseState::InProgress;
                            }
                            None => {
                                r.phase_state = PhaseState::Done;
                                r.run = RunState::Completed;
                            }
                        }
                    }
                    PhaseOutcome::Failed { reason } => {
                        r.phase_state = PhaseState::Failed;
                        r.run = RunState::Failed {
                            phase,
                            reason: reason.clone(),
                        };
                    }
                }
            },
            |r, seq| {
                // Only the end and a failure are phase results: a step in between is progress, so a
                // controller never takes a step of the rollback for a phase of an update.
                if outcome == PhaseOutcome::Succeeded && r.run != RunState::Completed {
                    return Some(AgentMessage::Progress(Progress {
                        update_id: r.update_id.clone(),
                        seq,
                        phase: r.phase,
                        host: None,
                        state: r.state().to_owned(),
                        phase_percent: 0,
                        percent: r.percent(0),
                        details: format!(
                            "{ROLLING_BACK}{} done",
                            r.rollback
                                .as_ref()
                                .and_then(|b| b.steps.get(b.step.wrapping_sub(1)))
                                .map_or("a step", |s| s.label())
                        ),
                    }));
                }
                Some(AgentMessage::PhaseResult(PhaseResult {
                    update_id: r.update_id.clone(),
                    seq,
                    phase,
                    outcome: outcome.clone(),
                    state: r.state().to_owned(),
                    percent: r.percent(0),
                    warnings: r.all_warnings(),
                }))
            },
        )
    }

    /// Answers a start this agent refuses (a rollback past the point of no return, or with nothing to
    /// roll back) with a failed phase result under the command's id, leaving the recorded update as it
    /// is: the controller fails that step with `reason`, and a repeated start is refused again.
    pub fn refuse(&self, update_id: &str, reason: String) -> Result<(), JournalError> {
        let message = |phase: Phase, seq: u64| {
            AgentMessage::PhaseResult(PhaseResult {
                update_id: update_id.to_owned(),
                seq,
                phase,
                outcome: PhaseOutcome::Failed {
                    reason: reason.clone(),
                },
                state: phase.state_name(PhaseState::Failed, false).to_owned(),
                percent: 0,
                warnings: Vec::new(),
            })
        };
        if self.record().is_none() {
            // No record to number it after: the first message of that update.
            self.outbox.push(message(Phase::Start, 1));
            return Ok(());
        }
        self.update(|_| {}, |r, seq| Some(message(r.phase, seq)))
    }

    /// Stops the update after an abort; a later start resumes at `next`.
    pub fn stop(&self) -> Result<(), JournalError> {
        self.update(
            |r| {
                r.run = RunState::Aborted { next: r.phase };
            },
            |r, seq| {
                Some(AgentMessage::Stopped(Stopped {
                    update_id: r.update_id.clone(),
                    seq,
                    next: r.phase,
                }))
            },
        )
    }
}
