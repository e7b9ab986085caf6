//! The real `dcmanager` binary against a stub of the REST API (docs/rest-api.md) that records
//! every request and answers canned JSON. The stub advances the strategy one state per GET, so
//! `--watch` needs no sleeps to be tested.

use std::net::SocketAddr;
use std::process::{Command, Output};
use std::sync::{Mutex, mpsc};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

#[derive(Clone, Debug)]
struct Recorded {
    method: String,
    path: String,
    token: Option<String>,
    body: Value,
}

/// How the stub's watched strategy ends.
#[derive(Clone, Copy)]
enum Ending {
    Complete,
    Failed,
}

struct Stub {
    requests: Mutex<Vec<Recorded>>,
    /// GETs of the strategy so far; the strategy and its step advance with each.
    polls: Mutex<usize>,
    ending: Ending,
    /// GETs of the strategy still to answer 503, as a controller behind a proxy while it restarts.
    unavailable: Mutex<usize>,
}

const WHEN: &str = "2026-11-28 10:00:01.000001";

fn strategy(state: &str) -> Value {
    json!({"id": 1, "type": "kube-rootca-update", "subcloud-apply-type": "parallel", "max-parallel-subclouds": 2,
        "stop-on-failure": false, "state": state, "created-at": "2026-11-28 10:00:00.000000", "updated-at": WHEN,
        "extra-args": {"expiry-date": null, "subject": null, "cert-file": null}})
}

fn step(cloud: &str, state: &str, details: &str) -> Value {
    json!({"id": 1, "cloud": cloud, "stage": "Apply", "state": state, "details": details,
        "started-at": WHEN, "finished-at": null, "created-at": WHEN, "updated-at": WHEN})
}

fn subcloud(name: &str) -> Value {
    json!({"id": 3, "name": name, "description": "Ottawa Site", "location": "YOW", "software-version": "nn.nn",
        "management-state": "managed", "availability-status": "online", "deploy-status": "complete",
        "backup-status": null, "prestage-status": null, "group_id": 1, "created-at": WHEN, "updated-at": null,
        "endpoint_sync_status": [{"endpoint_type": "kube-rootca", "sync_status": "out-of-sync"}],
        "sync_status": "out-of-sync", "kube-rootca-subject": "CN=kubernetes", "kube-rootca-expiry": WHEN})
}

fn error(status: u16, message: &str) -> HttpResponse {
    let code = actix_web::http::StatusCode::from_u16(status).unwrap();
    HttpResponse::build(code)
        .json(json!({"code": status, "title": code.canonical_reason(), "message": message}))
}

impl Stub {
    /// The strategy and the one step as they are after `polls` GETs of the strategy.
    fn progress(&self, polls: usize) -> (Value, Value) {
        let pods = "pods trust-both-cas: 3 of 8 workloads restarted; update 45% complete";
        match (polls, self.ending) {
            (0 | 1, _) => (
                strategy("applying"),
                step("subcloud3", "update-started", "update 5% complete"),
            ),
            (2, _) => (
                strategy("applying"),
                step("subcloud3", "updating-pods-trust-both-cas", pods),
            ),
            (_, Ending::Complete) => (strategy("complete"), step("subcloud3", "complete", "")),
            (_, Ending::Failed) => (
                strategy("failed"),
                step("subcloud3", "failed", "pods trust-both-cas: timed out"),
            ),
        }
    }

