//! The OpenAPI document of the REST API, built from the handlers' `utoipa::path` attributes and the
//! request types. Served at `/v1.0/openapi.json` and kept in `docs/openapi.json`; after a change to the
//! API, regenerate the file with `cargo run -p dc-controller -- --openapi > docs/openapi.json` (a test
//! fails while the two differ).

use actix_web::HttpResponse;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::ErrorBody;
use crate::requests::{
    Action, AddSubcloud, CreateStrategy, GroupBody, ManagementState, PatchSubcloud, StrategyAction,
    UpdateOptions,
};

use super::handlers;

/// The `X-Auth-Token` header every `/v1.0` call but this document needs.
struct Token;

impl Modify for Token {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Auth-Token",
                "A token from the controller's config (`[auth] kind = \"static\"`) or issued by Keystone (`kind = \"keystone\"`; its admin role is our admin, member and reader our reader): `admin` may change things, `reader` may only read.",
            ))),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "dc-rootca controller",
        description = "The dcmanager-compatible REST API of dc-rootca: subclouds, subcloud groups, the kube-rootca-update strategy and its sw-update-options. Errors are `{\"code\", \"title\", \"message\"}`."
    ),
    paths(
        handlers::list_subclouds,
        handlers::add_subcloud,
        handlers::show_subcloud,
        handlers::patch_subcloud,
        handlers::delete_subcloud,
        handlers::list_groups,
        handlers::add_group,
        handlers::show_group,
        handlers::patch_group,
        handlers::delete_group,
        handlers::group_members,
        handlers::create_strategy,
        handlers::show_strategy,
        handlers::delete_strategy,
        handlers::strategy_action,
        handlers::steps,
        handlers::step,
        super::events::events,
        handlers::list_options,
        handlers::show_options,
        handlers::update_options,
        handlers::delete_options,
        handlers::metrics,
        handlers::health,
        serve,
    ),
    components(schemas(
        ErrorBody,
        AddSubcloud,
        PatchSubcloud,
        ManagementState,
        GroupBody,
        CreateStrategy,
        StrategyAction,
        Action,
        UpdateOptions
    )),
    modifiers(&Token)
)]
struct ApiDoc;

/// The document as pretty JSON, exactly as `docs/openapi.json` holds it.
pub fn document() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}

/// This API's OpenAPI document (also `docs/openapi.json`); no token.
#[utoipa::path(get, path = "/v1.0/openapi.json", tag = "operations",
    responses((status = 200, description = "the OpenAPI document", body = Value)))]
pub async fn serve() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document())
}
