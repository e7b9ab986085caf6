//! The dcmanager-compatible REST API (see `docs/rest-api.md`): thin handlers that check the token,
//! parse the body and ask the orchestrator.

use std::future::{Ready, ready};
use std::sync::Arc;

use actix::Addr;
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::Value;

use crate::config::{ControllerConfig, Role};
use crate::error::ApiError;
use crate::model::STRATEGY_TYPE;
use crate::orchestrator::{Api, ApiRequest, Metrics, Orchestrator, StepRows, steps_json};

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub orchestrator: Addr<Orchestrator>,
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
                actix_web::http::StatusCode::UNAUTHORIZED,
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
                actix_web::http::StatusCode::FORBIDDEN,
                "Forbidden: a reader token may not change anything",
            )),
        }))
    }
}

/// Parses a JSON body ourselves so malformed input gets our 400 JSON error.
fn json_body(body: &web::Bytes) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("Body required"));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("Request body is not valid JSON: {e}")))
}

async fn ask(state: &ApiState, req: ApiRequest) -> Result<HttpResponse, ApiError> {
    let v = state
        .orchestrator
        .send(Api(req))
        .await
        .map_err(|e| ApiError::internal(format!("the controller is stopping: {e}")))??;
    Ok(HttpResponse::Ok().json(v))
}

#[derive(Deserialize)]
struct TypeQuery {
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// `?type=` other than ours names a strategy that cannot exist.
fn check_type(q: &TypeQuery) -> Result<(), ApiError> {
    match q.kind.as_deref() {
        None | Some(STRATEGY_TYPE) => Ok(()),
        Some(other) => Err(ApiError::not_found(format!(
            "Strategy of type '{other}' not found"
        ))),
    }
}

type S = web::Data<ApiState>;

async fn list_subclouds(_: Reader, s: S) -> Result<HttpResponse, ApiError> {
    ask(&s, ApiRequest::ListSubclouds).await
}
async fn show_subcloud(_: Reader, s: S, r: web::Path<String>) -> Result<HttpResponse, ApiError> {
    ask(&s, ApiRequest::ShowSubcloud(r.into_inner())).await
}
async fn add_subcloud(_: Admin, s: S, b: web::Bytes) -> Result<HttpResponse, ApiError> {
    ask(&s, ApiRequest::AddSubcloud(json_body(&b)?)).await
}
async fn patch_subcloud(
    _: Admin,
    s: S,
    r: web::Path<String>,
    b: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    ask(
        &s,
        ApiRequest::PatchSubcloud(r.into_inner(), json_body(&b)?),
    )
    .await
}
async fn delete_subcloud(_: Admin, s: S, r: web::Path<String>) -> Result<HttpResponse, ApiError> {
    ask(&s, ApiRequest::DeleteSubcloud(r.into_inner())).await
}
async fn list_groups(_: Reader, s: S) -> Result<HttpResponse, ApiError> {
    ask(&s, ApiRequest::ListGroups).await
}
async fn show_group(_: Reader, s: S, r: web::Path<String>) -> Result<HttpResponse, ApiError> {
    ask(&s, ApiRequest::ShowGroup(r.into_inner())).await
}
async fn add_group(_: Admin, s: S, b: web::Bytes) -> Result<HttpResponse, ApiError> {
    ask(&s, ApiRequest::AddGroup(json_body(&b)?)).await
}
async fn patch_group(
    _: Admin,
    s: S,
    r: web::Path<String>,
    b: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    ask(&s, ApiRequest::PatchGroup(r.into_inner(), json_body(&b)?)).await
}
async fn delete_group(_: Admin, s: S, r: web::Path<String>) -> Result<HttpResponse, ApiError> {
    ask(&s, ApiRequest::DeleteGroup(r.into_inner())).await
}
async fn group_members(_: Reader, s: S, r: web::Path<String>) -> Result<HttpResponse, ApiError> {
    ask(&s, ApiRequest::GroupMembers(r.into_inner())).await
}
async fn create_strategy(_: Admin, s: S, b: web::Bytes) -> Result<HttpResponse, ApiError> {
    ask(&s, ApiRequest::CreateStrategy(json_body(&b)?)).await
}
async fn show_strategy(
    _: Reader,
    s: S,
    q: web::Query<TypeQuery>,
) -> Result<HttpResponse, ApiError> {
    check_type(&q)?;
    ask(&s, ApiRequest::ShowStrategy).await
}
async fn delete_strategy(
    _: Admin,
    s: S,
    q: web::Query<TypeQuery>,
) -> Result<HttpResponse, ApiError> {
    check_type(&q)?;
    ask(&s, ApiRequest::DeleteStrategy).await
}
async fn strategy_action(
    _: Admin,
    s: S,
    q: web::Query<TypeQuery>,
    b: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    check_type(&q)?;
    ask(&s, ApiRequest::Action(json_body(&b)?)).await
}
async fn steps(_: Reader, s: S) -> Result<HttpResponse, ApiError> {
    let rows = s
        .orchestrator
        .send(StepRows)
        .await
        .map_err(|e| ApiError::internal(format!("the controller is stopping: {e}")))?;
    Ok(HttpResponse::Ok().json(steps_json(&rows)))
}
async fn step(_: Reader, s: S, c: web::Path<String>) -> Result<HttpResponse, ApiError> {
    ask(&s, ApiRequest::Step(c.into_inner())).await
}

async fn metrics(s: S) -> Result<HttpResponse, ApiError> {
    let text = s
        .orchestrator
        .send(Metrics)
        .await
        .map_err(|e| ApiError::internal(format!("the controller is stopping: {e}")))?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(text))
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found("Resource not found"))
}

/// Mounts every route; used by the server and by the actix-web tests.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health))
        .route("/metrics", web::get().to(metrics))
        .service(
            web::scope("/v1.0")
                .route("/subclouds", web::get().to(list_subclouds))
                .route("/subclouds/", web::get().to(list_subclouds))
                .route("/subclouds", web::post().to(add_subcloud))
                .route("/subclouds/", web::post().to(add_subcloud))
                .route("/subclouds/{r}", web::get().to(show_subcloud))
                .route("/subclouds/{r}", web::patch().to(patch_subcloud))
                .route("/subclouds/{r}", web::delete().to(delete_subcloud))
                .route("/subcloud-groups", web::get().to(list_groups))
                .route("/subcloud-groups/", web::get().to(list_groups))
                .route("/subcloud-groups", web::post().to(add_group))
                .route("/subcloud-groups/", web::post().to(add_group))
                .route("/subcloud-groups/{r}", web::get().to(show_group))
                .route("/subcloud-groups/{r}", web::patch().to(patch_group))
                .route("/subcloud-groups/{r}", web::delete().to(delete_group))
                .route(
                    "/subcloud-groups/{r}/subclouds",
                    web::get().to(group_members),
                )
                .route("/sw-update-strategy", web::post().to(create_strategy))
                .route("/sw-update-strategy/", web::post().to(create_strategy))
                .route("/sw-update-strategy", web::get().to(show_strategy))
                .route("/sw-update-strategy", web::delete().to(delete_strategy))
                .route(
                    "/sw-update-strategy/actions",
                    web::post().to(strategy_action),
                )
                .route("/sw-update-strategy/steps", web::get().to(steps))
                .route("/sw-update-strategy/steps/{cloud}", web::get().to(step)),
        )
        .default_service(web::to(not_found));
}
