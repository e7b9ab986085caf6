//! The REST API through actix-web's test service, on a real orchestrator and store.

mod common;

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{App, test, web};
use common::Harness;
use dc_controller::api::{ApiState, routes};
use dc_controller::config::{Role, TokenConfig};
use serde_json::{Value, json};

const ADMIN: &str = "admin-token-0123456789";
const READER: &str = "reader-token-0123456789";

fn request(
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> test::TestRequest {
    let mut req = match method {
        "GET" => test::TestRequest::get(),
        "POST" => test::TestRequest::post(),
        "PATCH" => test::TestRequest::patch(),
        "DELETE" => test::TestRequest::delete(),
        other => panic!("{other}"),
    }
    .uri(path);
    if let Some(t) = token {
        req = req.insert_header(("X-Auth-Token", t));
    }
    if let Some(b) = body {
        req = req.set_json(b);
    }
    req
}

async fn answer(resp: actix_web::dev::ServiceResponse) -> (StatusCode, Value) {
    let status = resp.status();
    let bytes = test::read_body(resp).await;
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, v)
}

/// Calls the app and answers the status and the body (JSON, or the text as a JSON string).
macro_rules! call {
    ($app:expr, $m:expr, $p:expr, $t:expr, $b:expr) => {
        answer(test::call_service($app, request($m, $p, $t, $b).to_request()).await).await
    };
}

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

fn assert_error(r: &(StatusCode, Value), status: u16, message: &str) {
    assert_eq!(r.0.as_u16(), status, "{}", r.1);
    assert_eq!(r.1["code"], status, "{}", r.1);
    assert_eq!(r.1["message"], message, "{}", r.1);
    assert!(r.1["title"].is_string());
}

#[actix_web::test]
async fn auth_rules_health_and_metrics() {
    let h = Harness::new(600).await;
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(state(&h)))
            .configure(routes),
    )
    .await;
    assert_eq!(call!(&app, "GET", "/health", None, None).0, StatusCode::OK);
    let m = call!(&app, "GET", "/metrics", None, None);
    assert_eq!(m.0, StatusCode::OK);
    let text = m.1.as_str().unwrap_or_default().to_owned();
    assert!(text.contains("dc_connected_agents 0"), "{text}");
    assert!(text.contains("dc_online_subclouds 0"), "{text}");
    assert!(
        text.contains("dc_strategies{state=\"applying\"} 0"),
        "{text}"
    );
    let r = call!(&app, "GET", "/v1.0/subclouds", None, None);
    assert_error(
        &r,
        401,
        "Authentication required: send a valid X-Auth-Token header",
    );
    let r = call!(&app, "GET", "/v1.0/subclouds", Some("wrong"), None);
    assert_eq!(r.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        call!(&app, "GET", "/v1.0/subclouds", Some(READER), None).0,
        StatusCode::OK
    );
    let r = call!(
        &app,
        "POST",
        "/v1.0/subclouds",
        Some(READER),
        Some(json!({"name": "x"}))
    );
    assert_error(&r, 403, "Forbidden: a reader token may not change anything");
    let r = call!(
        &app,
        "POST",
        "/v1.0/sw-update-strategy",
        Some(READER),
        Some(json!({"type": "kube-rootca-update"}))
    );
    assert_eq!(r.0, StatusCode::FORBIDDEN);
    let r = call!(
        &app,
        "POST",
        "/v1.0/sw-update-strategy/actions",
        None,
        Some(json!({"action": "apply"}))
    );
    assert_eq!(r.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        call!(&app, "GET", "/v1.0/nothing", Some(READER), None).0,
        StatusCode::NOT_FOUND
    );
}

