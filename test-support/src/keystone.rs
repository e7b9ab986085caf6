//! A real OpenStack Keystone for the Keystone-auth tests: the pinned `keystone` package from PyPI
//! (installed once by `tests/keystone/install.sh` into `~/.cache/dc-rootca/keystone-<version>`),
//! bootstrapped with SQLite in a directory of the test's (`keystone-manage db_sync`, `fernet_setup`,
//! `credential_setup`, `bootstrap` with the admin user, region RegionOne and its own endpoints), served by
//! gunicorn on a loopback port it picks itself, and stopped when dropped. Users, projects, role
//! assignments, services and endpoints are made through Keystone's own REST API, as an operator's
//! `openstack` client would.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use awc::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::fleet::wait_until;
use crate::process::Child;

/// The region `bootstrap` creates, as StarlingX names its central cloud's.
pub const REGION: &str = "RegionOne";
/// The bootstrap admin, and the project it is admin of.
pub const ADMIN_USER: &str = "admin";
pub const ADMIN_PROJECT: &str = "admin";
/// The project StarlingX's service users live in.
pub const SERVICE_PROJECT: &str = "services";

/// What went wrong starting or driving Keystone, with the log to read.
#[derive(Debug, thiserror::Error)]
#[error("keystone: {0}")]
pub struct KeystoneError(pub String);

type Result<T> = std::result::Result<T, KeystoneError>;

fn err(e: impl std::fmt::Display) -> KeystoneError {
    KeystoneError(e.to_string())
}

/// A running Keystone.
pub struct Keystone {
    /// The identity endpoint, `http://127.0.0.1:<port>/v3`: an openrc's `OS_AUTH_URL`.
    pub auth_url: String,
    /// The bootstrap admin's password.
    pub admin_password: String,
    dir: PathBuf,
    server: Option<Child>,
}

/// One answer of Keystone's REST API.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    /// `X-Subject-Token`: the token a login issued.
    pub subject_token: Option<String>,
}

impl Keystone {
    /// Installs Keystone when missing, bootstraps it in `dir` and serves it on a free loopback port.
    pub fn start(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(err)?;
        let venv = install()?;
        let conf = dir.join("keystone.conf");
        std::fs::write(&conf, config(dir)).map_err(err)?;
        let manage = |args: &[&str]| -> Result<()> {
            let out = Command::new(venv.join("bin/keystone-manage"))
                .arg("--config-file")
                .arg(&conf)
                .args(args)
                .current_dir(dir)
                .output()
                .map_err(err)?;
            if out.status.success() {
                Ok(())
            } else {
                Err(KeystoneError(format!(
                    "keystone-manage {}: {}\n{}",
                    args.join(" "),
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                )))
            }
        };
        let (user, group) = owner(dir)?;
        manage(&["db_sync"])?;
        for setup in ["fernet_setup", "credential_setup"] {
            manage(&[setup, "--keystone-user", &user, "--keystone-group", &group])?;
        }

        // gunicorn binds port 0 and says which port it got; bootstrap then records the endpoints there.
        let log = dir.join("keystone.log");
        let gunicorn_conf = dir.join("gunicorn.conf.py");
        std::fs::write(&gunicorn_conf, GUNICORN_CONF).map_err(err)?;
        let server = Child::spawn_with_env(
            &venv.join("bin/gunicorn"),
            ["-c".as_ref(), gunicorn_conf.as_os_str()],
            &[("OS_KEYSTONE_CONFIG_FILES", conf.as_os_str())],
            &log,
        )
        .map_err(err)?;
        let mut port = None;
        wait_until(Duration::from_secs(60), || {
            port = listening_port(&std::fs::read_to_string(&log).unwrap_or_default());
            Ok(port.is_some())
        })
        .map_err(|e| {
            KeystoneError(format!(
                "gunicorn did not listen ({e}); see {}",
                log.display()
            ))
        })?;
        let port = port.unwrap_or_default();
        let auth_url = format!("http://127.0.0.1:{port}/v3");
        let admin_password = format!("admin-{}", rand::random::<u64>());
        manage(&[
            "bootstrap",
            "--bootstrap-username",
            ADMIN_USER,
            "--bootstrap-project-name",
            ADMIN_PROJECT,
            "--bootstrap-password",
            &admin_password,
            "--bootstrap-region-id",
            REGION,
            "--bootstrap-admin-url",
            &auth_url,
            "--bootstrap-internal-url",
            &auth_url,
            "--bootstrap-public-url",
            &auth_url,
        ])?;
        let keystone = Self {
            auth_url,
            admin_password,
            dir: dir.to_owned(),
            server: Some(server),
        };
        wait_until(Duration::from_secs(60), || {
            Ok(keystone
                .call(Method::GET, "", None, None)
                .is_ok_and(|a| a.status == StatusCode::OK))
        })
        .map_err(|e| {
            KeystoneError(format!(
                "Keystone did not answer ({e}); see {}",
                log.display()
            ))
        })?;
        Ok(keystone)
    }

