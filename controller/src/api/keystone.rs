//! Keystone v3 token validation, as StarlingX's own services do it: the controller logs in with its own
//! service credentials (password, project scope), then asks `GET /v3/auth/tokens` with the caller's
//! token in `X-Subject-Token`. Validated tokens are kept in a [`TokenCache`] until the earlier of their
//! expiry and `auth.keystone.cache_ttl_secs`, which is also the longest a revoked token is still taken.
//! When Keystone cannot answer, the caller gets a [`KeystoneError`] (503 at the API), never an accept.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use awc::http::StatusCode;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::token_cache::{TokenCache, keep_until};
use crate::config::{KeystoneConfig, Role};
use crate::error::ControllerError;

/// Keystone answers are a token's JSON with its roles and catalog: far below this.
const BODY_LIMIT: usize = 4 * 1024 * 1024;

/// What Keystone says of a caller's token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid, with this role of ours.
    Granted(Role),
    /// Valid, but with none of the roles we map (admin, member, reader): 403.
    NoRole,
    /// Not a valid token (unknown, expired or revoked): 401.
    Unknown,
}

/// Why Keystone could not tell whether a token is valid.
#[derive(Debug, thiserror::Error)]
pub enum KeystoneError {
    #[error("Keystone at {url} is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error(
        "Keystone refused the controller's service credentials (user {user}): HTTP {status}: {message}"
    )]
    ServiceLogin {
        user: String,
        status: u16,
        message: String,
    },
    #[error(
        "Keystone refused to let the controller's service user validate tokens (give it the service or admin role): HTTP {status}: {message}"
    )]
    NotAllowed { status: u16, message: String },
    #[error("unexpected answer from Keystone at {url}: {reason}")]
    BadAnswer { url: String, reason: String },
}

impl KeystoneError {
    /// What an API caller is told: no URL, user or Keystone message (those go to the log).
    pub fn public(&self) -> &'static str {
        match self {
            Self::Unreachable { .. } => "Keystone is unreachable",
            Self::ServiceLogin { .. } | Self::NotAllowed { .. } => {
                "the controller cannot use Keystone with its service credentials"
            }
            Self::BadAnswer { .. } => "Keystone gave an answer the controller cannot read",
        }
    }
}

/// The controller's service token, renewed ahead of its expiry.
#[derive(Debug, Clone)]
struct ServiceToken {
    token: String,
    renew_at: Instant,
}

/// The Keystone the controller validates tokens with, shared by every API worker.
pub struct Keystone {
    config: KeystoneConfig,
    /// `auth_url`, ending in `/v3`.
    base: String,
    /// Trusts exactly `cafile` when set; otherwise awc's default roots.
    tls: Option<Arc<rustls::ClientConfig>>,
    cache: Mutex<TokenCache<Verdict>>,
    /// Held across a login, so that concurrent misses log in once.
    service: tokio::sync::Mutex<Option<ServiceToken>>,
}

impl std::fmt::Debug for Keystone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keystone")
            .field("base", &self.base)
            .finish()
    }
}

impl Keystone {
    /// Reads `cafile` when set; the settings were checked by [`crate::ControllerConfig::validate`].
    pub fn new(config: &KeystoneConfig) -> Result<Self, ControllerError> {
        let tls = match &config.cafile {
            None => None,
            Some(path) => {
                let pem =
                    std::fs::read_to_string(path).map_err(|source| ControllerError::Read {
                        path: path.clone(),
                        source,
                    })?;
                Some(
                    dc_protocol::tls::https_client_config(&pem)
                        .map_err(|e| ControllerError::Tls(format!("auth.keystone.cafile: {e}")))?,
                )
            }
        };
        Ok(Self {
            base: v3_base(&config.auth_url),
            config: config.clone(),
            tls,
            cache: Mutex::new(TokenCache::new(config.cache_size)),
            service: tokio::sync::Mutex::new(None),
        })
    }

