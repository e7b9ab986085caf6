//! The trust invariants, checked after every step of an update.
//!
//! This is the safety property the phase order exists for: every running pod's bundle verifies every
//! apiserver's serving certificate, every component's client certificate verifies against every
//! apiserver's client CA bundle (its host's `ca.crt`), every kubeconfig's CA data verifies the apiserver
//! serving certificates, and each apiserver's kubelet client certificate verifies against every kubelet's
//! client CA. A violation fails the phase with a message naming who lost whom.

use std::collections::BTreeMap;

use dc_certs::inspect::CertSummary;
use dc_certs::verify::{Usage, VerifyError, verify_chain};

use crate::cluster::{Cluster, ClusterError, Component, HostFile, HostRole};
use crate::kubeconfig::Kubeconfig;

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
    pub kubeconfigs: Vec<(Component, Kubeconfig)>,
}

/// Every violated invariant, in a stable order; empty when the cluster is sound.
pub fn violations(hosts: &[HostView], pods: &[(String, String)]) -> Vec<String> {
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
            for (component, kubeconfig) in &h.kubeconfigs {
                if let Err(e) = trusts(serving, &kubeconfig.ca_pem, Usage::Server) {
                    found.push(format!(
                        "{component:?} on {} cannot verify the apiserver of {}: {e}",
                        h.name, c.name
                    ));
                }
                if let Err(e) = trusts(&kubeconfig.client_cert_pem, &c.ca_bundle, Usage::Client) {
                    found.push(format!(
                        "the apiserver of {} rejects the client certificate of {component:?} on {}: {e}",
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
    let at = CertSummary::from_pem(leaf)
        .map(|s| dc_certs::now().clamp(s.not_before, s.not_after))
        .unwrap_or_else(|_| dc_certs::now());
    verify_chain(leaf, bundle, usage, at)
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
    #[error("trust invariant violated: {}", .0.join("; "))]
    Violated(Vec<String>),
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
    for &component in Component::with_kubeconfig(role) {
        let file = HostFile::Kubeconfig(component);
        let text = read(file).await?.ok_or_else(|| TrustError::Missing {
            host: name.to_owned(),
            file: file.path(),
        })?;
        let parsed = Kubeconfig::parse(&text).map_err(|source| TrustError::Kubeconfig {
            host: name.to_owned(),
            file: file.path(),
            source,
        })?;
        kubeconfigs.push((component, parsed));
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
pub async fn check(cluster: &impl Cluster) -> Result<(), TrustError> {
    let mut views = Vec::new();
    for host in cluster.hosts().await? {
        views.push(host_view(cluster, &host.name, host.role).await?);
    }
    let pods: Vec<(String, String)> = cluster
        .all_pods()
        .await?
        .into_iter()
        .filter_map(|p| {
            let bundle = p.trust_bundle?;
            Some((format!("{}/{}", p.namespace, p.name), bundle))
        })
        .collect();
    let found = violations(&views, &pods);
    if found.is_empty() {
        Ok(())
    } else {
        Err(TrustError::Violated(found))
    }
}
