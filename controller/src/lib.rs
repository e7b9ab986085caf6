//! The dc-rootca controller: orchestrates the Kubernetes root CA update across subclouds.
//!
//! Layout, in the order a request flows (CLI → API → strategy → step → session → agent):
//! - [`api`]: the REST API: tokens, handlers, the OpenAPI document.
//! - [`requests`]: the request bodies as types; the API parses, nothing below sees JSON bodies.
//! - [`orchestrator`]: the actor owning subclouds, groups, the agents' sessions and the strategy;
//!   its decisions are plain functions ([`orchestrator::registry`], [`orchestrator::strategy`]) that
//!   answer a data [`orchestrator::state::Change`], applied in one place; [`orchestrator::persist`]
//!   is the one writer to the store (transitions durable before acted on, progress batched);
//!   [`orchestrator::metrics`] renders `/metrics`.
//! - [`events`]: the event stream's ring and broadcast (published by the orchestrator and the
//!   progress writer, served by `api::events`).
//! - [`step`]: one light actor per running step, driving its agent.
//! - [`session`]: the mutual-TLS agent listener and one actor per agent connection.
//! - [`model`] and [`rules`]: records, their JSON, and the strategy's rules as pure functions;
//!   [`options`]: the sw-update-options (`strategy-config`) entries and the options a subcloud's
//!   update runs with.
//! - [`store`]: persistence behind a trait (SQLite by default, PostgreSQL for several controllers on one
//!   database), on its own thread.
//! - [`config`], [`error`]: the TOML/env configuration (the loader shared with the agent) and errors.
//! - [`systemd`]: readiness and the watchdog for the packaged unit (`Type=notify`).
//!
//! Imports follow that flow and never come back up: an actor owns the messages it is sent, and
//! reports upward through the `Recipient`s its parent gave it ([`session::Upstream`],
//! [`step::Reports`]), so the session knows neither steps nor the orchestrator, and a step knows only
//! the session. Once a step runs, its agent's progress goes session → step → progress writer; the
//! orchestrator hears a step's start and end, not its progress.
//!
//! [`start`] runs it all inside the current actix system and answers the bound addresses.

pub mod api;
pub mod config;
pub mod error;
pub mod events;
pub mod lease;
pub mod model;
pub mod options;
pub mod orchestrator;
pub mod requests;
pub mod rules;
pub mod session;
pub mod step;
pub mod store;
pub mod systemd;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix::{Actor, Addr};
use actix_web::{App, HttpServer, web};
use tokio::sync::watch;

pub use config::ControllerConfig;
pub use error::{ApiError, ControllerError};
pub use orchestrator::Status;

use api::Actors;
use orchestrator::persist::{Flush, Persist};
use orchestrator::{Orchestrator, Shutdown};
use store::Store;

/// A running controller.
pub struct RunningController {
    /// Where the REST API listens.
    pub api_addr: SocketAddr,
    /// Where agents connect.
    pub agents_addr: SocketAddr,
    server: actix_web::dev::ServerHandle,
    listener: actix_rt::task::JoinHandle<()>,
    actors: Actors,
    status: watch::Receiver<Status>,
    store_failure: watch::Receiver<Option<String>>,
    leadership_lost: watch::Receiver<Option<String>>,
    keeper: Option<Keeper>,
}

/// The task that renews the leadership lease, and how to make it release the lease.
struct Keeper {
    stop: tokio::sync::oneshot::Sender<()>,
    task: actix_rt::task::JoinHandle<()>,
}

