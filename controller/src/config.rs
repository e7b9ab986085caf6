//! The controller's configuration: a TOML file plus `DC_CONTROLLER__SECTION__KEY` environment variables,
//! read by the loader the agent shares (`dc-config`). Unknown keys are refused by name. Tests fill
//! [`ControllerConfig`] directly, or serialize one to TOML for a controller process.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::ControllerError;

/// Everything the controller needs to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControllerConfig {
    pub api: ApiConfig,
    pub agents: AgentsConfig,
    pub pki: PkiConfig,
    /// The SQLite database file (created when missing), or a PostgreSQL server's URL
    /// (`postgresql://user@host:5432/dbname?sslmode=require`), whose tables are created when missing.
    pub database: PathBuf,
    /// The CA (PEM file) that signs the PostgreSQL server's certificate; without it, the system's
    /// roots. Not used with SQLite.
    pub database_ca: Option<PathBuf>,
    /// With PostgreSQL: one leader at a time among the controllers sharing the database.
    pub leadership: LeadershipConfig,
    pub auth: AuthConfig,
    pub audit: AuditConfig,
    /// Seconds between agent heartbeats, told to every agent in its Welcome.
    pub heartbeat_interval_secs: u32,
    /// A subcloud whose last heartbeat is older than this is offline (and its session is closed).
    pub offline_after_secs: u64,
    /// How long a running step waits for its dropped agent before failing.
    pub agent_wait_secs: u64,
    /// How often coalesced progress details are written, in milliseconds: progress is frequent, state
    /// transitions are written at once.
    pub progress_flush_ms: u64,
    /// When set, `{"api": "...", "agents": "..."}` is written here once both listeners are bound, so
    /// tests and scripts can bind port 0 and learn the ports.
    pub ready_file: Option<PathBuf>,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            api: ApiConfig::default(),
            agents: AgentsConfig::default(),
            pki: PkiConfig::default(),
            database: PathBuf::from("/var/lib/dc-rootca/controller.sqlite"),
            database_ca: None,
            leadership: LeadershipConfig::default(),
            auth: AuthConfig::default(),
            audit: AuditConfig::default(),
            heartbeat_interval_secs: 10,
            offline_after_secs: 35,
            agent_wait_secs: 600,
            progress_flush_ms: 1000,
            ready_file: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    pub listen: String,
    /// The API's URL as other hosts reach it (`https://ctl-a.example:8119`): a leader records it in
    /// the lease row, and standbys answer writes with it (503 and `X-Leader-Url`) so that clients
    /// follow. Default: `http://` (or `https://` with `tls`) and the bound address, which is right only
    /// when `listen` names an address clients can reach (not `0.0.0.0`).
    pub advertise_url: Option<String>,
    /// Serve the API over TLS with this certificate and key (PEM files).
    pub tls: Option<TlsFiles>,
    /// HTTP worker threads.
    pub workers: usize,
    /// Seconds a new connection has to send its first request's line and headers; then 408 and close.
    pub request_timeout_secs: u64,
    /// Seconds a request has to send its whole body once its headers arrived; then 408 and close.
    /// actix-web bounds only the head: without this a client trickling a body would hold its
    /// connection for ever.
    pub body_timeout_secs: u64,
    /// Seconds an idle keep-alive connection stays open between requests.
    pub keep_alive_secs: u64,
    /// Seconds a closing connection waits for the client to acknowledge before it is dropped.
    pub disconnect_timeout_secs: u64,
    /// `/metrics` asks for a token (any role) like the API's reads; off by default, as Prometheus
    /// scrapes without one unless given it (`authorization` or a header in its scrape config).
    pub metrics_require_token: bool,
}

