//! A system PKI in a temporary directory: the CA, the controller's certificate and agent certificates.

use std::path::{Path, PathBuf};

use dc_certs::{CertifiedCa, pki};

/// A system PKI that lives as long as the value.
pub struct TestPki {
    dir: tempfile::TempDir,
    ca: CertifiedCa,
}

impl TestPki {
    /// Creates the system CA and the controller certificate (for localhost and 127.0.0.1).
    pub fn new() -> Result<Self, pki::PkiError> {
        let dir = tempfile::tempdir().map_err(|source| pki::PkiError::Write {
            path: std::env::temp_dir(),
            source,
        })?;
        let ca = pki::init(&dir.path().join("pki"), &[], false, dc_certs::now())?;
        Ok(Self { dir, ca })
    }

    /// The PKI directory (`ca.crt`, `ca.key`, `controller.crt`, `controller.key`).
    pub fn dir(&self) -> PathBuf {
        self.dir.path().join("pki")
    }

    /// The system CA.
    pub fn ca(&self) -> &CertifiedCa {
        &self.ca
    }

    /// Issues an agent certificate for `subcloud` into `<tmp>/agents/<subcloud>` and returns that directory
    /// (`ca.crt`, `agent.crt`, `agent.key`).
    pub fn agent(&self, subcloud: &str) -> Result<PathBuf, pki::PkiError> {
        let out = self.dir.path().join("agents").join(subcloud);
        pki::write_agent(&self.ca, subcloud, &out, dc_certs::now())?;
        Ok(out)
    }

    /// A file of the PKI directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }

    /// The temporary root, for other per-test files.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }
}
