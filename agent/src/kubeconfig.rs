//! Kubeconfigs edited in place. A real host's kubeconfig carries more than the update cares about
//! (cluster and context names, extensions, preferences, a server address that differs per host), so the
//! phases never render one from scratch: they change only `certificate-authority-data` and, for embedded
//! credentials, `client-certificate-data` and `client-key-data`, and keep every other byte.
//!
//! Both forms kubeadm writes are understood: credentials embedded as base64 data (`admin.conf`,
//! `controller-manager.conf`, `scheduler.conf`) and credentials in a file the kubeconfig names
//! (`kubelet.conf`: `client-certificate` and `client-key` both `/var/lib/kubelet/pki/kubelet-client-current.pem`).
//! Files with several clusters or users are refused rather than half-updated.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Errors reading or editing a kubeconfig.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("kubeconfig has no '{0}' field")]
    Missing(&'static str),
    #[error("kubeconfig field '{0}' is not valid base64 UTF-8")]
    Encoding(&'static str),
    #[error(
        "kubeconfig has {count} '{field}' fields; only one cluster and one user (kubeadm's layout) are supported"
    )]
    Ambiguous { field: &'static str, count: usize },
    #[error("kubeconfig has both '{0}' and '{0}-data'")]
    Conflict(&'static str),
    #[error(
        "kubeconfig's client credentials are in files, not embedded: the files are updated instead"
    )]
    NotEmbedded,
}

const CA_DATA: &str = "certificate-authority-data";
const CERT_DATA: &str = "client-certificate-data";
const KEY_DATA: &str = "client-key-data";
const CERT_FILE: &str = "client-certificate";
const KEY_FILE: &str = "client-key";

/// Where a kubeconfig keeps its client certificate and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCredentials {
    /// `client-certificate-data` and `client-key-data`, decoded to PEM.
    Embedded { cert_pem: String, key_pem: String },
    /// `client-certificate` and `client-key`: paths on the host (kubeadm's `kubelet.conf` names one
    /// file holding both).
    Files { cert: String, key: String },
}

/// A kubeconfig file: its text and the fields the update reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kubeconfig {
    text: String,
    ca_pem: String,
    client: ClientCredentials,
}

impl Kubeconfig {
    /// Reads a kubeconfig.
    pub fn parse(text: &str) -> Result<Self, KubeconfigError> {
        let data = |key: &'static str| -> Result<Option<String>, KubeconfigError> {
            field(text, key)?
                .map(|value| {
                    STANDARD
                        .decode(value)
                        .ok()
                        .and_then(|bytes| String::from_utf8(bytes).ok())
                        .ok_or(KubeconfigError::Encoding(key))
                })
                .transpose()
        };
        let ca_pem = data(CA_DATA)?.ok_or(KubeconfigError::Missing(CA_DATA))?;
        let embedded = (data(CERT_DATA)?, data(KEY_DATA)?);
        let files = (field(text, CERT_FILE)?, field(text, KEY_FILE)?);
        let client = match (embedded, files) {
            ((Some(_), _), (Some(_), _)) => return Err(KubeconfigError::Conflict(CERT_FILE)),
            ((_, Some(_)), (_, Some(_))) => return Err(KubeconfigError::Conflict(KEY_FILE)),
            ((Some(cert_pem), Some(key_pem)), _) => {
                ClientCredentials::Embedded { cert_pem, key_pem }
            }
            (_, (Some(cert), Some(key))) => ClientCredentials::Files {
                cert: cert.to_owned(),
                key: key.to_owned(),
            },
            ((None, _), (None, _)) => return Err(KubeconfigError::Missing(CERT_DATA)),
            _ => return Err(KubeconfigError::Missing(KEY_DATA)),
        };
        Ok(Self {
            text: text.to_owned(),
            ca_pem,
            client,
        })
    }

    /// The trust bundle (`certificate-authority-data`), PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub fn client(&self) -> &ClientCredentials {
        &self.client
    }

    /// The file as it is now (with any edits).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Sets `certificate-authority-data`, keeping everything else.
    pub fn set_ca(&mut self, ca_pem: &str) {
        self.text = replace_value(&self.text, CA_DATA, &STANDARD.encode(ca_pem));
        self.ca_pem = ca_pem.to_owned();
    }

    /// Sets embedded client credentials, keeping everything else; credentials in files are refused
    /// (the caller rewrites the files).
    pub fn set_client(&mut self, cert_pem: &str, key_pem: &str) -> Result<(), KubeconfigError> {
        if !matches!(self.client, ClientCredentials::Embedded { .. }) {
            return Err(KubeconfigError::NotEmbedded);
        }
        let text = replace_value(&self.text, CERT_DATA, &STANDARD.encode(cert_pem));
        self.text = replace_value(&text, KEY_DATA, &STANDARD.encode(key_pem));
        self.client = ClientCredentials::Embedded {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
        };
        Ok(())
    }
}

