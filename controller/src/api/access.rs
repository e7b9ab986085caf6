//! Who may call the API, and the actors that answer it.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix::Addr;
use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, web};
use futures::future::LocalBoxFuture;
use serde::Serialize;
use serde_json::Value;

use super::keystone::{Keystone, Verdict};
use super::standby::Standby;
use crate::config::{AuthKind, ControllerConfig, Role};
use crate::error::{ApiError, ControllerError};
use crate::events::EventHub;
use crate::model::Step;
use crate::orchestrator::persist::{self, Persist, StepOf, StepRows};
use crate::orchestrator::{self, Api, ApiRequest, Orchestrator, metrics};

/// The actors behind the API, and which of them answers what: the orchestrator owns the records, the
/// progress writer the steps as they stand now; the event stream both publish to.
#[derive(Clone)]
pub struct Actors {
    pub orchestrator: Addr<Orchestrator>,
    pub persist: Addr<Persist>,
    pub events: Arc<EventHub>,
}

fn stopping(e: actix::MailboxError) -> ApiError {
    ApiError::internal(format!("the controller is stopping: {e}"))
}

impl Actors {
    /// Asks the orchestrator.
    pub async fn ask(&self, req: ApiRequest) -> Result<Value, ApiError> {
        self.orchestrator.send(Api(req)).await.map_err(stopping)?
    }

    /// `{"strategy-steps": [...]}`: the rows are copied off the writer and serialised on the caller's
    /// thread.
    pub async fn steps(&self) -> Result<StepsList, ApiError> {
        let steps = self.persist.send(StepRows).await.map_err(stopping)?;
        Ok(StepsList { steps })
    }

    /// The event stream's snapshot, each part as now or newer than the moment the caller subscribed.
    pub async fn watched(&self) -> Result<Snapshot, ApiError> {
        let watched = self
            .orchestrator
            .send(orchestrator::WatchedState)
            .await
            .map_err(stopping)?;
        let steps = self.persist.send(StepRows).await.map_err(stopping)?;
        Ok(Snapshot {
            strategy: watched.strategy,
            steps,
            subclouds: watched.subclouds,
        })
    }

    /// One subcloud's step.
    pub async fn step(&self, cloud: String) -> Result<Value, ApiError> {
        step_json(self.persist.send(StepOf(cloud)).await.map_err(stopping)?)
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> Result<String, ApiError> {
        let fleet = self
            .orchestrator
            .send(orchestrator::Figures)
            .await
            .map_err(stopping)?;
        let steps = self
            .persist
            .send(persist::Figures)
            .await
            .map_err(stopping)?;
        let process = metrics::ProcessFigures::of_this_process();
        Ok(metrics::render(
            &fleet,
            &steps,
            &process,
            metrics::BuildInfo::CURRENT,
        ))
    }
}

/// One subcloud's step's JSON, or 404.
pub(super) fn step_json(step: Option<Step>) -> Result<Value, ApiError> {
    step.map(|s| s.to_json())
        .ok_or_else(|| ApiError::not_found("Strategy step not found"))
}

/// `{"strategy-steps": [step, ...]}`.
#[derive(Serialize)]
pub struct StepsList {
    #[serde(rename = "strategy-steps")]
    pub(super) steps: Vec<Step>,
}

/// The event stream's snapshot: `{"strategy": strategy or null, "strategy-steps": [...],
/// "subclouds": [status, ...]}`.
#[derive(Serialize)]
pub struct Snapshot {
    strategy: Value,
    #[serde(rename = "strategy-steps")]
    steps: Vec<Step>,
    subclouds: Vec<Value>,
}

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    serving: Serving,
    pub config: Arc<ControllerConfig>,
    /// Set with `auth.kind = "keystone"`: tokens are checked there instead of `auth.tokens`.
    keystone: Option<Arc<Keystone>>,
}

/// Who answers: the leader's actors, or a standby's view until this controller leads (then its
/// actors, set once, from the next request on: no restart).
#[derive(Clone)]
enum Serving {
    Leading(Actors),
    Standby {
        view: Arc<Standby>,
        leading: Arc<OnceLock<Actors>>,
    },
}

