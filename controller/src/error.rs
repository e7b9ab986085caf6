//! Errors: the API's JSON errors and the controller's start-up errors.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::model::STRATEGY_TYPE;

/// An API error: a status and a clear message, sent as `{"code","title","message"}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// The leader's API URL, on a standby's 503 to a change: sent in the body and as `X-Leader-Url`.
    pub leader: Option<String>,
}

/// The header a standby names the leader's API URL in.
pub const LEADER_HEADER: &str = "X-Leader-Url";

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            leader: None,
        }
    }

    /// 503 from a standby to a change (or to what only the leader can serve): names the leader's API
    /// URL when the lease row has one, so the client can send it there.
    pub fn not_leader(leader: Option<String>) -> Self {
        let message = match &leader {
            Some(url) => format!(
                "This controller is a standby: send changes to the leader at {url} (reads are served here from the database)"
            ),
            None => "This controller is a standby and no controller leads right now (its lease expired or was released): retry in a few seconds".to_owned(),
        };
        Self {
            leader,
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }

    /// 400: malformed input.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404: unknown resource.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 422: refused by the rules.
    pub fn refused(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    /// 422 in dcmanager's words for strategy operations:
    /// "Unable to <verb> strategy of type 'kube-rootca-update': Bad strategy request: <why>".
    pub fn strategy(verb: &str, why: impl std::fmt::Display) -> Self {
        Self::refused(format!(
            "Unable to {verb} strategy of type '{STRATEGY_TYPE}': Bad strategy request: {why}"
        ))
    }

    /// 500: the store failed; the change was not made.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

/// Every error's JSON body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The HTTP status.
    #[schema(example = 404)]
    pub code: u16,
    /// Its reason phrase.
    #[schema(example = "Not Found")]
    pub title: &'static str,
    /// What went wrong, for the operator.
    #[schema(example = "Subcloud not found")]
    pub message: String,
    /// On a standby's 503: the leader's API URL (also in the `X-Leader-Url` header).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
}

impl ErrorBody {
    /// The body for `status`, with its reason phrase as the title.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            code: status.as_u16(),
            title: status.canonical_reason().unwrap_or("Error"),
            message: message.into(),
            leader: None,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        // A request whose body was not read whole (too large, too slow) leaves the connection in an
        // unknown place: close it rather than let a slow client keep it by draining.
        if matches!(
            self.status,
            StatusCode::REQUEST_TIMEOUT | StatusCode::PAYLOAD_TOO_LARGE
        ) {
            response.force_close();
        }
        if let Some(url) = &self.leader {
            response.insert_header((LEADER_HEADER, url.as_str()));
        }
        response.json(ErrorBody {
            leader: self.leader.clone(),
            ..ErrorBody::new(self.status, self.message.clone())
        })
    }
}

/// Why the controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Load(#[from] dc_config::ConfigError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot write the ready file {path}: {source}")]
    ReadyFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Lease(#[from] crate::lease::LeaseError),
}
