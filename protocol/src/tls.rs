//! Mutual TLS between the controller and the agents, with ring as the one crypto provider.
//!
//! The server requires a client certificate chaining to the system CA and hands back the subcloud name
//! it certifies (CN, which must also be one of its DNS SANs). The client pins the system CA: it trusts no
//! public root, only the CA that issued its own certificate.

use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};
use x509_parser::prelude::*;

/// How long a peer may take to complete the TLS handshake before it is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of the TLS transport.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the {what}: {reason}")]
    Pem { what: &'static str, reason: String },
    #[error("TLS configuration is invalid: {0}")]
    Config(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(String),
    #[error("TLS handshake failed: {0}")]
    Handshake(std::io::Error),
    #[error("TLS handshake did not complete within {0:?}")]
    HandshakeTimeout(Duration),
    #[error("peer presented no certificate")]
    NoPeerCertificate,
    #[error("peer certificate does not name a subcloud: {0}")]
    Identity(String),
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("invalid server name '{0}'")]
    ServerName(String),
}

/// The ring provider, the only one compiled in.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Installs ring as the process-wide default provider, for libraries (kube, actix-web) that build their
/// own rustls configs. Harmless when already installed.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn certificates(pem: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what,
            reason: "no CERTIFICATE block".to_owned(),
        });
    }
    Ok(certs)
}

fn private_key(pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| TlsError::Pem {
        what: "private key",
        reason: e.to_string(),
    })
}

fn roots(ca_pem: &str) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in certificates(ca_pem, "system CA certificate")? {
        store.add(cert)?;
    }
    Ok(Arc::new(store))
}

/// The controller's server config: requires client certificates issued by the system CA.
pub fn server_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca_pem)?, provider.clone())
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            certificates(cert_pem, "server certificate")?,
            private_key(key_pem)?,
        )?;
    Ok(Arc::new(config))
}

/// A plain HTTPS server config (no client certificates): the REST API, and test servers that clients
/// reach with ordinary bearer tokens. One place, so every server speaks the same ring-only TLS.
pub fn https_server_config(cert_pem: &str, key_pem: &str) -> Result<ServerConfig, TlsError> {
    Ok(ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            certificates(cert_pem, "server certificate")?,
            private_key(key_pem)?,
        )?)
}

/// A plain HTTPS client config that trusts only the CAs in `ca_pem` (no client certificate): the
/// controller's calls to Keystone with `auth.keystone.cafile`.
pub fn https_client_config(ca_pem: &str) -> Result<Arc<ClientConfig>, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in certificates(ca_pem, "CA certificate")? {
        store.add(cert)?;
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(store)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// An agent's client config: trusts only the system CA and presents the agent's certificate.
pub fn client_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<ClientConfig>, TlsError> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca_pem)?)
        .with_client_auth_cert(
            certificates(cert_pem, "client certificate")?,
            private_key(key_pem)?,
        )?;
    Ok(Arc::new(config))
}

/// Accepts agent connections and names the subcloud each one is certified for.
#[derive(Clone)]
pub struct AgentAcceptor {
    acceptor: TlsAcceptor,
}

impl AgentAcceptor {
    pub fn new(config: Arc<ServerConfig>) -> Self {
        Self {
            acceptor: TlsAcceptor::from(config),
        }
    }

    /// Runs the handshake and returns the stream with the verified agent's identity.
    pub async fn accept<IO>(
        &self,
        io: IO,
    ) -> Result<(server::TlsStream<IO>, AgentIdentity), TlsError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(io))
            .await
            .map_err(|_| TlsError::HandshakeTimeout(HANDSHAKE_TIMEOUT))?
            .map_err(TlsError::Handshake)?;
        let leaf = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .ok_or(TlsError::NoPeerCertificate)?;
        let identity = AgentIdentity::of(leaf)?;
        Ok((stream, identity))
    }
}

/// Who a verified agent certificate speaks for, and since when: the controller refuses a certificate
/// issued before its subcloud was deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentIdentity {
    pub subcloud: String,
    /// The certificate's `notBefore`, in Unix seconds.
    pub not_before: i64,
}

impl AgentIdentity {
    pub fn of(cert: &CertificateDer<'_>) -> Result<Self, TlsError> {
        let (_, parsed) = X509Certificate::from_der(cert.as_ref())
            .map_err(|e| TlsError::Identity(e.to_string()))?;
        Ok(Self {
            subcloud: subcloud_of(&parsed)?,
            not_before: parsed.validity().not_before.timestamp(),
        })
    }
}

/// The subcloud a verified agent certificate names: its CN, which must also be one of its DNS SANs.
fn subcloud_of(cert: &X509Certificate<'_>) -> Result<String, TlsError> {
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .ok_or_else(|| TlsError::Identity("no common name".to_owned()))?;
    let in_san = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .is_some_and(|san| {
            san.value
                .general_names
                .iter()
                .any(|n| matches!(n, GeneralName::DNSName(d) if *d == cn))
        });
    if !in_san {
        return Err(TlsError::Identity(format!(
            "common name '{cn}' is not among the certificate's DNS names"
        )));
    }
    Ok(cn.to_owned())
}

/// Turns on TCP keepalive: a peer whose host died or whose network went away is noticed by the kernel
/// within about 25 s (10 s idle, then 3 probes 5 s apart) even when neither side has anything to say.
/// A peer process that hangs on a live host is for the application's own deadline to notice.
pub fn keepalive(tcp: &TcpStream) {
    let probes = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(10))
        .with_interval(Duration::from_secs(5))
        .with_retries(3);
    if let Err(e) = socket2::SockRef::from(tcp).set_tcp_keepalive(&probes) {
        tracing::debug!(error = %e, "cannot turn on TCP keepalive");
    }
}

/// Dials the controller at `addr` (host:port) and runs the handshake, checking the controller's
/// certificate against `server_name`.
pub async fn connect(
    config: Arc<ClientConfig>,
    addr: &str,
    server_name: &str,
) -> Result<client::TlsStream<TcpStream>, TlsError> {
    let name = ServerName::try_from(server_name.to_owned())
        .map_err(|_| TlsError::ServerName(server_name.to_owned()))?;
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|source| TlsError::Connect {
            addr: addr.to_owned(),
            source,
        })?;
    tcp.set_nodelay(true).ok();
    keepalive(&tcp);
    tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .map_err(|_| TlsError::HandshakeTimeout(HANDSHAKE_TIMEOUT))?
    .map_err(TlsError::Handshake)
}
