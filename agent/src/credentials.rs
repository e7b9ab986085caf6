//! The agent's own mutual-TLS credentials: the certificate and key the install put in place, until the
//! controller renews them; then the renewed pair, kept as one file in the data dir so that the
//! certificate and its key are replaced together or not at all.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dc_certs::UnixTime;
use rustls::ClientConfig;

use tracing::warn;

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

/// How long a failed or useless renewal waits before the next try: a controller that cannot sign, a
/// clock far off or a full disk are not fixed by asking at every heartbeat.
const RETRY_RENEWAL_SECS: i64 = 3600;

/// The CA to pin and the certificate and key to present.
#[derive(Debug, Clone)]
pub struct Credentials {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
    renewed_path: PathBuf,
    /// No renewal is asked for before this time.
    renew_not_before: UnixTime,
}

impl Credentials {
    /// The renewed pair when there is one that chains to the pinned CA and is newer than the installed
    /// certificate, else the installed files: an operator who issues a new certificate (after a
    /// revocation, or for a new system PKI) installs it as before, and it is used.
    pub fn load(tls: &TlsConfig, data_dir: &Path) -> Result<Self, CredentialsError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|source| CredentialsError::Read {
                path: path.to_owned(),
                source,
            })
        };
        let installed = Self {
            ca_pem: read(&tls.ca)?,
            cert_pem: read(&tls.cert)?,
            key_pem: read(&tls.key)?,
            renewed_path: data_dir.join("tls").join(RENEWED),
            renew_not_before: 0,
        };
        installed.client_config()?;
        let renewed = match std::fs::read_to_string(&installed.renewed_path) {
            Ok(both) => Self {
                cert_pem: both.clone(),
                key_pem: both,
                ..installed.clone()
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(installed),
            Err(source) => {
                return Err(CredentialsError::Read {
                    path: installed.renewed_path,
                    source,
                });
            }
        };
        let usable = renewed.client_config().is_ok() && renewed.chains();
        if usable && renewed.not_before() >= installed.not_before() {
            Ok(renewed)
        } else {
            warn!(
                path = %installed.renewed_path.display(),
                "the renewed certificate is older than the installed one or does not chain to the CA; using the installed one"
            );
            Ok(installed)
        }
    }

    fn summary(&self) -> Option<dc_certs::inspect::CertSummary> {
        dc_certs::inspect::CertSummary::from_pem(&self.cert_pem).ok()
    }

    fn not_before(&self) -> UnixTime {
        self.summary().map_or(UnixTime::MIN, |c| c.not_before)
    }

    /// Whether the certificate chains to the pinned CA, judged at its own start if that is ahead of
    /// this host's clock (a controller's clock a little ahead must not make a good certificate bad).
    fn chains(&self) -> bool {
        let at = dc_certs::now().max(self.not_before());
        dc_certs::verify::verify_chain(
            &self.cert_pem,
            &self.ca_pem,
            dc_certs::verify::Usage::Client,
            at,
        )
        .is_ok()
    }

    /// No renewal before an hour from `now`.
    pub fn defer_renewal(&mut self, now: UnixTime) {
        self.renew_not_before = now + RETRY_RENEWAL_SECS;
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
        if lifetime == 0 || now < self.renew_not_before {
            return false;
        }
        self.summary().is_some_and(|c| {
            c.not_after - c.not_before > lifetime.saturating_mul(2)
                || c.not_after - now < lifetime / 3
        })
    }

    /// Takes the renewed certificate for `key_pem` after checking that it names `subcloud`, chains to
    /// the pinned CA, holds that key and would not need renewing at once under the controller's
    /// `lifetime_secs`, and keeps both in one file written atomically (0600).
    pub fn renewed(
        &self,
        subcloud: &str,
        cert_pem: &str,
        key_pem: &str,
        lifetime_secs: u64,
    ) -> Result<Self, CredentialsError> {
        let next = Self {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
            ..self.clone()
        };
        next.client_config()?;
        // A certificate that would need renewing at once gains nothing (the system CA itself ends
        // soon): keep the current one rather than redial for it, and ask again later.
        if next.needs_renewal(lifetime_secs, dc_certs::now()) {
            return Err(CredentialsError::Renewed(
                "would need renewing at once (does the system CA end first?)".to_owned(),
            ));
        }
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
        if !next.chains() {
            return Err(CredentialsError::Renewed(
                "does not chain to the pinned system CA".to_owned(),
            ));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    fn with_cert(ca: &dc_certs::CertifiedCa, days: i64, now: UnixTime) -> Credentials {
        let leaf = dc_certs::pki::issue_agent(ca, "s1", now + days * DAY, now).unwrap();
        Credentials {
            ca_pem: ca.cert_pem().to_owned(),
            cert_pem: leaf.cert_pem,
            key_pem: leaf.key_pem,
            renewed_path: PathBuf::from("/nonexistent/renewed.pem"),
            renew_not_before: 0,
        }
    }

    #[test]
    fn renewal_is_asked_for_with_a_third_left_or_at_once_for_a_long_lived_certificate() {
        let now = dc_certs::now();
        let ca = dc_certs::authority::NewRootCa::default()
            .generate(3650 * DAY, now)
            .unwrap();
        let lifetime = (30 * DAY) as u64;
        // The install's five-year certificate: at once.
        assert!(with_cert(&ca, 5 * 365, now).needs_renewal(lifetime, now));
        // A fresh 30-day one: not yet; with less than 10 days left: yes.
        let fresh = with_cert(&ca, 30, now);
        assert!(!fresh.needs_renewal(lifetime, now));
        assert!(!fresh.needs_renewal(lifetime, now + 19 * DAY));
        assert!(fresh.needs_renewal(lifetime, now + 21 * DAY));
        // A controller that does not renew, or a renewal deferred after a failure: no.
        assert!(!fresh.needs_renewal(0, now + 21 * DAY));
        let mut deferred = fresh.clone();
        deferred.defer_renewal(now + 21 * DAY);
        assert!(!deferred.needs_renewal(lifetime, now + 21 * DAY));
        assert!(deferred.needs_renewal(lifetime, now + 21 * DAY + RETRY_RENEWAL_SECS));
    }

    #[test]
    fn the_installed_certificate_wins_when_it_is_newer_than_the_renewed_one() {
        let dir = tempfile::tempdir().unwrap();
        let now = dc_certs::now();
        let ca = dc_certs::pki::init(&dir.path().join("pki"), &[], false, now).unwrap();
        let tls = dir.path().join("tls");
        let data = dir.path().join("data");
        // Renewed long ago, then the operator installs a new certificate (after a revocation).
        let old = dc_certs::pki::issue_agent(&ca, "s1", now + 30 * DAY, now - 600).unwrap();
        std::fs::create_dir_all(data.join("tls")).unwrap();
        std::fs::write(
            data.join("tls").join(RENEWED),
            format!("{}{}", old.cert_pem, old.key_pem),
        )
        .unwrap();
        dc_certs::pki::write_agent(&ca, "s1", &tls, now).unwrap();
        let config = TlsConfig {
            ca: tls.join(dc_certs::pki::CA_CERT),
            cert: tls.join(dc_certs::pki::AGENT_CERT),
            key: tls.join(dc_certs::pki::AGENT_KEY),
        };
        let installed = std::fs::read_to_string(&config.cert).unwrap();
        assert_eq!(
            Credentials::load(&config, &data).unwrap().cert_pem,
            installed
        );
        // A renewal newer than the installed one is used.
        let newer = dc_certs::pki::issue_agent(&ca, "s1", now + 30 * DAY, now + 60).unwrap();
        std::fs::write(
            data.join("tls").join(RENEWED),
            format!("{}{}", newer.cert_pem, newer.key_pem),
        )
        .unwrap();
        assert!(
            Credentials::load(&config, &data)
                .unwrap()
                .cert_pem
                .starts_with(&newer.cert_pem)
        );
    }
}
