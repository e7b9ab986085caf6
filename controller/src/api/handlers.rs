//! The handlers: each checks the token, turns the body into its typed request
//! ([`crate::requests`]) and asks the actor that owns the answer. Their `utoipa::path` attributes are
//! the OpenAPI document's paths.

use actix_web::{FromRequest as _, HttpRequest, HttpResponse, web};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::{ApiError, ErrorBody};
use crate::model::STRATEGY_TYPE;
use crate::orchestrator::ApiRequest;
use crate::requests::{
    self, AddSubcloud, CreateStrategy, GroupBody, GroupRef, PatchSubcloud, StrategyAction,
    UpdateOptions,
};

use super::access::{Admin, ApiState, Reader};
use super::input::Body;

/// The strategy calls' `?type=`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TypeQuery {
    /// Only `kube-rootca-update`; any other type names a strategy that cannot exist (404).
    #[serde(rename = "type")]
    kind: Option<String>,
}

fn check_type(q: &TypeQuery) -> Result<(), ApiError> {
    match q.kind.as_deref() {
        None | Some(STRATEGY_TYPE) => Ok(()),
        Some(other) => Err(ApiError::not_found(format!(
            "Strategy of type '{other}' not found"
        ))),
    }
}

/// The state every handler is given.
type Shared = web::Data<ApiState>;
type Answer = Result<HttpResponse, ApiError>;

async fn ask(state: &ApiState, req: ApiRequest) -> Answer {
    Ok(HttpResponse::Ok().json(state.ask(req).await?))
}

/// Every subcloud, each with its aggregated `sync_status`.
#[utoipa::path(get, path = "/v1.0/subclouds", tag = "subclouds",
    responses((status = 200, description = "`{\"subclouds\": [subcloud, ...]}`", body = Value),
        (status = 401, body = ErrorBody)),
    security(("token" = [])))]
pub async fn list_subclouds(_: Reader, s: Shared) -> Answer {
    ask(&s, ApiRequest::ListSubclouds).await
}

/// One subcloud, by name or id.
#[utoipa::path(get, path = "/v1.0/subclouds/{subcloud}", tag = "subclouds",
    params(("subcloud" = String, Path, description = "name or id")),
    responses((status = 200, description = "subcloud JSON", body = Value),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("token" = [])))]
pub async fn show_subcloud(_: Reader, s: Shared, r: web::Path<String>) -> Answer {
    ask(&s, ApiRequest::ShowSubcloud(r.into_inner())).await
}

/// Registers a subcloud: its agent may connect from then on.
#[utoipa::path(post, path = "/v1.0/subclouds", tag = "subclouds", request_body = AddSubcloud,
    responses((status = 200, description = "subcloud JSON", body = Value),
        (status = 400, body = ErrorBody),
        (status = 408, body = ErrorBody), (status = 413, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("token" = [])))]
pub async fn add_subcloud(_: Admin, s: Shared, Body(b): Body) -> Answer {
    ask(&s, ApiRequest::AddSubcloud(requests::parse(&b)?)).await
}

/// Manages or unmanages a subcloud, or changes its description, location or group.
#[utoipa::path(patch, path = "/v1.0/subclouds/{subcloud}", tag = "subclouds",
    params(("subcloud" = String, Path, description = "name or id")), request_body = PatchSubcloud,
    responses((status = 200, description = "subcloud JSON", body = Value),
        (status = 400, body = ErrorBody),
        (status = 408, body = ErrorBody), (status = 413, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("token" = [])))]
pub async fn patch_subcloud(_: Admin, s: Shared, r: web::Path<String>, Body(b): Body) -> Answer {
    let body: PatchSubcloud = requests::parse(&b)?;
    ask(&s, ApiRequest::PatchSubcloud(r.into_inner(), body)).await
}

/// Deletes a subcloud that no strategy names; its agent is sent away.
#[utoipa::path(delete, path = "/v1.0/subclouds/{subcloud}", tag = "subclouds",
    params(("subcloud" = String, Path, description = "name or id")),
    responses((status = 200, description = "the deleted subcloud's JSON", body = Value),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("token" = [])))]
pub async fn delete_subcloud(_: Admin, s: Shared, r: web::Path<String>) -> Answer {
    ask(&s, ApiRequest::DeleteSubcloud(r.into_inner())).await
}

/// Every group.
#[utoipa::path(get, path = "/v1.0/subcloud-groups", tag = "subcloud-groups",
    responses((status = 200, description = "`{\"subcloud_groups\": [group, ...]}`", body = Value),
        (status = 401, body = ErrorBody)),
    security(("token" = [])))]
