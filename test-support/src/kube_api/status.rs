//! Failures answered as the API server answers them: a `Status` object with the HTTP code, a reason
//! clients switch on (`NotFound`, `Invalid`, ...) and a message kubectl prints.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use dc_agent::cluster::ClusterError;
use dc_agent::sim::SimError;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    ListMeta, Status, StatusCause, StatusDetails,
};

use super::patch::Refusal;

/// The resource an error is about: plural name, API group and object name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub resource: &'static str,
    pub group: &'static str,
    pub kind: &'static str,
    pub name: String,
}

impl Target {
    /// `deployments.apps`, or `pods` for the core group, as the API server names a resource.
    fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.resource.to_owned()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("Unauthorized")]
    Unauthorized,
    #[error("{} \"{}\" not found", .0.qualified(), .0.name)]
    NotFound(Target),
    #[error("the server could not find the requested resource")]
    NoRoute,
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    #[error("{0}")]
    BadRequest(String),
    #[error("{}{} \"{}\" is invalid: {refusal}", target.kind, if target.group.is_empty() { String::new() } else { format!(".{}", target.group) }, target.name)]
    Invalid { target: Target, refusal: Refusal },
    #[error(
        "the body of the request was in an unknown format - accepted media types include: application/strategic-merge-patch+json, application/merge-patch+json (got {0:?})"
    )]
    UnsupportedPatch(String),
    #[error("the simulated cluster failed: {0}")]
    Sim(#[from] ClusterError),
}

impl From<SimError> for ApiError {
    fn from(error: SimError) -> Self {
        Self::Sim(error.into())
    }
}

impl ApiError {
    fn reason(&self) -> &'static str {
        match self {
            Self::Unauthorized => "Unauthorized",
            Self::NotFound(_) | Self::NoRoute => "NotFound",
            Self::MethodNotAllowed => "MethodNotAllowed",
            Self::BadRequest(_) => "BadRequest",
            Self::Invalid { .. } => "Invalid",
            Self::UnsupportedPatch(_) => "UnsupportedMediaType",
            Self::Sim(_) => "InternalError",
        }
    }

    /// The `Status` object of this failure.
    pub fn status(&self) -> Status {
        let details = match self {
            Self::NotFound(t) => Some(StatusDetails {
                name: Some(t.name.clone()),
                group: Some(t.group.to_owned()),
                kind: Some(t.resource.to_owned()),
                ..StatusDetails::default()
            }),
            // kubectl prints the causes of an Invalid error, not its message.
            Self::Invalid { target: t, refusal } => Some(StatusDetails {
                name: Some(t.name.clone()),
                group: Some(t.group.to_owned()),
                kind: Some(t.kind.to_owned()),
                causes: Some(vec![StatusCause {
                    field: Some(refusal.field.clone()),
                    message: Some(refusal.message.clone()),
                    reason: Some("FieldValueForbidden".to_owned()),
                }]),
                ..StatusDetails::default()
            }),
            _ => None,
        };
        Status {
            status: Some("Failure".to_owned()),
            message: Some(self.to_string()),
            reason: Some(self.reason().to_owned()),
            details,
            code: Some(i32::from(self.status_code().as_u16())),
            metadata: ListMeta::default(),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) | Self::NoRoute => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::UnsupportedPatch(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Sim(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::Sim(e) = self {
            tracing::warn!(error = %e, "simulated Kubernetes API request failed");
        }
        HttpResponse::build(self.status_code()).json(self.status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_reads_like_the_api_server() {
        let e = ApiError::NotFound(Target {
            resource: "deployments",
            group: "apps",
            kind: "Deployment",
            name: "web".into(),
        });
        let status = serde_json::to_value(e.status()).unwrap();
        assert_eq!(status["apiVersion"], "v1");
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["code"], 404);
        assert_eq!(status["reason"], "NotFound");
        assert_eq!(status["message"], "deployments.apps \"web\" not found");
        assert_eq!(status["details"]["kind"], "deployments");
    }

    #[test]
    fn invalid_is_422_and_names_the_object() {
        let e = ApiError::Invalid {
            target: Target {
                resource: "pods",
                group: "",
                kind: "Pod",
                name: "p".into(),
            },
            refusal: Refusal {
                field: "spec".into(),
                message: "Forbidden: no".into(),
            },
        };
        let status = e.status();
        assert_eq!(status.code, Some(422));
        assert_eq!(e.to_string(), "Pod \"p\" is invalid: spec: Forbidden: no");
        let cause = &status.details.unwrap().causes.unwrap()[0];
        assert_eq!(cause.field.as_deref(), Some("spec"));
    }
}
