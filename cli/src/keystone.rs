//! `source openrc; dcmanager …`: with `OS_AUTH_URL` and the user's credentials in the environment (an
//! openrc file's variables) and no `OS_AUTH_TOKEN`, the CLI logs in to Keystone (password, project
//! scope), sends the token it gets, and, without `DCMANAGER_URL`, takes the dcmanager endpoint from that
//! token's catalog (service type `dcmanager`, `OS_INTERFACE`, `OS_REGION_NAME`), as StarlingX's
//! own client does.

use std::path::Path;

use clap::Args;
use serde_json::{Value, json};

use crate::client::{ClientError, http_client};

/// The API's address when neither `DCMANAGER_URL` nor a Keystone catalog says otherwise.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8119/v1.0";

/// The service type dcmanager registers in the Keystone catalog.
const SERVICE_TYPE: &str = "dcmanager";

/// An openrc's variables.
#[derive(Args, Debug, Clone, Default)]
pub struct Openrc {
    /// Keystone's identity endpoint (e.g. http://192.168.204.1:5000/v3): log in there when no
    /// OS_AUTH_TOKEN is given.
    #[arg(long, env = "OS_AUTH_URL", global = true)]
    pub os_auth_url: Option<String>,
    /// The Keystone user to log in as.
    #[arg(long, env = "OS_USERNAME", global = true)]
    pub os_username: Option<String>,
    /// That user's password.
    #[arg(long, env = "OS_PASSWORD", hide_env_values = true, global = true)]
    pub os_password: Option<String>,
    /// The project to scope the token to.
    #[arg(long, env = "OS_PROJECT_NAME", global = true)]
    pub os_project_name: Option<String>,
    /// The user's domain.
    #[arg(
        long,
        env = "OS_USER_DOMAIN_NAME",
        default_value = "Default",
        global = true
    )]
    pub os_user_domain_name: String,
    /// The project's domain.
    #[arg(
        long,
        env = "OS_PROJECT_DOMAIN_NAME",
        default_value = "Default",
        global = true
    )]
    pub os_project_domain_name: String,
    /// The region whose dcmanager endpoint to use from the catalog.
    #[arg(long, env = "OS_REGION_NAME", global = true)]
    pub os_region_name: Option<String>,
    /// The catalog interface to use: public, internal or admin.
    #[arg(long, env = "OS_INTERFACE", default_value = "public", global = true)]
    pub os_interface: String,
}

#[derive(Debug, thiserror::Error)]
pub enum KeystoneError {
    #[error("OS_AUTH_URL is set but {0} is not: set it (source your openrc) or give OS_AUTH_TOKEN")]
    Missing(&'static str),
    #[error("Keystone refused the login of user {user} on project {project}: {message}")]
    Refused {
        user: String,
        project: String,
        message: String,
    },
    #[error("Keystone's login answer {0}")]
    BadAnswer(String),
    #[error(transparent)]
    Http(#[from] ClientError),
    #[error("{0}; set DCMANAGER_URL to the API's address")]
    NoEndpoint(String),
}

/// Where the API is and which token to send: `OS_AUTH_TOKEN` as given; else, with `OS_AUTH_URL`, a
/// Keystone login, and the catalog's endpoint unless `url` (`DCMANAGER_URL`) is set; else no token.
pub async fn connection(
    url: Option<String>,
    token: Option<String>,
    cacert: Option<&Path>,
    openrc: &Openrc,
) -> Result<(String, Option<String>), KeystoneError> {
    let Some(auth_url) = openrc.os_auth_url.as_deref().filter(|_| token.is_none()) else {
        return Ok((url.unwrap_or_else(|| DEFAULT_URL.to_owned()), token));
    };
    let (token, catalog) = login(auth_url, cacert, openrc).await?;
    let url = match url {
        Some(url) => url,
        None => endpoint(
            &catalog,
            &openrc.os_interface,
            openrc.os_region_name.as_deref(),
        )?,
    };
    Ok((url, Some(token)))
}

/// A password login scoped to the openrc's project: the token and its catalog.
async fn login(
    auth_url: &str,
    cacert: Option<&Path>,
    openrc: &Openrc,
) -> Result<(String, Value), KeystoneError> {
    let body = password_auth(openrc)?;
    let url = format!("{}/auth/tokens", v3_base(auth_url));
    let http = http_client(cacert)?;
    let mut response =
        http.post(&url)
            .send_json(&body)
            .await
            .map_err(|e| ClientError::Unreachable {
                url: url.clone(),
                reason: e.to_string(),
            })?;
    let answer: Value = response
        .json()
        .limit(16 * 1024 * 1024)
        .await
        .unwrap_or(Value::Null);
    if !response.status().is_success() {
        return Err(KeystoneError::Refused {
            user: openrc.os_username.clone().unwrap_or_default(),
            project: openrc.os_project_name.clone().unwrap_or_default(),
            message: answer["error"]["message"]
                .as_str()
                .map_or_else(|| format!("HTTP {}", response.status()), str::to_owned),
        });
    }
    let token = response
        .headers()
        .get("X-Subject-Token")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| KeystoneError::BadAnswer("has no X-Subject-Token".to_owned()))?
        .to_owned();
    Ok((token, answer["token"]["catalog"].clone()))
}

/// The body of a password login scoped to the openrc's project.
fn password_auth(o: &Openrc) -> Result<Value, KeystoneError> {
    let user = o
        .os_username
        .as_ref()
        .ok_or(KeystoneError::Missing("OS_USERNAME"))?;
    let password = o
        .os_password
        .as_ref()
        .ok_or(KeystoneError::Missing("OS_PASSWORD"))?;
    let project = o
        .os_project_name
        .as_ref()
        .ok_or(KeystoneError::Missing("OS_PROJECT_NAME"))?;
    Ok(json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"name": o.os_user_domain_name}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"name": o.os_project_domain_name}}},
    }}))
}

