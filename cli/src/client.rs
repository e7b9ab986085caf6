//! The HTTP edge: JSON requests to the dcmanager REST API (docs/rest-api.md) with the token in
//! `X-Auth-Token`, errors turned into the server's own message; with several controllers' URLs, each
//! request goes to the one that answers and follows a standby to the leader ([`crate::controllers`]).

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use awc::error::SendRequestError;
use awc::http::Method;
use serde_json::Value;

use crate::controllers::{self, Next};

/// The header a standby names the leader's API URL in.
const LEADER_HEADER: &str = "X-Leader-Url";

/// Long enough for a create that validates a certificate over many subclouds.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Answers are small JSON documents; anything near this is not the API.
const BODY_LIMIT: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("could not reach the dcmanager API at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// No connection was made: the request did not reach that controller (worded as
    /// [`Self::Unreachable`]: to the operator both mean the API could not be reached).
    #[error("could not reach the dcmanager API at {url}: {reason}")]
    NoConnection { url: String, reason: String },
    /// The server's `message`, shown as is; `leader` is a standby's `X-Leader-Url`.
    #[error("{message}")]
    Api {
        status: u16,
        message: String,
        leader: Option<String>,
    },
    #[error("no dcmanager API URL given")]
    NoUrl,
    #[error("unexpected answer from {url}: {reason}")]
    BadAnswer { url: String, reason: String },
    #[error("cannot use CA certificate file {path}: {reason}")]
    CaCert { path: String, reason: String },
}

impl ClientError {
    /// Whether the same request may succeed later without anyone changing it: the API could not be
    /// reached (a controller restarting, a network blip), its answer broke off, or it (or a proxy in
    /// front of it) answered 5xx. A 4xx is about the request itself and stays final.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Unreachable { .. }
            | ClientError::NoConnection { .. }
            | ClientError::BadAnswer { .. } => true,
            ClientError::Api { status, .. } => *status >= 500,
            ClientError::CaCert { .. } | ClientError::NoUrl => false,
        }
    }
}

pub struct Client {
    /// The controllers' base URLs, in the order given.
    bases: Vec<String>,
    /// The base that answered last (perhaps a leader a standby named): asked first.
    current: Mutex<Option<String>>,
    token: Option<String>,
    http: awc::Client,
    /// For the event stream: awc's request timeout also bounds the response body, which would cut a
    /// stream after [`REQUEST_TIMEOUT`]; only its answer is timed, the body by the reader's silence
    /// limit.
    stream: awc::Client,
}