/// [`Serving`] at one moment.
enum Now<'a> {
    Leading(&'a Actors),
    Standby(&'a Standby),
}

impl ApiState {
    /// The state of a leading controller.
    pub fn new(actors: Actors, config: Arc<ControllerConfig>) -> Result<Self, ControllerError> {
        Self::serving(Serving::Leading(actors), config)
    }

    /// The state of a standby: reads from `view` until `leading` is set.
    pub fn standby(
        view: Arc<Standby>,
        leading: Arc<OnceLock<Actors>>,
        config: Arc<ControllerConfig>,
    ) -> Result<Self, ControllerError> {
        Self::serving(Serving::Standby { view, leading }, config)
    }

    fn now(&self) -> Now<'_> {
        match &self.serving {
            Serving::Leading(actors) => Now::Leading(actors),
            Serving::Standby { view, leading } => match leading.get() {
                Some(actors) => Now::Leading(actors),
                None => Now::Standby(view),
            },
        }
    }

    /// The leader's actors, or the standby's 503 naming the leader.
    pub async fn leading(&self) -> Result<Actors, ApiError> {
        match self.now() {
            Now::Leading(actors) => Ok(actors.clone()),
            Now::Standby(view) => Err(view.refusal().await),
        }
    }

    /// A request, answered by the orchestrator or a standby's view.
    pub async fn ask(&self, req: ApiRequest) -> Result<Value, ApiError> {
        match self.now() {
            Now::Leading(actors) => actors.ask(req).await,
            Now::Standby(view) => view.ask(req).await,
        }
    }

    /// Every step.
    pub async fn steps(&self) -> Result<StepsList, ApiError> {
        match self.now() {
            Now::Leading(actors) => actors.steps().await,
            Now::Standby(view) => view.steps().await,
        }
    }

    /// One subcloud's step.
    pub async fn step(&self, cloud: String) -> Result<Value, ApiError> {
        match self.now() {
            Now::Leading(actors) => actors.step(cloud).await,
            Now::Standby(view) => view.step(&cloud).await,
        }
    }

    /// The state for `config`, with its Keystone client when `auth.kind = "keystone"`.
    fn serving(serving: Serving, config: Arc<ControllerConfig>) -> Result<Self, ControllerError> {
        let keystone = match (config.auth.kind, &config.auth.keystone) {
            (AuthKind::Keystone, Some(k)) => Some(Arc::new(Keystone::new(k)?)),
            (AuthKind::Keystone, None) => {
                return Err(ControllerError::Config(
                    "auth.kind is \"keystone\" but [auth.keystone] is missing".to_owned(),
                ));
            }
            (AuthKind::Static, _) => None,
        };
        Ok(Self {
            serving,
            config,
            keystone,
        })
    }
}

fn unauthenticated() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "Authentication required: send a valid X-Auth-Token header",
    )
}

/// The caller's role, from its `X-Auth-Token`: 401 without a valid token, 403 for a Keystone token with
/// none of our roles, 503 when Keystone cannot say.
/// How often a request that lasts (the event stream) checks its token again: as often as the cache
/// would validate it again with Keystone, so a token that expires or is revoked stops streaming as
/// soon as it would stop reading; static tokens neither expire nor are revoked while the controller
/// runs.
pub fn recheck_every(state: &ApiState) -> Option<Duration> {
    state
        .config
        .auth
        .keystone
        .as_ref()
        .filter(|_| state.keystone.is_some())
        .map(|k| Duration::from_secs(k.cache_ttl_secs.max(1)))
}

/// The token of `req` still lets it read: `Ok` unless it is refused (401, 403); a Keystone that
/// cannot be reached does not cut a stream the token was already let into.
pub async fn still_reader(req: HttpRequest) -> Result<(), ApiError> {
    match role(req).await {
        Err(e) if matches!(e.status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => Err(e),
        _ => Ok(()),
    }
}

async fn role(req: HttpRequest) -> Result<Role, ApiError> {
    let state = req
        .app_data::<web::Data<ApiState>>()
        .ok_or_else(|| ApiError::internal("API state missing"))?;
    let token = req
        .headers()
        .get("X-Auth-Token")
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.is_empty())
        .ok_or_else(unauthenticated)?;
    let Some(keystone) = &state.keystone else {
        return state.config.role_of(token).ok_or_else(unauthenticated);
    };
    match keystone.check(token).await {
        Ok(Verdict::Granted(role)) => Ok(role),
        Ok(Verdict::NoRole) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Forbidden: the Keystone token has none of the roles admin, member or reader in an allowed project (auth.keystone.allowed_projects)",
        )),
        Ok(Verdict::Unknown) => Err(unauthenticated()),
        Err(e) => {
            tracing::warn!(error = %e, "cannot validate a token with Keystone");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "Cannot validate the token: {}; the controller's log says why",
                    e.public()
                ),
            ))
        }
    }
}

/// Any valid token: may read.
pub struct Reader;

impl FromRequest for Reader {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { role(req).await.map(|_| Reader) })
    }
}

/// An admin token: may change things.
pub struct Admin;

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            match role(req).await? {
                Role::Admin => Ok(Admin),
                Role::Reader => Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "Forbidden: a reader token may not change anything",
                )),
            }
        })
    }
}