/// `OS_AUTH_URL` as the v3 base: openrc files give `…/v3`, some the bare root.
fn v3_base(auth_url: &str) -> String {
    let trimmed = auth_url.trim_end_matches('/');
    if trimmed.ends_with("/v3") {
        trimmed.to_owned()
    } else {
        format!("{trimmed}/v3")
    }
}

/// The dcmanager endpoint's URL in a token's catalog, for `interface` and, when given, `region`.
fn endpoint(
    catalog: &Value,
    interface: &str,
    region: Option<&str>,
) -> Result<String, KeystoneError> {
    let endpoints: Vec<&Value> = catalog
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["type"] == SERVICE_TYPE)
        .flat_map(|s| s["endpoints"].as_array().into_iter().flatten())
        .collect();
    if endpoints.is_empty() {
        return Err(KeystoneError::NoEndpoint(format!(
            "the Keystone catalog has no {SERVICE_TYPE} service"
        )));
    }
    let in_region = |e: &&&Value| region.is_none_or(|r| e["region_id"] == r || e["region"] == r);
    endpoints
        .iter()
        .filter(|e| e["interface"] == interface)
        .find(in_region)
        .and_then(|e| e["url"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| {
            let offered: Vec<String> = endpoints
                .iter()
                .map(|e| {
                    format!(
                        "{} in {}",
                        e["interface"].as_str().unwrap_or("?"),
                        e["region_id"].as_str().unwrap_or("?")
                    )
                })
                .collect();
            KeystoneError::NoEndpoint(format!(
                "the Keystone catalog has no {interface} {SERVICE_TYPE} endpoint{} (it has: {})",
                region
                    .map(|r| format!(" in region {r}"))
                    .unwrap_or_default(),
                offered.join(", ")
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Value {
        json!([
            {"type": "identity", "name": "keystone", "endpoints": [
                {"interface": "public", "region_id": "RegionOne", "url": "http://k:5000/v3"}]},
            {"type": "dcmanager", "name": "dcmanager", "endpoints": [
                {"interface": "public", "region_id": "RegionTwo", "region": "RegionTwo", "url": "http://two:8119/v1.0"},
                {"interface": "public", "region_id": "RegionOne", "region": "RegionOne", "url": "http://one:8119/v1.0"},
                {"interface": "internal", "region_id": "RegionOne", "region": "RegionOne", "url": "http://one-int:8119/v1.0"}]}
        ])
    }

    #[test]
    fn the_endpoint_is_chosen_by_interface_and_region() {
        let c = catalog();
        assert_eq!(
            endpoint(&c, "public", Some("RegionOne")).unwrap(),
            "http://one:8119/v1.0"
        );
        assert_eq!(
            endpoint(&c, "internal", Some("RegionOne")).unwrap(),
            "http://one-int:8119/v1.0"
        );
        assert_eq!(
            endpoint(&c, "public", Some("RegionTwo")).unwrap(),
            "http://two:8119/v1.0"
        );
        assert_eq!(
            endpoint(&c, "public", None).unwrap(),
            "http://two:8119/v1.0"
        );
        let e = endpoint(&c, "admin", Some("RegionOne"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no admin dcmanager endpoint in region RegionOne (it has: public in RegionTwo, public in RegionOne, internal in RegionOne)"), "{e}");
        assert!(e.ends_with("set DCMANAGER_URL to the API's address"), "{e}");
        let e = endpoint(&json!([]), "public", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("has no dcmanager service"), "{e}");
    }

    #[test]
    fn a_login_needs_user_password_and_project() {
        let mut o = Openrc {
            os_auth_url: Some("http://k:5000".into()),
            os_username: Some("admin".into()),
            os_user_domain_name: "Default".into(),
            os_project_domain_name: "Default".into(),
            os_interface: "public".into(),
            ..Openrc::default()
        };
        let e = password_auth(&o).unwrap_err().to_string();
        assert!(
            e.starts_with("OS_AUTH_URL is set but OS_PASSWORD is not"),
            "{e}"
        );
        o.os_password = Some("pw".into());
        o.os_project_name = Some("admin".into());
        let body = password_auth(&o).unwrap();
        assert_eq!(
            body["auth"]["identity"]["password"]["user"]["name"],
            "admin"
        );
        assert_eq!(
            body["auth"]["scope"]["project"]["domain"]["name"],
            "Default"
        );
        assert_eq!(v3_base("http://k:5000"), "http://k:5000/v3");
        assert_eq!(v3_base("http://k:5000/v3/"), "http://k:5000/v3");
    }

    #[actix_rt::test]
    async fn a_given_token_needs_no_login() {
        let o = Openrc {
            os_auth_url: Some("http://127.0.0.1:1/v3".into()),
            ..Openrc::default()
        };
        let (url, token) = connection(None, Some("t".into()), None, &o).await.unwrap();
        assert_eq!((url.as_str(), token.as_deref()), (DEFAULT_URL, Some("t")));
        let (url, token) = connection(Some("http://x/v1.0".into()), None, None, &Openrc::default())
            .await
            .unwrap();
        assert_eq!((url.as_str(), token), ("http://x/v1.0", None));
    }
}
