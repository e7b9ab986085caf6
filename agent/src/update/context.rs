//! What every phase acts through, and how a phase fails.

use std::time::Duration;

use crate::cluster::{Cluster, ClusterError, Component, Host, HostFile};
use crate::journal::{Journal, JournalError, UpdateRecord};
use crate::trust::{self, TrustError};

/// Why a phase failed; the message becomes the phase result's reason.
#[derive(Debug, thiserror::Error)]
pub enum PhaseError {
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Trust(#[from] TrustError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("{host}: {file} is missing or unreadable")]
    File { host: String, file: &'static str },
    #[error("{host}: {file}: {reason}")]
    Certificate {
        host: String,
        file: &'static str,
        reason: String,
    },
    #[error("new root CA: {0}")]
    NewCa(String),
    #[error("{host}: {component} did not come back within {waited:?} after its restart: {last}")]
    ComponentDown {
        host: String,
        component: Component,
        waited: Duration,
        last: String,
    },
    #[error(
        "the controller-manager did not publish the trust bundle within {waited:?}: {stale} of {total} copies still differ, e.g. {first} (is a controller-manager running and leading, with --root-ca-file at the ca.crt the update writes? its log says why)"
    )]
    NotPublished {
        waited: Duration,
        stale: usize,
        total: usize,
        first: String,
    },
    /// A worker of a parallel walk failed; the others in flight finished first.
    #[error("{host} failed: {error}")]
    Host {
        host: String,
        error: Box<PhaseError>,
    },
    #[error("{workload}: rollout failed: {reason}")]
    RolloutFailed { workload: String, reason: String },
    #[error("{workload}: rollout not complete after {timeout:?}: {waiting}")]
    RolloutTimeout {
        workload: String,
        timeout: Duration,
        waiting: String,
    },
}

/// The settings the phases take from the agent's configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub exclude_namespaces: Vec<String>,
    pub concurrency: usize,
    pub poll: Duration,
    pub phase_timeout: Duration,
    /// Longest a restarted component may take to serve again.
    pub component_timeout: Duration,
}

/// What a running phase reaches: the cluster, the update's journal, the settings and the trust
/// verdicts reached so far (reused by the check after every host and workload).
#[derive(Debug)]
pub struct PhaseContext<'a, C> {
    pub cluster: &'a C,
    pub journal: &'a Journal,
    pub settings: &'a Settings,
    pub verified: &'a trust::Verified,
}

impl<C: Cluster> PhaseContext<'_, C> {
    /// The update's record; a phase runs only while there is one.
    pub fn record(&self) -> Result<UpdateRecord, PhaseError> {
        Ok(self.journal.record().ok_or(JournalError::NoUpdate)?)
    }

    /// Every host, controllers first (as the original requires), then by name.
    pub async fn sorted_hosts(&self) -> Result<Vec<Host>, PhaseError> {
        let mut hosts = self.cluster.hosts().await?;
        hosts.sort_by(|a, b| (a.role, &a.name).cmp(&(b.role, &b.name)));
        Ok(hosts)
    }

    /// A host file that must exist.
    pub async fn read(&self, host: &str, file: HostFile) -> Result<String, PhaseError> {
        self.cluster
            .read_file(host, file)
            .await?
            .ok_or_else(|| PhaseError::File {
                host: host.to_owned(),
                file: file.path(),
            })
    }

    /// Waits until `component` on `host` serves again after its restart, checking at `poll` backing off
    /// to eight times it; fails with the check's last answer after the component timeout.
    pub async fn wait_serving(&self, host: &str, component: Component) -> Result<(), PhaseError> {
        let started = tokio::time::Instant::now();
        let deadline = started + self.settings.component_timeout;
        let mut backoff = Backoff::new(self.settings.poll);
        loop {
            let last = match self.cluster.check_component(host, component).await {
                Ok(()) => return Ok(()),
                Err(e) => e.to_string(),
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(PhaseError::ComponentDown {
                    host: host.to_owned(),
                    component,
                    waited: self.settings.component_timeout,
                    last,
                });
            }
            tracing::debug!(host, %component, last, "not serving yet");
            backoff.sleep(deadline).await;
        }
    }

    /// Checks the trust invariants ([`trust::check`]).
    pub async fn check_trust(&self) -> Result<(), PhaseError> {
        Ok(trust::check(self.cluster, self.verified).await?)
    }
}

/// The pause between two looks at something the phases wait for: from the configured poll, doubling
/// up to eight times it, so quick things are seen quickly and slow ones cost a real API server little.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(poll: Duration) -> Self {
        Self {
            next: poll,
            max: poll * 8,
        }
    }

    /// Sleeps the next pause, never past `deadline`.
    pub async fn sleep(&mut self, deadline: tokio::time::Instant) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        tokio::time::sleep(self.next.min(left)).await;
        self.next = (self.next * 2).min(self.max);
    }
}

/// `done` of `total` as a percentage; an empty phase is complete.
pub fn percent_of(done: usize, total: usize) -> u8 {
    if total == 0 {
        return 100;
    }
    u8::try_from(done * 100 / total).unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_of_rounds_down_and_an_empty_phase_is_complete() {
        assert_eq!(percent_of(0, 4), 0);
        assert_eq!(percent_of(1, 3), 33);
        assert_eq!(percent_of(4, 4), 100);
        assert_eq!(percent_of(0, 0), 100);
    }
}