#[actix_web::test]
async fn subclouds_and_groups() {
    let h = Harness::new(600).await;
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(state(&h)))
            .configure(routes),
    )
    .await;
    let a = Some(ADMIN);
    // Groups: the Default group exists.
    let r = call!(&app, "GET", "/v1.0/subcloud-groups", a, None);
    assert_eq!(r.1["subcloud_groups"][0]["name"], "Default");
    assert_eq!(r.1["subcloud_groups"][0]["id"], 1);
    assert_eq!(r.1["subcloud_groups"][0]["max_parallel_subclouds"], 2);
    assert_eq!(r.1["subcloud_groups"][0]["update_apply_type"], "parallel");
    let r = call!(
        &app,
        "POST",
        "/v1.0/subcloud-groups",
        a,
        Some(json!({"name": "edge", "update_apply_type": "serial", "max_parallel_subclouds": 7}))
    );
    assert_eq!(r.0, StatusCode::OK, "{}", r.1);
    assert_eq!(r.1["id"], 2);
    let r = call!(
        &app,
        "POST",
        "/v1.0/subcloud-groups",
        a,
        Some(json!({"name": "edge"}))
    );
    assert_eq!(r.0.as_u16(), 422);
    let r = call!(
        &app,
        "POST",
        "/v1.0/subcloud-groups",
        a,
        Some(json!({"name": "big", "max_parallel_subclouds": 0}))
    );
    assert_error(&r, 400, "Invalid group max_parallel_subclouds");
    let r = call!(
        &app,
        "POST",
        "/v1.0/subcloud-groups",
        a,
        Some(json!({"name": "bad", "update_apply_type": "both"}))
    );
    assert_error(&r, 400, "Invalid group update_apply_type");
    let r = call!(
        &app,
        "PATCH",
        "/v1.0/subcloud-groups/Default",
        a,
        Some(json!({"name": "Other"}))
    );
    assert_error(&r, 422, "Default group name cannot be changed");
    let r = call!(&app, "DELETE", "/v1.0/subcloud-groups/1", a, None);
    assert_error(&r, 422, "Default Subcloud Group may not be deleted");
    let r = call!(
        &app,
        "PATCH",
        "/v1.0/subcloud-groups/edge",
        a,
        Some(json!({"max_parallel_subclouds": 9}))
    );
    assert_eq!(r.1["max_parallel_subclouds"], 9);
    assert_error(
        &call!(&app, "GET", "/v1.0/subcloud-groups/zzz", a, None),
        404,
        "Subcloud Group not found",
    );

    // Subclouds.
    let r = call!(
        &app,
        "POST",
        "/v1.0/subclouds",
        a,
        Some(json!({"name": "s1", "description": "d", "location": "l", "group": "edge"}))
    );
    assert_eq!(r.0, StatusCode::OK, "{}", r.1);
    for key in [
        "id",
        "name",
        "management-state",
        "availability-status",
        "deploy-status",
        "endpoint_sync_status",
        "group_id",
        "created-at",
        "kube-rootca-subject",
        "last-heartbeat-at",
    ] {
        assert!(r.1.get(key).is_some(), "missing {key}: {}", r.1);
    }
    assert_eq!(r.1["group_id"], 2);
    assert_eq!(r.1["availability-status"], "offline");
    assert_eq!(
        r.1["endpoint_sync_status"],
        json!([{"endpoint_type": "kube-rootca", "sync_status": "unknown"}])
    );
    assert_error(
        &call!(
            &app,
            "POST",
            "/v1.0/subclouds",
            a,
            Some(json!({"name": "s1"}))
        ),
        422,
        "Subcloud with name s1 already exists",
    );
    assert_error(
        &call!(
            &app,
            "POST",
            "/v1.0/subclouds",
            a,
            Some(json!({"name": "s2", "group_id": 99}))
        ),
        400,
        "Invalid group_id",
    );
    assert_eq!(
        call!(
            &app,
            "POST",
            "/v1.0/subclouds",
            a,
            Some(json!({"name": "bad name!"}))
        )
        .0,
        StatusCode::BAD_REQUEST
    );
    assert_error(
        &call!(&app, "POST", "/v1.0/subclouds", a, None),
        400,
        "Body required",
    );
    let r = call!(&app, "GET", "/v1.0/subclouds", a, None);
    assert_eq!(r.1["subclouds"][0]["sync_status"], "unknown");
    let r = call!(&app, "GET", "/v1.0/subclouds/1", a, None);
    assert_eq!(r.1["name"], "s1");
    assert!(r.1.get("sync_status").is_none());
    assert_error(
        &call!(&app, "GET", "/v1.0/subclouds/nope", a, None),
        404,
        "Subcloud not found",
    );
    let r = call!(
        &app,
        "PATCH",
        "/v1.0/subclouds/s1",
        a,
        Some(json!({"management-state": "unmanaged"}))
    );
    assert_eq!(r.1["management-state"], "unmanaged");
    assert_error(
        &call!(
            &app,
            "PATCH",
            "/v1.0/subclouds/s1",
            a,
            Some(json!({"management-state": "maybe"}))
        ),
        400,
        "Invalid management-state",
    );
    let r = call!(&app, "GET", "/v1.0/subcloud-groups/edge/subclouds", a, None);
    assert_eq!(r.1["subclouds"][0]["name"], "s1");
    assert_eq!(
        call!(&app, "DELETE", "/v1.0/subcloud-groups/edge", a, None)
            .0
            .as_u16(),
        422
    );
    let r = call!(&app, "DELETE", "/v1.0/subclouds/s1", a, None);
    assert_eq!(r.1["name"], "s1");
    assert_eq!(
        call!(&app, "DELETE", "/v1.0/subcloud-groups/edge", a, None).0,
        StatusCode::OK
    );
    assert_error(
        &call!(&app, "DELETE", "/v1.0/subclouds/s1", a, None),
        404,
        "Subcloud not found",
    );
}