impl RunningController {
    /// The controller's status, updated as it changes: await conditions on it instead of sleeping.
    pub fn status(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// Why the store could not write, once it failed. A failed write is fail-stop: the process must stop
    /// (`dc-controller` exits non-zero) so that a restart recovers from what is durable.
    pub fn store_failure(&self) -> watch::Receiver<Option<String>> {
        self.store_failure.clone()
    }

    /// Why this controller stopped leading, once it has (never with SQLite). It has already stopped
    /// acting (agent listener closed, sessions and steps stopped); the process must stop too
    /// (`dc-controller` exits non-zero), and a restart comes back as a standby.
    pub fn leadership_lost(&self) -> watch::Receiver<Option<String>> {
        self.leadership_lost.clone()
    }

    /// The actors that answer the API, for in-process callers.
    pub fn actors(&self) -> Actors {
        self.actors.clone()
    }

    /// The orchestrator, for in-process callers.
    pub fn orchestrator(&self) -> Addr<Orchestrator> {
        self.actors.orchestrator.clone()
    }

    /// Stops accepting, closes every agent session, flushes coalesced progress and stops the API.
    /// Steps in progress stay recorded as running, so a new controller on the same database resumes them.
    pub async fn stop(self) {
        self.listener.abort();
        // Open event streams end now, or the graceful stop below would wait for them.
        self.actors.events.close();
        if let Err(e) = self.actors.orchestrator.send(Shutdown).await {
            tracing::warn!(error = %e, "orchestrator already stopped");
        }
        if let Err(e) = self.actors.persist.send(Flush).await {
            tracing::warn!(error = %e, "progress writer already stopped");
        }
        self.server.stop(true).await;
        // Last: everything this controller wrote is durable before a standby may lead.
        if let Some(keeper) = self.keeper {
            let _ = keeper.stop.send(());
            let _ = keeper.task.await;
        }
    }
}

fn read(path: &Path) -> Result<String, ControllerError> {
    std::fs::read_to_string(path).map_err(|source| ControllerError::Read {
        path: path.to_owned(),
        source,
    })
}

fn api_tls(files: &config::TlsFiles) -> Result<rustls::ServerConfig, ControllerError> {
    dc_protocol::tls::https_server_config(&read(&files.cert)?, &read(&files.key)?)
        .map_err(|e| ControllerError::Tls(e.to_string()))
}

/// The agent listener's mutual-TLS configuration: the system CA verifies agents.
fn agent_tls(config: &ControllerConfig) -> Result<Arc<rustls::ServerConfig>, ControllerError> {
    dc_protocol::tls::server_config(
        &read(&config.pki.ca)?,
        &read(&config.pki.cert)?,
        &read(&config.pki.key)?,
    )
    .map_err(|e| ControllerError::Tls(e.to_string()))
}

async fn bind_agents(
    config: &ControllerConfig,
) -> Result<tokio::net::TcpListener, ControllerError> {
    tokio::net::TcpListener::bind(&config.agents.listen)
        .await
        .map_err(|source| ControllerError::Bind {
            addr: config.agents.listen.clone(),
            source,
        })
}

/// Writes the bound addresses atomically (temporary file, then rename).
fn write_ready(path: &Path, api: SocketAddr, agents: SocketAddr) -> Result<(), ControllerError> {
    let err = |source| ControllerError::ReadyFile {
        path: path.to_owned(),
        source,
    };
    let body =
        serde_json::json!({"api": api.to_string(), "agents": agents.to_string()}).to_string();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, body).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Starts the controller inside the current actix system: opens the store and resumes from it, binds
/// the agent listener and the API, and writes the ready file when configured. On PostgreSQL it first
/// waits as a standby until it holds the leadership lease: its agent listener answers "not the
/// leader", its API serves reads from the database and answers changes 503 naming the leader
/// ([`api::standby`]), and the service manager hears it is ready as a standby ([`systemd::standby`]).
pub async fn start(config: ControllerConfig) -> Result<RunningController, ControllerError> {
    dc_protocol::tls::install_default_provider();
    config.validate()?;
    let config = Arc::new(config);
    let ca = config.database_ca.clone();
    match store::Database::of(&config.database) {
        database @ store::Database::Sqlite(_) => {
            let store = blocking(move || database.open(ca.as_deref())).await?;
            run(config, store, None).await
        }
        store::Database::Postgres(url) => {
            let timing = lease::Timing {
                lease: Duration::from_secs(config.leadership.lease_secs.max(1)),
            };
            let holder = config
                .leadership
                .name
                .clone()
                .unwrap_or_else(|| lease::default_holder(&config.api.listen));
            let agents = bind_agents(&config).await?;
            let (leading, refusing) = tokio::sync::oneshot::channel();
            let standby = actix_rt::spawn(session::refuse_as_standby(
                agents,
                dc_protocol::tls::AgentAcceptor::new(agent_tls(&config)?),
                Duration::from_secs(config.agents.handshake_timeout_secs.max(1)),
                refusing,
            ));
            let view = Arc::new(api::standby::Standby::new(&config, url.clone()));
            let actors = Arc::new(OnceLock::new());
            let state = api::ApiState::standby(view.clone(), actors.clone(), config.clone())?;
            let tls = config.api.tls.as_ref().map(api_tls).transpose()?;
            let api = serve_api(&config, tls, state)?;
            let advertised = config.api.advertised(api.addr);
            let notifying = actix_rt::spawn(systemd::standby(view.clone()));
            let lease =
                lease::Lease::acquire(&url, ca.as_deref(), &holder, &advertised, timing).await;
            notifying.abort();
            let lease = lease?;
            let _ = leading.send(());
            let agents = standby.await.map_err(|e| {
                ControllerError::Config(format!("the standby listener failed: {e}"))
            })?;
            view.close().await;
            // Opened only once leading: its migrations run fenced by the lease (a standby never changes
            // the schema under a running leader), and no session of a standby sits unused for hours.
            let (fence, ca_path) = (lease.fence(), ca.clone());
            let opened = blocking(move || {
                store::PostgresStore::connect_leading(&url, ca_path.as_deref(), fence)
            })
            .await;
            let store = match opened {
                Ok(store) => store,
                Err(e) => {
                    lease.release().await;
                    return Err(e);
                }
            };
            let elected = Elected {
                lease,
                agents,
                api,
                actors,
            };
            run(config, Box::new(store), Some(elected)).await
        }
    }
}

/// Runs blocking database work (connecting, a server's round trips, a large file) off the actix
/// thread.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, store::StoreError> + Send + 'static,
) -> Result<T, ControllerError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ControllerError::Config(format!("the database task failed: {e}")))?
        .map_err(Into::into)
}