/// The trust bundle of a kubeconfig that carries no client credentials: kubeadm's join discovery
/// kubeconfig (`kube-public/cluster-info`), which holds only the cluster's CA data and server.
pub fn discovery_ca(text: &str) -> Result<String, KubeconfigError> {
    let value = field(text, CA_DATA)?.ok_or(KubeconfigError::Missing(CA_DATA))?;
    STANDARD
        .decode(value)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or(KubeconfigError::Encoding(CA_DATA))
}

/// A discovery kubeconfig with its CA data set to `ca_pem`, every other byte kept.
pub fn set_discovery_ca(text: &str, ca_pem: &str) -> Result<String, KubeconfigError> {
    discovery_ca(text)?;
    Ok(replace_value(text, CA_DATA, &STANDARD.encode(ca_pem)))
}

/// A discovery kubeconfig as `kubeadm init` publishes it in `kube-public/cluster-info`.
pub fn render_discovery(server: &str, ca_pem: &str) -> String {
    format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    {CA_DATA}: {}\n    server: {server}\n  name: \"\"\ncontexts: null\ncurrent-context: \"\"\nkind: Config\npreferences: {{}}\nusers: null\n",
        STANDARD.encode(ca_pem)
    )
}

/// A new kubeconfig with embedded credentials, laid out as `kubeadm init` writes one (the simulated
/// cluster creates its hosts' files with it).
pub fn render(server: &str, user: &str, ca_pem: &str, cert_pem: &str, key_pem: &str) -> String {
    format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    {CA_DATA}: {}\n    server: {server}\n  name: kubernetes\ncontexts:\n- context:\n    cluster: kubernetes\n    user: {user}\n  name: {user}@kubernetes\ncurrent-context: {user}@kubernetes\nkind: Config\npreferences: {{}}\nusers:\n- name: {user}\n  user:\n    {CERT_DATA}: {}\n    {KEY_DATA}: {}\n",
        STANDARD.encode(ca_pem),
        STANDARD.encode(cert_pem),
        STANDARD.encode(key_pem),
    )
}

/// Splits a line into (text before the value, key, value) when it is `key: value`, possibly as the
/// first entry of a list item (`- key: value`).
fn split_field(line: &str) -> Option<(usize, &str, &str)> {
    let body = line.trim_end_matches(['\n', '\r']);
    let indent = body.len() - body.trim_start().len();
    let rest = &body[indent..];
    let rest_start = indent + if rest.starts_with("- ") { 2 } else { 0 };
    let (key, value) = body[rest_start..].split_once(':')?;
    let value_start = rest_start + key.len() + 1;
    let value_start =
        value_start + (body[value_start..].len() - body[value_start..].trim_start().len());
    Some((value_start, key.trim_end(), value.trim()))
}

