//! The trust invariants, checked after every host and every workload an update touches.
//!
//! This is the safety property the phase order exists for: every running pod's bundle verifies every
//! apiserver's serving certificate, every component's client certificate verifies against every
//! apiserver's client CA bundle (its host's `ca.crt`), every kubeconfig's CA data verifies the apiserver
//! serving certificates, and each apiserver's kubelet client certificate verifies against every kubelet's
//! client CA. A violation fails the phase with a message naming who lost whom.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use dc_certs::inspect::CertSummary;
use dc_certs::verify::{Usage, VerifyError, verify_chain};

use crate::cluster::{Cluster, ClusterError, HostFile, HostRole, KubeconfigFile};
use crate::kubeconfig::{ClientCredentials, Kubeconfig};

/// The trust-relevant files of one host.
#[derive(Debug, Clone)]
pub struct HostView {
    pub name: String,
    pub role: HostRole,
    /// `ca.crt`.
    pub ca_bundle: String,
    /// Controllers only.
    pub apiserver_cert: Option<String>,
    /// Controllers only.
    pub apiserver_kubelet_client_cert: Option<String>,
    pub kubeconfigs: Vec<(KubeconfigFile, KubeconfigView)>,
}

/// What a kubeconfig trusts and presents.
#[derive(Debug, Clone)]
pub struct KubeconfigView {
    /// Its `certificate-authority-data`.
    pub ca_pem: String,
    /// Its client certificate, embedded or from the file it names.
    pub client_cert_pem: String,
}

/// Every violated invariant, in a stable order; empty when the cluster is sound.
pub fn violations(
    hosts: &[HostView],
    pods: &[(String, String)],
    verified: &Verified,
) -> Vec<String> {
    let trusts = |leaf: &str, bundle: &str, usage: Usage| verified.trusts(leaf, bundle, usage);
    let mut found = Vec::new();
    let controllers: Vec<&HostView> = hosts
        .iter()
        .filter(|h| h.role == HostRole::Controller)
        .collect();
    // Pods sharing a bundle are checked once.
    let mut bundles: BTreeMap<&str, &str> = BTreeMap::new();
    for (pod, bundle) in pods {
        bundles.entry(bundle.as_str()).or_insert(pod.as_str());
    }
    for c in &controllers {
        let Some(serving) = &c.apiserver_cert else {
            found.push(format!(
                "controller {} has no apiserver certificate",
                c.name
            ));
            continue;
        };
        for (bundle, pod) in &bundles {
            if let Err(e) = trusts(serving, bundle, Usage::Server) {
                found.push(format!(
                    "pod {pod} cannot verify the apiserver of {}: {e}",
                    c.name
                ));
            }
        }
        for h in hosts {
            for (file, kubeconfig) in &h.kubeconfigs {
                let component = file.path();
                if let Err(e) = trusts(serving, &kubeconfig.ca_pem, Usage::Server) {
                    found.push(format!(
                        "{component} on {} cannot verify the apiserver of {}: {e}",
                        h.name, c.name
                    ));
                }
                if let Err(e) = trusts(&kubeconfig.client_cert_pem, &c.ca_bundle, Usage::Client) {
                    found.push(format!(
                        "the apiserver of {} rejects the client certificate of {component} on {}: {e}",
                        c.name, h.name
                    ));
                }
            }
            if let Some(client) = &c.apiserver_kubelet_client_cert
                && let Err(e) = trusts(client, &h.ca_bundle, Usage::Client)
            {
                found.push(format!(
                    "the kubelet of {} rejects the apiserver of {}: {e}",
                    h.name, c.name
                ));
            }
        }
    }
    found
}

/// Whether `bundle` trusts `leaf` for `usage`. Trust is about which CA signed what, not about expiry
/// (the heartbeat's alarms report that), so the chain is checked at a moment inside the leaf's own
/// validity: a cluster whose current CA already expired can still be moved to a new one safely.
pub fn trusts(leaf: &str, bundle: &str, usage: Usage) -> Result<(), VerifyError> {
    let now = dc_certs::now();
    let at = CertSummary::from_pem(leaf)
        .map(|s| now.min(s.not_after).max(s.not_before))
        .unwrap_or(now);
    verify_chain(leaf, bundle, usage, at)
}

/// Verdicts already reached. The same certificates are checked against the same bundles after every
/// host and workload of an update, and each check is a signature verification (P-384 for the new generation): a
/// fleet of simulated subclouds in one process would spend most of its time redoing them.
#[derive(Debug, Default)]
pub struct Verified {
    verdicts: Mutex<HashMap<VerdictKey, Result<(), VerifyError>>>,
}

/// A leaf, a bundle, and whether the leaf is checked as a server (else as a client).
type VerdictKey = (String, String, bool);

/// Verdicts kept before the cache starts over; an update needs a few dozen.
const VERDICTS_KEPT: usize = 1024;

impl Verified {
    /// [`trusts`], remembered.
    pub fn trusts(&self, leaf: &str, bundle: &str, usage: Usage) -> Result<(), VerifyError> {
        let key = (leaf.to_owned(), bundle.to_owned(), usage == Usage::Server);
        let mut verdicts = self.verdicts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(verdict) = verdicts.get(&key) {
            return verdict.clone();
        }
        let verdict = trusts(leaf, bundle, usage);
        if verdicts.len() >= VERDICTS_KEPT {
            verdicts.clear();
        }
        verdicts.insert(key, verdict.clone());
        verdict
    }
}

