//! Certificate authorities: generating one, loading one from PEM, and the new Kubernetes root CA.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use time::OffsetDateTime;

use crate::{ExpiryDate, Subject, UnixTime};

/// How far back `not_before` is set, so that a host whose clock runs a little behind accepts a
/// certificate issued a moment ago.
pub const CLOCK_SKEW_SECS: i64 = 300;

/// A PKCS#1 RSA private key (DER) as PKCS#8's PrivateKeyInfo: version 0, rsaEncryption with NULL
/// parameters, the PKCS#1 key as the octet string.
fn pkcs8_of_pkcs1_rsa(pkcs1: &[u8]) -> Vec<u8> {
    fn with_len(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = body.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes: Vec<u8> = len
                .to_be_bytes()
                .into_iter()
                .skip_while(|&b| b == 0)
                .collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend(bytes);
        }
        out.extend_from_slice(body);
        out
    }
    const VERSION_0: [u8; 3] = [0x02, 0x01, 0x00];
    // SEQUENCE { OID 1.2.840.113549.1.1.1 (rsaEncryption), NULL }
    const RSA_ENCRYPTION: [u8; 15] = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut body = VERSION_0.to_vec();
    body.extend(RSA_ENCRYPTION);
    body.extend(with_len(0x04, pkcs1));
    with_len(0x30, &body)
}

/// Errors while creating or loading a CA.
#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("CA private key is not usable: {0}")]
    Key(rcgen::Error),
    #[error("CA certificate is not usable: {0}")]
    Certificate(rcgen::Error),
    #[error("time {0} is out of range for a certificate")]
    Time(UnixTime),
    #[error("the random number generator failed")]
    Random,
    #[error("the private key does not belong to the CA certificate")]
    KeyMismatch,
}

/// The key algorithm of a generated key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyAlgorithm {
    /// ECDSA P-256: the system PKI, where handshakes with thousands of agents make speed matter.
    EcdsaP256,
    /// ECDSA P-384: the default for Kubernetes root CAs and their leaves, as in current StarlingX.
    #[default]
    EcdsaP384,
}

impl KeyAlgorithm {
    /// Generates a fresh key pair.
    pub fn generate(self) -> Result<KeyPair, rcgen::Error> {
        KeyPair::generate_for(match self {
            Self::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Self::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        })
    }
}

/// A CA certificate together with its private key, ready to sign.
pub struct CertifiedCa {
    cert_pem: String,
    cert_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for CertifiedCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("CertifiedCa").finish_non_exhaustive()
    }
}

impl CertifiedCa {
    /// Generates a self-signed CA valid from `not_before` to `not_after`.
    pub fn generate(
        dn: DistinguishedName,
        not_before: UnixTime,
        not_after: UnixTime,
        algorithm: KeyAlgorithm,
    ) -> Result<Self, AuthorityError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = to_datetime(not_before)?;
        params.not_after = to_datetime(not_after)?;
        params.serial_number = Some(random_serial()?);
        let key = algorithm.generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads a CA from its certificate and PKCS#8 private key in PEM form; a key that is not the
    /// certificate's is refused (it would sign leaves that nothing trusting the CA verifies).
    ///
    /// kubeadm writes its CA key as PKCS#1 (`RSA PRIVATE KEY`), which ring reads only as PKCS#8: such a
    /// key is wrapped into PKCS#8 first, so a rollback can issue from a kubeadm cluster's old CA.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, AuthorityError> {
        let key = match pem::parse(key_pem) {
            Ok(block) if block.tag() == "RSA PRIVATE KEY" => {
                let pkcs8 = pkcs8_of_pkcs1_rsa(block.contents());
                KeyPair::from_pkcs8_der_and_sign_algo(
                    &rustls_pki_types::PrivatePkcs8KeyDer::from(pkcs8.as_slice()),
                    &rcgen::PKCS_RSA_SHA256,
                )
            }
            _ => KeyPair::from_pem(key_pem),
        }
        .map_err(AuthorityError::Key)?;
        let spki_matches = crate::pem_certificates(cert_pem)
            .ok()
            .and_then(|ders| ders.into_iter().next())
            .is_some_and(|der| {
                use rcgen::PublicKeyData;
                x509_parser::parse_x509_certificate(&der).is_ok_and(|(_, cert)| {
                    cert.public_key().subject_public_key.data.as_ref() == key.der_bytes()
                })
            });
        if !spki_matches {
            return Err(AuthorityError::KeyMismatch);
        }
        let issuer =
            Issuer::from_ca_cert_pem(cert_pem, key).map_err(AuthorityError::Certificate)?;
        let cert_der = crate::pem_certificates(cert_pem)
            .ok()
            .and_then(|mut ders| (!ders.is_empty()).then(|| ders.swap_remove(0)))
            .ok_or(AuthorityError::Certificate(
                rcgen::Error::CouldNotParseCertificate,
            ))?;
        Ok(Self {
            cert_pem: crate::certificates_pem([cert_der.as_slice()]),
            cert_der,
            issuer,
        })
    }

    /// The CA certificate in PEM form.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate in DER form.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The private key in PKCS#8 PEM form.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// The issuer to sign leaves with.
    pub fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }
}