#[actix_web::test]
async fn strategy_endpoints_and_rejections() {
    let h = Harness::new(600).await;
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(state(&h)))
            .configure(routes),
    )
    .await;
    let a = Some(ADMIN);
    let prefix = "Unable to create strategy of type 'kube-rootca-update': Bad strategy request: ";
    let t = json!({"type": "kube-rootca-update"});
    assert_error(
        &call!(
            &app,
            "GET",
            "/v1.0/sw-update-strategy?type=kube-rootca-update",
            a,
            None
        ),
        404,
        "Strategy of type 'kube-rootca-update' not found",
    );
    assert_error(
        &call!(
            &app,
            "POST",
            "/v1.0/sw-update-strategy/",
            a,
            Some(json!({"type": "kube-rootca-update", "subcloud-apply-type": "x"}))
        ),
        400,
        "subcloud-apply-type invalid",
    );
    assert_error(
        &call!(
            &app,
            "POST",
            "/v1.0/sw-update-strategy",
            a,
            Some(json!({"type": "kube-rootca-update", "subcloud_group": "nope"}))
        ),
        400,
        "Invalid group_id",
    );
    assert_error(
        &call!(&app, "POST", "/v1.0/sw-update-strategy", a, Some(t.clone())),
        422,
        &format!("{prefix}Strategy has no steps to apply"),
    );
    assert_error(
        &call!(
            &app,
            "POST",
            "/v1.0/sw-update-strategy",
            a,
            Some(json!({"type": "kube-rootca-update", "cloud_name": "zz"}))
        ),
        422,
        &format!("{prefix}Subcloud zz does not exist"),
    );
    assert_error(
        &call!(
            &app,
            "POST",
            "/v1.0/sw-update-strategy",
            a,
            Some(json!({"type": "kube-rootca-update", "subject": "CN=a", "cert-file": "x"}))
        ),
        422,
        &format!(
            "{prefix}Invalid extra args. <cert-file> cannot be specified along with <subject> or <expiry-date>."
        ),
    );
    // A rollback goes back to each subcloud's old CA: it takes no new-CA parameters, nor force.
    for extra in [
        json!({"subject": "CN=a"}),
        json!({"expiry-date": "2099-01-01"}),
        json!({"force": true}),
    ] {
        let mut body = json!({"type": "kube-rootca-update", "rollback": "true"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        assert_error(
            &call!(&app, "POST", "/v1.0/sw-update-strategy", a, Some(body)),
            422,
            &format!(
                "{prefix}Invalid extra args. <rollback> cannot be specified along with <subject>, <expiry-date>, <cert-file> or <force>: a rollback goes back to each subcloud's old root CA."
            ),
        );
    }
    // With no unfinished update anywhere, a rollback has nothing to target.
    assert_error(
        &call!(
            &app,
            "POST",
            "/v1.0/sw-update-strategy",
            a,
            Some(json!({"type": "kube-rootca-update", "rollback": true}))
        ),
        422,
        &format!("{prefix}Strategy has no steps to apply"),
    );
    assert_error(
        &call!(
            &app,
            "POST",
            "/v1.0/sw-update-strategy",
            a,
            Some(json!({"type": "kube-rootca-update", "subject": "O=a"}))
        ),
        422,
        &format!(
            "{prefix}The CN=<commonName> parameter is required to be specified in subject argument"
        ),
    );
    assert_error(
        &call!(
            &app,
            "POST",
            "/v1.0/sw-update-strategy",
            a,
            Some(json!({"type": "kube-rootca-update", "expiry-date": "2030/01/01"}))
        ),
        422,
        &format!("{prefix}expiry_date 2030/01/01 doesn't match format YYYY-MM-DD"),
    );
    let r = call!(
        &app,
        "POST",
        "/v1.0/sw-update-strategy",
        a,
        Some(json!({"type": "kube-rootca-update", "cert-file": "not pem"}))
    );
    assert_eq!(r.0.as_u16(), 422);
    assert!(
        r.1["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with(&format!("{prefix}cert-file")),
        "{}",
        r.1
    );
    let r = call!(
        &app,
        "POST",
        "/v1.0/sw-update-strategy/actions?type=kube-rootca-update",
        a,
        Some(json!({"action": "apply"}))
    );
    assert_error(
        &r,
        422,
        "Unable to apply strategy of type 'kube-rootca-update': Strategy with type kube-rootca-update doesn't exist.",
    );

    // Two online subclouds: one out-of-sync (the fake agent's root CA expires in 10 days).
    h.register("s1").await;
    let _agent = h.agent("s1");
    h.wait_status(|s| s.reporting == 1).await;
    let r = call!(
        &app,
        "POST",
        "/v1.0/sw-update-strategy/",
        a,
        Some(
            json!({"type": "kube-rootca-update", "max-parallel-subclouds": 3, "stop-on-failure": "true", "expiry-date": "2099-01-01"})
        )
    );
    assert_eq!(r.0, StatusCode::OK, "{}", r.1);
    assert_eq!(r.1["state"], "initial");
    assert_eq!(r.1["stop-on-failure"], true);
    assert_eq!(r.1["max-parallel-subclouds"], 3);
    assert_eq!(
        r.1["extra-args"],
        json!({"expiry-date": "2099-01-01", "subject": null, "cert-file": null,
            "proceed-with-stranded-pods": false, "rollback": false})
    );
    assert_error(
        &call!(&app, "POST", "/v1.0/sw-update-strategy", a, Some(t.clone())),
        422,
        &format!("{prefix}Strategy of type: 'kube-rootca-update' already exists"),
    );
    let r = call!(
        &app,
        "GET",
        "/v1.0/sw-update-strategy/steps",
        Some(READER),
        None
    );
    assert_eq!(r.1["strategy-steps"][0]["cloud"], "s1");
    assert_eq!(r.1["strategy-steps"][0]["stage"], "Create");
    assert_eq!(r.1["strategy-steps"][0]["state"], "initial");
    assert_eq!(
        call!(
            &app,
            "GET",
            "/v1.0/sw-update-strategy/steps/s1",
            Some(READER),
            None
        )
        .1["details"],
        ""
    );
    assert_error(
        &call!(&app, "GET", "/v1.0/sw-update-strategy/steps/zz", a, None),
        404,
        "Strategy step not found",
    );
    assert_error(
        &call!(&app, "POST", "/v1.0/sw-update-strategy/actions", a, None),
        400,
        "Body required",
    );
    assert_error(
        &call!(
            &app,
            "POST",
            "/v1.0/sw-update-strategy/actions",
            a,
            Some(json!({"x": 1}))
        ),
        400,
        "action required",
    );
    assert_error(
        &call!(
            &app,
            "POST",
            "/v1.0/sw-update-strategy/actions",
            a,
            Some(json!({"action": "abort"}))
        ),
        422,
        "Unable to abort strategy of type 'kube-rootca-update': Bad strategy request: Strategy in state initial cannot be aborted",
    );
    let r = call!(
        &app,
        "POST",
        "/v1.0/sw-update-strategy/actions?type=kube-rootca-update",
        a,
        Some(json!({"action": "apply"}))
    );
    assert_eq!(r.1["state"], "applying");
    assert_error(
        &call!(
            &app,
            "POST",
            "/v1.0/sw-update-strategy/actions",
            a,
            Some(json!({"action": "apply"}))
        ),
        422,
        "Unable to apply strategy of type 'kube-rootca-update': Bad strategy request: Strategy in state applying cannot be applied",
    );
    assert_error(
        &call!(
            &app,
            "DELETE",
            "/v1.0/sw-update-strategy?type=kube-rootca-update",
            a,
            None
        ),
        422,
        "Unable to delete strategy of type 'kube-rootca-update': Bad strategy request: Strategy in state applying cannot be deleted",
    );
    assert_error(
        &call!(&app, "DELETE", "/v1.0/subclouds/s1", a, None),
        422,
        "Subcloud s1 is part of the kube-rootca-update strategy; delete the strategy first",
    );
    let r = call!(
        &app,
        "POST",
        "/v1.0/sw-update-strategy/actions",
        a,
        Some(json!({"action": "abort"}))
    );
    assert_eq!(r.1["state"], "abort requested");
    let r = call!(
        &app,
        "GET",
        "/v1.0/sw-update-strategy?type=kube-rootca-update",
        Some(READER),
        None
    );
    assert!(
        ["aborting", "aborted"].contains(&r.1["state"].as_str().unwrap_or_default()),
        "{}",
        r.1
    );
    assert_eq!(
        call!(&app, "GET", "/v1.0/sw-update-strategy?type=other", a, None).0,
        StatusCode::NOT_FOUND
    );
}

#[actix_web::test]
async fn in_sync_subcloud_needs_force() {
    let h = Harness::new(600).await;
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(state(&h)))
            .configure(routes),
    )
    .await;
    let a = Some(ADMIN);
    h.register("s1").await;
    let agent = h.agent("s1");
    h.wait_status(|s| s.reporting == 1).await;
    // Unmanaged subclouds are not targets.
    call!(
        &app,
        "PATCH",
        "/v1.0/subclouds/s1",
        a,
        Some(json!({"management-state": "unmanaged"}))
    );
    let r = call!(
        &app,
        "POST",
        "/v1.0/sw-update-strategy",
        a,
        Some(json!({"type": "kube-rootca-update"}))
    );
    assert_eq!(
        r.1["message"],
        "Unable to create strategy of type 'kube-rootca-update': Bad strategy request: Strategy has no steps to apply"
    );
    call!(
        &app,
        "PATCH",
        "/v1.0/subclouds/s1",
        a,
        Some(json!({"management-state": "managed"}))
    );
    let s = call!(&app, "GET", "/v1.0/subclouds/s1", a, None);
    assert_eq!(s.1["availability-status"], "online");
    assert_eq!(s.1["endpoint_sync_status"][0]["sync_status"], "out-of-sync");
    assert_eq!(s.1["kube-rootca-subject"], "CN=kubernetes");
    drop(agent);
    // force as a JSON boolean is honoured (dcmanager silently ignored it).
    let r = call!(
        &app,
        "POST",
        "/v1.0/sw-update-strategy",
        a,
        Some(json!({"type": "kube-rootca-update", "cloud_name": "s1", "force": true}))
    );
    assert_eq!(r.0, StatusCode::OK, "{}", r.1);
    let r = call!(&app, "DELETE", "/v1.0/sw-update-strategy", a, None);
    assert_eq!(r.1["state"], "deleting");
    assert_eq!(
        call!(&app, "GET", "/v1.0/sw-update-strategy", a, None).0,
        StatusCode::NOT_FOUND
    );
}