    /// gunicorn's log (and Keystone's, which logs to stderr).
    pub fn log(&self) -> PathBuf {
        self.dir.join("keystone.log")
    }

    /// Stops the server (SIGTERM, then waits): afterwards nothing listens on its port.
    pub fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.terminate();
        }
    }

    /// One request to Keystone's REST API (`path` below `/v3`), answered whatever its status.
    pub fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Answer> {
        let url = format!("{}{path}", self.auth_url);
        actix_rt::System::new().block_on(async {
            let client = awc::Client::builder()
                .timeout(Duration::from_secs(30))
                .finish();
            let mut request = client.request(method, &url);
            if let Some(token) = token {
                request = request.insert_header(("X-Auth-Token", token));
            }
            let sent = match body {
                Some(b) => request.send_json(b).await,
                None => request.send().await,
            };
            let mut response = sent.map_err(|e| KeystoneError(format!("{url}: {e}")))?;
            let bytes = response
                .body()
                .limit(16 * 1024 * 1024)
                .await
                .map_err(|e| KeystoneError(format!("{url}: {e}")))?;
            Ok(Answer {
                status: response.status(),
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                subject_token: response
                    .headers()
                    .get("X-Subject-Token")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
            })
        })
    }

    /// [`Self::call`] that must answer `expected`; returns the body.
    fn expect(
        &self,
        expected: StatusCode,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        let admin = self.admin_token()?;
        let answer = self.call(method.clone(), path, Some(&admin), body)?;
        if answer.status != expected {
            return Err(KeystoneError(format!(
                "{method} {path}: {} {}",
                answer.status, answer.body
            )));
        }
        Ok(answer.body)
    }

    /// A password login as `user` (domain Default), scoped to `project` or unscoped.
    pub fn login(&self, user: &str, password: &str, project: Option<&str>) -> Result<Answer> {
        let mut auth = json!({"identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"name": "Default"}, "password": password}}}});
        if let Some(project) = project {
            auth["scope"] = json!({"project": {"name": project, "domain": {"name": "Default"}}});
        }
        self.call(
            Method::POST,
            "/auth/tokens",
            None,
            Some(&json!({ "auth": auth })),
        )
    }

    /// A token of `user`'s, scoped to `project` or unscoped.
    pub fn token(&self, user: &str, password: &str, project: Option<&str>) -> Result<String> {
        let answer = self.login(user, password, project)?;
        match (answer.status, answer.subject_token) {
            (StatusCode::CREATED, Some(token)) => Ok(token),
            (status, _) => Err(KeystoneError(format!(
                "login as {user}: {status} {}",
                answer.body
            ))),
        }
    }

    /// The bootstrap admin's token on the admin project.
    pub fn admin_token(&self) -> Result<String> {
        self.token(ADMIN_USER, &self.admin_password, Some(ADMIN_PROJECT))
    }

    /// Revokes `token` (`DELETE /v3/auth/tokens`), as `openstack token revoke` does.
    pub fn revoke(&self, token: &str) -> Result<()> {
        let admin = self.admin_token()?;
        let url = format!("{}/auth/tokens", self.auth_url);
        actix_rt::System::new().block_on(async {
            let response = awc::Client::default()
                .delete(&url)
                .insert_header(("X-Auth-Token", admin.as_str()))
                .insert_header(("X-Subject-Token", token))
                .send()
                .await
                .map_err(|e| KeystoneError(format!("{url}: {e}")))?;
            if response.status() == StatusCode::NO_CONTENT {
                Ok(())
            } else {
                Err(KeystoneError(format!("revoking: {}", response.status())))
            }
        })
    }

    /// The id of the project named `name`, created in domain Default when missing.
    pub fn project(&self, name: &str) -> Result<String> {
        let found = self.expect(
            StatusCode::OK,
            Method::GET,
            &format!("/projects?name={name}"),
            None,
        )?;
        if let Some(id) = found["projects"][0]["id"].as_str() {
            return Ok(id.to_owned());
        }
        let made = self.expect(
            StatusCode::CREATED,
            Method::POST,
            "/projects",
            Some(&json!({"project": {"name": name, "domain_id": "default"}})),
        )?;
        id(&made["project"])
    }

    /// The id of the role named `name`, created when missing.
    pub fn role(&self, name: &str) -> Result<String> {
        let found = self.expect(
            StatusCode::OK,
            Method::GET,
            &format!("/roles?name={name}"),
            None,
        )?;
        if let Some(id) = found["roles"][0]["id"].as_str() {
            return Ok(id.to_owned());
        }
        let made = self.expect(
            StatusCode::CREATED,
            Method::POST,
            "/roles",
            Some(&json!({"role": {"name": name}})),
        )?;
        id(&made["role"])
    }

    /// Creates user `name` in domain Default, with `role` on `project` when given (none: a user whose
    /// tokens carry no role).
    pub fn user(&self, name: &str, password: &str, role: Option<(&str, &str)>) -> Result<String> {
        let made = self.expect(
            StatusCode::CREATED,
            Method::POST,
            "/users",
            Some(&json!({"user": {"name": name, "password": password, "domain_id": "default"}})),
        )?;
        let user = id(&made["user"])?;
        if let Some((role, project)) = role {
            let (role, project) = (self.role(role)?, self.project(project)?);
            self.expect(
                StatusCode::NO_CONTENT,
                Method::PUT,
                &format!("/projects/{project}/users/{user}/roles/{role}"),
                None,
            )?;
        }
        Ok(user)
    }

    /// Creates a region (a decoy for the CLI's region choice).
    pub fn region(&self, name: &str) -> Result<()> {
        self.expect(
            StatusCode::CREATED,
            Method::POST,
            "/regions",
            Some(&json!({"region": {"id": name}})),
        )
        .map(|_| ())
    }

    /// Creates the service of `kind` (e.g. `dcmanager`) when missing and an endpoint of it at `url`
    /// for `interface` in `region`.
    pub fn endpoint(&self, kind: &str, interface: &str, region: &str, url: &str) -> Result<()> {
        let found = self.expect(
            StatusCode::OK,
            Method::GET,
            &format!("/services?type={kind}"),
            None,
        )?;
        let service = match found["services"][0]["id"].as_str() {
            Some(id) => id.to_owned(),
            None => {
                let made = self.expect(
                    StatusCode::CREATED,
                    Method::POST,
                    "/services",
                    Some(&json!({"service": {"type": kind, "name": kind, "enabled": true}})),
                )?;
                id(&made["service"])?
            }
        };
        self.expect(
            StatusCode::CREATED,
            Method::POST,
            "/endpoints",
            Some(
                &json!({"endpoint": {"service_id": service, "interface": interface,
                "region_id": region, "url": url, "enabled": true}}),
            ),
        )
        .map(|_| ())
    }
}

impl Drop for Keystone {
    fn drop(&mut self) {
        self.stop();
    }
}

fn id(record: &Value) -> Result<String> {
    record["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| KeystoneError(format!("no id in {record}")))
}

/// The venv that `tests/keystone/install.sh` keeps (installing it when missing).
fn install() -> Result<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/keystone/install.sh");
    let out = Command::new("bash").arg(&script).output().map_err(err)?;
    if !out.status.success() {
        return Err(KeystoneError(format!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// gunicorn's settings, all in its config file: Keystone's oslo.config parses `sys.argv` as its own
/// options, so the worker drops gunicorn's before it loads the application.
const GUNICORN_CONF: &str = r#"import sys
bind = "127.0.0.1:0"
workers = 1
threads = 4
graceful_timeout = 2
wsgi_app = "keystone.wsgi.api:application"

def post_fork(server, worker):
    sys.argv = sys.argv[:1]
"#;

/// keystone.conf: SQLite and the key repositories in `dir`, logs to stderr.
fn config(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "[DEFAULT]\nuse_stderr = true\n\
         [database]\nconnection = sqlite:///{d}/keystone.db\n\
         [fernet_tokens]\nkey_repository = {d}/fernet-keys\n\
         [fernet_receipts]\nkey_repository = {d}/fernet-keys\n\
         [credential]\nkey_repository = {d}/credential-keys\n\
         [token]\nexpiration = 3600\n"
    )
}

/// The user and group (ids) the key repositories belong to: whoever owns the test's directory, that is
/// whoever runs the test.
fn owner(dir: &Path) -> Result<(String, String)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir).map_err(err)?;
    Ok((meta.uid().to_string(), meta.gid().to_string()))
}

/// The port in gunicorn's `Listening at: http://127.0.0.1:PORT (PID)`.
fn listening_port(log: &str) -> Option<u16> {
    let rest = log.split("Listening at: http://127.0.0.1:").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gunicorn_says_its_port() {
        let log = "[2026-12-05 20:42:43 +0000] [1] [INFO] Starting gunicorn 23.0.0\n\
                   [2026-12-05 20:42:43 +0000] [1] [INFO] Listening at: http://127.0.0.1:41235 (1)\n";
        assert_eq!(listening_port(log), Some(41235));
        assert_eq!(listening_port("Starting gunicorn"), None);
    }
}
