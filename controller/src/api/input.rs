//! What a request may bring, and the documented JSON error for whatever is refused before a handler
//! runs. actix-web answers its own refusals (a body too large, a query string or path segment that does
//! not deserialize, a wrong method) in plain text or with an empty body; every one is routed here so a
//! client always reads `{"code","title","message"}`.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::{Method, StatusCode, header};
use actix_web::{FromRequest, Handler, HttpRequest, HttpResponse, Resource, Responder, web};

use crate::error::{ApiError, ErrorBody};

use super::access::ApiState;

/// The largest request body, in bytes. The largest legitimate one is a create with a 64 Ki cert-file,
/// which fits four times over even JSON-escaped; anything larger is refused (413) before it is read.
pub const MAX_BODY: usize = 256 * 1024;

/// Installs the extractor settings and error handlers on the app: the body limit, and JSON errors for
/// the query string, the path and JSON bodies (no handler takes `web::Json` today: the handler would
/// answer the documented shape the day one does).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(MAX_BODY))
        .app_data(web::QueryConfig::default().error_handler(query_error))
        .app_data(web::PathConfig::default().error_handler(path_error))
        .app_data(
            web::JsonConfig::default()
                .limit(MAX_BODY)
                .error_handler(json_error),
        );
}

fn query_error(e: QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    let QueryPayloadError::Deserialize(why) = &e else {
        return ApiError::bad_request(format!("Invalid query string: {e}")).into();
    };
    ApiError::bad_request(format!("Invalid query string: {why}")).into()
}

/// A path segment that does not deserialize names nothing that could exist: 404, which every
/// operation with a path parameter documents.
fn path_error(e: PathError, _: &HttpRequest) -> actix_web::Error {
    let PathError::Deserialize(why) = &e else {
        return ApiError::not_found(format!("Resource not found: {e}")).into();
    };
    ApiError::not_found(format!("Resource not found: {why}")).into()
}

fn json_error(e: JsonPayloadError, _: &HttpRequest) -> actix_web::Error {
    let mut status = actix_web::ResponseError::status_code(&e);
    let message = match &e {
        JsonPayloadError::ContentType => {
            // actix-web says 400; the status for it is 415.
            status = StatusCode::UNSUPPORTED_MEDIA_TYPE;
            "Content-Type must be application/json".to_owned()
        }
        JsonPayloadError::Deserialize(why) => format!("Request body is not valid JSON: {why}"),
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            too_large()
        }
        other => format!("Request body could not be read: {other}"),
    };
    ApiError::new(status, message).into()
}

fn too_large() -> String {
    format!("Request body is larger than {MAX_BODY} bytes")
}

/// How long a client has to send a body once its head arrived, unless the config says otherwise.
const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// A request body, read whole within the configured time (`api.body_timeout_secs`) and size
/// ([`MAX_BODY`]). actix-http bounds only the time to send a request's head: without this, an
/// authenticated client trickling or stalling a body would hold its connection and worker slot for
/// ever. Too slow answers 408, too large 413, and the connection is closed after either.
pub struct Body(pub web::Bytes);

impl FromRequest for Body {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<web::Data<ApiState>>()
            .map_or(DEFAULT_BODY_TIMEOUT, |s| {
                Duration::from_secs(s.config.api.body_timeout_secs.max(1))
            });
        let read = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            match tokio::time::timeout(limit, read).await {
                Ok(Ok(bytes)) => Ok(Body(bytes)),
                Ok(Err(e))
                    if e.as_response_error().status_code() == StatusCode::PAYLOAD_TOO_LARGE =>
                {
                    Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, too_large()))
                }
                Ok(Err(e)) => Err(ApiError::new(
                    e.as_response_error().status_code(),
                    format!("Request body could not be read: {e}"),
                )),
                Err(_) => Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "The request body did not arrive within {} s",
                        limit.as_secs()
                    ),
                )),
            }
        })
    }
}

/// Routes of one path, answering 405 in the documented shape (with `Allow`) to any other method;
/// actix-web's own 405 has an empty body.
pub struct Routes {
    resource: Resource,
    allow: Vec<Method>,
}

impl Routes {
    /// The routes of `paths` (one path, or several spellings of it such as a trailing slash).
    pub fn at(paths: &[&str]) -> Self {
        Self {
            resource: web::resource(paths.iter().map(|p| p.to_string()).collect::<Vec<_>>()),
            allow: Vec::new(),
        }
    }

    /// `method` is answered by `handler`.
    pub fn on<F, Args>(mut self, method: Method, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.resource = self.resource.route(web::method(method.clone()).to(handler));
        self.allow.push(method);
        self
    }

    /// The resource, with the 405 for every other method.
    pub fn done(self) -> Resource {
        let allow = self
            .allow
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        self.resource
            .default_service(web::to(move |req: HttpRequest| {
                let allow = allow.clone();
                async move {
                    HttpResponse::MethodNotAllowed()
                        .insert_header((header::ALLOW, allow.clone()))
                        .json(ErrorBody::new(
                            StatusCode::METHOD_NOT_ALLOWED,
                            format!(
                                "Method {} is not allowed here; allowed: {allow}",
                                req.method()
                            ),
                        ))
                }
            }))
    }
}