/// With `api.tls` set, the API speaks HTTPS with the configured certificate.
#[actix_web::test]
async fn api_over_tls() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pki = dc_test_support::pki::TestPki::new().expect("pki");
    let mut cfg = common::config(&pki, &pki.root().join("db.sqlite"), 600);
    cfg.api.tls = Some(dc_controller::config::TlsFiles {
        cert: pki.file("controller.crt"),
        key: pki.file("controller.key"),
    });
    let ctl = dc_controller::start(cfg).await.expect("start");
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read_to_string(pki.file("ca.crt")).expect("ca");
    for c in rustls_pki_types::pem::PemObject::pem_slice_iter(ca.as_bytes()) {
        roots.add(c.expect("pem")).expect("root");
    }
    let client = rustls::ClientConfig::builder_with_provider(dc_protocol::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(ctl.api_addr)
        .await
        .expect("connect");
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(name, tcp)
        .await
        .expect("handshake");
    tls.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut out = String::new();
    let _ = tls.read_to_string(&mut out).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("\"status\":\"ok\""), "{out}");
    ctl.stop().await;
}

/// Calls the app with a request built by the test and answers the status, the Content-Type, the
/// `Allow` header and the body as JSON (a refusal in plain text fails the parse, naming the text).
macro_rules! raw {
    ($app:expr, $req:expr $(,)?) => {
        parts(test::call_service($app, $req.to_request()).await).await
    };
}

