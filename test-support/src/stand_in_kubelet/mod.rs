//! A stand-in kubelet for the real-control-plane tests: it runs no containers, but towards the API
//! server it is a node like any other. It authenticates with `kubelet.conf` (whose
//! `client-certificate` is kubeadm's symlinked `kubelet-client-current.pem`, read again whenever the
//! files change), so the Node authorizer and NodeRestriction judge it as they judge a kubelet. It
//! registers its Node and keeps it Ready ([`node`]); it "starts" the pods bound to it by reading the
//! trust bundle each would mount and marking it Running and Ready, and it confirms their deletions
//! ([`pods`]); and it renews its client certificate as client-go's certificate manager does
//! ([`rotate`]).
//!
//! What each started pod would have mounted as `ca.crt` is appended to `<state>/pods.jsonl`
//! ([`PodRecord`]): the tests read it to see which trust bundle every pod got.

pub mod node;
pub mod pods;
pub mod rotate;

use std::path::{Path, PathBuf};

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// The file in the state directory where every started pod's trust bundle is recorded.
pub const POD_RECORDS: &str = "pods.jsonl";

/// Errors of the stand-in kubelet.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error("kubeconfig {path}: {reason}")]
    Kubeconfig { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Kubernetes API: {what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// client-go's `fileStore.updateSymlink` refuses to rotate into a regular file in these words.
    #[error("expected {0:?} to be a symlink but it is a file")]
    NotASymlink(PathBuf),
    #[error("certificate signing request {name}: {reason}")]
    Csr { name: String, reason: String },
    #[error("certificate: {0}")]
    Certificate(String),
}

pub(crate) fn api(what: impl Into<String>) -> impl FnOnce(kube::Error) -> KubeletError {
    let what = what.into();
    move |source| KubeletError::Api { what, source }
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KubeletError + '_ {
    move |source| KubeletError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One pod as the stand-in kubelet started it: the `ca.crt` it would have mounted and from where.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PodRecord {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub node: String,
    /// `secret/<name>` (a service-account token Secret, Kubernetes 1.20's default) or
    /// `configmap/<name>` (a projected `kube-root-ca.crt`); `none` when the pod mounts neither.
    pub source: String,
    pub ca_pem: Option<String>,
}

/// Reads a state directory's pod records, oldest first.
pub fn read_records(state: &Path) -> Result<Vec<PodRecord>, KubeletError> {
    let path = state.join(POD_RECORDS);
    let text = match std::fs::read_to_string(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        other => other.map_err(io(&path))?,
    };
    text.lines()
        .map(|line| {
            serde_json::from_str(line).map_err(|e| KubeletError::Io {
                path: path.clone(),
                source: e.into(),
            })
        })
        .collect()
}

/// The API client of `kubelet.conf`, built again when the kubeconfig or the client certificate file
/// it names changes (the root CA update rewrites both; client-go's transport reloads them too).
pub struct Credentials {
    kubeconfig: PathBuf,
    source: Vec<u8>,
    client: Option<Client>,
}

impl Credentials {
    pub fn new(kubeconfig: &Path) -> Self {
        Self {
            kubeconfig: kubeconfig.to_owned(),
            source: Vec::new(),
            client: None,
        }
    }

    /// The client certificate file the kubeconfig names (absolute).
    pub fn client_certificate(&self) -> Result<PathBuf, KubeletError> {
        let parsed = self.parse()?;
        parsed
            .auth_infos
            .iter()
            .find_map(|a| a.auth_info.as_ref()?.client_certificate.clone())
            .map(PathBuf::from)
            .ok_or_else(|| KubeletError::Kubeconfig {
                path: self.kubeconfig.clone(),
                reason: "names no client-certificate file".to_owned(),
            })
    }

    fn parse(&self) -> Result<Kubeconfig, KubeletError> {
        Kubeconfig::read_from(&self.kubeconfig).map_err(|e| KubeletError::Kubeconfig {
            path: self.kubeconfig.clone(),
            reason: e.to_string(),
        })
    }

    /// The client, rebuilt first when its files changed.
    pub async fn client(&mut self) -> Result<Client, KubeletError> {
        let mut current = std::fs::read(&self.kubeconfig).map_err(io(&self.kubeconfig))?;
        if let Ok(cert) = self.client_certificate() {
            current.extend(std::fs::read(&cert).map_err(io(&cert))?);
        }
        if let Some(client) = &self.client
            && current == self.source
        {
            return Ok(client.clone());
        }
        let bad = |reason: String| KubeletError::Kubeconfig {
            path: self.kubeconfig.clone(),
            reason,
        };
        let config =
            kube::Config::from_custom_kubeconfig(self.parse()?, &KubeConfigOptions::default())
                .await
                .map_err(|e| bad(e.to_string()))?;
        let client = Client::try_from(config).map_err(|e| bad(e.to_string()))?;
        tracing::info!(kubeconfig = %self.kubeconfig.display(), "credentials (re)loaded");
        self.source = current;
        self.client = Some(client.clone());
        Ok(client)
    }
}

/// The current time as the API writes it (RFC 3339, whole seconds, UTC).
pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
        ))
        .unwrap_or_default()
}
