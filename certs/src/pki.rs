//! The system PKI: the CA that signs the controller's server certificate and each agent's client
//! certificate. An agent's identity is its subcloud name, carried as the certificate's CN and as a DNS
//! subject alternative name, so the controller learns which subcloud is calling from the verified
//! handshake alone.
//!
//! Layout of a PKI directory (`dc-certs init --out DIR`): `ca.crt`, `ca.key`, `controller.crt`,
//! `controller.key`. Layout of an agent directory (`dc-certs issue-agent ... --out DIR`): `ca.crt`,
//! `agent.crt`, `agent.key`. Keys are written with mode 0600 and every file atomically.
//!
//! The packaged layout splits the first: the CA (`ca.crt`, `ca.key`) in a root-only directory, and the
//! controller's own files (`ca.crt`, `controller.crt`, `controller.key`) in a directory of their own that
//! the controller's group may read ([`ControllerFiles`]), so the service reads its key and never the CA's.

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
    #[error("certificate signing request refused: {0}")]
    Request(String),
    #[error(
        "{0} holds the CA key: a group may read the controller's files only in a directory of their own (--controller-out)"
    )]
    GroupBesideCaKey(PathBuf),
}

/// Where `init` writes the controller's own files (`ca.crt`, `controller.crt`, `controller.key`) and which
/// group may read them. The controller runs as an unprivileged user: it must read its own key, and it
/// must not read the CA's, so a group is only given access to a directory that does not hold `ca.key`.
#[derive(Debug, Clone, Copy)]
pub struct ControllerFiles<'a> {
    pub dir: &'a Path,
    /// The group (id) that may read the directory and the key: mode 0750 and 0640, owner unchanged.
    /// `None` keeps them owner-only (0700 and 0600).
    pub group: Option<u32>,
}

impl ControllerFiles<'_> {
    /// Refuses a group beside the CA key, which would hand the CA to the service.
    fn check(&self, ca_dir: &Path) -> Result<(), PkiError> {
        if self.group.is_some() && same_dir(self.dir, ca_dir) {
            return Err(PkiError::GroupBesideCaKey(self.dir.to_owned()));
        }
        Ok(())
    }
}

/// Whether two paths name one directory (as given, or once both exist, as resolved).
fn same_dir(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(a), Ok(b)) if a == b
        )
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
    let beside = ControllerFiles { dir, group: None };
    init_with(dir, names, force, now, &beside)
}

/// [`init`] with the controller's files where `controller` says (the packaged layout: a directory of
/// their own, readable by the controller's group).
pub fn init_with(
    dir: &Path,
    names: &[String],
    force: bool,
    now: UnixTime,
    controller: &ControllerFiles<'_>,
) -> Result<CertifiedCa, PkiError> {
    controller.check(dir)?;
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
    // The key first: a CA certificate without its key on disk would be a PKI nobody can extend.
    write(dir, CA_KEY, &ca.key_pem(), PRIVATE)?;
    write(dir, CA_CERT, ca.cert_pem(), PUBLIC)?;
    write_controller(&ca, names, controller, now)?;
    Ok(ca)
}

/// Issues the controller's server certificate and writes it, its key and the CA certificate the
/// controller verifies agents with into `files.dir`; with a group, that group may read them.
pub fn write_controller(
    ca: &CertifiedCa,
    names: &[String],
    files: &ControllerFiles<'_>,
    now: UnixTime,
) -> Result<(), PkiError> {
    let dir = files.dir;
    let leaf = issue_controller(ca, names, now)?;
    create_private_dir(dir).map_err(|source| PkiError::Write {
        path: dir.to_owned(),
        source,
    })?;
    write(dir, CONTROLLER_KEY, &leaf.key_pem, PRIVATE)?;
    write(dir, CONTROLLER_CERT, &leaf.cert_pem, PUBLIC)?;
    write(dir, CA_CERT, ca.cert_pem(), PUBLIC)?;
    if let Some(gid) = files.group {
        // Group first, then the bits: the key is never readable by a group other than the one named.
        share_with_group(&dir.join(CONTROLLER_KEY), gid, 0o640)?;
        share_with_group(dir, gid, 0o750)?;
    }
    Ok(())
}

fn share_with_group(path: &Path, gid: u32, mode: u32) -> Result<(), PkiError> {
    use std::os::unix::fs::PermissionsExt as _;
    std::os::unix::fs::chown(path, None, Some(gid))
        .and_then(|()| std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)))
        .map_err(|source| PkiError::Write {
            path: path.to_owned(),
            source,
        })
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
    Ok(agent_spec(subcloud).issue(ca, not_after, now, KeyAlgorithm::EcdsaP256)?)
}

/// An agent's request for a renewed certificate: a fresh ECDSA P-256 key, which never leaves the
/// agent, and a certificate signing request (PEM) for it. Returns `(csr_pem, key_pem)`.
pub fn agent_request(subcloud: &str) -> Result<(String, String), PkiError> {
    validate_subcloud_name(subcloud)?;
    let key = KeyAlgorithm::EcdsaP256
        .generate()
        .map_err(LeafError::from)?;
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, subcloud);
    let csr = params
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .map_err(LeafError::from)?;
    Ok((csr, key.serialize_pem()))
}

