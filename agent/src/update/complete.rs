//! The complete phase: every host's `ca.crt` holds the new root CA alone and the trust invariants
//! hold. A rollback ends with the same check for the old root CA.

use crate::cluster::{Cluster, HostFile};

use super::context::{PhaseContext, PhaseError};
use super::new_ca;

/// Runs the complete phase.
pub async fn verify<C: Cluster>(cx: &PhaseContext<'_, C>) -> Result<(), PhaseError> {
    let new_ca = new_ca::load(cx.journal)?;
    holds_alone(cx, new_ca.cert_pem(), "the new root CA").await
}

/// Checks that every host's `ca.crt` holds `ca_pem` (`what`) alone, and the trust invariants.
pub async fn holds_alone<C: Cluster>(
    cx: &PhaseContext<'_, C>,
    ca_pem: &str,
    what: &str,
) -> Result<(), PhaseError> {
    let expected = dc_certs::pem_certificates(ca_pem).unwrap_or_default();
    for host in cx.sorted_hosts().await? {
        let bundle = cx.read(&host.name, HostFile::CaCert).await?;
        if dc_certs::pem_certificates(&bundle).unwrap_or_default() != expected {
            return Err(PhaseError::Certificate {
                host: host.name,
                file: HostFile::CaCert.path(),
                reason: format!("does not hold {what} alone"),
            });
        }
    }
    cx.check_trust().await
}
