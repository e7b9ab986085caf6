//! Leaf certificates issued from a CA: the Kubernetes component certificates that the update-certs
//! phase re-issues from the new root CA, and the system PKI's controller and agent certificates.

use std::net::IpAddr;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyUsagePurpose, SanType,
};
use x509_parser::prelude::*;

use crate::authority::{AuthorityError, CLOCK_SKEW_SECS, random_serial, to_datetime};
use crate::inspect::{InspectError, name_parts};
use crate::{CertifiedCa, KeyAlgorithm, UnixTime};

/// Longest validity of a re-issued Kubernetes component certificate: one year, as in the original.
pub const MAX_LEAF_VALIDITY_SECS: i64 = 365 * 86400;

/// Errors while issuing a leaf.
#[derive(Debug, thiserror::Error)]
pub enum LeafError {
    #[error(transparent)]
    Authority(#[from] AuthorityError),
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("existing certificate cannot be re-issued: {0}")]
    Existing(#[from] InspectError),
    #[error("subject alternative name '{0}' is not a valid DNS name")]
    DnsName(String),
}

/// What a leaf certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeafSpec {
    /// Subject attributes in order, with dcmanager's keys (C, ST, L, O, OU, CN).
    pub subject: Vec<(&'static str, String)>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub server_auth: bool,
    pub client_auth: bool,
}

impl LeafSpec {
    /// A client certificate for `common_name` in the given organizations (Kubernetes groups).
    pub fn client(common_name: &str, organizations: &[&str]) -> Self {
        let mut subject: Vec<(&'static str, String)> = organizations
            .iter()
            .map(|o| ("O", (*o).to_owned()))
            .collect();
        subject.push(("CN", common_name.to_owned()));
        Self {
            subject,
            client_auth: true,
            ..Self::default()
        }
    }

    /// A server certificate for `common_name` answering to the given names and addresses.
    pub fn server(common_name: &str, dns_names: &[&str], ip_addresses: &[IpAddr]) -> Self {
        Self {
            subject: vec![("CN", common_name.to_owned())],
            dns_names: dns_names.iter().map(|d| (*d).to_owned()).collect(),
            ip_addresses: ip_addresses.to_vec(),
            server_auth: true,
            ..Self::default()
        }
    }

    /// The spec of an existing certificate: same subject, names, addresses and usages.
    pub fn of_certificate(der: &[u8]) -> Result<Self, InspectError> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| InspectError::Parse(e.to_string()))?;
        let summary = crate::inspect::summarise(&cert);
        Ok(Self {
            subject: name_parts(cert.subject()),
            dns_names: summary.dns_names,
            ip_addresses: summary.ip_addresses,
            server_auth: summary.server_auth,
            client_auth: summary.client_auth,
        })
    }

