//! Kubeconfigs as kubeadm writes them: one cluster with embedded CA data, one user with embedded client
//! certificate and key. The phases change only those three fields, so this module reads and writes just
//! them and keeps the rest of the layout kubeadm's.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Errors reading a kubeconfig.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("kubeconfig has no '{0}' field")]
    Missing(&'static str),
    #[error("kubeconfig field '{0}' is not valid base64 UTF-8")]
    Encoding(&'static str),
}

/// The fields of a kubeconfig the update cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kubeconfig {
    /// The apiserver URL.
    pub server: String,
    /// The user name (the client certificate's CN in kubeadm's files).
    pub user: String,
    /// The trust bundle (`certificate-authority-data`), PEM.
    pub ca_pem: String,
    /// `client-certificate-data`, PEM.
    pub client_cert_pem: String,
    /// `client-key-data`, PEM.
    pub client_key_pem: String,
}

const CA_DATA: &str = "certificate-authority-data";
const CERT_DATA: &str = "client-certificate-data";
const KEY_DATA: &str = "client-key-data";

impl Kubeconfig {
    /// Renders the file.
    pub fn render(&self) -> String {
        let (user, server) = (&self.user, &self.server);
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    {CA_DATA}: {}\n    server: {server}\n  name: kubernetes\ncontexts:\n- context:\n    cluster: kubernetes\n    user: {user}\n  name: {user}@kubernetes\ncurrent-context: {user}@kubernetes\npreferences: {{}}\nusers:\n- name: {user}\n  user:\n    {CERT_DATA}: {}\n    {KEY_DATA}: {}\n",
            STANDARD.encode(&self.ca_pem),
            STANDARD.encode(&self.client_cert_pem),
            STANDARD.encode(&self.client_key_pem),
        )
    }

    /// Reads the fields back.
    pub fn parse(text: &str) -> Result<Self, KubeconfigError> {
        let field = |key: &'static str| -> Result<&str, KubeconfigError> {
            text.lines()
                .filter_map(|line| line.trim_start().trim_start_matches("- ").strip_prefix(key))
                .find_map(|rest| rest.strip_prefix(':'))
                .map(str::trim)
                .ok_or(KubeconfigError::Missing(key))
        };
        let data = |key: &'static str| -> Result<String, KubeconfigError> {
            STANDARD
                .decode(field(key)?)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or(KubeconfigError::Encoding(key))
        };
        Ok(Self {
            server: field("server")?.to_owned(),
            user: field("user")?.to_owned(),
            ca_pem: data(CA_DATA)?,
            client_cert_pem: data(CERT_DATA)?,
            client_key_pem: data(KEY_DATA)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let k = Kubeconfig {
            server: "https://192.168.206.1:6443".into(),
            user: "system:node:controller-0".into(),
            ca_pem: "-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n".into(),
            client_cert_pem: "cert".into(),
            client_key_pem: "key".into(),
        };
        assert_eq!(Kubeconfig::parse(&k.render()).unwrap(), k);
        assert!(matches!(
            Kubeconfig::parse("apiVersion: v1\n"),
            Err(KubeconfigError::Missing(_))
        ));
    }
}