async fn parts(resp: actix_web::dev::ServiceResponse) -> (u16, String, Option<String>, Value) {
    let status = resp.status().as_u16();
    let header = |name| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header(actix_web::http::header::CONTENT_TYPE).unwrap_or_default();
    let allow = header(actix_web::http::header::ALLOW);
    let bytes = test::read_body(resp).await;
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{status} {content_type:?}: not JSON ({e}): {:?}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, content_type, allow, body)
}

/// Every refusal the API can make before a handler runs is the documented `{"code","title","message"}`
/// with `application/json`: actix-web's own answers (413, a query string or path segment that does not
/// deserialize, a JSON extractor's content-type error, a wrong method) were plain text or empty.
#[actix_web::test]
async fn every_refusal_is_the_documented_json() {
    let h = Harness::new(600).await;
    // A route with actix-web's JSON extractor beside the API's: the settings `routes` installs cover
    // it too, so a handler that takes `web::Json` one day answers the same shape.
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(state(&h)))
            .configure(routes)
            .route(
                "/json-probe",
                web::post()
                    .to(|_: web::Json<Value>| async { actix_web::HttpResponse::Ok().finish() }),
            ),
    )
    .await;
    let admin = |req: test::TestRequest| req.insert_header(("X-Auth-Token", ADMIN));
    let documented = |r: &(u16, String, Option<String>, Value), status: u16, message: &str| {
        assert_eq!(r.0, status, "{}", r.3);
        assert!(r.1.starts_with("application/json"), "{r:?}");
        assert_eq!(r.3["code"], status, "{}", r.3);
        assert!(r.3["title"].is_string(), "{}", r.3);
        let text = r.3["message"].as_str().unwrap_or_default();
        assert!(text.contains(message), "{message:?} not in {text:?}");
    };

    // A body over the limit: 413, announced by its Content-Length or not.
    let big = vec![b' '; dc_controller::api::input::MAX_BODY + 1];
    let r = raw!(
        &app,
        admin(test::TestRequest::post().uri("/v1.0/subclouds")).set_payload(big.clone()),
    );
    documented(&r, 413, "Request body is larger than 262144 bytes");
    let r = raw!(
        &app,
        test::TestRequest::post()
            .uri("/json-probe")
            .insert_header(("Content-Type", "application/json"))
            .set_payload(big),
    );
    documented(&r, 413, "Request body is larger than 262144 bytes");

    // Malformed JSON, and JSON under another content type: the API reads a body as JSON whatever its
    // Content-Type (dcmanager does too); the JSON extractor refuses the type in the same shape.
    let r = raw!(
        &app,
        admin(test::TestRequest::post().uri("/v1.0/subclouds")).set_payload("{\"name\": "),
    );
    documented(&r, 400, "Request body is not valid JSON");
    let r = raw!(
        &app,
        admin(test::TestRequest::post().uri("/v1.0/subclouds"))
            .insert_header(("Content-Type", "text/plain"))
            .set_payload("{\"name\": \"typed\"}"),
    );
    assert_eq!((r.0, &r.3["name"]), (200, &json!("typed")), "{r:?}");
    let r = raw!(
        &app,
        test::TestRequest::post()
            .uri("/json-probe")
            .insert_header(("Content-Type", "text/plain"))
            .set_payload("{}"),
    );
    documented(&r, 415, "Content-Type must be application/json");
    let r = raw!(
        &app,
        test::TestRequest::post()
            .uri("/json-probe")
            .insert_header(("Content-Type", "application/json"))
            .set_payload("{"),
    );
    documented(&r, 400, "Request body is not valid JSON");

    // A query string that does not deserialize: a field given twice.
    for uri in [
        "/v1.0/sw-update-strategy?type=kube-rootca-update&type=kube-rootca-update",
        "/v1.0/sw-update-strategy/actions?type=a&type=b",
    ] {
        let method = if uri.contains("actions") {
            test::TestRequest::post()
        } else {
            test::TestRequest::get()
        };
        let r = raw!(&app, admin(method.uri(uri)));
        documented(&r, 400, "Invalid query string: duplicate field `type`");
    }
    // A value that is not UTF-8 is read lossily and names no strategy.
    let r = raw!(
        &app,
        admin(test::TestRequest::get().uri("/v1.0/sw-update-strategy?type=%FF")),
    );
    documented(&r, 404, "not found");

    // A path segment that is not UTF-8 names nothing that could exist.
    for uri in [
        "/v1.0/subclouds/%FF",
        "/v1.0/subcloud-groups/%C3%28/subclouds",
        "/v1.0/sw-update-strategy/steps/%80",
    ] {
        let r = raw!(&app, admin(test::TestRequest::get().uri(uri)));
        documented(&r, 404, "not found");
    }

    // An unknown route, and a known one with a method it lacks (405 with Allow).
    let r = raw!(&app, admin(test::TestRequest::get().uri("/v1.0/nothing")));
    documented(&r, 404, "Resource not found");
    let r = raw!(&app, admin(test::TestRequest::get().uri("/nothing/at/all")));
    documented(&r, 404, "Resource not found");
    for (method, uri, allow) in [
        ("DELETE", "/v1.0/subclouds", "GET, POST"),
        ("PUT", "/v1.0/subclouds/s1", "GET, PATCH, DELETE"),
        ("PATCH", "/v1.0/sw-update-strategy", "GET, POST, DELETE"),
        ("GET", "/v1.0/sw-update-strategy/actions", "POST"),
        ("POST", "/health", "GET"),
        ("HEAD", "/v1.0/openapi.json", "GET"),
    ] {
        let req = admin(
            test::TestRequest::default()
                .method(method.parse().expect("method"))
                .uri(uri),
        );
        let r = raw!(&app, req);
        documented(&r, 405, &format!("Method {method} is not allowed here"));
        assert_eq!(r.2.as_deref(), Some(allow), "{method} {uri}");
    }
}