    fn answer(&self, method: &str, path: &str, body: &Value) -> HttpResponse {
        let polls = *self.polls.lock().unwrap();
        match (method, path) {
            ("POST", "/v1.0/sw-update-strategy")
                if body.get("cloud_name") == Some(&json!("busy")) =>
            {
                error(
                    422,
                    "Unable to create strategy of type 'kube-rootca-update': Bad strategy request: Strategy of type: 'kube-rootca-update' already exists",
                )
            }
            ("POST", "/v1.0/sw-update-strategy") => HttpResponse::Ok().json(strategy("initial")),
            ("GET", "/v1.0/sw-update-strategy?type=kube-rootca-update")
                if *self.unavailable.lock().unwrap() > 0 =>
            {
                *self.unavailable.lock().unwrap() -= 1;
                error(503, "Service Unavailable")
            }
            ("GET", "/v1.0/sw-update-strategy?type=kube-rootca-update") => {
                *self.polls.lock().unwrap() += 1;
                HttpResponse::Ok().json(self.progress(polls + 1).0)
            }
            ("POST", "/v1.0/sw-update-strategy/actions?type=kube-rootca-update") => {
                HttpResponse::Ok().json(strategy(if body["action"] == "apply" {
                    "applying"
                } else {
                    "abort requested"
                }))
            }
            ("DELETE", "/v1.0/sw-update-strategy?type=kube-rootca-update") => {
                HttpResponse::Ok().json(strategy("deleting"))
            }
            ("GET", "/v1.0/sw-update-strategy/steps") => {
                HttpResponse::Ok().json(json!({"strategy-steps": [self.progress(polls).1]}))
            }
            ("GET", "/v1.0/sw-update-strategy/steps/subcloud3") => {
                HttpResponse::Ok().json(self.progress(polls).1)
            }
            ("GET", p) if p.starts_with("/v1.0/sw-update-strategy/steps/") => {
                error(404, "Strategy step not found")
            }
            ("GET", "/v1.0/subclouds") => {
                HttpResponse::Ok().json(json!({"subclouds": [subcloud("subcloud3")]}))
            }
            ("GET" | "PATCH" | "DELETE", "/v1.0/subclouds/subcloud3") => {
                HttpResponse::Ok().json(subcloud("subcloud3"))
            }
            ("POST", "/v1.0/subclouds") => {
                HttpResponse::Ok().json(subcloud(body["name"].as_str().unwrap_or("?")))
            }
            ("GET", "/v1.0/subcloud-groups/edge/subclouds") => {
                HttpResponse::Ok().json(json!({"subclouds": [subcloud("subcloud3")]}))
            }
            ("GET", "/v1.0/subcloud-groups") => {
                HttpResponse::Ok().json(json!({"subcloud_groups": []}))
            }
            ("POST", "/v1.0/subcloud-groups") | ("PATCH", "/v1.0/subcloud-groups/edge") => {
                let mut group = json!({"id": 2, "name": "edge", "description": null, "update_apply_type": "parallel",
                    "max_parallel_subclouds": 2, "created-at": WHEN, "updated-at": null});
                if let Some(fields) = body.as_object() {
                    group.as_object_mut().unwrap().extend(fields.clone());
                }
                HttpResponse::Ok().json(group)
            }
            _ => error(404, "Subcloud not found"),
        }
    }
}

async fn handle(request: HttpRequest, body: web::Bytes, stub: web::Data<Stub>) -> HttpResponse {
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let token = request
        .headers()
        .get("x-auth-token")
        .and_then(|t| t.to_str().ok())
        .map(str::to_owned);
    let method = request.method().as_str().to_owned();
    stub.requests.lock().unwrap().push(Recorded {
        method: method.clone(),
        path: path.clone(),
        token,
        body: body.clone(),
    });
    stub.answer(&method, &path, &body)
}

/// Serves a fresh stub on 127.0.0.1 from its own thread and actix system (the test thread
/// blocks on the CLI process); over HTTPS when given a TLS configuration.
fn serve_with(ending: Ending, tls: Option<rustls::ServerConfig>) -> (String, web::Data<Stub>) {
    let stub = web::Data::new(Stub {
        requests: Mutex::new(Vec::new()),
        polls: Mutex::new(0),
        ending,
        unavailable: Mutex::new(0),
    });
    let shared = stub.clone();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let (tx, rx) = mpsc::channel::<SocketAddr>();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = HttpServer::new(move || {
                App::new()
                    .app_data(shared.clone())
                    .default_service(web::to(handle))
            })
            .workers(1);
            let server = match tls {
                Some(config) => server.bind_rustls_0_23(("127.0.0.1", 0), config),
                None => server.bind(("127.0.0.1", 0)),
            }
            .unwrap();
            tx.send(server.addrs()[0]).unwrap();
            server.run().await.unwrap();
        });
    });
    let addr = rx.recv().unwrap();
    (format!("{scheme}://{addr}/v1.0"), stub)
}

fn serve(ending: Ending) -> (String, web::Data<Stub>) {
    serve_with(ending, None)
}

