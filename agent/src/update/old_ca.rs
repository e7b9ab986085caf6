//! The old root CA's key, which a rollback issues leaves from and puts back into `ca.key`.
//!
//! Until hosts trust-new-ca, every controller's `ca.key` is the old key. That phase replaces it, so it
//! first keeps a copy of the file, byte for byte, in the agent's data dir (owner-only, beside the new CA's key, on the controller
//! the agent runs on, which holds the key anyway): a rollback from the middle of trust-new-ca still has
//! it once every controller holds the new one. The copy goes when the rollback removes the new CA.

use dc_certs::CertifiedCa;
use dc_certs::files::{PRIVATE, write_atomic};

use tracing::warn;

use crate::cluster::{Cluster, HostFile, HostRole};
use crate::journal::Journal;

use super::context::{PhaseContext, PhaseError};

const OLD_CA_KEY: &str = "old-ca.key";

/// Keeps the old key's file, as it is, in the data dir unless it already is. Before trust-new-ca
/// touched a host, every controller's `ca.key` is the old key, whatever its format; a resumed phase
/// looks for a controller whose key still matches the old CA. Never fails the phase: without the copy
/// only a rollback from the middle of trust-new-ca on is lost, and it says why when asked.
pub async fn keep<C: Cluster>(cx: &PhaseContext<'_, C>) -> Result<(), PhaseError> {
    if std::fs::metadata(cx.journal.dir().join(OLD_CA_KEY)).is_ok() {
        return Ok(());
    }
    let key = if cx.record()?.hosts.is_empty() {
        first_controller_key(cx).await
    } else {
        find(cx).await.map(|(_, text)| text)
    };
    let kept = key.and_then(|text| {
        write_atomic(&cx.journal.dir().join(OLD_CA_KEY), text.as_bytes(), PRIVATE).map_err(|e| {
            PhaseError::NewCa(format!("cannot keep the old CA's key in {OLD_CA_KEY}: {e}"))
        })
    });
    if let Err(e) = kept {
        warn!(error = %e, "the old root CA's key is not kept: no rollback from trust-new-ca on");
    }
    Ok(())
}

/// The old key's file as it was (what a rollback puts back into `ca.key`): the kept copy, else a
/// controller's `ca.key` (or its backup) that matches the old CA.
pub async fn key_text<C: Cluster>(cx: &PhaseContext<'_, C>) -> Result<String, PhaseError> {
    match std::fs::read_to_string(cx.journal.dir().join(OLD_CA_KEY)) {
        Ok(text) => Ok(text),
        Err(_) => find(cx).await.map(|(_, text)| text),
    }
}

/// The old CA with its key, to issue from.
pub async fn load<C: Cluster>(cx: &PhaseContext<'_, C>) -> Result<CertifiedCa, PhaseError> {
    let text = key_text(cx).await?;
    CertifiedCa::from_pem(&old_cert(cx)?, &text).map_err(|e| {
        PhaseError::Refused(format!(
            "the old root CA's key cannot issue certificates: {e}"
        ))
    })
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

async fn first_controller_key<C: Cluster>(cx: &PhaseContext<'_, C>) -> Result<String, PhaseError> {
    let hosts = cx.sorted_hosts().await?;
    let first = hosts
        .iter()
        .find(|h| h.role == HostRole::Controller)
        .ok_or_else(|| PhaseError::Refused("no controller host".into()))?;
    cx.read(&first.name, HostFile::CaKey).await
}

/// A controller's `ca.key` (or its backup) that matches the old CA, parsed and as written.
async fn find<C: Cluster>(cx: &PhaseContext<'_, C>) -> Result<(CertifiedCa, String), PhaseError> {
    let cert = old_cert(cx)?;
    for host in cx.sorted_hosts().await? {
        if host.role != HostRole::Controller {
            continue;
        }
        let current = cx.cluster.read_file(&host.name, HostFile::CaKey).await?;
        let backup = cx.cluster.read_backup(&host.name, HostFile::CaKey).await?;
        for key in current.into_iter().chain(backup) {
            if let Ok(ca) = CertifiedCa::from_pem(&cert, &key) {
                return Ok((ca, key));
            }
        }
    }
    Err(PhaseError::Refused(
        "the old root CA's key is on no controller any more (neither ca.key nor its backup), so nothing can be issued from it".into(),
    ))
}
