//! Mutual TLS on 127.0.0.1:0 with real certificates from the system PKI.

use dc_certs::pki;
use dc_protocol::tls::{self, AgentAcceptor, AgentIdentity, TlsError};
use dc_protocol::{AgentMessage, Connection, ControllerMessage, Hello, PROTOCOL_VERSION, Welcome};
use tokio::net::TcpListener;

struct Pki {
    ca_pem: String,
    server: AgentAcceptor,
}

fn pki() -> (Pki, dc_certs::CertifiedCa) {
    let dir = tempfile::tempdir().unwrap();
    let now = dc_certs::now();
    let ca = pki::init(dir.path(), &[], false, now).unwrap();
    let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap();
    let config = tls::server_config(
        &read(pki::CA_CERT),
        &read(pki::CONTROLLER_CERT),
        &read(pki::CONTROLLER_KEY),
    )
    .unwrap();
    (
        Pki {
            ca_pem: read(pki::CA_CERT),
            server: AgentAcceptor::new(config),
        },
        ca,
    )
}

/// Runs one accept on a fresh listener while `client` dials it; returns what the server saw.
async fn serve_once(
    acceptor: &AgentAcceptor,
    client: impl AsyncFnOnce(String) -> Result<(), String>,
) -> (Result<AgentIdentity, TlsError>, Result<(), String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let acceptor = acceptor.clone();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        match acceptor.accept(tcp).await {
            Ok((stream, name)) => {
                // Read the Hello so the client's write completes.
                let mut conn = Connection::new(stream);
                let hello = conn.recv::<AgentMessage>().await;
                assert!(matches!(hello, Ok(Some(AgentMessage::Hello(_)))));
                conn.send(&ControllerMessage::Welcome(Welcome {
                    controller_version: "test".into(),
                    protocol_version: PROTOCOL_VERSION,
                    heartbeat_interval_secs: 10,
                    heartbeat_acks: false,
                    certificate_lifetime_secs: 0,
                }))
                .await
                .unwrap();
                Ok(name)
            }
            Err(e) => Err(e),
        }
    });
    let client_result = client(addr).await;
    (server.await.unwrap(), client_result)
}

async fn dial(addr: String, ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<(), String> {
    let config = tls::client_config(ca_pem, cert_pem, key_pem).map_err(|e| e.to_string())?;
    let stream = tls::connect(config, &addr, "localhost")
        .await
        .map_err(|e| e.to_string())?;
    let mut conn = Connection::new(stream);
    conn.send(&AgentMessage::Hello(Hello {
        subcloud: "subcloud1".into(),
        agent_version: "test".into(),
        protocol_version: PROTOCOL_VERSION,
        capabilities: vec![],
    }))
    .await
    .map_err(|e| e.to_string())?;
    // With TLS 1.3 a refused client only learns it on its first read.
    match conn.recv::<ControllerMessage>().await {
        Ok(Some(ControllerMessage::Welcome(_))) => Ok(()),
        Ok(other) => Err(format!("unexpected {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

#[tokio::test]
async fn valid_agent_is_accepted_and_named() {
    let (pki, ca) = pki();
    let now = dc_certs::now();
    let leaf = pki::issue_agent(&ca, "subcloud1", now + 86400, now).unwrap();
    let (server, client) = serve_once(&pki.server, async |addr| {
        dial(addr, &pki.ca_pem, &leaf.cert_pem, &leaf.key_pem).await
    })
    .await;
    let agent = server.unwrap();
    assert_eq!(agent.subcloud, "subcloud1");
    // dc-certs backdates notBefore by the clock-skew margin; the controller adds it back.
    assert_eq!(agent.not_before, now - dc_certs::authority::CLOCK_SKEW_SECS);
    client.unwrap();
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let (pki, _) = pki();
    let (server, _client) = serve_once(&pki.server, async |addr| {
        let config = rustls::ClientConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates({
                let mut roots = rustls::RootCertStore::empty();
                for c in rustls_pki_types::CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
                    roots.add(c.unwrap()).unwrap();
                }
                roots
            })
            .with_no_client_auth();
        let stream = tls::connect(std::sync::Arc::new(config), &addr, "localhost")
            .await
            .map_err(|e| e.to_string())?;
        let mut conn = Connection::new(stream);
        conn.recv::<AgentMessage>()
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await;
    let err = server.unwrap_err().to_string();
    assert!(err.contains("handshake"), "{err}");
}

#[tokio::test]
async fn certificate_from_a_foreign_ca_is_refused() {
    let (pki, _) = pki();
    let (_, foreign) = self::pki();
    let now = dc_certs::now();
    let leaf = pki::issue_agent(&foreign, "subcloud1", now + 86400, now).unwrap();
    let (server, client) = serve_once(&pki.server, async |addr| {
        dial(addr, &pki.ca_pem, &leaf.cert_pem, &leaf.key_pem).await
    })
    .await;
    assert!(matches!(server, Err(TlsError::Handshake(_))), "{server:?}");
    assert!(client.is_err());
}

#[tokio::test]
async fn expired_certificate_is_refused() {
    let (pki, ca) = pki();
    let now = dc_certs::now();
    // Issued ten days ago, expired yesterday.
    let leaf = pki::issue_agent(&ca, "subcloud1", now - 86400, now - 10 * 86400).unwrap();
    let (server, client) = serve_once(&pki.server, async |addr| {
        dial(addr, &pki.ca_pem, &leaf.cert_pem, &leaf.key_pem).await
    })
    .await;
    let err = server.unwrap_err().to_string();
    assert!(err.contains("Expired") || err.contains("expired"), "{err}");
    assert!(client.is_err());
}

use rustls_pki_types::pem::PemObject;

/// Both ends of the agent link notice a vanished peer within about 25 s even when neither speaks.
#[tokio::test]
async fn keepalive_is_on_with_the_documented_timing() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    tls::keepalive(&tcp);
    let socket = socket2::SockRef::from(&tcp);
    assert!(socket.keepalive().unwrap());
    assert_eq!(
        socket.tcp_keepalive_time().unwrap(),
        std::time::Duration::from_secs(10)
    );
    assert_eq!(
        socket.tcp_keepalive_interval().unwrap(),
        std::time::Duration::from_secs(5)
    );
    assert_eq!(socket.tcp_keepalive_retries().unwrap(), 3);
}
