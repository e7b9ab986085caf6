//! The old root CA's key, which a rollback issues leaves from and puts back into `ca.key`.
//!
//! Until hosts trust-new-ca, every controller's `ca.key` is the old key. That phase replaces it, so it
//! first keeps a copy in the agent's data dir (owner-only, beside the new CA's key, on the controller
//! the agent runs on, which holds the key anyway): a rollback from the middle of trust-new-ca still has
//! it once every controller holds the new one. The copy goes when the rollback removes the new CA.

use dc_certs::CertifiedCa;
use dc_certs::files::{PRIVATE, write_atomic};

use crate::cluster::{Cluster, HostFile, HostRole};
use crate::journal::Journal;

use super::context::{PhaseContext, PhaseError};

const OLD_CA_KEY: &str = "old-ca.key";

/// Keeps the old key in the data dir unless it already is, from the first controller whose `ca.key`
/// still matches the old CA (or whose backup does; [`CertifiedCa::from_pem`] refuses a key that is not
/// the certificate's). Without one the rollback would be impossible from
/// here on, so trust-new-ca does not begin.
pub async fn keep<C: Cluster>(cx: &PhaseContext<'_, C>) -> Result<(), PhaseError> {
    if stored(cx).is_ok() {
        return Ok(());
    }
    let ca = find(cx).await?;
    let path = cx.journal.dir().join(OLD_CA_KEY);
    write_atomic(&path, ca.key_pem().as_bytes(), PRIVATE).map_err(|e| {
        PhaseError::NewCa(format!("cannot keep the old CA's key in {OLD_CA_KEY}: {e}"))
    })
}

/// The old CA with its key: the kept copy, else a controller's `ca.key` (or its backup) that matches.
pub async fn load<C: Cluster>(cx: &PhaseContext<'_, C>) -> Result<CertifiedCa, PhaseError> {
    match stored(cx) {
        Ok(ca) => Ok(ca),
        Err(_) => find(cx).await,
    }
}

/// Removes the kept copy (idempotent).
pub fn forget(journal: &Journal) -> Result<(), PhaseError> {
    match std::fs::remove_file(journal.dir().join(OLD_CA_KEY)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(PhaseError::NewCa(format!(
            "cannot remove {OLD_CA_KEY}: {e}"
        ))),
        _ => Ok(()),
    }
}

fn old_cert<C: Cluster>(cx: &PhaseContext<'_, C>) -> Result<String, PhaseError> {
    cx.record()?
        .old_ca_pem
        .ok_or_else(|| PhaseError::Refused("the update recorded no old root CA".into()))
}

fn stored<C: Cluster>(cx: &PhaseContext<'_, C>) -> Result<CertifiedCa, PhaseError> {
    let key = std::fs::read_to_string(cx.journal.dir().join(OLD_CA_KEY))
        .map_err(|e| PhaseError::NewCa(format!("cannot read {OLD_CA_KEY}: {e}")))?;
    CertifiedCa::from_pem(&old_cert(cx)?, &key).map_err(|e| PhaseError::NewCa(e.to_string()))
}

async fn find<C: Cluster>(cx: &PhaseContext<'_, C>) -> Result<CertifiedCa, PhaseError> {
    let cert = old_cert(cx)?;
    for host in cx.sorted_hosts().await? {
        if host.role != HostRole::Controller {
            continue;
        }
        let current = cx.cluster.read_file(&host.name, HostFile::CaKey).await?;
        let backup = cx.cluster.read_backup(&host.name, HostFile::CaKey).await?;
        for key in current.into_iter().chain(backup) {
            if let Ok(ca) = CertifiedCa::from_pem(&cert, &key) {
                return Ok(ca);
            }
        }
    }
    Err(PhaseError::Refused(
        "the old root CA's key is on no controller any more (neither ca.key nor its backup), so nothing can be issued from it".into(),
    ))
}
