//! A Kubernetes REST API served over a [`SimCluster`], so the agent's real Kubernetes backend (kube-rs)
//! and the real `kubectl` can be tested against the same model the simulated backend uses.
//!
//! It serves what a root CA update touches, with the real wire format (k8s-openapi types): discovery,
//! namespaces, Deployments/DaemonSets/StatefulSets (list, get, watch, and patches of the pod template's
//! annotations, as `kubectl rollout restart` sends them) and pods (list by label selector, get, watch,
//! delete), over HTTPS with a bearer token. Anything else is refused with the API server's own `Status`
//! errors rather than ignored, so a backend relying on more than this fails loudly.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use dc_agent::sim::{SimCluster, SimConfig};
//! use dc_test_support::kube_api::KubeApi;
//!
//! let dir = tempfile::tempdir()?;
//! let sim = Arc::new(SimCluster::open(dir.path(), &SimConfig::typical())?);
//! let api = KubeApi::start(sim)?;
//! api.write_kubeconfig(&dir.path().join("kubeconfig"))?;
//! // kubectl --kubeconfig <dir>/kubeconfig rollout restart deployment/web
//! # Ok(()) }
//! ```

mod config_maps;
mod discovery;
mod objects;
mod patch;
mod routes;
pub mod selector;
mod status;
mod versions;
mod view;
mod watch;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, web};
use base64::Engine;
use dc_agent::sim::{SimCluster, SimError};
use k8s_openapi::jiff::Timestamp;

use crate::TestPki;
use objects::Epoch;
use routes::Shared;
use versions::ResourceVersions;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum KubeApiError {
    #[error("cannot create the API server's certificate: {0}")]
    Pki(#[from] dc_certs::pki::PkiError),
    #[error("cannot read the API server's certificate: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid TLS configuration: {0}")]
    Tls(String),
    #[error("cannot read the simulated cluster: {0}")]
    Sim(#[from] SimError),
    #[error("the API server thread stopped before serving")]
    Thread,
}

/// A running API server; stopped when dropped.
#[derive(Debug)]
pub struct KubeApi {
    url: String,
    ca_pem: String,
    token: String,
    sim: Arc<SimCluster>,
    handle: ServerHandle,
    thread: Option<JoinHandle<()>>,
}

impl KubeApi {
    /// Serves `sim` on 127.0.0.1:0 over HTTPS in its own thread (own actix System), so it works from
    /// plain #[test]s, #[tokio::test]s and processes alike.
    pub fn start(sim: Arc<SimCluster>) -> Result<KubeApi, KubeApiError> {
        dc_protocol::tls::install_default_provider();
        let pki = TestPki::new()?;
        let ca_pem = std::fs::read_to_string(pki.file("ca.crt"))?;
        let tls = dc_protocol::tls::https_server_config(
            &std::fs::read_to_string(pki.file("controller.crt"))?,
            &std::fs::read_to_string(pki.file("controller.key"))?,
        )
        .map_err(|e| KubeApiError::Tls(e.to_string()))?;
        let token = format!("{:032x}", rand::random::<u128>());
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = {
            let (sim, token) = (sim.clone(), token.clone());
            std::thread::Builder::new()
                .name("kube-api".to_owned())
                .spawn(move || {
                    let system = actix_rt::System::new();
                    system.block_on(async move {
                        match bind(sim, token, tls).await {
                            Ok((server, addr)) => {
                                let _ = tx.send(Ok((addr, server.handle())));
                                if let Err(e) = server.await {
                                    tracing::warn!(error = %e, "simulated Kubernetes API stopped");
                                }
                            }
                            Err(e) => {
                                let _ = tx.send(Err(e));
                            }
                        }
                    });
                })?
        };
        let (addr, handle) = rx.recv().map_err(|_| KubeApiError::Thread)??;
        tracing::info!(%addr, "simulated Kubernetes API serving");
        Ok(KubeApi {
            url: format!("https://{addr}"),
            ca_pem,
            token,
            sim,
            handle,
            thread: Some(thread),
        })
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A kubeconfig for the server: its address, the CA that issued its certificate and the token.
    pub fn kubeconfig(&self) -> String {
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.ca_pem);
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: dc-sim
  cluster:
    server: {url}
    certificate-authority-data: {ca}
users:
- name: dc-sim-admin
  user:
    token: {token}
contexts:
- name: dc-sim
  context:
    cluster: dc-sim
    user: dc-sim-admin
current-context: dc-sim
",
            url = self.url,
            token = self.token,
        )
    }

    /// Writes [`Self::kubeconfig`] to `path`, owner-only (it holds the token).
    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        dc_certs::files::write_atomic(path, self.kubeconfig().as_bytes(), 0o600)
    }

    /// The served cluster.
    pub fn sim(&self) -> &Arc<SimCluster> {
        &self.sim
    }
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        // Not graceful: open watches would otherwise hold the server for their whole duration. The stop
        // command is sent when called; the server's own thread completes it.
        drop(self.handle.stop(false));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Binds the server inside the current actix system.
async fn bind(
    sim: Arc<SimCluster>,
    token: String,
    tls: rustls::ServerConfig,
) -> Result<(actix_web::dev::Server, SocketAddr), KubeApiError> {
    // Wall time of the model's clock zero, fixed once so timestamps (and so versions) stay stable.
    let clock_ms = sim.snapshot()?.clock_ms;
    // Through SystemTime: jiff's own clock needs its `std` feature, which not every build enables.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let now = Timestamp::from_millisecond(now_ms).unwrap_or(Timestamp::UNIX_EPOCH);
    let epoch = Epoch::at(now, clock_ms);
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let shared = web::Data::new(Shared {
        sim,
        epoch,
        versions: ResourceVersions::default(),
        token,
        address: addr.to_string(),
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(shared.clone())
            .wrap(actix_web::middleware::from_fn(routes::authenticate))
            .configure(routes::configure)
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen_rustls_0_23(listener, tls)?
    .run();
    Ok((server, addr))
}