/// sw-update-options (`strategy-config`) with dcmanager's names, codes and messages
/// (`sw_update_options.py`, `sw_update_opts_w_name_db_model_to_dict`), kept across a restart.
#[actix_web::test]
async fn sw_update_options_round_trip_with_upstreams_names() {
    let mut h = Harness::new(600).await;
    h.register("subcloud1").await;
    h.register("subcloud2").await;
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(state(&h)))
            .configure(routes),
    )
    .await;
    let (a, r) = (Some(ADMIN), Some(READER));
    const ALL: &str = "/v1.0/sw-update-options";
    let upstream_defaults = json!({"name": "all clouds default", "storage-apply-type": "parallel",
        "worker-apply-type": "parallel", "max-parallel-workers": 10,
        "alarm-restriction-type": "relaxed", "default-instance-action": "migrate",
        "created-at": null, "updated-at": null});

    // Nothing set: the list holds upstream's defaults alone; a subcloud has no entry of its own.
    let got = call!(&app, "GET", ALL, r, None);
    assert_eq!(
        got.1,
        json!({"sw-update-options": [upstream_defaults.clone()]})
    );
    let got = call!(&app, "GET", &format!("{ALL}/SystemController"), r, None);
    assert_eq!(got, (StatusCode::OK, upstream_defaults.clone()));
    let got = call!(&app, "GET", &format!("{ALL}/subcloud1"), r, None);
    assert_error(
        &got,
        404,
        "No options found for Subcloud with id 1, defaults will be used.",
    );
    assert_error(
        &call!(&app, "GET", &format!("{ALL}/nowhere"), r, None),
        404,
        "Subcloud not found",
    );

    // Upstream's client body: all five keys.
    let full = json!({"storage-apply-type": "serial", "worker-apply-type": "serial",
        "max-parallel-workers": 2, "alarm-restriction-type": "strict",
        "default-instance-action": "stop-start"});
    let got = call!(&app, "POST", &format!("{ALL}/subcloud1"), a, Some(full));
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    for (key, value) in [
        ("name", json!("subcloud1")),
        ("subcloud-id", json!(1)),
        ("storage-apply-type", json!("serial")),
        ("worker-apply-type", json!("serial")),
        ("max-parallel-workers", json!(2)),
        ("alarm-restriction-type", json!("strict")),
        ("default-instance-action", json!("stop-start")),
        ("updated-at", json!(null)),
    ] {
        assert_eq!(got.1[key], value, "{key}: {}", got.1);
    }
    assert!(got.1["id"].is_i64() && got.1["created-at"].is_string());
    let own = got.1;

    // The default entry, by RegionOne as older clients name it; a key left out keeps its value.
    let got = call!(
        &app,
        "POST",
        &format!("{ALL}/RegionOne"),
        a,
        Some(json!({"max-parallel-workers": "4"}))
    );
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    assert_eq!(
        (
            &got.1["name"],
            &got.1["subcloud-id"],
            &got.1["max-parallel-workers"]
        ),
        (&json!("all clouds default"), &json!(0), &json!(4))
    );
    assert_eq!(got.1["worker-apply-type"], "parallel");
    // Updating by id keeps the entry and stamps updated-at.
    let got = call!(
        &app,
        "POST",
        &format!("{ALL}/1"),
        a,
        Some(json!({"worker-apply-type": "ignore"}))
    );
    assert_eq!(
        (got.1["id"].clone(), got.1["worker-apply-type"].clone()),
        (own["id"].clone(), json!("ignore"))
    );
    assert!(got.1["updated-at"].is_string());

    // Bad values: 400 saying which are taken; nothing changes.
    for (body, message) in [
        (
            json!({"worker-apply-type": "sideways"}),
            "\"sideways\" is not a valid worker-apply-type: use one of serial parallel ignore",
        ),
        (
            json!({"storage-apply-type": "ignore"}),
            "\"ignore\" is not a valid storage-apply-type: use one of serial parallel",
        ),
        (
            json!({"alarm-restriction-type": "lenient"}),
            "\"lenient\" is not a valid alarm-restriction-type: use one of strict relaxed",
        ),
        (
            json!({"default-instance-action": "evacuate"}),
            "\"evacuate\" is not a valid default-instance-action: use one of stop-start migrate",
        ),
        (
            json!({"max-parallel-workers": 0}),
            "\"0\" is not a valid max-parallel-workers: use a whole number from 1 to 1000",
        ),
        (
            json!({"max-parallel-workers": "many"}),
            "\"many\" is not a valid max-parallel-workers: use a whole number from 1 to 1000",
        ),
        (json!({}), "Body required"),
    ] {
        let got = call!(&app, "POST", &format!("{ALL}/subcloud2"), a, Some(body));
        assert_error(&got, 400, message);
    }
    assert_eq!(
        call!(&app, "GET", &format!("{ALL}/subcloud2"), r, None).0,
        StatusCode::NOT_FOUND
    );

    // A reader may read, never write.
    let forbidden = "Forbidden: a reader token may not change anything";
    let body = Some(json!({"worker-apply-type": "serial"}));
    assert_error(
        &call!(&app, "POST", &format!("{ALL}/subcloud2"), r, body),
        403,
        forbidden,
    );
    assert_error(
        &call!(&app, "DELETE", &format!("{ALL}/subcloud1"), r, None),
        403,
        forbidden,
    );
    assert_eq!(
        call!(&app, "GET", ALL, None, None).0,
        StatusCode::UNAUTHORIZED
    );

    // The list: the default entry first, then each subcloud's own.
    let got = call!(&app, "GET", ALL, r, None);
    let names: Vec<&Value> = got.1["sw-update-options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| &o["name"])
        .collect();
    assert_eq!(names, [&json!("all clouds default"), &json!("subcloud1")]);

    // Kept across a restart.
    drop(app);
    h.restart().await;
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(state(&h)))
            .configure(routes),
    )
    .await;
    assert_eq!(call!(&app, "GET", ALL, r, None).1, got.1);

    // Delete a subcloud's entry: it then uses the default entry; a second delete is upstream's 404.
    let got = call!(&app, "DELETE", &format!("{ALL}/subcloud1"), a, None);
    assert_eq!(got, (StatusCode::OK, Value::Null));
    assert_error(
        &call!(&app, "DELETE", &format!("{ALL}/subcloud1"), a, None),
        404,
        "Subcloud patch options not found",
    );
    // The default entry cannot be removed: its delete puts upstream's defaults back, as upstream's.
    let got = call!(&app, "DELETE", &format!("{ALL}/SystemController"), a, None);
    assert_eq!(got.0, StatusCode::OK);
    let got = call!(&app, "GET", &format!("{ALL}/SystemController"), r, None);
    assert_eq!(got, (StatusCode::OK, upstream_defaults.clone()));
    assert_eq!(
        call!(&app, "GET", ALL, r, None).1,
        json!({"sw-update-options": [upstream_defaults]})
    );
}