pub async fn start_with_store(
    config: ControllerConfig,
    store: Box<dyn Store>,
) -> Result<RunningController, ControllerError> {
    dc_protocol::tls::install_default_provider();
    config.validate()?;
    run(Arc::new(config), store, None).await
}

/// What a standby that took the lease hands on to leading: the lease, and the listeners it already
/// bound (its API's state answers with `actors` once they are set).
struct Elected {
    lease: lease::Lease,
    agents: tokio::net::TcpListener,
    api: Api,
    actors: Arc<OnceLock<Actors>>,
}

/// The REST API's server.
struct Api {
    addr: SocketAddr,
    handle: actix_web::dev::ServerHandle,
}

/// The API a standby already serves, or the TLS to bind one with.
enum ApiPlan {
    Bound(Api, Arc<OnceLock<Actors>>),
    ToBind(Option<rustls::ServerConfig>),
}

/// The CA that renews agents' certificates, when `[pki] ca_key` is set.
fn renewal_of(config: &ControllerConfig) -> Result<Option<Arc<session::Renewal>>, ControllerError> {
    let Some(key) = &config.pki.ca_key else {
        return Ok(None);
    };
    Ok(Some(Arc::new(session::Renewal {
        ca: renewal_ca(&read(&config.pki.ca)?, &read(key)?)?,
        lifetime: Duration::from_secs(u64::from(config.agents.certificate_days.max(1)) * 86_400),
    })))
}