/// What the operator asked for when the new root CA is generated on the subcloud.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewRootCa {
    /// The subject; `CN=kubernetes` when absent, as in the original.
    pub subject: Option<Subject>,
    /// The expiry date; the current CA's validity period from now when absent, as in the original.
    pub expiry: Option<ExpiryDate>,
}

impl NewRootCa {
    /// Generates the new root CA (ECDSA P-384). `current_validity` is the current root CA's
    /// `not_after - not_before`, used when no expiry date is given.
    pub fn generate(
        &self,
        current_validity: i64,
        now: UnixTime,
    ) -> Result<CertifiedCa, AuthorityError> {
        let subject = self
            .subject
            .clone()
            .unwrap_or_else(Subject::kubernetes_default);
        let not_after = match self.expiry {
            Some(date) => date.not_after(),
            None => now + current_validity.max(crate::expiry::MIN_VALIDITY_SECS),
        };
        CertifiedCa::generate(
            subject.distinguished_name(),
            now - CLOCK_SKEW_SECS,
            not_after,
            KeyAlgorithm::EcdsaP384,
        )
    }
}

pub(crate) fn to_datetime(t: UnixTime) -> Result<OffsetDateTime, AuthorityError> {
    OffsetDateTime::from_unix_timestamp(t).map_err(|_| AuthorityError::Time(t))
}

/// A random positive 128-bit serial number.
pub(crate) fn random_serial() -> Result<SerialNumber, AuthorityError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| AuthorityError::Random)?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::CertSummary;

    #[test]
    fn new_root_ca_takes_subject_and_expiry() {
        let now = crate::now();
        let spec = NewRootCa {
            subject: Some(Subject::parse("C=CA ST=ON L=OTT O=WR OU=STX CN=OTHER").unwrap()),
            expiry: Some(ExpiryDate::parse("2036-05-01").unwrap()),
        };
        let ca = spec.generate(0, now).unwrap();
        let info = CertSummary::from_pem(ca.cert_pem()).unwrap();
        assert_eq!(info.subject, "C=CA ST=ON L=OTT O=WR OU=STX CN=OTHER");
        assert_eq!(
            info.not_after,
            ExpiryDate::parse("2036-05-01").unwrap().not_after()
        );
        assert!(info.is_ca);
        assert_eq!(info.key_algorithm, "ECDSA P-384");
    }

    #[test]
    fn new_root_ca_defaults_to_kubernetes_and_current_validity() {
        let now = crate::now();
        let ten_years = 10 * 365 * 86400;
        let ca = NewRootCa::default().generate(ten_years, now).unwrap();
        let info = CertSummary::from_pem(ca.cert_pem()).unwrap();
        assert_eq!(info.subject, "CN=kubernetes");
        assert_eq!(info.not_after, now + ten_years);
    }

    #[test]
    fn reloads_from_pem_and_keeps_signing() {
        let now = crate::now();
        let ca = NewRootCa::default().generate(86400 * 30, now).unwrap();
        let again = CertifiedCa::from_pem(ca.cert_pem(), &ca.key_pem()).unwrap();
        assert_eq!(again.cert_der(), ca.cert_der());
        assert!(CertifiedCa::from_pem(ca.cert_pem(), "garbage").is_err());
        let other = NewRootCa::default().generate(86400 * 30, now).unwrap();
        assert!(matches!(
            CertifiedCa::from_pem(ca.cert_pem(), &other.key_pem()),
            Err(AuthorityError::KeyMismatch)
        ));
    }

    /// A kubeadm CA (RSA 2048, its key PKCS#1, made with openssl) loads and issues leaves that chain
    /// to it; another CA's certificate with that key is refused.
    #[test]
    fn a_kubeadm_pkcs1_rsa_key_loads_and_signs() {
        let cert = include_str!("../tests/fixtures/kubeadm-ca.crt");
        let key = include_str!("../tests/fixtures/kubeadm-ca-pkcs1.key");
        assert!(key.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        let ca = CertifiedCa::from_pem(cert, key).expect("a kubeadm CA");
        let now = crate::now();
        let leaf = crate::leaf::LeafSpec::client("kubernetes-admin", &["system:masters"])
            .issue(&ca, now + 86400, now, KeyAlgorithm::EcdsaP384)
            .expect("issued");
        crate::verify::verify_chain(&leaf.cert_pem, cert, crate::verify::Usage::Client, now)
            .expect("chains to the kubeadm CA");
        let other = NewRootCa::default().generate(86400 * 30, now).unwrap();
        assert!(matches!(
            CertifiedCa::from_pem(other.cert_pem(), key),
            Err(AuthorityError::KeyMismatch)
        ));
    }
}
