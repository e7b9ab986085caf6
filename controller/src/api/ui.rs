//! `GET /ui`: the dashboard, a static page embedded in the binary (plain HTML, CSS and JavaScript in
//! `controller/ui/`, no build step, nothing fetched from elsewhere). Serving it needs no token: the page
//! holds no data; it asks for the token and sends it as `X-Auth-Token` with every call it makes
//! (the event stream, the subcloud details, the strategy's actions). The OpenAPI document leaves it
//! out: it is not part of the dcmanager API.

use actix_web::http::header;
use actix_web::{HttpResponse, web};

use crate::error::ApiError;

/// What the page may load and talk to: itself only. No inline script or style (the page has none),
/// no frames, no forms posted elsewhere.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// One embedded file of the page.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const INDEX: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    body: include_str!("../../ui/index.html"),
};

const ASSETS: [Asset; 3] = [
    INDEX,
    Asset {
        name: "ui.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../../ui/ui.css"),
    },
    Asset {
        name: "ui.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../ui/ui.js"),
    },
];

/// The asset of that name, if the page has one.
fn asset(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

fn serve(asset: &Asset) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(asset.content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        // A new controller version serves a new page: browsers revalidate instead of keeping an old one.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(asset.body)
}

/// `GET /ui`: the page.
pub async fn page() -> HttpResponse {
    serve(&INDEX)
}

/// `GET /ui/{asset}`: its stylesheet and script; 404 for any other name.
pub async fn file(name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    asset(&name)
        .map(serve)
        .ok_or_else(|| ApiError::not_found("Resource not found"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_the_page_links_is_embedded() {
        for name in ["ui.css", "ui.js"] {
            assert!(INDEX.body.contains(&format!("/ui/{name}")), "{name}");
            assert!(asset(name).is_some(), "{name}");
        }
        assert!(asset("../Cargo.toml").is_none());
    }

    #[test]
    fn the_page_has_no_inline_script_or_style_for_the_policy_to_block() {
        for a in &ASSETS {
            assert!(!a.body.contains("<script>"), "{}", a.name);
            assert!(!a.body.contains("<style"), "{}", a.name);
            assert!(!a.body.contains(" style="), "{}", a.name);
            assert!(!a.body.contains("onclick="), "{}", a.name);
        }
    }
}