/// Starts the controller on an opened store, as the holder of a lease when `elected`: the lease is
/// renewed while it runs, and if it is lost the controller stops leading at once (agent listener closed,
/// sessions and steps stopped) and says so on [`RunningController::leadership_lost`].
async fn run(
    config: Arc<ControllerConfig>,
    store: Box<dyn Store>,
    elected: Option<Elected>,
) -> Result<RunningController, ControllerError> {
    let prepared = agent_tls(&config).and_then(|tls| Ok((tls, renewal_of(&config)?)));
    let (server_config, renewal) = match prepared {
        Ok(prepared) => prepared,
        Err(e) => {
            // Off the runtime (closing a PostgreSQL client runs a runtime of its own), and the lease
            // released so that a standby leads at its next look.
            let _ = tokio::task::spawn_blocking(move || drop(store)).await;
            if let Some(elected) = elected {
                elected.lease.release().await;
            }
            return Err(e);
        }
    };
    let (lease, agents, bound_api) = match elected {
        Some(e) => (
            Some(e.lease),
            Some(e.agents),
            ApiPlan::Bound(e.api, e.actors),
        ),
        // TLS files are read before anything starts, so a bad one stops the start at once.
        None => (
            None,
            None,
            ApiPlan::ToBind(config.api.tls.as_ref().map(api_tls).transpose()?),
        ),
    };
    let (store, snapshot) = blocking(move || {
        let mut store = store;
        let snapshot = store.load()?;
        Ok((store, snapshot))
    })
    .await?;
    let store = store::start_store(store);

    let (status_tx, status_rx) = watch::channel(Status::default());
    let (failure_tx, failure_rx) = watch::channel(None);
    let events = events::EventHub::new();
    let persist = Persist::new(
        store,
        snapshot.steps.clone(),
        Duration::from_millis(config.progress_flush_ms.max(10)),
        failure_tx,
        events.clone(),
    )
    .start();
    let orchestrator = Orchestrator::new(
        config.clone(),
        persist.clone(),
        snapshot,
        status_tx,
        events.clone(),
    )
    .start();

    let agents = match agents {
        Some(bound) => bound,
        None => bind_agents(&config).await?,
    };
    let agents_addr = agents
        .local_addr()
        .map_err(|source| ControllerError::Bind {
            addr: config.agents.listen.clone(),
            source,
        })?;
    let listener = actix_rt::spawn(session::accept_loop(
        agents,
        dc_protocol::tls::AgentAcceptor::new(server_config),
        Orchestrator::upstream(&orchestrator),
        session::Terms {
            limits: session::Limits {
                offline_after: Duration::from_secs(config.offline_after_secs),
                handshake_timeout: Duration::from_secs(config.agents.handshake_timeout_secs.max(1)),
                max_handshakes: config.agents.max_handshakes.max(1),
            },
            renewal,
        },
    ));

    let actors = Actors {
        orchestrator,
        persist,
        events,
    };
    let api = match bound_api {
        ApiPlan::Bound(api, slot) => {
            // From the next request on, the standby's API answers as the leader.
            let _ = slot.set(actors.clone());
            api
        }
        ApiPlan::ToBind(tls) => serve_api(
            &config,
            tls,
            api::ApiState::new(actors.clone(), config.clone())?,
        )?,
    };
    let api_addr = api.addr;

    let (lost_tx, leadership_lost) = watch::channel(None);
    let keeper = lease.map(|lease| {
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let listening = listener.abort_handle();
        let orchestrator = actors.orchestrator.clone();
        let task = actix_rt::spawn(async move {
            if let Err(why) = lease.keep(stopped).await {
                tracing::error!(%why, "lost the leadership: stopping leading");
                listening.abort();
                orchestrator.do_send(Shutdown);
                lost_tx.send_replace(Some(why));
            }
        });
        Keeper { stop, task }
    });

    if let Some(path) = &config.ready_file {
        write_ready(path, api_addr, agents_addr)?;
    }
    tracing::info!(api = %api_addr, agents = %agents_addr, "controller ready");
    Ok(RunningController {
        api_addr,
        agents_addr,
        server: api.handle,
        listener,
        actors,
        status: status_rx,
        store_failure: failure_rx,
        leadership_lost,
        keeper,
    })
}

/// Binds the REST API and runs it on the current actix system.
fn serve_api(
    config: &ControllerConfig,
    tls: Option<rustls::ServerConfig>,
    state: api::ApiState,
) -> Result<Api, ControllerError> {
    let bind_err = |source| ControllerError::Bind {
        addr: config.api.listen.clone(),
        source,
    };
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .configure(api::routes)
    })
    .workers(config.api.workers.max(1))
    // Every client wait is bounded: the head here, the body by the body extractor
    // (`api::input::Body`), idle connections by keep-alive. Zero would mean "never" to actix: at
    // least a second each.
    .client_request_timeout(Duration::from_secs(config.api.request_timeout_secs.max(1)))
    .client_disconnect_timeout(Duration::from_secs(
        config.api.disconnect_timeout_secs.max(1),
    ))
    .keep_alive(Duration::from_secs(config.api.keep_alive_secs.max(1)))
    .disable_signals();
    let server = match tls {
        Some(tls) => server.bind_rustls_0_23(&config.api.listen, tls),
        None => server.bind(&config.api.listen),
    }
    .map_err(bind_err)?;
    let addr = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| ControllerError::Config("the API bound no address".to_owned()))?;
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(async move {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "API server failed");
        }
    });
    Ok(Api { addr, handle })
}

/// The system CA that signs renewals: `pki.ca_key` must be the key of `pki.ca`, or every renewed
/// certificate would fail the agents' chain check.
fn renewal_ca(ca_pem: &str, key_pem: &str) -> Result<dc_certs::CertifiedCa, ControllerError> {
    if !dc_certs::pki::holds_key(ca_pem, key_pem) {
        return Err(ControllerError::Config(
            "pki.ca_key is not the key of pki.ca".to_owned(),
        ));
    }
    dc_certs::CertifiedCa::from_pem(ca_pem, key_pem)
        .map_err(|e| ControllerError::Tls(format!("pki.ca_key: {e}")))
}