    /// What Keystone says of `token`, from the cache while it may be taken.
    pub async fn check(&self, token: &str) -> Result<Verdict, KeystoneError> {
        if let Some(verdict) = self.cached(token) {
            return Ok(verdict);
        }
        let http = self.http();
        // A second attempt only when Keystone no longer takes our service token (expired, revoked).
        for attempt in 0..2 {
            let service = self.service_token(&http).await?;
            let url = format!("{}/auth/tokens?nocatalog", self.base);
            let (status, body) = send(
                http.get(&url)
                    .insert_header(("X-Auth-Token", service.as_str()))
                    .insert_header(("X-Subject-Token", token)),
                &url,
                None,
            )
            .await?;
            match status {
                StatusCode::OK => {
                    let (verdict, remaining) = validated(
                        &body,
                        OffsetDateTime::now_utc(),
                        &self.config.allowed_projects,
                    )
                    .map_err(|reason| KeystoneError::BadAnswer { url, reason })?;
                    let now = Instant::now();
                    let ttl = Duration::from_secs(self.config.cache_ttl_secs);
                    self.cache
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(token, verdict, keep_until(now, remaining, ttl), now);
                    return Ok(verdict);
                }
                StatusCode::NOT_FOUND => return Ok(Verdict::Unknown),
                StatusCode::UNAUTHORIZED if attempt == 0 => {
                    *self.service.lock().await = None;
                }
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    return Err(KeystoneError::NotAllowed {
                        status: status.as_u16(),
                        message: message(&body),
                    });
                }
                other => {
                    return Err(KeystoneError::BadAnswer {
                        url,
                        reason: format!("HTTP {}: {}", other.as_u16(), message(&body)),
                    });
                }
            }
        }
        Err(KeystoneError::NotAllowed {
            status: 401,
            message: "a fresh service token was refused too".to_owned(),
        })
    }

    fn cached(&self, token: &str) -> Option<Verdict> {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(token, Instant::now())
    }

    /// One client per validation: awc's client is bound to its thread, the API's workers are many, and
    /// validations happen once per token and TTL.
    fn http(&self) -> awc::Client {
        let mut connector = awc::Connector::new();
        if let Some(tls) = &self.tls {
            connector = connector.rustls_0_23(tls.clone());
        }
        awc::Client::builder()
            .timeout(Duration::from_secs(self.config.timeout_secs.max(1)))
            .connector(connector)
            .finish()
    }

    /// The service token, logging in when there is none or it is due for renewal.
    async fn service_token(&self, http: &awc::Client) -> Result<String, KeystoneError> {
        let mut slot = self.service.lock().await;
        if let Some(t) = slot.as_ref()
            && Instant::now() < t.renew_at
        {
            return Ok(t.token.clone());
        }
        let url = format!("{}/auth/tokens?nocatalog", self.base);
        let login = password_auth(&self.config);
        let (status, body, token) = send_with_headers(http.post(&url), &url, Some(&login)).await?;
        let token = match (status, token) {
            (StatusCode::CREATED | StatusCode::OK, Some(token)) => token,
            (StatusCode::CREATED | StatusCode::OK, None) => {
                return Err(KeystoneError::BadAnswer {
                    url,
                    reason: "no X-Subject-Token in the login answer".to_owned(),
                });
            }
            (status, _) => {
                return Err(KeystoneError::ServiceLogin {
                    user: self.config.username.clone(),
                    status: status.as_u16(),
                    message: message(&body),
                });
            }
        };
        let remaining = serde_json::from_slice(&body)
            .map_err(|e| e.to_string())
            .and_then(|value| expires_in(&value, OffsetDateTime::now_utc()))
            .map_err(|reason| KeystoneError::BadAnswer {
                url: url.clone(),
                reason,
            })?;
        *slot = Some(ServiceToken {
            token: token.clone(),
            renew_at: Instant::now() + renew_after(remaining),
        });
        tracing::info!(keystone = %self.base, user = %self.config.username, "logged in to Keystone");
        Ok(token)
    }
}

