//! Validation of an uploaded root CA (`cert-file`: one PEM holding the certificate and its private key,
//! optionally followed by the certificate's issuer chain).
//!
//! The controller validates at strategy create, and the agent validates again before using it. The
//! original only checked the validity window and CA:TRUE; it never checked that the key matches the
//! certificate or that the certificate is self-signed, so a wrong key was found only after hosts had been
//! told to trust a CA nobody could sign with. Each failure here has its own message.

use rcgen::{KeyPair, PublicKeyData};
use x509_parser::prelude::*;

use crate::expiry::MIN_VALIDITY_SECS;
use crate::inspect::{CertSummary, name_string};
use crate::{CertifiedCa, UnixTime};

/// Why an uploaded CA is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadError {
    #[error("cert-file holds no certificate (expected a PEM 'CERTIFICATE' block)")]
    NoCertificate,
    #[error("cert-file is not valid PEM: {0}")]
    Pem(String),
    #[error("cert-file certificate does not parse: {0}")]
    Unparseable(String),
    #[error("cert-file certificate is not a CA: basicConstraints CA:TRUE is missing")]
    NotCa,
    #[error("cert-file certificate may not sign certificates: its keyUsage lacks keyCertSign")]
    NoKeyCertSign,
    #[error(
        "cert-file holds no private key (expected a PEM 'PRIVATE KEY' block with the certificate)"
    )]
    NoPrivateKey,
    #[error("cert-file holds more than one private key")]
    SeveralPrivateKeys,
    #[error(
        "cert-file private key is not usable ({0}); a PKCS#8 'BEGIN PRIVATE KEY' block with an ECDSA P-256/P-384, Ed25519 or RSA key is expected (convert with `openssl pkcs8 -topk8 -nocrypt`)"
    )]
    UnusableKey(String),
    #[error("cert-file private key does not match the certificate's public key")]
    KeyMismatch,
    #[error(
        "cert-file certificate is self-issued but its signature does not verify with its own key"
    )]
    BadSelfSignature,
    #[error(
        "cert-file certificate is not self-signed and the file does not hold its issuer chain up to a self-signed root (missing issuer '{0}')"
    )]
    ChainIncomplete(String),
    #[error("cert-file chain certificate '{issuer}' does not verify the signature of '{subject}'")]
    BadChainSignature { issuer: String, subject: String },
    #[error("cert-file certificate is not valid before {0}")]
    NotYetValid(String),
    #[error("cert-file certificate expired on {0}")]
    Expired(String),
    #[error("cert-file certificate expires on {0}, less than 24 hours from now")]
    ExpiresTooSoon(String),
}

/// An uploaded CA that passed every check.
#[derive(Debug)]
pub struct UploadedCa {
    /// The CA, ready to sign leaves.
    pub ca: CertifiedCa,
    /// The issuer chain that followed the certificate in the file (empty when self-signed).
    pub chain_pem: String,
    /// The certificate's summary.
    pub summary: CertSummary,
}