    /// Issues a certificate with a fresh key, signed by `ca`, valid until `not_after` (never beyond the
    /// CA's own expiry).
    pub fn issue(
        &self,
        ca: &CertifiedCa,
        not_after: UnixTime,
        now: UnixTime,
        algorithm: KeyAlgorithm,
    ) -> Result<IssuedLeaf, LeafError> {
        let params = self.params(ca, not_after, now)?;
        let key = algorithm.generate()?;
        let cert = params.signed_by(&key, ca.issuer())?;
        Ok(IssuedLeaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Issues a certificate for a key the caller holds (from a certificate signing request): only the
    /// public key is taken from the request, everything else from this spec.
    pub fn issue_for_key(
        &self,
        ca: &CertifiedCa,
        public_key: &impl rcgen::PublicKeyData,
        not_after: UnixTime,
        now: UnixTime,
    ) -> Result<String, LeafError> {
        let params = self.params(ca, not_after, now)?;
        Ok(params.signed_by(public_key, ca.issuer())?.pem())
    }

    fn params(
        &self,
        ca: &CertifiedCa,
        not_after: UnixTime,
        now: UnixTime,
    ) -> Result<CertificateParams, LeafError> {
        let ca_not_after = crate::inspect::CertSummary::from_der(ca.cert_der())?.not_after;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        for (key, value) in &self.subject {
            dn.push(dn_type(key), value.as_str());
        }
        params.distinguished_name = dn;
        for name in &self.dns_names {
            let ia5 = name
                .clone()
                .try_into()
                .map_err(|_| LeafError::DnsName(name.clone()))?;
            params.subject_alt_names.push(SanType::DnsName(ia5));
        }
        for ip in &self.ip_addresses {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        if self.server_auth {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if self.client_auth {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        params.use_authority_key_identifier_extension = true;
        params.not_before = to_datetime(now - CLOCK_SKEW_SECS)?;
        params.not_after = to_datetime(not_after.min(ca_not_after))?;
        params.serial_number = Some(random_serial()?);
        Ok(params)
    }
}

/// Re-issues an existing certificate from `ca`: same subject, SANs and usages, a fresh ECDSA P-384 key,
/// valid for one year or until the CA expires, whichever comes first.
pub fn reissue(
    existing_pem: &str,
    ca: &CertifiedCa,
    now: UnixTime,
) -> Result<IssuedLeaf, LeafError> {
    let ders =
        crate::pem_certificates(existing_pem).map_err(|e| InspectError::Parse(e.to_string()))?;
    let der = ders.first().ok_or(InspectError::NoCertificate)?;
    LeafSpec::of_certificate(der)?.issue(
        ca,
        now + MAX_LEAF_VALIDITY_SECS,
        now,
        KeyAlgorithm::EcdsaP384,
    )
}

/// A freshly issued certificate and its private key, both PEM.
#[derive(Clone)]
pub struct IssuedLeaf {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for IssuedLeaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedLeaf").finish_non_exhaustive()
    }
}

fn dn_type(key: &str) -> DnType {
    match key {
        "C" => DnType::CountryName,
        "ST" => DnType::StateOrProvinceName,
        "L" => DnType::LocalityName,
        "O" => DnType::OrganizationName,
        "OU" => DnType::OrganizationalUnitName,
        _ => DnType::CommonName,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authority::NewRootCa;
    use crate::inspect::CertSummary;
    use crate::verify::{Usage, verify_chain};

    #[test]
    fn reissue_keeps_subject_and_sans_and_chains_to_the_new_ca() {
        let now = crate::now();
        let old_ca = NewRootCa::default().generate(86400 * 365, now).unwrap();
        let new_ca = NewRootCa::default().generate(86400 * 30, now).unwrap();
        let spec = LeafSpec::server(
            "kube-apiserver",
            &["kubernetes", "kubernetes.default.svc"],
            &["10.96.0.1".parse().unwrap()],
        );
        let old = spec
            .issue(&old_ca, now + 86400 * 300, now, KeyAlgorithm::EcdsaP256)
            .unwrap();
        let new = reissue(&old.cert_pem, &new_ca, now).unwrap();
        let (a, b) = (
            CertSummary::from_pem(&old.cert_pem).unwrap(),
            CertSummary::from_pem(&new.cert_pem).unwrap(),
        );
        assert_eq!(a.subject, b.subject);
        assert_eq!(a.dns_names, b.dns_names);
        assert_eq!(a.ip_addresses, b.ip_addresses);
        assert!(b.server_auth && !b.client_auth);
        assert_ne!(a.serial, b.serial);
        // Capped by the new CA's 30 days.
        assert!(b.not_after <= now + 86400 * 30);
        verify_chain(&new.cert_pem, new_ca.cert_pem(), Usage::Server, now).unwrap();
        assert!(verify_chain(&new.cert_pem, old_ca.cert_pem(), Usage::Server, now).is_err());
    }

    #[test]
    fn client_leaf_keeps_groups() {
        let now = crate::now();
        let ca = NewRootCa::default().generate(86400 * 30, now).unwrap();
        let leaf = LeafSpec::client("kubernetes-admin", &["kubeadm:cluster-admins"])
            .issue(&ca, now + 86400, now, KeyAlgorithm::EcdsaP256)
            .unwrap();
        let info = CertSummary::from_pem(&leaf.cert_pem).unwrap();
        assert_eq!(info.subject, "O=kubeadm:cluster-admins CN=kubernetes-admin");
        assert!(info.client_auth);
        verify_chain(&leaf.cert_pem, ca.cert_pem(), Usage::Client, now).unwrap();
    }
}
