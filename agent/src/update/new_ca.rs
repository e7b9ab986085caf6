//! The new-root-CA phase: the new CA is generated on the subcloud (or taken from the operator's
//! cert-file) and kept in the update directory; its key never leaves the subcloud.

use dc_certs::CertifiedCa;
use dc_certs::authority::NewRootCa;
use dc_certs::files::{PRIVATE, PUBLIC, write_atomic};
use dc_certs::inspect::CertSummary;
use dc_protocol::UpdateParams;

use crate::cluster::Cluster;
use crate::journal::Journal;

use super::context::{PhaseContext, PhaseError};

/// File names of the new CA in the update directory.
const NEW_CA_CERT: &str = "new-ca.crt";
const NEW_CA_KEY: &str = "new-ca.key";

/// Runs the new-root-CA phase.
pub async fn generate<C: Cluster>(cx: &PhaseContext<'_, C>) -> Result<(), PhaseError> {
    let record = cx.record()?;
    let now = dc_certs::now();
    // Key generation and validation are CPU work: off the async workers, so a fleet of agents in one
    // process keeps its links and heartbeats going meanwhile.
    let ca = tokio::task::spawn_blocking(move || match &record.params.cert_file {
        Some(file) => dc_certs::upload::validate(file, now)
            .map(|uploaded| uploaded.ca)
            .map_err(|e| PhaseError::NewCa(format!("cert-file refused: {e}"))),
        None => {
            let old = record.old_ca_pem.as_deref().unwrap_or_default();
            let validity = CertSummary::from_pem(old)
                .map(|s| s.not_after - s.not_before)
                .unwrap_or(0);
            new_ca_spec(&record.params)?
                .generate(validity, now)
                .map_err(|e| PhaseError::NewCa(e.to_string()))
        }
    })
    .await
    .map_err(|e| PhaseError::NewCa(format!("generation task failed: {e}")))??;
    let dir = cx.journal.dir();
    // The key first: a certificate whose key is lost would be useless, a key without its
    // certificate is simply regenerated on resume.
    let write = |name: &str, contents: &str, mode: u32| {
        write_atomic(&dir.join(name), contents.as_bytes(), mode)
            .map_err(|e| PhaseError::NewCa(format!("cannot store {name}: {e}")))
    };
    write(NEW_CA_KEY, &ca.key_pem(), PRIVATE)?;
    write(NEW_CA_CERT, ca.cert_pem(), PUBLIC)?;
    let summary =
        CertSummary::from_der(ca.cert_der()).map_err(|e| PhaseError::NewCa(e.to_string()))?;
    let info = crate::facts::root_ca_info(&summary);
    cx.journal.update(|r| r.new_ca = Some(info), |_, _| None)?;
    cx.journal.progress(
        None,
        100,
        format!(
            "new root CA {} serial {} ready",
            summary.subject, summary.serial
        ),
    )?;
    Ok(())
}

/// The stored new CA's certificate as the heartbeat reports it (no key needed).
pub fn stored_info(journal: &Journal) -> Result<dc_protocol::RootCaInfo, PhaseError> {
    let pem = std::fs::read_to_string(journal.dir().join(NEW_CA_CERT))
        .map_err(|e| PhaseError::NewCa(format!("cannot read {NEW_CA_CERT}: {e}")))?;
    CertSummary::from_pem(&pem)
        .map(|s| crate::facts::root_ca_info(&s))
        .map_err(|e| PhaseError::NewCa(e.to_string()))
}

/// Removes the stored new CA (a rollback's last step; idempotent). Its key existed nowhere else but
/// on the controllers, which the rollback already cleaned.
pub fn remove(journal: &Journal) -> Result<(), PhaseError> {
    for name in [NEW_CA_KEY, NEW_CA_CERT] {
        match std::fs::remove_file(journal.dir().join(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(PhaseError::NewCa(format!("cannot remove {name}: {e}")));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The new CA the new-root-CA phase stored, for the phases after it.
pub fn load(journal: &Journal) -> Result<CertifiedCa, PhaseError> {
    let dir = journal.dir();
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .map_err(|e| PhaseError::NewCa(format!("cannot read {name}: {e}")))
    };
    CertifiedCa::from_pem(&read(NEW_CA_CERT)?, &read(NEW_CA_KEY)?)
        .map_err(|e| PhaseError::NewCa(e.to_string()))
}

/// The new CA's subject and expiry from the operator's parameters, refused when invalid.
pub fn new_ca_spec(params: &UpdateParams) -> Result<NewRootCa, PhaseError> {
    let subject = params
        .subject
        .as_deref()
        .map(dc_certs::Subject::parse)
        .transpose()
        .map_err(|e| PhaseError::Refused(format!("invalid subject: {e}")))?;
    let expiry = params
        .expiry_date
        .as_deref()
        .map(|d| dc_certs::ExpiryDate::parse_valid_at(d, dc_certs::now()))
        .transpose()
        .map_err(|e| PhaseError::Refused(format!("invalid expiry-date: {e}")))?;
    Ok(NewRootCa { subject, expiry })
}