/// Errors collecting the views.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("{host}: {file} is missing")]
    Missing { host: String, file: &'static str },
    #[error("{host}: {file}: {source}")]
    Kubeconfig {
        host: String,
        file: &'static str,
        source: crate::kubeconfig::KubeconfigError,
    },
    #[error("{host}: {file}: {reason}")]
    Reference {
        host: String,
        file: &'static str,
        reason: String,
    },
    #[error("trust invariant violated: {}", .0.join("; "))]
    Violated(Vec<String>),
}

/// The host file holding a kubeconfig's client credentials when the kubeconfig names files instead of
/// embedding them: kubeadm's `kubelet.conf` names the kubelet's rotated client file, one file with both
/// certificate and key. Other references are refused, since the update could not re-issue them.
pub fn credentials_file(file: KubeconfigFile, cert: &str, key: &str) -> Result<HostFile, String> {
    if file == KubeconfigFile::Kubelet && cert == key {
        Ok(HostFile::KubeletClientCurrent)
    } else {
        Err(format!(
            "client credentials in files ({cert}, {key}) are supported only as kubeadm's kubelet.conf has them: one file with certificate and key"
        ))
    }
}

/// Reads a kubeconfig of a host; `None` when an optional one is absent.
pub async fn read_kubeconfig(
    cluster: &impl Cluster,
    host: &str,
    file: KubeconfigFile,
) -> Result<Option<Kubeconfig>, TrustError> {
    let path = HostFile::Kubeconfig(file).path();
    let Some(text) = cluster.read_file(host, HostFile::Kubeconfig(file)).await? else {
        if file.optional() {
            return Ok(None);
        }
        return Err(TrustError::Missing {
            host: host.to_owned(),
            file: path,
        });
    };
    Kubeconfig::parse(&text)
        .map(Some)
        .map_err(|source| TrustError::Kubeconfig {
            host: host.to_owned(),
            file: path,
            source,
        })
}

/// The client certificate a kubeconfig presents (PEM, possibly followed by its key).
pub async fn client_cert_pem(
    cluster: &impl Cluster,
    host: &str,
    file: KubeconfigFile,
    kubeconfig: &Kubeconfig,
) -> Result<String, TrustError> {
    match kubeconfig.client() {
        ClientCredentials::Embedded { cert_pem, .. } => Ok(cert_pem.clone()),
        ClientCredentials::Files { cert, key } => {
            let pem_file =
                credentials_file(file, cert, key).map_err(|reason| TrustError::Reference {
                    host: host.to_owned(),
                    file: file.path(),
                    reason,
                })?;
            cluster
                .read_file(host, pem_file)
                .await?
                .ok_or_else(|| TrustError::Missing {
                    host: host.to_owned(),
                    file: pem_file.path(),
                })
        }
    }
}

/// Reads the trust-relevant files of a host.
pub async fn host_view(
    cluster: &impl Cluster,
    name: &str,
    role: HostRole,
) -> Result<HostView, TrustError> {
    let read = async |file: HostFile| cluster.read_file(name, file).await;
    let ca_bundle = read(HostFile::CaCert)
        .await?
        .ok_or_else(|| TrustError::Missing {
            host: name.to_owned(),
            file: HostFile::CaCert.path(),
        })?;
    let (apiserver_cert, apiserver_kubelet_client_cert) = match role {
        HostRole::Controller => (
            read(HostFile::ApiserverCert).await?,
            read(HostFile::ApiserverKubeletClientCert).await?,
        ),
        HostRole::Worker => (None, None),
    };
    let mut kubeconfigs = Vec::new();
    for &file in KubeconfigFile::of_role(role) {
        let Some(kubeconfig) = read_kubeconfig(cluster, name, file).await? else {
            continue;
        };
        let client_cert_pem = client_cert_pem(cluster, name, file, &kubeconfig).await?;
        kubeconfigs.push((
            file,
            KubeconfigView {
                ca_pem: kubeconfig.ca_pem().to_owned(),
                client_cert_pem,
            },
        ));
    }
    Ok(HostView {
        name: name.to_owned(),
        role,
        ca_bundle,
        apiserver_cert,
        apiserver_kubelet_client_cert,
        kubeconfigs,
    })
}

/// Checks every invariant on the cluster as it is now.
pub async fn check(cluster: &impl Cluster, verified: &Verified) -> Result<(), TrustError> {
    let mut views = Vec::new();
    for host in cluster.hosts().await? {
        views.push(host_view(cluster, &host.name, host.role).await?);
    }
    let pods: Vec<(String, String)> = cluster
        .all_pods()
        .await?
        .into_iter()
        // A bare pod is restarted by nothing the update does: it is the stranded-pods check's, which
        // refuses to go on unless the operator accepted to leave it behind.
        .filter(|p| p.owner.is_some())
        .filter_map(|p| {
            let bundle = p.trust_bundle?;
            Some((format!("{}/{}", p.namespace, p.name), bundle))
        })
        .collect();
    let found = violations(&views, &pods, verified);
    if found.is_empty() {
        Ok(())
    } else {
        Err(TrustError::Violated(found))
    }
}