impl ApiConfig {
    /// The URL a leader records for standbys to name: `advertise_url`, else the scheme and the
    /// address the API bound.
    pub fn advertised(&self, bound: std::net::SocketAddr) -> String {
        self.advertise_url.clone().unwrap_or_else(|| {
            let scheme = if self.tls.is_some() { "https" } else { "http" };
            format!("{scheme}://{bound}")
        })
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8119".to_owned(),
            advertise_url: None,
            tls: None,
            workers: 2,
            request_timeout_secs: 5,
            body_timeout_secs: 10,
            keep_alive_secs: 5,
            disconnect_timeout_secs: 1,
            metrics_require_token: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentsConfig {
    pub listen: String,
    /// A connection that has not completed its mutual-TLS handshake within this many seconds is
    /// closed: an unauthenticated peer may not hold a descriptor for long.
    pub handshake_timeout_secs: u64,
    /// Most handshakes in progress at once; connections beyond it are closed at once.
    pub max_handshakes: usize,
    /// Validity of the agent certificates the controller renews (with `pki.ca_key` set). Agents renew
    /// with a third of it left, and at once when theirs outlives it (the install's long-lived one).
    pub certificate_days: u32,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8120".to_owned(),
            handshake_timeout_secs: 10,
            max_handshakes: 1024,
            certificate_days: 90,
        }
    }
}

/// Leadership among controllers sharing a PostgreSQL database (`crate::lease`); SQLite has one
/// controller and no leadership.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LeadershipConfig {
    /// Seconds a leader's lease lasts. It renews five times per lease and stops leading when a fifth of
    /// it is left unrenewed; a standby takes over within the lease and a fifth after the last renewal.
    pub lease_secs: u64,
    /// How this controller is named in the lease (default: its pid and API address).
    pub name: Option<String>,
}

impl Default for LeadershipConfig {
    fn default() -> Self {
        Self {
            lease_secs: 5,
            name: None,
        }
    }
}

/// The system PKI files: the CA that signed the agents' certificates, and the controller's own.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PkiConfig {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The system CA's key. When set, agents renew their certificates over their link before they
    /// expire (`agents.certificate_days`), so none is ever copied by hand after the install.
    pub ca_key: Option<PathBuf>,
}

impl Default for PkiConfig {
    fn default() -> Self {
        let dir = Path::new("/etc/dc-rootca/pki");
        Self {
            ca: dir.join(dc_certs::pki::CA_CERT),
            cert: dir.join(dc_certs::pki::CONTROLLER_CERT),
            key: dir.join(dc_certs::pki::CONTROLLER_KEY),
            ca_key: None,
        }
    }
}

impl PkiConfig {
    /// The files of a `dc-certs init` directory; renewal off (`ca_key` unset).
    pub fn from_dir(dir: &Path) -> Self {
        Self {
            ca: dir.join(dc_certs::pki::CA_CERT),
            cert: dir.join(dc_certs::pki::CONTROLLER_CERT),
            key: dir.join(dc_certs::pki::CONTROLLER_KEY),
            ca_key: None,
        }
    }
}

/// Who may call the API: static tokens from this file (the default), or tokens issued by Keystone.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub kind: AuthKind,
    /// The static tokens (`kind = "static"`).
    pub tokens: Vec<TokenConfig>,
    /// The Keystone that issues and validates tokens (`kind = "keystone"`).
    pub keystone: Option<KeystoneConfig>,
}

/// Where `X-Auth-Token` is checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthKind {
    /// Against `[[auth.tokens]]`.
    #[default]
    Static,
    /// Against a Keystone v3 endpoint (`[auth.keystone]`), as StarlingX's own services do.
    Keystone,
}

/// The controller's own Keystone service credentials, and how long it trusts a validated token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeystoneConfig {
    /// The identity endpoint, e.g. `https://keystone.example:5000/v3` (a URL without `/v3` gets it).
    pub auth_url: String,
    pub username: String,
    pub password: String,
    pub project_name: String,
    pub user_domain_name: String,
    pub project_domain_name: String,
    /// CA bundle (PEM) to verify an HTTPS Keystone with; without it, the public web roots.
    pub cafile: Option<PathBuf>,
    /// Longest time a validated token is taken without asking Keystone again (never past its own
    /// expiry): a token revoked in Keystone is refused at most this long afterwards.
    pub cache_ttl_secs: u64,
    /// Most validated tokens kept; the one closest to expiry makes room for a new one.
    pub cache_size: usize,
    /// Seconds one request to Keystone may take before the API answers 503.
    pub timeout_secs: u64,
    /// The projects whose tokens count (as dcmanager's policy: `admin` and `services`); a token
    /// scoped to any other project, a domain or the system gets 403 whatever its roles.
    pub allowed_projects: Vec<String>,
}

