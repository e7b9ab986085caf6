//! The simulated cluster's errors; they reach the phases as a [`ClusterError`].

use std::path::{Path, PathBuf};

use crate::cluster::{ClusterError, Component, WorkloadRef};

/// Errors of the simulated cluster.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("simulated cluster: {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("simulated cluster state {path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("simulated cluster: certificate generation failed: {0}")]
    Certificate(String),
    #[error("simulated cluster config: {0}")]
    Config(String),
    #[error("no host {0}")]
    UnknownHost(String),
    #[error("no {0}")]
    UnknownWorkload(WorkloadRef),
    #[error("no pod {0}")]
    UnknownPod(String),
    #[error("host {host} is unreachable (injected fault)")]
    Unreachable { host: String },
    #[error("{host}: {component} is not serving: connection refused (injected fault)")]
    Unhealthy { host: String, component: Component },
    #[error("{host}: {component} is starting")]
    Starting { host: String, component: Component },
    #[error("restarting {component:?} on {host} failed (injected fault)")]
    RestartFailed { host: String, component: Component },
}

impl From<SimError> for ClusterError {
    fn from(error: SimError) -> Self {
        ClusterError::new(error)
    }
}

/// Maps an I/O error on `path` into [`SimError::Io`].
pub(crate) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> SimError + '_ {
    move |source| SimError::Io {
        path: path.to_owned(),
        source,
    }
}
