//! The OpenAPI document: the one served at `/v1.0/openapi.json` is `docs/openapi.json`, every path it
//! documents is routed, and what the server answers to representative requests is among the statuses
//! it documents.

mod common;

use std::sync::Arc;

use actix_web::{App, test, web};
use common::Harness;
use dc_controller::api::{ApiState, routes};
use dc_controller::config::{Role, TokenConfig};
use serde_json::{Value, json};

const ADMIN: &str = "admin-token-0123456789";
const READER: &str = "reader-token-0123456789";
const REGENERATE: &str = "cargo run -p dc-controller -- --openapi > docs/openapi.json";

fn state(h: &Harness) -> ApiState {
    let mut cfg = common::config(&h.pki, &h.db, 600);
    cfg.auth.tokens = vec![
        TokenConfig {
            token: ADMIN.into(),
            role: Role::Admin,
        },
        TokenConfig {
            token: READER.into(),
            role: Role::Reader,
        },
    ];
    ApiState::new(h.ctl().actors(), Arc::new(cfg)).expect("a static-token API state")
}

fn request(
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> test::TestRequest {
    let mut req = test::TestRequest::default()
        .method(method.to_uppercase().parse().expect("method"))
        .uri(uri);
    if let Some(t) = token {
        req = req.insert_header(("X-Auth-Token", t));
    }
    if let Some(b) = body {
        req = req.set_json(b);
    }
    req
}

#[actix_web::test]
async fn the_served_document_is_the_file_and_documents_what_the_server_answers() {
    let h = Harness::new(600).await;
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(state(&h)))
            .configure(routes),
    )
    .await;
    let served: Value = test::call_and_read_body_json(
        &app,
        test::TestRequest::get()
            .uri("/v1.0/openapi.json")
            .to_request(),
    )
    .await;
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
    let file = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e}; regenerate it with `{REGENERATE}`"));
    let file: Value = serde_json::from_str(&file).expect("docs/openapi.json is JSON");
    assert_eq!(
        served, file,
        "docs/openapi.json is stale: regenerate it with `{REGENERATE}`"
    );

    // Every documented operation is routed: without a token, the open ones answer 200 and the others
    // 401, and that status is documented for it.
    let paths = served["paths"].as_object().expect("paths");
    let operations: usize = paths
        .values()
        .map(|ops| ops.as_object().map_or(0, |o| o.len()))
        .sum();
    assert!(
        paths.len() >= 12 && operations >= 20,
        "{operations} operations on {:?}",
        paths.keys()
    );
    for (template, operations) in paths {
        let uri = template
            .replace("{subcloud}", "x")
            .replace("{group}", "x")
            .replace("{cloud}", "x");
        for (method, op) in operations.as_object().expect("operations") {
            let resp =
                test::call_service(&app, request(method, &uri, None, None).to_request()).await;
            let status = resp.status().as_u16();
            let open = op.get("security").is_none();
            assert_eq!(status, if open { 200 } else { 401 }, "{method} {template}");
            assert!(
                op["responses"].get(status.to_string()).is_some(),
                "{method} {template} answered {status}, not documented"
            );
        }
    }

    // Representative requests: each answer's status is documented for its operation.
    let created = json!({"name": "s1"});
    // (method, uri, documented path, token, body, expected status)
    type Case = (
        &'static str,
        &'static str,
        &'static str,
        Option<&'static str>,
        Option<Value>,
        u16,
    );
    let cases: [Case; 10] = [
        (
            "get",
            "/v1.0/subclouds",
            "/v1.0/subclouds",
            Some(READER),
            None,
            200,
        ),
        (
            "post",
            "/v1.0/subclouds",
            "/v1.0/subclouds",
            Some(READER),
            Some(created.clone()),
            403,
        ),
        (
            "post",
            "/v1.0/subclouds",
            "/v1.0/subclouds",
            Some(ADMIN),
            Some(created.clone()),
            200,
        ),
        (
            "post",
            "/v1.0/subclouds",
            "/v1.0/subclouds",
            Some(ADMIN),
            Some(created),
            422,
        ),
        (
            "post",
            "/v1.0/subclouds",
            "/v1.0/subclouds",
            Some(ADMIN),
            Some(json!({})),
            400,
        ),
        (
            "get",
            "/v1.0/subclouds/zz",
            "/v1.0/subclouds/{subcloud}",
            Some(READER),
            None,
            404,
        ),
        (
            "get",
            "/v1.0/sw-update-strategy",
            "/v1.0/sw-update-strategy",
            Some(READER),
            None,
            404,
        ),
        (
            "post",
            "/v1.0/sw-update-strategy",
            "/v1.0/sw-update-strategy",
            Some(ADMIN),
            Some(json!({"type": "kube-rootca-update"})),
            422,
        ),
        (
            "delete",
            "/v1.0/subcloud-groups/1",
            "/v1.0/subcloud-groups/{group}",
            Some(ADMIN),
            None,
            422,
        ),
        (
            "get",
            "/v1.0/subcloud-groups/Default/subclouds",
            "/v1.0/subcloud-groups/{group}/subclouds",
            Some(READER),
            None,
            200,
        ),
    ];
    for (method, uri, template, token, body, want) in cases {
        let resp = test::call_service(
            &app,
            request(method, uri, token, body.as_ref()).to_request(),
        )
        .await;
        let status = resp.status().as_u16();
        let answer: Value = test::read_body_json(resp).await;
        assert_eq!(status, want, "{method} {uri}: {answer}");
        assert!(
            served["paths"][template][method]["responses"]
                .get(status.to_string())
                .is_some(),
            "{method} {template} answered {status}, not documented"
        );
        if status >= 400 {
            assert_eq!(answer["code"], status, "{answer}");
            assert!(answer["title"].is_string() && answer["message"].is_string());
        }
    }
}