fn dcmanager(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dcmanager"))
        .args(args)
        .env("DCMANAGER_URL", url)
        .env("OS_AUTH_TOKEN", "secret-token")
        .env_remove("CLI_CONFIRMATIONS")
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn requests(stub: &Stub) -> Vec<Recorded> {
    stub.requests.lock().unwrap().clone()
}

#[test]
fn create_sends_the_contract_body_with_the_token_and_the_pem() {
    let (url, stub) = serve(Ending::Complete);
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("ca.pem");
    std::fs::write(
        &cert,
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let out = dcmanager(
        &url,
        &[
            "kube-rootca-update-strategy",
            "create",
            "--subcloud-apply-type",
            "serial",
            "--max-parallel-subclouds",
            "3",
            "--stop-on-failure",
            "--force",
            "--expiry-date",
            "2030-01-01",
            "--subject",
            "C=CA CN=new",
            "--cert-file",
            cert.to_str().unwrap(),
            "subcloud3",
            "-f",
            "shell",
            "-c",
            "strategy type",
            "-c",
            "state",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        stdout(&out),
        "strategy_type=\"kube-rootca-update\"\nstate=\"initial\"\n"
    );
    let sent = requests(&stub);
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].method.as_str(), sent[0].path.as_str()),
        ("POST", "/v1.0/sw-update-strategy")
    );
    assert_eq!(sent[0].token.as_deref(), Some("secret-token"));
    assert_eq!(
        sent[0].body,
        json!({"type": "kube-rootca-update", "subcloud-apply-type": "serial", "max-parallel-subclouds": 3,
            "stop-on-failure": "true", "cloud_name": "subcloud3", "force": "true", "subject": "C=CA CN=new",
            "expiry-date": "2030-01-01",
            "cert-file": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"})
    );
}

#[test]
fn client_side_validation_sends_nothing() {
    let (url, stub) = serve(Ending::Complete);
    let out = dcmanager(
        &url,
        &[
            "kube-rootca-update-strategy",
            "create",
            "--group",
            "Default",
            "subcloud3",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "ERROR: The cloud_name and group options are mutually exclusive.\n"
    );
    assert!(requests(&stub).is_empty());
}

#[test]
fn server_errors_print_the_message_and_exit_1() {
    let (url, _stub) = serve(Ending::Complete);
    let out = dcmanager(&url, &["kube-rootca-update-strategy", "create", "busy"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "ERROR: Unable to create strategy of type 'kube-rootca-update': Bad strategy request: Strategy of type: 'kube-rootca-update' already exists\n"
    );
    let out = dcmanager(&url, &["strategy-step", "show", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "ERROR: Strategy step not found\n"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn an_unreachable_api_is_named() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/v1.0");
    let out = dcmanager(&url, &["subcloud", "list"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "ERROR: could not reach the dcmanager API at {url}/subclouds: "
        )),
        "{stderr}"
    );
}

#[test]
fn actions_paths_and_bodies() {
    let (url, stub) = serve(Ending::Complete);
    for (action, state) in [("apply", "applying"), ("abort", "abort requested")] {
        let out = dcmanager(
            &url,
            &[
                "kube-rootca-update-strategy",
                action,
                "-f",
                "value",
                "-c",
                "state",
            ],
        );
        assert!(out.status.success(), "{out:?}");
        assert_eq!(stdout(&out), format!("{state}\n"));
    }
    let out = dcmanager(
        &url,
        &[
            "kube-rootca-update-strategy",
            "delete",
            "-f",
            "json",
            "-c",
            "state",
        ],
    );
    assert_eq!(stdout(&out), "{\n  \"state\": \"deleting\"\n}\n");
    let sent: Vec<(String, String, Value)> = requests(&stub)
        .into_iter()
        .map(|r| (r.method, r.path, r.body))
        .collect();
    assert_eq!(
        sent,
        [
            (
                "POST".into(),
                "/v1.0/sw-update-strategy/actions?type=kube-rootca-update".into(),
                json!({"action": "apply"})
            ),
            (
                "POST".into(),
                "/v1.0/sw-update-strategy/actions?type=kube-rootca-update".into(),
                json!({"action": "abort"})
            ),
            (
                "DELETE".into(),
                "/v1.0/sw-update-strategy?type=kube-rootca-update".into(),
                Value::Null
            ),
        ]
    );
}

#[test]
fn confirmation_declined_sends_nothing() {
    let (url, stub) = serve(Ending::Complete);
    let out = Command::new(env!("CARGO_BIN_EXE_dcmanager"))
        .args([
            "--dcmanager-url",
            &url,
            "kube-rootca-update-strategy",
            "apply",
        ])
        .env("CLI_CONFIRMATIONS", "enabled")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Operation cancelled"));
    assert!(requests(&stub).is_empty());
}

#[test]
fn subcloud_commands() {
    let (url, stub) = serve(Ending::Complete);
    let out = dcmanager(&url, &["subcloud", "list"]);
    assert_eq!(
        stdout(&out),
        "+----+-----------+------------+--------------+---------------+-------------+---------------+-----------------+\n\
         | id | name      | management | availability | deploy status | sync        | backup status | prestage status |\n\
         +----+-----------+------------+--------------+---------------+-------------+---------------+-----------------+\n\
         | 3  | subcloud3 | managed    | online       | complete      | out-of-sync | None          | None            |\n\
         +----+-----------+------------+--------------+---------------+-------------+---------------+-----------------+\n"
    );
    let out = dcmanager(
        &url,
        &[
            "subcloud",
            "show",
            "subcloud3",
            "-f",
            "value",
            "-c",
            "kube-rootca_sync_status",
            "-c",
            "kube-rootca_subject",
        ],
    );
    assert_eq!(stdout(&out), "out-of-sync\nCN=kubernetes\n");
    let out = dcmanager(
        &url,
        &[
            "subcloud",
            "add",
            "--name",
            "subcloud9",
            "--location",
            "YOW",
            "--group",
            "edge",
            "-f",
            "value",
            "-c",
            "name",
        ],
    );
    assert_eq!(stdout(&out), "subcloud9\n");
    assert!(
        dcmanager(&url, &["subcloud", "unmanage", "subcloud3"])
            .status
            .success()
    );
    assert!(
        dcmanager(&url, &["subcloud", "delete", "subcloud3"])
            .status
            .success()
    );
    let sent: Vec<(String, String, Value)> = requests(&stub)
        .into_iter()
        .map(|r| (r.method, r.path, r.body))
        .collect();
    assert_eq!(
        sent[2],
        (
            "POST".into(),
            "/v1.0/subclouds".into(),
            json!({"name": "subcloud9", "location": "YOW", "group": "edge"})
        )
    );
    assert_eq!(
        sent[3],
        (
            "PATCH".into(),
            "/v1.0/subclouds/subcloud3".into(),
            json!({"management-state": "unmanaged"})
        )
    );
    assert_eq!(sent[4].0, "DELETE");
}

#[test]
fn subcloud_update_and_group_members() {
    let (url, stub) = serve(Ending::Complete);
    let out = dcmanager(&url, &["subcloud", "update", "subcloud3"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "ERROR: Nothing to update: give at least one of --description, --location, --group\n"
    );
    assert!(requests(&stub).is_empty());
    let out = dcmanager(
        &url,
        &[
            "subcloud",
            "update",
            "subcloud3",
            "--location",
            "東京",
            "--group",
            "edge",
            "-f",
            "value",
            "-c",
            "name",
        ],
    );
    assert_eq!(stdout(&out), "subcloud3\n", "{out:?}");
    let out = dcmanager(
        &url,
        &[
            "subcloud-group",
            "list-subclouds",
            "edge",
            "-f",
            "csv",
            "-c",
            "name",
            "-c",
            "group_id",
            "-c",
            "kube-rootca_sync_status",
        ],
    );
    assert_eq!(
        stdout(&out),
        "\"name\",\"group_id\",\"kube-rootca_sync_status\"\n\"subcloud3\",1,\"out-of-sync\"\n",
        "{out:?}"
    );
    let sent: Vec<(String, String, Value)> = requests(&stub)
        .into_iter()
        .map(|r| (r.method, r.path, r.body))
        .collect();
    assert_eq!(
        sent,
        [
            (
                "PATCH".into(),
                "/v1.0/subclouds/subcloud3".into(),
                json!({"location": "東京", "group_id": "edge"})
            ),
            (
                "GET".into(),
                "/v1.0/subcloud-groups/edge/subclouds".into(),
                Value::Null
            ),
        ]
    );
}

#[test]
fn subcloud_group_commands() {
    let (url, stub) = serve(Ending::Complete);
    let out = dcmanager(&url, &["subcloud-group", "list", "-c", "id", "-c", "name"]);
    assert_eq!(
        stdout(&out),
        "+--------+--------+\n| id     | name   |\n+--------+--------+\n| <none> | <none> |\n+--------+--------+\n"
    );
    let out = dcmanager(
        &url,
        &[
            "subcloud-group",
            "add",
            "--name",
            "edge",
            "--update_apply_type",
            "serial",
            "--max_parallel_subclouds",
            "4",
            "-f",
            "yaml",
        ],
    );
    assert!(
        stdout(&out).contains("update apply type: serial\nmax parallel subclouds: 4\n"),
        "{out:?}"
    );
    let out = dcmanager(
        &url,
        &[
            "subcloud-group",
            "update",
            "edge",
            "--max-parallel-subclouds",
            "5",
            "-f",
            "value",
            "-c",
            "max parallel subclouds",
        ],
    );
    assert_eq!(stdout(&out), "5\n");
    let sent = requests(&stub);
    assert_eq!(
        sent[1].body,
        json!({"name": "edge", "update_apply_type": "serial", "max_parallel_subclouds": 4})
    );
    assert_eq!(
        (sent[2].method.as_str(), sent[2].body.clone()),
        ("PATCH", json!({"max_parallel_subclouds": 5}))
    );
}

#[test]
fn watch_prints_changes_until_complete() {
    let (url, _stub) = serve(Ending::Complete);
    let out = dcmanager(
        &url,
        &["strategy-step", "list", "--watch", "--interval", "0"],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        stdout(&out),
        "2026-11-28 10:00:01 subcloud3 update-started update 5% complete\n\
         2026-11-28 10:00:01 strategy applying\n\
         2026-11-28 10:00:01 subcloud3 updating-pods-trust-both-cas pods trust-both-cas: 3 of 8 workloads restarted; update 45% complete\n\
         2026-11-28 10:00:01 subcloud3 complete\n\
         2026-11-28 10:00:01 strategy complete\n"
    );
}

#[test]
fn watch_waits_out_a_503_and_goes_on() {
    let (url, stub) = serve(Ending::Complete);
    *stub.unavailable.lock().unwrap() = 2;
    let out = dcmanager(
        &url,
        &["strategy-step", "list", "--watch", "--interval", "0"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{out:?}");
    let notes: Vec<&str> = stderr.lines().collect();
    assert_eq!(notes.len(), 2, "{stderr}");
    assert!(
        notes[0].starts_with("reconnecting since ")
            && notes[0].ends_with("s): Service Unavailable"),
        "{stderr}"
    );
    assert!(notes[1].starts_with("reconnected at "), "{stderr}");
    assert!(
        stdout(&out).trim_end().ends_with("strategy complete"),
        "{out:?}"
    );
    let strategy_gets = requests(&stub)
        .iter()
        .filter(|r| r.path == "/v1.0/sw-update-strategy?type=kube-rootca-update")
        .count();
    assert_eq!(strategy_gets, 5, "2 refused, then the 3 polls to complete");

    // A 4xx is about the request: retrying cannot cure it, so the watch ends with exit 1.
    let out = dcmanager(
        &format!("{url}/elsewhere"),
        &["strategy-step", "list", "--watch", "--interval", "0"],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "ERROR: Subcloud not found\n"
    );
}

#[test]
fn watch_exits_non_zero_when_the_strategy_fails() {
    let (url, _stub) = serve(Ending::Failed);
    let out = dcmanager(
        &url,
        &[
            "kube-rootca-update-strategy",
            "show",
            "--watch",
            "--interval",
            "0",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stdout(&out).ends_with(
        "subcloud3 failed pods trust-both-cas: timed out\n2026-11-28 10:00:01 strategy failed\n"
    ));
}

#[test]
fn https_with_os_cacert() {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let pki = dc_test_support::pki::TestPki::new().unwrap();
    let chain = CertificateDer::pem_file_iter(pki.file("controller.crt"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(pki.file("controller.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let (url, stub) = serve_with(Ending::Complete, Some(config));
    let ca = pki.file("ca.crt");
    let out = dcmanager(
        &url,
        &[
            "--os-cacert",
            ca.to_str().unwrap(),
            "subcloud",
            "list",
            "-f",
            "value",
            "-c",
            "name",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "subcloud3\n");
    assert_eq!(requests(&stub)[0].token.as_deref(), Some("secret-token"));
    // Without the CA the server is not trusted, and the error says where the CLI tried to go.
    let out = dcmanager(
        &url,
        &[
            "--os-cacert",
            pki.file("controller.crt").to_str().unwrap(),
            "subcloud",
            "list",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with(&format!(
        "ERROR: could not reach the dcmanager API at {url}/subclouds: "
    )));
}

/// Completions and man pages need no controller: with an openrc sourced (here one whose Keystone
/// cannot be reached and without a password) they are still written, without a login.
#[test]
fn completion_and_man_pages_need_no_login() {
    let dir = tempfile::tempdir().unwrap();
    let openrc = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_dcmanager"))
            .args(args)
            .env("OS_AUTH_URL", "http://127.0.0.1:9/v3")
            .env("OS_USERNAME", "admin")
            .env_remove("OS_PASSWORD")
            .env_remove("OS_AUTH_TOKEN")
            .env_remove("DCMANAGER_URL")
            .output()
            .unwrap()
    };
    let out = openrc(&["completion", "bash"]);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("dcmanager"), "{}", stdout(&out));
    let man_dir = dir.path().to_str().unwrap();
    let out = openrc(&["man", "--out-dir", man_dir]);
    assert!(out.status.success(), "{out:?}");
    assert!(dir.path().join("dcmanager.1").is_file());
    // Anything that needs the controller still logs in, and says what is missing.
    let out = openrc(&["subcloud", "list"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("OS_PASSWORD"),
        "{out:?}"
    );
}