/// Validates a `cert-file` at time `now`.
pub fn validate(pem_text: &str, now: UnixTime) -> Result<UploadedCa, UploadError> {
    let blocks = ::pem::parse_many(pem_text).map_err(|e| UploadError::Pem(e.to_string()))?;
    let certs: Vec<&::pem::Pem> = blocks.iter().filter(|b| b.tag() == "CERTIFICATE").collect();
    let keys: Vec<&::pem::Pem> = blocks
        .iter()
        .filter(|b| b.tag().ends_with("PRIVATE KEY"))
        .collect();
    let first = certs.first().ok_or(UploadError::NoCertificate)?;
    let parsed = certs
        .iter()
        .map(|b| {
            X509Certificate::from_der(b.contents())
                .map(|(_, c)| c)
                .map_err(|e| UploadError::Unparseable(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let cert = &parsed[0];

    if !cert.is_ca() {
        return Err(UploadError::NotCa);
    }
    // An absent keyUsage extension places no restriction (RFC 5280 4.2.1.3), as in CAs made by
    // `openssl req -x509` with the default configuration; a present one must allow keyCertSign.
    if let Ok(Some(ku)) = cert.key_usage()
        && !ku.value.key_cert_sign()
    {
        return Err(UploadError::NoKeyCertSign);
    }

    let key_block = match keys.as_slice() {
        [] => return Err(UploadError::NoPrivateKey),
        [one] => *one,
        _ => return Err(UploadError::SeveralPrivateKeys),
    };
    if key_block.tag() != "PRIVATE KEY" {
        return Err(UploadError::UnusableKey(format!(
            "'{}' blocks are not PKCS#8",
            key_block.tag()
        )));
    }
    let key = KeyPair::try_from(key_block.contents())
        .map_err(|e| UploadError::UnusableKey(e.to_string()))?;
    if key.der_bytes() != cert.public_key().subject_public_key.data.as_ref() {
        return Err(UploadError::KeyMismatch);
    }

    check_signatures(&parsed)?;

    let summary = crate::inspect::summarise(cert);
    if now < summary.not_before {
        return Err(UploadError::NotYetValid(format_time(summary.not_before)));
    }
    if now > summary.not_after {
        return Err(UploadError::Expired(format_time(summary.not_after)));
    }
    if summary.not_after - now < MIN_VALIDITY_SECS {
        return Err(UploadError::ExpiresTooSoon(format_time(summary.not_after)));
    }

    let cert_pem = crate::pem_encode(first);
    let ca = CertifiedCa::from_pem(&cert_pem, &crate::pem_encode(key_block))
        .map_err(|e| UploadError::UnusableKey(e.to_string()))?;
    let chain_pem = certs[1..].iter().map(|b| crate::pem_encode(b)).collect();
    Ok(UploadedCa {
        ca,
        chain_pem,
        summary,
    })
}

/// Self-signed: the signature verifies with its own key. Otherwise each issuer must be in the file, up to
/// a self-signed root.
fn check_signatures(certs: &[X509Certificate<'_>]) -> Result<(), UploadError> {
    let mut current = &certs[0];
    // A chain never needs more links than there are certificates; this also stops issuer loops.
    for _ in 0..certs.len() {
        if current.subject().as_raw() == current.issuer().as_raw() {
            return current.verify_signature(None).map_err(|_| {
                if std::ptr::eq(current, &certs[0]) {
                    UploadError::BadSelfSignature
                } else {
                    UploadError::BadChainSignature {
                        issuer: name_string(current.subject()),
                        subject: name_string(current.subject()),
                    }
                }
            });
        }
        let issuer = certs
            .iter()
            .find(|c| c.subject().as_raw() == current.issuer().as_raw())
            .ok_or_else(|| UploadError::ChainIncomplete(name_string(current.issuer())))?;
        current
            .verify_signature(Some(issuer.public_key()))
            .map_err(|_| UploadError::BadChainSignature {
                issuer: name_string(issuer.subject()),
                subject: name_string(current.subject()),
            })?;
        current = issuer;
    }
    Err(UploadError::ChainIncomplete(name_string(current.issuer())))
}

/// `YYYY-MM-DD HH:MM:SS UTC`.
pub fn format_time(t: UnixTime) -> String {
    ::time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(::time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
            ))
            .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KeyAlgorithm;
    use crate::authority::NewRootCa;
    use crate::leaf::LeafSpec;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyUsagePurpose};

    const DAY: i64 = 86400;

    fn ca_params(cn: &str, not_before: i64, not_after: i64) -> CertificateParams {
        let mut p = CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.not_before = ::time::OffsetDateTime::from_unix_timestamp(not_before).unwrap();
        p.not_after = ::time::OffsetDateTime::from_unix_timestamp(not_after).unwrap();
        p
    }

    fn self_signed(p: &CertificateParams) -> String {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        format!(
            "{}{}",
            p.self_signed(&key).unwrap().pem(),
            key.serialize_pem()
        )
    }

    fn now() -> i64 {
        crate::now()
    }

    #[test]
    fn accepts_a_generated_ca() {
        let ca = NewRootCa::default().generate(30 * DAY, now()).unwrap();
        let file = format!("{}{}", ca.cert_pem(), ca.key_pem());
        let ok = validate(&file, now()).unwrap();
        assert_eq!(ok.ca.cert_der(), ca.cert_der());
        assert!(ok.chain_pem.is_empty());
    }

    #[test]
    fn accepts_an_intermediate_with_its_chain_and_rejects_it_without() {
        let root_params = ca_params("root", now() - DAY, now() + 90 * DAY);
        let root_key = KeyPair::generate().unwrap();
        let root_pem = root_params.self_signed(&root_key).unwrap().pem();
        let root = Issuer::new(root_params, root_key);
        let inter_key = KeyPair::generate().unwrap();
        let inter_pem = ca_params("inter", now() - DAY, now() + 60 * DAY)
            .signed_by(&inter_key, &root)
            .unwrap()
            .pem();
        let with_chain = format!("{inter_pem}{}{root_pem}", inter_key.serialize_pem());
        assert_eq!(validate(&with_chain, now()).unwrap().chain_pem, root_pem);
        let without = format!("{inter_pem}{}", inter_key.serialize_pem());
        assert_eq!(
            validate(&without, now()).unwrap_err(),
            UploadError::ChainIncomplete("CN=root".into())
        );
    }

    #[test]
    fn rejects_each_reason_with_its_own_error() {
        let n = now();
        let good = ca_params("good", n - DAY, n + 30 * DAY);

        assert_eq!(validate("", n).unwrap_err(), UploadError::NoCertificate);
        let garbage_cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            validate(garbage_cert, n).unwrap_err(),
            UploadError::Unparseable(_)
        ));
        assert!(matches!(
            validate(
                "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
                n
            )
            .unwrap_err(),
            UploadError::Pem(_)
        ));

        // A leaf, not a CA.
        let ca = NewRootCa::default().generate(30 * DAY, n).unwrap();
        let leaf = LeafSpec::server("x", &["x"], &[])
            .issue(&ca, n + DAY * 10, n, KeyAlgorithm::EcdsaP256)
            .unwrap();
        assert_eq!(
            validate(&format!("{}{}", leaf.cert_pem, leaf.key_pem), n).unwrap_err(),
            UploadError::NotCa
        );

        // CA:TRUE but keyUsage without keyCertSign.
        let mut no_sign = good.clone();
        no_sign.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        assert_eq!(
            validate(&self_signed(&no_sign), n).unwrap_err(),
            UploadError::NoKeyCertSign
        );

        // No key, two keys, a key that is not PKCS#8, a key that is not a key.
        assert_eq!(
            validate(ca.cert_pem(), n).unwrap_err(),
            UploadError::NoPrivateKey
        );
        let two = format!("{}{}{}", ca.cert_pem(), ca.key_pem(), ca.key_pem());
        assert_eq!(
            validate(&two, n).unwrap_err(),
            UploadError::SeveralPrivateKeys
        );
        let sec1 = format!(
            "{}-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
            ca.cert_pem()
        );
        assert!(matches!(
            validate(&sec1, n).unwrap_err(),
            UploadError::UnusableKey(_)
        ));
        let junk = format!(
            "{}-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            ca.cert_pem()
        );
        assert!(matches!(
            validate(&junk, n).unwrap_err(),
            UploadError::UnusableKey(_)
        ));

        // The key of another CA.
        let other = NewRootCa::default().generate(30 * DAY, n).unwrap();
        let mismatch = format!("{}{}", ca.cert_pem(), other.key_pem());
        assert_eq!(
            validate(&mismatch, n).unwrap_err(),
            UploadError::KeyMismatch
        );

        // Self-issued, but the signature was tampered with.
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let mut der = good.self_signed(&key).unwrap().der().to_vec();
        let last = der.len() - 2;
        der[last] ^= 0x01;
        let tampered = format!(
            "{}{}",
            crate::pem_encode(&::pem::Pem::new("CERTIFICATE", der)),
            key.serialize_pem()
        );
        assert_eq!(
            validate(&tampered, n).unwrap_err(),
            UploadError::BadSelfSignature
        );

        // Validity window.
        let future = ca_params("future", n + DAY, n + 30 * DAY);
        assert!(matches!(
            validate(&self_signed(&future), n).unwrap_err(),
            UploadError::NotYetValid(_)
        ));
        let expired = ca_params("expired", n - 30 * DAY, n - DAY);
        assert!(matches!(
            validate(&self_signed(&expired), n).unwrap_err(),
            UploadError::Expired(_)
        ));
        let short = ca_params("short", n - DAY, n + 3600);
        assert!(matches!(
            validate(&self_signed(&short), n).unwrap_err(),
            UploadError::ExpiresTooSoon(_)
        ));
    }

    #[test]
    fn chain_with_a_wrong_issuer_signature_is_named() {
        let n = now();
        // "inter" claims to be issued by "root", but was signed by a different key under the same name.
        let root_params = ca_params("root", n - DAY, n + 90 * DAY);
        let root_key = KeyPair::generate().unwrap();
        let root_pem = root_params.self_signed(&root_key).unwrap().pem();
        let impostor = Issuer::new(root_params, KeyPair::generate().unwrap());
        let inter_key = KeyPair::generate().unwrap();
        let inter_pem = ca_params("inter", n - DAY, n + 60 * DAY)
            .signed_by(&inter_key, &impostor)
            .unwrap()
            .pem();
        let file = format!("{inter_pem}{}{root_pem}", inter_key.serialize_pem());
        assert_eq!(
            validate(&file, n).unwrap_err(),
            UploadError::BadChainSignature {
                issuer: "CN=root".into(),
                subject: "CN=inter".into()
            }
        );
    }
}