/// Signs an agent's renewal request for `subcloud` (the name its verified certificate gave, never the
/// request's own subject) with `ca`, valid until `not_after`. The request's signature proves its
/// sender holds the key.
pub fn sign_agent_request(
    ca: &CertifiedCa,
    subcloud: &str,
    csr_pem: &str,
    not_after: UnixTime,
    now: UnixTime,
) -> Result<String, PkiError> {
    validate_subcloud_name(subcloud)?;
    let request = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
        .map_err(|e| PkiError::Request(e.to_string()))?;
    Ok(agent_spec(subcloud).issue_for_key(ca, &request.public_key, not_after, now)?)
}

/// Whether the (first) certificate of `cert_pem` is for the private key `key_pem`.
pub fn holds_key(cert_pem: &str, key_pem: &str) -> bool {
    let Ok(key) = rcgen::KeyPair::from_pem(key_pem) else {
        return false;
    };
    let Some(der) = crate::pem_certificates(cert_pem)
        .ok()
        .and_then(|d| d.into_iter().next())
    else {
        return false;
    };
    x509_parser::parse_x509_certificate(&der).is_ok_and(|(_, cert)| {
        cert.public_key().raw == rcgen::PublicKeyData::subject_public_key_info(&key).as_slice()
    })
}

/// What every agent certificate says: the subcloud name as CN and DNS SAN, client use only.
fn agent_spec(subcloud: &str) -> LeafSpec {
    let mut spec = LeafSpec::client(subcloud, &["dc-rootca agents"]);
    spec.dns_names = vec![subcloud.to_owned()];
    spec
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
    fn a_renewal_request_is_signed_for_the_verified_name_only_with_the_senders_key() {
        let dir = tempfile::tempdir().unwrap();
        let now = crate::now();
        let ca = init(dir.path(), &[], false, now).unwrap();
        // A request that asks for another name still gets the name the controller verified.
        let (csr, key) = agent_request("other").unwrap();
        let cert = sign_agent_request(&ca, "subcloud1", &csr, now + 86_400, now).unwrap();
        verify_chain(&cert, ca.cert_pem(), Usage::Client, now).unwrap();
        let info = CertSummary::from_pem(&cert).unwrap();
        assert_eq!(info.common_name.as_deref(), Some("subcloud1"));
        assert_eq!(info.dns_names, vec!["subcloud1".to_owned()]);
        assert_eq!(info.not_after, now + 86_400);
        // The certificate carries the request's key.
        let public =
            rcgen::PublicKeyData::subject_public_key_info(&rcgen::KeyPair::from_pem(&key).unwrap());
        let der = crate::pem_certificates(&cert).unwrap().remove(0);
        let (_, parsed) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(parsed.public_key().raw, public.as_slice());
        assert!(holds_key(&cert, &key));
        let (_, other_key) = agent_request("subcloud1").unwrap();
        assert!(!holds_key(&cert, &other_key));
        // A request whose signature does not hold is refused.
        let mut der = pem::parse(&csr).unwrap().into_contents();
        let last = der.len() - 1;
        der[last] ^= 1;
        let tampered = crate::pem_encode(&pem::Pem::new("CERTIFICATE REQUEST", der));
        let e = sign_agent_request(&ca, "subcloud1", &tampered, now + 86_400, now).unwrap_err();
        assert!(e.to_string().contains("signing request refused"), "{e}");
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
    fn the_controllers_files_go_to_their_own_directory_readable_by_its_group_and_the_ca_key_does_not()
     {
        use std::os::unix::fs::MetadataExt as _;
        let dir = tempfile::tempdir().unwrap();
        // A group this unprivileged test may give files to: its own.
        let gid = std::fs::metadata(dir.path()).unwrap().gid();
        let (ca_dir, controller_dir) = (dir.path().join("pki"), dir.path().join("controller"));
        let files = ControllerFiles {
            dir: &controller_dir,
            group: Some(gid),
        };
        let now = crate::now();
        init_with(&ca_dir, &[], false, now, &files).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&ca_dir), 0o700);
        assert_eq!(mode(&ca_dir.join(CA_KEY)), 0o600);
        assert!(!ca_dir.join(CONTROLLER_KEY).exists());
        assert_eq!(mode(&controller_dir), 0o750);
        assert_eq!(mode(&controller_dir.join(CONTROLLER_KEY)), 0o640);
        assert_eq!(mode(&controller_dir.join(CONTROLLER_CERT)), 0o644);
        assert_eq!(
            std::fs::metadata(controller_dir.join(CONTROLLER_KEY))
                .unwrap()
                .gid(),
            gid
        );
        assert!(!controller_dir.join(CA_KEY).exists());
        let ca_pem = std::fs::read_to_string(controller_dir.join(CA_CERT)).unwrap();
        let cert = std::fs::read_to_string(controller_dir.join(CONTROLLER_CERT)).unwrap();
        verify_chain(&cert, &ca_pem, Usage::Server, now).unwrap();
        let key = std::fs::read_to_string(controller_dir.join(CONTROLLER_KEY)).unwrap();
        assert!(holds_key(&cert, &key));
    }

    #[test]
    fn a_group_is_never_given_the_directory_of_the_ca_key() {
        let dir = tempfile::tempdir().unwrap();
        let files = ControllerFiles {
            dir: dir.path(),
            group: Some(0),
        };
        let e = init_with(dir.path(), &[], false, crate::now(), &files).unwrap_err();
        assert!(matches!(e, PkiError::GroupBesideCaKey(_)), "{e}");
        assert!(!dir.path().join(CA_KEY).exists(), "nothing was written");
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
