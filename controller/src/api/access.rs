//! Who may call the API, and the actors that answer it.

use std::future::{Ready, ready};
use std::sync::Arc;

use actix::Addr;
use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, web};
use serde_json::Value;

use crate::config::{ControllerConfig, Role};
use crate::error::ApiError;
use crate::model::Step;
use crate::orchestrator::persist::{self, Persist, StepOf, StepRows};
use crate::orchestrator::registry::keyed_list;
use crate::orchestrator::{self, Api, ApiRequest, Orchestrator, metrics};

/// The actors behind the API, and which of them answers what: the orchestrator owns the records, the
/// progress writer the steps as they stand now.
#[derive(Clone)]
pub struct Actors {
    pub orchestrator: Addr<Orchestrator>,
    pub persist: Addr<Persist>,
}

fn stopping(e: actix::MailboxError) -> ApiError {
    ApiError::internal(format!("the controller is stopping: {e}"))
}

impl Actors {
    /// Asks the orchestrator.
    pub async fn ask(&self, req: ApiRequest) -> Result<Value, ApiError> {
        self.orchestrator.send(Api(req)).await.map_err(stopping)?
    }

    /// `{"strategy-steps": [...]}`: the rows are copied off the writer, the JSON is built here on the
    /// caller's thread.
    pub async fn steps(&self) -> Result<Value, ApiError> {
        let rows = self.persist.send(StepRows).await.map_err(stopping)?;
        Ok(keyed_list(
            "strategy-steps",
            rows.iter().map(Step::to_json).collect(),
        ))
    }

    /// One subcloud's step.
    pub async fn step(&self, cloud: String) -> Result<Value, ApiError> {
        self.persist
            .send(StepOf(cloud))
            .await
            .map_err(stopping)?
            .map(|s| s.to_json())
            .ok_or_else(|| ApiError::not_found("Strategy step not found"))
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

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub actors: Actors,
    pub config: Arc<ControllerConfig>,
}

fn role(req: &HttpRequest) -> Result<Role, ApiError> {
    let state = req
        .app_data::<web::Data<ApiState>>()
        .ok_or_else(|| ApiError::internal("API state missing"))?;
    req.headers()
        .get("X-Auth-Token")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| state.config.role_of(t))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "Authentication required: send a valid X-Auth-Token header",
            )
        })
}

/// Any valid token: may read.
pub struct Reader;

impl FromRequest for Reader {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(role(req).map(|_| Reader))
    }
}

/// An admin token: may change things.
pub struct Admin;

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(role(req).and_then(|r| match r {
            Role::Admin => Ok(Admin),
            Role::Reader => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "Forbidden: a reader token may not change anything",
            )),
        }))
    }
}
