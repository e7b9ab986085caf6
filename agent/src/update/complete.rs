//! The complete phase: every host's `ca.crt` holds the new root CA alone and the trust invariants
//! hold.

use crate::cluster::{Cluster, HostFile};

use super::context::{PhaseContext, PhaseError};
use super::new_ca;

/// Runs the complete phase.
pub async fn verify<C: Cluster>(cx: &PhaseContext<'_, C>) -> Result<(), PhaseError> {
    let new_ca = new_ca::load(cx.journal)?;
    let new = dc_certs::pem_certificates(new_ca.cert_pem()).unwrap_or_default();
    for host in cx.sorted_hosts().await? {
        let bundle = cx.read(&host.name, HostFile::CaCert).await?;
        if dc_certs::pem_certificates(&bundle).unwrap_or_default() != new {
            return Err(PhaseError::Certificate {
                host: host.name,
                file: HostFile::CaCert.path(),
                reason: "does not hold the new root CA alone".into(),
            });
        }
    }
    cx.check_trust().await
}