/// Sends a request and reads its status and body whole.
async fn send(
    request: awc::ClientRequest,
    url: &str,
    body: Option<&Value>,
) -> Result<(StatusCode, Vec<u8>), KeystoneError> {
    let (status, bytes, _) = send_with_headers(request, url, body).await?;
    Ok((status, bytes))
}

/// [`send`], and the `X-Subject-Token` header a login answers with.
async fn send_with_headers(
    request: awc::ClientRequest,
    url: &str,
    body: Option<&Value>,
) -> Result<(StatusCode, Vec<u8>, Option<String>), KeystoneError> {
    let sent = match body {
        Some(body) => request.send_json(body).await,
        None => request.send().await,
    };
    let mut response = sent.map_err(|e| KeystoneError::Unreachable {
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    let subject = response
        .headers()
        .get("X-Subject-Token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes =
        response
            .body()
            .limit(BODY_LIMIT)
            .await
            .map_err(|e| KeystoneError::Unreachable {
                url: url.to_owned(),
                reason: e.to_string(),
            })?;
    Ok((response.status(), bytes.to_vec(), subject))
}

/// The body of a password login scoped to the configured project.
fn password_auth(c: &KeystoneConfig) -> Value {
    json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": c.username,
            "domain": {"name": c.user_domain_name},
            "password": c.password,
        }}},
        "scope": {"project": {"name": c.project_name, "domain": {"name": c.project_domain_name}}},
    }})
}

/// `auth_url` as the v3 base: StarlingX's openrc gives `http://host:5000/v3`, some give the bare root.
pub fn v3_base(auth_url: &str) -> String {
    let trimmed = auth_url.trim_end_matches('/');
    if trimmed.ends_with("/v3") {
        trimmed.to_owned()
    } else {
        format!("{trimmed}/v3")
    }
}

/// Our role for a token's Keystone roles: admin → admin; member or reader → reader; otherwise none.
/// Keystone lists implied roles too (admin implies member implies reader), so the strongest wins.
pub fn role_from<'a>(roles: impl IntoIterator<Item = &'a str>) -> Option<Role> {
    let mut found = None;
    for name in roles {
        if name.eq_ignore_ascii_case("admin") {
            return Some(Role::Admin);
        }
        if name.eq_ignore_ascii_case("member") || name.eq_ignore_ascii_case("reader") {
            found = Some(Role::Reader);
        }
    }
    found
}

