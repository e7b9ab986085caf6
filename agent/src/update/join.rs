//! kubeadm's join discovery: `kube-public/cluster-info` holds a kubeconfig with the cluster's CA, which
//! `kubeadm join` reads and pins against `--discovery-token-ca-cert-hash`. Left with the old CA, no
//! node could join after the update; so every host phase ends by giving it the bundle the hosts now
//! trust (both CAs, then the new one alone), as kubeadm's manual rotation procedure does. A cluster
//! without it (not built by kubeadm) is left as it is.

use tracing::info;

use crate::cluster::Cluster;
use crate::kubeconfig::set_discovery_ca;

use super::context::{PhaseContext, PhaseError};

/// Sets the discovery kubeconfig's CA data to `bundle_pem`; repeating it changes nothing.
pub async fn publish_ca<C: Cluster>(
    cx: &PhaseContext<'_, C>,
    bundle_pem: &str,
) -> Result<(), PhaseError> {
    let Some(kubeconfig) = cx.cluster.cluster_info().await? else {
        info!("no kube-public/cluster-info: not a kubeadm cluster, nothing to update for joins");
        return Ok(());
    };
    let edited = set_discovery_ca(&kubeconfig, bundle_pem)
        .map_err(|e| PhaseError::Refused(format!("kube-public/cluster-info: {e}")))?;
    if edited != kubeconfig {
        cx.cluster.set_cluster_info(&edited).await?;
    }
    Ok(())
}
