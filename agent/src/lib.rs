//! The dc-rootca agent: replaces the Kubernetes root CA of one subcloud, phase by phase, resumable after
//! any crash, and streams its progress to the controller over mutual TLS.
//!
//! # Layout
//! Commands flow down (link → [`engine`] → update → phase → cluster) and progress flows back up through
//! the journal's outbox; no module imports one that imports it back.
//! - [`config`]: [`AgentConfig`], loaded from a TOML file plus `DC_AGENT__...` environment variables.
//! - [`link`]: the connection to the controller; [`facts`]: what heartbeats report.
//! - [`update`]: the [`update::Updater`] (start and abort commands, the phases in order) and one module
//!   per phase or phase family; the three host phases are one plan table ([`update::plan`]).
//!   [`journal`]: their durable record and the ordered outbox of messages.
//! - [`cluster`]: the [`cluster::Cluster`] seam the phases act through and its vocabulary (hosts, host
//!   files, workloads, pods); it names no backend.
//! - [`sim`]: the simulated cluster (model, workload controllers, file layout, PKI, fault injection);
//!   [`kube`]: a real kubeadm cluster (the Kubernetes API, the hosts' files, component restarts). Both
//!   implement [`cluster::Cluster`]; [`backend::Backend`], the one module naming both, picks one.
//! - [`rollout`], [`trust`], [`kubeconfig`], [`manifest`]: backend-independent rules (selectors and
//!   rollout completion, the trust invariants, kubeconfig and controller-manager manifest edits).
//!
//! [`run`] ties them together. Many agents can run in one process (tests, demo, benchmark): each call
//! of [`run`] owns its own state and returns when its shutdown future resolves. Dropping the future is
//! the same as killing the agent: the next run resumes where it stopped.

pub mod backend;
pub mod cluster;
pub mod config;
pub mod credentials;
pub mod facts;
pub mod journal;
pub mod kube;
pub mod kubeconfig;
pub mod link;
pub mod manifest;
pub mod rollout;
pub mod sim;
pub mod trust;
pub mod update;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use dc_protocol::Command;
use tokio::sync::mpsc;
use tracing::{Instrument, info, info_span, warn};

pub use config::{AgentConfig, ClusterConfig};

use crate::backend::Backend;
use crate::credentials::Credentials;
use crate::journal::{Journal, JournalError};
use crate::update::{Settings, StartDecision, Updater};

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot create the data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Credentials(#[from] credentials::CredentialsError),
    #[error(transparent)]
    Backend(#[from] backend::OpenError),
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// What an in-process caller may add to an agent's run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Told of every message the link sends and every command it receives (see [`link::LinkEvent`]).
    pub observer: Option<link::LinkObserver>,
}

/// Runs one agent until `shutdown` resolves. Errors are those that make the agent useless (unreadable
/// certificates, an unwritable data dir); a lost controller is redialled and a failed phase is reported,
/// neither ends the agent.
pub async fn run(
    config: AgentConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), AgentError> {
    run_with(config, RunOptions::default(), shutdown).await
}

/// [`run`] with [`RunOptions`].
pub async fn run_with(
    config: AgentConfig,
    options: RunOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), AgentError> {
    let span = info_span!("agent", subcloud = %config.subcloud);
    async move {
        let credentials = Credentials::load(&config.tls, &config.data_dir)?;
        dc_certs::files::create_private_dir(&config.data_dir).map_err(|source| {
            AgentError::DataDir {
                path: config.data_dir.clone(),
                source,
            }
        })?;
        let cluster = Backend::open(&config.cluster, &config.data_dir).await?;
        let updater = Updater::new(
            cluster,
            Journal::open(&config.data_dir)?,
            Settings {
                exclude_namespaces: config.pods.exclude_namespaces.clone(),
                concurrency: config.pods.concurrency,
                poll: Duration::from_millis(config.pods.poll_ms.max(1)),
                phase_timeout: config.phase_timeout(),
                component_timeout: Duration::from_secs(config.component_timeout_secs),
            },
        );
        let (commands_tx, commands_rx) = mpsc::channel(16);
        info!("agent started");
        tokio::select! {
            () = shutdown => {
                info!("agent stopping");
                Ok(())
            }
            result = engine(&updater, commands_rx) => result,
            () = link::maintain(&config, credentials, &updater, commands_tx, options.observer.as_ref()) => Ok(()),
        }
    }
    .instrument(span)
    .await
}

type Running<'a> = Pin<Box<dyn Future<Output = Result<(), JournalError>> + Send + 'a>>;

/// Executes commands: at most one update runs at a time; a start while it runs is acknowledged or takes
/// it over (see [`update::admit`]), an abort stops the running update after its current phase.
pub async fn engine<C: cluster::Cluster + Send>(
    updater: &Updater<C>,
    mut commands: mpsc::Receiver<Command>,
) -> Result<(), AgentError> {
    let mut running: Option<Running<'_>> = None;
    if updater.should_resume() {
        info!("resuming the update that was running when the agent stopped");
        running = Some(Box::pin(updater.run()));
    }
    loop {
        tokio::select! {
            result = async {
                match running.as_mut() {
                    Some(update) => update.await,
                    None => std::future::pending().await,
                }
            } => {
                running = None;
                result?;
            }
            command = commands.recv() => match command {
                None => return Ok(()),
                Some(Command::Start { update_id, params }) => {
                    if updater.start(&update_id, params, running.is_some()).await? == StartDecision::Run {
                        running = Some(Box::pin(updater.run()));
                    }
                }
                Some(Command::Abort { update_id }) => {
                    let current = updater.journal().record().map(|r| r.update_id);
                    if current.as_deref() != Some(update_id.as_str()) {
                        warn!(update_id, "abort for an update this agent does not know; ignored");
                    } else if running.is_some() {
                        info!("abort requested: stopping after the phase in progress");
                        updater.request_abort();
                    } else {
                        updater.abort_idle()?;
                    }
                }
            }
        }
    }
}