impl Default for KeystoneConfig {
    fn default() -> Self {
        Self {
            auth_url: String::new(),
            username: String::new(),
            password: String::new(),
            project_name: "services".to_owned(),
            user_domain_name: "Default".to_owned(),
            project_domain_name: "Default".to_owned(),
            cafile: None,
            cache_ttl_secs: 60,
            cache_size: 10_000,
            timeout_secs: 5,
            allowed_projects: vec!["admin".to_owned(), "services".to_owned()],
        }
    }
}

impl KeystoneConfig {
    /// The settings without which the controller could not validate a token, named as in the file.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let required = [
            ("auth_url", &self.auth_url),
            ("username", &self.username),
            ("password", &self.password),
            ("project_name", &self.project_name),
            ("user_domain_name", &self.user_domain_name),
            ("project_domain_name", &self.project_domain_name),
        ];
        for (key, value) in required {
            if value.trim().is_empty() {
                problems.push(format!("auth.keystone.{key} is required"));
            }
        }
        let web_url = ["http://", "https://"]
            .iter()
            .any(|scheme| self.auth_url.starts_with(scheme));
        if !self.auth_url.is_empty() && !web_url {
            problems.push(format!(
                "auth.keystone.auth_url must be an http:// or https:// URL, not '{}'",
                self.auth_url
            ));
        }
        if self.password.starts_with(EXAMPLE_TOKEN_PREFIX) {
            problems.push(
                "auth.keystone.password is the example's placeholder; set the service user's own"
                    .to_owned(),
            );
        }
        if self.cache_size == 0 {
            problems.push("auth.keystone.cache_size must be at least 1".to_owned());
        }
        if self.timeout_secs == 0 {
            problems.push("auth.keystone.timeout_secs must be at least 1".to_owned());
        }
        problems
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub token: String,
    pub role: Role,
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// May change things.
    Admin,
    /// May only read.
    Reader,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// A root CA expiring within this many days makes its subcloud out-of-sync.
    pub expiring_days: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self { expiring_days: 30 }
    }
}

impl ControllerConfig {
    /// Reads `path` (TOML) and the `DC_CONTROLLER__...` environment over the defaults.
    pub fn load(path: &Path) -> Result<Self, ControllerError> {
        Ok(dc_config::load(path, "DC_CONTROLLER", &[])?)
    }

    /// Refuses settings the controller must not run with: Keystone auth without its settings, an API token shorter than
    /// [`MIN_TOKEN_LEN`] (guessable) or still the example's placeholder (published).
    pub fn validate(&self) -> Result<(), ControllerError> {
        if self.auth.kind == AuthKind::Keystone {
            let problems = match &self.auth.keystone {
                None => vec!["auth.kind is \"keystone\" but [auth.keystone] is missing".to_owned()],
                Some(k) => k.problems(),
            };
            if !problems.is_empty() {
                return Err(ControllerError::Config(problems.join("; ")));
            }
        }
        if let Some(url) = &self.api.advertise_url
            && !advertisable(url)
        {
            return Err(ControllerError::Config(format!(
                "api.advertise_url {url:?} is not an http:// or https:// URL of printable ASCII \
                 without spaces (standbys send it in the X-Leader-Url header)"
            )));
        }
        for (i, t) in self.auth.tokens.iter().enumerate() {
            let which = format!("auth.tokens[{i}]");
            if t.token.starts_with(EXAMPLE_TOKEN_PREFIX) {
                return Err(ControllerError::Config(format!(
                    "{which} is the example's placeholder; set a secret of your own \
                     (for example: openssl rand -hex 24)"
                )));
            }
            if t.token.chars().count() < MIN_TOKEN_LEN {
                return Err(ControllerError::Config(format!(
                    "{which} is {} characters; an API token needs at least {MIN_TOKEN_LEN}",
                    t.token.chars().count()
                )));
            }
        }
        Ok(())
    }

    /// The role of a static token, if it is known. Every configured token is compared in constant time, so
    /// the time an answer takes says nothing about how much of a guess was right.
    pub fn role_of(&self, token: &str) -> Option<Role> {
        self.auth.tokens.iter().fold(None, |found, t| {
            let equal = same_secret(t.token.as_bytes(), token.as_bytes());
            found.or(equal.then_some(t.role))
        })
    }
}

/// Shortest API token accepted: 16 random characters are out of reach of guessing over HTTP.
pub const MIN_TOKEN_LEN: usize = 16;