/// The single value of `key`; `None` when absent, an error when the file has it more than once.
fn field<'a>(text: &'a str, key: &'static str) -> Result<Option<&'a str>, KubeconfigError> {
    let values: Vec<&str> = text
        .lines()
        .filter_map(split_field)
        .filter(|(_, k, _)| *k == key)
        .map(|(_, _, v)| v.trim_matches(|c| c == '"' || c == '\''))
        .collect();
    match values.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        many => Err(KubeconfigError::Ambiguous {
            field: key,
            count: many.len(),
        }),
    }
}

/// `text` with the value of `key` replaced, every other byte (indentation, line endings, comments on
/// other lines) kept.
fn replace_value(text: &str, key: &str, value: &str) -> String {
    text.split_inclusive('\n')
        .map(|line| match split_field(line) {
            Some((start, k, _)) if k == key => {
                let ending = &line[line.trim_end_matches(['\n', '\r']).len()..];
                let head = &line[..start];
                // `key:` with no value (YAML's null) needs the space YAML requires after a key's colon.
                let space = if head.ends_with(':') { " " } else { "" };
                format!("{head}{space}{value}{ending}")
            }
            _ => line.to_owned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `kubelet.conf` exactly as `kubeadm join` writes it, with a real host's extras.
    const KUBELET_CONF: &str = "apiVersion: v1\r\nclusters:\r\n- cluster:\r\n    certificate-authority-data: T0xE\r\n    server: https://10.20.0.2:6443\r\n    tls-server-name: kubernetes\r\n  name: default-cluster\r\ncontexts:\r\n- context:\r\n    cluster: default-cluster\r\n    namespace: default\r\n    user: default-auth\r\n  name: default-context\r\ncurrent-context: default-context\r\nkind: Config\r\npreferences: {}\r\nusers:\r\n- name: default-auth\r\n  user:\r\n    client-certificate: /var/lib/kubelet/pki/kubelet-client-current.pem\r\n    client-key: /var/lib/kubelet/pki/kubelet-client-current.pem\r\n";

    /// `admin.conf` as `kubeadm init` writes it, plus an extension and a comment.
    fn admin_conf() -> String {
        format!(
            "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: https://cp.example.com:6443\n    extensions:\n    - extension:\n        last-update: x\n      name: info\n  name: prod\ncontexts:\n- context:\n    cluster: prod\n    user: kubernetes-admin\n  name: kubernetes-admin@prod\ncurrent-context: kubernetes-admin@prod\nkind: Config\npreferences: {{}}\n# managed by kubeadm\nusers:\n- name: kubernetes-admin\n  user:\n    client-certificate-data: \"{}\"\n    client-key-data: {}\n",
            STANDARD.encode("OLD CA"),
            STANDARD.encode("OLD CERT"),
            STANDARD.encode("OLD KEY"),
        )
    }

    /// `cluster-info`'s kubeconfig as `kubeadm init` publishes it: a cluster, no user.
    #[test]
    fn a_discovery_kubeconfig_has_its_ca_replaced_and_nothing_else() {
        let original = render_discovery("https://10.20.0.2:6443", "OLD CA");
        assert_eq!(discovery_ca(&original).unwrap(), "OLD CA");
        let edited = set_discovery_ca(&original, "NEW CA").unwrap();
        assert_eq!(discovery_ca(&edited).unwrap(), "NEW CA");
        assert_eq!(
            edited,
            original.replace(&STANDARD.encode("OLD CA"), &STANDARD.encode("NEW CA"))
        );
        assert!(matches!(
            set_discovery_ca("kind: Config\n", "NEW CA"),
            Err(KubeconfigError::Missing(CA_DATA))
        ));
    }

    #[test]
    fn embedded_credentials_are_read_and_edited_in_place() {
        let original = admin_conf();
        let mut k = Kubeconfig::parse(&original).unwrap();
        assert_eq!(k.ca_pem(), "OLD CA");
        assert_eq!(
            k.client(),
            &ClientCredentials::Embedded {
                cert_pem: "OLD CERT".into(),
                key_pem: "OLD KEY".into()
            }
        );
        k.set_ca("NEW CA");
        k.set_client("NEW CERT", "NEW KEY").unwrap();
        let expected = original
            .replace(&STANDARD.encode("OLD CA"), &STANDARD.encode("NEW CA"))
            .replace(
                &format!("\"{}\"", STANDARD.encode("OLD CERT")),
                &STANDARD.encode("NEW CERT"),
            )
            .replace(&STANDARD.encode("OLD KEY"), &STANDARD.encode("NEW KEY"));
        assert_eq!(k.text(), expected, "only the three values changed");
        let again = Kubeconfig::parse(k.text()).unwrap();
        assert_eq!(again.ca_pem(), "NEW CA");
        assert_eq!(again, k);
    }

    #[test]
    fn kubelet_conf_credentials_in_a_file_keep_every_other_byte() {
        let mut k = Kubeconfig::parse(KUBELET_CONF).unwrap();
        assert_eq!(k.ca_pem(), "OLD");
        let pem = "/var/lib/kubelet/pki/kubelet-client-current.pem";
        assert_eq!(
            k.client(),
            &ClientCredentials::Files {
                cert: pem.into(),
                key: pem.into()
            }
        );
        assert!(matches!(
            k.set_client("c", "k"),
            Err(KubeconfigError::NotEmbedded)
        ));
        k.set_ca("NEW");
        assert_eq!(
            k.text(),
            KUBELET_CONF.replace("T0xE", &STANDARD.encode("NEW")),
            "CRLF endings, names and the file references kept"
        );
    }

    #[test]
    fn rendered_kubeadm_layout_parses() {
        let text = render("https://10.0.0.2:6443", "system:node:w-0", "CA", "C", "K");
        let k = Kubeconfig::parse(&text).unwrap();
        assert_eq!(k.ca_pem(), "CA");
        assert_eq!(
            k.client(),
            &ClientCredentials::Embedded {
                cert_pem: "C".into(),
                key_pem: "K".into()
            }
        );
    }

    #[test]
    fn an_empty_value_gets_the_space_yaml_needs() {
        // Found by the kubeconfig fuzz target: `client-key-data:` with nothing after the colon (YAML's
        // null) was edited to `client-key-data:<base64>`, which YAML reads as one plain scalar, not a key.
        let empty = admin_conf().replace(
            &format!("client-key-data: {}", STANDARD.encode("OLD KEY")),
            "client-key-data:",
        );
        let mut k = Kubeconfig::parse(&empty).unwrap();
        k.set_client("NEW CERT", "NEW KEY").unwrap();
        assert!(
            k.text().ends_with(&format!(
                "    client-key-data: {}\n",
                STANDARD.encode("NEW KEY")
            )),
            "{}",
            k.text()
        );
    }

    #[test]
    fn unsupported_files_are_refused_with_a_reason() {
        assert!(matches!(
            Kubeconfig::parse("apiVersion: v1\n"),
            Err(KubeconfigError::Missing(CA_DATA))
        ));
        let two_users = format!(
            "{}- name: other\n  user:\n    client-certificate-data: QQ==\n    client-key-data: QQ==\n",
            admin_conf()
        );
        assert!(matches!(
            Kubeconfig::parse(&two_users),
            Err(KubeconfigError::Ambiguous { count: 2, .. })
        ));
        let bad = admin_conf().replace(&STANDARD.encode("OLD CA"), "***");
        assert!(matches!(
            Kubeconfig::parse(&bad),
            Err(KubeconfigError::Encoding(CA_DATA))
        ));
        let token_only = "clusters:\n- cluster:\n    certificate-authority-data: QQ==\nusers:\n- name: x\n  user:\n    token: abc\n";
        assert!(matches!(
            Kubeconfig::parse(token_only),
            Err(KubeconfigError::Missing(CERT_DATA))
        ));
    }
}
