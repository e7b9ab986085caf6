//! A certificate summarised as operators read it: subject in dcmanager's form, serial, validity.

use std::net::IpAddr;

use x509_parser::prelude::*;

use crate::UnixTime;

/// Why a certificate could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InspectError {
    #[error("no certificate found in the PEM text")]
    NoCertificate,
    #[error("certificate does not parse: {0}")]
    Parse(String),
}

/// The facts about a certificate that the heartbeat, the API and the agent's checks need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    /// The subject in dcmanager's `KEY=VALUE` form, in the certificate's attribute order.
    pub subject: String,
    /// The issuer in the same form.
    pub issuer: String,
    /// The common name, if any.
    pub common_name: Option<String>,
    /// The organizations (O), in order.
    pub organizations: Vec<String>,
    /// The serial number in lower-case hex.
    pub serial: String,
    pub not_before: UnixTime,
    pub not_after: UnixTime,
    /// basicConstraints CA:TRUE.
    pub is_ca: bool,
    /// Subject and issuer are the same name.
    pub self_issued: bool,
    /// DNS names among the subject alternative names.
    pub dns_names: Vec<String>,
    /// IP addresses among the subject alternative names.
    pub ip_addresses: Vec<IpAddr>,
    /// Extended key usage serverAuth.
    pub server_auth: bool,
    /// Extended key usage clientAuth.
    pub client_auth: bool,
    /// "ECDSA P-384", "RSA 2048", ...
    pub key_algorithm: String,
}

impl CertSummary {
    /// Summarises the first certificate of a PEM text.
    pub fn from_pem(pem_text: &str) -> Result<Self, InspectError> {
        let ders =
            crate::pem_certificates(pem_text).map_err(|e| InspectError::Parse(e.to_string()))?;
        let der = ders.first().ok_or(InspectError::NoCertificate)?;
        Self::from_der(der)
    }

    /// Summarises a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, InspectError> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| InspectError::Parse(e.to_string()))?;
        Ok(summarise(&cert))
    }

    /// Whole days of validity left at `now` (negative once expired).
    pub fn days_left(&self, now: UnixTime) -> i64 {
        (self.not_after - now).div_euclid(86400)
    }
}

pub(crate) fn summarise(cert: &X509Certificate<'_>) -> CertSummary {
    let mut dns_names = Vec::new();
    let mut ip_addresses = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => dns_names.push((*d).to_owned()),
                GeneralName::IPAddress(bytes) => {
                    if let Ok(octets) = <[u8; 4]>::try_from(*bytes) {
                        ip_addresses.push(IpAddr::from(octets));
                    } else if let Ok(octets) = <[u8; 16]>::try_from(*bytes) {
                        ip_addresses.push(IpAddr::from(octets));
                    }
                }
                _ => {}
            }
        }
    }
    let (server_auth, client_auth) = match cert.extended_key_usage() {
        Ok(Some(eku)) => (eku.value.server_auth, eku.value.client_auth),
        _ => (false, false),
    };
    CertSummary {
        subject: name_string(cert.subject()),
        issuer: name_string(cert.issuer()),
        common_name: cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|a| a.as_str().ok())
            .map(str::to_owned),
        organizations: cert
            .subject()
            .iter_organization()
            .filter_map(|a| a.as_str().ok())
            .map(str::to_owned)
            .collect(),
        serial: cert.raw_serial_as_string().replace(':', ""),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        is_ca: cert.is_ca(),
        self_issued: cert.subject().as_raw() == cert.issuer().as_raw(),
        dns_names,
        ip_addresses,
        server_auth,
        client_auth,
        key_algorithm: key_algorithm(cert),
    }
}

/// A distinguished name in dcmanager's `C=.. ST=.. CN=..` form.
pub fn name_string(name: &X509Name<'_>) -> String {
    name_parts(name)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The attributes of a distinguished name that dcmanager's subject form knows, in certificate order.
pub fn name_parts(name: &X509Name<'_>) -> Vec<(&'static str, String)> {
    use x509_parser::oid_registry as oids;
    let mut parts = Vec::new();
    for rdn in name.iter() {
        for attr in rdn.iter() {
            let oid = attr.attr_type();
            let key = if *oid == oids::OID_X509_COUNTRY_NAME {
                "C"
            } else if *oid == oids::OID_X509_STATE_OR_PROVINCE_NAME {
                "ST"
            } else if *oid == oids::OID_X509_LOCALITY_NAME {
                "L"
            } else if *oid == oids::OID_X509_ORGANIZATION_NAME {
                "O"
            } else if *oid == oids::OID_X509_ORGANIZATIONAL_UNIT {
                "OU"
            } else if *oid == oids::OID_X509_COMMON_NAME {
                "CN"
            } else {
                continue;
            };
            if let Ok(value) = attr.as_str() {
                parts.push((key, value.to_owned()));
            }
        }
    }
    parts
}

fn key_algorithm(cert: &X509Certificate<'_>) -> String {
    match cert.public_key().parsed() {
        Ok(x509_parser::public_key::PublicKey::EC(point)) => match point.key_size() {
            256 => "ECDSA P-256".to_owned(),
            384 => "ECDSA P-384".to_owned(),
            521 | 528 => "ECDSA P-521".to_owned(),
            bits => format!("ECDSA {bits}"),
        },
        Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => format!("RSA {}", rsa.key_size()),
        Ok(_) => "other".to_owned(),
        Err(_) => "unknown".to_owned(),
    }
}