/// How the tokens in `deploy/controller.example.toml` begin: a copied example must not go live.
const EXAMPLE_TOKEN_PREFIX: &str = "CHANGE-ME";

/// Whether `url` can be the leader's advertised URL: an HTTP(S) URL a header value can carry.
fn advertisable(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    rest.is_some_and(|r| !r.is_empty()) && url.chars().all(|c| c.is_ascii_graphic())
}

/// Whether two secrets are equal, taking the same time wherever they differ (only their lengths leak).
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advertised_url_is_the_configured_one_else_the_bound_address_with_the_scheme() {
        let bound = "10.0.0.5:8119".parse().unwrap();
        let mut api = ApiConfig::default();
        assert_eq!(api.advertised(bound), "http://10.0.0.5:8119");
        api.tls = Some(TlsFiles {
            cert: "c".into(),
            key: "k".into(),
        });
        assert_eq!(api.advertised(bound), "https://10.0.0.5:8119");
        api.advertise_url = Some("https://ctl-a.example:8119".into());
        assert_eq!(api.advertised(bound), "https://ctl-a.example:8119");
    }

    #[test]
    fn an_advertise_url_a_header_cannot_carry_is_refused() {
        let mut c = ControllerConfig::default();
        for good in ["http://10.0.0.5:8119", "https://ctl-a.example:8119/"] {
            c.api.advertise_url = Some(good.into());
            assert!(c.validate().is_ok(), "{good}");
        }
        for bad in [
            "ctl-a:8119",
            "http://",
            "https://ctl a",
            "https://ctl\n-a",
            "ftp://x",
        ] {
            c.api.advertise_url = Some(bad.into());
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("api.advertise_url"), "{bad}: {e}");
        }
    }

    #[test]
    fn tokens_are_matched_exactly() {
        assert!(same_secret(b"admin-token", b"admin-token"));
        assert!(!same_secret(b"admin-token", b"admin-tokem"));
        assert!(!same_secret(b"admin-token", b"admin-toke"));
        assert!(!same_secret(b"", b"x"));
        let mut c = ControllerConfig::default();
        c.auth.tokens = vec![
            TokenConfig {
                token: "a-reader".into(),
                role: Role::Reader,
            },
            TokenConfig {
                token: "an-admin".into(),
                role: Role::Admin,
            },
        ];
        assert_eq!(c.role_of("an-admin"), Some(Role::Admin));
        assert_eq!(c.role_of("a-reader"), Some(Role::Reader));
        assert_eq!(c.role_of("an-admim"), None);
    }

    #[test]
    fn toml_shape() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            r#"
