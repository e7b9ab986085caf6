//! The system PKI: the CA that signs the controller's server certificate and each agent's client
//! certificate. An agent's identity is its subcloud name, carried as the certificate's CN and as a DNS
//! subject alternative name, so the controller learns which subcloud is calling from the verified
//! handshake alone.
//!
//! Layout of a PKI directory (`dc-certs init --out DIR`): `ca.crt`, `ca.key`, `controller.crt`,
//! `controller.key`. Layout of an agent directory (`dc-certs issue-agent ... --out DIR`): `ca.crt`,
//! `agent.crt`, `agent.key`. Keys are written with mode 0600 and every file atomically.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::authority::AuthorityError;
use crate::files::{PRIVATE, PUBLIC, create_private_dir, write_atomic};
use crate::leaf::{IssuedLeaf, LeafError, LeafSpec};
use crate::{CertifiedCa, KeyAlgorithm, UnixTime};

pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const CONTROLLER_CERT: &str = "controller.crt";
pub const CONTROLLER_KEY: &str = "controller.key";
pub const AGENT_CERT: &str = "agent.crt";
pub const AGENT_KEY: &str = "agent.key";

/// Validity of the system CA.
pub const CA_VALIDITY_SECS: i64 = 20 * 365 * 86400;
/// Default validity of controller and agent certificates.
pub const CERT_VALIDITY_SECS: i64 = 5 * 365 * 86400;
/// Longest subcloud name: a DNS label, since the name is also the certificate's DNS SAN.
pub const MAX_SUBCLOUD_NAME_LEN: usize = 63;

/// Errors of the system PKI.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error(
        "invalid subcloud name '{0}': use 1 to 63 letters, digits, '-', '_' or '.', starting with a letter or digit"
    )]
    SubcloudName(String),
    #[error("{0} already holds a system CA; refusing to overwrite it (pass --force to replace it)")]
    AlreadyInitialised(PathBuf),
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
    #[error(transparent)]
    Authority(#[from] AuthorityError),
    #[error(transparent)]
    Leaf(#[from] LeafError),
}

/// Checks a subcloud name: it becomes a certificate CN and DNS SAN, a URL path segment and a file name.
pub fn validate_subcloud_name(name: &str) -> Result<(), PkiError> {
    let mut chars = name.chars();
    let ok = name.len() <= MAX_SUBCLOUD_NAME_LEN
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(PkiError::SubcloudName(name.to_owned()))
    }
}

/// Creates the system CA and the controller's server certificate in `dir`.
///
/// `names` are the DNS names and IP addresses the controller serves; `localhost`, `127.0.0.1` and `::1`
/// are always included. An existing CA is never overwritten unless `force` is set.
pub fn init(
    dir: &Path,
    names: &[String],
    force: bool,
    now: UnixTime,
) -> Result<CertifiedCa, PkiError> {
    if !force && dir.join(CA_KEY).exists() {
        return Err(PkiError::AlreadyInitialised(dir.to_owned()));
    }
    create_private_dir(dir).map_err(|source| PkiError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::OrganizationName, "dc-rootca");
    dn.push(rcgen::DnType::CommonName, "dc-rootca system CA");
    let ca = CertifiedCa::generate(
        dn,
        now - crate::authority::CLOCK_SKEW_SECS,
        now + CA_VALIDITY_SECS,
        KeyAlgorithm::EcdsaP256,
    )?;
    let controller = issue_controller(&ca, names, now)?;
    // The key first: a CA certificate without its key on disk would be a PKI nobody can extend.
    write(dir, CA_KEY, &ca.key_pem(), PRIVATE)?;
    write(dir, CA_CERT, ca.cert_pem(), PUBLIC)?;
    write(dir, CONTROLLER_KEY, &controller.key_pem, PRIVATE)?;
    write(dir, CONTROLLER_CERT, &controller.cert_pem, PUBLIC)?;
    Ok(ca)
}

/// Loads the system CA from a PKI directory.
pub fn load_ca(dir: &Path) -> Result<CertifiedCa, PkiError> {
    let cert = read(&dir.join(CA_CERT))?;
    let key = read(&dir.join(CA_KEY))?;
    Ok(CertifiedCa::from_pem(&cert, &key)?)
}