impl Client {
    /// `bases` is one URL or several, comma-separated ([`controllers::parse_urls`]). `cacert` makes
    /// HTTPS trust exactly that CA bundle (rustls on ring, the workspace's one crypto provider).
    pub fn new(
        bases: &str,
        token: Option<String>,
        cacert: Option<&Path>,
    ) -> Result<Client, ClientError> {
        let bases = controllers::parse_urls(bases);
        if bases.is_empty() {
            return Err(ClientError::NoUrl);
        }
        Ok(Client {
            bases,
            current: Mutex::new(None),
            token,
            http: http_client(cacert)?,
            stream: build_client(cacert, None)?,
        })
    }

    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.send(Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.send(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<Value, ClientError> {
        self.send(Method::DELETE, path, None).await
    }

    /// Runs `attempt` on each controller's base URL in turn ([`controllers::next`]): the first
    /// answer, or the last error.
    async fn across<T, F, Fut>(&self, attempt: F) -> Result<T, ClientError>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let mut queue = self.order();
        let mut followed = false;
        let mut last = ClientError::NoUrl;
        while let Some(base) = queue.pop_front() {
            let error = match attempt(base.clone()).await {
                Ok(answer) => {
                    self.remember(base);
                    return Ok(answer);
                }
                Err(error) => error,
            };
            match controllers::next(&error, followed) {
                Next::MoveOn => {}
                Next::Follow(leader) => {
                    followed = true;
                    queue.push_front(controllers::rebase(&base, &leader));
                }
                Next::Stop => return Err(error),
            }
            last = error;
        }
        Err(last)
    }

    /// The base that answered last first, then the others as given.
    fn order(&self) -> std::collections::VecDeque<String> {
        let current = self.current.lock().ok().and_then(|c| c.clone());
        current
            .iter()
            .chain(self.bases.iter().filter(|b| Some(*b) != current.as_ref()))
            .cloned()
            .collect()
    }

    fn remember(&self, base: String) {
        if let Ok(mut current) = self.current.lock() {
            *current = Some(base);
        }
    }

    /// Opens a streaming GET (the event stream), with `Last-Event-ID` when given: the response whose
    /// body the caller reads as it comes, or the error a refusal carries.
    pub async fn open_stream(
        &self,
        path: &str,
        last_event_id: Option<&str>,
    ) -> Result<awc::ClientResponse, ClientError> {
        self.across(|base| self.open_stream_at(base, path, last_event_id))
            .await
    }

    async fn open_stream_at(
        &self,
        base: String,
        path: &str,
        last_event_id: Option<&str>,
    ) -> Result<awc::ClientResponse, ClientError> {
        let url = format!("{base}{path}");
        let mut request = self
            .stream
            .get(&url)
            .insert_header(("Accept", "text/event-stream"));
        if let Some(token) = &self.token {
            request = request.insert_header(("X-Auth-Token", token.as_str()));
        }
        if let Some(id) = last_event_id {
            request = request.insert_header(("Last-Event-ID", id));
        }
        let unreachable = |reason: String| ClientError::Unreachable {
            url: url.clone(),
            reason,
        };
        let mut response = actix_rt::time::timeout(REQUEST_TIMEOUT, request.send())
            .await
            .map_err(|_| unreachable(format!("no answer in {}s", REQUEST_TIMEOUT.as_secs())))?
            .map_err(|e| not_sent(&url, e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let bytes = response.body().limit(BODY_LIMIT).await.unwrap_or_default();
        Err(refusal(&response, &bytes))
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        self.across(|base| self.send_to(base, method.clone(), path, body))
            .await
    }

    async fn send_to(
        &self,
        base: String,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let url = format!("{base}{path}");
        let mut request = self.http.request(method, &url);
        if let Some(token) = &self.token {
            request = request.insert_header(("X-Auth-Token", token.as_str()));
        }
        let sent = match body {
            Some(body) => request.send_json(body).await,
            None => request.send().await,
        };
        let mut response = sent.map_err(|e| not_sent(&url, e))?;
        let bytes =
            response
                .body()
                .limit(BODY_LIMIT)
                .await
                .map_err(|e| ClientError::BadAnswer {
                    url: url.clone(),
                    reason: e.to_string(),
                })?;
        if !response.status().is_success() {
            return Err(refusal(&response, &bytes));
        }
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::BadAnswer {
            url,
            reason: e.to_string(),
        })
    }
}

/// A failed send: [`ClientError::NoConnection`] when no connection was made (the request reached
/// nobody), else [`ClientError::Unreachable`].
fn not_sent(url: &str, e: SendRequestError) -> ClientError {
    let (url, reason) = (url.to_owned(), e.to_string());
    match e {
        SendRequestError::Connect(_) => ClientError::NoConnection { url, reason },
        _ => ClientError::Unreachable { url, reason },
    }
}

/// The error an answer other than 2xx carries, with a standby's leader when it names one.
fn refusal<S>(response: &awc::ClientResponse<S>, body: &[u8]) -> ClientError {
    let status = response.status().as_u16();
    ClientError::Api {
        status,
        message: error_message(status, body),
        leader: response
            .headers()
            .get(LEADER_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    }
}

/// The `message` of the contract's error body, or what there is when a proxy answered instead.
fn error_message(status: u16, body: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    match parsed
        .as_ref()
        .and_then(|v| v.get("message"))
        .and_then(Value::as_str)
    {
        Some(message) => message.to_owned(),
        None => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {text}")
            }
        }
    }
}

/// An HTTP client that, with `cacert`, trusts exactly that CA bundle for HTTPS: for the API and for
/// Keystone alike (`OS_CACERT`).
pub fn http_client(cacert: Option<&Path>) -> Result<awc::Client, ClientError> {
    build_client(cacert, Some(REQUEST_TIMEOUT))
}

/// A client trusting `cacert` (or the system's roots) for HTTPS, its requests and their bodies
/// bounded by `timeout` when there is one.
fn build_client(
    cacert: Option<&Path>,
    timeout: Option<Duration>,
) -> Result<awc::Client, ClientError> {
    let mut connector = awc::Connector::new();
    if let Some(path) = cacert {
        let config = tls_config(path).map_err(|reason| ClientError::CaCert {
            path: path.display().to_string(),
            reason,
        })?;
        connector = connector.rustls_0_23(Arc::new(config));
    }
    let builder = awc::Client::builder().connector(connector);
    Ok(match timeout {
        Some(limit) => builder.timeout(limit),
        None => builder.disable_timeout(),
    }
    .finish())
}

fn tls_config(path: &Path) -> Result<rustls::ClientConfig, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| e.to_string())? {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    if roots.is_empty() {
        return Err("no certificate in it".to_owned());
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_message_prefers_the_contract_message() {
        let body = br#"{"code": 404, "title": "Not Found", "message": "Subcloud not found"}"#;
        assert_eq!(error_message(404, body), "Subcloud not found");
        assert_eq!(
            error_message(502, b"Bad Gateway\n"),
            "HTTP 502: Bad Gateway"
        );
        assert_eq!(error_message(500, b""), "HTTP 500");
    }

    #[test]
    fn only_unreachable_broken_and_5xx_answers_are_transient() {
        let api = |status| ClientError::Api {
            status,
            message: String::new(),
            leader: None,
        };
        let unreachable = ClientError::Unreachable {
            url: "u".into(),
            reason: "Connection refused".into(),
        };
        let broken = ClientError::BadAnswer {
            url: "u".into(),
            reason: "payload reached EOF".into(),
        };
        assert!(unreachable.is_transient() && broken.is_transient());
        assert!(api(500).is_transient() && api(502).is_transient() && api(503).is_transient());
        assert!(!api(400).is_transient() && !api(401).is_transient() && !api(404).is_transient());
        let cacert = ClientError::CaCert {
            path: "p".into(),
            reason: "r".into(),
        };
        assert!(!cacert.is_transient());
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let err = Client::new("https://x", None, Some(file.path()))
            .err()
            .unwrap();
        assert!(err.to_string().ends_with("no certificate in it"), "{err}");
    }
}
