//! The agent's own mutual-TLS credentials: the certificate and key the install put in place, until the
//! controller renews them; then the renewed pair, kept as one file in the data dir so that the
//! certificate and its key are replaced together or not at all.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dc_certs::UnixTime;
use rustls::ClientConfig;

use crate::config::TlsConfig;

/// The renewed certificate and key, in `<data_dir>/tls/`.
const RENEWED: &str = "renewed.pem";

/// Why the credentials cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(#[from] dc_protocol::tls::TlsError),
    #[error("the renewed certificate {0}")]
    Renewed(String),
}

/// The CA to pin and the certificate and key to present.
#[derive(Debug, Clone)]
pub struct Credentials {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
    renewed_path: PathBuf,
}

impl Credentials {
    /// The renewed pair when there is one, else the installed files.
    pub fn load(tls: &TlsConfig, data_dir: &Path) -> Result<Self, CredentialsError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|source| CredentialsError::Read {
                path: path.to_owned(),
                source,
            })
        };
        let renewed_path = data_dir.join("tls").join(RENEWED);
        let (cert_pem, key_pem) = match std::fs::read_to_string(&renewed_path) {
            Ok(both) => (both.clone(), both),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                (read(&tls.cert)?, read(&tls.key)?)
            }
            Err(source) => {
                return Err(CredentialsError::Read {
                    path: renewed_path,
                    source,
                });
            }
        };
        let credentials = Self {
            ca_pem: read(&tls.ca)?,
            cert_pem,
            key_pem,
            renewed_path,
        };
        credentials.client_config()?;
        Ok(credentials)
    }

    /// The TLS client configuration to dial with.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, CredentialsError> {
        Ok(dc_protocol::tls::client_config(
            &self.ca_pem,
            &self.cert_pem,
            &self.key_pem,
        )?)
    }

    /// Whether to ask for a new certificate, given the lifetime the controller signs for (0: it does
    /// not renew): when a third of that lifetime or less is left, or at once when the certificate
    /// outlives twice that lifetime (the long-lived one of the install).
    pub fn needs_renewal(&self, lifetime_secs: u64, now: UnixTime) -> bool {
        let Ok(lifetime) = i64::try_from(lifetime_secs) else {
            return false;
        };
        if lifetime == 0 {
            return false;
        }
        match dc_certs::inspect::CertSummary::from_pem(&self.cert_pem) {
            Ok(c) => {
                c.not_after - c.not_before > lifetime.saturating_mul(2)
                    || c.not_after - now < lifetime / 3
            }
            Err(_) => false,
        }
    }

    /// Takes the renewed certificate for `key_pem` after checking that it names `subcloud`, chains to
    /// the pinned CA and holds that key, and keeps both in one file written atomically (0600).
    pub fn renewed(
        &self,
        subcloud: &str,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<Self, CredentialsError> {
        let next = Self {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
            ..self.clone()
        };
        next.client_config()?;
        if !dc_certs::pki::holds_key(cert_pem, key_pem) {
            return Err(CredentialsError::Renewed(
                "is not for the key this agent asked with".to_owned(),
            ));
        }
        let named = dc_certs::inspect::CertSummary::from_pem(cert_pem)
            .map_err(|e| CredentialsError::Renewed(e.to_string()))?
            .common_name;
        if named.as_deref() != Some(subcloud) {
            return Err(CredentialsError::Renewed(format!(
                "names {named:?}, not '{subcloud}'"
            )));
        }
        dc_certs::verify::verify_chain(
            cert_pem,
            &self.ca_pem,
            dc_certs::verify::Usage::Client,
            dc_certs::now(),
        )
        .map_err(|e| CredentialsError::Renewed(e.to_string()))?;
        let write_err = |path: &Path| {
            let path = path.to_owned();
            move |source| CredentialsError::Write { path, source }
        };
        if let Some(dir) = self.renewed_path.parent() {
            dc_certs::files::create_private_dir(dir).map_err(write_err(dir))?;
        }
        dc_certs::files::write_atomic(
            &self.renewed_path,
            format!("{cert_pem}{key_pem}").as_bytes(),
            dc_certs::files::PRIVATE,
        )
        .map_err(write_err(&self.renewed_path))?;
        Ok(next)
    }
}