pub async fn list_groups(_: Reader, s: Shared) -> Answer {
    ask(&s, ApiRequest::ListGroups).await
}

/// One group, by id or name.
#[utoipa::path(get, path = "/v1.0/subcloud-groups/{group}", tag = "subcloud-groups",
    params(("group" = String, Path, description = "id or name")),
    responses((status = 200, description = "group JSON", body = Value),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("token" = [])))]
pub async fn show_group(_: Reader, s: Shared, r: web::Path<String>) -> Answer {
    ask(&s, ApiRequest::ShowGroup(GroupRef::parse(&r))).await
}

/// Creates a group (`name` required).
#[utoipa::path(post, path = "/v1.0/subcloud-groups", tag = "subcloud-groups", request_body = GroupBody,
    responses((status = 200, description = "group JSON", body = Value),
        (status = 400, body = ErrorBody),
        (status = 408, body = ErrorBody), (status = 413, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("token" = [])))]
pub async fn add_group(_: Admin, s: Shared, Body(b): Body) -> Answer {
    ask(&s, ApiRequest::AddGroup(requests::parse(&b)?)).await
}

/// Changes a group.
#[utoipa::path(patch, path = "/v1.0/subcloud-groups/{group}", tag = "subcloud-groups",
    params(("group" = String, Path, description = "id or name")), request_body = GroupBody,
    responses((status = 200, description = "group JSON", body = Value),
        (status = 400, body = ErrorBody),
        (status = 408, body = ErrorBody), (status = 413, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("token" = [])))]
pub async fn patch_group(_: Admin, s: Shared, r: web::Path<String>, Body(b): Body) -> Answer {
    let body: GroupBody = requests::parse(&b)?;
    ask(&s, ApiRequest::PatchGroup(GroupRef::parse(&r), body)).await
}

/// Deletes a group without members (never the Default group).
#[utoipa::path(delete, path = "/v1.0/subcloud-groups/{group}", tag = "subcloud-groups",
    params(("group" = String, Path, description = "id or name")),
    responses((status = 200, description = "the deleted group's JSON", body = Value),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("token" = [])))]
pub async fn delete_group(_: Admin, s: Shared, r: web::Path<String>) -> Answer {
    ask(&s, ApiRequest::DeleteGroup(GroupRef::parse(&r))).await
}

/// The subclouds of a group.
#[utoipa::path(get, path = "/v1.0/subcloud-groups/{group}/subclouds", tag = "subcloud-groups",
    params(("group" = String, Path, description = "id or name")),
    responses((status = 200, description = "`{\"subclouds\": [subcloud, ...]}`", body = Value),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("token" = [])))]
pub async fn group_members(_: Reader, s: Shared, r: web::Path<String>) -> Answer {
    ask(&s, ApiRequest::GroupMembers(GroupRef::parse(&r))).await
}

/// Creates the kube-rootca-update strategy: one step per targeted subcloud.
#[utoipa::path(post, path = "/v1.0/sw-update-strategy", tag = "strategy", request_body = CreateStrategy,
    responses((status = 200, description = "strategy JSON", body = Value),
        (status = 400, body = ErrorBody),
        (status = 408, body = ErrorBody), (status = 413, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("token" = [])))]
pub async fn create_strategy(_: Admin, s: Shared, Body(b): Body) -> Answer {
    ask(&s, ApiRequest::CreateStrategy(requests::parse(&b)?)).await
}

/// The strategy.
#[utoipa::path(get, path = "/v1.0/sw-update-strategy", tag = "strategy", params(TypeQuery),
    responses((status = 200, description = "strategy JSON", body = Value),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("token" = [])))]
pub async fn show_strategy(_: Reader, s: Shared, q: web::Query<TypeQuery>) -> Answer {
    check_type(&q)?;
    ask(&s, ApiRequest::ShowStrategy).await
}

/// Deletes the strategy while nothing runs.
#[utoipa::path(delete, path = "/v1.0/sw-update-strategy", tag = "strategy", params(TypeQuery),
    responses((status = 200, description = "strategy JSON, state `deleting`", body = Value),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("token" = [])))]
pub async fn delete_strategy(_: Admin, s: Shared, q: web::Query<TypeQuery>) -> Answer {
    check_type(&q)?;
    ask(&s, ApiRequest::DeleteStrategy).await
}

/// Applies or aborts the strategy.
#[utoipa::path(post, path = "/v1.0/sw-update-strategy/actions", tag = "strategy", params(TypeQuery),
    request_body = StrategyAction,
    responses((status = 200, description = "strategy JSON", body = Value),
        (status = 400, body = ErrorBody),
        (status = 408, body = ErrorBody), (status = 413, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("token" = [])))]
