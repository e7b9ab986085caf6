//! Chain verification against a trust bundle.
//!
//! This is the safety property the phase order of a root CA update exists for: a pod whose trust bundle
//! does not verify the API server's serving certificate, or a component whose client certificate does
//! not verify against the API server's client CA bundle, has lost the cluster. The agent checks it after
//! every step, and the tests check it from the files.

use std::time::Duration;

use rustls_pki_types::CertificateDer;

use crate::UnixTime;

/// What the leaf must be good for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// A TLS server (extended key usage serverAuth, when the extension is present).
    Server,
    /// A TLS client (extended key usage clientAuth, when the extension is present).
    Client,
}

/// Why a chain does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("no certificate in the {0}")]
    Empty(&'static str),
    #[error("{what} does not parse: {reason}")]
    Parse { what: &'static str, reason: String },
    #[error(
        "certificate '{subject}' does not verify against the trust bundle ({bundle}): {reason}"
    )]
    Untrusted {
        subject: String,
        bundle: String,
        reason: String,
    },
}

/// Verifies the first certificate of `leaf_pem` (followed by any intermediates) against every
/// certificate of `bundle_pem` as a trust anchor, at time `now`.
pub fn verify_chain(
    leaf_pem: &str,
    bundle_pem: &str,
    usage: Usage,
    now: UnixTime,
) -> Result<(), VerifyError> {
    let chain = crate::pem_certificates(leaf_pem).map_err(|e| VerifyError::Parse {
        what: "certificate",
        reason: e.to_string(),
    })?;
    let anchors = crate::pem_certificates(bundle_pem).map_err(|e| VerifyError::Parse {
        what: "trust bundle",
        reason: e.to_string(),
    })?;
    verify_chain_der(&chain, &anchors, usage, now)
}

/// [`verify_chain`] on DER certificates: `chain[0]` is the leaf, the rest intermediates.
pub fn verify_chain_der(
    chain: &[Vec<u8>],
    anchors: &[Vec<u8>],
    usage: Usage,
    now: UnixTime,
) -> Result<(), VerifyError> {
    let (leaf, intermediates) = chain
        .split_first()
        .ok_or(VerifyError::Empty("certificate"))?;
    if anchors.is_empty() {
        return Err(VerifyError::Empty("trust bundle"));
    }
    let anchor_ders: Vec<CertificateDer<'_>> = anchors
        .iter()
        .map(|d| CertificateDer::from(d.as_slice()))
        .collect();
    let trust_anchors = anchor_ders
        .iter()
        .map(webpki::anchor_from_trusted_cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| VerifyError::Parse {
            what: "trust bundle",
            reason: format!("{e:?}"),
        })?;
    let intermediates: Vec<CertificateDer<'_>> = intermediates
        .iter()
        .map(|d| CertificateDer::from(d.as_slice()))
        .collect();
    let leaf_der = CertificateDer::from(leaf.as_slice());
    let ee = webpki::EndEntityCert::try_from(&leaf_der).map_err(|e| VerifyError::Parse {
        what: "certificate",
        reason: format!("{e:?}"),
    })?;
    let time = rustls_pki_types::UnixTime::since_unix_epoch(Duration::from_secs(
        u64::try_from(now).unwrap_or(0),
    ));
    let eku = match usage {
        Usage::Server => webpki::KeyUsage::server_auth(),
        Usage::Client => webpki::KeyUsage::client_auth(),
    };
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &trust_anchors,
        &intermediates,
        time,
        eku,
        None,
        None,
    )
    .map(|_| ())
    .map_err(|e| VerifyError::Untrusted {
        subject: describe(leaf),
        bundle: anchors
            .iter()
            .map(|a| describe(a))
            .collect::<Vec<_>>()
            .join("; "),
        reason: format!("{e:?}"),
    })
}

fn describe(der: &[u8]) -> String {
    crate::inspect::CertSummary::from_der(der)
        .map(|s| {
            format!(
                "{} serial {}",
                s.subject,
                &s.serial[..s.serial.len().min(8)]
            )
        })
        .unwrap_or_else(|_| "unparseable certificate".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KeyAlgorithm;
    use crate::authority::NewRootCa;
    use crate::leaf::LeafSpec;

    #[test]
    fn bundle_of_old_and_new_trusts_both_generations() {
        let now = crate::now();
        let old = NewRootCa::default().generate(86400 * 30, now).unwrap();
        let new = NewRootCa::default().generate(86400 * 30, now).unwrap();
        let leaf_old = LeafSpec::server("a", &["a"], &[])
            .issue(&old, now + 86400, now, KeyAlgorithm::EcdsaP256)
            .unwrap();
        let leaf_new = LeafSpec::server("a", &["a"], &[])
            .issue(&new, now + 86400, now, KeyAlgorithm::EcdsaP256)
            .unwrap();
        let both = format!("{}{}", old.cert_pem(), new.cert_pem());
        verify_chain(&leaf_old.cert_pem, &both, Usage::Server, now).unwrap();
        verify_chain(&leaf_new.cert_pem, &both, Usage::Server, now).unwrap();
        let err = verify_chain(&leaf_old.cert_pem, new.cert_pem(), Usage::Server, now).unwrap_err();
        assert!(matches!(err, VerifyError::Untrusted { .. }), "{err}");
        // Wrong usage and expiry are caught too.
        assert!(verify_chain(&leaf_new.cert_pem, &both, Usage::Client, now).is_err());
        assert!(verify_chain(&leaf_new.cert_pem, &both, Usage::Server, now + 2 * 86400).is_err());
        assert_eq!(
            verify_chain("", &both, Usage::Server, now).unwrap_err(),
            VerifyError::Empty("certificate")
        );
    }
}
