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

/// Keeps the old key's file, as it is, in the data dir unless it already is: a controller's `ca.key`
/// (or its backup) that matches the old CA, never one unchecked.
///
/// Before trust-new-ca touched a host, a copy that cannot be written fails the phase there, before
/// any host changes: otherwise the key would be gone from every controller at the end of the phase
/// while the subcloud is still before the point of no return, and the rollback promised there could
/// not finish. Where no controller holds the old key at all (a kubeadm cluster with an external CA,
/// no `ca.key`), no rollback could ever re-issue from it, from any phase: the update goes on, and a
/// rollback is refused at its start ([`super::Updater::start`]). Once a host of the phase changed (a
/// resumed phase), refusing would leave the update finishable neither way, so it only warns.
pub async fn keep<C: Cluster>(cx: &PhaseContext<'_, C>) -> Result<(), PhaseError> {
    let path = cx.journal.dir().join(OLD_CA_KEY);
    if path.is_file() {
        return Ok(());
    }
    let Some((_, text)) = find(cx).await? else {
        warn!(
            "{NOT_ON_ANY_CONTROLLER}: the old root CA's key is not kept, and a rollback of this update will be refused"
        );
        return Ok(());
    };
    match write_atomic(&path, text.as_bytes(), PRIVATE) {
        Ok(()) => Ok(()),
        Err(e) if cx.record()?.hosts.is_empty() => Err(PhaseError::Refused(format!(
            "cannot keep a copy of the old root CA's key in the agent's data dir ({}: {e}), which a rollback needs once this phase replaced every controller's ca.key; no host was changed: free or fix the data dir and resume the update, or roll it back",
            path.display()
        ))),
        Err(e) => {
            warn!(error = %e, "the old root CA's key is not kept: a rollback from here on may be refused");
            Ok(())
        }
    }
}

/// The old key's file as it was (what a rollback puts back into `ca.key`): the kept copy, else a
/// controller's `ca.key` (or its backup) that matches the old CA.
pub async fn key_text<C: Cluster>(cx: &PhaseContext<'_, C>) -> Result<String, PhaseError> {
    match std::fs::read_to_string(cx.journal.dir().join(OLD_CA_KEY)) {
        Ok(text) => Ok(text),
        Err(_) => match find(cx).await? {
            Some((_, text)) => Ok(text),
            None => Err(PhaseError::Refused(format!(
                "{NOT_ON_ANY_CONTROLLER}, so nothing can be issued from it"
            ))),
        },
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

/// Why there is no old key to keep or issue from.
const NOT_ON_ANY_CONTROLLER: &str =
    "the old root CA's key is on no controller (no ca.key, nor its backup, matches the old CA)";

/// A controller's `ca.key` (or its backup) that matches the old CA, parsed and as written; `None`
/// when no controller holds it.
async fn find<C: Cluster>(
    cx: &PhaseContext<'_, C>,
) -> Result<Option<(CertifiedCa, String)>, PhaseError> {
    let cert = old_cert(cx)?;
    for host in cx.sorted_hosts().await? {
        if host.role != HostRole::Controller {
            continue;
        }
        let current = cx.cluster.read_file(&host.name, HostFile::CaKey).await?;
        let backup = cx.cluster.read_backup(&host.name, HostFile::CaKey).await?;
        for key in current.into_iter().chain(backup) {
            if let Ok(ca) = CertifiedCa::from_pem(&cert, &key) {
                return Ok(Some((ca, key)));
            }
        }
    }
    Ok(None)
}