/// Issues the controller's server certificate for the given names and addresses.
pub fn issue_controller(
    ca: &CertifiedCa,
    names: &[String],
    now: UnixTime,
) -> Result<IssuedLeaf, PkiError> {
    let mut dns: Vec<&str> = vec!["localhost"];
    let mut ips: Vec<IpAddr> = vec![
        IpAddr::from([127, 0, 0, 1]),
        IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
    ];
    for name in names {
        match name.parse::<IpAddr>() {
            Ok(ip) if !ips.contains(&ip) => ips.push(ip),
            Ok(_) => {}
            Err(_) if !dns.contains(&name.as_str()) => dns.push(name),
            Err(_) => {}
        }
    }
    Ok(LeafSpec::server("dc-rootca controller", &dns, &ips).issue(
        ca,
        now + CERT_VALIDITY_SECS,
        now,
        KeyAlgorithm::EcdsaP256,
    )?)
}

/// Issues a subcloud agent's client certificate: CN and DNS SAN are the subcloud name.
pub fn issue_agent(
    ca: &CertifiedCa,
    subcloud: &str,
    not_after: UnixTime,
    now: UnixTime,
) -> Result<IssuedLeaf, PkiError> {
    validate_subcloud_name(subcloud)?;
    let mut spec = LeafSpec::client(subcloud, &["dc-rootca agents"]);
    spec.dns_names = vec![subcloud.to_owned()];
    Ok(spec.issue(ca, not_after, now, KeyAlgorithm::EcdsaP256)?)
}

/// Issues an agent certificate and writes `ca.crt`, `agent.crt` and `agent.key` into `out`.
pub fn write_agent(
    ca: &CertifiedCa,
    subcloud: &str,
    out: &Path,
    now: UnixTime,
) -> Result<(), PkiError> {
    let leaf = issue_agent(ca, subcloud, now + CERT_VALIDITY_SECS, now)?;
    create_private_dir(out).map_err(|source| PkiError::Write {
        path: out.to_owned(),
        source,
    })?;
    write(out, AGENT_KEY, &leaf.key_pem, PRIVATE)?;
    write(out, AGENT_CERT, &leaf.cert_pem, PUBLIC)?;
    write(out, CA_CERT, ca.cert_pem(), PUBLIC)?;
    Ok(())
}

fn write(dir: &Path, name: &str, contents: &str, mode: u32) -> Result<(), PkiError> {
    let path = dir.join(name);
    write_atomic(&path, contents.as_bytes(), mode)
        .map_err(|source| PkiError::Write { path, source })
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Read {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::CertSummary;
    use crate::verify::{Usage, verify_chain};
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn init_then_issue_agent() {
        let dir = tempfile::tempdir().unwrap();
        let now = crate::now();
        init(
            dir.path(),
            &["controller.example".into(), "10.0.0.5".into()],
            false,
            now,
        )
        .unwrap();
        for key in [CA_KEY, CONTROLLER_KEY] {
            let mode = std::fs::metadata(dir.path().join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
        let ca_pem = std::fs::read_to_string(dir.path().join(CA_CERT)).unwrap();
        let controller = std::fs::read_to_string(dir.path().join(CONTROLLER_CERT)).unwrap();
        verify_chain(&controller, &ca_pem, Usage::Server, now).unwrap();
        let info = CertSummary::from_pem(&controller).unwrap();
        assert!(info.dns_names.contains(&"controller.example".to_owned()));
        assert!(info.ip_addresses.contains(&"10.0.0.5".parse().unwrap()));

        let ca = load_ca(dir.path()).unwrap();
        let out = dir.path().join("agents/subcloud1");
        write_agent(&ca, "subcloud1", &out, now).unwrap();
        let agent = std::fs::read_to_string(out.join(AGENT_CERT)).unwrap();
        verify_chain(&agent, &ca_pem, Usage::Client, now).unwrap();
        let info = CertSummary::from_pem(&agent).unwrap();
        assert_eq!(info.common_name.as_deref(), Some("subcloud1"));
        assert_eq!(info.dns_names, vec!["subcloud1".to_owned()]);
    }

    #[test]
    fn init_refuses_to_overwrite_a_ca() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), &[], false, crate::now()).unwrap();
        let before = std::fs::read(dir.path().join(CA_KEY)).unwrap();
        assert!(matches!(
            init(dir.path(), &[], false, crate::now()),
            Err(PkiError::AlreadyInitialised(_))
        ));
        assert_eq!(std::fs::read(dir.path().join(CA_KEY)).unwrap(), before);
    }

    #[test]
    fn subcloud_names() {
        for ok in ["subcloud1", "a", "site-7.east", "x_y"] {
            validate_subcloud_name(ok).unwrap();
        }
        for bad in ["", "-a", ".a", "a b", "a/b", "é", &"a".repeat(64)] {
            assert!(validate_subcloud_name(bad).is_err(), "{bad:?}");
        }
    }
}