database = "/tmp/x.sqlite"
heartbeat_interval_secs = 5
[api]
listen = "127.0.0.1:0"
body_timeout_secs = 3
keep_alive_secs = 7
[agents]
listen = "127.0.0.1:0"
[pki]
ca = "/p/ca.crt"
cert = "/p/controller.crt"
key = "/p/controller.key"
[audit]
expiring_days = 60
[[auth.tokens]]
token = "a"
role = "admin"
[[auth.tokens]]
token = "r"
role = "reader"
"#,
        )
        .unwrap();
        let c = ControllerConfig::load(&path).unwrap();
        assert_eq!(c.api.listen, "127.0.0.1:0");
        assert_eq!(c.heartbeat_interval_secs, 5);
        assert_eq!(c.audit.expiring_days, 60);
        assert_eq!((c.api.body_timeout_secs, c.api.keep_alive_secs), (3, 7));
        assert_eq!(c.api.request_timeout_secs, 5);
        assert_eq!(c.role_of("a"), Some(Role::Admin));
        assert_eq!(c.role_of("r"), Some(Role::Reader));
        assert_eq!(c.role_of("x"), None);
        assert_eq!(c.agent_wait_secs, 600);
    }

    #[test]
    fn an_unknown_section_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[apii]\nlisten = \"127.0.0.1:0\"\n").unwrap();
        let e = ControllerConfig::load(&path).expect_err("an unknown section must be refused");
        assert!(e.to_string().contains("unknown field `apii`"), "{e}");
    }

    #[test]
    fn a_config_serialized_to_toml_loads_back() {
        let mut c = ControllerConfig::default();
        c.api.listen = "127.0.0.1:0".into();
        c.api.tls = Some(TlsFiles {
            cert: "/p/api.crt".into(),
            key: "/p/api.key".into(),
        });
        c.ready_file = Some("/tmp/ready.json".into());
        c.auth.tokens.push(TokenConfig {
            token: "t".into(),
            role: Role::Reader,
        });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, toml::to_string(&c).unwrap()).unwrap();
        let back = ControllerConfig::load(&path).unwrap();
        assert_eq!(back.api.listen, "127.0.0.1:0");
        assert_eq!(back.role_of("t"), Some(Role::Reader));
        assert_eq!(back.ready_file, c.ready_file);
        assert_eq!(back.api.tls.map(|t| t.key), Some("/p/api.key".into()));
    }

    #[test]
    fn deploy_example_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/controller.example.toml");
        let c = ControllerConfig::load(&path).unwrap();
        assert_eq!(c.api.listen, "127.0.0.1:8119");
        assert_eq!(c.agents.listen, "0.0.0.0:8120");
        assert_eq!(c.agent_wait_secs, 600);
        assert_eq!(c.auth.tokens.len(), 2);
        assert_eq!(c.agents.certificate_days, 90);
        assert!(
            c.pki.ca_key.is_none(),
            "renewal is off in the packaged example: the service reads no key but its own"
        );
        assert_eq!(
            c.pki.key,
            Path::new("/etc/dc-rootca/controller/controller.key")
        );
        assert_eq!(
            (c.api.request_timeout_secs, c.api.body_timeout_secs),
            (5, 10)
        );
        let e = c
            .validate()
            .expect_err("the example's tokens must not go live");
        assert!(e.to_string().contains("example's placeholder"), "{e}");
    }

    #[test]
    fn keystone_auth_names_every_missing_setting() {
        let mut c = ControllerConfig::default();
        c.auth.kind = AuthKind::Keystone;
        let e = c.validate().expect_err("keystone without its section");
        assert!(e.to_string().contains("[auth.keystone] is missing"), "{e}");
        c.auth.keystone = Some(KeystoneConfig {
            auth_url: "keystone:5000".into(),
            password: "CHANGE-ME-service-password".into(),
            cache_size: 0,
            ..KeystoneConfig::default()
        });
        let e = c
            .validate()
            .expect_err("incomplete keystone settings")
            .to_string();
        for part in [
            "auth.keystone.username is required",
            "auth.keystone.password is the example's placeholder",
            "must be an http:// or https:// URL, not 'keystone:5000'",
            "cache_size must be at least 1",
        ] {
            assert!(e.contains(part), "{part} not in: {e}");
        }
        c.auth.keystone = Some(KeystoneConfig {
            auth_url: "http://127.0.0.1:5000/v3".into(),
            username: "dcmanager".into(),
            password: "secret".into(),
            ..KeystoneConfig::default()
        });
        c.validate().expect("complete keystone settings are taken");
    }

    #[test]
    fn keystone_section_loads_from_toml() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            r#"
[auth]
kind = "keystone"
[auth.keystone]
auth_url = "https://192.168.204.1:5000/v3"
username = "dcmanager"
password = "s3cret"
project_name = "services"
cafile = "/etc/ssl/certs/keystone-ca.pem"
cache_ttl_secs = 30
"#,
        )
        .unwrap();
        let c = ControllerConfig::load(&path).unwrap();
        assert_eq!(c.auth.kind, AuthKind::Keystone);
        let k = c.auth.keystone.as_ref().unwrap();
        assert_eq!((k.cache_ttl_secs, k.cache_size), (30, 10_000));
        assert_eq!(k.user_domain_name, "Default");
        assert_eq!(
            k.cafile.as_deref(),
            Some(Path::new("/etc/ssl/certs/keystone-ca.pem"))
        );
        c.validate().unwrap();
    }

    #[test]
    fn short_tokens_are_refused_and_long_ones_taken() {
        let mut c = ControllerConfig::default();
        c.auth.tokens.push(TokenConfig {
            token: "x".repeat(MIN_TOKEN_LEN - 1),
            role: Role::Admin,
        });
        let e = c.validate().expect_err("a short token must be refused");
        assert!(
            e.to_string().contains("auth.tokens[0] is 15 characters"),
            "{e}"
        );
        c.auth.tokens[0].token = "x".repeat(MIN_TOKEN_LEN);
        c.validate()
            .expect("a token of the minimum length is taken");
    }
}