/// The verdict and remaining lifetime of a validated token's JSON (`{"token": {"roles", "project",
/// "expires_at"}}`): its roles count only when it is scoped to one of `allowed_projects`.
fn validated(
    body: &[u8],
    now: OffsetDateTime,
    allowed_projects: &[String],
) -> Result<(Verdict, Duration), String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let project = value["token"]["project"]["name"].as_str();
    if !project.is_some_and(|p| allowed_projects.iter().any(|a| a == p)) {
        return Ok((Verdict::NoRole, expires_in(&value, now)?));
    }
    let roles = value["token"]["roles"]
        .as_array()
        .map(|roles| {
            roles
                .iter()
                .filter_map(|r| r["name"].as_str())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let verdict = match role_from(roles) {
        Some(role) => Verdict::Granted(role),
        None => Verdict::NoRole,
    };
    Ok((verdict, expires_in(&value, now)?))
}

/// How long until the token in a Keystone token JSON expires (zero once past).
fn expires_in(value: &Value, now: OffsetDateTime) -> Result<Duration, String> {
    let text = value["token"]["expires_at"]
        .as_str()
        .ok_or("the token has no expires_at")?;
    let at =
        OffsetDateTime::parse(text, &Rfc3339).map_err(|e| format!("expires_at '{text}': {e}"))?;
    Ok(Duration::try_from(at - now).unwrap_or(Duration::ZERO))
}

/// When to renew a service token that expires in `remaining`: halfway, and at most a minute early.
fn renew_after(remaining: Duration) -> Duration {
    remaining.saturating_sub((remaining / 2).min(Duration::from_secs(60)))
}

/// Keystone's error message (`{"error": {"message"}}`), or the body as text.
fn message(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| {
            String::from_utf8_lossy(body)
                .trim()
                .chars()
                .take(200)
                .collect()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keystone_roles_map_to_ours() {
        assert_eq!(role_from(["admin", "member", "reader"]), Some(Role::Admin));
        assert_eq!(role_from(["reader", "Admin"]), Some(Role::Admin));
        assert_eq!(role_from(["member", "reader"]), Some(Role::Reader));
        assert_eq!(role_from(["reader"]), Some(Role::Reader));
        assert_eq!(role_from(["member"]), Some(Role::Reader));
        assert_eq!(role_from(["service", "load-balancer_member"]), None);
        assert_eq!(role_from([]), None);
    }

    #[test]
    fn a_validated_token_gives_its_verdict_and_remaining_life() {
        let now = OffsetDateTime::parse("2026-12-05T20:00:00Z", &Rfc3339).unwrap();
        let allowed = ["admin".to_owned(), "services".to_owned()];
        let body = br#"{"token": {"expires_at": "2026-12-05T21:00:00.000000Z",
            "project": {"name": "admin"},
            "roles": [{"id": "1", "name": "reader"}, {"id": "2", "name": "member"}]}}"#;
        assert_eq!(
            validated(body, now, &allowed).unwrap(),
            (Verdict::Granted(Role::Reader), Duration::from_secs(3600))
        );
        let no_role = br#"{"token": {"expires_at": "2026-12-05T19:00:00Z",
            "project": {"name": "admin"}, "roles": []}}"#;
        assert_eq!(
            validated(no_role, now, &allowed).unwrap(),
            (Verdict::NoRole, Duration::ZERO)
        );
        let e = validated(br#"{"token": {"roles": []}}"#, now, &allowed).unwrap_err();
        assert!(e.contains("no expires_at"), "{e}");
    }

    /// As dcmanager's policy: an admin of a tenant's project, or a token scoped to a domain or the
    /// system, is not an admin of the distributed cloud.
    #[test]
    fn roles_count_only_in_the_allowed_projects() {
        let now = OffsetDateTime::parse("2026-12-05T20:00:00Z", &Rfc3339).unwrap();
        let allowed = ["admin".to_owned(), "services".to_owned()];
        let admin_of = |scope: &str| {
            format!(
                r#"{{"token": {{"expires_at": "2026-12-05T21:00:00Z", {scope}
                "roles": [{{"name": "admin"}}]}}}}"#
            )
        };
        for (scope, verdict) in [
            (
                r#""project": {"name": "services"},"#,
                Verdict::Granted(Role::Admin),
            ),
            (r#""project": {"name": "tenant-a"},"#, Verdict::NoRole),
            (r#""domain": {"name": "Default"},"#, Verdict::NoRole),
            (r#""system": {"all": true},"#, Verdict::NoRole),
        ] {
            let (got, _) = validated(admin_of(scope).as_bytes(), now, &allowed).unwrap();
            assert_eq!(got, verdict, "{scope}");
        }
    }

    #[test]
    fn the_auth_url_gets_its_v3() {
        assert_eq!(v3_base("http://k:5000/v3"), "http://k:5000/v3");
        assert_eq!(v3_base("http://k:5000/v3/"), "http://k:5000/v3");
        assert_eq!(v3_base("http://k:5000"), "http://k:5000/v3");
    }

    #[test]
    fn a_service_token_is_renewed_ahead_of_expiry() {
        let s = Duration::from_secs(1);
        assert_eq!(renew_after(3600 * s), 3540 * s);
        assert_eq!(renew_after(60 * s), 30 * s);
        assert_eq!(renew_after(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn keystone_errors_read_their_message() {
        let body = br#"{"error": {"code": 401, "message": "The request you have made requires authentication.", "title": "Unauthorized"}}"#;
        assert_eq!(
            message(body),
            "The request you have made requires authentication."
        );
        assert_eq!(message(b"Bad Gateway\n"), "Bad Gateway");
    }
}
