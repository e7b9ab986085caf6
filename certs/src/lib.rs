//! Certificates for dc-rootca.
//!
//! Two different PKIs live here and must never be confused:
//! - the **system PKI** ([`pki`]): the CA that signs the controller's server certificate and one client
//!   certificate per subcloud agent, so that the controller and the agents authenticate each other;
//! - the **Kubernetes root CAs** that the product replaces on each subcloud ([`authority`], [`subject`],
//!   [`expiry`], [`upload`], [`leaf`]): the new root CA generated from dcmanager's `subject` and
//!   `expiry-date`, or uploaded as a `cert-file`, and the leaf certificates re-issued from it.
//!
//! [`verify`] checks a chain against a trust bundle (the safety property every phase must keep), and
//! [`inspect`] summarises a certificate the way the heartbeat and the API report it.

pub mod authority;
pub mod expiry;
pub mod files;
pub mod inspect;
pub mod leaf;
pub mod pki;
pub mod subject;
pub mod upload;
pub mod verify;

pub use authority::{CertifiedCa, KeyAlgorithm};
pub use expiry::ExpiryDate;
pub use subject::Subject;

/// Seconds since the Unix epoch: the one time unit that crosses crate and process boundaries.
pub type UnixTime = i64;

/// The current time as [`UnixTime`].
pub fn now() -> UnixTime {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Parses every `CERTIFICATE` block of a PEM text into DER.
pub fn pem_certificates(pem_text: &str) -> Result<Vec<Vec<u8>>, pem::PemError> {
    Ok(pem::parse_many(pem_text)?
        .into_iter()
        .filter(|block| block.tag() == "CERTIFICATE")
        .map(|block| block.into_contents())
        .collect())
}

/// Encodes DER certificates as a PEM bundle, in order.
pub fn certificates_pem<'a>(ders: impl IntoIterator<Item = &'a [u8]>) -> String {
    ders.into_iter()
        .map(|der| pem_encode(&pem::Pem::new("CERTIFICATE", der.to_vec())))
        .collect()
}

/// Encodes one PEM block with Unix line endings, as every file on a Kubernetes host has them.
pub fn pem_encode(block: &pem::Pem) -> String {
    pem::encode_config(
        block,
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}