pub async fn strategy_action(
    _: Admin,
    s: Shared,
    q: web::Query<TypeQuery>,
    Body(b): Body,
) -> Answer {
    check_type(&q)?;
    let body: StrategyAction = requests::parse(&b)?;
    ask(&s, ApiRequest::Action(body)).await
}

/// Every step, ordered by id.
#[utoipa::path(get, path = "/v1.0/sw-update-strategy/steps", tag = "strategy",
    responses((status = 200, description = "`{\"strategy-steps\": [step, ...]}`", body = Value),
        (status = 401, body = ErrorBody)),
    security(("token" = [])))]
pub async fn steps(_: Reader, s: Shared) -> Answer {
    Ok(HttpResponse::Ok().json(s.steps().await?))
}

/// One subcloud's step.
#[utoipa::path(get, path = "/v1.0/sw-update-strategy/steps/{cloud}", tag = "strategy",
    params(("cloud" = String, Path, description = "the subcloud's name")),
    responses((status = 200, description = "step JSON", body = Value),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("token" = [])))]
pub async fn step(_: Reader, s: Shared, c: web::Path<String>) -> Answer {
    Ok(HttpResponse::Ok().json(s.step(c.into_inner()).await?))
}

/// The sw-update-options (`strategy-config`): the default entry first, then each subcloud's own.
#[utoipa::path(get, path = "/v1.0/sw-update-options", tag = "sw-update-options",
    responses((status = 200, description = "`{\"sw-update-options\": [entry, ...]}`", body = Value),
        (status = 401, body = ErrorBody)),
    security(("token" = [])))]
pub async fn list_options(_: Reader, s: Shared) -> Answer {
    ask(&s, ApiRequest::ListOptions).await
}

/// The default entry (`SystemController` or `RegionOne`), or a subcloud's own (by name or id): 404
/// for a subcloud without one ("defaults will be used").
#[utoipa::path(get, path = "/v1.0/sw-update-options/{subcloud}", tag = "sw-update-options",
    params(("subcloud" = String, Path, description = "`SystemController` for the default entry, or a subcloud's name or id")),
    responses((status = 200, description = "entry JSON", body = Value),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("token" = [])))]
pub async fn show_options(_: Reader, s: Shared, r: web::Path<String>) -> Answer {
    ask(&s, ApiRequest::ShowOptions(r.into_inner())).await
}

/// Creates or updates the default entry or a subcloud's own; read when a subcloud's step starts.
#[utoipa::path(post, path = "/v1.0/sw-update-options/{subcloud}", tag = "sw-update-options",
    params(("subcloud" = String, Path, description = "`SystemController` for the default entry, or a subcloud's name or id")),
    request_body = UpdateOptions,
    responses((status = 200, description = "entry JSON", body = Value),
        (status = 400, body = ErrorBody),
        (status = 408, body = ErrorBody), (status = 413, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("token" = [])))]
pub async fn update_options(_: Admin, s: Shared, r: web::Path<String>, Body(b): Body) -> Answer {
    let body: UpdateOptions = requests::parse(&b)?;
    ask(&s, ApiRequest::UpdateOptions(r.into_inner(), body)).await
}

/// Deletes a subcloud's own entry (it then runs with the default entry); for `SystemController`,
/// puts upstream's defaults back.
#[utoipa::path(delete, path = "/v1.0/sw-update-options/{subcloud}", tag = "sw-update-options",
    params(("subcloud" = String, Path, description = "`SystemController` for the default entry, or a subcloud's name or id")),
    responses((status = 200, description = "`null`", body = Value),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("token" = [])))]
pub async fn delete_options(_: Admin, s: Shared, r: web::Path<String>) -> Answer {
    ask(&s, ApiRequest::DeleteOptions(r.into_inner())).await
}

/// Prometheus metrics; a token (any role) only with `[api] metrics_require_token = true`.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"),
        (status = 401, description = "no valid token, with `metrics_require_token`", body = ErrorBody)))]
pub async fn metrics(req: HttpRequest, s: Shared) -> Answer {
    if s.config.api.metrics_require_token {
        Reader::extract(&req).await?;
    }
    Ok(HttpResponse::Ok()
        .content_type(crate::orchestrator::metrics::CONTENT_TYPE)
        .body(s.leading().await?.metrics().await?))
}

/// Liveness; no token.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "`{\"status\": \"ok\"}`", body = Value)))]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

pub async fn not_found() -> Answer {
    Err(ApiError::not_found("Resource not found"))
}
